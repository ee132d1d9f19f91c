"""The position-report fast path (types 1, 2, 3, 18, 27 without pyais objects) against pyais.

Every AIS capture under tests/data (tests/data/README.md says where each real one comes from) is
decoded twice, with the fast path and with pyais for every type (`fast_path=False`), and
the records compared field by field; every position payload in them is compared with pyais'
message field by field, rate of turn, accuracy and time stamp included; and random payloads
(encoded by pyais' own encoder, or raw random bits) are compared the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyais import encode_dict
from pyais.bit_vector import bit_vector
from pyais.messages import MSG_CLASS, to_turn

from drivers.nmea import NmeaDecoder
from drivers.nmea.positions import (
    ARMOUR_VALUE,
    PositionReport,
    degrees,
    long_range_degrees,
    position_report,
)
from hub.records import Record, VesselPosition

DATA = Path(__file__).parent.parent / "data"
CAPTURES = sorted(DATA.glob("*.nmea"))
REAL_CAPTURES = [path for path in CAPTURES if path.name != "ais_synthetic.nmea"]
NOW = 1_780_000_000 * 10**9
FAST_TYPES = {1, 2, 3, 18, 27}
SINGLE_SENTENCE = re.compile(rb"!..VD[MO],1,1,[^,]*,[^,]*,([^,]*),([0-5])\*")
ARMOUR = b"0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVW`abcdefghijklmnopqrstuvw"


def both_ways(lines: list[bytes]) -> tuple[NmeaDecoder, list[Record], NmeaDecoder, list[Record]]:
    fast, reference = NmeaDecoder("cmp"), NmeaDecoder("cmp", fast_path=False)
    return fast, fast.feed_many(lines, NOW), reference, reference.feed_many(lines, NOW)


def assert_same_records(lines: list[bytes]) -> list[Record]:
    fast, got, reference, want = both_ways(lines)
    assert [type(r).__name__ for r in got] == [type(r).__name__ for r in want]
    for mine, theirs in zip(got, want, strict=True):
        assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)
    assert fast.stats.errors == reference.stats.errors
    assert (fast.ignored, fast.stats.messages) == (reference.ignored, reference.stats.messages)
    return got


def assert_report_matches_pyais(payload: bytes, fill_bits: int) -> PositionReport:
    report = position_report(payload, fill_bits)
    assert report is not None
    msg: Any = MSG_CLASS[report.msg_type].from_vector(bit_vector(payload, fill_bits))
    assert (report.msg_type, report.mmsi, report.accuracy) == (msg.msg_type, msg.mmsi, msg.accuracy)
    if report.msg_type == 27:
        assert (long_range_degrees(report.lat), long_range_degrees(report.lon)) == (
            msg.lat,
            msg.lon,
        )
        assert (float(report.sog), float(report.cog)) == (msg.speed, msg.course)
        assert report.nav_status == int(msg.status)
        return report
    assert (degrees(report.lat), degrees(report.lon)) == (msg.lat, msg.lon)
    assert (report.sog / 10.0, report.cog / 10.0) == (msg.speed, msg.course)
    assert (report.heading, report.second) == (msg.heading, msg.second)
    if report.msg_type == 18:
        assert report.nav_status is None and report.turn is None
    else:
        assert report.nav_status == int(msg.status)
        assert report.turn is not None and to_turn(report.turn) == msg.turn
    return report


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_gives_the_same_records_both_ways(path: Path) -> None:
    assert_same_records(path.read_bytes().splitlines())


def test_real_captures_exercise_every_fast_type_and_sentinel() -> None:
    """The comparison above is not vacuous: the real logs hold every fast-path type, and
    "not available" values that must come out as None."""
    records = [
        r
        for path in REAL_CAPTURES
        for r in assert_same_records(path.read_bytes().splitlines())
        if isinstance(r, VesselPosition)
    ]
    assert {r.msg_type for r in records} >= FAST_TYPES
    assert len(records) > 1500
    for field in ("lat", "sog_kn", "cog_deg", "heading_deg", "nav_status"):
        assert any(getattr(r, field) is None for r in records), field
        assert any(getattr(r, field) is not None for r in records), field


def test_every_real_position_payload_matches_pyais_field_by_field() -> None:
    seen: set[int] = set()
    for path in REAL_CAPTURES:
        for match in SINGLE_SENTENCE.finditer(path.read_bytes()):
            payload, fill_bits = match[1], int(match[2])
            fast = payload and ARMOUR_VALUE[payload[0]] in FAST_TYPES
            if fast and position_report(payload, fill_bits) is not None:  # else bit length error
                seen.add(assert_report_matches_pyais(payload, fill_bits).msg_type)
    assert seen == FAST_TYPES


# --- random payloads ---------------------------------------------------------------------------


def sentence(payload: bytes, fill_bits: int = 0, count: int = 1, number: int = 1) -> bytes:
    seq = b"3" if count > 1 else b""
    body = b"AIVDM,%d,%d,%s,B,%s,%d" % (count, number, seq, payload, fill_bits)
    return b"!%s*%02X\r\n" % (body, functools.reduce(operator.xor, body, 0))


def armour(value: int, bits: int) -> tuple[bytes, int]:
    """(armoured payload, fill bits) of a `bits`-long value."""
    chars = -(-bits // 6)
    fill_bits = chars * 6 - bits
    value <<= fill_bits
    return bytes(ARMOUR[(value >> (6 * i)) & 63] for i in reversed(range(chars))), fill_bits


lat_deg = st.one_of(st.sampled_from([91.0, -91.0, 90.0, -90.0, 0.0]), st.floats(-91.0, 91.0))
lon_deg = st.one_of(st.sampled_from([181.0, -181.0, 180.0, -180.0, 0.0]), st.floats(-181.0, 181.0))


@st.composite
def encoded_position(draw: st.DrawFn) -> dict[str, Any]:
    """Fields pyais' encoder takes for a type 1/2/3/18/27, "not available" values included."""
    msg_type = draw(st.sampled_from(sorted(FAST_TYPES)))
    fields: dict[str, Any] = {
        "type": msg_type,
        "msg_type": msg_type,  # pyais' encoder writes this field, `type` picks the class
        "mmsi": draw(st.integers(0, 2**30 - 1)),
        "lat": draw(lat_deg),
        "lon": draw(lon_deg),
        "accuracy": draw(st.booleans()),
    }
    if msg_type == 27:
        fields |= {
            "speed": draw(st.integers(0, 63)),
            "course": draw(st.sampled_from([0, 359, 360, 511])),
            "status": draw(st.integers(0, 15)),
        }
        return fields
    fields |= {
        "speed": draw(
            st.sampled_from([0.0, 0.1, 102.2, 102.3]) | st.integers(0, 1023).map(lambda v: v / 10)
        ),
        "course": draw(
            st.sampled_from([0.0, 359.9, 360.0, 409.5]) | st.integers(0, 4095).map(lambda v: v / 10)
        ),
        "heading": draw(st.sampled_from([0, 359, 360, 511]) | st.integers(0, 511)),
        "second": draw(st.integers(0, 63)),
    }
    if msg_type != 18:
        fields |= {
            "status": draw(st.integers(0, 15)),
            "turn": draw(
                st.sampled_from([0.0, 720.0, -720.0, 127, -127, -128]) | st.floats(-700, 700)
            ),
        }
    return fields


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoded_position())
@example({"type": 1, "mmsi": 1, "lat": 91.0, "lon": 181.0, "speed": 102.3, "course": 360.0,
          "heading": 511, "status": 15, "turn": -128, "second": 60, "accuracy": False})  # fmt: skip
@example({"type": 27, "mmsi": 1, "lat": 91.0, "lon": 181.0, "speed": 63, "course": 511,
          "status": 15, "accuracy": True})  # fmt: skip
def test_pyais_encoded_positions_decode_the_same_both_ways(fields: dict[str, Any]) -> None:
    lines = [line.encode() for line in encode_dict(fields, talker_id="AI", sentence_type="VDM")]
    [record] = assert_same_records(lines)
    assert isinstance(record, VesselPosition) and record.msg_type == fields["type"]
    [match] = [SINGLE_SENTENCE.search(line) for line in lines]
    assert match is not None
    assert_report_matches_pyais(match[1], int(match[2]))


@st.composite
def raw_position_lines(draw: st.DrawFn) -> list[bytes]:
    """Any bits behind a fast-path type: every sentinel, out-of-range and sign-bit pattern, in
    one sentence or two fragments, sometimes with characters outside the armour alphabet."""
    msg_type = draw(st.sampled_from(sorted(FAST_TYPES)))
    shortest = {27: 96, 18: 168}.get(msg_type, 163)
    longest = 168 if msg_type == 27 else 204
    bits = draw(st.sampled_from([shortest, 168, longest]) | st.integers(shortest, longest))
    if msg_type == 27 and bits not in (96, 168):
        bits = 96
    value = draw(st.integers(0, 2 ** (bits - 6) - 1)) | msg_type << (bits - 6)
    armoured, fill_bits = armour(value, bits)
    payload = bytearray(armoured)
    if draw(st.booleans()):  # garbage a checksum does not catch: 'X'..'_', 'x'..'~', '"', ...
        odd = draw(st.sampled_from(b"XYZ[]^_xyz{|}~\"#%&'()+-./"))
        payload[draw(st.integers(1, len(payload) - 1))] = odd
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(payload) - 1))
        first, last = bytes(payload[:cut]), bytes(payload[cut:])
        return [sentence(first, 0, 2, 1), sentence(last, fill_bits, 2, 2)]
    return [sentence(bytes(payload), fill_bits)]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_position_lines())
def test_random_position_bits_decode_the_same_both_ways(lines: list[bytes]) -> None:
    [record] = assert_same_records(lines)
    assert isinstance(record, VesselPosition)
    payload = b"".join(line.split(b",")[5] for line in lines)
    assert_report_matches_pyais(payload, int(lines[-1].split(b",")[6][:1]))


@pytest.mark.parametrize(
    ("msg_type", "bits"), [(1, 162), (2, 205), (18, 167), (18, 210), (27, 162), (3, 96)]
)
def test_a_position_report_of_the_wrong_length_is_rejected_both_ways(
    msg_type: int, bits: int
) -> None:
    line = sentence(*armour(msg_type << (bits - 6), bits))
    fast, got, reference, want = both_ways([line])
    assert got == want == []
    assert fast.stats.errors == reference.stats.errors == {"bit_length": 1}


@pytest.mark.parametrize("msg_type", [1, 18, 27])
@pytest.mark.parametrize("edge", [(1, 0), (-1, 0), (0, 1), (0, -1)])
@pytest.mark.parametrize("past", [0, 1])
def test_the_edges_of_the_globe_are_kept_and_beyond_them_is_none(
    msg_type: int, edge: tuple[int, int], past: int
) -> None:
    """90 deg / 180 deg exactly is a position; one unit (1/10,000 or 1/10 minute) more is not."""
    scale = 600 if msg_type == 27 else 600_000  # units per degree
    lat_raw, lon_raw = (
        sign * (deg * scale + past) for sign, deg in zip(edge, (90, 180), strict=True)
    )
    fields = {"type": msg_type, "msg_type": msg_type, "mmsi": 412000001}
    fields |= {"lat": lat_raw / scale, "lon": lon_raw / scale}
    lines = [line.encode() for line in encode_dict(fields, talker_id="AI", sentence_type="VDM")]
    [record] = assert_same_records(lines)
    assert isinstance(record, VesselPosition)
    assert (record.lat is None) == bool(past)
