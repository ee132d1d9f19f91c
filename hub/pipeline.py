"""Ingest: records from sources are tagged, passed through the rules and committed in groups.

Many concurrent `publish` calls are folded into one SQLite transaction (group commit): a source
awaits its own future, which resolves only after the transaction holding its records committed.
The queue in front is bounded, so a flood from one source slows that source, not the hub.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from hub.clock import Clock
from hub.engine import AlertBatch, Engine
from hub.outbox import Commit, Outbox
from hub.outbox_thread import Lane
from hub.records import DoorEvent, Record, UniqueTimes, encode_record
from hub.registry import Observation, Registry
from hub.vessels import VesselTable

log = logging.getLogger("hub.pipeline")

_Item = tuple[Sequence[Record], "asyncio.Future[None]"]

# Records a person or an alert is waiting on: their publishes go ahead of bulk telemetry.
URGENT_RECORDS: frozenset[type] = frozenset({DoorEvent})
# While door events are about, bulk records are tagged, checked and encoded in slices sized to
# take about this long, with the event loop free in between, so an urgent publish waits for one
# short slice, not for a whole group commit. Otherwise a group goes through the rules in one
# call: each call serialises the rule-state entries it changed, so a slice costs more than its
# records, and slices are never smaller than MIN_SLICE_RECORDS.
SLICE_BUDGET_S = 0.002
MIN_SLICE_RECORDS = 64
PIECE_RECORDS = 32  # publishes are cut into pieces of this many records, slices take pieces
# For this long after an urgent publish, bulk group commits hold at most this many records: an
# urgent commit may overtake queued bulk work on the outbox thread, but not the bulk commit
# already running there (~20 ms for 256 rows, ~100 ms or more for 2000 on a loaded gateway).
URGENT_WINDOW_S = 2.0
URGENT_WINDOW_COMMIT_RECORDS = 256
# A step waiting for the bulk commit ahead of it keeps taking queued records, up to this many
# groups of `write_batch`: when an fsync takes longer than preparing a group (a slow SD card, a
# loaded disk), commits grow instead of the loop idling, and the rows per fsync follow the disk.
GROW_LIMIT = 4


class _Slice(NamedTuple):
    records: Sequence[Record]
    future: asyncio.Future[None]
    last: bool  # the slice whose commit acknowledges the publish


@dataclass(slots=True, kw_only=True)
class _Step:
    """One group commit: its slices, tagged, through the rules and encoded."""

    commit: Commit = field(default_factory=Commit)
    slices: list[_Slice] = field(default_factory=list)
    urgent: bool = False
    # An urgent step carrying bulk slices: how many (they come first) and the bulk commit that
    # was in flight then. The urgent commit may overtake it on the outbox thread, so a publish
    # whose earlier pieces are in it is acknowledged only once that commit is durable too.
    carried: int = 0
    after: asyncio.Task[None] | None = None
    observations: list[Observation] = field(default_factory=list)
    alerts: list[AlertBatch] = field(default_factory=list)


def _is_urgent(records: Sequence[Record]) -> bool:
    return any(type(record) in URGENT_RECORDS for record in records)


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
        self._urgent: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_batches)
        self._backlog: collections.deque[_Slice] = collections.deque()  # taken, not yet tagged
        self._ready = asyncio.Event()
        self._urgent_at = -URGENT_WINDOW_S  # loop time of the last urgent publish
        self.encode_errors: Counter[str] = Counter()
        self.records_in = 0
        self.commit_failures = 0
        self.vessels = vessels
        self._times = UniqueTimes()  # stored points stay unique on (series, timestamp)
        self._record_s = 50e-6  # moving average of the loop time one bulk record takes
        self._in_flight_urgent: asyncio.Task[None] | None = None
        self._bulk: asyncio.Task[None] | None = None

    async def publish(self, records: Sequence[Record]) -> None:
        """Hand records to the hub; returns once they are durable in the outbox."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        queue = self._queue
        if _is_urgent(records):
            queue, self._urgent_at = self._urgent, loop.time()
        await queue.put((records, future))
        self._ready.set()
        await future

    async def run(self) -> None:
        """The single writer: drains the queues into group commits until cancelled.

        One bulk commit is in flight on the outbox thread while the next group is tagged,
        passed through the rules and encoded on the loop, and one urgent commit beside it:
        urgent publishes that arrive meanwhile wait for it and share the next urgent commit,
        while bulk work goes on. Bulk commits stay in order, and so do urgent ones; the outbox
        thread runs an urgent commit ahead of queued bulk work it shares no alert or rule
        state with."""
        self._in_flight_urgent = self._bulk = None
        try:
            while True:
                await self._wait_for_work()
                if self._urgent_due():
                    self._launch_urgent(None)
                    continue
                step = await self._bulk_step()
                while step is not None and self._bulk is not None and not self._bulk.done():
                    if self._urgent_due():
                        self._launch_urgent(step)
                        step = None
                        break
                    if self._bulk_waiting() and self._may_grow(step):
                        await self._grow(step)  # group commit: more rows on the next fsync
                        continue
                    self._ready.clear()
                    await self._ready.wait()
                if step is not None:
                    self._bulk = asyncio.create_task(self._finish(step, Lane.BULK))
                    self._bulk.add_done_callback(self._wake)
        finally:  # the commits run on regardless: settle their sources
            for task in (self._in_flight_urgent, self._bulk):
                if task is not None:
                    await asyncio.shield(task)

    def _wake(self, _task: asyncio.Task[None]) -> None:
        self._ready.set()

    def _bulk_waiting(self) -> bool:
        return not self._queue.empty() or bool(self._backlog)

    def _urgent_due(self) -> bool:
        """Urgent publishes queued, and no urgent commit in flight (or held) to wait for."""
        in_flight = self._in_flight_urgent
        return not self._urgent.empty() and (in_flight is None or in_flight.done())

    async def _wait_for_work(self) -> None:
        while not self._urgent_due() and not self._bulk_waiting():
            self._ready.clear()
            await self._ready.wait()

    def _launch_urgent(self, unsubmitted: _Step | None) -> None:
        """Tag, check and encode the queued urgent publishes and commit them now, together
        with the bulk step prepared so far (after it in the same transaction): the bulk rows
        ride on the urgent commit's fsync instead of needing one of their own."""
        step = unsubmitted or _Step()
        step.urgent = True
        step.carried, step.after = len(step.slices), self._bulk
        while not self._urgent.empty() and len(step.observations) < 2 * self.write_batch:
            records, future = self._urgent.get_nowait()
            self._add(step, [_Slice(records, future, True)])
        self._in_flight_urgent = asyncio.create_task(self._finish(step, Lane.URGENT))
        self._in_flight_urgent.add_done_callback(self._wake)

    async def _bulk_step(self) -> _Step | None:
        """Up to `write_batch` bulk records, slice by slice, with the loop free in between;
        None if urgent publishes arrived meanwhile and took the slices into their commit."""
        step = _Step()
        # Outside the urgent window a group goes through the rules in one call (each call
        # serialises the rule-state entries it changed, so a vessel heard twice is written once).
        limit = slice_records = self.write_batch
        if asyncio.get_running_loop().time() - self._urgent_at < URGENT_WINDOW_S:
            limit = min(limit, URGENT_WINDOW_COMMIT_RECORDS)
            slice_records = max(MIN_SLICE_RECORDS, int(SLICE_BUDGET_S / self._record_s))
        while len(step.observations) < limit:
            count = min(limit - len(step.observations), slice_records)
            slices = self._take_bulk(count)
            if not slices:
                break
            started = time.perf_counter()
            self._add(step, slices)
            taken = sum(len(piece.records) for piece in slices)
            self._record_s = 0.7 * self._record_s + 0.3 * (time.perf_counter() - started) / taken
            await asyncio.sleep(0)  # an urgent publish gets in here
            if self._urgent_due():
                self._launch_urgent(step)
                return None
        return step

    def _may_grow(self, step: _Step) -> bool:
        """A prepared step may take more records while it waits for the bulk commit ahead of
        it, up to GROW_LIMIT groups, unless door events are about (they want short commits)."""
        if asyncio.get_running_loop().time() - self._urgent_at < URGENT_WINDOW_S:
            return False
        return len(step.observations) < GROW_LIMIT * self.write_batch

    async def _grow(self, step: _Step) -> None:
        slices = self._take_bulk(self.write_batch)
        if slices:
            self._add(step, slices)
        await asyncio.sleep(0)  # an urgent publish, or the commit ahead, gets in here

    def _take_bulk(self, limit: int) -> list[_Slice]:
        """Up to `limit` records from the backlog, splitting publishes into slices."""
        taken: list[_Slice] = []
        count = 0
        while count < limit:
            if not self._backlog:
                if self._queue.empty():
                    break
                records, future = self._queue.get_nowait()
                cuts = range(0, len(records), PIECE_RECORDS)
                self._backlog.extend(
                    _Slice(records[i : i + PIECE_RECORDS], future, i == cuts[-1]) for i in cuts
                )
            piece = self._backlog.popleft()
            if piece.future.done() and not piece.future.cancelled():
                continue  # an earlier slice of its publish failed: the source retries it all
            if count + len(piece.records) > limit and taken:
                self._backlog.appendleft(piece)
                break
            taken.append(piece)
            count += len(piece.records)
        return taken

    def _add(self, step: _Step, slices: list[_Slice]) -> None:
        try:
            observations = [self.registry.observe(r) for piece in slices for r in piece.records]
            commit = Commit(readings=self._encode([o.record for o in observations]))
            alerts = self.engine.on_records(observations, self.clock.now_ns())
            alerts.fill(commit, self.destinations)
        except Exception as exc:  # a failing rule or encoder must not stop the writer
            self._fail(slices, exc)
            return
        if step.slices:
            step.commit.extend(commit)
        else:
            step.commit = commit
        step.slices += slices
        step.observations += observations
        step.alerts.append(alerts)

    async def _finish(self, step: _Step, lane: Lane) -> None:
        if not step.slices:
            return
        try:
            await self.outbox.commit(step.commit, lane=lane)
        except Exception as exc:  # disk full, I/O error: the writer must outlive it
            self.engine.unsaved(step.commit)
            self._fail(step.slices, exc)
            await asyncio.sleep(1.0)  # sources see the error and retry; don't spin
            return
        self.records_in += len(step.observations)
        _settle(step.slices[step.carried :])
        if step.after is not None and step.carried:
            await asyncio.shield(step.after)  # it settles (or fails) its own pieces first
        _settle(step.slices[: step.carried])
        if self.vessels is not None:
            self.vessels.update(step.observations)
        for alerts in step.alerts:
            self.engine.notify(alerts.alerts)

    def _fail(self, slices: list[_Slice], exc: Exception) -> None:
        self.commit_failures += 1
        for piece in slices:
            if not piece.future.done():
                piece.future.set_exception(exc)
        count = sum(len(piece.records) for piece in slices)
        log.error("outbox commit failed; %d records not acknowledged: %r", count, exc)

    async def commit_alerts(self, alerts_batch: AlertBatch) -> None:
        """Commit alert and rule-state changes made outside ingest (clock ticks, acks)."""
        if alerts_batch.empty():
            return
        commit = Commit()
        alerts_batch.fill(commit, self.destinations)
        try:
            await self.outbox.commit(commit)
        except Exception:
            self.engine.unsaved(commit)  # its rule state goes with the next commit
            raise
        self.engine.notify(alerts_batch.alerts)

    def _encode(self, records: list[Record]) -> list[bytes]:
        """Each record's line (one compiled encoder per record class, see hub.records)."""
        lines: list[bytes] = []
        append, site, times = lines.append, self.site, self._times
        times.new_batch()
        for record in records:
            try:
                append(encode_record(record, site, times).line)
            except (ValueError, TypeError):
                # A record with no fields at all (e.g. AIS position with every value "not
                # available") has nothing to store; counted, the rest of the batch goes on.
                self.encode_errors[record.measurement] += 1
        return lines


def _settle(slices: list[_Slice]) -> None:
    for piece in slices:
        if piece.last and not piece.future.done():
            piece.future.set_result(None)
