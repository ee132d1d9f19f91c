"""`--profile` for the benchmarks: run a bench script (or a bench's child) under cProfile and print
its top-10 functions by own time to stderr, so the JSON a child prints on stdout is untouched.

    python bench/profiling.py SCRIPT [ARGS...]
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import runpy
import sys

ENV = "BENCH_PROFILE"


def command(script: str, *args: str) -> list[str]:
    """How a bench starts SCRIPT: under this profiler when `--profile` was given to run_all."""
    if os.environ.get(ENV):
        return [sys.executable, __file__, script, *args]
    return [sys.executable, script, *args]


def main() -> None:
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    profiler = cProfile.Profile()
    try:
        profiler.runcall(runpy.run_path, script, run_name="__main__")
    finally:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(10)
        name = " ".join(os.path.basename(a) for a in sys.argv[:3])
        body = out.getvalue().split("\n", 4)[-1] if out.getvalue() else ""
        print(f"\n--- profile top-10 (own time): {name}\n{body}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
