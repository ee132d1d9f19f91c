"""NmeaDecoder: each AIS type, sentinels, tag blocks, reassembly, $-sentences, counted errors."""

from __future__ import annotations

import functools
import operator
from pathlib import Path
from typing import Any

import pytest
from pyais import encode_dict

from drivers.nmea import NmeaDecoder, parse_line
from hub.clock import ManualClock
from hub.errors import ChecksumError, FrameError
from hub.records import GatewayFix, VesselPosition, VesselStatic

DATA = Path(__file__).parent.parent / "data"
NOW = 1_780_000_000 * 10**9


def ais(data: dict[str, Any], channel: str = "A", seq: int | None = None) -> list[bytes]:
    lines = encode_dict(
        data, talker_id="AI", sentence_type="VDM", radio_channel=channel, seq_id=seq
    )
    return [line.encode() for line in lines]


def nmea(body: str) -> bytes:
    return f"${body}*{functools.reduce(operator.xor, body.encode(), 0):02X}\r\n".encode()


def tagged(tag: str, line: bytes) -> bytes:
    return f"\\{tag}*{functools.reduce(operator.xor, tag.encode(), 0):02X}\\".encode() + line


def decode(lines: list[bytes], decoder: NmeaDecoder | None = None) -> list[Any]:
    decoder = decoder or NmeaDecoder("test")
    return decoder.feed_many(lines, NOW)


@pytest.mark.parametrize("msg_type", [1, 2, 3])
def test_class_a_position(msg_type: int) -> None:
    data = {
        "type": msg_type,
        "msg_type": msg_type,
        "mmsi": 412345678,
        "lat": 30.01234,
        "lon": 122.31234,
        "speed": 11.3,
        "course": 123.4,
        "heading": 121,
        "status": 7,
    }
    [rec] = decode(ais(data))
    assert isinstance(rec, VesselPosition)
    assert (rec.mmsi, rec.msg_type, rec.ais_class, rec.nav_status) == (
        "412345678",
        msg_type,
        "A",
        7,
    )
    assert rec.lat == pytest.approx(30.01234, abs=1e-5)
    assert rec.lon == pytest.approx(122.31234, abs=1e-5)
    assert (rec.sog_kn, rec.cog_deg, rec.heading_deg) == (11.3, 123.4, 121.0)
    assert rec.time_ns == NOW and rec.source == "test"


def test_class_a_sentinels_become_none() -> None:
    data = {
        "type": 1,
        "mmsi": 412000001,
        "lat": 91.0,
        "lon": 181.0,
        "speed": 102.3,
        "course": 360.0,
        "heading": 511,
        "status": 15,
    }
    [rec] = decode(ais(data))
    assert (rec.lat, rec.lon, rec.sog_kn, rec.cog_deg, rec.heading_deg) == (None,) * 5
    assert rec.nav_status is None


def test_zero_is_a_value_not_missing() -> None:
    data = {
        "type": 1,
        "mmsi": 412000001,
        "lat": 0.0,
        "lon": 0.0,
        "speed": 0.0,
        "course": 0.0,
        "heading": 0,
        "status": 0,
    }
    [rec] = decode(ais(data))
    assert (rec.lat, rec.lon, rec.sog_kn, rec.cog_deg, rec.heading_deg) == (0, 0, 0, 0, 0)
    assert rec.nav_status == 0


def test_type5_two_sentences_to_static() -> None:
    data = {
        "type": 5,
        "mmsi": 413999001,
        "imo": 9123456,
        "callsign": "BZAB1",
        "shipname": "ZHE DAI YU 01234",
        "ship_type": 30,
        "to_bow": 20,
        "to_stern": 12,
        "to_port": 3,
        "to_starboard": 4,
        "destination": "ZHOUSHAN",
    }
    lines = ais(data, seq=3)
    assert len(lines) == 2
    [rec] = decode(lines)
    assert isinstance(rec, VesselStatic)
    assert rec == VesselStatic(
        mmsi="413999001",
        time_ns=NOW,
        name="ZHE DAI YU 01234",
        callsign="BZAB1",
        imo=9123456,
        ship_type=30,
        length_m=32.0,
        beam_m=7.0,
        msg_type=5,
        source="test",
    )


def test_type5_not_available_static_fields() -> None:
    [rec] = decode(ais({"type": 5, "mmsi": 413999002, "imo": 0, "ship_type": 0}, seq=1))
    assert (rec.name, rec.callsign, rec.imo, rec.ship_type, rec.length_m) == (None,) * 5


def test_type18_class_b() -> None:
    data = {
        "type": 18,
        "mmsi": 412000018,
        "lat": 29.9,
        "lon": 122.4,
        "speed": 4.5,
        "course": 88.8,
        "heading": 511,
    }
    [rec] = decode(ais(data))
    assert (rec.ais_class, rec.msg_type, rec.sog_kn, rec.cog_deg) == ("B", 18, 4.5, 88.8)
    assert rec.heading_deg is None and rec.nav_status is None
    assert rec.lat == pytest.approx(29.9, abs=1e-5)


def test_type19_gives_position_and_static() -> None:
    data = {
        "type": 19,
        "mmsi": 412000019,
        "lat": 30.1,
        "lon": 122.2,
        "speed": 2.0,
        "course": 10.0,
        "heading": 9,
        "shipname": "MIN SHI 9",
        "ship_type": 30,
        "to_bow": 10,
        "to_stern": 5,
        "to_port": 2,
        "to_starboard": 2,
    }
    pos, static = decode(ais(data))
    assert (pos.ais_class, pos.msg_type, pos.heading_deg) == ("B", 19, 9.0)
    assert (static.name, static.ship_type, static.length_m, static.beam_m) == (
        "MIN SHI 9",
        30,
        15.0,
        4.0,
    )


def test_type21_aid_to_navigation() -> None:
    data = {
        "type": 21,
        "mmsi": 992001021,
        "lat": 30.05,
        "lon": 122.25,
        "name": "ZHOUSHAN EAST BUOY N",
        "name_ext": "O 7",
    }
    pos, static = decode(ais(data, seq=2))
    assert (pos.ais_class, pos.msg_type, pos.sog_kn) == ("AtoN", 21, None)
    assert pos.lat == pytest.approx(30.05, abs=1e-5)
    assert static.name == "ZHOUSHAN EAST BUOY NO 7"


def test_type24_part_a_and_b() -> None:
    part_a = ais({"type": 24, "partno": 0, "mmsi": 412000024, "shipname": "HAI XUN 24"})
    part_b = ais(
        {
            "type": 24,
            "partno": 1,
            "mmsi": 412000024,
            "ship_type": 52,
            "callsign": "BH24",
            "to_bow": 8,
            "to_stern": 4,
            "to_port": 2,
            "to_starboard": 1,
        }
    )
    a, b = decode(part_a + part_b)
    assert (a.name, a.callsign, a.msg_type) == ("HAI XUN 24", None, 24)
    assert (b.name, b.callsign, b.ship_type, b.length_m, b.beam_m) == (None, "BH24", 52, 12, 3)


def test_type27_long_range_and_its_sentinels() -> None:
    [rec] = decode(
        ais(
            {
                "type": 27,
                "mmsi": 412000027,
                "lat": 30.2,
                "lon": 122.5,
                "speed": 12,
                "course": 45,
                "status": 0,
            }
        )
    )
    assert (rec.msg_type, rec.sog_kn, rec.cog_deg) == (27, 12.0, 45.0)
    assert rec.lat == pytest.approx(30.2, abs=0.002)
    [na] = decode(
        ais({"type": 27, "mmsi": 412000027, "lat": 91, "lon": 181, "speed": 63, "course": 511})
    )
    assert (na.lat, na.lon, na.sog_kn, na.cog_deg) == (None,) * 4


def test_mmsi_keeps_leading_zeros() -> None:
    [rec] = decode(ais({"type": 1, "mmsi": 2_241_234, "lat": 30.0, "lon": 122.0}))
    assert rec.mmsi == "002241234"


def test_other_ais_types_are_ignored_not_errors() -> None:
    decoder = NmeaDecoder("test")
    utc_response = ais({"type": 11, "msg_type": 11, "mmsi": 4123456, "lat": 30.0, "lon": 122.0})
    assert decoder.feed_many(utc_response, NOW) == []
    assert decoder.ignored == 1 and not decoder.stats.errors


def test_tag_block_time_and_ms_time() -> None:
    line = ais({"type": 1, "mmsi": 412000001, "lat": 30.0, "lon": 122.0})[0]
    [rec] = decode([tagged("s:zs01,c:1780000123", line)])
    assert rec.time_ns // 10**6 == 1_780_000_123 * 10**3  # plus a sub-ms offset, see below
    [rec_ms] = decode([tagged("c:1780000123456,s:zs01", line)])
    assert rec_ms.time_ns // 10**6 == 1_780_000_123_456


def test_two_reports_in_one_tagged_second_stay_two_points() -> None:
    first = ais({"type": 1, "mmsi": 412000001, "lat": 30.0, "lon": 122.0})[0]
    second = ais({"type": 1, "mmsi": 412000001, "lat": 30.001, "lon": 122.0})[0]
    a, b = decode([tagged("c:1780000123", first), tagged("c:1780000123", second)])
    assert a.time_ns != b.time_ns  # else InfluxDB would keep only one of them
    [again] = decode([tagged("c:1780000123", first)])
    assert again.time_ns == a.time_ns  # deterministic: a replay writes the same point


def test_tag_block_groups_fragments_across_stations() -> None:
    lines = (DATA / "ais_public.nmea").read_bytes().splitlines()[-2:]
    [rec] = decode(lines)
    assert (rec.mmsi, rec.name, rec.callsign) == ("366989380", "MARE ISLAND", "WDC2198")
    assert rec.time_ns // 10**6 == 1_428_621_738 * 10**3


def test_interleaved_fragments_on_two_channels() -> None:
    msg_a = ais({"type": 5, "mmsi": 412000051, "shipname": "ALPHA"}, channel="A", seq=4)
    msg_b = ais({"type": 5, "mmsi": 412000052, "shipname": "BRAVO"}, channel="B", seq=4)
    records = decode([msg_a[0], msg_b[0], msg_b[1], msg_a[1]])
    assert [r.name for r in records] == ["BRAVO", "ALPHA"]


def test_out_of_order_fragments_assemble() -> None:
    first, second = ais({"type": 5, "mmsi": 412000053, "shipname": "CHARLIE"}, seq=5)
    [rec] = decode([second, first])
    assert rec.name == "CHARLIE"


def test_incomplete_fragment_expires_and_is_counted() -> None:
    clock = ManualClock()
    decoder = NmeaDecoder("test", fragment_timeout_s=10.0)
    first, _ = ais({"type": 5, "mmsi": 412000054, "shipname": "DELTA"}, seq=6)
    decoder.feed(first, clock.now_ns())
    assert decoder.pending_fragments == 1
    clock.advance(11)
    other, _ = ais({"type": 5, "mmsi": 412000055, "shipname": "ECHO"}, seq=7)
    decoder.feed(other, clock.now_ns())
    assert decoder.pending_fragments == 1
    assert decoder.stats.errors["fragment_expired"] == 1


def test_reused_sequence_id_drops_the_stale_fragment() -> None:
    decoder = NmeaDecoder("test")
    stale, _ = ais({"type": 5, "mmsi": 412000056, "shipname": "STALE"}, seq=1)
    first, second = ais({"type": 5, "mmsi": 412000057, "shipname": "FRESH"}, seq=1)
    records = decoder.feed_many([stale, first, second], NOW)
    assert [r.name for r in records] == ["FRESH"]
    assert decoder.stats.errors["fragment_dropped"] == 1


def test_reassembly_buffer_is_bounded() -> None:
    decoder = NmeaDecoder("test", max_fragments=8)
    for i in range(50):
        first, _ = ais({"type": 5, "mmsi": 412000100 + i}, seq=i % 10)
        station_line = tagged(f"s:rx{i}", first)  # distinct stations: distinct groups
        decoder.feed(station_line, NOW)
        assert decoder.pending_fragments <= 8
    assert decoder.stats.errors["fragment_expired"] == 50 - 8


def test_checksum_error_counted() -> None:
    line = ais({"type": 1, "mmsi": 412000001, "lat": 30.0, "lon": 122.0})[0]
    bad = line[:-2] + (b"00" if line[-2:] != b"00" else b"01")
    decoder = NmeaDecoder("test")
    assert decoder.feed(bad, NOW) == []
    assert decoder.stats.errors == {"checksum": 1}
    assert decoder.stats.messages == 1


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQ", "truncated"),
        (b"hello world*00", "framing"),
        (b"\\s:rx1!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23", "framing"),
        (b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*ZZ", "framing"),
        (b"!AIVDM,1,1,,A,13HOI,0*23", "checksum"),
    ],
)
def test_bad_lines_counted_by_kind(line: bytes, kind: str) -> None:
    decoder = NmeaDecoder("test")
    assert decoder.feed(line, NOW) == []
    assert decoder.stats.errors == {kind: 1}


def test_bad_tag_block_is_counted_and_the_sentence_kept() -> None:
    decoder = NmeaDecoder("test")
    line = b"\\s:rx1*00\\!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23"
    [rec] = decoder.feed(line, NOW)
    assert rec.mmsi == "227006760" and rec.time_ns == NOW
    assert decoder.stats.errors == {"tag_block_ignored": 1}


def test_unknown_ais_type_counted() -> None:
    body = "AIVDM,1,1,,A,w0000000000000000000000000,0"  # 'w' armours 63: no such message
    line = f"!{body}*{functools.reduce(operator.xor, body.encode(), 0):02X}".encode()
    decoder = NmeaDecoder("test")
    assert decoder.feed(line, NOW) == []
    assert decoder.stats.errors == {"unknown_type": 1}


def test_short_payload_is_an_error_not_a_crash() -> None:
    body = "AIVDM,1,1,,A,1,0"
    line = f"!{body}*{functools.reduce(operator.xor, body.encode(), 0):02X}".encode()
    decoder = NmeaDecoder("test")
    assert decoder.feed(line, NOW) == []
    assert decoder.stats.error_total == 1


def test_parse_line_raises_hub_errors() -> None:
    with pytest.raises(ChecksumError):
        parse_line(b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*24")
    with pytest.raises(FrameError):
        parse_line(b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0")
    sentence = parse_line(
        tagged("s:rx7,c:1780000000", b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23\r\n")
    )
    assert (sentence.station, sentence.time_ns) == ("rx7", 1_780_000_000 * 10**9)
    assert sentence.body == b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0"


def test_gateway_fix_sentences() -> None:
    lines = [
        nmea("GPGGA,123519.00,3000.1200,N,12218.0000,E,1,08,0.9,12.0,M,9.0,M,,"),
        nmea("GPRMC,123519.00,A,3000.1200,N,12218.0000,E,5.5,84.4,280526,,,A"),
        nmea("GPVTG,84.4,T,,M,5.5,N,10.2,K,A"),
        nmea("HEHDT,123.4,T"),
        nmea("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),
    ]
    decoder = NmeaDecoder("test")
    gga, rmc, vtg, hdt = decoder.feed_many(lines, NOW)
    assert all(isinstance(r, GatewayFix) for r in (gga, rmc, vtg, hdt))
    assert (gga.sentence, gga.lat, gga.lon) == ("GGA", pytest.approx(30.002), pytest.approx(122.3))
    assert (rmc.sog_kn, rmc.cog_deg, rmc.lat) == (5.5, 84.4, pytest.approx(30.002))
    assert (vtg.sog_kn, vtg.cog_deg, vtg.lat) == (5.5, 84.4, None)
    assert (hdt.heading_deg, hdt.sog_kn) == (123.4, None)
    assert decoder.ignored == 1 and not decoder.stats.errors


def test_gateway_fix_without_fix_has_no_position() -> None:
    lines = [
        nmea("GPGGA,123519.00,,,,,0,00,,,M,,M,,"),
        nmea("GPRMC,123519.00,V,,,,,,,280526,,,N"),
    ]
    gga, rmc = decode(lines)
    assert (gga.lat, gga.lon, rmc.lat, rmc.lon, rmc.sog_kn) == (None,) * 5


def test_public_capture_decodes_completely() -> None:
    decoder = NmeaDecoder("test")
    records = decoder.feed_many((DATA / "ais_public.nmea").read_bytes().splitlines(), NOW)
    assert not decoder.stats.errors and decoder.pending_fragments == 0
    assert len(records) == 20
    by_name = {r.name: r for r in records if isinstance(r, VesselStatic) and r.name}
    assert by_name["EVER DIADEM"].imo == 9134270
    assert by_name["EVER DIADEM"].length_m == 295.0
    assert by_name["DFO2"].mmsi == "316021442"
    assert by_name["PROGUY"].mmsi == "271041815"


def test_synthetic_capture_covers_every_type() -> None:
    decoder = NmeaDecoder("test")
    records = decoder.feed_many((DATA / "ais_synthetic.nmea").read_bytes().splitlines(), NOW)
    assert not decoder.stats.errors and decoder.pending_fragments == 0
    types = {(type(r).__name__, getattr(r, "msg_type", None)) for r in records}
    for msg_type in (1, 2, 3, 18, 19, 21, 27):
        assert ("VesselPosition", msg_type) in types
    for msg_type in (5, 19, 21, 24):
        assert ("VesselStatic", msg_type) in types
    assert ("GatewayFix", None) in types


def test_errors_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    decoder = NmeaDecoder("test")
    decoder.feed_many([b"garbage*00"] * 20 + [b"!AIVDM,1,1,,A,1*00"] * 5, NOW)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert decoder.stats.error_total == 25


def test_fragments_from_two_senders_with_the_same_sequence_id() -> None:
    one = ais({"type": 5, "mmsi": 412000061, "shipname": "FROM ONE"}, channel="A", seq=3)
    two = ais({"type": 5, "mmsi": 412000062, "shipname": "FROM TWO"}, channel="A", seq=3)
    decoder = NmeaDecoder("test")
    records = [
        *decoder.feed(one[0], NOW, "10.0.0.1:5000"),
        *decoder.feed(two[0], NOW, "10.0.0.2:5000"),
        *decoder.feed(one[1], NOW, "10.0.0.1:5000"),
        *decoder.feed(two[1], NOW, "10.0.0.2:5000"),
    ]
    assert [r.name for r in records] == ["FROM ONE", "FROM TWO"]
    assert not decoder.stats.errors
