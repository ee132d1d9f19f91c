"""Door controllers publishing JSON events over MQTT: subscribe (QoS 1), map, ack after commit."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from asyncio import FIRST_COMPLETED
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from pydantic import Field

from drivers.door_common import DoorMapping, ErrorNotes, decode_json, error_kind, map_object
from hub.errors import ConfigError, ProtocolError
from hub.records import DoorEvent
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger("drivers.door_mqtt")

IN_FLIGHT = 64  # events handed to the hub and not yet durable, per session


class DoorMqttConfig(SourceConfig):
    type: Literal["door_mqtt"] = "door_mqtt"
    topics: list[str] = Field(default_factory=lambda: ["doors/+/events"], min_length=1)
    mapping: DoorMapping = DoorMapping()
    # Broker: the hub's MQTT settings unless overridden here.
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password_env: str = ""
    tls: bool | None = None
    ca_file: Path | None = None
    # Persistent session id: QoS 1 events published while the hub is away are kept for it.
    client_id: str = ""
    keepalive_s: int = Field(default=30, ge=5)
    reconnect_initial_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)

    def build(self, ctx: SourceContext) -> Source:
        return DoorMqttSource(self, broker_settings(self, ctx), ctx)


@dataclass(slots=True, frozen=True, kw_only=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: Path | None
    cert_file: Path | None = None
    key_file: Path | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None
            )
        return context


def broker_settings(cfg: DoorMqttConfig, ctx: SourceContext) -> Broker:
    """Merge the source's overrides over the hub's MQTT section (`ctx.mqtt`)."""
    hub: Any = ctx.mqtt
    password = _password(cfg.password_env) if cfg.password_env else _hub_password(hub)
    return Broker(
        host=cfg.host or getattr(hub, "host", None) or "127.0.0.1",
        port=cfg.port or getattr(hub, "port", None) or 1883,
        username=cfg.username
        if cfg.username is not None
        else getattr(hub, "username", None) or None,
        password=password,
        tls=cfg.tls if cfg.tls is not None else bool(getattr(hub, "tls", False)),
        ca_file=cfg.ca_file or getattr(hub, "ca_file", None),
        cert_file=getattr(hub, "cert_file", None) if cfg.host is None else None,
        key_file=getattr(hub, "key_file", None) if cfg.host is None else None,
    )


def _hub_password(hub: Any) -> str | None:
    password = getattr(hub, "password", None)
    if password is not None:
        secret = getattr(password, "get_secret_value", None)
        return str(secret() if secret else password) or None
    env_name = getattr(hub, "password_env", "")
    return _password(env_name) if env_name else None


def _password(env_name: str) -> str:
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"door_mqtt: environment variable {env_name} is not set")
    if not value.strip():
        raise ConfigError(f"door_mqtt: environment variable {env_name} is empty")
    return value


@dataclass(slots=True, kw_only=True)
class _Window:
    """Messages handed to the hub and not yet acknowledged, oldest first."""

    pending: deque[tuple[asyncio.Task[None], aiomqtt.Message]] = field(default_factory=deque)
    added: asyncio.Event = field(default_factory=asyncio.Event)
    room: asyncio.Event = field(default_factory=asyncio.Event)


class DoorMqttSource(Source):
    kind = "door_mqtt"

    def __init__(self, cfg: DoorMqttConfig, broker: Broker, ctx: SourceContext) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.broker = broker
        self.clock = ctx.clock
        self.salt = ctx.hash_salt
        self.client_id = cfg.client_id or f"hub-{ctx.site}-{cfg.name}"[:64]
        self.notes = ErrorNotes(log, cfg.name, self.stats)
        self.ignored = 0

    async def run(self, publish: Publish) -> None:
        delay_s = self.cfg.reconnect_initial_s
        while True:
            try:
                await self._session(publish)
            except aiomqtt.MqttError as exc:
                if self.stats.connected:
                    log.warning("%s: broker connection lost (%s); reconnecting", self.name, exc)
                elif self.stats.errors["connect"] == 0:
                    log.warning("%s: cannot reach broker (%s); retrying", self.name, exc)
                self.stats.connected = False
                self.stats.error("connect")
                self.stats.last_error = f"broker: {exc}"[:200]
            else:
                delay_s = self.cfg.reconnect_initial_s
            await asyncio.sleep(delay_s * random.uniform(0.8, 1.2))
            delay_s = min(delay_s * 2, self.cfg.reconnect_max_s)

    async def _session(self, publish: Publish) -> None:
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            clean_session=False,
            keepalive=self.cfg.keepalive_s,
            tls_context=self.broker.tls_context(),
        )
        # PUBACK only after the durable commit: paho's manual-ack mode, reached through aiomqtt's
        # underlying client because aiomqtt 2.x does not expose it. Unacked QoS 1 messages are
        # redelivered by the broker after a reconnect (persistent session, clean_session=False).
        client._client.manual_ack_set(True)
        async with client:
            for topic in self.cfg.topics:
                await client.subscribe(topic, qos=1)
            self.stats.connected = True
            log.info("%s: subscribed to %s", self.name, ", ".join(self.cfg.topics))
            await self._consume(client, publish)

    async def _consume(self, client: aiomqtt.Client, publish: Publish) -> None:
        """Up to IN_FLIGHT events are handed to the hub at once (they share a group commit
        instead of each waiting for the one before); each is acknowledged once durable, in
        the order received (MQTT 3.1.1 §4.6). A failed commit ends the session unacknowledged
        from that message on: the broker redelivers it and all after it."""
        window = _Window()
        reader = asyncio.create_task(self._read(client, publish, window))
        acker = asyncio.create_task(self._ack_in_order(client, window))
        try:
            done, _ = await asyncio.wait([reader, acker], return_when=FIRST_COMPLETED)
        finally:
            reader.cancel()
            acker.cancel()
            for task, _message in window.pending:
                task.cancel()
            handlers = [task for task, _message in window.pending]
            await asyncio.gather(reader, acker, *handlers, return_exceptions=True)
        for task in done:
            task.result()  # the broker's error, or the failed commit, that ended the session

    async def _read(self, client: aiomqtt.Client, publish: Publish, window: _Window) -> None:
        async for message in client.messages:
            while len(window.pending) >= IN_FLIGHT:
                window.room.clear()
                await window.room.wait()
            window.pending.append((asyncio.create_task(self._handle(message, publish)), message))
            window.added.set()

    async def _ack_in_order(self, client: aiomqtt.Client, window: _Window) -> None:
        while True:
            while not window.pending:
                window.added.clear()
                await window.added.wait()
            task, message = window.pending[0]
            await task
            window.pending.popleft()
            window.room.set()
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)

    async def _handle(self, message: aiomqtt.Message, publish: Publish) -> None:
        now_ns = self.clock.now_ns()
        self.stats.messages += 1
        self.stats.last_message_ns = now_ns
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode() if payload is not None else b""
        try:
            events = self.map_message(message.topic.value, bytes(payload), now_ns)
        except ProtocolError as exc:
            self.notes.note(error_kind(exc), f"topic {message.topic.value}: {exc}")
            return
        if events:
            await publish(events)
            self.stats.records += len(events)

    def map_message(self, topic: str, payload: bytes, now_ns: int) -> list[DoorEvent]:
        """One message to door events ([] if ignored); vendor sources override this."""
        document = decode_json(payload)
        if self.cfg.mapping.ignores(document):
            self.ignored += 1
            return []
        return [map_object(document, self.cfg.mapping, self.salt, self.name, now_ns)]
