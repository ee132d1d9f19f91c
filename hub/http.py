"""The hub's local HTTP server: health, metrics, status page, token-protected ingest and control."""

from __future__ import annotations

import hmac
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from hub.alerts import iso
from hub.errors import HubError, ProtocolError
from hub.feedback import MAX_FEEDBACK_BYTES, parse_feedback
from hub.ingest import records_from_lines
from hub.metrics import render

if TYPE_CHECKING:
    from hub.app import Hub

HUB_KEY = web.AppKey("hub", object)
MAX_BODY = 4 * 1024 * 1024


async def start_http(hub: Hub) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=MAX_BODY)
    app[HUB_KEY] = hub
    app.router.add_get("/", status_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/vessels", api_vessels)
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
    hub = _hub(request)
    dead = hub.dead_tasks()
    body = {
        "status": "ok" if not dead else "degraded",
        "dead_tasks": dead,
        "outbox_rows": hub.outbox.stats.rows,
        "sink_ok": hub.forwarder.healthy if hub.forwarder else None,
    }
    return web.json_response(body, status=200 if not dead else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=render(_hub(request)), content_type="text/plain", charset="utf-8")


def status(hub: Hub) -> dict[str, Any]:
    st = hub.outbox.stats
    fwd = hub.forwarder
    return {
        "site": hub.cfg.hub.site,
        "now": iso(hub.clock.now_ns()),
        "sources": [
            {
                "name": s.name,
                "kind": s.kind,
                "connected": s.stats.connected,
                "messages": s.stats.messages,
                "errors": dict(s.stats.errors),
                "restarts": s.stats.restarts,
                "last_message": iso(s.stats.last_message_ns or None),
            }
            for s in hub.sources
        ],
        "outbox": {
            "rows": st.rows,
            "bytes": st.bytes,
            "dropped": st.dropped,
            "dead_letters": st.dead_letters,
            "alert_deliveries": st.deliveries,
        },
        "sink": {
            "api": hub.cfg.influxdb.api,
            "ok": fwd.healthy if fwd else None,
            "lag_s": round(fwd.lag_s, 1) if fwd else None,
            "written": fwd.written if fwd else 0,
            "last_error": fwd.last_error if fwd else "",
        },
        "publishers": [
            {"destination": p.destination, "connected": p.connected, "sent": p.sent}
            for p in hub.publishers
        ],
        "alerts": [a.payload() for a in hub.engine.alerts.open_alerts()],
        "vessels": [v.to_json() for v in hub.vessels.latest(500) if v.position is not None],
    }


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(status(_hub(request)))


async def api_vessels(request: web.Request) -> web.Response:
    """The live vessel table (newest last); `?limit=N`, at most 20,000."""
    hub = _hub(request)
    try:
        limit = min(int(request.query.get("limit", "5000")), 20_000)
    except ValueError:
        return web.json_response({"error": "limit must be an integer"}, status=400)
    vessels = [v.to_json() for v in hub.vessels.latest(limit)]
    return web.json_response({"count": len(hub.vessels), "vessels": vessels})


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
    lines = _json_lines(body)
    parsed = list(records_from_lines(lines, "http", now_ns))
    errors = [str(p) for p in parsed if isinstance(p, ProtocolError)]
    records = [p for p in parsed if not isinstance(p, ProtocolError)]
    if errors:
        return web.json_response({"accepted": 0, "errors": errors[:20]}, status=400)
    await hub.pipeline.publish(records)
    return web.json_response({"accepted": len(records)})


def _json_lines(body: bytes) -> list[bytes]:
    stripped = body.strip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(stripped)
        except ValueError:
            return [stripped]
        return [json.dumps(i).encode() for i in items] if isinstance(items, list) else [stripped]
    return body.splitlines()


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
    hub = _hub(request)
    try:
        payload = await request.json()
        hub.registry.apply_update(request.match_info["part"], request.match_info["kind"], payload)
    except (ValueError, HubError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"applied": True})
