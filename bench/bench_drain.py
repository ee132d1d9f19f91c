"""Outbox drain into a real InfluxDB 1.6 vs the same points POSTed directly.

    .venv/bin/python bench/bench_drain.py [--points 500000] [--batch 5000]

The hub side is the durable outbox (SQLite WAL, fsync) drained by the hub's Forwarder through its
InfluxV1Sink; the baseline POSTs the same lines with the same sink and batch size from this one
process, straight from memory, into a separate database of the same influxd; two interleaved
rounds of half the points each, so server warm-up favours neither.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.clock import SystemClock  # noqa: E402
from hub.forwarder import Forwarder  # noqa: E402
from hub.outbox import Commit, Outbox  # noqa: E402
from hub.sinks import InfluxV1Sink  # noqa: E402
from tests.services import InfluxDB  # noqa: E402

T0_NS = 1_750_000_000_000_000_000


def make_lines(points: int) -> list[bytes]:
    """AIS position points as the hub writes them: 3,000 vessels, one point per vessel-second."""
    return [
        (
            f"ais_position,mmsi={244_000_000 + i % 3000},source=bench,msg_type=1 "
            f"lat={52 + (i % 997) / 1e4},lon={4 + (i % 991) / 1e4},sog={i % 200 / 10},"
            f"cog={i % 3600 / 10},heading={i % 360}i {T0_NS + i * 1_000_000}"
        ).encode()
        for i in range(points)
    ]


async def direct(lines: list[bytes], url: str, db: str, batch: int) -> float:
    sink = InfluxV1Sink(url=url, database=db)
    started = time.perf_counter()
    for start in range(0, len(lines), batch):
        await sink.write(lines[start : start + batch])
    seconds = time.perf_counter() - started
    await sink.aclose()
    return seconds


async def drained(lines: list[bytes], url: str, db: str, batch: int, tmp: Path) -> float:
    outbox = Outbox(path=tmp / "outbox.sqlite", max_bytes=2**31)
    await outbox.open()
    for start in range(0, len(lines), 10_000):
        await outbox.commit(Commit(readings=lines[start : start + 10_000]))
    sink = InfluxV1Sink(url=url, database=db)
    forwarder = Forwarder(
        outbox=outbox, sink=sink, clock=SystemClock(), batch_size=batch, flush_interval_s=0.05
    )
    started = time.perf_counter()
    task = asyncio.create_task(forwarder.run())
    await forwarder.flush(3600)
    seconds = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sink.aclose()
    await outbox.close()
    return seconds


def count(influx: InfluxDB, db: str) -> int:
    rows = influx.create_database(db).query("SELECT count(lat) FROM ais_position")
    return int(rows[0]["count"]) if rows else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    lines = make_lines(args.points)
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as name:
        tmp = Path(name)
        (tmp / "influx").mkdir()
        influx = InfluxDB(tmp / "influx")
        influx.start()
        try:
            for db in ("warmup", "direct", "outbox"):
                influx.raw_query(f'CREATE DATABASE "{db}"')
            asyncio.run(direct(lines[: args.batch * 4], influx.url, "warmup", args.batch))
            base = hub = 0.0
            half = len(lines) // 2  # two interleaved rounds, so neither path gets the warm server
            for part in (lines[:half], lines[half:]):
                base += asyncio.run(direct(part, influx.url, "direct", args.batch))
                for old in tmp.glob("outbox.sqlite*"):
                    old.unlink()
                hub += asyncio.run(drained(part, influx.url, "outbox", args.batch, tmp))
            stored = (count(influx, "direct"), count(influx, "outbox"))
        finally:
            influx.stop()
    n = args.points
    print(f"{n:,} points, batch {args.batch}, InfluxDB 1.x on loopback, gzip level 1")
    print(f"{'path':40} {'points/s':>10} {'ratio':>7}  stored")
    print(
        f"{'direct POST from memory (baseline)':40} {n / base:>10,.0f} {1.0:>6.2f}x  {stored[0]:,}"
    )
    print(
        f"{'outbox -> Forwarder -> InfluxDB':40} {n / hub:>10,.0f} {base / hub:>6.2f}x  {stored[1]:,}"
    )


if __name__ == "__main__":
    main()
