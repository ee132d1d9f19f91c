"""Golden line-protocol encoding of records and points, and equality with the reference encoder."""

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
    FieldValue,
    GatewayFix,
    GridTags,
    HealthSample,
    Point,
    Record,
    VesselPosition,
    VesselStatic,
    WaterMeterReading,
    record_line,
    record_point,
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
        "M-001", T, total_m3=12.5, flow_m3h=0.0, battery_v=3.6, alarm_bits=5, reverse_flow=False,
        household="H 7", grid=GridTags("g1", "mg,2", "pg=3"), source="modbus",
    )  # fmt: skip
    assert line(reading) == (
        r"water_meter,grid=g1,household=H\ 7,meter_id=M-001,micro_grid=mg\,2,police_grid=pg\=3,"
        r"site=site-1,source=modbus "
        f"total_m3=12.5,flow_m3h=0.0,battery_v=3.6,alarm_bits=5i,reverse_flow=false {T}"
    )


def test_none_nan_and_inf_fields_are_dropped_empty_tags_omitted() -> None:
    reading = WaterMeterReading("M-2", T, total_m3=math.nan, flow_m3h=math.inf, battery_v=-0.5)
    assert line(reading, "s") == f"water_meter,meter_id=M-2,site=s battery_v=-0.5 {T}"
    assert "-inf" not in line(WaterMeterReading("M-2", T, total_m3=-math.inf, battery_v=1.0))


def test_no_fields_left_is_an_error() -> None:
    assert line(VesselPosition("412345678", T, lat=math.nan), "s") == (
        f"vessel_position,mmsi=412345678,registered=false,site=s msg_type=0i {T}"
    )
    with pytest.raises(ValueError):
        to_line(Point("m", {"t": "v"}, {}, T))


def test_string_field_escapes_quotes_backslashes_newlines() -> None:
    static = VesselStatic(
        "412345678", T, name='SEA "KING"\\1\nX', callsign="B, =Q", imo=9_000_001, ship_type=30,
        length_m=42.0, beam_m=8.25, msg_type=5, source="ais tcp",
    )  # fmt: skip
    assert line(static) == (
        r"vessel_static,mmsi=412345678,site=site-1,source=ais\ tcp "
        r'name="SEA \"KING\"\\1\nX",callsign="B, =Q",imo=9000001i,ship_type=30i,'
        f"length_m=42.0,beam_m=8.25,msg_type=5i {T}"
    )


def test_tag_values_escape_comma_space_equals_newline_but_not_backslash() -> None:
    door = DoorEvent("D 1,=x\ny\\z", T, "open", credential_hash="abc", building="B=2")
    assert line(door) == (
        r"door_event,building=B\=2,door_id=D\ 1\,\=x\ny\z,event=open,site=site-1 "
        f'count=1i,credential_hash="abc" {T}'
    )


def test_vessel_position_bool_tag_and_ints() -> None:
    pos = VesselPosition(
        "412345678", T, lat=22.25, lon=113.5, sog_kn=3.1, cog_deg=1e-05, heading_deg=None,
        nav_status=0, msg_type=1, ais_class="A", registered=True, source="replay",
    )  # fmt: skip
    assert line(pos) == (
        "vessel_position,ais_class=A,mmsi=412345678,registered=true,site=site-1,source=replay "
        f"lat=22.25,lon=113.5,sog_kn=3.1,cog_deg=1e-05,nav_status=0i,msg_type=1i {T}"
    )


def test_gateway_fix_and_health() -> None:
    fix = GatewayFix(T, lat=-33.5, lon=-70.25, sentence="GGA", source="gps")
    assert line(fix, "") == f"gateway_fix,sentence=GGA,source=gps lat=-33.5,lon=-70.25 {T}"
    health = HealthSample(T, msgs=10, errors=0, lag_s=0.25)
    assert line(health) == (
        f"hub_health,site=site-1 msgs=10i,errors=0i,lag_s=0.25,outbox_rows=0i,dropped=0i {T}"
    )


def test_measurement_and_field_key_escapes() -> None:
    point = Point("a b,c=d", {"k y": "v", "e": ""}, {"f=1 x": True, "g,h": "q"}, 5)
    assert to_line(point) == r'a\ b\,c=d,k\ y=v f\=1\ x=true,g\,h="q" 5'


def test_alert_point() -> None:
    alert = Alert(
        "abc", "unregistered_vessel", "mmsi:412345678", "open", "warning", 'said "hi", ok',
        "site 1", GridTags("sea", "", ""), 1, T,
    )  # fmt: skip
    assert to_line(alert.point()) == (
        r"alert,grid=sea,rule=unregistered_vessel,severity=warning,site=site\ 1,"
        r'subject=mmsi:412345678 alert_id="abc",state="open",message="said \"hi\", ok",'
        f"seq=1i {T}"
    )


# --- the optimised encoder matches the original one byte for byte --------------------------------


def _reference_field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_MEAS = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_TAG = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n"})


def reference_line(record: Record, site: str) -> str:
    """The encoder as it was before it was optimised (hub/records.py at the bench baseline)."""
    tags = {"site": site, "source": record.source}
    for key in ("grid", "micro_grid", "police_grid"):
        if getattr(record.grid, key):
            tags[key] = getattr(record.grid, key)
    tags.update(record.tags())
    fields = {
        k: v
        for k, v in record.fields().items()
        if v is not None and not (isinstance(v, float) and not math.isfinite(v))
    }
    tag_text = "".join(
        f",{k.translate(_TAG)}={v.translate(_TAG)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_text = ",".join(f"{k.translate(_TAG)}={_reference_field(v)}" for k, v in fields.items())
    if not field_text:
        raise ValueError("no fields")
    return f"{record.measurement.translate(_MEAS)}{tag_text} {field_text} {record.time_ns}"


text = st.text(alphabet=st.sampled_from('ab 9,="\\\n\té'), max_size=6)
floats = st.none() | st.floats(allow_nan=True, allow_infinity=True)
ints = st.none() | st.integers(-(2**40), 2**40)
grids = st.builds(GridTags, text, text, text)
records = st.one_of(
    st.builds(WaterMeterReading, text, ints.map(lambda v: v or 0), floats, floats, floats, ints,
              st.none() | st.booleans(), text, grids, text),
    st.builds(DoorEvent, text, st.integers(0, 2**62), text, text, text, grids, text),
    st.builds(VesselPosition, text, st.integers(0, 2**62), floats, floats, floats, floats, floats,
              ints, st.integers(0, 27), text, st.booleans(), grids, text),
    st.builds(VesselStatic, text, st.integers(0, 2**62), st.none() | text, st.none() | text, ints,
              ints, floats, floats, st.integers(0, 27), grids, text),
    st.builds(GatewayFix, st.integers(0, 2**62), floats, floats, floats, floats, floats, text,
              grids, text),
    st.builds(HealthSample, st.integers(0, 2**62), st.integers(0, 10**9), st.integers(0, 10**9),
              st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 10**9),
              st.integers(0, 10**9), grids, text),
)  # fmt: skip


@settings(max_examples=400)
@given(records, text)
def test_encoder_is_byte_identical_to_reference(record: Record, site: str) -> None:
    try:
        expected = reference_line(record, site)
    except ValueError:
        with pytest.raises(ValueError):
            to_line(record_point(record, site))
        with pytest.raises(ValueError):
            record_line(record, site)
        return
    assert to_line(record_point(record, site)) == expected
    assert record_line(record, site) == expected


def test_point_fields_are_encoded_as_given() -> None:
    """to_line does not filter: record_point already dropped None and non-finite values."""
    assert to_line(Point("m", {}, {"x": math.nan, "n": 3}, 1)) == "m x=nan,n=3i 1"


def test_alert_to_json_matches_asdict() -> None:
    """The persisted alert form (hand-written for speed) is exactly what asdict gave."""
    alert = Alert(
        "abc", "r", "s", "resolved", "info", "m", "site", GridTags("a", "b", "c"), 1, 2, seq=3,
        resolved_ns=2, acknowledged_ns=None, acknowledged_by="x", data={"k": [1, {"n": None}]},
    )  # fmt: skip
    expected = dataclasses.asdict(alert)
    expected["grid"] = dataclasses.asdict(alert.grid)
    assert json.dumps(alert.to_json()) == json.dumps(expected)
    assert Alert.from_json(json.loads(json.dumps(alert.to_json()))) == alert
