"""Door-controller event normalisation: vendor JSON/XML documents to `DoorEvent` records."""

from __future__ import annotations

import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.errors import FrameError, ProtocolError
from hub.records import DOOR_EVENTS, DoorEvent
from hub.source import SourceStats, salted_hash

NS = 1_000_000_000
MAX_ID_LEN = 64
MAX_EPOCH = 10**14  # epoch ms up to year 5138; anything bigger is not a time
MAX_DEPTH = 32
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)

# HCNetSDK access-control minor codes of MAJOR_EVENT (0x5) and MAJOR_ALARM (0x1), as ISAPI
# `AccessControllerEvent.subEventType` reports them. Check them against the controller's manual.
HIKVISION_EVENT_MAP: dict[str, str] = {
    "1": "open",  # MINOR_LEGAL_CARD_PASS
    "2": "open",  # MINOR_CARD_AND_PSW_PASS
    "3": "denied",  # MINOR_CARD_AND_PSW_FAIL
    "6": "denied",  # MINOR_CARD_NO_RIGHT
    "7": "denied",  # MINOR_CARD_INVALID_PERIOD
    "8": "denied",  # MINOR_CARD_OUT_OF_DATE
    "9": "denied",  # MINOR_INVALID_CARD
    "25": "open",  # MINOR_DOOR_OPEN_NORMAL (door contact)
    "27": "forced",  # MINOR_DOOR_OPEN_ABNORMAL (door contact)
    "28": "held_open",  # MINOR_DOOR_OPEN_TIMEOUT (door contact)
    "75": "open",  # MINOR_FACE_VERIFY_PASS
    "76": "denied",  # MINOR_FACE_VERIFY_FAIL
    "1028": "alarm",  # MINOR_HOST_DESMANTLE_ALARM (0x404, controller tamper)
    "1030": "alarm",  # MINOR_CARD_READER_DESMANTLE_ALARM (0x406)
}


class DoorMapping(BaseModel):
    """Which fields (dotted paths; list items by index, e.g. `Events.0.Code`) mean what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    door_id: str = "door_id"
    event: str = "event"
    time: str = "time"
    credential: str = "card"
    # Optional prefix field, e.g. a controller serial, joined as "<prefix>-<door>".
    door_prefix: str = ""
    # Vendor event code/string -> one of DOOR_EVENTS; the normalised names map to themselves.
    event_map: dict[str, str] = Field(default_factory=dict)
    # Documents where a field equals a value are accepted and dropped (heartbeats, status).
    ignore_when: dict[str, str] = Field(default_factory=dict)
    time_unit: Literal["auto", "s", "ms"] = "auto"
    # Offset assumed for ISO times without a zone (controllers often send local time).
    naive_utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
    # A device time further than this from the gateway clock is replaced by the gateway time.
    max_clock_skew_s: float = Field(default=86_400.0, gt=0)

    @field_validator("event_map")
    @classmethod
    def _known_events(cls, event_map: dict[str, str]) -> dict[str, str]:
        bad = sorted({v for v in event_map.values() if v not in DOOR_EVENTS})
        if bad:
            raise ValueError(f"event_map values {bad} are not among {list(DOOR_EVENTS)}")
        return event_map

    def ignores(self, document: Any) -> bool:
        return any(
            _text(lookup(document, path)) == value for path, value in self.ignore_when.items()
        )


HIKVISION_MAPPING = DoorMapping(
    door_id="AccessControllerEvent.doorNo",
    event="AccessControllerEvent.subEventType",
    time="dateTime",
    credential="AccessControllerEvent.cardNo",
    door_prefix="macAddress",
    event_map=HIKVISION_EVENT_MAP,
    ignore_when={"eventType": "heartBeat"},
)


def decode_json(payload: bytes) -> Any:
    """Parse a JSON document; FrameError if it is not valid UTF-8 JSON."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"malformed JSON: {type(exc).__name__}") from exc


def decode_xml(payload: bytes) -> Any:
    """Parse an XML event into nested dicts (namespaces stripped); DTDs and entities refused."""
    if _DTD.search(payload):
        raise FrameError("XML with a DTD or entity declaration refused")
    try:
        root = ET.fromstring(payload)
    except (ET.ParseError, ValueError, RecursionError) as exc:
        raise FrameError(f"malformed XML: {type(exc).__name__}") from exc
    return {_local(root.tag): _element(root, 0)}


def decode_document(payload: bytes) -> Any:
    """JSON or XML by the first non-blank byte; ISAPI XML keeps its root element as the top key."""
    head = payload.lstrip()[:1]
    if head == b"<":
        document = decode_xml(payload)
        # ISAPI: <EventNotificationAlert>…</EventNotificationAlert> is the event itself.
        return next(iter(document.values())) if len(document) == 1 else document
    return decode_json(payload)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(element: ET.Element, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise FrameError("XML nested too deep")
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        key, value = _local(child.tag), _element(child, depth + 1)
        if key in out:
            existing = out[key]
            out[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[key] = value
    return out


def lookup(document: Any, path: str) -> Any:
    """Follow a dotted path through dicts and lists; None where it leads nowhere."""
    node = document
    for part in path.split(".") if path else []:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any) -> str | None:
    """A scalar as text (ints stay ints: 25.0 -> "25"); None for missing or structured values."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def _identifier(value: Any, what: str) -> str:
    text = _text(value)
    if not text:
        raise ProtocolError(f"{what} missing or not a scalar")
    if len(text) > MAX_ID_LEN or not text.isprintable():
        raise ProtocolError(f"{what} too long or not printable")
    return text


def normalise_event(value: Any, mapping: DoorMapping) -> str:
    code = _text(value)
    if not code:
        raise ProtocolError("event missing or not a scalar")
    event = mapping.event_map.get(code) or mapping.event_map.get(code.lower())
    if event is None and code.lower() in DOOR_EVENTS:
        event = code.lower()
    if event is None:
        raise ProtocolError(f"unmapped event code {code[:32]!r}")
    return event


def parse_time_ns(value: Any, mapping: DoorMapping, now_ns: int) -> int:
    """Device time (ISO 8601, epoch s or ms) in UTC ns; the gateway time if absent or insane."""
    if value is None or value == "":
        return now_ns
    try:
        time_ns = _device_time_ns(value, mapping)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(f"time not ISO 8601 or epoch: {type(exc).__name__}") from exc
    if abs(time_ns - now_ns) > mapping.max_clock_skew_s * NS:
        return now_ns
    return time_ns


def _device_time_ns(value: Any, mapping: DoorMapping) -> int:
    if isinstance(value, (bool, dict, list)):
        raise TypeError("time is not a scalar")
    if isinstance(value, str) and not _is_number(value):
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(
                tzinfo=timezone(timedelta(hours=mapping.naive_utc_offset_hours))
            )
        delta = parsed.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except ArithmeticError as exc:
        raise ValueError("time is not a number") from exc
    if not number.is_finite() or abs(number) > MAX_EPOCH:
        raise ValueError("time is not a plausible epoch")
    unit = mapping.time_unit
    if unit == "auto":
        unit = "ms" if abs(number) >= 10**11 else "s"
    return int(number * (1_000_000 if unit == "ms" else NS))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def map_object(
    document: Any, mapping: DoorMapping, salt: str, source: str, now_ns: int
) -> DoorEvent:
    """One decoded event document to a DoorEvent; ProtocolError if a needed field is missing."""
    if not isinstance(document, dict):
        raise ProtocolError("event document is not an object")
    door_id = _identifier(lookup(document, mapping.door_id), "door id")
    if mapping.door_prefix:
        door_id = f"{_identifier(lookup(document, mapping.door_prefix), 'door prefix')}-{door_id}"
    event = normalise_event(lookup(document, mapping.event), mapping)
    time_ns = parse_time_ns(lookup(document, mapping.time), mapping, now_ns)
    card = _text(lookup(document, mapping.credential)) if mapping.credential else None
    credential_hash = salted_hash(salt, card) if card else ""
    return DoorEvent(
        door_id=door_id,
        time_ns=time_ns,
        event=event,
        credential_hash=credential_hash,
        source=source,
    )


def map_event(
    payload: bytes, mapping: DoorMapping, salt: str, source: str, now_ns: int
) -> DoorEvent:
    """Raw JSON bytes to a DoorEvent; raises only ProtocolError (FrameError for bad JSON)."""
    return map_object(decode_json(payload), mapping, salt, source, now_ns)


def error_kind(exc: ProtocolError) -> str:
    return "malformed" if isinstance(exc, FrameError) else "unmapped"


class ErrorNotes:
    """Counts bad input per kind and logs only the first of each kind (no payload content)."""

    def __init__(self, log: logging.Logger, source: str, stats: SourceStats) -> None:
        self.log = log
        self.source = source
        self.stats = stats

    def note(self, kind: str, detail: str) -> None:
        if self.stats.errors[kind] == 0:
            self.log.warning(
                "%s: %s event (%s); further ones are only counted", self.source, kind, detail
            )
        self.stats.error(kind)
