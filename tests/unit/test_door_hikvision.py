"""Hikvision ISAPI: the (major, minor) table, door ids without a MAC, and real public payloads."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.door_common import decode_document
from drivers.door_hikvision import (
    IGNORE,
    UNKNOWN,
    acs_table,
    classify,
    decode_isapi,
    isapi_door_id,
    load_table,
)
from hub.errors import ConfigError, ProtocolError
from hub.records import DOOR_EVENTS
from hub.source import salted_hash

DATA = Path(__file__).parent.parent / "data" / "doors"
NOW_NS = 1_724_672_000 * 1_000_000_000  # 2024-08-26T11:33:20Z, near the K1T502 sample's time
K1T502 = json.loads((DATA / "hikvision_ds-k1t502_lock_open.json").read_text())


def decode(document: Any, door_ids: dict[str, str] | None = None, peer: str = "") -> Any:
    return decode_isapi(
        document, salt="k", source="doors", now_ns=NOW_NS, door_ids=door_ids or {}, peer=peer
    )


def k1t502(major: int, minor: int, **top: Any) -> dict[str, Any]:
    """The real DS-K1T502 push with other codes (and top-level fields) put in."""
    document = copy.deepcopy(K1T502)
    document["AccessControllerEvent"].update(majorEventType=major, subEventType=minor)
    document.update(top)
    return document


# --- the table -----------------------------------------------------------------------------------


def test_table_covers_the_four_majors_keyed_on_the_pair() -> None:
    table = acs_table()
    assert {major for major, _ in table} == {1, 2, 3, 5}
    assert len(table) == 499
    assert table[(1, 0x404)].name == "MINOR_HOST_DESMANTLE_ALARM"
    assert table[(2, 0x404)].name == "MINOR_BATTERY_RESUME"
    assert table[(3, 0x404)].name == "MINOR_REMOTE_CHECK_TIME"
    assert table[(2, 0x406)].name == "MINOR_AC_RESUME"
    assert table[(3, 0x406)].name == "MINOR_REMOTE_CLEAR_CARD"


@pytest.mark.parametrize("major", [2, 3])
@pytest.mark.parametrize("minor", [0x404, 0x406])
def test_0x404_and_0x406_outside_major_1_are_never_alarms(major: int, minor: int) -> None:
    assert classify(major, minor) == IGNORE
    assert classify(1, minor) == "alarm"


@pytest.mark.parametrize(
    ("major", "minor", "event"),
    [
        (5, 21, IGNORE),  # lock released (the door open/close events carry the meaning)
        (5, 22, IGNORE),  # lock closed
        (5, 23, "open"),  # exit button
        (5, 26, "closed"),  # door closed
        (3, 1024, "open"),  # remote open
        (5, 38, "open"),  # fingerprint pass
        (5, 39, "denied"),  # fingerprint fail
        (5, 75, "open"),  # face pass
        (5, 76, "denied"),  # face fail
        (5, 1, "open"),  # card pass
        (5, 9, "denied"),  # invalid card
        (5, 27, "forced"),  # door opened abnormally
        (5, 28, "held_open"),  # door open timeout
    ],
)
def test_understood_events(major: int, minor: int, event: str) -> None:
    assert classify(major, minor) == event


def test_codes_real_devices_reported_have_the_names_they_were_logged_with() -> None:
    lines = (DATA / "hikvision_observed_codes.csv").read_text().splitlines()
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("#")))
    assert len(rows) == 4
    for row in rows:
        code = acs_table()[(int(row["major"]), int(row["minor"]))]
        assert code.name == row["logged_name"], row["source"]


def test_a_bad_table_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("major,minor,minor_hex,name,event\n5,1,0x1,A,open\n5,1,0x1,B,denied\n")
    with pytest.raises(ConfigError, match="duplicate 5/1"):
        load_table(path)
    path.write_text("major,minor,minor_hex,name,event\n5,1,0x1,A,exploded\n")
    with pytest.raises(ConfigError, match="exploded"):
        load_table(path)


codes = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)


@settings(max_examples=500, deadline=None)
@given(major=codes | st.sampled_from([1, 2, 3, 5]), minor=codes | st.integers(0, 0x1000))
def test_any_code_pair_decodes_and_is_forced_only_where_the_table_says(
    major: int, minor: int
) -> None:
    for form in (major, str(minor)), (str(major), minor):
        result = decode(k1t502(*form))  # type: ignore[arg-type]
        listed = acs_table().get((major, minor))
        assert result.event == (listed.event if listed else UNKNOWN)
        assert (result.event == "forced") == (listed is not None and listed.event == "forced")
        if result.record is not None:
            assert result.record.event in DOOR_EVENTS
            assert (result.record.vendor_major, result.record.vendor_minor) == (major, minor)


@pytest.mark.parametrize("bad", [None, "", "5a", "²", 1.5, [5], {"x": 1}, True, "9" * 30])
def test_non_integer_codes_are_protocol_errors(bad: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(k1t502(bad, 21))


# --- real payloads -------------------------------------------------------------------------------


def test_k1t502_push_without_mac_gets_an_ip_door_id_and_lock_released_is_understood() -> None:
    # pergolafabio/Hikvision-Addons#177: a DS-K1T502DBFWX-C push, no macAddress, door 1, 5/21.
    result = decode(K1T502)
    assert (result.door_id, result.event, result.record) == ("whatever-1", IGNORE, None)
    assert result.counted_as == "ignored_code"


def test_k1t502_face_failure_is_a_denied_record_with_device_time() -> None:
    result = decode(k1t502(5, 76))
    record = result.record
    assert record is not None
    assert (record.door_id, record.event, record.source) == ("whatever-1", "denied", "doors")
    assert record.time_ns == 1_724_671_948 * 1_000_000_000  # 2024-08-26T12:32:28+01:00
    assert (record.vendor_major, record.vendor_minor, record.credential_hash) == (5, 76, "")


def test_unknown_code_is_a_record_with_the_raw_codes() -> None:
    record = decode(k1t502(5, 9999)).record
    assert record is not None
    assert (record.event, record.vendor_major, record.vendor_minor) == (UNKNOWN, 5, 9999)


def test_card_and_employee_numbers_are_hashed_never_kept() -> None:
    document = k1t502(5, 1)
    document["AccessControllerEvent"].update(cardNo="12345678", name="Alice Example")
    record = decode(document).record
    assert record is not None and record.credential_hash == salted_hash("k", "12345678")
    assert "12345678" not in repr(record) and "Alice" not in repr(record)
    del document["AccessControllerEvent"]["cardNo"]
    document["AccessControllerEvent"]["employeeNoString"] = "E-77"
    record = decode(document).record
    assert record is not None and record.credential_hash == salted_hash("k", "E-77")


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("hikvision_camera_vmd.xml", "application/xml"),  # node-red-contrib-hikvision-ultimate#105
        ("hikvision_camera_duration_alertstream.txt", "multipart/mixed; boundary=boundary"),
    ],
)
def test_camera_notifications_are_counted_not_stored(name: str, content_type: str) -> None:
    from drivers.door_http import event_parts

    [part] = event_parts((DATA / name).read_bytes(), content_type)
    result = decode(decode_document(part))
    assert (result.record, result.counted_as) == (None, "camera_event")


def test_heartbeat_is_counted_as_heartbeat() -> None:
    result = decode({"eventType": "heartBeat", "dateTime": "2024-08-26T12:32:28+01:00"})
    assert (result.record, result.counted_as) == (None, "heartbeat")


@pytest.mark.parametrize(
    "document",
    [[1], {"portNo": 80}, {"eventType": "AccessControllerEvent"}, {"AccessControllerEvent": 5}],
)
def test_documents_that_are_not_notifications_are_protocol_errors(document: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(document)


# --- door id fallback ----------------------------------------------------------------------------


def test_door_id_order_is_mapping_mac_device_serial_ip_peer() -> None:
    full = k1t502(
        5, 1, macAddress="44:19:B6:0A:0B:0C", deviceID="DEV-7", serialNumber="SN-9", ipAddress="ip"
    )
    assert isapi_door_id(full, {}, "10.0.0.9") == "44:19:b6:0a:0b:0c-1"  # MAC, lower-cased
    del full["macAddress"]
    assert isapi_door_id(full, {}, "10.0.0.9") == "DEV-7-1"
    del full["deviceID"]
    assert isapi_door_id(full, {}, "10.0.0.9") == "SN-9-1"
    del full["serialNumber"]
    assert isapi_door_id(full, {}, "10.0.0.9") == "ip-1"
    del full["ipAddress"]
    assert isapi_door_id(full, {}, "10.0.0.9") == "10.0.0.9-1"
    with pytest.raises(ProtocolError, match="no device identity"):
        isapi_door_id(full, {}, "")


def test_configured_mapping_wins_for_any_device_key() -> None:
    assert isapi_door_id(K1T502, {"whatever": "lobby"}) == "lobby-1"
    assert isapi_door_id(K1T502, {"whatever-1": "D-3-2", "whatever": "lobby"}) == "D-3-2"
    with_mac = k1t502(5, 1, macAddress="aa:bb:cc:dd:ee:ff")
    # A mapping on the IP still wins over the bare MAC: configured mapping comes first.
    assert isapi_door_id(with_mac, {"whatever": "lobby"}) == "lobby-1"


def test_event_serial_number_is_never_a_device_id() -> None:
    # AccessControllerEvent.serialNo (257 in the sample) counts events; it must not name the door.
    document = k1t502(5, 1)
    del document["ipAddress"]
    with pytest.raises(ProtocolError, match="no device identity"):
        isapi_door_id(document, {})


def test_device_level_events_without_door_number_use_the_device_key() -> None:
    document = k1t502(2, 0x404)
    del document["AccessControllerEvent"]["doorNo"]
    assert isapi_door_id(document, {}) == "whatever"
