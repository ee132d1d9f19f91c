"""LocalSink: closing while a cancelled write's insert still runs in its thread is safe."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from hub.errors import SinkError
from hub.sinks import LocalSink


async def test_close_during_an_insert_waits_for_it_and_later_writes_fail_cleanly(
    tmp_path: Path,
) -> None:
    lines = [
        f"water_meter,meter_id=M{i % 10} total_m3={i}.5 {10**18 + i}".encode()
        for i in range(20_000)
    ]
    for attempt in range(5):
        path = tmp_path / f"local-{attempt}.sqlite"
        sink = LocalSink(path=path)
        task = asyncio.create_task(sink.write(lines))
        await asyncio.sleep(0)  # let the insert start in its worker thread
        task.cancel()  # a hub stopped with flush_timeout_s=0 does this
        await sink.aclose()
        with contextlib.suppress(asyncio.CancelledError, SinkError):
            await task
        with pytest.raises(SinkError, match="closed"):
            await sink.write(lines[:1])
        with sqlite3.connect(path) as db:  # an insert is all or nothing
            assert db.execute("SELECT count(*) FROM points").fetchone()[0] in (0, len(lines))
