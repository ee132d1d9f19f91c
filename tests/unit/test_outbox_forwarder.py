"""Outbox budget, forwarder and dead letters against an in-process sink that fails on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.clock import SystemClock
from hub.errors import BatchTooLarge, PointRejected, SinkError, SinkRefused
from hub.forwarder import Forwarder
from hub.outbox import Commit, DeadLetters, Outbox
from hub.sinks import classify_influx
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
            raise PointRejected("HTTP 400: bad line")
        self.lines.extend(lines)

    async def aclose(self) -> None:
        return None


def line(i: int, tag: str = "ok") -> bytes:
    return f"m,t={tag} v={i}i {1_700_000_000_000_000_000 + i}".encode()


async def test_budget_drops_oldest_readings_never_alerts(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=64 * 1024)
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
    reopened = Outbox(path=tmp_path / "o.sqlite", max_bytes=64 * 1024)
    await reopened.open()
    assert (reopened.stats.rows, reopened.stats.dropped) == (len(kept), 5000 - len(readings))
    await reopened.close()


async def test_forwarder_retries_then_isolates_refused_lines(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    good = [line(i) for i in range(100)]
    bad = [line(1000, "BAD"), line(1001, "BAD")]
    await outbox.commit(Commit(readings=good[:40] + bad[:1] + good[40:70] + bad[1:] + good[70:]))
    sink = FlakySink(fail_times=3)
    fwd = Forwarder(
        outbox=outbox,
        sink=sink,
        clock=SystemClock(),
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


class RefusingSink:
    """Answers like InfluxDB whose database does not exist, until `fixed`; too large above 8
    lines or for a line containing b'HUGE'."""

    name = "influxdb"

    def __init__(self) -> None:
        self.fixed = False
        self.lines: list[bytes] = []
        self.refusals = 0

    async def write(self, lines: list[bytes]) -> None:
        if not self.fixed:
            self.refusals += 1
            raise SinkRefused('HTTP 404: {"error":"database not found: \\"hub\\""}')
        if len(lines) > 8 or any(b"HUGE" in line for line in lines):
            raise BatchTooLarge("HTTP 413: Request Entity Too Large")
        self.lines.extend(lines)

    async def aclose(self) -> None:
        return None


def forwarder(outbox: Outbox, sink: RefusingSink | FlakySink, batch: int = 64) -> Forwarder:
    return Forwarder(
        outbox=outbox, sink=sink, clock=SystemClock(), batch_size=batch, flush_interval_s=0.01,
        retry_initial_s=0.01, retry_max_s=0.05,
    )  # fmt: skip


async def test_refused_sink_keeps_every_row_then_delivers(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    lines = [line(i) for i in range(200)] + [line(999, "HUGE")]
    await outbox.commit(Commit(readings=lines))
    sink = RefusingSink()
    fwd = forwarder(outbox, sink)
    task = asyncio.create_task(fwd.run())
    try:
        await wait_for(lambda: sink.refusals >= 5, timeout=10)
        status = fwd.status()
        assert "database not found" in status.refused and not status.up
        assert outbox.stats.rows == 201 and outbox.stats.dead_letters == 0
        sink.fixed = True
        await wait_for(lambda: outbox.stats.rows == 0, timeout=10)
    finally:
        task.cancel()
    assert sorted(sink.lines) == sorted(lines[:-1])  # 413 split batches down to 8 lines
    dead = await outbox.dead_letter_rows()
    assert [p for _, p, _ in dead] == [lines[-1]]  # only the single point still too large
    assert fwd.status().refused == "" and fwd.status().up
    await outbox.close()


async def test_dead_letters_list_requeue_purge(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    await outbox.commit(
        Commit(readings=[line(i) for i in range(6)], alert_points=[b"alert x=1i 1"])
    )
    ids = [i for i, _ in await outbox.peek_points(10)]
    await outbox.dead_letter("influxdb", ids[:3], "HTTP 400: field type conflict", 1_000)
    await outbox.dead_letter("influxdb", ids[3:], "HTTP 400: field type conflict", 2_000)
    await outbox.commit(Commit(deliveries=[("mqtt", b'{"a": 1}')]))
    ((delivery_id, _),) = await outbox.peek_deliveries("mqtt", 10)
    await outbox.dead_letter_delivery("mqtt", delivery_id, "refused", 3_000)
    assert outbox.stats.rows == 0
    store = DeadLetters(tmp_path / "o.sqlite")  # as `hub dead-letters` opens it, hub running
    assert len(store.entries()) == 8
    assert [d.destination for d in store.entries(since_ns=2_500)] == ["mqtt"]
    assert store.requeue("influxdb", since_ns=2_000) == 4
    assert store.purge("mqtt") == 1
    assert len(store.entries()) == 3
    store.close()
    rows = await outbox.peek_points(10)  # the running outbox sees the requeued points
    assert [p for _, p in rows] == [line(3), line(4), line(5), b"alert x=1i 1"]
    assert outbox.stats.rows == 4 and outbox.lag_s() >= 0
    assert outbox.stats.dead_letters == 3
    await outbox.close()


def test_influx_answers_are_told_apart() -> None:
    """Bodies as InfluxDB 1.6.7 returned them here (see tests/integration/test_sink_refusal.py)."""
    point_faults = [
        (400, '{"error":"partial write: field type conflict: input field \\"v\\" on measurement '
              '\\"m\\" is type string, already exists as type integer dropped=1"}'),
        (400, '{"error":"unable to parse \'m,t= v=1i 3\': missing tag value"}'),
        (400, '{"error":"unable to parse \'m v=1i 99999999999999999999\': strconv.ParseInt: '
              'parsing \\"99999999999999999999\\": value out of range"}'),
        (422, '{"code":"unprocessable entity","message":"failure writing points to database: '
              'partial write: points beyond retention policy dropped=1"}'),
    ]  # fmt: skip
    for status, body in point_faults:
        assert isinstance(classify_influx(status, body), PointRejected), body
    assert isinstance(classify_influx(413, ""), BatchTooLarge)
    for status, body in [
        (404, '{"error":"database not found: \\"nope\\""}'),
        (401, '{"error":"authorization failed"}'),
        (403, '{"error":"user \\"u\\" is not authorized to write to database \\"hub\\""}'),
        (400, '{"error":"some whole-request complaint"}'),
    ]:
        assert isinstance(classify_influx(status, body), SinkRefused), body
    for status in (500, 503, 408, 429):
        error = classify_influx(status, "busy", "7")
        assert type(error) is SinkError and error.retry_after_s == 7.0  # type: ignore[attr-defined]
