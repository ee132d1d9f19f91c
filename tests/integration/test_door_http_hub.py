"""door_http mounted on the hub's real HTTP server: pushes become tagged records and door alerts."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.alerts import Alert
from hub.app import Hub
from hub.config import parse_config
from sim.doors import post_http, scenario
from tests.hubtest import running
from tests.services import InfluxDB
from tests.util import wait_for

REGISTRY = Path(__file__).parent.parent.parent / "deploy" / "registry"
K1T502 = Path(__file__).parent.parent / "data" / "doors" / "hikvision_ds-k1t502_lock_open.json"

CONFIG = """
[hub]
site = "door-it"
data_dir = "var"

[http]
port = 0

[influxdb]
api = "none"

[registry.community]
households_csv = "households.csv"
meters_csv = "meters.csv"
doors_csv = "doors.csv"

[rules.community]
routing = { "G-05-1" = "worker-5-1" }

[[sources]]
type = "door_http"
name = "gate"
token_env = "IT_DOOR_TOKEN"
"""


async def test_pushed_events_raise_routed_door_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_DOOR_TOKEN", "it-token")
    for kind in ("households", "meters", "doors"):
        shutil.copy(REGISTRY / f"{kind}.example.csv", tmp_path / f"{kind}.csv")
    (tmp_path / "hub.toml").write_text(CONFIG)
    hub = Hub(parse_config(CONFIG, tmp_path / "hub.toml"))
    alerts: list[Alert] = []
    hub.engine.listeners.append(alerts.append)
    await hub.start()
    try:
        url = hub.http_url.rstrip("/") + "/ingest/doors/gate"
        events = scenario("1", int(time.time() * 1000))
        assert await post_http(url, "it-token", events, "multipart") == [200] * len(events)
        assert await post_http(url, "wrong", events[:1]) == [401]
        await wait_for(
            lambda: (
                {a.rule for a in alerts}
                >= {"door_forced", "door_held_open", "door_denied_repeatedly"}
            )
        )
    finally:
        await hub.stop()
    forced = next(a for a in alerts if a.rule == "door_forced")
    assert forced.subject == "door:44:19:b6:00:00:01-1"
    assert (forced.grid.grid, forced.grid.micro_grid, forced.grid.police_grid) == (
        "G-05",
        "G-05-1",
        "PG-08",
    )
    assert forced.data["recipients"] == ["worker-5-1"]
    assert forced.data["building"] == "5"


def _k1t502(ip: str, major: int, minor: int, door: bool = True) -> bytes:
    """The real DS-K1T502 push (no MAC) from another IP and with other codes."""
    document: dict[str, Any] = json.loads(K1T502.read_text())
    document["ipAddress"] = ip
    document["AccessControllerEvent"].update(majorEventType=major, subEventType=minor)
    if not door:
        del document["AccessControllerEvent"]["doorNo"]
    return json.dumps(document).encode()


async def test_hikvision_codes_on_a_real_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2/0x404 and 3/0x404 stay quiet, 1/0x404 is critical, five face failures are repeated
    denials, an unknown code is stored and counted: all 200, none a source error."""
    monkeypatch.setenv("IT_DOOR_TOKEN", "it-token")
    for kind in ("households", "meters", "doors"):
        shutil.copy(REGISTRY / f"{kind}.example.csv", tmp_path / f"{kind}.csv")
    (tmp_path / "hub.toml").write_text(CONFIG)
    hub = Hub(parse_config(CONFIG, tmp_path / "hub.toml"))
    alerts: list[Alert] = []
    hub.engine.listeners.append(alerts.append)
    await hub.start()
    try:
        url = hub.http_url.rstrip("/") + "/ingest/doors/gate"
        bodies = [
            _k1t502("10.0.0.21", 2, 0x404, door=False),  # battery resumed
            _k1t502("10.0.0.21", 3, 0x404, door=False),  # remote time sync
            _k1t502("10.0.0.21", 2, 0x406, door=False),  # mains restored
            *[_k1t502("10.0.0.22", 5, 76) for _ in range(5)],  # face verification failed
            _k1t502("10.0.0.22", 5, 4321),  # a code no table knows
            _k1t502("10.0.0.23", 1, 0x404, door=False),  # host tamper
        ]
        headers = {"Authorization": "Bearer it-token", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for body in bodies:
                async with session.post(url, data=body) as resp:
                    assert resp.status == 200, await resp.text()
            await wait_for(
                lambda: {a.rule for a in alerts} >= {"door_forced", "door_denied_repeatedly"}
            )
            async with session.get(hub.http_url.rstrip("/") + "/metrics") as resp:
                metrics = await resp.text()
    finally:
        await hub.stop()
    assert {a.subject for a in alerts if a.rule == "door_forced"} == {"door:10.0.0.23"}
    denied = next(a for a in alerts if a.rule == "door_denied_repeatedly")
    assert (denied.subject, denied.data["denied"]) == ("door:10.0.0.22-1", 5)
    assert 'hub_source_inputs_total{kind="ignored_code",source="gate"} 3.0' in metrics
    assert 'hub_source_inputs_total{kind="unknown_code",source="gate"} 1.0' in metrics
    assert hub.sources[0].stats.errors == {}


async def test_unknown_and_failed_verifications_reach_influxdb_with_raw_codes(
    influxdb: InfluxDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IT_DOOR_TOKEN", "it-token")
    db = influxdb.create_database(f"doors_hik_{uuid.uuid4().hex[:8]}")
    text = f"""
[hub]
site = "door-hik"
data_dir = "var"

[http]
port = 0

[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
flush_interval_s = 0.05

[[sources]]
type = "door_http"
name = "gate"
token_env = "IT_DOOR_TOKEN"
door_ids = {{ "10.0.0.31-1" = "D-3-1" }}
"""
    (tmp_path / "hub.toml").write_text(text)
    async with running(parse_config(text, tmp_path / "hub.toml")) as hub:
        url = hub.http_url.rstrip("/") + "/ingest/doors/gate"
        headers = {"Authorization": "Bearer it-token", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for body in (
                _k1t502("10.0.0.31", 5, 4321),
                _k1t502("10.0.0.31", 5, 39),
                _k1t502("10.0.0.31", 2, 0x404, door=False),
            ):
                async with session.post(url, data=body) as resp:
                    assert resp.status == 200

        async def stored() -> bool:  # the query runs in a thread: the hub shares this loop
            return len(await asyncio.to_thread(db.query, "SELECT * FROM door_event")) == 2

        await wait_for(stored, timeout=15, message="two door events in InfluxDB")
    rows = sorted(db.query("SELECT * FROM door_event"), key=lambda r: r["vendor_minor"])
    assert [(r["door_id"], r["event"], r["vendor_major"], r["vendor_minor"]) for r in rows] == [
        ("D-3-1", "denied", 5, 39),
        ("D-3-1", "unknown", 5, 4321),
    ]
