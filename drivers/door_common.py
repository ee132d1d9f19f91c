"""Door-controller event normalisation: vendor JSON/XML documents to `DoorEvent` records."""

from __future__ import annotations

import io
import json
import logging
import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.errors import FrameError, ProtocolError
from hub.logs import ThrottledLog
from hub.records import DOOR_EVENTS, DoorEvent
from hub.source import SourceStats, salted_hash

NS = 1_000_000_000
MAX_ID_LEN = 64
MAX_EPOCH = 10**14  # epoch ms up to year 5138; anything bigger is not a time
MAX_DEPTH = 32
MAX_NODES = 5_000  # elements, or JSON objects/arrays/values, in one event document
MAX_FIELD_CHARS = 4_096  # any one decoded text value or key
_UTF8_BOM = b"\xef\xbb\xbf"


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
    # Hikvision codes are mapped on (major, minor) by drivers/door_hikvision.py, never here: a minor
    # code alone is ambiguous (1/0x404 host tamper, 2/0x404 battery resumed, 3/0x404 time sync).
    ignore_when={"eventType": "heartBeat"},
)


def decode_json(payload: bytes) -> Any:
    """Parse a JSON document; FrameError if it is not valid UTF-8 JSON or exceeds the bounds."""
    # Cheap upper bound on the values before json.loads builds them (each costs ~50-100 bytes of
    # Python objects): separators and openers, with slack for ones inside strings.
    if sum(payload.count(c) for c in (b",", b"{", b"[")) > 4 * MAX_NODES:
        raise FrameError("JSON document with too many values")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"malformed JSON: {type(exc).__name__}") from exc
    check_bounds(document)
    return document


def check_bounds(document: Any) -> None:
    """FrameError unless nesting <= MAX_DEPTH, nodes <= MAX_NODES, texts <= MAX_FIELD_CHARS."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH or nodes > MAX_NODES:
            raise FrameError("document nested too deep or too large")
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    if len(text) > MAX_FIELD_CHARS:
        raise FrameError(f"a field is longer than {MAX_FIELD_CHARS} characters")


def decode_xml(payload: bytes) -> Any:
    """Parse an XML event into nested dicts (namespaces stripped).

    defusedxml refuses DTDs, entities and external references whatever the document's encoding
    (a UTF-16 body is decoded by expat before the check, not matched as raw bytes); depth, element
    count and text length are checked while parsing, so an oversized document stops early."""
    root: ET.Element | None = None
    depth = nodes = 0
    try:
        events = iterparse(io.BytesIO(payload), events=("start", "end"), forbid_dtd=True)
        for kind, element in events:
            if kind == "start":
                depth, nodes = depth + 1, nodes + 1
                if depth > MAX_DEPTH or nodes > MAX_NODES:
                    raise FrameError("XML nested too deep or too large")
                root = element if root is None else root
            else:
                depth -= 1
                _check_text(element.text or "")
    except DefusedXmlException as exc:
        raise FrameError(f"XML refused: {type(exc).__name__} (DTD, entity or external)") from exc
    except (ET.ParseError, ValueError, LookupError, RecursionError) as exc:
        raise FrameError(f"malformed XML: {type(exc).__name__}") from exc
    if root is None:
        raise FrameError("malformed XML: no element")
    return {_local(root.tag): _element(root, 0)}


def decode_document(payload: bytes) -> Any:
    """JSON or XML by the first non-blank character; ISAPI XML keeps its root element as the top
    key. A UTF-16/32 body (BOM or NUL bytes) is XML or refused: JSON must be UTF-8 (RFC 8259 8.1)."""
    payload = payload.lstrip().removeprefix(_UTF8_BOM)  # at most one BOM, not a loop
    head = payload[:4]
    if head[:1] == b"<" or head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
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


text_of = _text  # public name for other door drivers


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
    """Counts bad input per kind; logs it through a ThrottledLog (no payload content)."""

    def __init__(self, log: logging.Logger, source: str, stats: SourceStats) -> None:
        self.log = log
        self.throttled = ThrottledLog(log)
        self.source = source
        self.stats = stats

    def note(self, kind: str, detail: str) -> None:
        # The kind is one of a few fixed names, so each gets its own throttling key.
        self.throttled.warning("%s: " + kind + " input refused (%s)", self.source, detail)
        self.stats.error(kind)
