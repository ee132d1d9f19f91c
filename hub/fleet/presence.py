"""Presence: the retained `hub/{site}/status` document, its last will, and reading a fleet of them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUS_SCHEMA = "harbourgrid.status/1"


@dataclass(slots=True, frozen=True, kw_only=True)
class SourceState:
    name: str
    connected: bool
    messages: int
    errors: int
    restarts: int


@dataclass(slots=True, frozen=True, kw_only=True)
class Identity:
    """What the status and its last will share: fixed for one MQTT session."""

    site: str
    hub_id: str
    version: str
    started_at: str
    config_hash: str
    status_interval_s: float
    env_public_key: str = ""  # X25519, base64: what the platform seals new secrets to


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def config_hash(config_path: Path, extra_files: Iterable[Path] = ()) -> str:
    """sha256 over the config file and the registry files it names; the platform compares it."""
    digest = hashlib.sha256()
    for path in (config_path, *sorted(extra_files)):
        digest.update(os.fsencode(path.name) + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()


def online(
    ident: Identity,
    now: float,
    sources: Iterable[SourceState],
    outbox_rows: int,
    dead_letters: int,
    open_alerts: dict[str, int],
    config_version: int,
) -> bytes:
    doc: dict[str, Any] = {
        **_base(ident, "online", now),
        "config_version": config_version,
        "sources": [
            {
                "name": s.name,
                "state": "connected" if s.connected else "disconnected",
                "messages": s.messages,
                "errors": s.errors,
                "restarts": s.restarts,
            }
            for s in sources
        ],
        "outbox_rows": outbox_rows,
        "dead_letters": dead_letters,
        "open_alerts": dict(sorted(open_alerts.items())),
    }
    return json.dumps(doc).encode()


def offline_will(ident: Identity, now: float) -> bytes:
    """The last will: the broker publishes it, retained, when the session dies without a goodbye.

    It is built when the session starts, so its updated_at is that moment, not the death."""
    return json.dumps(_base(ident, "offline", now)).encode()


def _base(ident: Identity, state: str, now: float) -> dict[str, Any]:
    return {
        "schema": STATUS_SCHEMA,
        "state": state,
        "site": ident.site,
        "hub_id": ident.hub_id,
        "version": ident.version,
        "started_at": ident.started_at,
        "updated_at": iso(now),
        "status_interval_s": ident.status_interval_s,
        "config_hash": ident.config_hash,
        "env_public_key": ident.env_public_key,
    }


@dataclass(slots=True, frozen=True, kw_only=True)
class GatewayRow:
    site: str
    state: str
    stale: bool
    hub_id: str
    version: str
    updated_at: str
    age_s: float
    outbox_rows: int | None
    open_alerts: int | None
    sources: str


def gateway_row(doc: dict[str, Any], now: float, stale_factor: float = 2.5) -> GatewayRow:
    """One table row; an online gateway whose refresh is overdue is stale."""
    updated = str(doc.get("updated_at", ""))
    try:
        age = now - datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
    except ValueError:
        age = float("inf")
    interval = float(doc.get("status_interval_s") or 60.0)
    state = str(doc.get("state", "?"))
    sources = doc.get("sources") or []
    up = sum(1 for s in sources if isinstance(s, dict) and s.get("state") == "connected")
    alerts = doc.get("open_alerts")
    return GatewayRow(
        site=str(doc.get("site", "?")),
        state=state,
        stale=state == "online" and age > stale_factor * interval,
        hub_id=str(doc.get("hub_id", "")),
        version=str(doc.get("version", "")),
        updated_at=updated,
        age_s=age,
        outbox_rows=doc.get("outbox_rows") if state == "online" else None,
        open_alerts=sum(alerts.values()) if isinstance(alerts, dict) else None,
        sources=f"{up}/{len(sources)}" if state == "online" else "",
    )


def format_table(rows: list[GatewayRow]) -> str:
    header = ("SITE", "STATE", "VERSION", "HUB_ID", "UPDATED", "AGE", "SOURCES", "OUTBOX", "ALERTS")
    lines = [header]
    for r in sorted(rows, key=lambda r: r.site):
        state = f"{r.state} (STALE)" if r.stale else r.state
        age = "?" if r.age_s == float("inf") else f"{r.age_s:.0f}s"
        lines.append(
            (
                r.site,
                state,
                r.version,
                r.hub_id,
                r.updated_at,
                age,
                r.sources or "-",
                "-" if r.outbox_rows is None else str(r.outbox_rows),
                "-" if r.open_alerts is None else str(r.open_alerts),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
