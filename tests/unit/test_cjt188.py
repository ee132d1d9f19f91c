"""Unit tests of the CJ/T 188-2004 codec and source: golden frames, errors, fuzzing, timestamps."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cjt188 import (
    Cjt188Config,
    Cjt188Source,
    Frame,
    MeterData,
    build_frame,
    build_read_request,
    encode_address,
    encode_meter_data,
    parse_frame,
    parse_meter_data,
    split_frame,
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
    assert frame == Frame(0x10, ADDRESS, 0x81, GOLDEN_REPLY[14:-2])
    data = parse_meter_data(frame)
    assert data.ser == 5
    assert data.total_m3 == 12.34
    assert data.settlement_total_m3 == 10.0
    assert data.meter_time == datetime(2026, 11, 23, 12, 0, 0)
    assert data.valve == "open"
    assert data.battery_low is True
    assert data.alarm_bits() == MeterAlarm.LOW_BATTERY


def test_encoder_reproduces_the_golden_reply() -> None:
    data = parse_meter_data(parse_frame(GOLDEN_REPLY))
    rebuilt = build_frame(Frame(0x10, ADDRESS, 0x81, encode_meter_data(data)), preamble=3)
    assert rebuilt == GOLDEN_REPLY


def test_litre_unit_and_closed_valve() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[7] = 0x29  # current total in litres: 12.34 L
    data[20] = 0b01  # valve closed, battery fine
    frame = parse_frame(build_frame(Frame(0x10, ADDRESS, 0x81, bytes(data))))
    parsed = parse_meter_data(frame)
    assert parsed.total_m3 == pytest.approx(0.01234)
    assert parsed.valve == "closed"
    assert parsed.alarm_bits() == MeterAlarm.VALVE_CLOSED


def test_vendor_status_bits_map_to_alarms() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[21] = 0x08  # ST2 bit 3: magnetic attack on some meters (vendor-defined)
    parsed = parse_meter_data(Frame(0x10, ADDRESS, 0x81, bytes(data)))
    assert parsed.alarm_bits() == MeterAlarm.LOW_BATTERY
    assert parsed.alarm_bits({"tamper": 0x08}) == MeterAlarm.LOW_BATTERY | MeterAlarm.TAMPER


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
        parse_meter_data(Frame(0x10, ADDRESS, 0x81, bytes(data)))


def test_abnormal_reply_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="abnormal"):
        parse_meter_data(Frame(0x10, ADDRESS, 0xC1, b"\x90\x1f\x00"))


def test_impossible_meter_clock_is_none() -> None:
    data = bytearray(GOLDEN_REPLY[14:-2])
    data[13:20] = bytes.fromhex("00001232132620")  # 2026-13-32
    assert parse_meter_data(Frame(0x10, ADDRESS, 0x81, bytes(data))).meter_time is None


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
    raw = build_frame(Frame(0x10, ADDRESS, 0x81, b"\x90\x1f" + data))
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
        self.requests: list[bytes] = []

    async def exchange(self, request: bytes, address: str) -> Frame:
        self.requests.append(request)
        script = self.replies.get(address) or [None]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if reply is None:
            self.clock.advance(2.0)
            raise DeviceUnreachable("no reply")
        return parse_frame(reply)

    async def close(self) -> None:
        pass


def reply_for(address: str, total_m3: float, meter_time: datetime) -> bytes:
    data = MeterData(1, total_m3, 0.0, meter_time, "open", False, 0)
    return build_frame(Frame(0x10, address, 0x81, encode_meter_data(data)))


def make_source() -> tuple[Cjt188Source, ScriptedLink, ManualClock]:
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
    probes = sum(1 for r in link.requests if r[4] == 0x01)
    assert probes < 10
