"""Dahua VTO / access-controller events (DahuaVTO2MQTT, RPC event lists, CGI stream) to DoorEvent."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.door_common import decode_json
from drivers.door_mqtt import DoorMqttConfig, DoorMqttSource, broker_settings
from hub.errors import ConfigError, FrameError, ProtocolError
from hub.records import DOOR_EVENTS, DoorEvent
from hub.source import Source, SourceContext, salted_hash

log = logging.getLogger("drivers.door_dahua")

PROFILE_DIR = Path(__file__).parent / "profiles" / "doors"
NS = 1_000_000_000
MAX_EVENTS_PER_MESSAGE = 256
MAX_ID_LEN = 64
_LOCALE_TIME = "%Y-%m-%d %H:%M:%S"
# One event of the CGI event stream (eventManager.cgi?action=attach):
# "Code=AccessControl;action=Pulse;index=0;data={...}" (the data part is optional).
_CGI_EVENT = re.compile(r"Code=([^;\r\n]+);action=([^;\r\n]+);index=(-?\d+)(;data=)?")


class CodeRule(BaseModel):
    """How one Dahua event `Code` becomes a door event (see drivers/profiles/doors/dahua_vto.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = ""
    field: str = ""
    values: dict[str, str] = Field(default_factory=dict)
    actions: tuple[str, ...] = ("Start", "Pulse", "")

    @model_validator(mode="after")
    def _consistent(self) -> CodeRule:
        if bool(self.event) == bool(self.field):
            raise ValueError("give either `event` or `field` with `values`")
        if self.field and not self.values:
            raise ValueError(f"`field` {self.field!r} needs `values`")
        bad = sorted({e for e in (self.event, *self.values.values()) if e and e not in DOOR_EVENTS})
        if bad:
            raise ValueError(f"events {bad} are not among {list(DOOR_EVENTS)}")
        return self


class DahuaProfile(BaseModel):
    """A vendor's event codes as data: mapped codes, ignored codes; the rest is "unknown"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    codes: dict[str, CodeRule]
    ignore: frozenset[str] = frozenset()

    def classify(self, event: Mapping[str, Any]) -> str | None:
        """The door event of one Dahua event object; None when the profile ignores it."""
        code = _scalar(event.get("Code"))
        rule = self.codes.get(code)
        if rule is None:
            return None if code in self.ignore else "unknown"
        if _scalar(event.get("Action")) not in rule.actions:
            return None
        if rule.event:
            return rule.event
        return rule.values.get(_scalar(_lookup(event, rule.field)), "unknown")


@cache
def load_profile(name: str = "dahua_vto") -> DahuaProfile:
    """A shipped profile by name, or a path to a .toml file; ConfigError if it is invalid."""
    path = Path(name) if name.endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    try:
        return DahuaProfile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"door profile {name}: {exc}") from exc


@dataclass(slots=True, frozen=True, kw_only=True)
class DahuaIds:
    """Names and clocks the mapping needs from the source's configuration."""

    source: str
    salt: str
    devices: Mapping[str, str]
    fallback_device: str
    utc_offset_hours: float
    max_clock_skew_s: float


@dataclass(slots=True, frozen=True)
class Mapped:
    events: list[DoorEvent]
    ignored: int

    @property
    def unknown(self) -> int:
        return sum(1 for e in self.events if e.event == "unknown")


def topic_code(topic: str) -> str:
    """DahuaVTO2MQTT publishes to <prefix>/<Code>/Event; older versions omit Code in the body."""
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 3 and parts[-1] == "Event" else ""


def events_in(document: Any, code_hint: str = "") -> tuple[list[dict[str, Any]], str]:
    """The event objects of a document and the device serial of its envelope, if any.

    Accepts one event, an RPC `client.notifyEventStream` message (params.eventList) or an ASI
    HTTP push ({"Events": [...]})."""
    if not isinstance(document, dict):
        raise FrameError("Dahua event document is not an object")
    params = document.get("params")
    if isinstance(params, dict) and isinstance(params.get("eventList"), list):
        items = params["eventList"]
    elif isinstance(document.get("Events"), list):
        items = document["Events"]
    else:
        items = [document]
    if len(items) > MAX_EVENTS_PER_MESSAGE:
        raise FrameError(f"more than {MAX_EVENTS_PER_MESSAGE} events in one message")
    if not all(isinstance(item, dict) for item in items):
        raise FrameError("Dahua event is not an object")
    events = [
        item if "Code" in item or not code_hint else {**item, "Code": code_hint} for item in items
    ]
    return events, _scalar(document.get("serialNumber"))


def map_document(
    document: Any, ids: DahuaIds, profile: DahuaProfile, now_ns: int, code_hint: str = ""
) -> Mapped:
    """A decoded document to door events; ProtocolError only for a malformed document."""
    items, serial = events_in(document, code_hint)
    events: list[DoorEvent] = []
    ignored = 0
    for item in items:
        kind = profile.classify(item)
        if kind is None:
            ignored += 1
            continue
        events.append(_door_event(item, kind, serial, ids, now_ns))
    return Mapped(events, ignored)


def _door_event(
    item: dict[str, Any], kind: str, serial: str, ids: DahuaIds, now_ns: int
) -> DoorEvent:
    data = item.get("Data")
    data = data if isinstance(data, dict) else {}
    card = _scalar(data.get("CardNo")) or _scalar(data.get("Number")) or _scalar(data.get("UserID"))
    return DoorEvent(
        door_id=door_id(item, data, serial, ids),
        time_ns=event_time_ns(data, ids.utc_offset_hours, now_ns, ids.max_clock_skew_s),
        event=kind,
        credential_hash=salted_hash(ids.salt, card) if card else "",
        source=ids.source,
    )


def door_id(item: Mapping[str, Any], data: Mapping[str, Any], serial: str, ids: DahuaIds) -> str:
    """<device>-<door>: device = configured name for the serial, else the serial, else the
    source's `device`; door = Data.Door, else the event Index (both 0-based), plus one."""
    serial = _scalar(item.get("serialNumber")) or serial or _scalar(data.get("SN"))
    device = ids.devices.get(serial) or serial or ids.fallback_device
    door = _index(data.get("Door"))
    door = door if door is not None else _index(item.get("Index"))
    name = f"{device}-{(door or 0) + 1}"
    if len(name) > MAX_ID_LEN or not name.isprintable():
        raise ProtocolError("device serial too long or not printable")
    return name


def event_time_ns(
    data: Mapping[str, Any], utc_offset_hours: float, now_ns: int, max_skew_s: float
) -> int:
    """Event time in UTC ns: RealUTC, else UTC, else LocaleTime at the hub's offset.

    Some VTO firmware writes local time into `UTC` (DahuaVTO2MQTT issue #29: LocaleTime 16:46:38
    CET with UTC = 16:46:38Z); a `UTC` equal to LocaleTime read as UTC is therefore taken as local
    time. A time further than max_skew_s from the gateway clock is replaced by the gateway time."""
    offset_s = round(utc_offset_hours * 3600)
    locale_s = _locale_epoch(data.get("LocaleTime"))
    seconds = _epoch(data.get("RealUTC"))
    if seconds is None:
        seconds = _epoch(data.get("UTC"))
        if seconds is not None and locale_s is not None and int(seconds) == locale_s:
            seconds -= offset_s
    if seconds is None and locale_s is not None:
        seconds = Decimal(locale_s - offset_s)
    if seconds is None:
        return now_ns
    time_ns = int(seconds * NS)
    return now_ns if abs(time_ns - now_ns) > max_skew_s * NS else time_ns


def parse_cgi_stream(text: str) -> list[dict[str, Any]]:
    """Events of a CGI event-stream chunk ("Code=...;action=...;index=...;data={...}"), shaped
    like RPC events ({"Code", "Action", "Index", "Data"}); multipart boundaries are skipped."""
    events: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for match in _CGI_EVENT.finditer(text):
        data: Any = {}
        if match.group(4):
            start = text.find("{", match.end())
            try:
                data, _ = decoder.raw_decode(text, start) if start >= 0 else ({}, 0)
            except (ValueError, RecursionError) as exc:
                raise FrameError(f"malformed event data: {type(exc).__name__}") from exc
        events.append(
            {
                "Code": match.group(1),
                "Action": match.group(2),
                "Index": int(match.group(3)),
                "Data": data if isinstance(data, dict) else {},
            }
        )
        if len(events) > MAX_EVENTS_PER_MESSAGE:
            raise FrameError(f"more than {MAX_EVENTS_PER_MESSAGE} events in one chunk")
    return events


def _lookup(node: Any, path: str) -> Any:
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _scalar(value: Any) -> str:
    """A scalar as text ("" for missing or structured values); 1.0 -> "1", True -> "true"."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()[:MAX_ID_LEN]


def _index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 <= value < 1000 else None


def _epoch(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() and 0 < number < 10**11 else None


def _locale_epoch(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.strptime(value.strip(), _LOCALE_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(parsed.timestamp())


class DahuaMqttConfig(DoorMqttConfig):
    """Dahua events relayed to MQTT by a bridge such as DahuaVTO2MQTT."""

    type: Literal["door_dahua_mqtt"] = "door_dahua_mqtt"  # type: ignore[assignment]
    topics: list[str] = Field(default_factory=lambda: ["DahuaVTO/+/Event"], min_length=1)
    profile: str = "dahua_vto"
    # Device serial (payload `serialNumber` or Data.SN) -> name used in door ids.
    devices: dict[str, str] = Field(default_factory=dict)
    # Device name when the payload carries no serial (DahuaVTO2MQTT before 2021); default: source name.
    device: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,48}$")
    # Offset of the device's local time; default: [hub] utc_offset_hours.
    utc_offset_hours: float | None = Field(default=None, ge=-12, le=14)
    max_clock_skew_s: float = Field(default=86_400.0, gt=0)

    def build(self, ctx: SourceContext) -> Source:
        return DahuaMqttSource(self, ctx)


class DahuaMqttSource(DoorMqttSource):
    """door_mqtt's connection handling with the Dahua event mapping."""

    kind = "door_dahua_mqtt"

    def __init__(self, cfg: DahuaMqttConfig, ctx: SourceContext) -> None:
        super().__init__(cfg, broker_settings(cfg, ctx), ctx)
        self.profile = load_profile(cfg.profile)
        self.ids = DahuaIds(
            source=cfg.name,
            salt=ctx.hash_salt,
            devices=dict(cfg.devices),
            fallback_device=cfg.device or cfg.name,
            utc_offset_hours=(
                cfg.utc_offset_hours if cfg.utc_offset_hours is not None else ctx.utc_offset_hours
            ),
            max_clock_skew_s=cfg.max_clock_skew_s,
        )

    def map_message(self, topic: str, payload: bytes, now_ns: int) -> list[DoorEvent]:
        mapped = map_document(
            decode_json(payload), self.ids, self.profile, now_ns, topic_code(topic)
        )
        self.ignored += mapped.ignored
        self.stats.counts.update(
            {k: n for k, n in (("ignored", mapped.ignored), ("unknown_code", mapped.unknown)) if n}
        )
        return mapped.events
