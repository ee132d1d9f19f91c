"""The ingest writer: group commit, acknowledgement only after commit, survival of a failed one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hub.alerts import AlertManager
from hub.clock import ManualClock
from hub.engine import Engine
from hub.outbox import Commit, Outbox
from hub.pipeline import Pipeline
from hub.records import DoorEvent, WaterMeterReading
from hub.registry import Registry


def reading(i: int) -> WaterMeterReading:
    return WaterMeterReading(
        meter_id=f"M-{i}", time_ns=1_767_225_600 * 10**9 + i, total_m3=float(i), source="t"
    )


async def test_failed_commit_is_reported_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**7)
    await outbox.open()
    pipeline = Pipeline(
        site="s",
        clock=ManualClock(),
        registry=Registry([]),
        engine=Engine([], AlertManager("s", 0)),
        outbox=outbox,
        destinations=[],
    )
    writer = asyncio.create_task(pipeline.run())
    real_commit = outbox.commit
    calls = 0

    async def failing_once(batch: Commit, **lane: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(28, "No space left on device")
        await real_commit(batch, **lane)

    monkeypatch.setattr(outbox, "commit", failing_once)
    try:
        with pytest.raises(OSError, match="No space left"):
            await pipeline.publish([reading(1)])  # not acknowledged: the source must retry
        await pipeline.publish([reading(2), reading(3)])  # the writer is still there
        assert pipeline.commit_failures == 1 and not writer.done()
        rows = await outbox.peek_points(10)
        assert [b"meter_id=M-2" in r or b"meter_id=M-3" in r for _, r in rows] == [True, True]
    finally:
        writer.cancel()
        await outbox.close()


async def test_concurrent_publishers_share_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**7)
    await outbox.open()
    pipeline = Pipeline(
        site="s",
        clock=ManualClock(),
        registry=Registry([]),
        engine=Engine([], AlertManager("s", 0)),
        outbox=outbox,
        destinations=[],
    )
    commits = 0
    real_commit = outbox.commit

    async def counting(batch: Commit, **lane: Any) -> None:
        nonlocal commits
        commits += 1
        await real_commit(batch, **lane)

    monkeypatch.setattr(outbox, "commit", counting)
    # Queue 50 publishes before the writer starts: they are folded into one transaction.
    publishes = [asyncio.create_task(pipeline.publish([reading(i)])) for i in range(50)]
    await asyncio.sleep(0)
    writer = asyncio.create_task(pipeline.run())
    try:
        await asyncio.gather(*publishes)
        assert commits == 1 and outbox.stats.rows == 50
    finally:
        writer.cancel()
        await outbox.close()


async def test_door_event_is_committed_ahead_of_queued_bulk_readings(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    pipeline = Pipeline(
        site="s",
        clock=ManualClock(),
        registry=Registry([]),
        engine=Engine([], AlertManager("s", 0)),
        outbox=outbox,
        destinations=[],
    )
    bulk = [
        asyncio.create_task(pipeline.publish([reading(b * 1000 + i) for i in range(1000)]))
        for b in range(8)
    ]
    await asyncio.sleep(0)
    door = DoorEvent(door_id="D-1", time_ns=1_767_225_600 * 10**9, event="forced", source="t")
    urgent = asyncio.create_task(pipeline.publish([door]))
    await asyncio.sleep(0)
    writer = asyncio.create_task(pipeline.run())
    try:
        await urgent
        assert not all(task.done() for task in bulk)  # acknowledged before the bulk backlog
        await asyncio.gather(*bulk)
        lines = [line for _, line in await outbox.peek_points(10_000)]
        assert len(lines) == 8001
        position = next(i for i, line in enumerate(lines) if line.startswith(b"door_event,"))
        assert position < 1000  # committed after at most one slice of the bulk readings
    finally:
        writer.cancel()
        await outbox.close()
