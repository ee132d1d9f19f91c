"""Run every benchmark in bench/, one after another; each prints its own ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = [
    ["bench_ais.py"],
    ["bench_meters.py", "--seconds", "60"],
    ["bench_zones.py"],
]


def main() -> int:
    here = Path(__file__).parent
    failed = 0
    for bench in BENCHES:
        print(f"\n=== {' '.join(bench)} ===", flush=True)
        failed += subprocess.call([sys.executable, str(here / bench[0]), *bench[1:]]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
