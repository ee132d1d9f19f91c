"""Nothing is lost: InfluxDB outages, SIGKILL of `hub run`, broker outages, refused points."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiomqtt

from hub.records import DoorEvent
from tests.hubtest import config, meter_readings, running
from tests.services import InfluxDB, Mosquitto
from tests.util import free_port, wait_for, wait_for_sync


async def test_influxdb_outage_every_record_arrives(tmp_path: Path) -> None:
    influx = InfluxDB(tmp_path / "influx")
    influx.start()
    try:
        cfg = config(
            tmp_path,
            f"""
[influxdb]
api = "v1"
url = "{influx.url}"
database = "{influx.db}"
batch_size = 50
flush_interval_s = 0.05
retry_initial_s = 0.05
retry_max_s = 0.5
""",
        )
        readings = meter_readings(600, time.time_ns() - 7200 * 10**9)
        async with running(cfg) as hub:
            assert hub.forwarder is not None
            await hub.pipeline.publish(readings[:200])
            assert await hub.forwarder.flush(30)
            influx.stop()
            for i in range(200, 600, 50):  # records keep flowing during the outage
                await hub.pipeline.publish(readings[i : i + 50])
            await wait_for(lambda: hub.forwarder.errors > 0, message="forwarder noticed the outage")  # type: ignore[union-attr]
            assert hub.outbox.stats.rows > 0
            influx.start()
            assert await hub.forwarder.flush(60)
        rows = influx.query("SELECT total_m3, meter_id FROM water_meter ORDER BY time")
        assert [(r["time"], r["meter_id"], r["total_m3"]) for r in rows] == [
            (r.time_ns, r.meter_id, r.total_m3) for r in readings
        ]
    finally:
        influx.stop()


async def test_refused_point_is_dead_lettered_and_the_rest_arrive(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    """A field-type conflict is refused by InfluxDB for good (HTTP 400): that one point goes to
    the dead-letter table, the rest of its batch is written, and nothing is retried forever."""
    db = influxdb.create_database("deadletter")
    t0 = time.time_ns() - 3600 * 10**9
    urllib.request.urlopen(
        urllib.request.Request(
            f"{db.url}/write?db={db.db}&precision=ns",
            f'water_meter,meter_id=X total_m3="text" {t0 - 10**9}'.encode(),
        )
    )
    cfg = config(
        tmp_path,
        f"""
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
batch_size = 100
flush_interval_s = 0.05
""",
    )
    readings = meter_readings(64, t0)
    doors = [
        DoorEvent(door_id=f"D-{i}", time_ns=t0 + i, event="open", source="test") for i in range(10)
    ]
    mixed = readings[:30] + doors + readings[30:]
    async with running(cfg) as hub:
        await hub.pipeline.publish(mixed)
        assert hub.forwarder is not None
        assert await hub.forwarder.flush(30)
        dead = await hub.outbox.dead_letter_rows()
    # Every float total_m3 conflicts with the string field already stored: all 64 refused.
    assert len(dead) == 64 and all(d[0] == "influxdb" for d in dead)
    assert "field type conflict" in dead[0][2]
    assert db.query("SELECT count(total_m3) FROM water_meter")[0]["count"] == 1  # the seed
    assert sorted(r["door_id"] for r in db.query("SELECT * FROM door_event")) == sorted(
        d.door_id for d in doors
    )


def _hub_process(cfg_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(cfg_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(cfg_path.parent / "hub.log", "ab"),
    )


def _post(url: str, token: str, lines: list[str]) -> bool:
    req = urllib.request.Request(
        url, "\n".join(lines).encode(), headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


class _Poster(threading.Thread):
    """Posts batches of 20 readings without pause; remembers which were acknowledged (200)."""

    def __init__(self, url: str, token: str, t0: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.t0 = url, token, t0
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.done.is_set():
            batch = list(range(seq, seq + 20))
            seq += 20
            lines = [
                json.dumps(
                    {
                        "measurement": "water_meter",
                        "meter_id": f"K-{i % 5}",
                        "total_m3": float(i),
                        "time_ns": self.t0 + i * 10**6,
                    }
                )
                for i in batch
            ]
            if _post(self.url, self.token, lines):
                with self.lock:
                    self.acked.extend(batch)

    def acknowledged(self) -> list[int]:
        with self.lock:
            return list(self.acked)


SIGKILLS = 4


def test_sigkill_while_records_flow_loses_no_acknowledged_record(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    """N seeded SIGKILLs at random moments while a client posts without pause: after each
    restart, every record acknowledged before the kill reaches InfluxDB."""
    db = influxdb.create_database("sigkill")
    port = free_port()
    cfg_path = tmp_path / "hub.toml"
    cfg_path.write_text(
        f"""
[hub]
site = "kill"
data_dir = "{tmp_path / "data"}"
[http]
port = {port}
token_env = "TEST_HUB_TOKEN"
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
batch_size = 200
flush_interval_s = 0.2
"""
    )
    token = "s3cret-token-123"
    env = {**os.environ, "TEST_HUB_TOKEN": token}
    rng = random.Random(int(os.environ.get("HUB_TEST_SEED", "20261202")))
    poster = _Poster(f"http://127.0.0.1:{port}/api/v1/ingest", token, time.time_ns() - 3600 * 10**9)

    def stored_values() -> set[int]:
        return {int(r["total_m3"]) for r in db.query("SELECT total_m3 FROM water_meter")}

    proc = _hub_process(cfg_path, env)
    try:
        wait_for_sync(lambda: _post(poster.url, token, []), timeout=120, message="hub up")
        poster.start()
        for kill in range(SIGKILLS):
            target = len(poster.acknowledged()) + rng.randint(60, 600)
            wait_for_sync(lambda n=target: len(poster.acknowledged()) >= n, timeout=120)
            proc.send_signal(signal.SIGKILL)  # posts are in flight: the poster never pauses
            proc.wait(10)
            acked_before_kill = set(poster.acknowledged())
            proc = _hub_process(cfg_path, env)
            wait_for_sync(lambda: _post(poster.url, token, []), timeout=120, message="hub back")
            wait_for_sync(
                lambda acked=acked_before_kill: acked <= stored_values(),
                timeout=120,
                message=f"records acknowledged before kill {kill + 1} in InfluxDB",
            )
        poster.done.set()
        poster.join(30)
        acked = set(poster.acknowledged())
        wait_for_sync(lambda: acked <= stored_values(), timeout=120, message="all acknowledged")
        log_text = (tmp_path / "hub.log").read_text()
        assert "Traceback" not in log_text
        assert log_text.count("hub started") == SIGKILLS + 1  # exactly N kills, N restarts
    finally:
        poster.done.set()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


async def test_alert_raised_while_broker_down_reaches_subscriber(tmp_path: Path) -> None:
    """The hub is connected; the broker goes away; a forced door is reported before the hub has
    noticed: the alert waits durably and reaches the platform's persistent session."""
    broker = Mosquitto(tmp_path / "mq", persistence=True)
    broker.start()
    try:
        cfg = config(
            tmp_path,
            f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker.port}
""",
        )
        sub = aiomqtt.Client("127.0.0.1", broker.port, identifier="platform", clean_session=False)
        async with sub:  # a persistent session: the broker queues QoS 1 messages while we are away
            await sub.subscribe("hub/test-site/alerts/#", qos=1)
        async with running(cfg) as hub:
            await wait_for(
                lambda: hub.mqtt is not None and hub.mqtt.connected, message="hub on MQTT"
            )
            broker.stop()
            forced = DoorEvent(
                door_id="D-7", time_ns=hub.clock.now_ns(), event="forced", source="test"
            )
            await hub.pipeline.publish([forced])
            await wait_for(
                lambda: hub.engine.alert_counts["open"] == 1, timeout=15, message="alert raised"
            )
            assert hub.outbox.stats.deliveries == 1  # queued durably, not lost
            broker.start()
            await wait_for(
                lambda: hub.outbox.stats.deliveries == 0, timeout=30, message="delivered"
            )
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="platform", clean_session=False
        ) as sub:
            message = await asyncio.wait_for(anext(sub.messages), 10)
        payload = json.loads(message.payload)  # type: ignore[arg-type]
        assert str(message.topic) == "hub/test-site/alerts/door_forced"
        assert payload["rule"] == "door_forced" and payload["state"] == "open"
        assert payload["data"]["door_id"] == "D-7"
    finally:
        broker.stop()
