"""ZKTeco terminals pushing attendance records over the ADMS / "PUSH SDK" HTTP protocol (/iclock/*).

The terminal is the HTTP client: it asks for its options (GET /iclock/cdata?SN=..&options=all),
polls for commands (GET /iclock/getrequest), and POSTs records (POST /iclock/cdata?SN=..&table=
ATTLOG). A terminal that gets no proper plain-text answer retries the same request forever, so
every known request is answered, and records are answered `OK:<n>` only after the durable commit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError, field_validator

from hub.errors import ConfigError, FrameError
from hub.logs import ThrottledLog
from hub.records import DOOR_EVENTS, DoorEvent
from hub.source import Publish, Source, SourceConfig, SourceContext, salted_hash

log = logging.getLogger("drivers.door_zkteco")

PROFILE_DIR = Path(__file__).parent / "profiles" / "doors"
NS = 1_000_000_000
ROUTE_PREFIX = "/iclock/"
MAX_PIN_LEN = 32
MAX_FUTURE_S = 86_400  # a record time further ahead than this is a wrong terminal clock
_TIME = "%Y-%m-%d %H:%M:%S"
_TEXT = "text/plain"


class ZktecoProfile(BaseModel):
    """ATTLOG codes as data (drivers/profiles/doors/zkteco_attlog.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    status: dict[str, str]
    verify: dict[str, str]

    @field_validator("status")
    @classmethod
    def _known_events(cls, status: dict[str, str]) -> dict[str, str]:
        bad = sorted({v for v in status.values() if v not in DOOR_EVENTS})
        if bad:
            raise ValueError(f"status events {bad} are not among {list(DOOR_EVENTS)}")
        return status

    def classify(self, status: str, verify: str) -> str:
        if verify not in self.verify:
            return "unknown"
        return self.status.get(status, "unknown")


@cache
def load_profile(name: str = "zkteco_attlog") -> ZktecoProfile:
    path = Path(name) if name.endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    try:
        return ZktecoProfile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"door profile {name}: {exc}") from exc


@dataclass(slots=True, frozen=True, kw_only=True)
class AttlogRecord:
    """One ATTLOG line, before the PIN is hashed."""

    pin: str
    local_time: datetime
    status: str
    verify: str
    offset_s: int | None  # the record's own UTC offset (TimeOffset field), when it has one


def parse_attlog_line(line: str) -> AttlogRecord:
    """PIN, Time, Status, Verify, ... separated by tabs (whitespace in some transcriptions)."""
    fields = line.split("\t")
    if len(fields) < 2:
        tokens = line.split()
        # "1452 2015-07-30 15:16:28 0 1 0 0 0": the time is two tokens when tabs became spaces.
        fields = [tokens[0], " ".join(tokens[1:3]), *tokens[3:]] if len(tokens) >= 3 else []
    if len(fields) < 2:
        raise FrameError("ATTLOG line without PIN and time")
    pin = fields[0].strip()
    if not pin or len(pin) > MAX_PIN_LEN or not pin.isprintable():
        raise FrameError("ATTLOG PIN empty, too long or not printable")
    try:
        local_time = datetime.strptime(fields[1].strip(), _TIME)
    except ValueError as exc:
        raise FrameError("ATTLOG time is not YYYY-MM-DD HH:MM:SS") from exc
    rest = [f.strip() for f in fields[2:]]
    return AttlogRecord(
        pin=pin,
        local_time=local_time,
        status=rest[0] if rest else "",
        verify=rest[1] if len(rest) > 1 else "",
        offset_s=_offset_s(rest[8]) if len(rest) > 8 else None,
    )


def _offset_s(text: str) -> int | None:
    """TimeOffset: the record's UTC offset in seconds ("+28800"); empty means none."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if abs(value) <= 14 * 3600 else None


def record_time_ns(record: AttlogRecord, utc_offset_hours: float, now_ns: int) -> int:
    """Terminal local time to UTC ns; a time far in the future (wrong clock) becomes now."""
    offset_s = record.offset_s if record.offset_s is not None else round(utc_offset_hours * 3600)
    seconds = int(record.local_time.replace(tzinfo=UTC).timestamp()) - offset_s
    time_ns = seconds * NS
    return now_ns if time_ns - now_ns > MAX_FUTURE_S * NS else time_ns


def options_reply(serial: str, utc_offset_hours: float, delay_s: int, error_delay_s: int) -> str:
    """The answer to GET /iclock/cdata?options=all, after the protocol's own example."""
    hours = utc_offset_hours
    # TimeZone: whole hours, or minutes for half and quarter zones (330 = UTC+5:30).
    zone = str(int(hours)) if float(hours).is_integer() else str(round(hours * 60))
    return (
        f"GET OPTION FROM: {serial}\n"
        "ATTLOGStamp=None\nOPERLOGStamp=9999\nATTPHOTOStamp=None\n"
        f"ErrorDelay={error_delay_s}\nDelay={delay_s}\n"
        "TransTimes=00:00;14:05\nTransInterval=1\nTransFlag=TransData AttLog\n"
        f"TimeZone={zone}\nRealtime=1\nEncrypt=None\n"
    )


class ZktecoPushConfig(SourceConfig):
    type: Literal["door_zkteco"] = "door_zkteco"
    # Terminal serial number (the SN= of every request) -> door id. Required and the only check:
    # ZKTeco terminals cannot send a token, so a serial not listed here is refused (403).
    devices: dict[str, str] = Field(min_length=1)
    # Optional second check: client addresses allowed to push (e.g. ["10.20.0.0/24"]).
    allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    profile: str = "zkteco_attlog"
    # Offset of the terminals' local clock; default: [hub] utc_offset_hours.
    utc_offset_hours: float | None = Field(default=None, ge=-12, le=14)
    delay_s: int = Field(default=10, ge=1, le=300)  # how often the terminal polls
    error_delay_s: int = Field(default=30, ge=1, le=3600)  # its retry delay after a failure
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    def build(self, ctx: SourceContext) -> Source:
        for serial, door in self.devices.items():
            if not (serial.isalnum() and len(serial) <= 32 and door and door.isprintable()):
                raise ConfigError(f"door_zkteco {self.name}: bad device entry {serial!r}")
        if any(path.startswith(ROUTE_PREFIX) for _, path, _ in ctx.http_routes):
            raise ConfigError(
                f"door_zkteco {self.name}: /iclock/ is already served by another source; "
                "list all terminals in one door_zkteco source"
            )
        source = ZktecoPushSource(self, ctx)
        ctx.http_routes.extend(source.routes())
        return source


class ZktecoPushSource(Source):
    """Passive source: the /iclock/* handlers do the work; `run` waits for the hub to stop."""

    kind = "door_zkteco"

    def __init__(self, cfg: ZktecoPushConfig, ctx: SourceContext) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.clock = ctx.clock
        self.salt = ctx.hash_salt
        self.profile = load_profile(cfg.profile)
        offset = cfg.utc_offset_hours
        self.utc_offset_hours = offset if offset is not None else ctx.utc_offset_hours
        self.rejects = ThrottledLog(log)
        self._publish: Publish | None = None

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/iclock/cdata", self.handle_options),
            ("POST", "/iclock/cdata", self.handle_upload),
            ("GET", "/iclock/getrequest", self.handle_poll),
            ("GET", "/iclock/ping", self.handle_poll),
            ("POST", "/iclock/devicecmd", self.handle_poll),
        ]

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        self.stats.connected = True
        try:
            await asyncio.Event().wait()
        finally:
            self.stats.connected = False
            self._publish = None

    async def handle_options(self, request: web.Request) -> web.Response:
        serial = self._admit(request)
        if serial is None:
            return _text("unknown device", 403)
        self._seen()
        reply = options_reply(
            serial, self.utc_offset_hours, self.cfg.delay_s, self.cfg.error_delay_s
        )
        return _text(reply)

    async def handle_poll(self, request: web.Request) -> web.Response:
        """getrequest / ping / devicecmd: the hub queues no commands, so the answer is OK."""
        if self._admit(request) is None:
            return _text("unknown device", 403)
        self._seen()
        if request.method == "POST":
            await self._read_body(request)
        return _text("OK")

    async def handle_upload(self, request: web.Request) -> web.Response:
        serial = self._admit(request)
        if serial is None:
            return _text("unknown device", 403)
        self._seen()
        body = await self._read_body(request)
        if body is None:
            self.stats.error("too_large")
            self.rejects.warning(
                "%s: upload over %d bytes refused", self.name, self.cfg.max_body_bytes
            )
            return _text("body too large", 413)
        table = request.query.get("table", "").upper()
        lines = [ln for ln in body.decode("utf-8", "replace").splitlines() if ln.strip()]
        if table != "ATTLOG":
            self.stats.counts["ignored"] += 1  # OPERLOG, photos, options: not door events
            return _text(f"OK:{len(lines)}" if table == "OPERLOG" else "OK")
        if self._publish is None:
            return _text("hub not running", 503)
        events = self._events(serial, lines)
        if events:
            await self._publish(events)  # durable commit; an exception here means no "OK"
            self.stats.records += len(events)
        return _text(f"OK:{len(lines)}")

    def _events(self, serial: str, lines: list[str]) -> list[DoorEvent]:
        now_ns = self.clock.now_ns()
        door_id = self.cfg.devices[serial]
        events = []
        for line in lines:
            try:
                record = parse_attlog_line(line)
            except FrameError as exc:
                # A bad line is skipped and counted: refusing the body would make the terminal
                # resend it forever and block every record behind it.
                self.stats.error("malformed")
                self.rejects.warning("%s: ATTLOG line skipped (%s)", self.name, exc)
                continue
            event = self.profile.classify(record.status, record.verify)
            if event == "unknown":
                self.stats.counts["unknown_code"] += 1
            events.append(
                DoorEvent(
                    door_id=door_id,
                    time_ns=record_time_ns(record, self.utc_offset_hours, now_ns),
                    event=event,
                    credential_hash=salted_hash(self.salt, record.pin),
                    source=self.name,
                )
            )
        return events

    def _admit(self, request: web.Request) -> str | None:
        """The request's serial if it is a configured terminal from an allowed network."""
        serial = request.query.get("SN") or request.query.get("sn", "")
        if serial not in self.cfg.devices:
            self.stats.error("unknown_device")
            self.rejects.warning("%s: request from an unlisted terminal serial refused", self.name)
            return None
        if self.cfg.allowed_networks and not self._allowed(request.remote):
            self.stats.error("unauthorised")
            self.rejects.warning("%s: terminal request from %s refused", self.name, request.remote)
            return None
        return serial

    def _allowed(self, remote: str | None) -> bool:
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        return any(address in network for network in self.cfg.allowed_networks)

    def _seen(self) -> None:
        self.stats.messages += 1
        self.stats.last_message_ns = self.clock.now_ns()

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is larger than max_body_bytes (read no further)."""
        limit = self.cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type=_TEXT)
