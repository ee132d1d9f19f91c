"""Alerts reach a real webhook receiver (HMAC verified) and a real MQTT subscriber; acks flow back."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from aiohttp import web

from hub.records import VesselPosition
from tests.hubtest import config, running
from tests.services import InfluxDB, Mosquitto
from tests.util import free_port, wait_for

SECRET = "webhook-secret-xyz"


class Receiver:
    """The governance platform's webhook endpoint, verifying the hub's signature."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, object]] = []
        self.rejected = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers["X-Harbourgrid-Timestamp"]
        want = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if request.headers["X-Harbourgrid-Signature"] != f"sha256={want}":
            self.rejected += 1
            return web.Response(status=401)
        self.received.append(json.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_webhook_signed_and_buffered_through_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    receiver = Receiver()
    cfg = config(
        tmp_path,
        f"""
[webhook]
enabled = true
url = "http://127.0.0.1:{receiver.port}/alerts"
secret_env = "TEST_WEBHOOK_SECRET"
[alerts]
tick_s = 0.1
[[sources]]
type = "simulated_meters"
name = "quiet"
interval_s = 0.1
stop_after_s = 0.2
silent_timeout_s = 1.0
""",
    )
    async with running(cfg) as hub:  # receiver is down: the alert waits in the outbox
        await wait_for(lambda: hub.engine.alert_counts["open"] == 1, timeout=15)
        await wait_for(lambda: hub.publishers[0].errors > 0, timeout=15)
        assert hub.outbox.stats.deliveries == 1
        await receiver.start()
        try:
            await wait_for(lambda: receiver.received, timeout=30)
        finally:
            await receiver.stop()
    (alert,) = receiver.received
    assert receiver.rejected == 0
    assert alert["rule"] == "source_silent" and alert["state"] == "open"
    assert alert["site"] == "test-site"


async def test_acks_on_new_and_old_topic_publish_acknowledged_state(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    schema = json.loads(resources.files("hub").joinpath("schemas/alert.schema.json").read_text())
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
port = {mosquitto.port}
[influxdb]
api = "none"
[alerts]
tick_s = 0.1
[[sources]]
type = "simulated_meters"
name = "quiet"
interval_s = 0.1
stop_after_s = 0.2
silent_timeout_s = 1.0
[[sources]]
type = "simulated_meters"
name = "quiet2"
interval_s = 0.1
stop_after_s = 0.2
silent_timeout_s = 1.0
""",
        site="acksite",
    )
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
        await platform.subscribe("hub/acksite/alerts/+", qos=1)
        messages = platform.messages

        old_topic_seen = 0

        async def next_alert() -> dict[str, Any]:
            nonlocal old_topic_seen
            while True:
                message = await asyncio.wait_for(anext(messages), 20)
                if str(message.topic) == "hub/acksite/alerts/ack":
                    old_topic_seen += 1  # why acks moved: the old topic is in the alert tree
                    continue
                doc: dict[str, Any] = json.loads(message.payload)  # type: ignore[arg-type]
                jsonschema.validate(doc, schema)  # nothing else shows up among the alerts
                return doc

        async with running(cfg) as hub:
            opened = {doc["subject"]: doc for doc in [await next_alert(), await next_alert()]}
            assert {d["state"] for d in opened.values()} == {"open"}
            acks = [
                ("hub/acksite/acks", opened["source:quiet"], "worker-3"),
                ("hub/acksite/alerts/ack", opened["source:quiet2"], "worker-4"),  # old topic
            ]
            for topic, alert, by in acks:
                ack = {"schema": "harbourgrid.ack/1", "alert_id": alert["alert_id"], "by": by}
                await platform.publish(topic, json.dumps(ack), qos=1)
                acked = await next_alert()
                assert acked["state"] == "acknowledged" and acked["alert_id"] == alert["alert_id"]
                assert acked["acknowledged_by"] == by and acked["seq"] == 2
            await platform.publish("hub/acksite/acks", b"{not json", qos=1)
            await platform.publish("hub/acksite/acks", b'{"schema": "harbourgrid.ack/9"}', qos=1)
            await wait_for(lambda: hub.mqtt_errors == 2)  # counted, session survives
            assert hub.mqtt is not None and hub.mqtt.connected
            assert old_topic_seen == 1


def malformed_positions(n: int, start: int = 0, now_ns: int = 0) -> list[VesselPosition]:
    """n AIS positions whose MMSIs are not nine digits: each opens one invalid_mmsi alert."""
    now = now_ns or time.time_ns()
    return [
        VesselPosition(mmsi=f"{start + i:05d}", time_ns=now, lat=30.0, lon=122.0, msg_type=1)
        for i in range(n)
    ]


async def test_quiet_broker_outages_leave_one_publisher(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
port = {broker.port}
[influxdb]
api = "none"
""",
        site="outages",
    )
    try:
        async with running(cfg) as hub:
            mqtt = hub.mqtt
            assert mqtt is not None
            for _ in range(3):  # outages during which no alert is raised
                await wait_for(lambda: mqtt.connected, timeout=30)
                await asyncio.to_thread(broker.stop)
                await wait_for(lambda: not mqtt.connected, timeout=30)
                await asyncio.to_thread(broker.start)
            await wait_for(lambda: mqtt.connected, timeout=60)
            seen: Counter[tuple[str, int]] = Counter()
            async with aiomqtt.Client("127.0.0.1", broker.port) as platform:
                await platform.subscribe("hub/outages/alerts/+", qos=1)

                async def collect() -> None:
                    async for message in platform.messages:
                        doc = json.loads(message.payload)  # type: ignore[arg-type]
                        seen[(doc["alert_id"], doc["seq"])] += 1

                collector = asyncio.create_task(collect())
                await hub.pipeline.publish(malformed_positions(40))
                await wait_for(lambda: len(seen) == 40, timeout=60)
                await wait_for(lambda: hub.outbox.stats.deliveries == 0, timeout=30)
                # A sentinel published after the 40 were acknowledged: any stray second
                # publisher would have sent its copies before it.
                await hub.pipeline.publish(malformed_positions(1, start=99))
                await wait_for(lambda: len(seen) == 41, timeout=30)
                collector.cancel()
            assert sorted(seen.values()) == [1] * 41
            # The subscriber can see the sentinel before the hub has handled its PUBACK and
            # counted it as sent: wait for the hub's side before counting its publishes.
            await wait_for(lambda: mqtt.sent >= 41 and hub.outbox.stats.deliveries == 0, timeout=30)
            assert mqtt.sent == 41
    finally:
        await asyncio.to_thread(broker.stop)


async def test_alerts_raised_together_are_distinct_points_in_influxdb(
    influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database("alerts_points")
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
        site="points",
    )
    async with running(cfg) as hub:
        await hub.pipeline.publish(malformed_positions(10))  # one group commit, one `now`
        assert hub.engine.alert_counts["open"] == 10
        await wait_for(lambda: hub.outbox.stats.rows == 0, timeout=30)
    rows = db.query('SELECT "alert_id", "subject", "seq" FROM "alert"')
    assert len(rows) == 10
    assert len({r["alert_id"] for r in rows}) == 10
    assert sorted(r["subject"] for r in rows) == [f"mmsi:{i:05d}" for i in range(10)]


class FrozenClock:
    """The hub's time stands still (its waits are real): storm windows are per clock minute, and
    on a loaded machine the 50,000 reports may take several wall-clock minutes, which would
    roll the windows and make the counts depend on the machine's speed."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def now_ns(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.mark.timeout(600)  # 50,000 reports through every maritime rule on a loaded 2-core box
async def test_invalid_mmsi_storm_is_bounded(tmp_path: Path) -> None:
    """50,000 spoofed AIS reports, each with a new invalid MMSI, while the broker is down."""
    budget = 1024 * 1024
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
port = {free_port()}
[influxdb]
api = "none"
[outbox]
max_bytes = {budget}
[alerts]
storm_max_open = 50
storm_max_new_per_minute = 100
""",
        site="storm",
    )
    clock = FrozenClock()
    async with running(cfg, clock=clock) as hub:
        for start in range(0, 50_000, 1000):
            await hub.pipeline.publish(malformed_positions(1000, start=start, now_ns=clock.now))
        counts = hub.engine.alert_counts
        # 50 alerts of their own, then one alert_storm alert that folds all the others in.
        assert counts["open"] == 51
        assert hub.engine.alerts.folded == 50_000 - 50
        (storm,) = [a for a in hub.engine.alerts.open_alerts() if a.rule == "alert_storm"]
        assert storm.subject == "invalid_mmsi" and storm.data["folded"] >= 50_000 - 50
        assert len(storm.data["samples"]) == 10
        # Evicting the oldest vessels resolves some of the 50; the storm alert reports its
        # count at most once per storm_update_s (60 s of clock time, which stands still here).
        assert counts["resolved"] <= 50 and counts["updated"] <= 1
        stats = hub.outbox.stats
        assert stats.deliveries + stats.dropped_deliveries == sum(counts.values())
        assert stats.bytes + stats.delivery_bytes <= budget
        assert stats.dropped > 0  # readings made room, alert deliveries did not have to
        assert stats.dropped_deliveries == 0 and stats.dropped_alert_points == 0
        assert hub.engine.alerts.tracked() <= 51 + 50
        wal = (await hub.outbox.file_sizes())["wal"]  # between two transactions
    files = {p.name: p.stat().st_size for p in (tmp_path / "data").glob("outbox.sqlite*")}
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "outbox.sqlite")) as db:
        queued_pages = db.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN "
            "('points', 'points_kind', 'deliveries', 'deliveries_dest')"
        ).fetchone()[0]
        # The state as stored (each rule's header and its entries, one per vessel, with
        # their keys): what the file must hold besides the queue.
        state_bytes = db.execute(
            "SELECT (SELECT coalesce(sum(length(value)), 0) FROM rule_header) + "
            "(SELECT coalesce(sum(length(rule) + length(key) + length(value)), 0) "
            "FROM rule_entry) + (SELECT coalesce(sum(length(value)), 0) FROM alert_state)"
        ).fetchone()[0]
    print(f"budget {budget}, queue pages {queued_pages}, state {state_bytes}, WAL {wal}, {files}")
    assert queued_pages <= 1.5 * budget  # the queue's share of the file, row overhead included
    # README "What is bounded": the file holds at most 1.5 x the budget plus rule state, the
    # WAL between transactions at most wal_checkpoint_pages (here 100 pages).
    assert files["outbox.sqlite"] <= 1.5 * budget + 1.25 * state_bytes + 64 * 1024
    assert wal <= 100 * 4096
