"""Real logger formats (tests/data/README.md says where each file comes from).

USCG/NAIS receiver fields after the checksum, satellite tag blocks with a placeholder checksum,
AIS types 4 and 9 as their own records, raw ship type codes, and bit-length checks, each checked
against gpsd's `gpsdecode -u -j` or the values the sample's own project publishes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pyais import encode_dict

from drivers.nmea import NmeaDecoder
from hub.alerts import AlertManager
from hub.engine import Engine
from hub.records import (
    AisBaseStation,
    Record,
    SarAircraftPosition,
    VesselPosition,
    VesselStatic,
)
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules.maritime import MaritimeRulesConfig, build_maritime_rules
from hub.vessels import VesselTable
from tests.unit.test_nmea_gpsdecode import expected_position, gpsdecode

DATA = Path(__file__).parent.parent / "data"
USCG = DATA / "uscg_noaadata_2006.nmea"
NOW = 1_780_000_000 * 10**9
S = 10**9
MS = 10**6


def decode(path: Path, now_ns: int = NOW) -> tuple[NmeaDecoder, list[Record]]:
    decoder = NmeaDecoder("real")
    return decoder, decoder.feed_many(path.read_bytes().splitlines(), now_ns)


def of(records: list[Record], cls: type) -> list[Any]:
    return [r for r in records if isinstance(r, cls)]


def test_uscg_log_with_receiver_fields_gives_records_at_logger_time() -> None:
    lines = USCG.read_bytes().splitlines()
    receiver_fields = re.compile(rb"\*[0-9A-F]{2},([^,*]+,)*[rb]\w+,\d{10}$")
    assert len(lines) == 1001 and all(receiver_fields.search(ln) for ln in lines[1:])
    decoder, records = decode(USCG)
    # Line 1 is a '# 2006-07-15' comment: the only error.
    assert dict(decoder.stats.errors) == {"framing": 1}
    assert len(of(records, VesselPosition)) == 673 and len(of(records, VesselStatic)) == 131
    assert len(of(records, AisBaseStation)) == 20  # a 21st reports neither position nor time
    stamps = {int(m) for m in re.findall(rb",(\d{10})\r?$", USCG.read_bytes(), re.M)}
    assert len(stamps) > 40  # about 50 s of log
    for record in records:
        # The logger's Unix time (whole seconds) plus the sub-ms offset that keeps points apart.
        assert record.time_ns // S in stamps and record.time_ns % S < MS


def test_uscg_log_positions_and_names_match_gpsdecode() -> None:
    _, records = decode(USCG)
    rows = [r for r in gpsdecode(USCG) if r["type"] in (1, 2, 3)]
    positions = of(records, VesselPosition)
    assert len(rows) == len(positions) == 673
    for row, rec in zip(rows, positions, strict=True):
        assert int(rec.mmsi) == row["mmsi"]
        for field, value in expected_position(row).items():
            got = getattr(rec, field)
            assert got == (None if value is None else pytest.approx(value, abs=1e-5)), field
    statics = [(int(s.mmsi), s.name or "", s.ship_type) for s in of(records, VesselStatic)]
    expected = [
        (r["mmsi"], r["shipname"].strip(), r["shiptype"] or None)
        for r in gpsdecode(USCG)
        if r["type"] == 5
    ]
    assert statics == expected and len(expected) == 131


def test_uscg_base_stations_match_gpsdecode() -> None:
    _, records = decode(USCG)
    rows = [r for r in gpsdecode(USCG) if r["type"] == 4 and _has_data(r)]
    stations = of(records, AisBaseStation)
    assert len(rows) == len(stations) == 20
    for row, rec in zip(rows, stations, strict=True):
        assert int(rec.mmsi) == row["mmsi"]
        assert (rec.lat, rec.lon) == _expected_lat_lon(row)
        assert rec.station_utc_s == _expected_utc(row)
    assert sum(r.station_utc_s is not None for r in stations) >= 10


def _has_data(row: dict[str, Any]) -> bool:
    """A type 4 with a position or a time; one with neither is counted as ignored, not stored."""
    return _expected_lat_lon(row) != (None, None) or _expected_utc(row) is not None


def _expected_lat_lon(row: dict[str, Any]) -> tuple[Any, Any]:
    lat, lon = row["lat"] / 600_000, row["lon"] / 600_000
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # 91/181: "not available"
        return None, None
    return pytest.approx(lat, abs=1e-5), pytest.approx(lon, abs=1e-5)


def _expected_utc(row: dict[str, Any]) -> int | None:
    """gpsdecode's type 4 timestamp as Unix seconds; None where a part is "not available"."""
    try:
        moment = dt.datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:  # 0000-00-00, hour 24, minute 60
        return None
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def test_typeexamples_with_two_trailing_times_take_the_first() -> None:
    # libais: `...,r003669946,1325394060,1325394001`; libais reads the first as the logger time.
    decoder, records = decode(DATA / "libais_typeexamples.nmea")
    assert not decoder.stats.errors
    [first] = [r for r in records if r.mmsi == "367033650"]  # type 1 on line 2
    assert first.time_ns // S == 1325394060
    # Its type 4 has neither position (lat 91) nor time (0000-00-00T24:60:60): nothing stored.
    assert not of(records, AisBaseStation) and decoder.ignored == 17
    [aircraft] = of(records, SarAircraftPosition)
    assert (aircraft.mmsi, aircraft.altitude_m, aircraft.sog_kn) == ("400214919", 3704.0, 168.0)
    assert aircraft.cog_deg == 296.4 and aircraft.time_ns // S == 1325899370


def test_gpsd_types_4_and_9_are_their_own_records() -> None:
    path = DATA / "gpsd_sample_excerpt.nmea"
    decoder, records = decode(path)
    assert not decoder.stats.errors
    rows = gpsdecode(path)
    stations, aircraft = of(records, AisBaseStation), of(records, SarAircraftPosition)
    assert len(stations) == 2 and len(aircraft) == 2  # 2 more type 4 report no position/time
    assert not of(records, VesselPosition) and not of(records, VesselStatic)
    for row, rec in zip(
        [r for r in rows if r["type"] == 4 and _has_data(r)], stations, strict=True
    ):
        assert (int(rec.mmsi), rec.station_utc_s) == (row["mmsi"], _expected_utc(row))
        assert (rec.lat, rec.lon) == _expected_lat_lon(row)
    for row, sar in zip([r for r in rows if r["type"] == 9], aircraft, strict=True):
        assert int(sar.mmsi) == row["mmsi"]
        assert (sar.altitude_m, sar.sog_kn, sar.cog_deg) == (
            row["alt"],
            row["speed"],
            row["course"] / 10,
        )
        assert sar.lat == pytest.approx(row["lat"] / 600_000, abs=1e-5)
        assert sar.lon == pytest.approx(row["lon"] / 600_000, abs=1e-5)
    # The USCG-style lines (types 10, 11, 15, 17) with receiver fields are valid, just not stored.
    assert decoder.ignored == 4 + 2


def test_placeholder_tag_block_checksum_keeps_the_sentence() -> None:
    # clj-ais README: `\c:1448312100,t:1448312099*00\!AIVDM,...` (the real checksum would be 3A).
    decoder, records = decode(DATA / "clj_ais_placeholder_tag.nmea")
    [rec] = records
    assert dict(decoder.stats.errors) == {"tag_block_ignored": 1}
    assert isinstance(rec, VesselPosition) and rec.time_ns == NOW  # the tag's c: is not trusted
    # Values as the clj-ais README prints them for this sentence.
    assert (rec.mmsi, rec.sog_kn, rec.cog_deg, rec.heading_deg) == ("371798000", 12.3, 224.0, 215.0)
    assert rec.lat == pytest.approx(48.38163333, abs=1e-6)
    assert rec.lon == pytest.approx(-123.39538333, abs=1e-6)


def test_satellite_tag_blocks_reassemble_across_interleaved_lines() -> None:
    decoder, records = decode(DATA / "libais_tagblock_orbcomm.nmea")
    assert not decoder.stats.errors and decoder.pending_fragments == 0
    [static] = of(records, VesselStatic)
    assert static.time_ns // S == 1418169601  # the g: group's first fragment's c:
    times = sorted(r.time_ns // S for r in of(records, VesselPosition))
    assert times == [1418171561, 1418171722, 1418172113]
    rows = gpsdecode(DATA / "libais_tagblock_orbcomm.nmea")
    assert [r["shipname"] for r in rows if r["type"] == 5] == [static.name or ""]


@pytest.mark.parametrize("path", sorted(DATA.glob("*.nmea")), ids=lambda p: p.name)
def test_no_real_message_fails_the_bit_length_check(path: Path) -> None:
    decoder, _ = decode(path)
    assert "bit_length" not in decoder.stats.errors


def _with_checksum(body: str) -> bytes:
    checksum = 0
    for char in body[1:].encode():
        checksum ^= char
    return f"{body}*{checksum:02X}".encode()


@pytest.mark.parametrize(
    ("payload", "fill"),
    [
        ("KC5E2b@U19PFdLbMuc5=ROv6", 0),  # type 27 cut to 144 bits
        ("KC5E2b@U19PFdLbMuc5=ROv62<7m0", 0),  # 174 bits
        ("13HOI:0P0000VOHLCnHQKwvL05I", 0),  # type 1, 162 bits
        ("13HOI:0P0000VOHLCnHQKwvL05Ip0000000", 0),  # type 1, 210 bits
        ("403OviQuMGCqWrRO9>E6fE700@G", 0),  # type 4, 162 bits
        ("91b77=h3h00nHt0Q3r@@07000<0b0", 2),  # type 9, 172 bits
    ],
)
def test_wrong_bit_length_is_a_counted_error_not_a_vessel(payload: str, fill: int) -> None:
    decoder = NmeaDecoder("t")
    line = _with_checksum(f"!AIVDM,1,1,,A,{payload},{fill}")
    assert decoder.feed(line, NOW) == []
    assert dict(decoder.stats.errors) == {"bit_length": 1}


def test_type5_length_variants_of_real_transmitters_are_accepted() -> None:
    # The real 424-bit type 5 of ais_public.nmea (2 fill bits), resent as 420/422/426 bits.
    head = "55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp8"
    tail = "88888888880"
    for payload, fill in ((head + tail[:-1], 0), (head + tail, 4), (head + tail, 0)):
        decoder = NmeaDecoder("t")
        [rec] = decoder.feed(_with_checksum(f"!AIVDM,1,1,,A,{payload},{fill}"), NOW)
        assert isinstance(rec, VesselStatic) and rec.mmsi == "351759000", (payload, fill)


def _set_bits(payload: str, start: int, width: int, value: int) -> str:
    """Write `value` into the six-bit armoured payload at bit `start` (no fill bits)."""
    bits = "".join(f"{(c - 48 if c < 88 else c - 56):06b}" for c in payload.encode())
    bits = bits[:start] + f"{value:0{width}b}" + bits[start + width :]
    sixes = (int(bits[i : i + 6], 2) for i in range(0, len(bits), 6))
    return "".join(chr(v + 48 if v < 40 else v + 56) for v in sixes)


# Real payloads: type 5 and 24 B from ais_public.nmea (pyais fixtures), type 19 likewise; the
# ship-type field (ITU-R M.1371 Table 53) sits at bit 232, 40 and 263 respectively.
_TYPE5 = "55?MbV02;H;s<HtKR20EHE:0@T4@Dn2222222216L961O5Gf0NSQEp6ClRp888888888880"
_TYPE24B = "H52KMeDU653hhhi0000000000000"
_TYPE19 = "C5N3SRgPEnJGEBT>NhWAwwo862PaLELTBJ:V00000000S0D:R220"


@pytest.mark.parametrize("code", [39, 57, 100, 255, 1, 30])
@pytest.mark.parametrize(
    ("payload", "fill", "start"), [(_TYPE5, 2, 232), (_TYPE24B, 0, 40), (_TYPE19, 0, 263)]
)
def test_raw_ship_type_code_is_kept(code: int, payload: str, fill: int, start: int) -> None:
    patched = _set_bits(payload, start, 8, code)
    decoder = NmeaDecoder("t")
    records = decoder.feed(_with_checksum(f"!AIVDM,1,1,,A,{patched},{fill}"), NOW)
    [static] = of(records, VesselStatic)
    assert static.ship_type == code and not decoder.stats.errors
    if start != 40:  # gpsdecode prints type 24 only once it has both parts
        row = gpsdecode_lines([_with_checksum(f"!AIVDM,1,1,,A,{patched},{fill}")])
        assert row["shiptype"] == code


def gpsdecode_lines(lines: list[bytes]) -> dict[str, Any]:
    out = subprocess.run(
        ["gpsdecode", "-u", "-j"],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    [row] = [json.loads(x) for x in out.splitlines() if x.strip()]
    return dict(row)


def test_type21_name_padding_is_stripped_before_joining_the_extension() -> None:
    msg = {
        "type": 21,
        "mmsi": 992351234,
        "name": "ZHOUSHAN EAST@@@@@@@",
        "name_ext": "BUOY 3@@@",
        "lat": 30.0,
        "lon": 122.3,
    }
    lines = encode_dict(msg, talker_id="AI", radio_channel="A", seq_id=2)
    decoder = NmeaDecoder("t")
    [static] = of(decoder.feed_many([ln.encode() for ln in lines], NOW), VesselStatic)
    assert static.name == "ZHOUSHAN EASTBUOY 3"


def test_maritime_rules_never_see_aircraft_or_base_stations() -> None:
    registry = MaritimeRegistry(
        MaritimeRegistryConfig(
            vessels_csv=DATA / "maritime" / "vessels.csv",
            zones_geojson=DATA / "maritime" / "zones.geojson",
        )
    )
    lat, lon = 30.0, 122.3  # inside the test sea grid, where an unregistered vessel raises

    def run(make: Any) -> list[str]:
        engine = Engine(build_maritime_rules(MaritimeRulesConfig(), registry), AlertManager("s", 0))
        raised: list[str] = []
        for minute in range(0, 40):
            now = NOW + minute * 60 * S
            batch = engine.on_records([registry.tag(make(now))], now)
            raised += [a.rule for a in batch.alerts]
        return raised

    mmsi = "111412001"  # a SAR aircraft MMSI (ITU-R M.585: 111 MID xxx), not whitelisted
    aircraft = partial(SarAircraftPosition, altitude_m=300.0, sog_kn=120.0, cog_deg=90.0)
    assert run(lambda t: aircraft(mmsi=mmsi, time_ns=t, lat=lat, lon=lon)) == []
    station = partial(AisBaseStation, mmsi="004123456", lat=lat, lon=lon)
    assert run(lambda t: station(time_ns=t, station_utc_s=t // S)) == []
    # The same reports as a vessel do raise: the rules are live in this test.
    moving = partial(VesselPosition, sog_kn=8.0, cog_deg=90.0, nav_status=0, msg_type=1)
    vessel = run(lambda t: moving(mmsi=mmsi, time_ns=t, lat=lat, lon=lon, ais_class="A"))
    assert "unregistered_vessel" in vessel


def test_vessel_table_shows_base_stations_and_aircraft_as_their_kind() -> None:
    _, records = decode(DATA / "gpsd_sample_excerpt.nmea")
    table = VesselTable()
    table.update(records)
    shown = {v.mmsi: v.to_json() for v in table.latest() if v.has_fix}
    kinds = sorted(doc["kind"] for doc in shown.values())
    located = sum(r.lat is not None for r in of(records, AisBaseStation))
    assert located == 2
    assert kinds == ["ais_base_station"] * located + ["sar_aircraft"] * 2
    sar = shown["111232511"]  # gpsd sample.aivdm line 488: 303 m, 42 kn, 154.5 deg
    assert (sar["altitude_m"], sar["sog_kn"], sar["cog_deg"]) == (303.0, 42.0, 154.5)
    assert sar["lat"] == pytest.approx(34886400 / 600_000, abs=1e-5)
