"""CJ/T 188 meters over a socat pty pair: simulator on one end, the hub source on the other."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from drivers.cjt188 import Cjt188Config, Cjt188Source
from hub.clock import NS_PER_S, SystemClock
from hub.records import MeterAlarm, Record, WaterMeterReading
from sim.meters import Cjt188MeterSim, Cjt188Simulator, dead, low_battery, normal

pytestmark = pytest.mark.integration

ADDRESSES = ("00202307160001", "00202307160002", "00202307160003")


class Sink:
    def __init__(self) -> None:
        self.readings: list[WaterMeterReading] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.readings.extend(r for r in records if isinstance(r, WaterMeterReading))


def source_for(port: str, **kw: object) -> Cjt188Source:
    cfg = Cjt188Config.model_validate(
        {
            "type": "cjt188",
            "name": "cj188",
            "serial_port": port,
            "poll_interval_s": 5.0,
            "timeout_s": 0.5,
            # Linux ptys reject some re-configurations with parity E (EINVAL) and emulate no
            # parity anyway: both ends use N here; real lines use the standard's 8E1 default.
            "parity": "N",
            "vendor_status_alarms": {"tamper": 0x08},
            "meters": [{"meter_id": f"w{i + 1}", "address": a} for i, a in enumerate(ADDRESSES)],
            **kw,
        }
    )
    return Cjt188Source(cfg, SystemClock())


async def test_cjt188_meters_over_a_pty_pair(
    pty_pair: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    path_a, path_b = pty_pair
    sims = [
        Cjt188MeterSim(ADDRESSES[0], normal(0, start_total_m3=123.45)),
        Cjt188MeterSim(
            ADDRESSES[1], low_battery(0, start_total_m3=7.0), valve_closed=True, clock_offset_s=3600
        ),
        Cjt188MeterSim(ADDRESSES[2], dead(0)),
    ]
    sims[1].meter.alarms |= MeterAlarm.TAMPER
    simulator = Cjt188Simulator(sims)
    await simulator.start(path_b, parity="N")
    source = source_for(path_a)
    caplog.set_level(logging.INFO, logger="drivers.cjt188")
    sink = Sink()
    try:
        for _ in range(3):
            await source.poll_once(sink)
        simulator.corrupt_next = 1
        await source.poll_once(sink)
    finally:
        await source.aclose()
        await simulator.stop()

    # di_order "auto": the live meters answer 90 1F at once; the dead one is asked in both orders
    # on each of its 3 polls before it goes offline (then it is only probed with backoff).
    assert dict(simulator.requests) == {a: 4 if a != ADDRESSES[2] else 6 for a in ADDRESSES}
    assert source.di_orders == {"w1": "901F", "w2": "901F", "w3": None}
    w1 = [r for r in sink.readings if r.meter_id == "w1"]
    w2 = [r for r in sink.readings if r.meter_id == "w2"]
    assert len(w1) == 3  # the fourth reply had a bad checksum: counted, no reading
    assert len(w2) == 4
    assert not [r for r in sink.readings if r.meter_id == "w3"]
    elapsed_s = (w1[0].time_ns - simulator.start_ns) / NS_PER_S
    assert w1[0].total_m3 == pytest.approx(sims[0].meter.state(elapsed_s).total_m3, abs=0.011)
    # w1's clock is right: its reading carries the meter's own (whole-second) time
    assert all(r.time_ns % NS_PER_S == 0 for r in w1)
    # w2's clock is an hour off: gateway time is used instead, and that is counted
    assert source.stats.errors["meter_clock_off"] == 4
    assert w2[0].alarm_bits == MeterAlarm.LOW_BATTERY | MeterAlarm.VALVE_CLOSED | MeterAlarm.TAMPER
    assert w2[0].total_m3 == pytest.approx(7.0, abs=0.011)
    assert source.stats.errors["checksum"] == 1
    assert source.offline_meters == {"w3"}
    assert len([r for r in caplog.records if "offline" in r.getMessage()]) == 1


async def test_auto_discovers_a_1f90_meter_and_keeps_its_order(pty_pair: tuple[str, str]) -> None:
    """A CJ/T 188-2018 style meter (DI low byte first) next to a 2004 one on the same line."""
    path_a, path_b = pty_pair
    sims = [
        Cjt188MeterSim(ADDRESSES[0], normal(0, start_total_m3=42.0)),
        # answers only 1F 90 requests, in litres (29h): 123.45 m³ = 123450.00 L on the wire
        Cjt188MeterSim(ADDRESSES[1], normal(0, start_total_m3=123.45), di_order="1F90", unit=0x29),
    ]
    simulator = Cjt188Simulator(sims)
    await simulator.start(path_b, parity="N")
    cfg = {"meters": [{"meter_id": f"w{i + 1}", "address": a} for i, a in enumerate(ADDRESSES[:2])]}
    source = source_for(path_a, **cfg)
    sink = Sink()
    try:
        for _ in range(3):
            await source.poll_once(sink)
    finally:
        await source.aclose()
        await simulator.stop()

    assert source.di_orders == {"w1": "901F", "w2": "1F90"}
    # w2: one unanswered 90 1F, then 1F 90 on every poll; w1 never needed the other order
    assert dict(simulator.requests) == {ADDRESSES[0]: 3, ADDRESSES[1]: 4}
    w2 = [r for r in sink.readings if r.meter_id == "w2"]
    assert len(w2) == 3
    elapsed_s = (w2[0].time_ns - simulator.start_ns) / NS_PER_S
    assert w2[0].total_m3 == pytest.approx(sims[1].meter.state(elapsed_s).total_m3, abs=0.011)
    assert w2[0].total_m3 > 123.4  # litres converted, not read as m³
    assert source.offline_meters == frozenset()
    assert source.stats.errors.get("timeout", 0) == 0
