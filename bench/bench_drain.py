"""Outbox drain into a real InfluxDB 1.6 vs the same points POSTed directly.

    .venv/bin/python bench/bench_drain.py [--points 500000] [--batch 5000] [--rounds 4]

The hub side is the durable outbox (SQLite WAL, fsync) drained by the hub's Forwarder through its
InfluxV1Sink; the baseline POSTs the same lines with the same sink and batch size from this one
process, straight from memory, into a separate database of the same influxd. The points are
split into `--rounds` interleaved rounds (which path goes first alternates), so server warm-up and
a neighbour's load favour neither; the ratio is printed over all rounds and as the median of the
rounds' ratios, with the CPU time per batch of this process and of influxd for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Side:
    """Wall seconds per round and CPU seconds (this process, influxd) one path spent."""

    server_pid: int
    wall: list[float] = field(default_factory=list)
    own_cpu: float = 0.0
    server_cpu: float = 0.0

    def start(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), cpu_s(self.server_pid)

    def stop(self, started: tuple[float, float, float]) -> None:
        wall, own, server = started
        self.wall.append(time.perf_counter() - wall)
        self.own_cpu += time.process_time() - own
        self.server_cpu += cpu_s(self.server_pid) - server


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def direct(lines: list[bytes], url: str, db: str, batch: int, side: Side | None) -> None:
    sink = InfluxV1Sink(url=url, database=db)
    started = side.start() if side else None
    for start in range(0, len(lines), batch):
        await sink.write(lines[start : start + batch])
    if side and started:
        side.stop(started)
    await sink.aclose()


async def drained(lines: list[bytes], url: str, db: str, batch: int, tmp: Path, side: Side) -> None:
    outbox = Outbox(path=tmp / "outbox.sqlite", max_bytes=2**31)
    await outbox.open()
    for start in range(0, len(lines), 10_000):
        await outbox.commit(Commit(readings=lines[start : start + 10_000]))
    sink = InfluxV1Sink(url=url, database=db)
    forwarder = Forwarder(
        outbox=outbox, sink=sink, clock=SystemClock(), batch_size=batch, flush_interval_s=0.05
    )
    started = side.start()
    task = asyncio.create_task(forwarder.run())
    await forwarder.flush(3600)
    side.stop(started)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sink.aclose()
    await outbox.close()


def count(influx: InfluxDB, db: str) -> int:
    rows = influx.create_database(db).query("SELECT count(lat) FROM ais_position")
    return int(rows[0]["count"]) if rows else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    lines = make_lines(args.points)
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as name:
        tmp = Path(name)
        (tmp / "influx").mkdir()
        influx = InfluxDB(tmp / "influx")
        influx.start()
        assert influx.proc is not None
        base, hub = Side(influx.proc.pid), Side(influx.proc.pid)
        try:
            for db in ("warmup", "direct", "outbox"):
                influx.raw_query(f'CREATE DATABASE "{db}"')
            asyncio.run(direct(lines[: args.batch * 4], influx.url, "warmup", args.batch, None))
            size = -(-len(lines) // args.rounds)
            for r, start in enumerate(range(0, len(lines), size)):
                part = lines[start : start + size]
                for old in tmp.glob("outbox.sqlite*"):
                    old.unlink()
                runs = [
                    direct(part, influx.url, "direct", args.batch, base),
                    drained(part, influx.url, "outbox", args.batch, tmp, hub),
                ]
                for run in runs if r % 2 == 0 else runs[::-1]:
                    asyncio.run(run)
            stored = (count(influx, "direct"), count(influx, "outbox"))
        finally:
            influx.stop()
    report(args, base, hub, stored)


def report(args: argparse.Namespace, base: Side, hub: Side, stored: tuple[int, int]) -> None:
    n, batches = args.points, -(-args.points // args.batch)
    ratios = [b / h for b, h in zip(base.wall, hub.wall, strict=True)]
    print(
        f"{n:,} points, batch {args.batch}, {args.rounds} interleaved rounds, "
        "InfluxDB 1.x on loopback, gzip level 1"
    )
    print(f"{'path':34} {'points/s':>9} {'ratio':>6} {'median':>7}  {'CPU ms/batch: own':>17}"
          f" {'influxd':>7}  stored")  # fmt: skip
    for label, side, ratio, median, points in (
        ("direct POST from memory (baseline)", base, 1.0, 1.0, stored[0]),
        ("outbox -> Forwarder -> InfluxDB", hub, sum(base.wall) / sum(hub.wall),
         statistics.median(ratios), stored[1]),
    ):  # fmt: skip
        print(
            f"{label:34} {n / sum(side.wall):>9,.0f} {ratio:>5.2f}x {median:>6.2f}x  "
            f"{side.own_cpu * 1000 / batches:>17.1f} {side.server_cpu * 1000 / batches:>7.1f}"
            f"  {points:,}"
        )
    print("round ratios: " + " ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
