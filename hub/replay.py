"""`hub replay`: push a recorded file through the whole pipeline as fast as it goes, then flush."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from hub.app import Hub
from hub.config import HubConfig
from hub.errors import ProtocolError
from hub.ingest import records_from_lines
from hub.progress import Progress
from hub.records import Record

log = logging.getLogger("hub.replay")


def _jsonl_batches(
    path: Path, batch: int, now_ns: int, errors: list[int]
) -> Iterator[list[Record]]:
    out: list[Record] = []
    with path.open("rb") as f:
        for item in records_from_lines(f, "replay", now_ns):
            if isinstance(item, ProtocolError):
                errors[0] += 1
                continue
            out.append(item)
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


async def replay(cfg: HubConfig, path: Path, batch: int) -> int:
    cfg = cfg.model_copy(
        update={"sources": [], "http": cfg.http.model_copy(update={"enabled": False})}
    )
    hub = Hub(cfg)
    await hub.start()
    total_lines = _count_lines(path)
    progress = Progress(total_lines, "lines")
    errors = [0]
    started = time.monotonic()
    if path.suffix == ".jsonl":
        batches: Iterator[list[Record]] = _jsonl_batches(path, batch, hub.clock.now_ns(), errors)
        counts = None
    else:
        from drivers.nmea import iter_file_records

        batches, counts = iter_file_records(path, "replay", hub.clock, batch), None
    records = 0
    lines_before = 0
    for chunk in batches:
        await hub.pipeline.publish(chunk)
        records += len(chunk)
        lines_done = getattr(batches, "lines", None)
        if isinstance(lines_done, int):
            progress.update(lines_done - lines_before)
            lines_before = lines_done
        else:
            progress.update(len(chunk))
    progress.done = total_lines
    progress.close()
    ingest_s = time.monotonic() - started
    flushed = await hub.forwarder.flush(timeout_s=600) if hub.forwarder else True
    total_s = time.monotonic() - started
    await hub.stop(flush_timeout_s=0)
    del counts
    print(
        f"replayed {total_lines} lines -> {records} records in {ingest_s:.2f} s "
        f"({total_lines / max(ingest_s, 1e-9):,.0f} lines/s into the outbox); "
        f"flushed to {cfg.influxdb.api} in {total_s:.2f} s total; {errors[0]} bad lines",
        file=sys.stderr,
    )
    if not flushed:
        print("replay: the sink did not take every point; they stay in the outbox", file=sys.stderr)
        return 1
    return 0
