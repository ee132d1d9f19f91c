"""AIS ingest benchmark: raw pyais decode vs the hub decoder, `hub replay` and a TCP source.

Usage: .venv/bin/python bench/bench_ais.py [--messages 60000] [--vessels 3000] [--capture PATH]

Every mode runs in its own child process on the same capture, so the peak RSS printed is that
mode's own. `replay` and `tcp` go end to end into the durable outbox (SQLite WAL, fsync) of a
real `hub.app.Hub` with `influxdb.api = "none"`, so the rates exclude the InfluxDB uplink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
    messages = sum(1 for sentence in FileReaderStream(str(capture)) if sentence.decode())
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
    from hub.config import load_config

    path = workdir / "bench.toml"
    path.write_text(
        f'[hub]\ndata_dir = "{workdir / "var"}"\nlog_level = "warning"\n'
        '[http]\nenabled = false\n[influxdb]\napi = "none"\n' + source,
        encoding="utf-8",
    )
    return load_config(path)


def mode_replay(capture: Path, workdir: Path) -> dict[str, Any]:
    """`hub replay` (the lead's hub.replay) into the durable outbox."""
    from hub.replay import replay

    cfg = _hub_config(workdir)
    started = time.perf_counter()
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
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
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


def report(args: argparse.Namespace, tmp: Path) -> None:
    capture = args.capture or tmp / "capture.nmea"
    if args.capture is None:
        from bench.make_ais_capture import generate

        with capture.open("w", encoding="ascii", newline="\r\n") as out:
            for line in generate(args.messages, args.vessels):
                out.write(line + "\n")
    size_mib = capture.stat().st_size / 2**20
    base = ["--capture", str(capture)]
    pyais, pyais_rss = run_child([*base, "--mode", "pyais"])
    messages = pyais["messages"]
    print(f"capture: {capture.name}, {messages:,} AIS messages, {size_mib:.1f} MiB")
    rows = [("pyais FileReaderStream + decode (baseline)", pyais["seconds"], pyais_rss)]
    dec, dec_rss = run_child([*base, "--mode", "decoder"])
    rows.append(("hub decoder (lines -> records)", dec["seconds"], dec_rss))
    (tmp / "replay").mkdir()
    rep, rep_rss = run_child([*base, "--mode", "replay", "--workdir", str(tmp / "replay")])
    rows.append(("hub replay -> durable outbox", rep["seconds"], rep_rss))
    stop = threading.Event()
    port = serve_once(capture.read_bytes(), stop)
    (tmp / "tcp").mkdir()
    tcp, tcp_rss = run_child(
        [
            *base,
            "--mode",
            "tcp",
            "--workdir",
            str(tmp / "tcp"),
            "--port",
            str(port),
            "--records",
            str(dec["records"]),
        ]
    )
    stop.set()
    rows.append(("nmea_tcp source -> durable outbox", tcp["seconds"], tcp_rss))
    print(f"records per pass: {dec['records']:,} (decoder errors: {dec['errors']})")
    print(f"{'path':44} {'msg/s':>10} {'vs pyais':>9} {'peak RSS':>10}")
    for name, seconds, rss in rows:
        rate = messages / seconds
        ratio = pyais["seconds"] / seconds
        print(f"{name:44} {rate:>10,.0f} {ratio:>8.2f}x {rss:>7.0f} MiB")


if __name__ == "__main__":
    main()
