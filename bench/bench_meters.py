"""Meter-polling benchmark: 32 simulated Modbus TCP meters polled every second by the hub's poller.

The simulator runs in its own process; this process is the poller, so its CPU time and RSS are the
hub's cost. A naive poller (one request per value, as the peer gateway does) runs in the same
process afterwards as the in-run baseline, and both are compared to the peer's published figures.

    .venv/bin/python bench/bench_meters.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.modbus_meter import (  # noqa: E402
    ExceptionReply,
    ModbusBusConfig,
    ModbusBusSource,
    PymodbusReader,
    decode_registers,
    load_profile,
)
from hub.clock import SystemClock  # noqa: E402
from hub.records import Record  # noqa: E402

# The peer gateway on this machine kind: 7 % of one core and 68 MB for 32 readings/s.
PEER_CPU_PERCENT = 7.0
PEER_RSS_MB = 68.0
PEER_READINGS_PER_S = 32.0


@dataclass(slots=True)
class Result:
    name: str
    seconds: float
    readings: int
    requests: int
    cpu_s: float
    rss_mb: float

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.seconds

    @property
    def cpu_ms_per_reading(self) -> float:
        return 1000 * self.cpu_s / max(self.readings, 1)


class CountingReader:
    def __init__(self, inner: PymodbusReader) -> None:
        self.inner = inner
        self.requests = 0

    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        self.requests += 1
        return await self.inner.read(function, address, count, device_id, timeout_s)

    async def close(self) -> None:
        await self.inner.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bus_config(port: int, meters: int, profile: str) -> ModbusBusConfig:
    return ModbusBusConfig.model_validate(
        {
            "type": "modbus",
            "name": "bench",
            "port": port,
            "poll_interval_s": 1.0,
            "timeout_s": 0.5,
            "meters": [
                {"meter_id": f"m{i}", "device_id": i, "profile": profile}
                for i in range(1, meters + 1)
            ],
        }
    )


async def run_hub_poller(cfg: ModbusBusConfig, seconds: float) -> Result:
    reader = CountingReader(PymodbusReader(cfg))
    source = ModbusBusSource(cfg, SystemClock(), reader)
    readings = 0

    async def publish(records: Sequence[Record]) -> None:
        nonlocal readings
        readings += len(records)

    await reader.read(3, 0, 1, 1)  # connect before measuring
    reader.requests = 0
    cpu0, t0 = cpu_seconds(), time.monotonic()
    task = asyncio.create_task(source.run(publish))
    await asyncio.sleep(seconds)
    task.cancel()
    elapsed, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    result = Result("hub poller", elapsed, readings, reader.requests, cpu, rss_mb())
    await source.aclose()
    return result


async def run_naive_poller(cfg: ModbusBusConfig, seconds: float) -> Result:
    """Baseline: one request per value per meter, as measured on the peer gateway."""
    reader = PymodbusReader(cfg)
    await reader.read(3, 0, 1, 1)
    requests = readings = 0
    cpu0, t0 = cpu_seconds(), time.monotonic()
    next_poll = t0
    while time.monotonic() - t0 < seconds:
        for meter in cfg.meters:
            profile = load_profile(meter.profile)
            for spec in profile.values:
                registers = await reader.read(
                    spec.function, spec.address, spec.count, meter.device_id
                )
                requests += 1
                if not isinstance(registers, ExceptionReply):
                    decode_registers(registers, spec.type, profile.word_order_of(spec))
            readings += 1
        next_poll += 1.0
        await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
    elapsed, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    await reader.close()
    return Result("naive poller (1 request/value)", elapsed, readings, requests, cpu, rss_mb())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(port: int, meters: int, profile: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "sim.meters",
        "--port",
        str(port),
        "--meters",
        str(meters),
    ]
    proc = subprocess.Popen(
        [*command, "--profile", profile], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the simulator says it is serving
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc


def report(results: list[Result], meters: int) -> None:
    peer = f"peer: {PEER_CPU_PERCENT}% CPU, {PEER_RSS_MB} MB"
    print(f"{meters} meters, Modbus TCP, poll every 1 s; {peer}")
    head = ("poller", "readings/s", "requests/s", "CPU %", "ms CPU/rd", "RSS MB")
    print(f"{head[0]:34} {head[1]:>10} {head[2]:>10} {head[3]:>7} {head[4]:>9} {head[5]:>7}")
    for r in results:
        print(
            f"{r.name:34} {r.readings_per_s:10.1f} {r.requests_per_s:10.1f} {r.cpu_percent:7.2f}"
            f" {r.cpu_ms_per_reading:9.3f} {r.rss_mb:7.1f}"
        )
    hub = results[0]
    peer_ms_per_reading = 1000 * PEER_CPU_PERCENT / 100 / PEER_READINGS_PER_S
    cpu_ratio = hub.cpu_ms_per_reading / peer_ms_per_reading
    print(f"hub vs peer: CPU per reading x{cpu_ratio:.2f} (goal <= 0.33),")
    rss_ratio, rate_ratio = hub.rss_mb / PEER_RSS_MB, hub.readings_per_s / PEER_READINGS_PER_S
    print(f"             RSS x{rss_ratio:.2f}, readings/s x{rate_ratio:.2f}")
    if len(results) > 1:
        naive = results[1]
        print(
            f"hub vs naive (same run): requests/reading x{hub.requests / max(hub.readings, 1):.2f}"
            f" vs x{naive.requests / max(naive.readings, 1):.2f},"
            f" CPU per reading x{hub.cpu_ms_per_reading / naive.cpu_ms_per_reading:.2f}"
        )


async def bench(args: argparse.Namespace) -> None:
    port = free_port()
    simulator = start_simulator(port, args.meters, args.profile)
    try:
        cfg = bus_config(port, args.meters, args.profile)
        results = [await run_hub_poller(cfg, args.seconds)]
        if not args.no_baseline:
            results.append(await run_naive_poller(cfg, args.seconds))
    finally:
        simulator.terminate()
        simulator.wait(10)
    if results[0].readings == 0:  # a broken reader must not print as a fast poller
        raise SystemExit("bench_meters: the hub poller took no reading")
    report(results, args.meters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each phase")
    parser.add_argument("--meters", type=int, default=32)
    parser.add_argument("--profile", default="generic")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive poller")
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
