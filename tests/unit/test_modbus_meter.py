"""Unit tests of the Modbus meter driver: profiles, request planning, decoding, polling."""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.modbus_meter import (
    PROFILE_DIR,
    BusUnreachable,
    ExceptionReply,
    MeterAlarm,
    MeterConfig,
    MeterProfile,
    ModbusBusConfig,
    ModbusBusSource,
    ReadRequest,
    ValueSpec,
    decode_meter,
    decode_registers,
    encode_registers,
    load_profile,
    plan_reads,
    shipped_profiles,
)
from drivers.modbus_meter.probe import implausible, probe_meter
from drivers.modbus_meter.transport import rtu_silence_s
from drivers.polling import poll_forever
from hub.clock import ManualClock
from hub.errors import ConfigError, DeviceUnreachable
from hub.records import WaterMeterReading
from sim.meters import MeterState, register_image

SHIPPED = shipped_profiles()


def spec(address: int, type_: str = "uint16", function: int = 3) -> ValueSpec:
    return ValueSpec.model_validate(
        {"field": "total_m3", "address": address, "type": type_, "function": function}
    )


# --- profiles ---------------------------------------------------------------------------------


def test_at_least_three_real_profiles_and_generic_ship_with_sources() -> None:
    assert "generic" in SHIPPED
    assert len(set(SHIPPED) - {"generic"}) >= 3
    readme = (PROFILE_DIR / "README.md").read_text(encoding="utf-8")
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.source, f"{name} must say where its register map comes from"
        assert name in readme


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_read_total_and_flow(name: str) -> None:
    fields = {s.field for s in load_profile(name).values}
    assert {"total_m3", "flow_m3h"} <= fields


def test_profile_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[[value]]\nfield = "total_m3"\naddress = 7\ntype = "uint32"\n')
    profile = load_profile(str(path))
    assert profile.values[0].address == 7
    assert profile.values[0].count == 2


@pytest.mark.parametrize(
    "body",
    [
        'name = "x"\n',  # no values
        'name = "x"\n[[value]]\nfield = "pressure"\naddress = 1\n',
        'name = "x"\n[[value]]\nfield = "total_m3"\naddress = 1\ntype = "float64"\n',
        'name = "x"\n[[value]]\nfield = "total_m3"\naddress = 1\nfunction = 1\n',
        'name = "x"\n[[value]]\nfield = "total_m3"\naddress = 1\n[alarms]\nflood = 4\n',
        "name = ",
    ],
)
def test_bad_profiles_are_config_errors(tmp_path: Path, body: str) -> None:
    path = tmp_path / f"bad{abs(hash(body))}.toml"
    path.write_text(body)
    with pytest.raises(ConfigError):
        load_profile(str(path))


def test_missing_profile_is_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_meter"):
        load_profile("no_such_meter")


# --- request planning -------------------------------------------------------------------------


def test_contiguous_registers_make_one_request() -> None:
    specs = [spec(0, "uint32"), spec(2, "float32"), spec(4), spec(5)]
    assert plan_reads(specs, max_gap_registers=0) == (ReadRequest(3, 0, 6),)


def test_gap_at_the_limit_merges_and_one_more_splits() -> None:
    specs = [spec(0), spec(5)]  # registers 1..4 unused: a gap of 4
    assert plan_reads(specs, max_gap_registers=4) == (ReadRequest(3, 0, 6),)
    assert plan_reads(specs, max_gap_registers=3) == (ReadRequest(3, 0, 1), ReadRequest(3, 5, 1))


def test_function_codes_are_planned_separately() -> None:
    specs = [spec(10, function=4), spec(0, "uint32"), spec(11, function=4)]
    assert plan_reads(specs, max_gap_registers=32) == (
        ReadRequest(3, 0, 2),
        ReadRequest(4, 10, 2),
    )


def test_read_size_limit_splits() -> None:
    specs = [spec(0), spec(20, "uint32")]
    assert plan_reads(specs, 32, max_read_registers=22) == (ReadRequest(3, 0, 22),)
    assert plan_reads(specs, 32, max_read_registers=21) == (
        ReadRequest(3, 0, 1),
        ReadRequest(3, 20, 2),
    )


def test_overlapping_values_share_registers() -> None:
    assert plan_reads([spec(0, "uint32"), spec(1)], 0) == (ReadRequest(3, 0, 2),)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_value_is_covered_by_exactly_one_request(name: str) -> None:
    profile = load_profile(name)
    plan = plan_reads(profile.values, 32, profile.max_read_registers)
    for value in profile.values:
        assert sum(r.covers(value) for r in plan) == 1


def test_one_request_per_meter_for_generic_siemens_and_dynaflox() -> None:
    for name in ("generic", "siemens_mag6000", "dynaflox_ultrad"):
        profile = load_profile(name)
        assert len(plan_reads(profile.values, 32, profile.max_read_registers)) == 1, name


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registers", "data_type", "word_order", "expected"),
    [
        ([0xFFFF], "uint16", "big", 65535),
        ([0xFFFF], "int16", "big", -1),
        ([0x8000], "int16", "big", -32768),
        ([0x1234, 0x5678], "uint32", "big", 0x12345678),
        ([0x5678, 0x1234], "uint32", "little", 0x12345678),
        ([0xFFFF, 0xFFFE], "int32", "big", -2),
        ([0xFFFE, 0xFFFF], "int32", "little", -2),
        ([0x3FC0, 0x0000], "float32", "big", 1.5),  # IEEE 754: 1.5 = 3FC00000h
        ([0x0000, 0x3FC0], "float32", "little", 1.5),
        ([0xC2F6, 0xE979], "float32", "big", -123.456),
    ],
)
def test_decode_types_and_word_orders(
    registers: list[int], data_type: str, word_order: str, expected: float
) -> None:
    value = decode_registers(registers, data_type, word_order)  # type: ignore[arg-type]
    assert value == pytest.approx(expected, rel=1e-6)
    assert (
        decode_registers(encode_registers(value, data_type, word_order), data_type, word_order)
        == value
    )  # type: ignore[arg-type]


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["big", "little"]))
def test_int32_roundtrip(value: int, word_order: str) -> None:
    words = encode_registers(value, "int32", word_order)  # type: ignore[arg-type]
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_registers(words, "int32", word_order) == value  # type: ignore[arg-type]


def test_dynaflox_golden_registers() -> None:
    profile = load_profile("dynaflox_ultrad")
    registers = [0] * 17
    registers[0:2] = [0, 1234]  # 1234 L/h
    registers[2:4] = [0, 56]  # 56 m³
    registers[4:6] = [0x000C, 0x0A08]  # 789000 mL
    registers[14:16] = [0, 3600]  # 3600 mV
    registers[16] = 0x0010
    values = decode_meter(profile, {ReadRequest(3, 0, 17): registers})
    assert values.flow_m3h == pytest.approx(1.234)
    assert values.total_m3 == pytest.approx(56.789)
    assert values.battery_v == pytest.approx(3.6)
    assert values.alarm_bits == MeterAlarm.FAULT
    assert values.reverse_flow is False


def test_tuf2000m_little_word_order_and_negative_flow_is_reverse() -> None:
    profile = load_profile("tuf2000m", "net")
    low_block = [0] * 28
    low_block[0:2] = [0x0000, 0xBFC0]  # -1.5 m³/h, low word first
    low_block[24:26] = [0x3039, 0x0000]  # 12345 m³
    low_block[26:28] = [0x0000, 0x3F00]  # 0.5
    values = decode_meter(
        profile, {ReadRequest(3, 0, 28): low_block, ReadRequest(3, 71, 1): [0x0008]}
    )
    assert values.flow_m3h == -1.5
    assert values.total_m3 == 12345.5
    assert values.reverse_flow is True
    assert values.alarm_bits == MeterAlarm.EMPTY_PIPE | MeterAlarm.REVERSE_FLOW


def test_siemens_flow_is_converted_from_m3_per_second() -> None:
    profile = load_profile("siemens_mag6000")
    block = [0] * 22
    block[0:2] = encode_registers(0.001, "float32", "big")  # 1 L/s
    block[20:22] = encode_registers(4321.0, "float32", "big")
    values = decode_meter(profile, {ReadRequest(3, 3002, 22): block})
    assert values.flow_m3h == pytest.approx(3.6, rel=1e-6)
    assert values.total_m3 == 4321.0
    assert values.reverse_flow is None  # absolute flow says nothing about direction
    assert values.alarm_bits is None and values.battery_v is None


def test_non_finite_value_becomes_none_not_zero() -> None:
    profile = load_profile("generic")
    block = [0, 1000, 0x7FC0, 0x0000, 360, 0]  # flow is NaN
    values = decode_meter(profile, {ReadRequest(3, 0, 6): block})
    assert values.flow_m3h is None
    assert values.bad_fields == ("flow_m3h",)
    assert values.total_m3 == 1.0


@pytest.mark.parametrize("name", SHIPPED)
def test_simulator_encoding_and_driver_decoding_agree(name: str) -> None:
    profile = load_profile(name)
    state = MeterState(total_m3=1234.567, flow_m3h=0.75, battery_v=3.55, alarms=0)
    image = register_image(profile, state)
    plan = plan_reads(profile.values, 32, profile.max_read_registers)
    blocks = {r: [image.get((r.function, r.address + i), 0) for i in range(r.count)] for r in plan}
    values = decode_meter(profile, blocks)
    assert values.total_m3 == pytest.approx(1234.567, abs=1e-3)
    assert values.flow_m3h == pytest.approx(0.75, rel=1e-5)
    if any(s.field == "battery_v" for s in profile.values):
        assert values.battery_v == pytest.approx(3.55, abs=1e-3)


def test_generic_alarm_bits_are_normalised() -> None:
    profile = load_profile("generic")
    state = MeterState(1.0, 0.0, 3.0, int(MeterAlarm.TAMPER | MeterAlarm.LOW_BATTERY))
    image = register_image(profile, state)
    assert image[(3, 5)] == 0x0006  # device bits as the profile declares them
    values = decode_meter(profile, {ReadRequest(3, 0, 6): [image[(3, a)] for a in range(6)]})
    assert values.alarm_bits == MeterAlarm.TAMPER | MeterAlarm.LOW_BATTERY


# --- configuration ----------------------------------------------------------------------------


def bus(**kw: object) -> ModbusBusConfig:
    base: dict[str, object] = {
        "type": "modbus",
        "name": "bus",
        "poll_interval_s": 10.0,
        "timeout_s": 1.0,
        "meters": [{"meter_id": f"m{i}", "device_id": i} for i in (1, 2, 3)],
    }
    base.update(kw)
    return ModbusBusConfig.model_validate(base)


@pytest.mark.parametrize(
    "override",
    [
        {"transport": "rtu"},  # no serial_port
        {"timeout_s": 10.0},
        {"meters": [{"meter_id": "a", "device_id": 1}, {"meter_id": "b", "device_id": 1}]},
        {"meters": [{"meter_id": "a", "device_id": 1, "profile": "nope"}]},
        {"meters": [{"meter_id": "a", "device_id": 300}]},
        {"pol_interval_s": 3},
    ],
)
def test_bad_bus_config_is_rejected(override: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        bus(**override)


def test_minimal_bus_config_is_valid() -> None:
    cfg = ModbusBusConfig.model_validate({"type": "modbus", "name": "b"})
    assert cfg.transport == "tcp" and cfg.baudrate == 9600 and cfg.meters == ()


# --- the poller, against a scripted reader on a manual clock -------------------------------------


class ScriptedReader:
    """Answers like the generic profile after 10 ms (or `answer_s[id]`); dead ids, and answers
    slower than the timeout asked for, time out (advancing the clock by that timeout)."""

    def __init__(self, clock: ManualClock, timeout_s: float) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.dead: set[int] = set()
        self.exception: dict[int, int] = {}
        self.answer_s: dict[int, float] = {}
        self.bus_down = False
        self.requests: Counter[int] = Counter()
        self.timeouts_s: dict[int, list[float]] = {}  # the timeout of each request, per id

    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        self.requests[device_id] += 1
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        self.timeouts_s.setdefault(device_id, []).append(timeout_s)
        if self.bus_down:
            raise BusUnreachable("connection refused")
        answer_s = self.answer_s.get(device_id, 0.01)
        if device_id in self.dead or answer_s > timeout_s:
            self.clock.advance(timeout_s)
            raise DeviceUnreachable("timeout")
        if device_id in self.exception:
            return ExceptionReply(self.exception[device_id])
        self.clock.advance(answer_s)
        return [0, 1000 * device_id, 0, 0, 360, 0][address : address + count]

    async def close(self) -> None:
        pass


class Sink:
    def __init__(self) -> None:
        self.readings: list[WaterMeterReading] = []

    async def __call__(self, records: object) -> None:
        self.readings.extend(records)  # type: ignore[arg-type]


def poller(**kw: object) -> tuple[ModbusBusSource, ScriptedReader, ManualClock, Sink]:
    cfg = bus(**{"offline_after_failures": 3, "retries": 1, "dead_probe_interval_s": 80.0, **kw})
    clock = ManualClock()
    reader = ScriptedReader(clock, cfg.timeout_s)
    return ModbusBusSource(cfg, clock, reader), reader, clock, Sink()


async def test_one_request_per_meter_per_poll_and_correct_values() -> None:
    source, reader, clock, sink = poller()
    for _ in range(5):
        await source.poll_once(sink)
        clock.advance(10)
    assert reader.requests == {1: 5, 2: 5, 3: 5}
    assert source.requests_per_poll == 3
    latest = {r.meter_id: r for r in sink.readings}
    assert latest["m2"].total_m3 == 2.0 and latest["m2"].battery_v == 3.6
    assert source.stats.records == 15


async def test_dead_meter_goes_offline_once_yields_nothing_and_is_probed_less(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = poller()
    reader.dead.add(2)
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    for _ in range(30):
        await source.poll_once(sink)
        clock.advance(10)
    assert not [r for r in sink.readings if r.meter_id == "m2"]
    assert source.offline_meters == {"m2"}
    offline_lines = [r for r in caplog.records if "offline" in r.getMessage()]
    assert len(offline_lines) == 1
    assert reader.requests[1] == 30 and reader.requests[3] == 30
    # 2 tries in the first poll, 1 in the second (offline), then backoff 10, 20, 40, 80, 80 s ...
    assert reader.requests[2] < 10
    assert source.offline_total == 1


async def test_dead_meter_retried_only_after_the_healthy_ones() -> None:
    source, reader, clock, sink = poller()
    await source.poll_once(sink)  # m1 answers once, then falls silent
    clock.advance(10)
    reader.dead.add(1)
    start_ns = clock.now_ns()
    readings = await source.poll_once(sink)
    assert [r.meter_id for r in readings] == ["m2", "m3"]
    # m2 waited for one timeout of m1 at most; the retry of m1 came after m3 was read.
    assert readings[0].time_ns - start_ns < 1.1e9
    assert reader.requests[1] == 3
    assert source.offline_meters == frozenset()  # it answered before: 3 failures to go offline


async def test_dead_meter_probe_skipped_when_the_interval_has_no_room() -> None:
    source, reader, clock, sink = poller(timeout_s=4.0)
    reader.dead.add(1)
    await source.poll_once(sink, deadline_ns=clock.now_ns() + 5_000_000_000)
    # first try of m1 took 4 s, leaving < 4 s: the retry waits for the next cycle
    assert reader.requests[1] == 1


async def test_meter_back_online_logs_once_and_reads_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = poller()
    reader.dead.add(3)
    for _ in range(5):
        await source.poll_once(sink)
        clock.advance(10)
    reader.dead.clear()
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    for _ in range(20):
        await source.poll_once(sink)
        clock.advance(10)
    assert source.offline_meters == frozenset()
    assert len([r for r in caplog.records if "back online" in r.getMessage()]) == 1
    assert sink.readings[-1].meter_id == "m3"


async def test_exception_reply_is_counted_not_offline_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = poller()
    reader.exception[2] = 0x02  # illegal data address: a profile that does not fit the meter
    caplog.set_level(logging.WARNING, logger="drivers.modbus_meter")
    for _ in range(6):
        await source.poll_once(sink)
        clock.advance(10)
    assert source.stats.errors["modbus_exception"] == 6
    assert source.offline_meters == frozenset()
    assert len(caplog.records) == 1
    assert {r.meter_id for r in sink.readings} == {"m1", "m3"}


async def test_gateway_no_response_exception_counts_as_silence() -> None:
    source, reader, clock, sink = poller()
    reader.exception[2] = 0x0B
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    assert source.offline_meters == {"m2"}


async def test_bus_down_penalises_no_meter(caplog: pytest.LogCaptureFixture) -> None:
    source, reader, clock, sink = poller()
    reader.bus_down = True
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    for _ in range(5):
        await source.poll_once(sink)
        clock.advance(10)
    assert sum(reader.requests.values()) == 5  # one attempt per poll, then the cycle gives up
    assert source.offline_meters == frozenset()
    assert source.stats.connected is False
    reader.bus_down = False
    await source.poll_once(sink)
    assert source.stats.connected is True
    assert len(sink.readings) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unreachable" in m]) == 1
    assert len([m for m in messages if "reachable" in m and "unreachable" not in m]) == 1


@given(st.sampled_from(SHIPPED), st.data())
def test_random_registers_decode_without_crashing(name: str, data: st.DataObject) -> None:
    profile = load_profile(name)
    plan = plan_reads(profile.values, 32, profile.max_read_registers)
    blocks = {
        r: data.draw(st.lists(st.integers(0, 0xFFFF), min_size=r.count, max_size=r.count))
        for r in plan
    }
    values = decode_meter(profile, blocks)
    for number in (values.total_m3, values.flow_m3h, values.battery_v):
        assert number is None or math.isfinite(number)
    assert values.alarm_bits is None or 0 <= values.alarm_bits <= 0x7F


# --- real register dump of a TUF-2000M (tests/data/README.md, "Modbus meters") ------------------

GAMBIT_DUMP = Path(__file__).parents[1] / "data" / "modbus" / "tuf2000m_gambit_rawdt.txt"


def manual_registers(path: Path) -> dict[int, int]:
    """{REG number as the manual prints it: value} from a "n:value" per line dump."""
    pairs = (line.split(":") for line in path.read_text(encoding="utf-8").split())
    return {int(reg): int(value) for reg, value in pairs}


def blocks_from_manual(profile: MeterProfile, registers: dict[int, int], base: int) -> dict:
    """The replies a meter holding `registers` gives to the profile's plan when the manual's
    REG n sits at PDU address n - base."""
    plan = plan_reads(profile.values, 32, profile.max_read_registers)
    return {r: [registers.get(r.address + i + base, 0) for i in range(r.count)] for r in plan}


def test_tuf2000m_real_dump_positive_accumulator_carries_the_volume() -> None:
    registers = manual_registers(GAMBIT_DUMP)
    positive = load_profile("tuf2000m")
    assert positive.accumulator == "positive" and positive.address_base == 1
    values = decode_meter(positive, blocks_from_manual(positive, registers, base=1))
    # REG0001-0002 = 7579, 48988: 0xBF5C1D9B low word first = -0.85983 m³/h
    assert values.flow_m3h == pytest.approx(-0.8598267, rel=1e-6)
    # REG0009-0010 positive LONG = 0, REG0011-0012 = 24224, 15965: 0x3E5D5EA0 = 0.21618 m³
    assert values.total_m3 == pytest.approx(0.2161813, rel=1e-6)
    assert values.reverse_flow is True
    # REG0072 = 4: bit 2 "poor signal" is no alarm the profile maps; only the reverse flow shows
    assert values.alarm_bits == MeterAlarm.REVERSE_FLOW
    # the same dump read through the net accumulator (REG0025-0028 all 0): the "total 0"
    net = load_profile("tuf2000m", "net")
    assert decode_meter(net, blocks_from_manual(net, registers, base=1)).total_m3 == 0.0


def test_tuf2000m_real_dump_read_with_the_wrong_base_is_implausible() -> None:
    registers = manual_registers(GAMBIT_DUMP)
    profile = load_profile("tuf2000m")
    assert implausible(profile, blocks_from_manual(profile, registers, base=1)) == []
    wrong = profile.rebased(0)  # REG n read at PDU n: every value one register off
    assert [v.address for v in wrong.values] == [s.address + 1 for s in profile.values]
    problems = implausible(wrong, blocks_from_manual(wrong, registers, base=1))
    assert any("flow_m3h" in p for p in problems), problems
    assert any("total_m3" in p for p in problems), problems


def test_address_base_one_turns_manual_numbers_into_pdu_addresses(tmp_path: Path) -> None:
    def profile_with(name: str, base: int, address: int) -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'name = "{name}"\naddress_base = {base}\n'
            f'[[value]]\nfield = "total_m3"\naddress = {address}\n'
        )
        return str(path)

    assert load_profile(profile_with("one", 1, 1)).values[0].address == 0
    assert load_profile(profile_with("zero", 0, 1)).values[0].address == 1
    with pytest.raises(ConfigError, match="address_base"):
        load_profile(profile_with("below", 1, 0))
    with pytest.raises(ConfigError, match="address_base"):
        load_profile(profile_with("two", 2, 3))


def test_accumulator_is_chosen_per_profile_and_per_meter(tmp_path: Path) -> None:
    assert {s.address for s in load_profile("tuf2000m").values if s.field == "total_m3"} == {8, 10}
    net = load_profile("tuf2000m", "net")
    assert {s.address for s in net.values if s.field == "total_m3"} == {24, 26}
    with pytest.raises(ConfigError, match="negative"):
        load_profile("tuf2000m", "negative")
    cfg = bus(
        meters=[{"meter_id": "a", "device_id": 1, "profile": "tuf2000m", "accumulator": "net"}]
    )
    assert cfg.meters[0].accumulator == "net"
    with pytest.raises(ValidationError):
        bus(meters=[{"meter_id": "a", "device_id": 1, "profile": "tuf2000m", "accumulator": "x"}])
    with pytest.raises(ValidationError, match="no 'negative' accumulator"):
        bus(
            meters=[
                {"meter_id": "a", "device_id": 1, "profile": "tuf2000m", "accumulator": "negative"}
            ]
        )
    path = tmp_path / "acc.toml"
    path.write_text(
        'name = "acc"\naccumulator = "net"\n'
        '[[value]]\nfield = "total_m3"\naddress = 1\naccumulator = "positive"\n'
    )
    with pytest.raises(ConfigError, match="accumulator 'net' not in this profile"):
        load_profile(str(path))


# --- defaults and the RTU line -----------------------------------------------------------------


@pytest.mark.parametrize(("interval_s", "timeout_s"), [(1.0, 1 / 3), (1.5, 0.5), (60.0, 1.0)])
def test_default_timeout_is_derived_from_the_poll_interval(
    interval_s: float, timeout_s: float
) -> None:
    cfg = ModbusBusConfig.model_validate(
        {"type": "modbus", "name": "b", "poll_interval_s": interval_s}
    )
    assert cfg.timeout_s == pytest.approx(timeout_s)
    assert cfg.timeout_s < cfg.poll_interval_s
    explicit = {"type": "modbus", "name": "b", "poll_interval_s": 1.0, "timeout_s": 1.0}
    with pytest.raises(ValidationError, match="timeout_s"):
        ModbusBusConfig.model_validate(explicit)


@pytest.mark.parametrize(
    ("baud", "bytesize", "parity", "stopbits", "expected_s"),
    [
        (9600, 8, "N", 1, 3.5 * 10 / 9600),  # 3.65 ms, the figure in the issue
        (9600, 8, "E", 1, 3.5 * 11 / 9600),  # the spec's 11-bit character
        (2400, 8, "N", 2, 3.5 * 11 / 2400),
        (19200, 8, "N", 1, 3.5 * 10 / 19200),
        (38400, 8, "N", 1, 0.00175),  # fixed above 19200 baud (spec 2.5.1.1)
        (115200, 8, "E", 1, 0.00175),
    ],
)
def test_rtu_inter_frame_silence(
    baud: int, bytesize: int, parity: str, stopbits: int, expected_s: float
) -> None:
    assert rtu_silence_s(baud, bytesize, parity, stopbits) == pytest.approx(expected_s)


def test_pymodbus_floor_is_declared_installed_and_has_the_signature_we_call() -> None:
    import importlib.metadata
    import inspect
    import re
    import tomllib

    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    spec = next(d for d in pyproject["project"]["dependencies"] if d.startswith("pymodbus"))
    floor = re.fullmatch(r"pymodbus>=(\d+)\.(\d+)(?:\.(\d+))?", spec)
    assert floor, spec
    installed = re.match(r"(\d+)\.(\d+)\.?(\d+)?", importlib.metadata.version("pymodbus"))
    assert installed
    as_tuple = lambda m: tuple(int(g or 0) for g in m.groups())  # noqa: E731
    assert as_tuple(installed) >= as_tuple(floor)
    # The driver calls device_id= (replaced slave= in 3.10); the simulator gives SimDevice an
    # action= with a block per function code, refused before 3.13 ("action= id only supported with
    # shared blocks" in 3.12.1). Measured: these tests pass on 3.13.0 to 3.16.1, fail on 3.12.1.
    assert as_tuple(floor) >= (3, 13)
    for client in (AsyncModbusSerialClient, AsyncModbusTcpClient):
        for method in (client.read_holding_registers, client.read_input_registers):
            assert "device_id" in inspect.signature(method).parameters


# --- a busy bus: fairness and scheduling, on the manual clock ----------------------------------


class BusyReader(ScriptedReader):
    """Every answered read costs `read_s` of bus time; `silent_until_ns[id]`: silent before then."""

    def __init__(self, clock: ManualClock, timeout_s: float, read_s: float) -> None:
        super().__init__(clock, timeout_s)
        self.read_s = read_s
        self.silent_until_ns: dict[int, int] = {}
        self.asked_ns: dict[int, list[int]] = {}

    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        self.asked_ns.setdefault(device_id, []).append(self.clock.now_ns())
        if self.clock.now_ns() < self.silent_until_ns.get(device_id, 0):
            self.requests[device_id] += 1
            self.clock.advance(self.timeout_s if timeout_s is None else timeout_s)
            raise DeviceUnreachable("timeout")
        reply = await super().read(function, address, count, device_id, timeout_s)
        self.clock.advance(self.read_s - 0.01)
        return reply


class _Stop(Exception):
    pass


async def run_for(source: ModbusBusSource, sink: Sink, clock: ManualClock, seconds: float) -> int:
    """Run the source's real polling loop for `seconds` of manual-clock time; returns cycles."""
    end_ns = clock.now_ns() + int(seconds * 1e9)
    cycles = 0

    async def poll(deadline_ns: int) -> None:
        nonlocal cycles
        if clock.now_ns() >= end_ns:
            raise _Stop
        cycles += 1
        await source.poll_once(sink, deadline_ns=deadline_ns)

    with pytest.raises(_Stop):
        await poll_forever(clock, source.cfg.poll_interval_s, source.stats, poll)
    return cycles


def busy_bus(meters: int, interval_s: float, timeout_s: float, read_s: float, **kw: object):
    cfg = bus(
        poll_interval_s=interval_s,
        timeout_s=timeout_s,
        meters=[{"meter_id": f"m{i}", "device_id": i} for i in range(1, meters + 1)],
        **kw,
    )
    clock = ManualClock()
    reader = BusyReader(clock, cfg.timeout_s, read_s)
    return ModbusBusSource(cfg, clock, reader), reader, clock, Sink()


async def test_a_meter_silent_at_start_is_still_polled_when_the_cycle_has_no_slack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The case: 32 meters at a 1.5 s poll take ~1 s of bus time, leaving less slack than
    # the 1 s timeout; meter 17 is silent for its first 5 s, then answers.
    source, reader, clock, sink = busy_bus(32, 1.5, 1.0, read_s=0.031, offline_after_failures=3)
    start_ns = clock.now_ns()
    reader.silent_until_ns[17] = start_ns + 5 * 10**9
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    await run_for(source, sink, clock, 85)
    back = [r for r in sink.readings if r.meter_id == "m17"]
    assert len(back) >= 40, len(back)  # read again from its return on, every cycle
    # Never heard from, it went offline on its first failure and was probed with a backoff
    # doubling from the poll interval, so it was read again within its silence plus a cycle.
    assert back[0].time_ns - reader.silent_until_ns[17] <= 5e9 + 2 * 1.5e9
    asked = [t for t in reader.asked_ns[17] if t < reader.silent_until_ns[17]]
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert all(b <= 2 * a + 1.5e9 for a, b in itertools.pairwise(gaps)), gaps
    messages = [r.getMessage() for r in caplog.records]
    offline = [m for m in messages if "m17" in m and "offline after 1 failed read;" in m]
    back_online = [m for m in messages if "m17" in m and "back online" in m]
    assert len(offline) == len(back_online) == 1
    assert source.stats.counts["meter_offline"] == source.stats.counts["meter_back_online"] == 1


async def test_a_meter_that_never_answers_goes_offline_with_its_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = busy_bus(32, 1.5, 1.0, read_s=0.031, offline_after_failures=3)
    reader.silent_until_ns[9] = 2**62
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    await run_for(source, sink, clock, 3 * 1.5 + 3)
    assert source.offline_meters == {"m9"}
    lines = [r for r in caplog.records if "offline after 1 failed read;" in r.getMessage()]
    assert len(lines) == 1 and "m9" in lines[0].getMessage()
    # offline on its first failed read, then probed no sooner than 1.5 s, 3 s, ... later
    asked = reader.asked_ns[9]
    assert 2 <= len(asked) <= 3
    assert all(b - a >= 1.5e9 * 2**k for k, (a, b) in enumerate(itertools.pairwise(asked)))
    assert {r.meter_id for r in sink.readings} == {f"m{i}" for i in range(1, 33)} - {"m9"}


async def test_a_meter_that_answered_before_goes_offline_after_the_full_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = busy_bus(32, 1.5, 1.0, read_s=0.031, offline_after_failures=3)
    await run_for(source, sink, clock, 3)
    reader.silent_until_ns[9] = 2**62
    silent_ns = clock.now_ns()
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    await run_for(source, sink, clock, 3 * 1.5 + 3)
    assert source.offline_meters == {"m9"}
    lines = [r for r in caplog.records if "offline after 3 failed reads;" in r.getMessage()]
    assert len(lines) == 1 and "m9" in lines[0].getMessage()
    tries = [t for t in reader.asked_ns[9] if t >= silent_ns][:3]
    assert max(b - a for a, b in itertools.pairwise(tries)) <= 3 * 1.5e9
    others = {r.meter_id for r in sink.readings if r.time_ns >= silent_ns}
    assert others == {f"m{i}" for i in range(1, 33)} - {"m9"}


async def test_offline_probes_back_off_to_the_cap_and_each_state_change_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, reader, clock, sink = poller(dead_probe_interval_s=80.0)
    reader.dead.add(2)
    caplog.set_level(logging.INFO, logger="drivers.modbus_meter")
    for _ in range(60):  # 600 s at a 10 s poll
        await source.poll_once(sink)
        clock.advance(10)
    # one try, then probes after 10, 20, 40 s and then every 80 s (the cap): 1 + 3 + 6 in 600 s
    assert 9 <= reader.requests[2] <= 11, reader.requests[2]
    assert source.stats.counts["meter_offline"] == 1 and source.offline_total == 1
    assert source.stats.errors["timeout"] == reader.requests[2]
    reader.dead.clear()
    for _ in range(10):
        await source.poll_once(sink)
        clock.advance(10)
    assert source.offline_meters == frozenset()
    assert source.stats.counts["meter_back_online"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "offline after" in m]) == 1
    assert len([m for m in messages if "back online" in m]) == 1
    assert len([r for r in sink.readings if r.meter_id == "m2"]) >= 2


async def test_a_live_meter_waits_a_timeout_fitted_to_its_answers() -> None:
    source, reader, clock, sink = poller(fitted_timeouts=True, min_timeout_s=0.05)
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    # first read: nothing known, the bus's timeout; then 3 x its 10 ms answers, at least the floor
    assert reader.timeouts_s[1] == [1.0, pytest.approx(0.05), pytest.approx(0.05)]
    reader.answer_s[1] = 0.04
    await source.poll_once(sink)
    clock.advance(10)
    await source.poll_once(sink)
    assert reader.timeouts_s[1][-1] == pytest.approx(0.12)


async def test_a_meter_that_slows_down_loses_no_reading_and_its_timeout_follows() -> None:
    source, reader, clock, sink = poller(fitted_timeouts=True, min_timeout_s=0.05)
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    reader.answer_s[2] = 0.4  # slower than its fitted timeout, within the bus's 1 s
    per_poll = [len(await source.poll_once(sink)) for _ in range(5)]
    assert per_poll == [3] * 5  # the same-cycle retry waits the full timeout: nothing lost
    assert source.stats.errors["timeout"] == 1  # then the fitted timeout covers its new pace
    assert reader.timeouts_s[2][-1] == 1.0  # 3 x 0.4 s is more than the bus's timeout
    assert source.offline_meters == frozenset()


@pytest.mark.parametrize("fitting", [{}, {"fitted_timeouts": True, "min_timeout_s": 1.0}])
async def test_without_fitting_every_read_waits_the_bus_timeout(fitting: dict[str, object]) -> None:
    source, reader, clock, sink = poller(**fitting)
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    assert set(reader.timeouts_s[1]) == {1.0}


async def test_a_read_cut_short_by_its_fitted_timeout_is_retried_even_without_room() -> None:
    source, reader, clock, sink = poller(fitted_timeouts=True, min_timeout_s=0.05)
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    reader.answer_s[2] = 0.3  # a loaded gateway: late for the fitted timeout, within timeout_s
    readings = await source.poll_once(sink, deadline_ns=clock.now_ns() + 500_000_000)
    assert sorted(r.meter_id for r in readings) == ["m1", "m2", "m3"]
    reader.dead.add(3)  # answered before, now silent: one retry after its fitted timeout...
    for expected_requests in (6, 7):  # ...then one full-timeout try per cycle, no retry: no room
        clock.advance(10)
        readings = await source.poll_once(sink, deadline_ns=clock.now_ns() + 500_000_000)
        assert reader.requests[3] == expected_requests
        assert sorted(r.meter_id for r in readings) == ["m1", "m2"]
    assert reader.timeouts_s[3][-3:] == [pytest.approx(0.05), 1.0, 1.0]


async def test_a_fitted_rtu_timeout_never_undercuts_the_line_time_of_the_read() -> None:
    # 1200 baud 8N1: request, 6-register reply and the 3.5-character silence take 0.24 s on the
    # line, far more than the scripted meter's 10 ms.
    source, reader, clock, sink = poller(
        transport="rtu",
        serial_port="/dev/null",
        baudrate=1200,
        fitted_timeouts=True,
        min_timeout_s=0.02,
    )
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(10)
    line_s = (8 + 5 + 2 * 6 + 3.5) * 10 / 1200
    assert reader.timeouts_s[1][-1] == pytest.approx(line_s + 0.02)


async def test_an_overrun_starts_the_next_cycle_at_once_and_is_counted() -> None:
    # 10 meters x 0.11 s = 1.1 s of bus work per 1 s cycle: every cycle overruns by ~0.1 s.
    source, _reader, clock, sink = busy_bus(10, 1.0, 0.3, read_s=0.11)
    cycles = await run_for(source, sink, clock, 22)
    assert cycles >= 19  # a fixed phase grid would skip every other slot: ~11 cycles
    assert source.stats.errors["poll_overrun"] >= cycles - 1
    assert len(sink.readings) == 10 * cycles


async def test_no_overrun_keeps_the_interval() -> None:
    source, reader, clock, sink = busy_bus(10, 1.0, 0.3, read_s=0.05)
    cycles = await run_for(source, sink, clock, 20)
    assert cycles == 20
    assert source.stats.errors["poll_overrun"] == 0
    starts = reader.asked_ns[1]
    assert {b - a for a, b in itertools.pairwise(starts)} == {10**9}


# --- hub modbus probe, against a scripted reader -----------------------------------------------


class DumpReader:
    """Answers from a register dump whose manual REG n sits at PDU address n - 1."""

    def __init__(self, registers: dict[int, int], exception: int | None = None) -> None:
        self.registers = registers
        self.exception = exception

    async def read(
        self,
        function: int,
        address: int,
        count: int,
        device_id: int,
        timeout_s: float | None = None,
    ) -> list[int] | ExceptionReply:
        if self.exception is not None:
            return ExceptionReply(self.exception)
        return [self.registers.get(address + 1 + i, 0) for i in range(count)]

    async def close(self) -> None:
        pass


async def test_probe_verdicts_on_the_real_dump() -> None:
    registers = manual_registers(GAMBIT_DUMP)
    meter = MeterConfig(meter_id="tuf", device_id=1, profile="tuf2000m")
    result = await probe_meter(DumpReader(registers), meter)
    assert result.ok and result.plausible_bases == (1,)
    assert "address_base = 1 (as declared)" in result.summary()
    silent = await probe_meter(DumpReader(registers, exception=0x02), meter)
    assert not silent.ok and silent.plausible_bases == ()
    assert "no address base gives plausible values" in silent.summary()
    assert "exception 0x02" in silent.summary()


async def test_probe_of_a_profile_starting_at_address_0_rules_out_base_1() -> None:
    generic = MeterConfig(meter_id="g", device_id=1, profile="generic")
    result = await probe_meter(DumpReader({1: 0, 2: 1000, 3: 0x3F00, 4: 0, 5: 360, 6: 0}), generic)
    assert result.plausible_bases == (0,) and result.ok
    assert "below address 0" in " ".join(result.verdicts[1].problems)
