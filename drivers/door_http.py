"""Door controllers pushing ISAPI-style event notifications (JSON, XML, multipart) over HTTP."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hmac
import logging
import os
from email.message import Message
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from drivers.door_common import (
    HIKVISION_MAPPING,
    DoorMapping,
    ErrorNotes,
    decode_document,
    error_kind,
    map_object,
)
from hub.errors import ConfigError, FrameError, ProtocolError
from hub.records import DoorEvent
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger("drivers.door_http")
MAX_EVENTS_PER_BODY = 1000


class DoorHttpConfig(SourceConfig):
    type: Literal["door_http"] = "door_http"
    # Environment variable holding the token controllers send (Bearer or X-Hub-Token).
    token_env: str = "HUB_DOOR_TOKEN"
    mapping: DoorMapping = HIKVISION_MAPPING
    # Multipart pushes carry snapshots too; the JSON/XML part is what we read.
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

    def build(self, ctx: SourceContext) -> Source:
        token = os.environ.get(self.token_env, "")
        if not token:
            raise ConfigError(
                f"door_http {self.name}: environment variable {self.token_env} is not set"
            )
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
        self.ignored = 0
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
        now_ns = self.clock.now_ns()
        self.stats.messages += 1
        self.stats.last_message_ns = now_ns
        try:
            body = await self._read_body(request)
            events = self._events(body, request.headers.get("Content-Type", ""), now_ns)
        except _TooLarge:
            self.notes.note("too_large", f"body over {self.cfg.max_body_bytes} bytes")
            return web.json_response({"error": "body too large"}, status=413)
        except ProtocolError as exc:
            self.notes.note(error_kind(exc), str(exc))
            return web.json_response({"error": str(exc)}, status=400)
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

    def _events(self, body: bytes, content_type: str, now_ns: int) -> list[DoorEvent]:
        documents = [decode_document(part) for part in event_parts(body, content_type)]
        events: list[DoorEvent] = []
        for document in documents:
            for item in document if isinstance(document, list) else [document]:
                if self.cfg.mapping.ignores(item):
                    self.ignored += 1
                    continue
                events.append(map_object(item, self.cfg.mapping, self.salt, self.name, now_ns))
        if len(events) > MAX_EVENTS_PER_BODY:
            raise FrameError(f"more than {MAX_EVENTS_PER_BODY} events in one body")
        return events


class _TooLarge(Exception):
    """The body exceeds max_body_bytes."""


def event_parts(body: bytes, content_type: str) -> list[bytes]:
    """The event documents of a body: itself, or the JSON/XML parts of a multipart form."""
    if not body.strip():
        raise FrameError("empty body")
    if not content_type.lower().startswith("multipart/"):
        return [body]
    message = _parse_multipart(body, content_type)
    parts = [_payload(part) for part in message.iter_parts() if _is_event_part(part)]
    if not parts:
        raise FrameError("multipart body without a JSON or XML part")
    return parts


def _parse_multipart(body: bytes, content_type: str) -> Any:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    try:
        message = parser.parsebytes(head + body)
    except (ValueError, TypeError, IndexError) as exc:
        raise FrameError(f"malformed multipart body: {type(exc).__name__}") from exc
    if not message.is_multipart() or message.defects:
        raise FrameError("malformed multipart body")
    return message


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _is_event_part(part: Any) -> bool:
    kind = part.get_content_type()
    if kind in ("application/json", "application/xml", "text/xml", "text/json"):
        return True
    if kind.startswith(("image/", "video/")) or part.is_multipart():
        return False
    head = _payload(part).lstrip()[:1]
    return head in (b"{", b"[", b"<")
