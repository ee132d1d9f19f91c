"""Decode correctness against an independent decoder: gpsd's `gpsdecode -u -j` on the shipped lines.

`-u` prints raw integers (ITU-R M.1371 units): positions in 1/10000 minute (types 1-3, 18, 19,
21) or 1/10 minute (type 27); speed and course in 1/10 knot / degree except type 27 (whole units).
gpsdecode merges type 24 parts A and B of one MMSI into one object, printed on part B.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drivers.nmea import NmeaDecoder
from hub.records import VesselPosition, VesselStatic

DATA = Path(__file__).parent.parent / "data"
POSITION_TYPES = {1, 2, 3, 18, 19, 21, 27}
CAPTURES = [
    "ais_public.nmea",
    "ais_synthetic.nmea",
    "gpsd_ais_nmea.nmea",
    "libais_typeexamples.nmea",
]
STATIC_NAME_FIELD = {5: "shipname", 19: "shipname", 21: "name"}


def gpsdecode(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["gpsdecode", "-u", "-j"],
        stdin=path.open("rb"),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def expected_position(row: dict[str, Any]) -> dict[str, float | None]:
    """gpsdecode's raw integers -> our units, with "not available" sentinels as None."""
    long_range = row["type"] == 27
    scale = 600.0 if long_range else 600_000.0
    lat, lon = row["lat"] / scale, row["lon"] / scale
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    expected: dict[str, float | None] = {"lat": lat, "lon": lon}
    if row["type"] == 21:
        return expected
    speed, course = row["speed"], row["course"]
    if long_range:
        expected["sog_kn"] = None if speed == 63 else float(speed)
        expected["cog_deg"] = None if course == 511 else float(course)
        return expected
    expected["sog_kn"] = None if speed == 1023 else speed / 10
    expected["cog_deg"] = None if course == 3600 else course / 10
    expected["heading_deg"] = None if row["heading"] == 511 else float(row["heading"])
    return expected


def ours(path: Path) -> tuple[list[VesselPosition], list[VesselStatic]]:
    decoder = NmeaDecoder("gpsdecode-check")
    records = decoder.feed_many(path.read_bytes().splitlines(), 0)
    assert not decoder.stats.errors
    positions = [r for r in records if isinstance(r, VesselPosition)]
    statics = [r for r in records if isinstance(r, VesselStatic)]
    return positions, statics


@pytest.mark.parametrize("capture", CAPTURES)
def test_positions_match_gpsdecode(capture: str) -> None:
    rows = [r for r in gpsdecode(DATA / capture) if r.get("type") in POSITION_TYPES]
    positions, _ = ours(DATA / capture)
    assert len(rows) == len(positions) > 0
    for row, rec in zip(rows, positions, strict=True):
        assert (int(rec.mmsi), rec.msg_type) == (row["mmsi"], row["type"])
        for field, value in expected_position(row).items():
            got = getattr(rec, field)
            if value is None:
                assert got is None, (field, row)
            else:
                assert got == pytest.approx(value, abs=1e-5), (field, row)


@pytest.mark.parametrize("capture", CAPTURES)
def test_names_match_gpsdecode(capture: str) -> None:
    rows = gpsdecode(DATA / capture)
    _, statics = ours(DATA / capture)
    expected = [
        (r["mmsi"], r["type"], r[STATIC_NAME_FIELD[r["type"]]])
        for r in rows
        if r.get("type") in STATIC_NAME_FIELD
    ]
    got = [(int(s.mmsi), s.msg_type, s.name or "") for s in statics if s.msg_type != 24]
    assert got == expected and got


def test_type24_parts_match_gpsdecode_merge() -> None:
    merged = [r for r in gpsdecode(DATA / "ais_synthetic.nmea") if r.get("type") == 24]
    _, statics = ours(DATA / "ais_synthetic.nmea")
    names = {s.mmsi: s.name for s in statics if s.msg_type == 24 and s.name}
    part_b = {s.mmsi: s for s in statics if s.msg_type == 24 and s.callsign}
    assert merged
    for row in merged:
        mmsi = f"{row['mmsi']:09d}"
        assert names[mmsi] == row["shipname"]
        assert part_b[mmsi].callsign == row["callsign"]
        assert part_b[mmsi].ship_type == row["shiptype"]
        assert part_b[mmsi].length_m == row["to_bow"] + row["to_stern"]
