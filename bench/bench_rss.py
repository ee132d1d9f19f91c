"""RSS of a whole `hub run` process with 10,000 vessels and 2,000 meters, at steady state.

    .venv/bin/python bench/bench_rss.py [--vessels 10000] [--meters 2000]

Two `hub run` processes, one after the other, with the same config: 2,000 simulated meters
reading every second, an nmea_udp source, every maritime rule, a sea-grid zone and the durable
outbox (`influxdb.api = "none"`). The second one is also sent the single-sentence messages of a
generated capture of six messages per vessel for `--vessels` vessels (about 5.5 per vessel). RSS is read from /proc once it has settled (six
samples 0.5 s apart within 1 %); per vessel = the difference / vessels.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"hub run (pid {pid}) is gone")


def settled_rss(pid: int, timeout_s: float = 90.0) -> int:
    samples: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples.append(rss_kib(pid))
        last = samples[-6:]
        if len(last) == 6 and max(last) - min(last) <= max(last) // 100:
            return max(last)
        time.sleep(0.5)  # sampling an outside process's RSS: there is nothing to wait on
    return samples[-1]


def vessel_lines(vessels: int) -> list[bytes]:
    from bench.make_ais_capture import generate

    lines = generate(vessels * 6, vessels, tag_share=1.0)
    return [(line + "\r\n").encode() for line in lines if "!AIVDM,1,1," in line]


def run_hub(config: Path, port: int, lines: list[bytes]) -> int:
    hub = ROOT / ".venv" / "bin" / "hub"
    command = [str(hub) if hub.exists() else "hub", "run", "--config", str(config)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # let it bind (an outside process; UDP gives no handshake to wait on)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i, line in enumerate(lines):
                sock.sendto(line, ("127.0.0.1", port))
                if i % 50 == 49:
                    time.sleep(0.01)  # ~5,000 datagrams/s: a memory figure, not a loss test
        return settled_rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vessels", type=int, default=10_000)
    parser.add_argument("--meters", type=int, default=2000)
    args = parser.parse_args()
    from bench.bench_ais import SCENES, scene_toml

    lines = vessel_lines(args.vessels)
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as name:
        tmp = Path(name)
        port = free_udp_port()
        text = (
            '[hub]\ndata_dir = "DATA_DIR"\nlog_level = "warning"\n[http]\nenabled = false\n'
            '[influxdb]\napi = "none"\n'
            f'[[sources]]\ntype = "simulated_meters"\nname = "meters"\nmeters = {args.meters}\n'
            "interval_s = 1.0\n"
            f'[[sources]]\ntype = "nmea_udp"\nname = "ais"\nbind_host = "127.0.0.1"\n'
            f"bind_port = {port}\n" + scene_toml(SCENES[1], tmp, args.vessels)
        )
        rss = []
        for case, sent in (("base", []), ("full", lines)):
            config = tmp / f"{case}.toml"
            config.write_text(text.replace("DATA_DIR", str(tmp / case)), encoding="utf-8")
            rss.append(run_hub(config, port, sent))
        base, full = rss
    per_vessel = (full - base) / args.vessels
    print(f"`hub run`, {args.meters:,} meters every 1 s, {len(lines):,} AIS datagrams")
    print(f"{'case':40} {'RSS MiB':>8}")
    print(f"{f'{args.meters:,} meters, no vessels':40} {base / 1024:>8.1f}")
    print(f"{f'{args.meters:,} meters + {args.vessels:,} vessels':40} {full / 1024:>8.1f}")
    print(f"per vessel: {per_vessel:.2f} KiB")


if __name__ == "__main__":
    main()
