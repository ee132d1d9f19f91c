"""Rule state is committed with the alerts it caused: a SIGKILL right after an alert opened
does not leave that alert open forever after the restart."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.util import free_port, wait_for_sync


def _hub_process(cfg_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(cfg_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(cfg_path.parent / "hub.log", "ab"),
    )


def _open_alerts(base: str, token: str) -> list[dict[str, Any]] | None:
    req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            alerts: list[dict[str, Any]] = json.load(resp)["alerts"]
            return alerts
    except OSError:
        return None


def _door_alert_states(store: Path) -> list[str]:
    """The `state` field of every door_forced alert point written to the local store."""
    if not store.exists():
        return []
    db = sqlite3.connect(store)
    try:
        rows = db.execute("SELECT line FROM points WHERE measurement='alert' ORDER BY time_ns")
        lines = [r[0] for r in rows if "rule=door_forced" in r[0]]
    finally:
        db.close()
    return [re.search(r'state="(\w+)"', line).group(1) for line in lines]  # type: ignore[union-attr]


def _post(base: str, token: str, docs: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(d) for d in docs).encode()
    req = urllib.request.Request(
        f"{base}/api/v1/ingest", body, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_forced_door_alert_killed_after_opening_resolves_after_restart(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg_path = tmp_path / "hub.toml"
    cfg_path.write_text(
        f"""
[hub]
site = "kill"
data_dir = "{tmp_path / "data"}"
health_interval_s = 3600
[http]
port = {port}
token_env = "TEST_HUB_TOKEN"
[influxdb]
api = "local"
flush_interval_s = 0.1
[alerts]
tick_s = 0.2
[rules.community.door_forced]
resolve_minutes = 0.05
"""
    )
    token = "s3cret-token-123"
    env = {**os.environ, "TEST_HUB_TOKEN": token}
    proc = _hub_process(cfg_path, env)
    try:
        wait_for_sync(lambda: _open_alerts(base, token) is not None, timeout=30, message="hub up")
        door = {
            "measurement": "door_event",
            "door_id": "D-9",
            "event": "forced",
            "time_ns": time.time_ns(),
        }
        _post(base, token, [door])
        wait_for_sync(lambda: _open_alerts(base, token), timeout=30, message="alert open")
        proc.send_signal(signal.SIGKILL)  # well inside the 5 s a periodic snapshot would need
        proc.wait(10)

        proc = _hub_process(cfg_path, env)
        wait_for_sync(lambda: _open_alerts(base, token) is not None, timeout=30, message="hub back")
        store = tmp_path / "data" / "store.sqlite"
        wait_for_sync(
            # a point sent just before the kill may be sent again (at least once): same line
            lambda: list(dict.fromkeys(_door_alert_states(store))) == ["open", "resolved"],
            timeout=60,
            message="the forced-door alert resolved after the restart",
        )
        assert _open_alerts(base, token) == []
        log_text = (tmp_path / "hub.log").read_text()
        assert "Traceback" not in log_text
        assert log_text.count("hub started") == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
