"""Golden line-protocol encoding of records and points; unique timestamps per series."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.alerts import Alert
from hub.records import (
    DoorEvent,
    GatewayFix,
    GridTags,
    HealthSample,
    Point,
    Record,
    UniqueTimes,
    VesselPosition,
    VesselStatic,
    WaterMeterReading,
    encode_record,
    record_line,
    record_point,
    stored_tag,
    to_line,
)

T = 1_700_000_000_123_456_789


def line(record: Record, site: str = "site-1") -> str:
    """The record's line both ways (via a Point, and directly); they must agree."""
    via_point = to_line(record_point(record, site))
    assert record_line(record, site) == via_point
    return via_point


# --- golden lines -------------------------------------------------------------------------------


def test_water_meter_all_field_types_and_grid_tags() -> None:
    reading = WaterMeterReading(
        meter_id="M-001", time_ns=T, total_m3=12.5, flow_m3h=0.0, battery_v=3.6, alarm_bits=5, reverse_flow=False,
        household="H 7", grid=GridTags("g1", "mg,2", "pg=3"), source="modbus",
    )  # fmt: skip
    assert line(reading) == (
        r"water_meter,grid=g1,household=H\ 7,meter_id=M-001,micro_grid=mg\,2,police_grid=pg\=3,"
        r"site=site-1,source=modbus "
        f"total_m3=12.5,flow_m3h=0.0,battery_v=3.6,alarm_bits=5i,reverse_flow=false {T}"
    )


def test_none_nan_and_inf_fields_are_dropped_empty_tags_omitted() -> None:
    reading = WaterMeterReading(
        meter_id="M-2", time_ns=T, total_m3=math.nan, flow_m3h=math.inf, battery_v=-0.5
    )
    assert line(reading, "s") == f"water_meter,meter_id=M-2,site=s battery_v=-0.5 {T}"
    assert "-inf" not in line(
        WaterMeterReading(meter_id="M-2", time_ns=T, total_m3=-math.inf, battery_v=1.0)
    )


def test_no_fields_left_is_an_error() -> None:
    assert line(VesselPosition(mmsi="412345678", time_ns=T, lat=math.nan), "s") == (
        f"vessel_position,mmsi=412345678,registered=false,site=s msg_type=0i {T}"
    )
    with pytest.raises(ValueError):
        to_line(Point(measurement="m", tags={"t": "v"}, fields={}, time_ns=T))


def test_string_field_escapes_quotes_and_backslashes_keeps_newlines() -> None:
    static = VesselStatic(
        mmsi="412345678", time_ns=T, name='SEA "KING"\\1\nX', callsign="B, =Q", imo=9_000_001, ship_type=30,
        length_m=42.0, beam_m=8.25, msg_type=5, source="ais tcp",
    )  # fmt: skip
    assert line(static) == (
        r"vessel_static,mmsi=412345678,site=site-1,source=ais\ tcp "
        'name="SEA \\"KING\\"\\\\1\nX",callsign="B, =Q",imo=9000001i,ship_type=30i,'
        f"length_m=42.0,beam_m=8.25,msg_type=5i {T}"
    )


def test_tag_values_escape_comma_space_equals_newline() -> None:
    door = DoorEvent(
        door_id="D 1,=x\ny\\z", time_ns=T, event="open", credential_hash="abc", building="B=2"
    )
    assert line(door) == (
        r"door_event,building=B\=2,door_id=D\ 1\,\=x\ny\z,event=open,site=site-1 "
        f'count=1i,credential_hash="abc" {T}'
    )


def test_backslash_that_would_escape_or_end_a_tag_is_written_wide() -> None:
    """InfluxDB refuses a tag ending in a backslash and never unescapes `\\` (models/points.go)."""
    door = DoorEvent(door_id="D1\\", time_ns=T, event="open", building="a\\,b\\ c\\=d\\\\e\\f")
    assert line(door) == (
        "door_event,building=a\uff3c\\,b\uff3c\\ c\uff3c\\=d\\\\e\\f,door_id=D1\uff3c,"
        f"event=open,site=site-1 count=1i {T}"
    )
    assert stored_tag("a\\,b\\") == "a\uff3c,b\uff3c"
    assert to_line(Point(measurement="m\\", tags={"k\\": "v"}, fields={"f\\": 1}, time_ns=1)) == (
        "m\uff3c,k\uff3c=v f\uff3c=1i 1"
    )


def test_vessel_position_bool_tag_and_ints() -> None:
    pos = VesselPosition(
        mmsi="412345678", time_ns=T, lat=22.25, lon=113.5, sog_kn=3.1, cog_deg=1e-05, heading_deg=None,
        nav_status=0, msg_type=1, ais_class="A", registered=True, source="replay",
    )  # fmt: skip
    assert line(pos) == (
        "vessel_position,ais_class=A,mmsi=412345678,registered=true,site=site-1,source=replay "
        f"lat=22.25,lon=113.5,sog_kn=3.1,cog_deg=1e-05,nav_status=0i,msg_type=1i {T}"
    )


def test_gateway_fix_and_health() -> None:
    fix = GatewayFix(time_ns=T, lat=-33.5, lon=-70.25, sentence="GGA", source="gps")
    assert line(fix, "") == f"gateway_fix,sentence=GGA,source=gps lat=-33.5,lon=-70.25 {T}"
    health = HealthSample(time_ns=T, msgs=10, errors=0, lag_s=0.25)
    assert line(health) == (
        f"hub_health,site=site-1 msgs=10i,errors=0i,lag_s=0.25,outbox_rows=0i,dropped=0i {T}"
    )


def test_measurement_and_field_key_escapes() -> None:
    point = Point(
        measurement="a b,c=d",
        tags={"k y": "v", "e": ""},
        fields={"f=1 x": True, "g,h": "q"},
        time_ns=5,
    )
    assert to_line(point) == r'a\ b\,c=d,k\ y=v f\=1\ x=true,g\,h="q" 5'


def test_alert_point() -> None:
    alert = Alert(
        alert_id="abc", rule="unregistered_vessel", subject="mmsi:412345678", state="open", severity="warning", message='said "hi", ok',
        site="site 1", grid=GridTags("sea", "", ""), opened_ns=1, updated_ns=T,
    )  # fmt: skip
    assert to_line(alert.point()) == (
        r"alert,grid=sea,rule=unregistered_vessel,severity=warning,site=site\ 1,"
        r'subject=mmsi:412345678 alert_id="abc",state="open",message="said \"hi\", ok",'
        f"seq=1i {T}"
    )


# --- the record path and the Point path are one encoder ---------------------------------------


text = st.text(alphabet=st.sampled_from('ab 9,="\\\n\té'), max_size=6)
floats = st.none() | st.floats(allow_nan=True, allow_infinity=True)
ints = st.none() | st.integers(-(2**40), 2**40)
grids = st.builds(GridTags, text, text, text)
times = st.integers(0, 2**62)
counts = st.integers(0, 10**9)
records = st.one_of(
    st.builds(WaterMeterReading, meter_id=text, time_ns=ints.map(lambda v: v or 0),
              total_m3=floats, flow_m3h=floats, battery_v=floats, alarm_bits=ints,
              reverse_flow=st.none() | st.booleans(), household=text, grid=grids, source=text),
    st.builds(DoorEvent, door_id=text, time_ns=times, event=text, credential_hash=text,
              building=text, grid=grids, source=text),
    st.builds(VesselPosition, mmsi=text, time_ns=times, lat=floats, lon=floats, sog_kn=floats,
              cog_deg=floats, heading_deg=floats, nav_status=ints,
              msg_type=st.integers(0, 27), ais_class=text, registered=st.booleans(), grid=grids,
              source=text),
    st.builds(VesselStatic, mmsi=text, time_ns=times, name=st.none() | text,
              callsign=st.none() | text, imo=ints, ship_type=ints, length_m=floats,
              beam_m=floats, msg_type=st.integers(0, 27), grid=grids, source=text),
    st.builds(GatewayFix, time_ns=times, lat=floats, lon=floats, sog_kn=floats, cog_deg=floats,
              heading_deg=floats, sentence=text, grid=grids, source=text),
    st.builds(HealthSample, time_ns=times, msgs=counts, errors=counts,
              lag_s=st.floats(allow_nan=True, allow_infinity=True), outbox_rows=counts,
              dropped=counts, grid=grids, source=text),
)  # fmt: skip


@settings(max_examples=400)
@given(records, text)
def test_record_and_point_paths_agree(record: Record, site: str) -> None:
    try:
        expected = to_line(record_point(record, site))
    except ValueError:
        with pytest.raises(ValueError):
            record_line(record, site)
        return
    assert record_line(record, site) == expected
    assert encode_record(record, site).time_ns == record.time_ns


def test_point_non_finite_fields_are_left_out() -> None:
    """NaN and inf cannot be written in line protocol; every path leaves them out."""
    assert (
        to_line(
            Point(
                measurement="m", tags={}, fields={"x": math.nan, "y": -math.inf, "n": 3}, time_ns=1
            )
        )
        == "m n=3i 1"
    )


# --- every stored point is unique on (series, timestamp) ----------------------------------------


def _times(records: list[Record], times: UniqueTimes) -> list[int]:
    times.new_batch()
    return [encode_record(r, "s", times).time_ns for r in records]


def test_same_second_swipes_get_distinct_stable_times() -> None:
    second = 1_795_262_000 * 10**9
    swipes = [
        DoorEvent(door_id="D1", time_ns=second, event="denied", credential_hash=f"h{i % 3}")
        for i in range(5)
    ]
    times = UniqueTimes()
    first = _times(swipes, times)
    assert len(set(first)) == 5
    assert first[0] == second and all(0 <= t - second < 1_000_000 for t in first)
    assert _times(swipes, times) == first  # a redelivery overwrites, never doubles
    assert _times(swipes, UniqueTimes()) == first  # and a restart assigns the same times
    later = DoorEvent(door_id="D1", time_ns=second, event="denied", credential_hash="new")
    assert _times([later], times)[0] not in first  # another event in a later batch
    other_door = DoorEvent(door_id="D2", time_ns=second, event="denied", credential_hash="h0")
    assert _times([other_door], times) == [second]  # another series keeps its time


def test_unique_times_memory_is_bounded() -> None:
    times = UniqueTimes(limit=100)
    _times([DoorEvent(door_id="D", time_ns=i, event="open") for i in range(1000)], times)
    assert times.remembered <= 100


def test_alert_to_json_matches_asdict() -> None:
    """The persisted alert form (hand-written for speed) is exactly what asdict gave."""
    alert = Alert(
        alert_id="abc", rule="r", subject="s", state="resolved", severity="info", message="m", site="site", grid=GridTags("a", "b", "c"), opened_ns=1, updated_ns=2, seq=3,
        resolved_ns=2, acknowledged_ns=None, acknowledged_by="x", data={"k": [1, {"n": None}]},
    )  # fmt: skip
    expected = dataclasses.asdict(alert)
    expected["grid"] = dataclasses.asdict(alert.grid)
    assert json.dumps(alert.to_json()) == json.dumps(expected)
    assert Alert.from_json(json.loads(json.dumps(alert.to_json()))) == alert
