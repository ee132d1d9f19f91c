"""The live vessel table: merge of position and static data, zone dwell, bounds."""

from __future__ import annotations

from hub.records import VesselPosition, VesselStatic
from hub.vessels import VesselTable

NS = 1_000_000_000
T0 = 1_767_225_600 * NS


def in_box(lat: float, lon: float) -> list[str]:
    return ["sea"] + (["cable"] if lon > 122.4 else [])


def pos(mmsi: str, t_s: float, lon: float = 122.3) -> VesselPosition:
    return VesselPosition(mmsi=mmsi, time_ns=T0 + int(t_s * NS), lat=30.0, lon=lon, sog_kn=5.0)


def test_position_and_static_merge_with_first_and_last_seen() -> None:
    table = VesselTable(in_box)
    table.update(
        [
            pos("412000001", 0),
            VesselStatic(mmsi="412000001", time_ns=T0 + NS, name="HAI 1", ship_type=30),
        ]
    )
    table.update([pos("412000001", 60)])
    vessel = table.get("412000001")
    assert vessel is not None
    doc = vessel.to_json()
    assert doc["name"] == "HAI 1" and doc["lat"] == 30.0 and doc["zones"] == ["sea"]
    assert (vessel.first_seen_ns, vessel.last_seen_ns) == (T0, T0 + 60 * NS)


def test_dwell_per_zone_skips_dark_gaps() -> None:
    table = VesselTable(in_box, max_dwell_step_s=600)
    table.update([pos("1", 0), pos("1", 60), pos("1", 120, lon=122.45), pos("1", 180, lon=122.45)])
    table.update([pos("1", 180 + 3600, lon=122.45)])  # an hour dark: not dwell
    vessel = table.get("1")
    assert vessel is not None
    assert vessel.dwell_s == {"sea": 180.0, "cable": 60.0}


def test_bounded_by_count_and_expiry() -> None:
    table = VesselTable(in_box, expiry_s=600, max_vessels=3)
    table.update([pos(str(i), i) for i in range(5)])
    assert len(table) == 3 and table.get("0") is None and table.get("4") is not None
    assert table.expire(T0 + 604 * NS) == 2  # "2" and "3" are quiet for more than 600 s, "4" not
    assert [v.mmsi for v in table.latest()] == ["4"]


def test_missing_position_keeps_last_known_fix() -> None:
    table = VesselTable(in_box)
    table.update(
        [
            pos("9", 0),
            VesselPosition(mmsi="9", time_ns=T0 + 10 * NS, lat=None, lon=None, sog_kn=3.0),
        ]
    )
    vessel = table.get("9")
    assert vessel is not None and vessel.has_fix
    assert (vessel.to_json()["lat"], vessel.to_json()["sog_kn"]) == (30.0, 5.0)
    assert vessel.last_seen_ns == T0 + 10 * NS
