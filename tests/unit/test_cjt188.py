"""Unit tests of the CJ/T 188 codec and source: golden and public frames, errors, fuzzing, timestamps."""

from __future__ import annotations

import contextlib
import logging
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cjt188 import (
    Cjt188Config,
    Cjt188Source,
    Frame,
    MeterData,
    UnitRefused,
    build_frame,
    build_read_request,
    encode_address,
    encode_meter_data,
    meter_clock,
    parse_frame,
    parse_meter_data,
    request_di_order,
    split_frame,
    status_layout,
    status_layouts,
)
from hub.clock import NS_PER_S, ManualClock
from hub.errors import ChecksumError, DeviceUnreachable, FrameError, HubError, ProtocolError
from hub.records import MeterAlarm, WaterMeterReading

ADDRESS = "00202307160177"
CST = timezone(timedelta(hours=8))

# 901F read request to meter 00202307160177 (cold water, SER 0), two FE preamble bytes.
# CS = 68+10+77+01+16+07+23+20+00+01+03+90+1F+00 = 0x203 -> 03 (checked by hand).
GOLDEN_REQUEST = bytes.fromhex("FEFE 68 10 77011607232000 01 03 901F00 03 16".replace(" ", ""))

# Its reply: current total 12.34 m³ (BCD 34 12 00 00, unit 2C), settlement-day total 10.00 m³,
# meter clock 2026-11-23 12:00:00 (ss mm hh DD MM YY YY = 00 00 12 23 11 26 20), ST = 04 00
# (valve open, battery low). L = 16h = 22 data bytes; CS = 0x3D9 mod 256 = D9 (checked by hand).
GOLDEN_REPLY = bytes.fromhex(
    "FEFEFE 68 10 77011607232000 81 16"
    " 901F 05 34120000 2C 00100000 2C 00001223112620 0400 D9 16".replace(" ", "")
)


def test_golden_read_request() -> None:
    assert build_read_request(ADDRESS, ser=0) == GOLDEN_REQUEST


def test_address_is_bcd_low_byte_first() -> None:
    assert encode_address(ADDRESS) == bytes([0x77, 0x01, 0x16, 0x07, 0x23, 0x20, 0x00])
    with pytest.raises(FrameError):
        encode_address("12345")
    with pytest.raises(FrameError):
        encode_address("0020230716017X")


def test_golden_reply_parses_exactly() -> None:
    frame = parse_frame(GOLDEN_REPLY)
    assert frame == Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=GOLDEN_REPLY[14:-2])
    data = parse_meter_data(frame)
    assert data.ser == 5
    assert data.total_m3 == 12.34
    assert data.settlement_total_m3 == 10.0
    assert data.meter_time == datetime(2026, 11, 23, 12, 0, 0)
    flags = status_layout("cjt188-2004").decode(data.status)
    assert flags.valve == "open"
    assert flags.battery_low is True
    assert flags.alarm_bits == MeterAlarm.LOW_BATTERY


def test_encoder_reproduces_the_golden_reply() -> None:
    data = parse_meter_data(parse_frame(GOLDEN_REPLY))
    rebuilt = build_frame(
        Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=encode_meter_data(data)),
        preamble=3,
    )
    assert rebuilt == GOLDEN_REPLY


def test_litre_unit_and_closed_valve() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[7] = 0x29  # current total in litres: 12.34 L
    data[20] = 0b01  # valve closed, battery fine
    frame = parse_frame(
        build_frame(Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data)))
    )
    parsed = parse_meter_data(frame)
    assert parsed.total_m3 == pytest.approx(0.01234)
    flags = status_layout("cjt188-2004").decode(parsed.status)
    assert flags.valve == "closed"
    assert flags.alarm_bits == MeterAlarm.VALVE_CLOSED


def test_vendor_status_bits_map_to_alarms() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[21] = 0x08  # ST2 bit 3: magnetic attack on some meters (vendor-defined)
    parsed = parse_meter_data(
        Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data))
    )
    layout = status_layout("cjt188-2004")
    assert layout.decode(parsed.status).alarm_bits == MeterAlarm.LOW_BATTERY
    tampered = layout.decode(parsed.status, {"tamper": 0x08}).alarm_bits
    assert tampered == MeterAlarm.LOW_BATTERY | MeterAlarm.TAMPER


def corrupt(index: int, value: int) -> bytes:
    raw = bytearray(GOLDEN_REPLY)
    raw[index] = value
    return bytes(raw)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (corrupt(-2, 0xDA), ChecksumError),
        (corrupt(20, 0x35), ChecksumError),  # a data byte changed in transit
        (corrupt(-1, 0x17), FrameError),
        (GOLDEN_REPLY[:-1], FrameError),
        (GOLDEN_REPLY[:12], FrameError),
        (GOLDEN_REPLY + b"\x00", FrameError),
        (b"", FrameError),
        (b"\xfe\xfe", FrameError),
        (corrupt(3, 0x69), FrameError),
    ],
)
def test_bad_frames_raise_protocol_errors(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_frame(raw)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (14 + 7, 0x05),  # unit kWh is not a volume
        (14 + 3, 0x3A),  # not BCD
        (14 + 0, 0x91),  # another data identifier
    ],
)
def test_bad_reply_content_is_frame_error(index: int, value: int) -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[index - 14] = value
    with pytest.raises(FrameError):
        parse_meter_data(Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data)))


def test_abnormal_reply_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="abnormal"):
        parse_meter_data(
            Frame(meter_type=0x10, address=ADDRESS, control=0xC1, data=b"\x90\x1f\x00")
        )


def test_impossible_meter_clock_is_none() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[13:20] = bytes.fromhex("00001232132620")  # 2026-13-32
    assert (
        parse_meter_data(
            Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data))
        ).meter_time
        is None
    )


def test_split_frame_skips_noise_and_waits_for_the_rest() -> None:
    stream = b"\x00\x13" + GOLDEN_REPLY + GOLDEN_REQUEST[:5]
    frame, rest = split_frame(stream)
    assert frame == GOLDEN_REPLY[3:]
    assert rest == GOLDEN_REQUEST[:5]
    assert split_frame(rest) == (None, GOLDEN_REQUEST[2:5])
    assert split_frame(b"\xfe\xfe\x00") == (None, b"")


@given(st.binary(max_size=80))
@settings(max_examples=2000)
def test_random_bytes_raise_only_hub_errors(raw: bytes) -> None:
    with contextlib.suppress(HubError):
        parse_meter_data(parse_frame(raw))


@given(st.binary(min_size=18, max_size=60))
@settings(max_examples=1000)
def test_random_data_in_a_valid_frame_raises_only_hub_errors(data: bytes) -> None:
    raw = build_frame(
        Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=b"\x90\x1f" + data)
    )
    with contextlib.suppress(HubError):
        parse_meter_data(parse_frame(raw))


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_stream_splitting_never_raises_and_always_progresses(chunks: list[bytes]) -> None:
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while True:
            before = len(buffer)
            raw, buffer = split_frame(buffer)
            if raw is None:
                break
            assert len(buffer) < before
            with contextlib.suppress(HubError):
                parse_frame(raw)


# --- the source, with a scripted link on a manual clock ---------------------------------------


class ScriptedLink:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.replies: dict[str, list[bytes | None]] = {}
        self.understands: dict[str, str] = {}  # address -> the only DI order it answers
        self.abnormal_if_not_understood: set[str] = set()  # else silence
        self.requests: list[bytes] = []

    async def exchange(self, request: bytes, address: str) -> Frame:
        self.requests.append(request)
        understood = self.understands.get(address)
        if understood and request_di_order(parse_frame(request)) != understood:
            if address in self.abnormal_if_not_understood:
                return Frame(
                    meter_type=0x10, address=address, control=0xC1, data=parse_frame(request).data
                )
            self.clock.advance(2.0)
            raise DeviceUnreachable("no reply")  # a meter ignores a DI it does not know
        script = self.replies.get(address) or [None]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if reply is None:
            self.clock.advance(2.0)
            raise DeviceUnreachable("no reply")
        return parse_frame(reply)

    async def close(self) -> None:
        pass


def reply_for(address: str, total_m3: float, meter_time: datetime) -> bytes:
    data = MeterData(
        ser=1, total_m3=total_m3, settlement_total_m3=0.0, meter_time=meter_time, status=0
    )
    return build_frame(
        Frame(meter_type=0x10, address=address, control=0x81, data=encode_meter_data(data))
    )


def make_source(**kw: object) -> tuple[Cjt188Source, ScriptedLink, ManualClock]:
    cfg = Cjt188Config.model_validate(
        {
            "type": "cjt188",
            "name": "cj",
            "serial_port": "/dev/null",
            "poll_interval_s": 60,
            "meters": [
                {"meter_id": "w1", "address": "00000000000001"},
                {"meter_id": "w2", "address": "00000000000002"},
            ],
            **kw,
        }
    )
    clock = ManualClock(start_ns=1_795_000_000 * NS_PER_S)
    link = ScriptedLink(clock)
    return Cjt188Source(cfg, clock, link), link, clock  # type: ignore[arg-type]


def meter_local(clock: ManualClock, offset_s: float = 0) -> datetime:
    # meter clocks run on China Standard Time (UTC+8), the config default
    stamp = datetime.fromtimestamp(clock.now_ns() / NS_PER_S + offset_s, CST)
    return stamp.replace(tzinfo=None, microsecond=0)


class Sink:
    def __init__(self) -> None:
        self.readings: list[WaterMeterReading] = []

    async def __call__(self, records: object) -> None:
        self.readings.extend(records)  # type: ignore[arg-type]


async def test_sane_meter_clock_is_the_timestamp_else_gateway_clock() -> None:
    source, link, clock = make_source()
    link.replies["00000000000001"] = [reply_for("00000000000001", 5.5, meter_local(clock, -30))]
    link.replies["00000000000002"] = [reply_for("00000000000002", 7.25, meter_local(clock, 7200))]
    sink = Sink()
    await source.poll_once(sink)
    by_id = {r.meter_id: r for r in sink.readings}
    assert by_id["w1"].total_m3 == 5.5
    assert by_id["w1"].time_ns == clock.now_ns() - 30 * NS_PER_S
    assert by_id["w2"].total_m3 == 7.25
    assert by_id["w2"].time_ns == clock.now_ns()
    assert source.stats.errors["meter_clock_off"] == 1
    assert GOLDEN_REQUEST[2:4] == link.requests[0][2:4]


async def test_checksum_error_is_counted_and_yields_no_reading() -> None:
    source, link, clock = make_source()
    good = reply_for("00000000000001", 1.0, meter_local(clock))
    link.replies["00000000000001"] = [good[:-2] + bytes([(good[-2] + 1) & 0xFF]) + good[-1:]]
    link.replies["00000000000002"] = [reply_for("00000000000002", 2.0, meter_local(clock))]
    sink = Sink()
    await source.poll_once(sink)
    assert [r.meter_id for r in sink.readings] == ["w2"]
    assert source.stats.errors["checksum"] == 1
    assert source.offline_meters == frozenset()


async def test_silent_meter_goes_offline_once(caplog: pytest.LogCaptureFixture) -> None:
    source, link, clock = make_source()
    link.replies["00000000000002"] = [reply_for("00000000000002", 2.0, meter_local(clock))]
    caplog.set_level(logging.INFO, logger="drivers.cjt188")
    sink = Sink()
    for _ in range(10):
        await source.poll_once(sink)
        clock.advance(60)
    assert source.offline_meters == {"w1"}
    assert [r.getMessage() for r in caplog.records if "offline" in r.getMessage()] == [
        "meter w1 (00000000000001) offline after 3 failed reads"
    ]
    assert {r.meter_id for r in sink.readings} == {"w2"}
    # each probe of the silent meter asks in both DI orders (auto); probes back off once offline
    probes = sum(1 for r in link.requests if r[4] == 0x01 and r[13:15] == b"\x90\x1f")
    assert probes < 10
    assert sum(1 for r in link.requests if r[4] == 0x01) == 2 * probes


async def test_auto_tries_the_other_order_on_a_silent_meter_and_remembers_it() -> None:
    source, link, clock = make_source()
    for address in ("00000000000001", "00000000000002"):
        link.replies[address] = [reply_for(address, 3.0, meter_local(clock))]
    link.understands["00000000000002"] = "1F90"
    sink = Sink()
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(60)
    assert source.di_orders == {"w1": "901F", "w2": "1F90"}
    to_w2 = [parse_frame(r).data[:2].hex() for r in link.requests if r[4] == 0x02]
    assert to_w2 == ["901f", "1f90", "1f90", "1f90"]
    assert [r.meter_id for r in sink.readings].count("w2") == 3
    assert source.offline_meters == frozenset()


async def test_auto_treats_an_abnormal_reply_like_silence_for_the_order() -> None:
    source, link, clock = make_source()
    link.replies["00000000000001"] = [reply_for("00000000000001", 3.0, meter_local(clock))]
    link.understands["00000000000001"] = "1F90"
    link.abnormal_if_not_understood.add("00000000000001")
    link.replies["00000000000002"] = [reply_for("00000000000002", 3.0, meter_local(clock))]
    link.understands["00000000000002"] = "no order at all"
    link.abnormal_if_not_understood.add("00000000000002")
    sink = Sink()
    for _ in range(2):
        await source.poll_once(sink)
    assert source.di_orders == {"w1": "1F90", "w2": None}
    assert [r.meter_id for r in sink.readings] == ["w1", "w1"]
    # w2 answers, so it is not offline; each refusal of both orders is one counted error
    assert source.stats.errors["abnormal_reply"] == 2
    assert source.offline_meters == frozenset()


async def test_a_meter_replaced_while_offline_is_probed_in_both_orders_again() -> None:
    source, link, clock = make_source()
    address = "00000000000002"
    link.replies[address] = [reply_for(address, 3.0, meter_local(clock))]
    link.understands[address] = "1F90"
    sink = Sink()
    await source.poll_once(sink)
    assert source.di_orders["w2"] == "1F90"
    link.replies[address] = [None]  # dead for a while ...
    for _ in range(4):
        clock.advance(60)
        await source.poll_once(sink)
    assert "w2" in source.offline_meters
    link.replies[address] = [reply_for(address, 0.5, meter_local(clock, 600))]  # ... replaced
    link.understands[address] = "901F"
    for _ in range(20):
        clock.advance(60)
        await source.poll_once(sink)
        if "w2" not in source.offline_meters:
            break
    assert source.di_orders["w2"] == "901F"
    assert sink.readings[-1].meter_id == "w2"
    assert sink.readings[-1].total_m3 == 0.5


async def test_fixed_order_never_tries_the_other() -> None:
    source, link, clock = make_source(di_order="901F")
    link.replies["00000000000002"] = [reply_for("00000000000002", 3.0, meter_local(clock))]
    link.understands["00000000000002"] = "1F90"
    sink = Sink()
    for _ in range(3):
        await source.poll_once(sink)
        clock.advance(60)
    assert {parse_frame(r).data[:2] for r in link.requests} == {b"\x90\x1f"}
    assert source.offline_meters == {"w1", "w2"}
    assert source.di_orders == {"w1": "901F", "w2": "901F"}


def test_meter_level_settings_override_the_line() -> None:
    cfg = Cjt188Config.model_validate(
        {
            "type": "cjt188",
            "name": "cj",
            "serial_port": "/dev/null",
            "di_order": "901F",
            "meters": [{"meter_id": "w1", "address": ADDRESS, "di_order": "1F90"}],
        }
    )
    source = Cjt188Source(cfg, ManualClock())
    assert source.di_orders == {"w1": "1F90"}
    with pytest.raises(ValueError, match="status_layout"):
        Cjt188Config.model_validate(
            {"type": "cjt188", "name": "cj", "serial_port": "/dev/null", "status_layout": "x"}
        )
    with pytest.raises(ValueError):
        Cjt188Config.model_validate(
            {"type": "cjt188", "name": "cj", "serial_port": "/dev/null", "di_order": "9F10"}
        )


# --- real frames from public repositories (tests/data/cjt188/public_frames.toml) ----------------

PUBLIC = tomllib.loads(
    (Path(__file__).parents[1] / "data" / "cjt188" / "public_frames.toml").read_text("utf-8")
)


def public(name: str) -> bytes:
    return bytes.fromhex(PUBLIC[name]["hex"].replace(" ", ""))


@pytest.mark.parametrize(
    ("name", "address", "di", "ser", "total_m3", "settlement_m3", "meter_time", "status"),
    [
        # Fox-Edge: 901F replies, zero clocks (None); the second has ST2 = FFh
        ("fox_edge_reply_901f_a", "00000805000001", "901F", 0, 123.0, 0.0, None, 0x0000),
        ("fox_edge_reply_901f_b", "00002020120218", "901F", 0, 2.0, 2.0, None, 0xFF00),
        # Fox-Edge: a 1F 90 reply, 556677.00 m³, clock 31 01 22 11 05 15 20 = 2015-05-11 22:01:31
        (
            "fox_edge_reply_1f90",
            "78330011223344",
            "1F90",
            0,
            556677.0,
            556677.0,
            datetime(2015, 5, 11, 22, 1, 31),
            0x8421,
        ),
        # EnergyConsumptionDataAcquisition: a 1F 90 reply to SER 04, 68.00 m³
        ("energy_acq_reply_1f90", "78330007061326", "1F90", 4, 68.0, 0.0, None, 0x0000),
        # python_cjt188: 1000.10 m³ in both totals, ST2 = FFh
        ("python_cjt188_reply_901f", "00000000000012", "901F", 0, 1000.10, 1000.10, None, 0xFF00),
        # sgj (NB-IoT upload): litres, 170.47 L and 148.51 L; clock 20 20 05 28 20 58 24 in the
        # vendor order = 2020-05-28 20:58:24 (the source's own parser reads it the same way)
        (
            "sgj_nbiot_reply_901f_litres",
            "00000051327643",
            "901F",
            0,
            0.17047,
            0.14851,
            datetime(2020, 5, 28, 20, 58, 24),
            0x0000,
        ),
        # DL.Protocol: SER 01, clock 06 20 17 09 01 17 20 = 2017-01-09 17:20:06
        (
            "dl_protocol_reply_901f",
            "00201510270588",
            "901F",
            1,
            0.0,
            0.0,
            datetime(2017, 1, 9, 17, 20, 6),
            0x0000,
        ),
    ],
)
def test_public_replies_decode(
    name: str,
    address: str,
    di: str,
    ser: int,
    total_m3: float,
    settlement_m3: float,
    meter_time: datetime | None,
    status: int,
) -> None:
    frame = parse_frame(public(name))
    assert frame.address == address
    assert frame.meter_type == 0x10
    data = parse_meter_data(frame)
    assert data.di_order == di
    assert data.ser == ser
    assert data.total_m3 == pytest.approx(total_m3)
    assert data.settlement_total_m3 == pytest.approx(settlement_m3)
    assert data.meter_time == meter_time
    assert data.status == status


@pytest.mark.parametrize(
    ("name", "address", "ser", "di_order"),
    [
        ("fox_edge_request_1f90", "00000805000001", 0, "1F90"),
        ("python_cjt188_request_901f", "00000000000012", 0, "901F"),
        ("dl_protocol_request_901f", "00201510270588", 1, "901F"),
    ],
)
def test_our_requests_match_public_ones_byte_for_byte(
    name: str, address: str, ser: int, di_order: str
) -> None:
    ours = build_read_request(address, ser=ser, preamble=0, di_order=di_order)  # type: ignore[arg-type]
    assert ours == public(name)
    assert request_di_order(parse_frame(public(name))) == di_order


def test_public_frames_with_bad_checksums_are_refused() -> None:
    with pytest.raises(ChecksumError):
        parse_frame(public("dl_protocol_request_bad_checksum"))
    raw = public("mfunhcu_reply_901f_bad_checksum")
    with pytest.raises(ChecksumError, match="0xa4, computed 0x8f"):
        parse_frame(raw)
    # its data field still shows the other clock order some vendors use: 20 16 07 15 09 59 59
    data = parse_meter_data(
        Frame(meter_type=raw[1], address="77665544332211", control=raw[9], data=raw[11:-2])
    )
    assert data.total_m3 == pytest.approx(433323.13)
    assert data.settlement_total_m3 == pytest.approx(443424.14)
    assert data.meter_time == datetime(2016, 7, 15, 9, 59, 59)
    assert data.status == 0x2211


@pytest.mark.parametrize(
    ("layout", "valve", "battery_low", "alarms"),
    [
        # ST1 = 21h: D0 set (valve closed) in the standard's numbering ...
        ("cjt188-2004", "closed", False, MeterAlarm.VALVE_CLOSED),
        # ... but battery low with the valve open where ST1 is numbered from the top bit
        ("msb-first", "open", True, MeterAlarm.LOW_BATTERY),
        ("valve-only", "closed", False, MeterAlarm.VALVE_CLOSED),
        ("none", "not_reported", False, MeterAlarm(0)),
    ],
)
def test_public_status_word_under_each_layout(
    layout: str, valve: str, battery_low: bool, alarms: MeterAlarm
) -> None:
    data = parse_meter_data(parse_frame(public("fox_edge_reply_1f90")))
    flags = status_layout(layout).decode(data.status)
    assert (flags.valve, flags.battery_low, flags.alarm_bits) == (valve, battery_low, alarms)


def test_vendor_st2_bits_raise_nothing_unless_defined() -> None:
    data = parse_meter_data(parse_frame(public("fox_edge_reply_901f_b")))  # ST2 = FFh
    for layout in status_layouts().values():
        assert layout.decode(data.status).alarm_bits == 0
    assert status_layout("cjt188-2004").decode(data.status, {"tamper": 0x08}).alarm_bits == (
        MeterAlarm.TAMPER
    )


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_no_layout_alarms_from_undefined_bits(status: int) -> None:
    for layout in status_layouts().values():
        defined = layout.valve_mask | layout.battery_low
        for mask in layout.alarms.values():
            defined |= mask
        assert layout.decode(status).alarm_bits == layout.decode(status & defined).alarm_bits


async def test_public_1f90_reply_through_the_source() -> None:
    source, link, clock = make_source(
        meters=[{"meter_id": "fox", "address": "78330011223344"}], vendor_status_alarms={}
    )
    link.replies["78330011223344"] = [public("fox_edge_reply_1f90")]
    sink = Sink()
    await source.poll_once(sink)
    [reading] = sink.readings
    assert reading.total_m3 == 556677.0
    assert reading.alarm_bits == MeterAlarm.VALVE_CLOSED
    assert reading.time_ns == clock.now_ns()  # its 2015 clock is not sane: gateway time
    assert source.stats.errors["meter_clock_off"] == 1


@pytest.mark.parametrize(
    ("unit", "total_m3"),
    [(0x29, 0.01234), (0x2A, 0.1234), (0x2B, 1.234), (0x2C, 12.34), (0x2D, 123.4), (0x2E, 1234.0)],
)
def test_volume_units_convert_to_m3(unit: int, total_m3: float) -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[7] = unit
    assert parse_meter_data(
        Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data))
    ).total_m3 == pytest.approx(total_m3)


@pytest.mark.parametrize(
    ("unit", "kind"),
    [
        (0x02, "energy"),
        (0x05, "energy"),
        (0x11, "energy"),
        (0x17, "power"),
        (0x35, "flow rate"),
        (0x2F, "unknown"),
    ],
)
def test_non_volume_units_are_refused(unit: int, kind: str) -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[12] = unit  # the settlement total
    with pytest.raises(UnitRefused, match=kind):
        parse_meter_data(Frame(meter_type=0x10, address=ADDRESS, control=0x81, data=bytes(data)))


async def test_heat_meter_reply_is_a_counted_error_not_a_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, link, clock = make_source()
    kwh = bytearray(reply_for("00000000000001", 5.0, meter_local(clock)))
    kwh[2 + 11 + 7] = 0x05  # FE FE, header, then the current total's unit byte: kWh
    kwh[-2] = sum(kwh[2:-2]) & 0xFF
    link.replies["00000000000001"] = [bytes(kwh)]
    link.replies["00000000000002"] = [reply_for("00000000000002", 2.0, meter_local(clock))]
    caplog.set_level(logging.WARNING, logger="drivers.cjt188")
    sink = Sink()
    for _ in range(3):
        await source.poll_once(sink)
    assert [r.meter_id for r in sink.readings] == ["w2"] * 3
    assert source.stats.errors["unit_refused"] == 3
    assert source.offline_meters == frozenset()
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1  # throttled: first line, then a count per interval
    assert "0x05 is energy (heat meter)" in refused[0].getMessage()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00001223112620", datetime(2026, 11, 23, 12, 0, 0)),  # standard: ss mm hh DD MM YY CC
        ("20260101000000", datetime(2026, 1, 1, 0, 0, 0)),  # vendor: CC YY MM DD hh mm ss
        ("00000000000000", None),
        ("20261332000020", None),  # neither order is a date
    ],
)
def test_meter_clock_in_either_order(raw: str, expected: datetime | None) -> None:
    assert meter_clock(bytes.fromhex(raw)) == expected
