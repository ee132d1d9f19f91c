"""UDP ingest: one AIS sentence per datagram at a fixed rate into a whole hub, counting lines lost.

    .venv/bin/python bench/bench_udp.py [--rate 10000] [--seconds 10]

A child process runs `hub.app.Hub` (the same object `hub run` starts) with one nmea_udp source,
every maritime rule, a sea-grid zone and the durable outbox (`influxdb.api = "none"`); this
process sends the generated capture paced in 1 ms bursts, then waits until the hub has taken in
every line or stopped making progress. Lost = lines sent - lines the source received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(workdir: Path) -> None:
    from bench.bench_ais import _hub_config
    from hub.app import Hub

    source = '[[sources]]\ntype = "nmea_udp"\nname = "bench-udp"\nbind_host = "127.0.0.1"\n'
    cfg = _hub_config(workdir, source + "bind_port = 0\n")

    async def run() -> None:
        hub = Hub(cfg)
        await hub.start()
        udp: Any = hub.sources[0]
        await asyncio.wait_for(udp.bound.wait(), 30)
        print(json.dumps({"port": udp.port, "rcvbuf": udp.rcvbuf_bytes}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the sender is done
        last, still = -1, 0
        while still < 20:  # 2 s without a new line: nothing more is coming
            seen = udp.stats.messages
            still = still + 1 if seen == last else 0
            last = seen
            await asyncio.sleep(0.1)
        report = {
            "lines": udp.stats.messages,
            "records_in": hub.pipeline.records_in,
            "kernel_drops": udp.check_kernel_drops(),
            "errors": dict(udp.stats.errors),
        }
        await hub.stop(flush_timeout_s=0)
        print(json.dumps(report), flush=True)

    asyncio.run(run())


def send(port: int, lines: list[bytes], rate: int) -> float:
    per_ms = max(1, rate // 1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for burst, i in enumerate(range(0, len(lines), per_ms)):
            for line in lines[i : i + per_ms]:
                sock.sendto(line, ("127.0.0.1", port))
            delay = start + (burst + 1) / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the sender
        return len(lines) / (time.monotonic() - start)


def datagrams(total: int) -> list[bytes]:
    """Single-sentence messages only: one sentence per datagram, as a receiver forwards them."""
    from bench.bench_ais import SCENES
    from bench.make_ais_capture import generate

    tag_share = SCENES[1].tag_share  # the plain-ingest scene; the whole rule set still runs
    lines = generate(total * 2, 3000, tag_share=tag_share)
    return [(line + "\r\n").encode() for line in lines if "!AIVDM,1,1," in line][:total]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--send", type=int, help="only send, to this UDP port (a load for others)")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    from bench.profiling import command

    total = int(args.rate * args.seconds)
    lines = datagrams(total)
    if args.send:
        print("ready", flush=True)
        send(args.send, lines, args.rate)
        return
    with tempfile.TemporaryDirectory(prefix="bench-udp-") as name:
        tmp = Path(name)
        from bench.bench_ais import SCENES, scene_toml

        (tmp / "scene.toml").write_text(scene_toml(SCENES[1], tmp, 3000), "utf-8")
        (tmp / "hub").mkdir()
        proc = subprocess.Popen(
            command(__file__, "--child", str(tmp / "hub")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        rate = send(info["port"], lines, args.rate)
        proc.stdin.write("done\n")
        proc.stdin.flush()
        report = json.loads(proc.stdout.readline())
        proc.wait(60)
    lost = len(lines) - report["lines"]
    print(
        f"sent {len(lines):,} datagrams at {rate:,.0f} lines/s for {args.seconds:g} s "
        f"(SO_RCVBUF granted {info['rcvbuf'] / 2**20:.0f} MiB)"
    )
    print(
        f"received {report['lines']:,}, lost {lost:,} ({100 * lost / len(lines):.2f} %), "
        f"kernel drops {report['kernel_drops']:,}, records into the pipeline "
        f"{report['records_in']:,}, errors {report['errors'] or 'none'}"
    )


if __name__ == "__main__":
    main()
