"""Rule-state cost per step, on a simulated clock: rules plus the durable commit of what they changed.

Usage: .venv/bin/python bench/bench_rule_state.py [--messages 20000] [--vessels 1000] [--runs 3]
       [--step 2000] [--scenes alerts,plain] [--baseline PATH]  (a checkout of another commit, e.g. main, measured in the same run)

`hub replay` stamps lines without a tag-block time with the wall clock, so how many alerts the
alert-heavy scene raises depends on the machine's speed, and so does the time the rule state
takes. Here the same capture is decoded once on a manual clock (2.5 s per 2,000 lines, as a
loaded replay reads them: untagged reports of a vessel in two batches are then far enough apart
in time for position_jump to judge them, as in the alert-heavy replay), then each
run feeds the decoded records in steps of 2,000 through a real Hub's registry, rules engine and
outbox (SQLite WAL, fsync), with a clock tick every 5 s of scene time: the alerts are the same in
every run and on both sides, and what differs is the rule-state work. Prints CPU seconds of the
whole loop and of the state's share (serialising it and committing the step), best of `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STEP = 2000
BATCH_S = 2.5


def child(capture: Path, workdir: Path, step: int) -> dict[str, Any]:
    """One run, with whichever `hub` is first on the path."""
    from bench.bench_ais import _hub_config
    from drivers.nmea.replay import FileReplay
    from hub.app import Hub
    from hub.clock import ManualClock
    from hub.outbox import Commit

    clock = ManualClock()
    batches = []
    replay = FileReplay(capture, "bench", clock, batch_lines=STEP)
    for batch in replay:
        batches.append(batch)
        clock.advance(BATCH_S)
    hub = Hub(_hub_config(workdir), clock=ManualClock())
    engine, outbox = hub.engine, hub.outbox

    async def run() -> dict[str, Any]:
        await outbox.open()
        now = ManualClock().now_ns()
        cpu = time.process_time()
        rules_s = commit_s = 0.0
        alerts = 0
        next_tick = now + 5 * 10**9
        steps = [b[i : i + step] for b in batches for i in range(0, len(b), step)]
        for records in steps:
            started = time.process_time()
            observed = [hub.registry.observe(r) for r in records]
            batches_out = [engine.on_records(observed, now)]
            if now >= next_tick:
                batches_out.append(engine.on_tick(now))
                next_tick += 5 * 10**9
            rules_s += time.process_time() - started
            for batch in batches_out:
                started = time.process_time()
                commit = Commit()
                batch.fill(commit, [])
                await outbox.commit(commit)
                commit_s += time.process_time() - started
                alerts += len(batch.alerts)
            now += int(BATCH_S * 10**9 * len(records) / STEP)
        total = time.process_time() - cpu
        await outbox.close()
        size = (workdir / "var" / "outbox.sqlite").stat().st_size
        return {"cpu_s": total, "rules_s": rules_s, "commit_s": commit_s, "alerts": alerts,
                "records": sum(len(b) for b in batches), "file_bytes": size}  # fmt: skip

    return asyncio.run(run())


def measure(tree: Path, capture: Path, tmp: Path, tag: str, step: int) -> dict[str, Any]:
    workdir = tmp / tag
    subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir()
    code = (
        f"import sys, json; sys.path.insert(0, {str(tree)!r}); "
        f"sys.path.insert(1, {str(ROOT)!r}); from pathlib import Path; "
        "import importlib.util as u; "
        f"s = u.spec_from_file_location('b', {str(ROOT / 'bench' / 'bench_rule_state.py')!r}); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); "
        f"print(json.dumps(m.child(Path({str(capture)!r}), Path({str(workdir)!r}), {step})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--vessels", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--step", type=int, default=STEP, help="records per rules step")
    parser.add_argument("--scenes", default="alerts,plain")
    parser.add_argument("--baseline", type=Path, help="a checkout to measure against")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.bench_ais import SCENES, scene_toml, write_capture

    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp_name:
        tmp = Path(tmp_name)
        for scene in [s for s in SCENES if s.key in args.scenes.split(",")]:
            folder = tmp / scene.key
            folder.mkdir()
            (folder / "scene.toml").write_text(scene_toml(scene, folder, args.vessels), "utf-8")
            capture = folder / "capture.nmea"
            write_capture(capture, args, scene)
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for run in range(args.runs):  # alternating, so both sides see the same load
                for name, tree in trees.items():
                    results[name].append(
                        measure(tree, capture, folder, f"{run}-{name[:4]}", args.step)
                    )
            print(
                f"\n== {scene.title}: {args.messages:,} messages, {args.vessels:,} vessels, "
                f"steps of {args.step:,} records"
            )
            print(
                f"{'tree':10} {'CPU s':>7} {'rules s':>8} {'commit s':>9} {'alerts':>7} {'file':>9}"
            )
            for name, runs in results.items():
                best = min(runs, key=lambda r: r["cpu_s"])
                print(
                    f"{name:10} {best['cpu_s']:>7.2f} {best['rules_s']:>8.2f} "
                    f"{best['commit_s']:>9.2f} {best['alerts']:>7,} {best['file_bytes'] / 2**20:>7.1f} MiB"
                )


if __name__ == "__main__":
    main()
