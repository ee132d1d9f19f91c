"""Door controllers pushing ISAPI-style event notifications (JSON, XML, multipart) over HTTP."""

from __future__ import annotations

import asyncio
import email.message
import hmac
import logging
import os
from collections import Counter
from typing import Literal

from aiohttp import web
from pydantic import Field, model_validator

from drivers.door_common import (
    HIKVISION_MAPPING,
    DoorMapping,
    ErrorNotes,
    decode_document,
    error_kind,
    map_object,
)
from drivers.door_hikvision import acs_table, decode_isapi
from hub.errors import ConfigError, FrameError, ProtocolError
from hub.records import DoorEvent
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger("drivers.door_http")
MAX_EVENTS_PER_BODY = 1000
MAX_PARTS = 16  # a controller push has an event part and a few pictures
OFF_LOOP_BYTES = 64 * 1024  # bodies above this are parsed in a worker thread
MAX_PART_HEADER_BYTES = 8 * 1024


class DoorHttpConfig(SourceConfig):
    type: Literal["door_http"] = "door_http"
    # Environment variable holding the token controllers send (Bearer or X-Hub-Token).
    token_env: str = "HUB_DOOR_TOKEN"
    # "hikvision": ISAPI AccessControllerEvent, codes mapped on (major, minor) by the shipped table
    # (drivers/profiles/hikvision_acs_events.csv); `mapping` then only sets the time handling.
    # "mapping": any JSON/XML push read through the dotted paths and event_map of `mapping`.
    vendor: Literal["hikvision", "mapping"] = "hikvision"
    mapping: DoorMapping = HIKVISION_MAPPING
    # Hikvision door ids: device key (MAC, deviceID, serial, IP) or "<device>-<doorNo>" -> door id.
    door_ids: dict[str, str] = Field(default_factory=dict)
    # Multipart pushes carry snapshots too; the JSON/XML part is what we read.
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_parts: int = Field(default=MAX_PARTS, ge=1, le=256)
    # Requests being read or parsed at once; more get 503 (controllers retry) so that memory
    # stays near max_concurrent_requests x max_body_bytes whatever arrives.
    max_concurrent_requests: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _mapping_given(self) -> DoorHttpConfig:
        if self.vendor == "mapping" and "mapping" not in self.model_fields_set:
            raise ValueError('vendor = "mapping" needs a [sources.mapping] table')
        return self

    def build(self, ctx: SourceContext) -> Source:
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise ConfigError(
                f"door_http {self.name}: environment variable {self.token_env} is not set or empty"
            )
        if self.vendor == "hikvision":
            acs_table()  # a broken shipped table is a start-up error, not a 500 per request
        source = DoorHttpSource(self, token, ctx)
        ctx.http_routes.append(("POST", source.path, source.handle))
        return source


class DoorHttpSource(Source):
    """Passive source: the HTTP handler does the work; `run` only waits for the hub to stop."""

    kind = "door_http"

    def __init__(self, cfg: DoorHttpConfig, token: str, ctx: SourceContext) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.path = f"/ingest/doors/{cfg.name}"
        self._token = token.encode()
        self.clock = ctx.clock
        self.salt = ctx.hash_salt
        self.notes = ErrorNotes(log, cfg.name, self.stats)
        self.ignored = 0  # documents accepted but not stored (also in stats.counts by kind)
        self._slots = asyncio.Semaphore(cfg.max_concurrent_requests)
        self._publish: Publish | None = None
        self._ready = asyncio.Event()

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        self._ready.set()
        self.stats.connected = True
        try:
            await asyncio.Event().wait()
        finally:
            self.stats.connected = False
            self._ready.clear()

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.notes.note("unauthorised", f"from {request.remote}")
            return web.json_response({"error": "unauthorised"}, status=401)
        if self._slots.locked():
            self.notes.note("busy", f"over {self.cfg.max_concurrent_requests} requests at once")
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        async with self._slots:
            return await self._ingest(request)

    async def _ingest(self, request: web.Request) -> web.Response:
        now_ns = self.clock.now_ns()
        self.stats.messages += 1
        self.stats.last_message_ns = now_ns
        try:
            body = await self._read_body(request)
            args = (body, request.headers.get("Content-Type", ""), now_ns, request.remote or "")
            if len(body) > OFF_LOOP_BYTES:
                events, counts = await asyncio.to_thread(self._events, *args)
            else:
                events, counts = self._events(*args)
        except _TooLarge:
            self.notes.note("too_large", f"body over {self.cfg.max_body_bytes} bytes")
            return web.json_response({"error": "body too large"}, status=413)
        except ProtocolError as exc:
            self.notes.note(error_kind(exc), str(exc))
            return web.json_response({"error": str(exc)}, status=400)
        self.stats.counts.update(counts)
        self.ignored += sum(n for kind, n in counts.items() if kind != "unknown_code")
        if events:
            if self._publish is None:
                return web.json_response({"error": "source not running"}, status=503)
            await self._publish(events)
            self.stats.records += len(events)
        return web.json_response({"accepted": len(events)})

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        offered = (
            header[7:]
            if header[:7].lower() == "bearer "
            else request.headers.get("X-Hub-Token", "")
        )
        return hmac.compare_digest(offered.strip().encode(), self._token)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.cfg.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _events(
        self, body: bytes, content_type: str, now_ns: int, peer: str
    ) -> tuple[list[DoorEvent], Counter[str]]:
        """The body's records and the counts of what was accepted but not stored.

        Pure (no shared state touched), so it may run in a worker thread."""
        parts = event_parts(body, content_type, self.cfg.max_parts)
        items = []
        for document in (decode_document(part) for part in parts):
            items.extend(document if isinstance(document, list) else [document])
            if len(items) > MAX_EVENTS_PER_BODY:
                raise FrameError(f"more than {MAX_EVENTS_PER_BODY} events in one body")
        events: list[DoorEvent] = []
        counts: Counter[str] = Counter()
        for item in items:
            if self.cfg.vendor == "mapping":
                if self.cfg.mapping.ignores(item):
                    counts["ignored"] += 1
                else:
                    events.append(map_object(item, self.cfg.mapping, self.salt, self.name, now_ns))
                continue
            result = decode_isapi(
                item,
                salt=self.salt,
                source=self.name,
                now_ns=now_ns,
                door_ids=self.cfg.door_ids,
                peer=peer,
                mapping=self.cfg.mapping,
            )
            if result.record is None:
                counts[result.counted_as] += 1
            else:
                events.append(result.record)
                counts["unknown_code"] += result.record.event == "unknown"
        return events, +counts


class _TooLarge(Exception):
    """The body exceeds max_body_bytes."""


def event_parts(body: bytes, content_type: str, max_parts: int = MAX_PARTS) -> list[bytes]:
    """The event documents of a body: itself, or the JSON/XML parts of a multipart body.

    The parts are counted by their delimiter before anything else, so a body of thousands of tiny
    parts is refused in one pass over the bytes; parts are split with bytes operations, not the
    email package (which took 26 s over a 2 MB body of 15,000 parts)."""
    if not body.strip():
        raise FrameError("empty body")
    if not content_type.lower().startswith("multipart/"):
        return [body]
    # A delimiter only counts at the start of a line (RFC 2046 5.1.1), not inside a picture.
    delimiter = b"\n--" + _boundary(content_type)
    body = b"\n" + body
    if body.count(delimiter) > max_parts + 1:
        raise FrameError(f"multipart body with more than {max_parts} parts")
    parts = [
        payload
        for headers, payload in split_multipart(body, delimiter)
        if _is_event_part(headers, payload)
    ]
    if not parts:
        raise FrameError("multipart body without a JSON or XML part")
    return parts


def _boundary(content_type: str) -> bytes:
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary or len(boundary) > 70:  # RFC 2046 5.1.1: 1 to 70 characters
        raise FrameError("multipart body without a usable boundary")
    return boundary.encode("latin-1", "replace")


def split_multipart(body: bytes, delimiter: bytes) -> list[tuple[dict[str, str], bytes]]:
    """(headers, payload) per part (RFC 2046 5.1.1); CRLF or bare LF line ends, as cameras send.

    The preamble and epilogue are dropped; a missing close delimiter is tolerated (alert streams)."""
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        raise FrameError("malformed multipart body: no delimiter")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # close delimiter
        head, payload = _split_head(chunk)
        payload = payload.removesuffix(b"\r")  # the CR of the CRLF that starts the delimiter
        parts.append((_headers(head), payload))
    return parts


def _split_head(chunk: bytes) -> tuple[bytes, bytes]:
    line_end = chunk.find(b"\n")  # rest of the delimiter line (transport padding)
    if line_end < 0:
        raise FrameError("malformed multipart body: part without a header block")
    rest = chunk[line_end + 1 :]
    if rest.startswith((b"\r\n", b"\n")):  # no headers at all
        return b"", rest[2 if rest.startswith(b"\r") else 1 :]
    for blank in (b"\r\n\r\n", b"\n\n"):
        head, found, payload = rest.partition(blank)
        if found and len(head) <= MAX_PART_HEADER_BYTES:
            return head, payload
    raise FrameError("malformed multipart body: part header block missing or too long")


def _headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers


def _is_event_part(headers: dict[str, str], payload: bytes) -> bool:
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind in ("application/json", "application/xml", "text/xml", "text/json"):
        return True
    if kind.startswith(("image/", "video/", "multipart/")):
        return False
    return payload.lstrip()[:1] in (b"{", b"[", b"<")
