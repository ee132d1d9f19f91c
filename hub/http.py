"""The hub's local HTTP server: health, metrics, status page, token-protected ingest and control.

Without the bearer token the server shows only health and counts; alert messages, household ids
and vessel lists need the token. POSTs (ingest, registry pushes, door events) run at most
`http.max_concurrent_ingest` at a time; the excess is refused at once with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from shapely.geometry import mapping

from hub.alerts import iso
from hub.errors import HubError, ProtocolError
from hub.feedback import MAX_FEEDBACK_BYTES, parse_feedback
from hub.ingest import records_from_lines
from hub.logs import ThrottledLog
from hub.metrics import render
from hub.registry import PushTooLarge
from hub.registry.maritime import MaritimeRegistry

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.status import HubStatus

HUB_KEY = web.AppKey("hub", object)
MAX_BODY = 4 * 1024 * 1024
MAX_RECORDS = 20_000  # per ingest request; a client sends more in several requests
MAX_ARRAY_BYTES = 1024 * 1024
RETRY_AFTER_S = 1
_rejected_log = ThrottledLog(logging.getLogger("hub.http"))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class IngestGate(Collector):
    """At most `limit` POST requests in progress; the excess is refused (503), and counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: Counter[str] = Counter()  # by route
        self.in_progress = 0
        self.aborted = 0
        self._slots = asyncio.Semaphore(limit)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)  # health, metrics and status always answer
        if self._slots.locked():
            route = request.match_info.route.resource
            self.refused[route.canonical if route else "unknown"] += 1
            return web.json_response(
                {"error": f"busy: {self.limit} requests in progress, retry"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        async with self._slots:
            self.in_progress += 1
            try:
                return await handler(request)
            except ConnectionResetError:  # the client left mid-body: its data, its loss
                self.aborted += 1
                _rejected_log.info("a client left %s before sending its whole body", request.path)
                return web.Response(status=400)  # nobody reads it; keeps aiohttp from logging
            finally:
                self.in_progress -= 1

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "hub_http_busy_refused",
            "POSTs refused with 503: too many in progress",
            labels=["route"],
        )
        for route, n in self.refused.items():
            refused.add_metric([route], n)
        yield refused
        yield CounterMetricFamily(
            "hub_http_posts_aborted", "POSTs whose client left mid-body", value=self.aborted
        )
        yield GaugeMetricFamily(
            "hub_http_posts_in_progress", "POSTs being handled now", value=self.in_progress
        )
        yield GaugeMetricFamily(
            "hub_http_posts_limit", "POSTs handled at once at most", value=self.limit
        )


GATE_KEY = web.AppKey("ingest_gate", IngestGate)


async def start_http(hub: Hub) -> tuple[web.AppRunner, str]:
    gate = IngestGate(hub.cfg.http.max_concurrent_ingest)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[gate.middleware])
    app[HUB_KEY] = hub
    app[GATE_KEY] = gate
    app.router.add_get("/", status_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/vessels", api_vessels)
    app.router.add_get("/api/zones", api_zones)
    app.router.add_post("/api/v1/ingest", ingest)
    app.router.add_post("/api/v1/alerts/{alert_id}/ack", ack)
    app.router.add_post("/api/v1/alerts/{alert_id}/feedback", alert_feedback)
    app.router.add_post("/api/v1/registry/{part}/{kind}", registry_update)
    for method, path, handler in hub.ctx.http_routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, hub.cfg.http.host, hub.cfg.http.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else hub.cfg.http.port
    return runner, f"http://{hub.cfg.http.host}:{port}/"


def _hub(request: web.Request) -> Hub:
    return request.app[HUB_KEY]  # type: ignore[return-value]


def _authorised(request: web.Request) -> bool:
    token = _hub(request).secrets.http_token
    if not token:
        return False
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    offered = offered or request.headers.get("X-Hub-Token", "")
    return hmac.compare_digest(offered.encode(), token.encode())


def _deny(request: web.Request) -> web.Response:
    if not _hub(request).secrets.http_token:
        return web.json_response({"error": "endpoint disabled: set http.token_env"}, status=403)
    return web.json_response({"error": "missing or wrong token"}, status=401)


async def healthz(request: web.Request) -> web.Response:
    st = _hub(request).status()
    refused = st.sink_refused
    ok = not st.dead_tasks and not refused
    body = {
        "status": "ok" if ok else "degraded",
        "dead_tasks": list(st.dead_tasks),
        "outbox_rows": st.outbox.rows,
        "sink_ok": st.sink.up if st.sink else None,
        "sink_refused": refused,
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    hub = _hub(request)
    body = render(hub.status(), hub.counters(), request.app[GATE_KEY])
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def status(hub: Hub, detail: bool = True) -> dict[str, Any]:
    """The status page's data. Without `detail` (no token): health and counts only."""
    st = hub.status()
    body = _health_status(hub, st)
    body["alert_counts"] = dict(Counter(a.severity for a in st.open_alerts))
    body["vessel_count"] = st.vessel_count
    body["detail"] = detail
    if detail:
        body["alerts"] = [a.payload() for a in st.open_alerts]
        body["vessels"] = _map_entries(hub, st.now_ns)
        _add_errors(st, body)
    return body


def stale_after_s(hub: Hub) -> float:
    """A vessel not heard for this long is drawn stale: the AIS gap rule's threshold."""
    return hub.cfg.rules.maritime.ais_gap.gap_minutes * 60


def _map_entries(hub: Hub, now_ns: int) -> list[dict[str, Any]]:
    """Vessels, base stations and SAR aircraft the map can place, each marked stale or not."""
    stale_ns = int(stale_after_s(hub) * 1e9)
    return [
        {**v.entry, "stale": now_ns - v.last_seen_ns > stale_ns}
        for v in hub.vessel_table(500).latest
        if v.has_fix
    ]


def _add_errors(st: HubStatus, body: dict[str, Any]) -> None:
    """Why a source or an alert destination is down: error texts are shown with the token only."""
    for source, shown in zip(st.sources, body["sources"], strict=True):
        shown["last_error"] = source.last_error
    for publisher, shown in zip(st.publishers, body["publishers"], strict=True):
        shown["last_error"] = publisher.last_error


def _health_status(hub: Hub, st: HubStatus) -> dict[str, Any]:
    sink, outbox = st.sink, st.outbox
    return {
        "site": st.site,
        "now": iso(st.now_ns),
        "utc_offset_hours": hub.cfg.hub.utc_offset_hours,
        "stale_after_s": stale_after_s(hub),
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                "connected": s.connected,
                "messages": s.messages,
                "errors": dict(s.errors),
                "restarts": s.restarts,
                "last_message": iso(s.last_message_ns or None),
            }
            for s in st.sources
        ],
        "outbox": {
            "rows": outbox.rows,
            "bytes": outbox.bytes,
            "dropped": outbox.dropped,
            "dead_letters": outbox.dead_letters,
            "alert_deliveries": outbox.deliveries,
        },
        "sink": {
            "api": st.sink_api,
            "ok": sink.up if sink else None,
            "lag_s": round(sink.lag_s, 1) if sink else None,
            "written": sink.written if sink else 0,
            "last_error": sink.last_error if sink else "",
            "refused": sink.refused if sink else "",
        },
        "publishers": [
            {"destination": p.destination, "connected": p.connected, "sent": p.sent}
            for p in st.publishers
        ],
    }


def _offered_token(request: web.Request) -> bool:
    return "Authorization" in request.headers or "X-Hub-Token" in request.headers


async def api_status(request: web.Request) -> web.Response:
    """Anyone may see health and counts; alerts and vessels need the token. A wrong token is
    a 401 (so the status page asks again), no token the summary."""
    if _authorised(request):
        return web.json_response(status(_hub(request), detail=True))
    if _offered_token(request):
        return _deny(request)
    return web.json_response(status(_hub(request), detail=False))


async def api_vessels(request: web.Request) -> web.Response:
    """The live vessel table (newest last); `?limit=N`, at most 20,000. Needs the token."""
    if not _authorised(request):
        return _deny(request)
    hub = _hub(request)
    try:
        limit = min(int(request.query.get("limit", "5000")), 20_000)
    except ValueError:
        return web.json_response({"error": "limit must be an integer"}, status=400)
    table = hub.vessel_table(limit)
    vessels = [dict(v.entry) for v in table.latest]
    return web.json_response({"count": table.count, "vessels": vessels})


async def api_zones(request: web.Request) -> web.Response:
    """The maritime zones as one GeoJSON FeatureCollection, for the status page's map. Only the
    properties the hub reads are kept (what a push may carry is scrubbed the same way)."""
    if not _authorised(request):
        return _deny(request)
    maritime = _hub(request).registry.parts.get("maritime")
    zones = maritime.zones if isinstance(maritime, MaritimeRegistry) else ()
    features = [
        {
            "type": "Feature",
            "properties": {"id": z.id, "kind": z.kind, "name": z.name, "grid": z.tags.grid},
            "geometry": mapping(z.geometry),
        }
        for z in zones
    ]
    return web.json_response({"type": "FeatureCollection", "features": features})


async def status_page(request: web.Request) -> web.Response:
    html = resources.files("hub").joinpath("static/status.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html")


async def ingest(request: web.Request) -> web.Response:
    """JSON lines (or one JSON array) of records; 200 only after they are in the outbox."""
    if not _authorised(request):
        return _deny(request)
    hub = _hub(request)
    body = await request.read()
    now_ns = hub.clock.now_ns()
    try:
        lines = _json_lines(body)
    except BodyTooLarge as exc:
        return web.json_response({"accepted": 0, "errors": [str(exc)]}, status=413)
    parsed = list(records_from_lines(lines, "http", now_ns))
    errors = [str(p) for p in parsed if isinstance(p, ProtocolError)]
    records = [p for p in parsed if not isinstance(p, ProtocolError)]
    if errors:
        return web.json_response({"accepted": 0, "errors": errors[:20]}, status=400)
    await hub.pipeline.publish(records)
    return web.json_response({"accepted": len(records)})


def _json_lines(body: bytes) -> list[bytes]:
    """The body's records as JSON lines. Parsed JSON takes up to ~30 times its size in memory,
    so one array is parsed whole only up to MAX_ARRAY_BYTES; JSON lines are parsed one by one."""
    stripped = body.strip()
    if stripped.startswith(b"["):
        if len(stripped) > MAX_ARRAY_BYTES:
            raise BodyTooLarge(f"a JSON array over {MAX_ARRAY_BYTES} bytes: send JSON lines")
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError):  # reported per line by records_from_lines
            return [stripped]
        if not isinstance(items, list):
            return [stripped]
        lines = [json.dumps(i).encode() for i in items[: MAX_RECORDS + 1]]
    else:
        lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) > MAX_RECORDS:
        raise BodyTooLarge(f"more than {MAX_RECORDS} records in one request")
    return lines


async def ack(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _deny(request)
    hub = _hub(request)
    by = request.query.get("by", "http")
    changed = await hub.acknowledge(request.match_info["alert_id"], by)
    return web.json_response({"acknowledged": changed}, status=200 if changed else 404)


_FEEDBACK_STATUS = {"recorded": 200, "duplicate": 200, "unknown": 404, "conflict": 409}


async def alert_feedback(request: web.Request) -> web.Response:
    """harbourgrid.feedback/1 for the alert in the path; the body is read only up to its limit."""
    if not _authorised(request):
        return _deny(request)
    hub = _hub(request)
    body = await request.content.read(MAX_FEEDBACK_BYTES + 1)
    try:
        feedback = parse_feedback(body, request.match_info["alert_id"])
    except ValueError as exc:
        hub.reject_feedback(request.path[:80], exc)
        return web.json_response({"error": str(exc)}, status=400)
    outcome = await hub.feedback(feedback)
    return web.json_response({"outcome": outcome}, status=_FEEDBACK_STATUS[outcome])


async def registry_update(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _deny(request)
    registry = _hub(request).registry
    part, kind = request.match_info["part"], request.match_info["kind"]
    try:
        body = await read_capped(request, registry.max_push_bytes)
        registry.apply_push(part, kind, body, via="http")
    except BodyTooLarge as exc:
        registry.rejected[("http", "too_large")] += 1
        return web.json_response({"error": str(exc)}, status=413)
    except PushTooLarge as exc:
        return web.json_response({"error": str(exc)}, status=413)
    except HubError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"applied": True})


class BodyTooLarge(HubError):
    """A request body over its limit; reading stopped at the limit."""


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The request body, refusing it as soon as it passes `limit` bytes (Content-Length or not),
    so a huge body never sits in memory whole."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"body of {request.content_length} bytes > {limit}")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
