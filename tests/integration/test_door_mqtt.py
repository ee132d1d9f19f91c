"""door_mqtt against a real mosquitto: events become DoorEvent records, acked only after commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import aiomqtt
import pytest

from drivers.door_mqtt import DoorMqttConfig, DoorMqttSource
from hub.clock import ManualClock
from hub.records import DoorEvent, Record
from hub.source import SourceContext, salted_hash
from sim.doors import SIM_MQTT_MAPPING, SimEvent, publish_mqtt
from tests.services import Mosquitto
from tests.util import wait_for

CARD = "13572468"


def _source(broker: Mosquitto, tmp_path: Path, name: str = "doors-mqtt") -> DoorMqttSource:
    ctx = SourceContext(
        site="t",
        clock=ManualClock(),
        data_dir=tmp_path,
        hash_salt="pepper",
        mqtt=SimpleNamespace(host=broker.host, port=broker.port, username="", password_env=""),
    )
    cfg = DoorMqttConfig.model_validate(
        {
            "type": "door_mqtt",
            "name": name,
            "topics": ["doors/+/events"],
            "mapping": SIM_MQTT_MAPPING,
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.5,
        }
    )
    source = cfg.build(ctx)
    assert isinstance(source, DoorMqttSource)
    return source


class Sink:
    def __init__(self, fail_first: int = 0) -> None:
        self.records: list[Record] = []
        self.fail_first = fail_first

    async def publish(self, records: Sequence[Record]) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("outbox commit failed")
        self.records.extend(records)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_events_over_mosquitto_become_door_events(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = _source(mosquitto, tmp_path)
    sink = Sink()
    task = asyncio.create_task(source.run(sink.publish))
    await wait_for(lambda: source.stats.connected)
    events = [
        SimEvent("D-3-2", "open", 1_767_225_000_000, card=CARD),
        SimEvent("D-3-2", "forced", 1_767_225_060_000),
        SimEvent("D-3-1", "denied", 1_767_225_120_000, card="99990"),
    ]
    await publish_mqtt(mosquitto.host, mosquitto.port, "doors", events)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish("doors/D-9/events", b"{not json", qos=1)
        await client.publish("doors/D-9/events", b'{"door": {"id": "D-9"}, "evt": "SMOKE"}', qos=1)
    await wait_for(lambda: source.stats.messages == 5)
    await _stop(task)
    got = [(r.door_id, r.event, r.time_ns) for r in sink.records if isinstance(r, DoorEvent)]
    assert got == [
        ("D-3-2", "open", 1_767_225_000_000_000_000),
        ("D-3-2", "forced", 1_767_225_060_000_000_000),
        ("D-3-1", "denied", 1_767_225_120_000_000_000),
    ]
    first = sink.records[0]
    assert isinstance(first, DoorEvent) and first.credential_hash == salted_hash("pepper", CARD)
    assert source.stats.errors["malformed"] == 1 and source.stats.errors["unmapped"] == 1
    assert source.stats.records == 3
    assert CARD not in caplog.text


async def test_unacked_event_is_redelivered_after_a_failed_commit(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    source = _source(mosquitto, tmp_path, name="doors-ack")
    failing = Sink(fail_first=1)
    task = asyncio.create_task(source.run(failing.publish))
    await wait_for(lambda: source.stats.connected)
    await publish_mqtt(
        mosquitto.host, mosquitto.port, "doors", [SimEvent("D-5", "held_open", 1_767_225_000_000)]
    )
    with pytest.raises(RuntimeError, match="outbox commit failed"):
        await asyncio.wait_for(task, timeout=10)
    # the supervisor restarts the source: the broker redelivers the event it never got a PUBACK for
    restarted = _source(mosquitto, tmp_path, name="doors-ack")
    sink = Sink()
    task = asyncio.create_task(restarted.run(sink.publish))
    await wait_for(lambda: sink.records, timeout=15)
    await _stop(task)
    assert [(r.door_id, r.event) for r in sink.records if isinstance(r, DoorEvent)] == [
        ("D-5", "held_open")
    ]


async def test_reconnects_after_broker_restart(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")  # our own broker: the shared one stays up
    broker.start()
    try:
        source = _source(broker, tmp_path, name="doors-reconnect")
        sink = Sink()
        task = asyncio.create_task(source.run(sink.publish))
        await wait_for(lambda: source.stats.connected)
        broker.stop()
        await wait_for(lambda: not source.stats.connected, timeout=15)
        broker.start()
        await wait_for(lambda: source.stats.connected, timeout=15)
        await publish_mqtt(
            broker.host, broker.port, "doors", [SimEvent("D-1", "open", 1_767_225_000_000)]
        )
        await wait_for(lambda: sink.records, timeout=10)
        await _stop(task)
        assert source.stats.errors["connect"] >= 1
        assert [r.door_id for r in sink.records if isinstance(r, DoorEvent)] == ["D-1"]
    finally:
        broker.stop()
