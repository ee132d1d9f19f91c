"""A misconfigured or absent InfluxDB 1.6 loses nothing, says so, and recovers (issue 9: 2-5, 11).

Every test runs a real Hub in-process against a real InfluxDB 1.6; "acknowledged" means
`Pipeline.publish` returned, i.e. the records are durable in the outbox.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest

from hub.app import Hub
from hub.cli import main
from hub.config import HubConfig, parse_config
from hub.records import DoorEvent
from tests.hubtest import running
from tests.services import InfluxDB, Service, VictoriaMetrics
from tests.util import wait_for

NS = 1_000_000_000


def hub_config(tmp_path: Path, influx: InfluxDB, database: str) -> HubConfig:
    text = f"""
[hub]
site = "sink-test"
data_dir = "{tmp_path / "data"}"
health_interval_s = 3600

[http]
port = 0

[alerts]
tick_s = 0.1

[influxdb]
api = "v1"
url = "{influx.url}"
database = "{database}"
batch_size = 100
flush_interval_s = 0.05
retry_initial_s = 0.05
retry_max_s = 0.3
"""
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return parse_config(text, path)


def door_events(n: int, start_ns: int) -> list[DoorEvent]:
    return [
        DoorEvent(door_id=f"D-{i % 20:02d}", time_ns=start_ns + i * NS, event="open", credential_hash=f"{i:08x}",
                  source="test")
        for i in range(n)
    ]  # fmt: skip


async def get(url: str) -> tuple[int, str]:
    """The hub's HTTP server shares this test's event loop: ask it asynchronously."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def metric(hub: Hub, name: str) -> float:
    _, text = await get(f"{hub.http_url.rstrip('/')}/metrics")
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def above(hub: Hub, lag_s: float) -> bool:
    return await metric(hub, "hub_forwarder_lag_seconds") > lag_s


async def equals(hub: Hub, name: str, value: float) -> bool:
    return await metric(hub, name) == value


def sink_alerts(hub: Hub) -> list[str]:
    return [a.state for a in hub.status().open_alerts if a.rule == "sink_refused"]


def count(db: InfluxDB, measurement: str, field: str) -> int:
    rows = db.query(f'SELECT count("{field}") FROM "{measurement}"')
    return int(rows[0]["count"]) if rows else 0


async def test_missing_database_keeps_all_1000_then_delivers(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    name = f"late_{uuid.uuid4().hex[:8]}"
    cfg = hub_config(tmp_path, influxdb, name)
    events = door_events(1000, time.time_ns() - 3600 * NS)
    async with running(cfg) as hub:
        for start in range(0, 1000, 100):
            await hub.pipeline.publish(events[start : start + 100])  # acknowledged
        await wait_for(lambda: hub.status().sink_refused, timeout=30)
        assert "database not found" in hub.status().sink_refused
        await wait_for(lambda: sink_alerts(hub) == ["open"], timeout=30)
        status, body = await get(f"{hub.http_url.rstrip('/')}/healthz")
        assert status == 503 and "database not found" in json.loads(body)["sink_refused"]
        _, page = await get(f"{hub.http_url.rstrip('/')}/api/status")
        assert "database not found" in json.loads(page)["sink"]["refused"]
        assert await metric(hub, 'hub_sink_refused{sink="influxdb"}') == 1.0
        assert await metric(hub, 'hub_sink_up{sink="influxdb"}') == 0.0
        first_lag = await metric(hub, "hub_forwarder_lag_seconds")
        await wait_for(lambda: above(hub, first_lag), timeout=30)
        outbox = hub.status().outbox
        assert outbox.dead_letters == 0 and outbox.rows >= 1000

        db = influxdb.create_database(name)  # the operator fixes the sink
        await wait_for(lambda: count(db, "door_event", "count") == 1000, timeout=60)
        await wait_for(lambda: not sink_alerts(hub), timeout=30)
        assert (await get(f"{hub.http_url.rstrip('/')}/healthz"))[0] == 200
        assert await metric(hub, 'hub_sink_up{sink="influxdb"}') == 1.0
        assert hub.status().outbox.dead_letters == 0
        # The alert points are committed after the 1000 events (the alert tick raised it once all
        # were in): wait for them to be forwarded before stopping (flush_timeout_s=0).
        query = "SELECT * FROM alert WHERE rule = 'sink_refused'"
        await wait_for(lambda: len(db.query(query)) >= 2, timeout=30)
    stored = {(r["door_id"], r["time"]) for r in db.query("SELECT * FROM door_event")}
    assert stored == {(e.door_id, e.time_ns) for e in events}
    alerts = db.query(query)
    assert {r["state"] for r in alerts} >= {"open", "resolved"}


async def test_lag_grows_during_a_real_outage(tmp_path: Path) -> None:
    influx = InfluxDB(tmp_path / "influx")
    influx.start()
    try:
        cfg = hub_config(tmp_path, influx, influx.db)
        start = time.time_ns() - 60 * NS
        async with running(cfg) as hub:
            await hub.pipeline.publish(door_events(50, start))
            await wait_for(lambda: count(influx, "door_event", "count") == 50, timeout=30)
            await wait_for(lambda: equals(hub, "hub_forwarder_lag_seconds", 0.0), timeout=30)
            influx.stop()
            await hub.pipeline.publish(door_events(50, start + 100 * NS))
            await wait_for(lambda: equals(hub, 'hub_sink_up{sink="influxdb"}', 0.0), timeout=30)
            lag = await metric(hub, "hub_forwarder_lag_seconds")
            await wait_for(lambda: above(hub, lag + 1), timeout=30)
            assert hub.status().sink_refused == ""  # down, not refusing
            influx.start()
            await wait_for(lambda: count(influx, "door_event", "count") == 100, timeout=60)
            await wait_for(lambda: equals(hub, "hub_forwarder_lag_seconds", 0.0), timeout=30)
            assert await metric(hub, 'hub_sink_up{sink="influxdb"}') == 1.0
    finally:
        influx.stop()


async def test_five_swipes_in_one_device_second_are_five_points(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database(f"swipes_{uuid.uuid4().hex[:8]}")
    second = (time.time_ns() // NS - 600) * NS
    swipes = [DoorEvent(door_id="D-7", time_ns=second, event="denied", credential_hash=h, source="test")
              for h in ("aa", "bb", "aa", "cc", "dd")]  # fmt: skip
    async with running(hub_config(tmp_path, influxdb, db.db)) as hub:
        await hub.pipeline.publish(swipes[:3])
        await hub.pipeline.publish(swipes[3:])  # another commit: still distinct
        await wait_for(lambda: count(db, "door_event", "count") == 5, timeout=30)
        await hub.pipeline.publish(swipes[:3])  # a redelivery overwrites, never doubles
        assert hub.forwarder is not None and await hub.forwarder.flush(30)
    rows = db.query("SELECT * FROM door_event")
    assert len(rows) == 5
    assert sorted(r["credential_hash"] for r in rows) == ["aa", "aa", "bb", "cc", "dd"]
    assert all(second <= r["time"] < second + NS // 1000 for r in rows)


async def test_dead_letters_requeued_after_the_fix_all_arrive(
    influxdb: InfluxDB, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A type conflict dead-letters points for real; once fixed, `hub dead-letters requeue`
    brings every one of them into InfluxDB."""
    db = influxdb.create_database(f"requeue_{uuid.uuid4().hex[:8]}")
    cfg = hub_config(tmp_path, influxdb, db.db)
    events = door_events(40, time.time_ns() - 3600 * NS)
    conflict = f'door_event,door_id=X count="one" {events[0].time_ns}'.encode()
    write = urllib.request.Request(f"{db.url}/write?db={db.db}", data=conflict, method="POST")
    urllib.request.urlopen(write, timeout=10)  # someone wrote `count` as a string (same shard)
    async with running(cfg) as hub:
        await hub.pipeline.publish(events)
        await wait_for(lambda: hub.status().outbox.dead_letters == 40, timeout=60)
        config = str(tmp_path / "hub.toml")
        assert main(["dead-letters", "list", "-c", config, "--destination", "influxdb"]) == 0
        listed = capsys.readouterr()
        assert listed.out.count("field type conflict") == 40 and "40 dead letter(s)" in listed.err
        db.raw_query('DROP MEASUREMENT "door_event"', db.db)  # the operator fixes the conflict
        assert main(["dead-letters", "requeue", "-c", config, "--since", "1h"]) == 0
        assert "requeued 40" in capsys.readouterr().out
        await wait_for(lambda: count(db, "door_event", "count") == 40, timeout=60)
    assert main(["dead-letters", "list", "-c", config]) == 0
    assert "0 dead letter(s)" in capsys.readouterr().err
    assert main(["dead-letters", "purge", "-c", config]) == 0
    assert "purged 0" in capsys.readouterr().out


def test_check_config_and_doctor_name_a_missing_database(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[http]\nenabled = false\n'
        f'[influxdb]\napi = "v1"\nurl = "{influxdb.url}"\ndatabase = "absent_db"\n'
    )
    check = subprocess.run(
        [sys.executable, "-m", "hub.cli", "check-config", str(config), "--connect"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 3
    assert f'InfluxDB at {influxdb.url} has no database "absent_db"' in check.stderr
    assert 'CREATE DATABASE "absent_db"' in check.stderr
    doctor = subprocess.run(
        [sys.executable, "-m", "hub.cli", "doctor", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert doctor.returncode == 1
    assert "FAIL  connection — InfluxDB at" in doctor.stdout and "absent_db" in doctor.stdout
    influxdb.create_database("absent_db")
    again = subprocess.run(
        [sys.executable, "-m", "hub.cli", "check-config", str(config), "--connect"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


def check_connect(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "check-config", str(config), "--connect"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


class AuthInfluxDB(InfluxDB):
    """InfluxDB 1.6 with `auth-enabled = true` and an admin user."""

    admin = ("admin", "admin-pw")

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        conf = self.workdir / "influx.conf"
        conf.write_text(
            conf.read_text().replace(
                "log-enabled = false", "log-enabled = false\n  auth-enabled = true"
            )
        )

    def start(self) -> None:
        Service.start(self)
        user, password = self.admin
        first = f"CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
        data = urllib.parse.urlencode({"q": first}).encode()  # no user exists yet: no credentials
        urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10).close()
        self.admin_query(f'CREATE DATABASE "{self.db}"')

    def admin_query(self, q: str) -> None:
        user, password = self.admin
        data = urllib.parse.urlencode({"q": q}).encode()
        auth = urllib.parse.urlencode({"u": user, "p": password})  # read from the URL only
        with urllib.request.urlopen(f"{self.url}/query?{auth}", data=data, timeout=10) as resp:
            assert resp.status == 200, resp.read()

    def admin_count(self, measurement: str) -> int:
        user, password = self.admin
        query = urllib.parse.urlencode(
            {"q": f'SELECT count("count") FROM "{measurement}"', "db": self.db, "u": user,
             "p": password}
        )  # fmt: skip
        with urllib.request.urlopen(f"{self.url}/query?{query}", timeout=10) as resp:
            result = json.loads(resp.read())["results"][0]
        series = result.get("series")
        return int(series[0]["values"][0][1]) if series else 0


async def test_unknown_user_keeps_rows_until_granted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotated password / missing grant (401, 403) keeps every row; check-config names it."""
    influx = AuthInfluxDB(tmp_path / "influx")
    influx.start()
    try:
        monkeypatch.setenv("HUB_INFLUX_PW", "writer-pw")
        text = tmp_path / "hub.toml"
        cfg = hub_config(tmp_path, influx, influx.db)
        text.write_text(
            text.read_text().replace(
                'database = "hub"',
                'database = "hub"\nusername = "writer"\npassword_env = "HUB_INFLUX_PW"',
            )
        )
        check = await asyncio.to_thread(check_connect, text)
        assert check.returncode == 3
        assert 'does not let user "writer" (password from $HUB_INFLUX_PW) write' in check.stderr
        assert "writer-pw" not in check.stderr + check.stdout
        cfg = parse_config(text.read_text(), text)
        events = door_events(300, time.time_ns() - 3600 * NS)
        async with running(cfg) as hub:
            await hub.pipeline.publish(events)
            await wait_for(lambda: "authorization failed" in hub.status().sink_refused, timeout=30)
            await wait_for(lambda: sink_alerts(hub) == ["open"], timeout=30)
            outbox = hub.status().outbox
            assert outbox.dead_letters == 0 and outbox.rows >= 300
            influx.admin_query("CREATE USER writer WITH PASSWORD 'writer-pw'")
            # 403 now: the user exists but may not write
            await wait_for(lambda: "not authorized" in hub.status().sink_refused, timeout=30)
            influx.admin_query(f'GRANT WRITE ON "{influx.db}" TO writer')
            await wait_for(lambda: influx.admin_count("door_event") == 300, timeout=60)
            await wait_for(lambda: not sink_alerts(hub), timeout=30)
            assert hub.status().outbox.dead_letters == 0
        again = await asyncio.to_thread(check_connect, text)
        assert again.returncode == 0, again.stderr
    finally:
        influx.stop()


def test_check_config_v2_zero_point_write(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    """The v2 check writes zero points to /api/v2/write (VictoriaMetrics speaks that API)."""
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[http]\nenabled = false\n'
        f'[influxdb]\napi = "v2"\nurl = "{victoria.url}"\norg = "o"\nbucket = "b"\n'
    )
    result = check_connect(config)
    assert result.returncode == 0, result.stderr
