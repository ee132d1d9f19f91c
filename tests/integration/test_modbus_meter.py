"""Modbus meters against a real pymodbus server: TCP on loopback and RTU over a socat pty pair."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from drivers.modbus_meter import ModbusBusConfig, ModbusBusSource
from drivers.sim_meters import MeterSim, ModbusMeterServer, dead, leaking, normal, tampered
from hub.clock import NS_PER_S, SystemClock
from hub.records import MeterAlarm, Record, WaterMeterReading
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
    assert dict(server.requests) == {1: 3, 2: 3, 3: 3, 4: 3}
    assert {r.meter_id for r in sink.readings} == {"m1", "m2", "m4"}
    assert len(sink.readings) == 9
    m1 = sink.of("m1")[-1]
    assert m1.total_m3 == pytest.approx(expected_total(sims[0], server, m1), abs=0.002)
    assert sink.of("m2")[-1].alarm_bits == MeterAlarm.TAMPER
    assert source.offline_meters == {"m3"}
    assert source.stats.errors["timeout"] == 3
