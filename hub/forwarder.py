"""Forwarder: moves points from the outbox to the sink, deleting them only after a 2xx.

Batches by size (`batch_size`) and age (`flush_interval_s`). Transient failures back off
exponentially with jitter up to `retry_max_s` and honour Retry-After; the rows stay in the
outbox meanwhile. What the sink says decides what happens to a batch it does not accept:
- it names a bad point (PointRejected): the batch is split in halves until the bad lines are
  isolated; those go to the dead-letter table (counted), the good ones are written;
- it is too large (BatchTooLarge, 413): split likewise; only a single point still too large
  is dead-lettered;
- it refuses the request as a whole (SinkRefused: 401/403/404, database missing): the sink is
  wrong, not the data. Every row stays, the forwarder backs off and reports `refused` (the
  `sink_refused` hub alert, /healthz and the status page read it) until a write succeeds.

Pipelined, one request in flight: while a full batch is being sent, the next one is read from
the outbox (one body of joined lines) and encoded (gzip) in a worker thread, and an accepted
batch is deleted on the outbox thread while the next one is sent. After a failure or at a
partial batch the forwarder waits for those deletes and reads from the head again, so a failed
batch is sent again exactly and an accepted one never. A crash between a 2xx and the delete
sends the batch once more; InfluxDB keeps one copy of a point written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from hub.backoff import Backoff
from hub.clock import Clock
from hub.errors import SinkError, SinkRefused, SinkRejected
from hub.outbox import Outbox, PointBatch
from hub.sinks import BodySink, Sink

log = logging.getLogger("hub.forwarder")
IDLE_CHECK_S = 5.0  # an idle forwarder looks again this often (rows requeued by the CLI)


@dataclass(slots=True, frozen=True, kw_only=True)
class SinkStatus:
    """A snapshot for /healthz, the status page and /metrics."""

    name: str
    up: bool  # the last write attempt succeeded
    refused: str  # why the sink refuses every write; "" when it does not
    last_error: str
    lag_s: float  # age of the oldest point not yet acknowledged
    written: int
    errors: int


class Forwarder:
    def __init__(
        self,
        *,
        outbox: Outbox,
        sink: Sink,
        clock: Clock,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.clock = clock
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self.errors = 0
        self.written = 0
        self.batches = 0
        self.healthy = True
        self.refused = ""
        self.last_error = ""
        self._body_sink = sink if isinstance(sink, BodySink) else None
        self._accepted: list[PointBatch] = []  # acknowledged, delete not queued yet
        self._acks: set[asyncio.Future[None]] = set()
        self._ack_error: BaseException | None = None

    @property
    def lag_s(self) -> float:
        """Age of the oldest unsent row: it keeps growing while the sink is down."""
        return self.outbox.lag_s()

    def status(self) -> SinkStatus:
        return SinkStatus(
            name=self.sink.name,
            up=self.healthy,
            refused=self.refused,
            last_error=self.last_error,
            lag_s=self.lag_s,
            written=self.written,
            errors=self.errors,
        )

    async def run(self) -> None:
        try:
            while True:
                await self._settle_acks()  # a read from the head must not see acked rows
                batch = await self.outbox.peek_batch(self.batch_size)
                if batch.count < self.batch_size:
                    # Age-based flush: give a partial batch up to flush_interval_s to fill.
                    self.outbox.new_points.clear()
                    wait_s = self.flush_interval_s if batch.count else IDLE_CHECK_S
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.outbox.new_points.wait(), wait_s)
                    batch = await self.outbox.peek_batch(self.batch_size)
                    if not batch.count:
                        continue
                await self._stream(batch, await self._encode(batch))
        finally:
            await self._settle_acks()

    async def _stream(self, batch: PointBatch, payload: bytes) -> None:
        """Send `batch`, then each full batch after it, reading and encoding the next one while
        the current one is in flight. Returns at a partial batch or a failure: the caller
        reads from the head again, so a failed batch is sent again exactly."""
        while True:
            ahead = None
            if batch.count == self.batch_size:
                ahead = asyncio.create_task(self._read_ahead(batch.last_id))
            self._start_acks()  # queued on the outbox thread behind that read
            try:
                delivered = await self._deliver(batch, payload)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            if ahead is None or not delivered:
                if ahead is not None:
                    ahead.cancel()  # it only reads
                return
            batch, payload = await ahead
            if batch.count < self.batch_size:
                return
            self._raise_ack_error()

    async def _read_ahead(self, after_id: int) -> tuple[PointBatch, bytes]:
        batch = await self.outbox.peek_batch(self.batch_size, after_id)
        if batch.count < self.batch_size:  # left for the age-based flush
            return batch, b""
        return batch, await self._encode(batch)

    async def _encode(self, batch: PointBatch) -> bytes:
        if self._body_sink is None:
            return batch.body
        return await asyncio.to_thread(self._body_sink.encode, batch.body)

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox holds no points (True) or the timeout passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.outbox.stats.rows > 0:
            if loop.time() > deadline:
                return False
            self.outbox.new_points.set()
            await asyncio.sleep(0.05)
        return True

    async def _deliver(self, batch: PointBatch, payload: bytes) -> bool:
        """Write one batch; on a failure back off and return False."""
        refused: list[str] = []
        try:
            await self._write_batch(batch, payload, refused)
        except SinkRefused as exc:
            if not self.refused:
                log.error(
                    "sink %s refuses every write, keeping %d point(s) in the outbox: %s",
                    self.sink.name,
                    self.outbox.stats.rows,
                    exc,
                )
            self.refused = str(exc)
            await self._back_off(exc)
            return False
        except SinkError as exc:
            await self._back_off(exc)
            return False
        finally:
            if refused:
                log.warning(
                    "sink %s refused %d point(s) for good; moved to the dead-letter table: %s",
                    self.sink.name,
                    len(refused),
                    refused[0],
                )
        if self._backoff.failures:
            log.info(
                "sink %s is back after %d failed attempts", self.sink.name, self._backoff.failures
            )
        self._backoff.reset()
        self.healthy = True
        self.refused = ""
        return True

    async def _write_batch(self, batch: PointBatch, payload: bytes, refused: list[str]) -> None:
        try:
            if self._body_sink is not None:
                await self._body_sink.send(payload)
            else:
                await self.sink.write(payload.split(b"\n"))
        except SinkRejected as exc:  # a bad point or a batch too large: split
            rows = await self.outbox.points_between(batch.first_id, batch.last_id)
            await self._split(rows, exc, refused)
            return
        self._ack_later(batch)
        self.written += batch.count
        self.batches += 1

    async def _write_isolating(self, rows: list[tuple[int, bytes]], refused: list[str]) -> None:
        try:
            await self.sink.write([line for _, line in rows])
        except SinkRejected as exc:
            await self._split(rows, exc, refused)
            return
        await self.outbox.ack_points(row_id for row_id, _ in rows)
        self.written += len(rows)
        self.batches += 1

    async def _split(
        self, rows: list[tuple[int, bytes]], exc: SinkRejected, refused: list[str]
    ) -> None:
        """Halve a refused batch until the bad lines are alone; those go to the dead letters."""
        if not rows:  # the budget dropped them meanwhile
            return
        if len(rows) == 1:
            refused.append(str(exc))
            now_ns = self.clock.now_ns()
            await self.outbox.dead_letter(self.sink.name, [rows[0][0]], str(exc), now_ns)
            return
        half = len(rows) // 2
        await self._write_isolating(rows[:half], refused)
        await self._write_isolating(rows[half:], refused)

    def _ack_later(self, batch: PointBatch) -> None:
        """Delete acknowledged rows on the outbox thread while the next batch is in flight."""
        self._accepted.append(batch)

    def _start_acks(self) -> None:
        for batch in self._accepted:
            ack = asyncio.ensure_future(self.outbox.ack_batch(batch))
            self._acks.add(ack)
            ack.add_done_callback(self._ack_done)
        self._accepted.clear()

    def _ack_done(self, ack: asyncio.Future[None]) -> None:
        self._acks.discard(ack)
        if not ack.cancelled() and ack.exception() is not None and self._ack_error is None:
            self._ack_error = ack.exception()

    async def _settle_acks(self) -> None:
        self._start_acks()
        while self._acks:
            await asyncio.wait(list(self._acks))
        self._raise_ack_error()

    def _raise_ack_error(self) -> None:
        """An outbox that cannot delete fails the forwarder, as a synchronous ack did."""
        if self._ack_error is not None:
            error, self._ack_error = self._ack_error, None
            raise error

    async def _back_off(self, exc: SinkError) -> None:
        self.errors += 1
        self.healthy = False
        self.last_error = str(exc)
        if self._backoff.failures == 0 and not isinstance(exc, SinkRefused):
            log.warning("sink %s unavailable, buffering in the outbox: %s", self.sink.name, exc)
        # A write arriving meanwhile does not cut the back-off short; only the timer does.
        await self._backoff.wait(getattr(exc, "retry_after_s", None) or 0.0)
