"""Door-controller simulator: vendor events over MQTT (JSON) and ISAPI-style HTTP pushes."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import aiohttp
import aiomqtt

# The vendor JSON this simulator publishes over MQTT, and the mapping that reads it.
SIM_MQTT_MAPPING = {
    "door_id": "door.id",
    "event": "evt",
    "time": "ts",
    "credential": "card.no",
    "event_map": {
        "CARD_OK": "open",
        "CARD_REJECT": "denied",
        "DOOR_FORCED": "forced",
        "DOOR_HELD": "held_open",
        "TAMPER": "alarm",
        "EXIT_BUTTON": "open",
    },
}

# Vendor codes per normalised event (MQTT strings; HTTP uses HCNetSDK minor codes).
MQTT_CODES = {
    "open": "CARD_OK",
    "denied": "CARD_REJECT",
    "forced": "DOOR_FORCED",
    "held_open": "DOOR_HELD",
    "alarm": "TAMPER",
}
ISAPI_CODES = {"open": 1, "denied": 9, "forced": 27, "held_open": 28, "alarm": 1028}
ISAPI_MAC = "44:19:b6:00:00:01"

BodyForm = Literal["json", "xml", "multipart"]


@dataclass(slots=True, frozen=True)
class SimEvent:
    door: str  # door number on the controller (HTTP) or full door id (MQTT)
    event: str  # one of hub.records.DOOR_EVENTS
    time_ms: int
    card: str = ""


def mqtt_payload(event: SimEvent) -> bytes:
    body: dict[str, object] = {
        "door": {"id": event.door},
        "evt": MQTT_CODES[event.event],
        "ts": event.time_ms,
    }
    if event.card:
        body["card"] = {"no": event.card}
    return json.dumps(body).encode()


def _local_iso(time_ms: int) -> str:
    tz = timezone(timedelta(hours=8))
    return (
        datetime.fromtimestamp(time_ms / 1000, tz=UTC).astimezone(tz).isoformat(timespec="seconds")
    )


def isapi_json(event: SimEvent) -> bytes:
    return json.dumps(
        {
            "ipAddress": "127.0.0.1",
            "macAddress": ISAPI_MAC,
            "dateTime": _local_iso(event.time_ms),
            "eventType": "AccessControllerEvent",
            "eventState": "active",
            "AccessControllerEvent": {
                "majorEventType": 1 if event.event == "alarm" else 5,
                "subEventType": ISAPI_CODES[event.event],
                "doorNo": int(event.door),
                "cardNo": event.card,
            },
        }
    ).encode()


def isapi_xml(event: SimEvent) -> bytes:
    major = 1 if event.event == "alarm" else 5
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">'
        f"<ipAddress>127.0.0.1</ipAddress><macAddress>{ISAPI_MAC}</macAddress>"
        f"<dateTime>{_local_iso(event.time_ms)}</dateTime>"
        "<eventType>AccessControllerEvent</eventType><eventState>active</eventState>"
        f"<AccessControllerEvent><majorEventType>{major}</majorEventType>"
        f"<subEventType>{ISAPI_CODES[event.event]}</subEventType>"
        f"<doorNo>{int(event.door)}</doorNo><cardNo>{event.card}</cardNo>"
        "</AccessControllerEvent></EventNotificationAlert>"
    ).encode()


def isapi_multipart(
    event: SimEvent, picture: bytes = b"\xff\xd8\xff\xe0fakejpeg\xff\xd9"
) -> tuple[bytes, str]:
    """A multipart/form-data push: the JSON event part plus a snapshot, as controllers send."""
    boundary = uuid.uuid4().hex
    parts = [
        (b'name="AccessControllerEvent"', b"application/json", isapi_json(event)),
        (b'name="Picture"; filename="snap.jpg"', b"image/jpeg", picture),
    ]
    chunks = []
    for disposition, kind, content in parts:
        chunks.append(
            b"--"
            + boundary.encode()
            + b"\r\nContent-Disposition: form-data; "
            + disposition
            + b"\r\nContent-Type: "
            + kind
            + b"\r\n\r\n"
            + content
            + b"\r\n"
        )
    chunks.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def isapi_body(event: SimEvent, form: BodyForm) -> tuple[bytes, str]:
    if form == "xml":
        return isapi_xml(event), "application/xml"
    if form == "multipart":
        return isapi_multipart(event)
    return isapi_json(event), "application/json"


async def publish_mqtt(
    host: str, port: int, topic_prefix: str, events: Sequence[SimEvent], qos: int = 1
) -> None:
    """Publish events on `<topic_prefix>/<door>/events`, QoS 1 by default."""
    async with aiomqtt.Client(host, port, identifier=f"sim-doors-{uuid.uuid4().hex[:8]}") as client:
        for event in events:
            await client.publish(
                f"{topic_prefix}/{event.door}/events", mqtt_payload(event), qos=qos
            )


async def post_http(
    url: str, token: str, events: Sequence[SimEvent], form: BodyForm = "json"
) -> list[int]:
    """POST each event to the hub's ingest URL; returns the HTTP statuses."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for event in events:
            body, content_type = isapi_body(event, form)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
            async with session.post(url, data=body, headers=headers) as response:
                statuses.append(response.status)
    return statuses


def scenario(door: str, start_ms: int, step_ms: int = 60_000) -> list[SimEvent]:
    """A short building story: two normal entries, a forced door, a held door, 5 bad cards."""
    kinds = ["open", "open", "forced", "held_open"] + ["denied"] * 5
    cards = ["10001", "10002", "", "", "99990", "99991", "99992", "99993", "99994"]
    return [
        SimEvent(door, kind, start_ms + i * step_ms, card)
        for i, (kind, card) in enumerate(zip(kinds, cards, strict=True))
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mqtt", help="host:port of the broker")
    parser.add_argument("--topic-prefix", default="doors")
    parser.add_argument(
        "--http", help="ingest URL, e.g. http://127.0.0.1:8080/ingest/doors/doors-http"
    )
    parser.add_argument("--token", default="")
    parser.add_argument("--form", choices=["json", "xml", "multipart"], default="json")
    parser.add_argument("--door", default="1")
    args = parser.parse_args(argv)
    now_ms = int(datetime.now(tz=UTC).timestamp() * 1000)
    events = scenario(args.door, now_ms)
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        asyncio.run(publish_mqtt(host or "127.0.0.1", int(port), args.topic_prefix, events))
    if args.http:
        print(asyncio.run(post_http(args.http, args.token, events, args.form)))


if __name__ == "__main__":
    main()
