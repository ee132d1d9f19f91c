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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from hub.backoff import Backoff
from hub.clock import Clock
from hub.errors import SinkError, SinkRefused, SinkRejected
from hub.outbox import Outbox
from hub.sinks import Sink

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
        while True:
            rows = await self.outbox.peek_points(self.batch_size)
            if len(rows) < self.batch_size:
                # Age-based flush: give a partial batch up to flush_interval_s to fill.
                self.outbox.new_points.clear()
                wait_s = self.flush_interval_s if rows else IDLE_CHECK_S
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.outbox.new_points.wait(), wait_s)
                rows = await self.outbox.peek_points(self.batch_size)
                if not rows:
                    continue
            await self._deliver(rows)

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

    async def _deliver(self, rows: list[tuple[int, bytes]]) -> None:
        """Write one batch; on a failure back off and return (the caller reads the rows again,
        so lines acknowledged before the failure are not sent twice)."""
        refused: list[str] = []
        try:
            await self._write_isolating(rows, refused)
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
            return
        except SinkError as exc:
            await self._back_off(exc)
            return
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

    async def _write_isolating(self, rows: list[tuple[int, bytes]], refused: list[str]) -> None:
        try:
            await self.sink.write([line for _, line in rows])
        except SinkRejected as exc:  # a bad point or a batch too large: split
            if len(rows) == 1:
                refused.append(str(exc))
                now_ns = self.clock.now_ns()
                await self.outbox.dead_letter(self.sink.name, [rows[0][0]], str(exc), now_ns)
                return
            half = len(rows) // 2
            await self._write_isolating(rows[:half], refused)
            await self._write_isolating(rows[half:], refused)
            return
        await self.outbox.ack_points(row_id for row_id, _ in rows)
        self.written += len(rows)
        self.batches += 1

    async def _back_off(self, exc: SinkError) -> None:
        self.errors += 1
        self.healthy = False
        self.last_error = str(exc)
        if self._backoff.failures == 0 and not isinstance(exc, SinkRefused):
            log.warning("sink %s unavailable, buffering in the outbox: %s", self.sink.name, exc)
        # A write arriving meanwhile does not cut the back-off short; only the timer does.
        await self._backoff.wait(getattr(exc, "retry_after_s", None) or 0.0)
