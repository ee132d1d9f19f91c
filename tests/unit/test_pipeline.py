"""The ingest writer: group commit, acknowledgement only after commit, survival of a failed one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.alerts import AlertManager
from hub.clock import ManualClock
from hub.engine import Engine
from hub.outbox import Commit, Outbox
from hub.outbox_thread import Lane
from hub.pipeline import Pipeline
from hub.records import DoorEvent, WaterMeterReading
from hub.registry import Registry
from tests.util import wait_for


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


class _CountingRegistry(Registry):
    """Counts the records the pipeline has tagged, so the test can wait for a prepared step."""

    def __init__(self) -> None:
        super().__init__([])
        self.observed = 0

    def observe(self, record: Any) -> Any:
        self.observed += 1
        return super().observe(record)


class _HeldBulkOutbox(Outbox):
    """An outbox whose bulk commits wait at a gate, as behind a forwarder's work on the outbox
    thread: an urgent commit then overtakes them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = asyncio.Event()
        self.held = 0

    async def commit(self, batch: Commit, *, lane: Lane = Lane.ORDERED) -> None:
        if lane is Lane.BULK:
            self.held += 1
            await self.gate.wait()
        await super().commit(batch, lane=lane)


@contextlib.asynccontextmanager
async def _held_pipeline(
    tmp_path: Path, **kwargs: Any
) -> AsyncIterator[tuple[Pipeline, _HeldBulkOutbox, _CountingRegistry]]:
    """A running pipeline whose bulk commits wait at the outbox's gate until the test opens it."""
    outbox = _HeldBulkOutbox(path=tmp_path / "o.sqlite", max_bytes=10**8)
    await outbox.open()
    registry = _CountingRegistry()
    pipeline = Pipeline(
        site="s",
        clock=ManualClock(),
        registry=registry,
        engine=Engine([], AlertManager("s", 0)),
        outbox=outbox,
        destinations=[],
        **kwargs,
    )
    writer = asyncio.create_task(pipeline.run())
    try:
        yield pipeline, outbox, registry
    finally:
        outbox.gate.set()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await outbox.close()


async def test_a_publish_split_around_an_overtaking_door_commit_waits_for_both(
    tmp_path: Path,
) -> None:
    """A bulk publish whose last pieces ride on a door event's urgent commit is acknowledged
    only once its first pieces, in the bulk commit the urgent one overtook, are durable too."""
    async with _held_pipeline(tmp_path) as (pipeline, outbox, registry):
        bulk = asyncio.create_task(pipeline.publish([reading(i) for i in range(3000)]))
        await wait_for(lambda: outbox.held == 1 and registry.observed == 3000, timeout=30)
        door = DoorEvent(door_id="D-1", time_ns=1_767_225_600 * 10**9, event="forced", source="t")
        await pipeline.publish([door])  # durable ahead of the held bulk commit
        lines = [line for _, line in await outbox.peek_points(10_000)]
        assert any(line.startswith(b"door_event,") for line in lines)
        assert 1 < len(lines) < 3001  # with the rest of the bulk publish, not its first group
        assert not bulk.done()  # its first group is not durable yet
        outbox.gate.set()
        await bulk
        assert len(await outbox.peek_points(10_000)) == 3001


async def test_queued_groups_join_the_step_waiting_for_a_slow_commit(tmp_path: Path) -> None:
    """Group commit follows the disk: while one bulk commit is slow, the queued publishes are
    prepared into the next step, so they take one commit (one fsync) instead of one each."""
    async with _held_pipeline(tmp_path, write_batch=500) as (pipeline, outbox, registry):
        groups = [[reading(g * 500 + i) for i in range(500)] for g in range(5)]
        published = [asyncio.create_task(pipeline.publish(group)) for group in groups]
        await wait_for(lambda: outbox.held == 1 and registry.observed == 2500, timeout=30)
        outbox.gate.set()
        await asyncio.gather(*published)
        assert outbox.held == 2  # the first group, then the other four together
        assert len(await outbox.peek_points(10_000)) == 2500
