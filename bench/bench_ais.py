"""AIS ingest benchmark: raw pyais decode vs the hub decoder, `hub replay` and a TCP source.

Usage: .venv/bin/python bench/bench_ais.py [--messages 60000] [--vessels 3000] [--capture PATH]

Two scenes of the same fleet, each through four paths; every path runs in its own child process,
so the peak RSS printed is that path's own. `replay` and `tcp` go end to end into the durable
outbox (SQLite WAL, fsync) of a real `hub.app.Hub` with `influxdb.api = "none"` (the rates exclude
the InfluxDB uplink), with a sea-grid zone over the scene and every maritime rule enabled.
msg/s always counts assembled AIS messages (pyais' count of the same file), not NMEA lines.

- alert-heavy: no vessel whitelisted, fishing season open all year, and 70% of the lines carry no
  tag-block time so they are stamped on receipt: vessels seem to jump (a position_jump storm).
- plain: every vessel whitelisted, outside the fishing season, every line tag-block stamped:
  ingest with almost no alerts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("pyais", "decoder", "replay", "tcp")


# --- child modes: each prints one JSON object ----------------------------------------------------


def mode_pyais(capture: Path) -> dict[str, Any]:
    """Baseline: pyais' own file stream, full decode of every (assembled) message."""
    from pyais.stream import FileReaderStream

    started = time.perf_counter()
    messages = 0
    for sentence in FileReaderStream(str(capture)):
        sentence.decode()
        messages += 1
    return {"messages": messages, "seconds": time.perf_counter() - started}


def mode_decoder(capture: Path) -> dict[str, Any]:
    """The hub decoder alone: lines -> records (what every NMEA source runs)."""
    from drivers.nmea.replay import FileReplay
    from hub.clock import SystemClock

    replay = FileReplay(capture, "bench", SystemClock())
    started = time.perf_counter()
    records = sum(len(batch) for batch in replay)
    seconds = time.perf_counter() - started
    return {
        "lines": replay.stats.messages,
        "records": records,
        "seconds": seconds,
        "errors": replay.stats.error_total,
    }


def _hub_config(workdir: Path, source: str = "") -> Any:
    """The hub config of a child: its own data dir, the scene's registry and rules (scene.toml)."""
    from hub.config import load_config

    scene = (workdir.parent / "scene.toml").read_text(encoding="utf-8")
    path = workdir / "bench.toml"
    path.write_text(
        f'[hub]\ndata_dir = "{workdir / "var"}"\nlog_level = "warning"\n'
        '[http]\nenabled = false\n[influxdb]\napi = "none"\n' + source + scene,
        encoding="utf-8",
    )
    return load_config(path)


def mode_replay(capture: Path, workdir: Path) -> dict[str, Any]:
    """`hub replay` (the lead's hub.replay) into the durable outbox."""
    from hub.replay import replay

    cfg = _hub_config(workdir)
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # progress lines
        status = asyncio.run(replay(cfg, capture, 2000))
    return {"seconds": time.perf_counter() - started, "status": status}


async def _until(done: Callable[[], bool], interval_s: float) -> None:
    """Poll a counter of the hub under test (nothing there to await)."""
    while True:
        if done():
            return
        await asyncio.sleep(interval_s)


def mode_tcp(capture: Path, workdir: Path, port: int, records: int) -> dict[str, Any]:
    """An nmea_tcp source connected to a feed server, until every record is in the outbox."""
    from hub.app import Hub

    source = (
        f'[[sources]]\ntype = "nmea_tcp"\nname = "bench-tcp"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    cfg = _hub_config(workdir, source)

    async def run() -> dict[str, Any]:
        hub = Hub(cfg)
        await hub.start()
        tcp = hub.sources[0]
        await _until(lambda: tcp.stats.last_message_ns > 0, 0.001)
        started = time.perf_counter()
        await _until(lambda: hub.pipeline.records_in >= records, 0.005)
        seconds = time.perf_counter() - started
        lines = tcp.stats.messages
        await hub.stop(flush_timeout_s=0)
        return {"seconds": seconds, "lines": lines, "records": hub.pipeline.records_in}

    return asyncio.run(run())


# --- parent: orchestrate and report --------------------------------------------------------------


def serve_once(data: bytes, stop: threading.Event) -> int:
    """A feed server on a free port sending the capture to its first client, then idling."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(data)
        stop.wait()
        conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return port


def run_child(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run this script in a child process; return its JSON result and its peak RSS in MiB."""
    from bench.profiling import command

    proc = subprocess.Popen(command(__file__, *args), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench child {args[:2]} failed with {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--vessels", type=int, default=3000)
    parser.add_argument("--capture", type=Path, help="use this capture instead of generating one")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-ais-") as tmp:
        report(args, Path(tmp))


def child(args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "pyais":
        return mode_pyais(args.capture)
    if args.mode == "decoder":
        return mode_decoder(args.capture)
    if args.mode == "replay":
        return mode_replay(args.capture, args.workdir)
    return mode_tcp(args.capture, args.workdir, args.port, args.records)


@dataclass(frozen=True)
class Scene:
    key: str
    title: str
    tag_share: float  # share of lines with a tag-block time
    whitelist: bool
    season_open: bool


SCENES = (
    Scene("alerts", "alert-heavy: unregistered fleet, season open, 70% receive-time stamps",
          0.3, False, True),
    Scene("plain", "plain ingest: fleet whitelisted, outside the season, scene-time stamps",
          1.0, True, False),
)  # fmt: skip


def scene_toml(scene: Scene, tmp: Path, vessels: int) -> str:
    """Registry and rule settings of a scene (written once, read by every child)."""
    from bench.make_ais_capture import write_sea_grid, write_whitelist

    zones = tmp / "zones.geojson"
    write_sea_grid(zones)
    text = f'[registry.maritime]\nzones_geojson = "{zones}"\n'
    if scene.whitelist:
        write_whitelist(tmp / "vessels.csv", vessels)
        text += f'vessels_csv = "{tmp / "vessels.csv"}"\n'
    if scene.season_open:
        start, end = "01-01", "12-31"
    else:  # a closed season that excludes today, whenever the bench runs
        today = dt.date.today()
        start = (today + dt.timedelta(days=30)).strftime("%m-%d")
        end = (today + dt.timedelta(days=60)).strftime("%m-%d")
    return (
        text + f'[rules.maritime.fishing_moratorium]\nseason_start = "{start}"\n'
        f'season_end = "{end}"\n'
    )


def outbox_counts(workdir: Path) -> tuple[int, dict[str, int]]:
    """(durable reading rows, alert changes per rule) from a child's outbox."""
    db = sqlite3.connect(workdir / "var" / "outbox.sqlite")
    try:
        readings = int(db.execute("SELECT count(*) FROM points WHERE kind=0").fetchone()[0])
        alerts: dict[str, int] = {}
        for (line,) in db.execute("SELECT line FROM points WHERE kind=1"):
            rule = bytes(line).split(b",rule=", 1)[1].split(b",", 1)[0].decode()
            alerts[rule] = alerts.get(rule, 0) + 1
        return readings, alerts
    finally:
        db.close()


def write_capture(path: Path, args: argparse.Namespace, scene: Scene) -> None:
    from bench.make_ais_capture import generate

    with path.open("w", encoding="ascii", newline="\r\n") as out:
        for line in generate(args.messages, args.vessels, tag_share=scene.tag_share):
            out.write(line + "\n")


def report(args: argparse.Namespace, tmp: Path) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; msg/s = assembled AIS messages")
    for scene in SCENES:
        folder = tmp / scene.key
        folder.mkdir()
        (folder / "scene.toml").write_text(scene_toml(scene, folder, args.vessels), "utf-8")
        capture = args.capture or folder / "capture.nmea"
        if args.capture is None:
            write_capture(capture, args, scene)
        report_scene(scene, capture, folder)


def run_tcp(capture: Path, folder: Path, records: int) -> tuple[dict[str, Any], float]:
    stop = threading.Event()
    port = serve_once(capture.read_bytes(), stop)
    (folder / "tcp").mkdir()
    base = ["--capture", str(capture), "--workdir", str(folder / "tcp")]
    try:
        return run_child([*base, "--mode", "tcp", "--port", str(port), "--records", str(records)])
    finally:
        stop.set()


def run_gpsdecode(capture: Path) -> tuple[float, float] | None:
    """gpsd's gpsdecode over the same file (C, JSON out): (seconds, peak RSS MiB), None if absent."""
    import shutil

    binary = shutil.which("gpsdecode")
    if binary is None:
        return None
    with capture.open("rb") as feed:
        started = time.perf_counter()
        proc = subprocess.Popen([binary], stdin=feed, stdout=subprocess.DEVNULL)
        os.waitpid(proc.pid, 0)
        return time.perf_counter() - started, 0.0  # its ru_maxrss would be the forked parent's


def report_scene(scene: Scene, capture: Path, folder: Path) -> None:
    base = ["--capture", str(capture)]
    pyais, pyais_rss = run_child([*base, "--mode", "pyais"])
    gpsd = run_gpsdecode(capture)
    messages = pyais["messages"]
    dec, dec_rss = run_child([*base, "--mode", "decoder"])
    (folder / "replay").mkdir()
    rep, rep_rss = run_child([*base, "--mode", "replay", "--workdir", str(folder / "replay")])
    tcp, tcp_rss = run_tcp(capture, folder, dec["records"])
    size_mib = capture.stat().st_size / 2**20
    print(f"\n== {scene.title}")
    print(
        f"capture: {messages:,} AIS messages in {dec['lines']:,} lines, {size_mib:.1f} MiB; "
        f"{dec['records']:,} records per pass (decoder errors: {dec['errors']})"
    )
    rows = [
        ("pyais FileReaderStream + decode (baseline)", pyais["seconds"], pyais_rss, ""),
        ("hub decoder (lines -> records)", dec["seconds"], dec_rss, ""),
    ]
    if gpsd is not None:
        rows.insert(1, ("gpsdecode (C, JSON out)", gpsd[0], gpsd[1], ""))
    for name, result, rss, key in (
        ("hub replay -> durable outbox", rep, rep_rss, "replay"),
        ("nmea_tcp source -> durable outbox", tcp, tcp_rss, "tcp"),
    ):
        readings, alerts = outbox_counts(folder / key)
        note = f"{readings:,} rows, {sum(alerts.values()):,} alert changes"
        rows.append((name, result["seconds"], rss, note))
        if alerts:
            note_rules = ", ".join(f"{r} {n:,}" for r, n in sorted(alerts.items()))
            rows.append(("", 0.0, 0.0, f"  ({note_rules})"))
    print(f"{'path':44} {'msg/s':>9} {'vs pyais':>8} {'peak RSS':>9}  durable")
    for name, seconds, rss, note in rows:
        if not name:
            print(f"{'':74}{note}")
            continue
        ratio = pyais["seconds"] / seconds
        mib = f"{rss:>5.0f} MiB" if rss else f"{'-':>9}"
        print(f"{name:44} {messages / seconds:>9,.0f} {ratio:>7.2f}x {mib}  {note}")


if __name__ == "__main__":
    main()
