"""Ingest: records from sources are tagged, passed through the rules and committed in groups.

Many concurrent `publish` calls are folded into one SQLite transaction (group commit): a source
awaits its own future, which resolves only after the transaction holding its records committed.
The queue in front is bounded, so a flood from one source slows that source, not the hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence

from hub.clock import Clock
from hub.engine import AlertBatch, Engine
from hub.outbox import Commit, Outbox
from hub.records import Record, UniqueTimes, encode_record
from hub.registry import Registry
from hub.vessels import VesselTable

log = logging.getLogger("hub.pipeline")

_Item = tuple[Sequence[Record], "asyncio.Future[None]"]


class Pipeline:
    def __init__(
        self,
        *,
        site: str,
        clock: Clock,
        registry: Registry,
        engine: Engine,
        outbox: Outbox,
        destinations: Sequence[str],
        write_batch: int = 2000,
        queue_batches: int = 256,
        vessels: VesselTable | None = None,
    ) -> None:
        self.site = site
        self.clock = clock
        self.registry = registry
        self.engine = engine
        self.outbox = outbox
        self.destinations = list(destinations)
        self.write_batch = write_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_batches)
        self.encode_errors: Counter[str] = Counter()
        self.records_in = 0
        self.commit_failures = 0
        self.vessels = vessels
        self._times = UniqueTimes()  # stored points stay unique on (series, timestamp)

    async def publish(self, records: Sequence[Record]) -> None:
        """Hand records to the hub; returns once they are durable in the outbox."""
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((records, future))
        await future

    async def run(self) -> None:
        """The single writer: drains the queue into group commits until cancelled."""
        while True:
            items = [await self._queue.get()]
            count = len(items[0][0])
            while count < self.write_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                items.append(item)
                count += len(item[0])
            try:
                await self._commit_items(items)
            except Exception as exc:  # disk full, I/O error: the writer must outlive it
                self.commit_failures += 1
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                log.error("outbox commit failed; %d records not acknowledged: %r", count, exc)
                await asyncio.sleep(1.0)  # sources see the error and retry; don't spin

    async def _commit_items(self, items: list[_Item]) -> None:
        now_ns = self.clock.now_ns()
        observations = [self.registry.observe(r) for batch, _ in items for r in batch]
        records = [o.record for o in observations]
        commit = Commit(readings=self._encode(records))
        alerts = self.engine.on_records(observations, now_ns)
        alerts.fill(commit, self.destinations)
        await self.outbox.commit(commit)
        self.records_in += len(records)
        for _, future in items:
            if not future.done():
                future.set_result(None)
        if self.vessels is not None:
            self.vessels.update(observations)
        self.engine.notify(alerts.alerts)

    async def commit_alerts(self, alerts_batch: AlertBatch) -> None:
        """Commit alert changes made outside ingest (clock ticks, acknowledgements)."""
        if alerts_batch.empty():
            return
        commit = Commit()
        alerts_batch.fill(commit, self.destinations)
        await self.outbox.commit(commit)
        self.engine.notify(alerts_batch.alerts)

    def _encode(self, records: list[Record]) -> list[bytes]:
        lines = []
        self._times.new_batch()
        for record in records:
            try:
                lines.append(encode_record(record, self.site, self._times).line)
            except (ValueError, TypeError):
                # A record with no fields at all (e.g. AIS position with every value "not
                # available") has nothing to store; counted, the rest of the batch goes on.
                self.encode_errors[record.measurement] += 1
        return lines
