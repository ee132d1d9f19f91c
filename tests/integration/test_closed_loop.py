"""The closed loop against real mosquitto and InfluxDB 1.6: an ack over MQTT, the resolution and
feedback over MQTT and HTTP each land as an `alert_response` point with the right values."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from hub.feedback import MAX_FEEDBACK_BYTES
from hub.records import VesselPosition
from tests.hubtest import config, running
from tests.services import InfluxDB, Mosquitto
from tests.util import free_port, wait_for

NS = 1_000_000_000
TOKEN = "feedback-token-0123"


class SteppedClock:
    """Hub time that moves only when the test says so; sleeping still takes real time, so the
    hub's loops run at their usual pace while alert ages are exact."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = self.now = start_ns

    def now_ns(self) -> int:
        return self.now

    def at(self, seconds: int) -> None:
        self.now = self.start_ns + seconds * NS

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def feedback(alert_id: str | None, verdict: str, by: str, note_id: str = "") -> str:
    doc = {"schema": "harbourgrid.feedback/1", "alert_id": alert_id, "verdict": verdict, "by": by}
    if note_id:
        doc["note_id"] = note_id
    return json.dumps({k: v for k, v in doc.items() if v is not None})


@pytest.mark.timeout(120)
async def test_ack_resolve_and_feedback_become_alert_response_points(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("TEST_HTTP_TOKEN", TOKEN)
    db = influxdb.create_database("closed_loop")
    port = free_port()
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
port = {mosquitto.port}
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
flush_interval_s = 0.05
[alerts]
tick_s = 0.1
[rules.maritime.invalid_mmsi]
quiet_minutes = 10
""",
        site="loop",
    )
    cfg = cfg.model_copy(
        update={
            "http": cfg.http.model_copy(
                update={"enabled": True, "port": port, "token_env": "TEST_HTTP_TOKEN"}
            )
        }
    )
    clock = SteppedClock(time.time_ns() - 3600 * NS)
    base = f"http://127.0.0.1:{port}/api/v1/alerts"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port) as platform,
        running(cfg, clock=clock) as hub,
        aiohttp.ClientSession() as http,
    ):
        await platform.subscribe("hub/loop/alerts/+", qos=1)

        async def next_alert() -> dict[str, Any]:
            message = await asyncio.wait_for(anext(platform.messages), 20)
            return json.loads(message.payload)  # type: ignore[no-any-return,arg-type]

        positions = [
            VesselPosition(mmsi=m, time_ns=clock.now, lat=30.0, lon=122.0, msg_type=1)
            for m in ("00001", "00002", "00003")
        ]
        await hub.pipeline.publish(positions)
        opened = [await next_alert() for _ in positions]
        ids = {doc["subject"]: doc["alert_id"] for doc in opened}
        a, b, c = ids["mmsi:00001"], ids["mmsi:00002"], ids["mmsi:00003"]

        clock.at(120)
        ack = {"schema": "harbourgrid.ack/1", "alert_id": a, "by": "worker-17"}
        await platform.publish("hub/loop/acks", json.dumps(ack), qos=1)
        assert (await next_alert())["state"] == "acknowledged"

        clock.at(600)  # invalid_mmsi resolves after 10 quiet minutes, on the next tick
        resolved = {(await next_alert())["alert_id"] for _ in positions}
        assert resolved == {a, b, c}

        clock.at(700)
        mine = feedback(a, "false_alarm", "worker-17", "n-9")
        await platform.publish("hub/loop/feedback", mine, qos=1)
        for _ in range(20):  # a flood of bad feedback: counted, one log line
            await platform.publish("hub/loop/feedback", b"{not json", qos=1)
        await wait_for(lambda: hub.engine.feedback_counts["recorded"] == 1, timeout=20)
        async with http.post(f"{base}/{b}/feedback", data=feedback(None, "handled", "w-2")) as r:
            assert r.status == 401  # no token
        sent = [(b, feedback(None, "handled", "w-2")), (c, feedback(c, "false_alarm", "w-3"))]
        for alert_id, body in sent:
            async with http.post(f"{base}/{alert_id}/feedback", data=body, headers=auth) as r:
                assert r.status == 200 and (await r.json()) == {"outcome": "recorded"}
        async with http.post(
            f"{base}/{c}/feedback", data=feedback(c, "handled", "w-3"), headers=auth
        ) as r:
            assert r.status == 409  # the first verdict stands
        big = b"{" + b" " * MAX_FEEDBACK_BYTES + b"}"
        async with http.post(f"{base}/{c}/feedback", data=big, headers=auth) as r:
            assert r.status == 400
        await wait_for(lambda: hub.feedback_rejected["invalid"] == 21, timeout=20)
        logged = [r for r in caplog.records if r.getMessage().startswith("rejected feedback")]
        assert len(logged) <= 2  # the first, then at most one count per minute
        assert hub.feedback_rejected["conflict"] == 1
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            metrics = await r.text()
        assert 'hub_alert_false_alarms_total{rule="invalid_mmsi"} 2.0' in metrics
        assert 'hub_alert_feedback_rejected_total{reason="invalid"} 21.0' in metrics
        await wait_for(lambda: hub.outbox.stats.rows == 0, timeout=30)

    rows = db.query('SELECT * FROM "alert_response" GROUP BY "event"')
    by_event: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_event.setdefault(row["event"], []).append(row)
    t0 = clock.start_ns
    (acked,) = by_event["acknowledged"]
    assert (acked["alert_id"], acked["seconds_to_ack"], acked["acknowledged_by"]) == (
        a,
        120,
        "worker-17",
    )
    assert acked["time"] == t0 + 120 * NS and acked["rule"] == "invalid_mmsi"
    assert acked["site"] == "loop" and acked["subject"] == "mmsi:00001"
    resolutions = {r["alert_id"]: r for r in by_event["resolved"]}
    assert {k: r["seconds_to_resolve"] for k, r in resolutions.items()} == {a: 600, b: 600, c: 600}
    assert {k: r["resolved_unacknowledged"] for k, r in resolutions.items()} == {
        a: False,
        b: True,
        c: True,
    }
    assert resolutions[a]["acknowledged_by"] == "worker-17"
    verdicts = {
        r["alert_id"]: (r["feedback"], r["false_alarm"], r["feedback_by"])
        for r in by_event["feedback"]
    }
    assert verdicts == {
        a: ("false_alarm", 1, "worker-17"),
        b: ("handled", 0, "w-2"),
        c: ("false_alarm", 1, "w-3"),
    }
    per_rule = db.query('SELECT sum("false_alarm") FROM "alert_response" GROUP BY "rule"')
    assert [(r["rule"], r["sum"]) for r in per_rule] == [("invalid_mmsi", 2)]
