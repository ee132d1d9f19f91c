"""Dahua VTO / access-controller events on real public samples (see tests/data/README.md)."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.door_dahua import (
    DahuaIds,
    DahuaProfile,
    load_profile,
    map_document,
    parse_cgi_stream,
    topic_code,
)
from hub.errors import ConfigError, ProtocolError
from hub.records import DOOR_EVENTS
from hub.source import salted_hash

DATA = Path(__file__).parent.parent / "data" / "doors"
SALT = "pepper"


def _ids(offset_hours: float = 8.0, devices: dict[str, str] | None = None) -> DahuaIds:
    return DahuaIds(
        source="vto",
        salt=SALT,
        devices=devices or {},
        fallback_device="vto-gate",
        utc_offset_hours=offset_hours,
        max_clock_skew_s=86_400.0,
    )


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def _issue29() -> list[tuple[str, Any]]:
    """(topic, payload) of each 'Publishing MQTT message <topic>: <python dict>' log line."""
    lines = (DATA / "dahua_vto2mqtt_issue29.log").read_text().splitlines()
    found = [re.search(r"Publishing MQTT message (\S+): (\{.*\})$", line) for line in lines]
    # DahuaVTO2MQTT logs the dict it json.dumps() to the broker; round-trip it the same way.
    return [(m[1], json.loads(json.dumps(ast.literal_eval(m[2])))) for m in found if m]


def _jsonc(name: str) -> Any:
    text = (DATA / name).read_text()
    return json.loads(re.sub(r"//[^\n]*", "", text))


def _commented_json_blocks(name: str) -> list[Any]:
    """JSON objects quoted in '# '-prefixed comment lines, split on the blank '#' lines."""
    body = "\n".join(
        line.split("#", 1)[1] for line in (DATA / name).read_text().splitlines() if "#" in line
    )
    blocks = [b for b in re.split(r"\n\s*\n", body.replace("Example events:", "")) if "{" in b]
    decoded = []
    for block in blocks:
        text = block.strip()
        # The VideoMotion example in the comment lacks the closing brace of "Data".
        opened, closed = text.count("{"), text.count("}")
        decoded.append(json.loads(text + "}" * (opened - closed)))
    return decoded


def _var_dump(text: str) -> Any:
    """PHP var_dump output to Python values (arrays with 0..n-1 keys become lists)."""
    tokens = re.findall(
        r'\["?([^"\]]*)"?\]=>|(array)\(\d+\) \{|(\})|(int|float)\(([^)]*)\)'
        r'|string\(\d+\) "([^"]*)"|(NULL)',
        text,
    )
    position = 0

    def value() -> Any:
        nonlocal position
        _key, arr, _close, num_type, num, string, null = tokens[position]
        position += 1
        if arr:
            items: dict[str, Any] = {}
            while not tokens[position][2]:
                item_key = tokens[position][0]
                position += 1
                items[item_key] = value()
            position += 1
            keys = list(items)
            return list(items.values()) if keys == [str(i) for i in range(len(keys))] else items
        if num_type:
            return float(num) if num_type == "float" else int(num)
        return None if null else string

    return value()


def test_accesscontrol_from_issue29_is_an_open_with_the_local_utc_quirk_corrected() -> None:
    (topic1, backlight), (topic2, access) = _issue29()
    profile = load_profile()
    now = _ns("2021-02-11T15:46:39")
    # Thanouz's VTO2202F is in France (UTC+1): its LocaleTime 16:46:38 and UTC 16:46:38Z agree,
    # so UTC carries local time; the bridge's own log line (UTC clock) says 15:46:39.
    ignored = map_document(backlight, _ids(1.0), profile, now, topic_code(topic1))
    assert ignored.events == [] and ignored.ignored == 1
    mapped = map_document(access, _ids(1.0), profile, now, topic_code(topic2))
    [event] = mapped.events
    assert (event.door_id, event.event, event.credential_hash) == ("vto-gate-1", "open", "")
    assert event.time_ns == _ns("2021-02-11T15:46:38")
    assert mapped.unknown == 0


def test_denied_when_the_same_event_reports_status_0() -> None:
    _, access = _issue29()[1]
    # Derived from the real sample: Status 0 is the failure value of AccessControl events.
    denied = {**access, "Data": {**access["Data"], "Status": 0, "CardNo": "7a087d0f"}}
    [event] = map_document(denied, _ids(), load_profile(), _ns("2021-02-11T15:46:39")).events
    assert event.event == "denied"
    assert event.credential_hash == salted_hash(SALT, "7a087d0f")


def test_mqttevents_readme_sample_uses_its_serial_and_true_utc() -> None:
    document = _jsonc("dahua_vto2mqtt_mqttevents_accesscontrol.jsonc")
    ids = _ids(devices={"Device Serial Number": "vto-lobby"})
    mapped = map_document(
        document, ids, load_profile(), _ns("2020-03-02T18:30:00"), "AccessControl"
    )
    [event] = mapped.events
    assert event.door_id == "vto-lobby-1"
    assert event.event == "open"
    # LocaleTime 20:24:08 (Israel, UTC+2) and UTC 18:24:08Z differ: UTC is real and kept.
    assert event.time_ns == _ns("2020-03-02T18:24:08")


def test_rroller_examples_doorstatus_close_and_ignored_codes() -> None:
    video, door_status, backlight = _commented_json_blocks("dahua_rroller_example_events.txt")
    profile = load_profile()
    now = _ns("2021-04-11T13:40:00")
    [event] = map_document(door_status, _ids(), profile, now).events
    assert (event.door_id, event.event) == ("vto-gate-1", "closed")
    assert event.time_ns == _ns("2021-04-11T13:34:52")
    assert map_document(video, _ids(), profile, now).ignored == 1
    assert map_document(backlight, _ids(), profile, now).ignored == 1
    opened = {**door_status, "Index": 1, "Data": {**door_status["Data"], "Status": "Open"}}
    [second] = map_document(opened, _ids(), profile, now).events
    assert (second.door_id, second.event) == ("vto-gate-2", "open")


def test_doorcard_in_an_rpc_event_list_is_ignored_not_doubled() -> None:
    dump = (DATA / "dahua_riogrande_issue2_doorcard.txt").read_text()
    document = _var_dump(dump[dump.index("array(4)") :])
    assert document["params"]["eventList"][0]["Data"]["Number"] == "7a087d0f"
    mapped = map_document(document, _ids(), load_profile(), _ns("2020-03-30T15:58:45"))
    assert mapped.events == [] and mapped.ignored == 1


def test_cgi_stream_chunk_from_rroller_docstring() -> None:
    lines = (DATA / "dahua_rroller_cgi_stream.txt").read_text().splitlines()
    chunk = b"".join(ast.literal_eval(line.strip()) for line in lines if line.strip())
    [event] = parse_cgi_stream(chunk.decode())
    assert event == {
        "Code": "VideoMotion",
        "Action": "Start",
        "Index": 0,
        "Data": {"Id": [0], "RegionName": ["Region1"]},
    }
    assert map_document(event, _ids(), load_profile(), 0).ignored == 1


@pytest.mark.parametrize(
    ("code", "action", "expected"),
    [
        ("BreakIn", "Start", "forced"),
        ("BreakIn", "Stop", None),
        ("DoorNotClosed", "Start", "held_open"),
        ("ChassisIntruded", "Start", "alarm"),
        ("AlarmLocal", "Start", "unknown"),
        ("SomethingNew", "Pulse", "unknown"),
    ],
)
def test_profile_codes(code: str, action: str, expected: str | None) -> None:
    event = {"Code": code, "Action": action, "Index": 0, "Data": {"UTC": 1618148092}}
    mapped = map_document(event, _ids(), load_profile(), _ns("2021-04-11T13:40:00"))
    assert [e.event for e in mapped.events] == ([expected] if expected else [])
    assert mapped.unknown == (expected == "unknown")


def test_unknown_status_value_is_unknown_not_an_error() -> None:
    event = {"Code": "AccessControl", "Action": "Pulse", "Data": {"Status": 7}}
    [mapped] = map_document(event, _ids(), load_profile(), 0).events
    assert mapped.event == "unknown"


def test_malformed_documents_are_protocol_errors() -> None:
    profile = load_profile()
    for document in ([], "x", {"Events": [1, 2]}, {"Events": [{}] * 1000}):
        with pytest.raises(ProtocolError):
            map_document(document, _ids(), profile, 0)


def test_invalid_profile_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nsource = "y"\n[codes.A]\nevent = "exploded"\n')
    with pytest.raises(ConfigError, match="exploded"):
        load_profile(str(bad))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))


@given(
    code=st.sampled_from([*load_profile().codes, *sorted(load_profile().ignore), "X"]),
    action=st.sampled_from(["Start", "Stop", "Pulse", "", None]),
    status=_scalars,
    door=_scalars,
    utc=_scalars,
)
def test_any_event_maps_without_raising_and_never_invents_forced(
    code: str, action: str | None, status: Any, door: Any, utc: Any
) -> None:
    profile: DahuaProfile = load_profile()
    event = {"Code": code, "Action": action, "Data": {"Status": status, "Door": door, "UTC": utc}}
    mapped = map_document(event, _ids(), profile, _ns("2021-04-11T13:40:00"))
    for door_event in mapped.events:
        assert door_event.event in DOOR_EVENTS
        if door_event.event == "forced":
            assert profile.codes[code].event == "forced"
