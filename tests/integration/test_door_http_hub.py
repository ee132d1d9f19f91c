"""door_http mounted on the hub's real HTTP server: pushes become tagged records and door alerts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from drivers.sim_doors import post_http, scenario
from hub.alerts import Alert
from hub.app import Hub
from hub.config import parse_config
from tests.util import wait_for

REGISTRY = Path(__file__).parent.parent.parent / "deploy" / "registry"

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
