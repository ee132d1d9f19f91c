"""Forwarder: moves points from the outbox to the sink, deleting them only after a 2xx.

Batches by size (`batch_size`) and age (`flush_interval_s`). Transient failures back off
exponentially with jitter up to `retry_max_s` and honour Retry-After; the rows stay in the
outbox meanwhile. A batch the sink refuses for good is split in halves until the bad lines are
isolated: those go to the dead-letter table (counted), the good ones are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hub.backoff import Backoff
from hub.clock import Clock
from hub.errors import SinkError, SinkRejected
from hub.outbox import Outbox
from hub.sinks import Sink

log = logging.getLogger("hub.forwarder")
NS = 1_000_000_000


class Forwarder:
    def __init__(
        self,
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
        self.lag_s = 0.0
        self.healthy = True
        self.last_error = ""

    async def run(self) -> None:
        while True:
            rows = await self.outbox.peek_points(self.batch_size)
            if len(rows) < self.batch_size:
                # Age-based flush: give a partial batch up to flush_interval_s to fill.
                self.outbox.new_points.clear()
                if not rows:
                    self.lag_s = 0.0
                    await self.outbox.new_points.wait()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.outbox.new_points.wait(), self.flush_interval_s)
                rows = await self.outbox.peek_points(self.batch_size)
            self._update_lag(rows[0][1])
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
        """Write rows, retrying transient failures until they succeed."""
        while True:
            refused: list[str] = []
            try:
                await self._write_isolating(rows, refused)
            except SinkError as exc:
                await self._back_off(exc)
                continue
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
                    "sink %s is back after %d failed attempts",
                    self.sink.name,
                    self._backoff.failures,
                )
            self._backoff.reset()
            self.healthy = True
            return

    async def _write_isolating(self, rows: list[tuple[int, bytes]], refused: list[str]) -> None:
        try:
            await self.sink.write([line for _, line in rows])
        except SinkRejected as exc:
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
        if self._backoff.failures == 0:
            log.warning("sink %s unavailable, buffering in the outbox: %s", self.sink.name, exc)
        # A write arriving meanwhile does not cut the back-off short; only the timer does.
        await self._backoff.wait(getattr(exc, "retry_after_s", None) or 0.0)

    def _update_lag(self, oldest_line: bytes) -> None:
        try:
            point_ns = int(oldest_line.rsplit(b" ", 1)[1])
        except (IndexError, ValueError):
            return
        self.lag_s = max(0.0, (self.clock.now_ns() - point_ns) / NS)
