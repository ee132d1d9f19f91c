"""Modbus RTU: 32 meters on a pty at 9600 baud against the line's frame-time limit.

    .venv/bin/python bench/bench_rtu.py [--seconds 60] [--window 10] [--meters 32]

A PacedRtuSlave in its own process (sim/meters.py --rtu-paced) holds each request on the
line for its length in character times and releases its reply byte by byte at 9600 baud, 8N1, with
2 ms turnaround, as a real RS-485 meter does. The hub's ModbusBusSource polls back to back
(poll_once in a loop, timed from the first request), once with every meter alive and once with
one meter dead; each case is reported over its first `--window` seconds (where a dead meter's
first timeouts fall) and over the whole run (steady state).

Limit: a reading of the generic profile is one request (8 bytes) and one reply (5 + 2 x 6 register
bytes), each followed by the 3.5-character silence RTU requires: (8 + 17 + 7) x 10 bit / 9600 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.modbus_meter import ModbusBusConfig, ModbusBusSource  # noqa: E402
from hub.clock import SystemClock  # noqa: E402
from hub.records import Record  # noqa: E402
from tests.services import PtyPair  # noqa: E402

BAUD = 9600
CHAR_S = 10 / BAUD
READING_CHARS = 8 + (5 + 2 * 6) + 2 * 3.5


def slave(port: str, meters: int, dead: Sequence[int], report: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sim.meters", "--rtu-paced", port]
    command += ["--meters", str(meters), "--report", str(report)]
    for device_id in dead:
        command += ["--dead", str(device_id)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if "serving" not in proc.stdout.readline():
        raise SystemExit("the paced RTU simulator did not start")
    return proc


async def poll(port: str, meters: int, seconds: float) -> dict[str, Any]:
    cfg = ModbusBusConfig.model_validate(
        {
            "type": "modbus",
            "name": "rs485",
            "transport": "rtu",
            "serial_port": port,
            "baudrate": BAUD,
            "poll_interval_s": 1.5,
            "timeout_s": 0.5,
            "meters": [{"meter_id": f"m{i}", "device_id": i} for i in range(1, meters + 1)],
        }
    )
    source = ModbusBusSource(cfg, SystemClock())
    cycles = 0
    stamps_ns: list[int] = []  # when each reading was taken (published once per cycle)

    async def publish(records: Sequence[Record]) -> None:
        stamps_ns.extend(r.time_ns for r in records)

    # Timed from the first cycle, which opens the port: a dead meter's first timeout counts.
    started_ns = time.time_ns()  # SystemClock's time, as in the readings
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await source.poll_once(publish)
        cycles += 1
    elapsed = time.perf_counter() - started
    errors = dict(source.stats.errors)
    await source.aclose()
    offsets = [(t - started_ns) / 1e9 for t in stamps_ns]
    return {"seconds": elapsed, "offsets": offsets, "cycles": cycles, "errors": errors}


def run(meters: int, dead: Sequence[int], seconds: float, tmp: Path) -> dict[str, Any]:
    pty = PtyPair(tmp)
    report = tmp / f"slave-{len(dead)}.json"
    proc = slave(pty.b, meters, dead, report)
    try:
        result = asyncio.run(poll(pty.a, meters, seconds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        pty.close()
    seen = json.loads(report.read_text(encoding="utf-8"))
    result["requests"] = sum(seen["requests"].values())
    result["gaps_s"] = sorted(seen["gaps_s"])
    return result


def gaps(sorted_s: Sequence[float]) -> str:
    if not sorted_s:
        return "no gaps measured"
    p50, p90 = (sorted_s[int(q * (len(sorted_s) - 1))] * 1000 for q in (0.5, 0.9))
    return f"{p50:.2f}/{p90:.2f} ms (3.5 chars: {3.5 * CHAR_S * 1000:.2f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0, help="also report the first N s")
    parser.add_argument("--meters", type=int, default=32)
    args = parser.parse_args()
    limit = 1 / (READING_CHARS * CHAR_S)
    print(
        f"{args.meters} meters, RTU {BAUD} 8N1 on a pty, paced slave; frame-time limit "
        f"{limit:.1f} readings/s ({READING_CHARS * CHAR_S * 1000:.1f} ms per reading)"
    )
    window = min(args.window, args.seconds)
    print(
        f"{'case':24} {'first ' + format(window, 'g') + ' s':>14} {'whole run':>16}"
        "  requests, cycles, errors; master's reply-to-request gap at the slave, p50/p90"
    )
    with tempfile.TemporaryDirectory(prefix="bench-rtu-") as name:
        for title, dead in (("all meters answer", []), ("one dead meter (m9)", [9])):
            folder = Path(name) / str(len(dead))
            folder.mkdir()
            r = run(args.meters, dead, args.seconds, folder)
            early = sum(1 for t in r["offsets"] if t <= window) / window
            whole = len(r["offsets"]) / r["seconds"]
            print(
                f"{title:24} {early:>6.1f}/s {early / limit:>5.2f}x "
                f"{whole:>6.1f}/s {whole / limit:>5.2f}x ({r['seconds']:.0f} s)  "
                f"{r['requests']:,}, {r['cycles']}, {r['errors'] or 'none'}; {gaps(r['gaps_s'])}"
            )


if __name__ == "__main__":
    main()
