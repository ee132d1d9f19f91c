"""Hikvision ISAPI event notifications: (major, minor) codes to door events, and the door id.

Access controllers report `AccessControllerEvent.majorEventType` and `.subEventType` (HCNetSDK
`NET_DVR_ACS_ALARM_INFO` dwMajor/dwMinor). Minor codes are only unique within a major, so the table
in drivers/profiles/hikvision_acs_events.csv is keyed on the pair. Cameras and NVRs post the same
`EventNotificationAlert` envelope with other `eventType`s (VMD, IO, videoloss, heartBeat): those are
accepted and counted, never stored and never an error.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.door_common import (
    HIKVISION_MAPPING,
    MAX_ID_LEN,
    DoorMapping,
    parse_time_ns,
    text_of,
)
from hub.errors import ConfigError, ProtocolError
from hub.records import DOOR_EVENTS, DoorEvent
from hub.source import salted_hash

TABLE_PATH = Path(__file__).parent / "profiles" / "hikvision_acs_events.csv"
MAJORS = {1: "alarm", 2: "exception", 3: "operation", 5: "event"}
IGNORE = "ignore"
UNKNOWN = "unknown"
ACCESS_EVENT = "AccessControllerEvent"
MAX_CODE = 2**63 - 1  # stored as an InfluxDB integer field
# Device identity in the order it is tried. `AccessControllerEvent.serialNo` is NOT among them: it
# is the event's sequence number (it grows with every event), not the device's serial.
DEVICE_KEYS = ("macAddress", "deviceID", "serialNumber", "ipAddress")


@dataclass(slots=True, frozen=True, kw_only=True)
class AcsCode:
    major: int
    minor: int
    name: str  # HCNetSDK macro name, e.g. MINOR_HOST_DESMANTLE_ALARM
    event: str  # one of DOOR_EVENTS (not "unknown") or "ignore"


@dataclass(slots=True, frozen=True, kw_only=True)
class IsapiResult:
    """One decoded notification: a record to store, or a counted reason it is not stored."""

    door_id: str
    event: str  # a DOOR_EVENTS name, "ignore" (table says so) or "" (not an access event)
    record: DoorEvent | None
    counted_as: str  # the SourceStats.counts kind when record is None


def load_table(path: Path = TABLE_PATH) -> dict[tuple[int, int], AcsCode]:
    """The (major, minor) table; ConfigError on a bad row (unknown event, duplicate pair)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    table: dict[tuple[int, int], AcsCode] = {}
    allowed = {*DOOR_EVENTS, IGNORE} - {UNKNOWN}
    for n, row in enumerate(csv.DictReader(lines), start=2):
        try:
            code = AcsCode(
                major=int(row["major"]),
                minor=int(row["minor"]),
                name=row["name"],
                event=row["event"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path.name}: bad row {n}: {exc}") from exc
        if code.event not in allowed or code.major not in MAJORS:
            raise ConfigError(f"{path.name}: row {n}: event {code.event!r} / major {code.major}")
        if (code.major, code.minor) in table:
            raise ConfigError(f"{path.name}: row {n}: duplicate {code.major}/{code.minor}")
        table[(code.major, code.minor)] = code
    return table


@functools.cache
def acs_table() -> Mapping[tuple[int, int], AcsCode]:
    return load_table()


def classify(major: int, minor: int) -> str:
    """The door event for a code pair, "ignore", or "unknown" when the table has no such pair."""
    code = acs_table().get((major, minor))
    return code.event if code else UNKNOWN


def decode_isapi(
    document: Any,
    *,
    salt: str,
    source: str,
    now_ns: int,
    door_ids: Mapping[str, str],
    peer: str = "",
    mapping: DoorMapping = HIKVISION_MAPPING,
) -> IsapiResult:
    """One EventNotificationAlert (JSON object or XML as dicts) to a result; ProtocolError only
    for documents that are not ISAPI notifications or whose codes are not integers."""
    if not isinstance(document, dict):
        raise ProtocolError("event document is not an object")
    event_type = text_of(document.get("eventType")) or ""
    access = document.get(ACCESS_EVENT)
    if access is None and event_type != ACCESS_EVENT:
        if not event_type:
            raise ProtocolError("neither eventType nor AccessControllerEvent")
        kind = "heartbeat" if event_type.lower() == "heartbeat" else "camera_event"
        return IsapiResult(door_id="", event="", record=None, counted_as=kind)
    if not isinstance(access, dict):
        raise ProtocolError("AccessControllerEvent missing or not an object")
    major, minor = _code(access, "majorEventType"), _code(access, "subEventType")
    door_id = isapi_door_id(document, door_ids, peer)
    event = classify(major, minor)
    if event == IGNORE:
        return IsapiResult(door_id=door_id, event=event, record=None, counted_as="ignored_code")
    time_ns = parse_time_ns(document.get("dateTime"), mapping, now_ns)
    credential = text_of(access.get("cardNo")) or text_of(access.get("employeeNoString"))
    record = DoorEvent(
        door_id=door_id,
        time_ns=time_ns,
        event=event,
        credential_hash=salted_hash(salt, credential) if credential else "",
        source=source,
        vendor_major=major,
        vendor_minor=minor,
    )
    return IsapiResult(door_id=door_id, event=event, record=record, counted_as="")


def _code(access: dict[str, Any], field: str) -> int:
    text = text_of(access.get(field)) or ""
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or abs(int(text)) > MAX_CODE:
        raise ProtocolError(f"AccessControllerEvent.{field} missing or not an integer code")
    return int(text)


def isapi_door_id(document: dict[str, Any], door_ids: Mapping[str, str], peer: str = "") -> str:
    """Door id: configured mapping, else MAC, device id/serial, IP (payload, then HTTP peer),
    each with "-<doorNo>" appended when the event names a door (device-level events do not).

    `door_ids` keys are a device key ("44:19:b6:00:00:01", "DS-K1T502-1234", "10.0.0.7"), whose
    value replaces the device part, or a full "<device>-<door>" id, whose value is the door id."""
    access = document.get(ACCESS_EVENT)
    door_no = text_of(access.get("doorNo")) if isinstance(access, dict) else None
    suffix = f"-{door_no}" if door_no else ""
    devices = [key for key in (_device_key(document, name) for name in DEVICE_KEYS) if key]
    if peer:
        devices.append(peer)
    for device in devices:
        if f"{device}{suffix}" in door_ids:
            return _checked(door_ids[f"{device}{suffix}"])
        if device in door_ids:
            return _checked(f"{door_ids[device]}{suffix}")
    if not devices:
        raise ProtocolError("no device identity (macAddress, deviceID, serialNumber, ipAddress)")
    return _checked(f"{devices[0]}{suffix}")


def _device_key(document: dict[str, Any], name: str) -> str:
    text = text_of(document.get(name)) or ""
    return text.lower() if name == "macAddress" else text


def _checked(door_id: str) -> str:
    if len(door_id) > MAX_ID_LEN or not door_id.isprintable():
        raise ProtocolError("door id too long or not printable")
    return door_id
