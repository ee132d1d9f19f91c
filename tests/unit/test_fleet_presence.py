"""The status document, its last will, and the fleet table."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

import jsonschema

from hub.fleet.presence import (
    Identity,
    SourceState,
    format_table,
    gateway_row,
    iso,
    offline_will,
    online,
)

SCHEMA = json.loads(resources.files("hub").joinpath("schemas/status.schema.json").read_text())
IDENT = Identity(
    site="harbour-7",
    hub_id="a1b2c3d4e5f60718",
    version="0.1.0",
    started_at="2026-12-02T01:00:00Z",
    config_hash="0" * 64,
    status_interval_s=30.0,
)


def _online(now: float) -> dict[str, Any]:
    sources = [SourceState(name="ais", connected=True, messages=5, errors=1, restarts=0)]
    doc: dict[str, Any] = json.loads(online(IDENT, now, sources, 12, 3, {"dark_vessel": 2}, 4))
    return doc


def test_online_and_offline_documents_match_the_schema() -> None:
    doc = _online(time.time())
    jsonschema.validate(doc, SCHEMA)
    assert doc["open_alerts"] == {"dark_vessel": 2} and doc["dead_letters"] == 3
    will = json.loads(offline_will(IDENT, time.time()))
    jsonschema.validate(will, SCHEMA)
    assert will["state"] == "offline" and "sources" not in will


def test_schema_refuses_an_online_document_without_inventory() -> None:
    will = json.loads(offline_will(IDENT, time.time()))
    will["state"] = "online"
    try:
        jsonschema.validate(will, SCHEMA)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an online status without sources validated")


def test_table_marks_overdue_gateways_stale() -> None:
    now = time.time()
    fresh = gateway_row(_online(now - 10), now)
    late = gateway_row({**_online(now - 10), "site": "late", "updated_at": iso(now - 600)}, now)
    gone = gateway_row(json.loads(offline_will(IDENT, now - 600)) | {"site": "gone"}, now)
    assert (fresh.stale, late.stale, gone.stale) == (False, True, False)
    table = format_table([fresh, late, gone])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["SITE", "STATE"]
    assert "online (STALE)" in next(line for line in lines if line.startswith("late"))
    assert "offline" in next(line for line in lines if line.startswith("gone"))
    assert next(line for line in lines if line.startswith("harbour-7")).split()[-3:] == [
        "1/1",
        "12",
        "2",
    ]
