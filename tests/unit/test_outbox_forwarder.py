"""Outbox budget and forwarder behaviour against an in-process sink that fails on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.clock import SystemClock
from hub.errors import SinkError, SinkRejected
from hub.forwarder import Forwarder
from hub.outbox import Commit, Outbox
from tests.util import wait_for


class FlakySink:
    """Fails the first `fail_times` writes transiently; refuses lines containing b'BAD'."""

    name = "flaky"

    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.calls = 0
        self.lines: list[bytes] = []

    async def write(self, lines: list[bytes]) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise SinkError("HTTP 503: busy")
        if any(b"BAD" in line for line in lines):
            raise SinkRejected("HTTP 400: bad line")
        self.lines.extend(lines)

    async def aclose(self) -> None:
        return None


def line(i: int, tag: str = "ok") -> bytes:
    return f"m,t={tag} v={i}i {1_700_000_000_000_000_000 + i}".encode()


async def test_budget_drops_oldest_readings_never_alerts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=64 * 1024)
    await outbox.open()
    alert_lines = [line(i, "alert") for i in range(50)]
    await outbox.commit(Commit(alert_points=alert_lines))
    for start in range(0, 5000, 500):
        await outbox.commit(Commit(readings=[line(i) for i in range(start, start + 500)]))
    assert outbox.stats.bytes <= 64 * 1024
    assert outbox.stats.dropped > 0
    rows = await outbox.peek_points(100_000)
    kept = [r for _, r in rows]
    assert all(a in kept for a in alert_lines)  # alerts never dropped
    readings = [r for r in kept if b"t=ok" in r]
    assert readings[-1] == line(4999)  # the newest readings survive, the oldest went
    assert len(readings) + outbox.stats.dropped == 5000
    await outbox.close()
    reopened = Outbox(tmp_path / "o.sqlite", max_bytes=64 * 1024)
    await reopened.open()
    assert (reopened.stats.rows, reopened.stats.dropped) == (len(kept), 5000 - len(readings))
    await reopened.close()


async def test_forwarder_retries_then_isolates_refused_lines(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    good = [line(i) for i in range(100)]
    bad = [line(1000, "BAD"), line(1001, "BAD")]
    await outbox.commit(Commit(readings=good[:40] + bad[:1] + good[40:70] + bad[1:] + good[70:]))
    sink = FlakySink(fail_times=3)
    fwd = Forwarder(
        outbox,
        sink,
        SystemClock(),
        batch_size=64,
        flush_interval_s=0.01,
        retry_initial_s=0.01,
        retry_max_s=0.05,
    )
    task = asyncio.create_task(fwd.run())
    try:
        await wait_for(lambda: outbox.stats.rows == 0, timeout=10)
    finally:
        task.cancel()
    assert sorted(sink.lines) == sorted(good)  # every good line exactly once after isolation
    assert len(sink.lines) == len(set(sink.lines))
    dead = await outbox.dead_letter_rows()
    assert sorted(p for _, p, _ in dead) == sorted(bad)
    assert fwd.errors == 3 and fwd.healthy
    await outbox.close()
