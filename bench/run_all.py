"""Run every benchmark in bench/, one after another; each prints its own ratios.

    .venv/bin/python bench/run_all.py [--profile]

`--profile` runs each benchmark (and each of its child processes) under cProfile and prints the
top-10 functions by own time after its figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profiling import ENV, command

BENCHES = [
    ["bench_ais.py"],  # AIS end to end (replay, nmea_tcp) and decoder vs pyais / gpsdecode
    ["bench_udp.py", "--rate", "10000", "--seconds", "10"],
    ["bench_drain.py", "--points", "500000"],
    ["bench_rss.py", "--vessels", "10000", "--meters", "2000"],
    ["bench_latency.py", "--alerts", "1000", "--ais-rate", "5000"],
    ["bench_rtu.py", "--seconds", "60"],  # first 10 s and a 60 s steady state
    ["bench_meters.py", "--seconds", "30"],
    ["bench_zones.py"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print each profile's top-10")
    args = parser.parse_args()
    if args.profile:
        os.environ[ENV] = "1"
    here = Path(__file__).parent
    failed = 0
    started = time.monotonic()
    for bench in BENCHES:
        print(f"\n=== {' '.join(bench)} ===", flush=True)
        t0 = time.monotonic()
        failed += subprocess.call(command(str(here / bench[0]), *bench[1:])) != 0
        print(f"({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\nmake bench took {(time.monotonic() - started) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
