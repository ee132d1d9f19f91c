"""`hub replay`: push a recorded file through the whole pipeline as fast as it goes, then flush."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from hub.app import Hub
from hub.config import HubConfig
from hub.errors import ProtocolError
from hub.ingest import records_from_lines
from hub.progress import Progress
from hub.records import Record
from hub.source import SourceStats
from hub.wiring import tool


class Batches(Protocol):
    """What replay reads: record batches, with counters and how far into the file it got."""

    stats: SourceStats
    bytes_read: int

    def __iter__(self) -> Iterator[list[Record]]: ...


class JsonlReplay:
    """Batches of records from a .jsonl file (one record object per line)."""

    def __init__(self, path: Path, now_ns: int, batch: int) -> None:
        self.path, self.now_ns, self.batch = path, now_ns, batch
        self.stats = SourceStats()
        self.bytes_read = 0

    def __iter__(self) -> Iterator[list[Record]]:
        out: list[Record] = []
        with self.path.open("rb") as f:
            for line in f:
                self.bytes_read += len(line)
                self.stats.messages += 1
                for item in records_from_lines([line], "replay", self.now_ns):
                    if isinstance(item, ProtocolError):
                        self.stats.error(type(item).__name__)
                    else:
                        out.append(item)
                if len(out) >= self.batch:
                    yield out
                    out = []
        if out:
            yield out


REPLAY_WINDOW = 4  # chunks published and not yet durable


async def replay(cfg: HubConfig, path: Path, batch: int) -> int:
    http_off = cfg.http.model_copy(update={"enabled": False})
    hub = Hub(cfg.model_copy(update={"sources": [], "http": http_off}))
    await hub.start()
    if path.suffix == ".jsonl":
        source: Batches = JsonlReplay(path, hub.clock.now_ns(), batch)
    else:
        source = tool("nmea_file_replay")(path, "replay", hub.clock, batch_lines=batch)
    # A batch job: reading the capture on the loop is the work itself, nothing else waits.
    progress = Progress(path.stat().st_size, "bytes")  # noqa: ASYNC240
    started = time.monotonic()
    records = 0
    # A few chunks in flight: the next ones are decoded while the pipeline commits the last
    # (and its group commit takes what is queued when the disk is slower than the decoding).
    window: collections.deque[asyncio.Task[None]] = collections.deque()
    for chunk in source:
        window.append(asyncio.create_task(hub.pipeline.publish(chunk)))
        if len(window) > REPLAY_WINDOW:
            await window.popleft()
        records += len(chunk)
        progress.update(source.bytes_read - progress.done)
    while window:
        await window.popleft()
    progress.close()
    ingest_s = time.monotonic() - started
    flushed = await hub.forwarder.flush(timeout_s=3600) if hub.forwarder else True
    total_s = time.monotonic() - started
    await hub.stop(flush_timeout_s=0)
    stats = source.stats
    print(
        # Lines, not assembled messages: a multi-sentence AIS message is several lines.
        f"replay: {stats.messages} lines -> {records} records in {ingest_s:.2f} s "
        f"({stats.messages / max(ingest_s, 1e-9):,.0f} lines/s, "
        f"{records / max(ingest_s, 1e-9):,.0f} records/s into the durable outbox); "
        f"{stats.error_total} errors {dict(stats.errors) or ''}; "
        f"flushed to '{cfg.influxdb.api}' after {total_s:.2f} s",
        file=sys.stderr,
    )
    if not flushed:
        print("replay: the sink did not take every point; they stay in the outbox", file=sys.stderr)
        return 1
    return 0
