"""Door event mapping: vendor JSON/XML to DoorEvent, and random input raising only ProtocolError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.door_common import (
    HIKVISION_MAPPING,
    DoorMapping,
    decode_document,
    decode_xml,
    map_event,
)
from drivers.door_hikvision import decode_isapi
from hub.errors import FrameError, ProtocolError
from hub.records import DOOR_EVENTS
from hub.source import salted_hash
from sim.doors import SIM_MQTT_MAPPING, SimEvent, isapi_json, isapi_xml, mqtt_payload

NOW_NS = 1_795_262_400 * 1_000_000_000  # 2026-11-21T12:00:00Z
SIM = DoorMapping.model_validate(SIM_MQTT_MAPPING)


def test_maps_vendor_json_with_nested_paths_and_epoch_ms() -> None:
    payload = mqtt_payload(SimEvent("D-3-2", "denied", 1_795_262_000_123, card="12345678"))
    event = map_event(payload, SIM, "salt", "doors-a", NOW_NS)
    assert event.door_id == "D-3-2"
    assert event.event == "denied"
    assert event.time_ns == 1_795_262_000_123_000_000
    assert event.credential_hash == salted_hash("salt", "12345678")
    assert "12345678" not in repr(event)
    assert event.source == "doors-a"


@pytest.mark.parametrize(
    ("time_value", "expected_ns"),
    [
        (1_795_262_000, 1_795_262_000 * 10**9),  # epoch seconds
        ("1795262000.5", 1_795_262_000_500_000_000),  # numeric string
        ("2026-11-21T19:53:20+08:00", 1_795_262_000 * 10**9),  # ISO with offset
        ("2026-11-21T11:53:20Z", 1_795_262_000 * 10**9),  # ISO UTC
        ("2026-11-21 19:53:20", 1_795_262_000 * 10**9),  # naive: controller local time (UTC+8)
        (None, NOW_NS),  # no device time: gateway time
        (1, NOW_NS),  # 1970: an unset controller clock, replaced by gateway time
    ],
)
def test_time_forms(time_value: Any, expected_ns: int) -> None:
    payload = json.dumps({"door_id": "D1", "event": "open", "time": time_value}).encode()
    assert map_event(payload, DoorMapping(), "", "s", NOW_NS).time_ns == expected_ns


def test_normalised_names_pass_through_and_codes_are_mapped() -> None:
    mapping = DoorMapping(event_map={"27": "forced", "DoorHeld": "held_open"})
    for raw, expected in ((27, "forced"), ("DoorHeld", "held_open"), ("ALARM", "alarm")):
        payload = json.dumps({"door_id": 7, "event": raw}).encode()
        event = map_event(payload, mapping, "", "s", NOW_NS)
        assert (event.door_id, event.event) == ("7", expected)
        assert event.credential_hash == ""


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", FrameError),
        (b"\xff\xfe\x00", FrameError),
        (b"[1, 2]", ProtocolError),
        (b'{"event": "open"}', ProtocolError),
        (b'{"door_id": {"x": 1}, "event": "open"}', ProtocolError),
        (b'{"door_id": "D1", "event": "exploded"}', ProtocolError),
        (b'{"door_id": "D1", "event": "open", "time": "yesterday"}', ProtocolError),
        (b'{"door_id": "D1", "event": "open", "time": [1]}', ProtocolError),
        (b'{"door_id": "' + b"x" * 100 + b'", "event": "open"}', ProtocolError),
    ],
)
def test_bad_documents_raise_protocol_errors(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        map_event(payload, DoorMapping(), "", "s", NOW_NS)


def test_event_map_values_are_validated() -> None:
    with pytest.raises(ValidationError, match="event_map"):
        DoorMapping(event_map={"1": "exploded"})


def test_isapi_json_and_xml_give_the_same_event() -> None:
    sim = SimEvent("1", "forced", 1_795_262_000_000, card="87654321")
    [from_json, from_xml] = [
        decode_isapi(decode_document(body), salt="k", source="s", now_ns=NOW_NS, door_ids={}).record
        for body in (isapi_json(sim), isapi_xml(sim))
    ]
    assert from_json is not None and from_json == from_xml
    assert from_json.door_id == "44:19:b6:00:00:01-1"
    assert from_json.event == "forced"
    assert from_json.time_ns == 1_795_262_000 * 10**9


def test_heartbeat_is_ignored_not_an_error() -> None:
    heartbeat = decode_document(b'{"eventType": "heartBeat", "dateTime": "2026-11-21T12:00:00Z"}')
    assert HIKVISION_MAPPING.ignores(heartbeat)


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>',
        b"<x><unclosed></x>",
        b"<x>" * 40 + b"</x>" * 40,
    ],
)
def test_xml_with_dtd_entities_or_garbage_is_refused(xml: bytes) -> None:
    with pytest.raises(FrameError):
        decode_xml(xml)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
door_like = st.fixed_dictionaries(
    {},
    optional={
        "door": st.fixed_dictionaries({}, optional={"id": json_values}),
        "evt": st.sampled_from(["CARD_OK", "DOOR_FORCED", "nope", ""]) | json_values,
        "ts": st.integers() | st.floats() | st.text(max_size=30) | json_values,
        "card": st.fixed_dictionaries({}, optional={"no": json_values}),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(payload: bytes) -> None:
    for decode in (
        lambda: map_event(payload, SIM, "s", "src", NOW_NS),
        lambda: decode_document(payload),
    ):
        with contextlib.suppress(ProtocolError):
            decode()


@settings(max_examples=400, deadline=None)
@given(door_like)
def test_random_json_documents_map_or_raise_protocol_errors(document: dict[str, Any]) -> None:
    payload = json.dumps(document).encode()
    try:
        event = map_event(payload, SIM, "s", "src", NOW_NS)
    except ProtocolError:
        return
    assert event.event in DOOR_EVENTS
    assert 0 < len(event.door_id) <= 64


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_xml_text_raises_only_protocol_errors(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_xml(f"<a>{text}</a>".encode())
