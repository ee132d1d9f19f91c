"""door_dahua_mqtt against a real mosquitto, fed the payloads DahuaVTO2MQTT publishes."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import aiomqtt

from drivers.door_dahua import DahuaMqttConfig, DahuaMqttSource
from hub.alerts import Alert
from hub.app import Hub
from hub.clock import ManualClock
from hub.config import parse_config
from hub.records import DoorEvent, Record
from hub.source import SourceContext
from tests.services import Mosquitto
from tests.util import wait_for

DATA = Path(__file__).parent.parent / "data" / "doors"


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def _messages() -> list[tuple[str, bytes]]:
    """(topic, payload) as the bridge published them: issue #29 log lines, README sample."""
    out = []
    for line in (DATA / "dahua_vto2mqtt_issue29.log").read_text().splitlines():
        found = re.search(r"Publishing MQTT message (\S+): (\{.*\})$", line)
        assert found
        out.append((found[1], json.dumps(ast.literal_eval(found[2])).encode()))
    readme = re.sub(
        r"//[^\n]*", "", (DATA / "dahua_vto2mqtt_mqttevents_accesscontrol.jsonc").read_text()
    )
    out.append(("DahuaVTO/AccessControl/Event", json.dumps(json.loads(readme)).encode()))
    return out


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


async def test_bridge_payloads_become_door_events(mosquitto: Mosquitto, tmp_path: Path) -> None:
    ctx = SourceContext(
        site="t",
        clock=ManualClock(_ns("2021-02-11T15:46:39")),
        data_dir=tmp_path,
        hash_salt="pepper",
        mqtt=SimpleNamespace(
            host=mosquitto.host, port=mosquitto.port, username="", password_env=""
        ),
        utc_offset_hours=1.0,
    )
    cfg = DahuaMqttConfig.model_validate(
        {
            "type": "door_dahua_mqtt",
            "name": "vto",
            "device": "vto2202f",
            "devices": {"Device Serial Number": "vto-lobby"},
            "max_clock_skew_s": 10 * 365 * 86_400,
            "reconnect_initial_s": 0.1,
        }
    )
    source = cfg.build(ctx)
    assert isinstance(source, DahuaMqttSource)
    sink = Sink()
    task = asyncio.create_task(source.run(sink.publish))
    try:
        await wait_for(lambda: source.stats.connected)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for topic, payload in _messages():
                await client.publish(topic, payload, qos=1)
            await client.publish("DahuaVTO/AccessControl/Event", b"{broken", qos=1)
            await client.publish("DahuaVTO/AlarmLocal/Event", b'{"Action": "Start"}', qos=1)
        await wait_for(lambda: source.stats.messages == 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    events = [r for r in sink.records if isinstance(r, DoorEvent)]
    assert [(e.door_id, e.event) for e in events] == [
        ("vto2202f-1", "open"),
        ("vto-lobby-1", "open"),
        ("vto2202f-1", "unknown"),
    ]
    assert events[0].time_ns == _ns("2021-02-11T15:46:38")
    assert events[1].time_ns == _ns("2020-03-02T18:24:08")
    assert all(e.credential_hash == "" and e.source == "vto" for e in events)
    assert source.stats.counts == {"ignored": 1, "unknown_code": 1}
    assert source.stats.errors["malformed"] == 1
    assert source.stats.records == 3


HUB_CONFIG = """
[hub]
site = "dahua-it"
data_dir = "{data}"
utc_offset_hours = 1
health_interval_s = 3600

[http]
enabled = false

[influxdb]
api = "none"

[mqtt]
host = "{host}"
port = {port}

[[sources]]
type = "door_dahua_mqtt"
name = "vto"
device = "vto2202f"
reconnect_initial_s = 0.1
"""


async def test_denials_and_break_in_raise_door_alerts_through_the_hub(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Derived from the issue #29 AccessControl payload: Status 0 (refused) five times with
    different cards, then a BreakIn; times are set to now so the rules see a live burst."""
    _, access = _messages()[1]
    template = json.loads(access)
    text = HUB_CONFIG.format(data=tmp_path / "data", host=mosquitto.host, port=mosquitto.port)
    (tmp_path / "hub.toml").write_text(text)
    hub = Hub(parse_config(text, tmp_path / "hub.toml"))
    alerts: list[Alert] = []
    hub.engine.listeners.append(alerts.append)
    await hub.start()
    try:
        source = next(s for s in hub.sources if isinstance(s, DahuaMqttSource))
        await wait_for(lambda: source.stats.connected)
        now_s = time.time()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for i in range(5):
                data = {**template["Data"], "Status": 0, "CardNo": f"0A{i:06d}", "RealUTC": now_s}
                await client.publish(
                    "DahuaVTO/AccessControl/Event", json.dumps({**template, "Data": data}), qos=1
                )
            breakin = {"Code": "BreakIn", "Action": "Start", "Index": 0, "Data": {"UTC": now_s}}
            await client.publish("DahuaVTO/BreakIn/Event", json.dumps(breakin), qos=1)
        await wait_for(
            lambda: {a.rule for a in alerts} >= {"door_forced", "door_denied_repeatedly"}
        )
    finally:
        await hub.stop(flush_timeout_s=0)
    denied = next(a for a in alerts if a.rule == "door_denied_repeatedly")
    assert denied.subject == "door:vto2202f-1"
    assert denied.data["distinct_credentials"] == 5
    forced = next(a for a in alerts if a.rule == "door_forced")
    assert (forced.subject, forced.severity) == ("door:vto2202f-1", "critical")
