"""Modbus meters against a real pymodbus server: TCP on loopback and RTU over a socat pty pair."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus_meter import ModbusBusConfig, ModbusBusSource
from hub.clock import NS_PER_S, SystemClock
from hub.records import MeterAlarm, Record, WaterMeterReading
from sim.meters import MeterSim, ModbusMeterServer, dead, leaking, normal, tampered
from tests.util import free_port, wait_for

pytestmark = pytest.mark.integration


class Sink:
    def __init__(self) -> None:
        self.readings: list[WaterMeterReading] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.readings.extend(r for r in records if isinstance(r, WaterMeterReading))

    def of(self, meter_id: str) -> list[WaterMeterReading]:
        return [r for r in self.readings if r.meter_id == meter_id]


def bus_config(
    port: int, sims: Sequence[MeterSim], profile: str = "generic", **kw: object
) -> ModbusBusConfig:
    base: dict[str, object] = {
        "type": "modbus",
        "name": "bus1",
        "host": "127.0.0.1",
        "port": port,
        "poll_interval_s": 1.0,
        "timeout_s": 0.3,
        "meters": [
            {"meter_id": f"m{s.device_id}", "device_id": s.device_id, "profile": profile}
            for s in sims
        ],
    }
    base.update(kw)
    return ModbusBusConfig.model_validate(base)


@contextlib.asynccontextmanager
async def tcp_bus(
    sims: Sequence[MeterSim], profile: str = "generic", **kw: object
) -> AsyncIterator[tuple[ModbusMeterServer, ModbusBusSource]]:
    port = free_port()
    server = ModbusMeterServer(sims, profile=profile)
    await server.start_tcp("127.0.0.1", port)
    source = ModbusBusSource(bus_config(port, sims, profile, **kw), SystemClock())
    try:
        yield server, source
    finally:
        await source.aclose()
        await server.stop()


@contextlib.asynccontextmanager
async def running(source: ModbusBusSource, sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def expected_total(sim: MeterSim, server: ModbusMeterServer, reading: WaterMeterReading) -> float:
    return sim.state((reading.time_ns - server.start_ns) / NS_PER_S).total_m3


async def test_tcp_readings_match_the_simulated_meters() -> None:
    sims = [normal(1, start_total_m3=10.0), tampered(2), leaking(3, leak_m3h=0.25)]
    async with tcp_bus(sims) as (server, source):
        sink = Sink()
        readings = await source.poll_once(sink)
    assert [r.meter_id for r in readings] == ["m1", "m2", "m3"]
    m1, m2, m3 = readings
    assert m1.total_m3 == pytest.approx(expected_total(sims[0], server, m1), abs=0.002)
    assert m1.flow_m3h == pytest.approx(0.6, rel=1e-6)
    assert m1.battery_v == pytest.approx(3.6)
    assert m1.alarm_bits == 0 and m1.reverse_flow is False
    assert m2.alarm_bits == MeterAlarm.TAMPER
    assert m3.flow_m3h == pytest.approx(0.85, rel=1e-6)
    assert all(r.source == "bus1" for r in readings)
    assert sink.readings == readings


@pytest.mark.parametrize("profile", ["generic", "tuf2000m", "siemens_mag6000", "dynaflox_ultrad"])
async def test_every_shipped_profile_reads_back_over_tcp(profile: str) -> None:
    sims = [normal(1, start_total_m3=4321.5), normal(2, start_total_m3=17.25)]
    async with tcp_bus(sims, profile=profile) as (server, source):
        readings = await source.poll_once(Sink())
        assert sum(server.requests.values()) == source.requests_per_poll
    assert len(readings) == 2
    for sim, reading in zip(sims, readings, strict=True):
        assert reading.total_m3 == pytest.approx(expected_total(sim, server, reading), abs=0.002)
        assert reading.flow_m3h == pytest.approx(0.6, rel=1e-5)


async def test_simulator_sees_exactly_one_request_per_meter_per_poll() -> None:
    sims = [normal(i) for i in range(1, 9)]
    async with tcp_bus(sims) as (server, source):
        for _ in range(5):
            await source.poll_once(Sink())
    assert dict(server.requests) == {i: 5 for i in range(1, 9)}


async def test_dead_meter_does_not_delay_the_others_by_a_poll_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    interval_s = 1.0
    sims = [dead(1)] + [normal(i) for i in range(2, 7)]  # the dead meter is polled first
    cycles = 5
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    async with tcp_bus(
        sims, poll_interval_s=interval_s, timeout_s=0.4, dead_probe_interval_s=30
    ) as (
        server,
        source,
    ):
        sink = Sink()
        start_ns = time.time_ns()
        async with running(source, sink):
            await wait_for(lambda: len(sink.of("m6")) >= cycles, timeout=cycles * interval_s + 10)
    # Cycle k starts at start + k * interval (plus scheduling noise); every healthy meter must be
    # read within its cycle, i.e. the dead meter never pushes a reading into the next interval.
    for meter_id in ("m2", "m3", "m4", "m5", "m6"):
        times = [r.time_ns for r in sink.of(meter_id)][:cycles]
        cycle_of = [int((t - start_ns) // (interval_s * NS_PER_S)) for t in times]
        assert cycle_of == list(range(cycles)), (meter_id, cycle_of)
    assert sink.of("m1") == []
    assert source.offline_meters == {"m1"}
    assert len([r for r in caplog.records if "offline" in r.getMessage()]) == 1
    assert server.requests[1] < server.requests[2]  # probed less often than polled meters


async def test_offline_meter_yields_nothing_logs_once_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sims = [normal(1), normal(2), normal(3)]
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    async with tcp_bus(
        sims,
        poll_interval_s=0.5,
        timeout_s=0.2,
        offline_after_failures=2,
        dead_probe_interval_s=1.0,
    ) as (_server, source):
        sink = Sink()
        async with running(source, sink):
            await wait_for(lambda: sink.of("m2"), timeout=5)
            sims[1].dead = True
            went_dead_ns = time.time_ns()
            await wait_for(lambda: source.offline_meters == {"m2"}, timeout=10)
            polled_ns = time.time_ns()
            await wait_for(
                lambda: len([r for r in sink.of("m3") if r.time_ns > polled_ns]) >= 4, timeout=10
            )
            assert not [r for r in sink.of("m2") if r.time_ns > went_dead_ns + 300_000_000]
            sims[1].dead = False
            await wait_for(lambda: not source.offline_meters, timeout=10)
            back_ns = time.time_ns()
            await wait_for(lambda: [r for r in sink.of("m2") if r.time_ns >= back_ns], timeout=10)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "offline after" in m]) == 1
    assert len([m for m in messages if "back online" in m]) == 1
    assert source.offline_total == 1


async def test_server_gone_and_back_resumes_polling() -> None:
    sims = [normal(1)]
    port = free_port()
    server = ModbusMeterServer(sims)
    await server.start_tcp("127.0.0.1", port)
    source = ModbusBusSource(
        bus_config(port, sims, poll_interval_s=0.5, timeout_s=0.2), SystemClock()
    )
    sink = Sink()
    try:
        async with running(source, sink) as task:
            await wait_for(lambda: sink.readings, timeout=5)
            await server.stop()
            await wait_for(
                lambda: source.stats.errors["bus_unreachable"] + source.stats.errors["timeout"] > 0
            )
            count = len(sink.readings)
            await server.start_tcp("127.0.0.1", port)
            await wait_for(lambda: len(sink.readings) > count, timeout=15)
            assert not task.done()
    finally:
        await source.aclose()
        await server.stop()


async def test_rtu_over_a_pty_pair_at_9600_baud(pty_pair: tuple[str, str]) -> None:
    path_a, path_b = pty_pair
    sims = [normal(1, start_total_m3=50.0), tampered(2), dead(3), normal(4)]
    server = ModbusMeterServer(sims)
    await server.start_rtu(path_b, baudrate=9600)
    cfg = ModbusBusConfig.model_validate(
        {
            "type": "modbus",
            "name": "rs485",
            "transport": "rtu",
            "serial_port": path_a,
            "baudrate": 9600,
            "poll_interval_s": 2.0,
            "timeout_s": 0.5,
            "retries": 0,
            "meters": [{"meter_id": f"m{s.device_id}", "device_id": s.device_id} for s in sims],
        }
    )
    source = ModbusBusSource(cfg, SystemClock())
    try:
        sink = Sink()
        for _ in range(3):
            await source.poll_once(sink)
    finally:
        await source.aclose()
        await server.stop()
    # m3, never heard from, is offline on its first timeout and probed again a poll interval later
    assert {k: v for k, v in server.requests.items() if k != 3} == {1: 3, 2: 3, 4: 3}
    assert 1 <= server.requests[3] < 3
    assert {r.meter_id for r in sink.readings} == {"m1", "m2", "m4"}
    assert len(sink.readings) == 9
    m1 = sink.of("m1")[-1]
    assert m1.total_m3 == pytest.approx(expected_total(sims[0], server, m1), abs=0.002)
    assert sink.of("m2")[-1].alarm_bits == MeterAlarm.TAMPER
    assert source.offline_meters == {"m3"}
    assert source.stats.errors["timeout"] == server.requests[3]


# --- a paced RTU line: the slave runs in its own process and releases bytes at 9600 baud ---------

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def paced_slave(
    tmp_path: Path,
    port: str,
    meters: int,
    dead_ids: Sequence[int] = (),
    silent_for_s: dict[int, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """A PacedRtuSlave in a subprocess (its timestamps are not delayed by our event loop); the
    yielded dict is filled with what the slave saw once the block exits."""
    report = tmp_path / f"slave-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "sim.meters", "--rtu-paced", port]
    command += ["--meters", str(meters), "--report", str(report)]
    for device_id in dead_ids:
        command += ["--dead", str(device_id)]
    for device_id, seconds in (silent_for_s or {}).items():
        command += ["--silent-for", f"{device_id}:{seconds}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "serving" in proc.stdout.readline()  # returns "" if the slave died
    seen: dict[str, Any] = {}
    try:
        yield seen
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        seen.update(json.loads(report.read_text(encoding="utf-8")))


def rtu_config(port: str, meters: int, **kw: object) -> ModbusBusConfig:
    base: dict[str, object] = {
        "type": "modbus",
        "name": "rs485",
        "transport": "rtu",
        "serial_port": port,
        "baudrate": 9600,
        "poll_interval_s": 1.5,
        "meters": [{"meter_id": f"m{i}", "device_id": i} for i in range(1, meters + 1)],
    }
    return ModbusBusConfig.model_validate({**base, **kw})


async def test_rtu_master_keeps_3_5_character_times_between_reply_and_request(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    path_a, path_b = pty_pair
    char_s = 10 / 9600  # 8N1
    with paced_slave(tmp_path, path_b, 8) as seen:
        source = ModbusBusSource(rtu_config(path_a, 8), SystemClock())
        try:
            for _ in range(6):
                assert len(await source.poll_once(Sink())) == 8
        finally:
            await source.aclose()
    assert seen["char_s"] == pytest.approx(char_s)
    gaps = seen["gaps_s"]
    # One gap before each request but the first; the slave drops a gap whose start it could not
    # time closely (it was descheduled around writing the last reply byte; the last reply too).
    assert len(gaps) + seen["unmeasured_gaps"] in (6 * 8 - 1, 6 * 8)
    assert len(gaps) >= 30, seen["unmeasured_gaps"]
    # Measured at the slave: from its last reply byte to the first byte of the next request.
    assert min(gaps) >= 3.5 * char_s, sorted(gaps)[:5]


async def test_slave_side_gap_measurement_sees_a_short_gap(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    """Control for the test above: a master configured for 115200 baud keeps only the fixed
    1.75 ms, and the same slave-side measurement on the 9600-baud line sees gaps below 3.65 ms."""
    path_a, path_b = pty_pair
    with paced_slave(tmp_path, path_b, 8) as seen:
        source = ModbusBusSource(rtu_config(path_a, 8, baudrate=115200), SystemClock())
        try:
            for _ in range(6):
                await source.poll_once(Sink())
        finally:
            await source.aclose()
    assert min(seen["gaps_s"]) >= 0.00175
    assert min(seen["gaps_s"]) < 3.5 * 10 / 9600


async def test_meter_silent_at_start_is_read_once_it_answers_on_a_busy_paced_line(
    tmp_path: Path, pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # The measurement: 32 meters at a 1.5 s poll fill most of the cycle at 9600 baud,
    # leaving less slack than timeout_s; meter 17 is silent for its first 5 s, then answers.
    path_a, path_b = pty_pair
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    with paced_slave(tmp_path, path_b, 32, silent_for_s={17: 5.0}) as seen:
        source = ModbusBusSource(rtu_config(path_a, 32, timeout_s=1.0), SystemClock())
        sink = Sink()
        try:
            async with running(source, sink):
                await wait_for(lambda: len(sink.of("m17")) >= 3, timeout=60)
                await wait_for(lambda: all(sink.of(f"m{i}") for i in range(1, 33)), timeout=30)
        finally:
            await source.aclose()
    assert seen["requests"]["17"] >= 4  # asked while silent, and again once it answered
    assert source.stats.errors["timeout"] >= 1
    assert not source.offline_meters
    messages = [r.getMessage() for r in caplog.records if "m17" in r.getMessage()]
    assert len([m for m in messages if "offline after" in m]) == len(
        [m for m in messages if "back online" in m]
    )


async def test_meter_that_never_answers_goes_offline_on_a_busy_paced_line(
    tmp_path: Path, pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    path_a, path_b = pty_pair
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    with paced_slave(tmp_path, path_b, 32, dead_ids=[9]) as seen:
        source = ModbusBusSource(rtu_config(path_a, 32, timeout_s=1.0), SystemClock())
        sink = Sink()
        try:
            async with running(source, sink):
                await wait_for(lambda: source.offline_meters == {"m9"}, timeout=60)
                others = {f"m{i}" for i in range(1, 33)} - {"m9"}
                await wait_for(lambda: {r.meter_id for r in sink.readings} == others, timeout=60)
        finally:
            await source.aclose()
    lines = [r.getMessage() for r in caplog.records if "offline after" in r.getMessage()]
    assert (
        len(lines) == 1 and "meter m9 (device 9 on rs485) offline after 1 failed read" in lines[0]
    )
    assert seen["requests"]["9"] >= 1
    assert sink.of("m9") == []
    assert {r.meter_id for r in sink.readings} == {f"m{i}" for i in range(1, 33)} - {"m9"}


async def test_a_dead_meter_costs_one_timeout_per_backoff_probe_and_no_live_reading(
    tmp_path: Path, pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # With fitted timeouts on, a loaded machine can cut a live meter's read short; its same-cycle
    # retry (full timeout) must still read it: every live meter is read in every cycle.
    path_a, path_b = pty_pair
    cycles, interval_s = 6, 10.0
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    with paced_slave(tmp_path, path_b, 16, dead_ids=[9]) as seen:
        cfg = rtu_config(
            path_a, 16, poll_interval_s=interval_s, timeout_s=0.5, fitted_timeouts=True
        )
        source = ModbusBusSource(cfg, SystemClock())
        sink = Sink()
        started = time.monotonic()
        try:
            for _ in range(cycles):
                await source.poll_once(sink)
        finally:
            elapsed_s = time.monotonic() - started
            await source.aclose()
    live = [f"m{i}" for i in range(1, 17) if i != 9]
    assert {m: len(sink.of(m)) for m in live} == {m: cycles for m in live}
    assert sink.of("m9") == []
    # Never heard from: offline on its first timeout, then probed 10, 20, 40 s ... later.
    lines = [r.getMessage() for r in caplog.records if "offline after" in r.getMessage()]
    assert (
        len(lines) == 1 and "meter m9 (device 9 on rs485) offline after 1 failed read" in lines[0]
    )
    probes = sum(1 for k in range(16) if interval_s * (2**k - 1) <= elapsed_s)
    assert 1 <= seen["requests"]["9"] <= probes


async def test_a_request_given_up_early_leaves_the_line_usable(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    """The reader's own short timeout cancels pymodbus's request; the next one must still work."""
    from drivers.modbus_meter import PymodbusReader
    from hub.errors import DeviceUnreachable

    path_a, path_b = pty_pair
    with paced_slave(tmp_path, path_b, 4, dead_ids=[3]):
        reader = PymodbusReader(rtu_config(path_a, 4, timeout_s=1.0))
        try:
            first = await reader.read(3, 0, 6, 1)
            with pytest.raises(DeviceUnreachable, match=r"no reply within 0\.080 s"):
                await reader.read(3, 0, 6, 3, timeout_s=0.08)
            again = await reader.read(3, 0, 6, 2, timeout_s=0.5)
        finally:
            await reader.close()
    assert isinstance(first, list) and len(first) == 6
    assert isinstance(again, list) and len(again) == 6


# --- hub modbus probe against the pymodbus simulator holding a real TUF-2000M register dump ------

GAMBIT_DUMP = ROOT / "tests" / "data" / "modbus" / "tuf2000m_gambit_rawdt.txt"


async def serve_register_dump(port: str) -> Any:
    """A pymodbus RTU server, device 1, whose holding registers 0..99 are the dump's REG1..REG100."""
    from pymodbus.framer import FramerType
    from pymodbus.server import ModbusSerialServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    pairs = (line.split(":") for line in GAMBIT_DUMP.read_text(encoding="utf-8").split())
    registers = {int(reg): int(value) for reg, value in pairs}
    words = [registers[n] for n in range(1, 101)]
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    regs = [SimData(0, values=words, datatype=DataType.REGISTERS)]
    device = SimDevice(1, simdata=(bits, list(bits), regs, list(regs)))
    server = ModbusSerialServer([device], framer=FramerType.RTU, port=port, baudrate=9600)
    await server.serve_forever(background=True)
    return server


async def hub_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(("declared_base", "exit_code"), [(1, 0), (0, 1)])
async def test_hub_modbus_probe_says_which_address_base_reads_plausibly(
    tmp_path: Path, pty_pair: tuple[str, str], declared_base: int, exit_code: int
) -> None:
    path_a, path_b = pty_pair
    profile = tmp_path / "tuf_copy.toml"
    shipped = (ROOT / "drivers" / "profiles" / "tuf2000m.toml").read_text(encoding="utf-8")
    profile.write_text(shipped.replace("address_base = 1", f"address_base = {declared_base}"))
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[http]\nenabled = false\n\n'
        f'[[sources]]\ntype = "modbus"\nname = "rs485"\ntransport = "rtu"\n'
        f'serial_port = "{path_a}"\npoll_interval_s = 10\n'
        f'meters = [{{ meter_id = "tuf", device_id = 1, profile = "{profile}" }}]\n'
    )
    server = await serve_register_dump(path_b)
    try:
        code, out, err = await hub_cli("modbus", "probe", "-c", str(config))
    finally:
        await server.shutdown()
    assert code == exit_code, (out, err)
    if declared_base == 1:
        assert "OK    meter tuf (device 1): address_base = 1 (as declared)" in out
    else:
        assert "FAIL  meter tuf (device 1): address_base = 1 gives plausible values" in out
        assert "the profile declares 0" in out
