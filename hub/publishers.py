"""Alert delivery from the durable alert outbox: MQTT QoS 1 and an HMAC-signed webhook.

A delivery row is deleted only after the broker's PUBACK or the webhook's 2xx, so alerts raised
while the broker or the platform is down are delivered, in order, when it returns — also across
restarts. The MQTT link also receives alert acknowledgements (hub/{site}/acks), feedback
(hub/{site}/feedback) and registry
pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiomqtt

from hub.backoff import Backoff
from hub.clock import Clock
from hub.config import MqttSection, WebhookSection
from hub.errors import SinkError, SinkRejected
from hub.fleet.control import FleetControl
from hub.outbox import Outbox
from hub.sinks import classify

log = logging.getLogger("hub.publishers")

MessageHandler = Callable[[str, bytes], Awaitable[None]]


class DeliveryLoop:
    """Shared loop: take the oldest delivery for one destination, send it, ack it."""

    destination = ""

    def __init__(self, *, outbox: Outbox, clock: Clock) -> None:
        self.outbox = outbox
        self.clock = clock
        self.sent = 0
        self.errors = 0
        self.connected = False
        self.last_error = ""
        self._draining = asyncio.Lock()
        self._sent_upto = 0  # id of the last delivery sent or dead-lettered by this process

    async def drain(self) -> None:
        """Send pending deliveries until none is left; raises SinkError on transient failure.
        One drain at a time per destination: two would both send the rows they peeked."""
        async with self._draining:
            await self._drain()

    async def _drain(self) -> None:
        while True:
            self.outbox.delivery_event(self.destination).clear()
            rows = await self.outbox.peek_deliveries(self.destination, 100, after=self._sent_upto)
            if not rows:
                return
            # Sent rows are deleted with the outbox's next transaction, not one fsync'd delete
            # each before the next alert may go; rows are sent in id order, so peeking above
            # the last one sent skips those meanwhile (also when a send fails part way).
            acked: list[int] = []
            try:
                for delivery_id, payload in rows:
                    try:
                        await self.send(payload)
                    except SinkRejected as exc:
                        log.error(
                            "%s refused an alert for good; dead-lettered: %s", self.destination, exc
                        )
                        await self.outbox.dead_letter_delivery(
                            self.destination, delivery_id, str(exc), self.clock.now_ns()
                        )
                        self._sent_upto = delivery_id
                        continue
                    acked.append(delivery_id)
                    self.sent += 1
                    self._sent_upto = delivery_id
            finally:
                if acked:
                    self.outbox.ack_deliveries_soon(acked)

    async def send(self, payload: bytes) -> None:
        raise NotImplementedError

    async def wait_for_work(self) -> None:
        await self.outbox.delivery_event(self.destination).wait()


class MqttLink(DeliveryLoop):
    """One MQTT session: publishes alerts (QoS 1) and subscribes to acks and registry pushes."""

    destination = "mqtt"

    def __init__(
        self,
        *,
        cfg: MqttSection,
        password: str | None,
        site: str,
        outbox: Outbox,
        clock: Clock,
        on_message: MessageHandler,
        fleet: FleetControl | None = None,
        status: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(outbox=outbox, clock=clock)
        self.fleet = fleet
        self.status = status
        self.cfg = cfg
        self.password = password
        self.prefix = f"{cfg.topic_prefix}/{site}"
        self.on_message = on_message
        self._client: aiomqtt.Client | None = None

    def alert_topic(self, rule: str) -> str:
        return f"{self.prefix}/alerts/{rule}"

    def ack_topics(self) -> tuple[str, str]:
        """Acks arrive on {prefix}/{site}/acks; the old {prefix}/{site}/alerts/ack is still
        accepted in this release (it sat in the alert tree, where alert consumers saw acks)."""
        return f"{self.prefix}/acks", f"{self.prefix}/alerts/ack"

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    await client.subscribe(f"{self.prefix}/feedback", qos=1)
                    for topic in self.ack_topics():
                        await client.subscribe(topic, qos=1)
                    await client.subscribe(f"{self.prefix}/registry/#", qos=1)
                    await self._fleet_subscribe(client)
                    # Connected means subscribed: a push sent after this is not missed.
                    self.connected = True
                    if backoff.failures:
                        log.info("MQTT broker %s:%d is back", self.cfg.host, self.cfg.port)
                    backoff.reset()
                    await self._session(client)
            except (aiomqtt.MqttError, SinkError, OSError) as exc:
                self.errors += 1
                self.last_error = str(exc)
                if self.connected or backoff.failures == 0:
                    log.warning(
                        "MQTT broker %s:%d unavailable: %s", self.cfg.host, self.cfg.port, exc
                    )
            finally:
                self._client = None
                self.connected = False
            await backoff.wait()

    def _make_client(self) -> aiomqtt.Client:
        tls: ssl.SSLContext | None = None
        if self.cfg.tls:
            tls = ssl.create_default_context(
                cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None
            )
            if self.cfg.cert_file:
                tls.load_cert_chain(
                    str(self.cfg.cert_file), str(self.cfg.key_file) if self.cfg.key_file else None
                )
        return aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username or None,
            password=self.password,
            identifier=self.cfg.client_id or None,
            keepalive=self.cfg.keepalive_s,
            tls_context=tls,
            timeout=self.cfg.publish_timeout_s,
            will=self._will(),
        )

    # --- fleet: presence and state reports (hub/fleet/) -------------------------------------------

    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def _will(self) -> aiomqtt.Will | None:
        """The broker publishes this retained `offline` status if the session dies unannounced."""
        if self.fleet is None:
            return None
        return aiomqtt.Will(self.status_topic(), self.fleet.will(), qos=1, retain=True)

    async def _fleet_subscribe(self, client: aiomqtt.Client) -> None:
        for tail in self.fleet.remote_topics if self.fleet else ():
            await client.subscribe(f"{self.prefix}/{tail}", qos=1)

    async def _presence(self, client: aiomqtt.Client) -> None:
        """Retained status now and every status_interval_s; queued config/upgrade reports."""
        if self.fleet is None or self.status is None:
            return
        reporter, interval_s = self.fleet.reporter, self.fleet.settings.status_interval_s
        next_status = 0.0
        while True:
            if time.monotonic() >= next_status:
                await self._publish_retained(client, self.status_topic(), self.status())
                next_status = time.monotonic() + interval_s
            reports = reporter.take()
            for i, report in enumerate(reports):
                try:
                    topic = f"{self.prefix}/{report.topic_suffix}"
                    await self._publish_retained(client, topic, report.payload)
                except SinkError:
                    reporter.requeue(reports[i:])
                    raise
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reporter.event.wait(), next_status - time.monotonic())

    async def _publish_retained(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        try:
            await client.publish(
                topic, payload, qos=1, retain=True, timeout=self.cfg.publish_timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise SinkError(f"MQTT publish to {topic} failed: {exc}") from exc

    async def goodbye(self) -> None:
        """On a clean stop: retained `offline` (a clean disconnect does not fire the will)."""
        client = self._client
        if client is None or self.fleet is None:
            return
        with contextlib.suppress(SinkError, TimeoutError):
            async with asyncio.timeout(self.cfg.publish_timeout_s):
                await self._publish_retained(client, self.status_topic(), self.fleet.will())

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish and receive until either side fails; the other is cancelled and awaited
        before this returns, so a reconnect never leaves a second publisher draining beside
        the new one (each would send every later alert once more)."""
        tasks = [
            asyncio.create_task(self._publish_forever(), name="mqtt-publish"),
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
        ]
        if self.fleet is not None and self.status is not None:
            tasks.append(asyncio.create_task(self._presence(client), name="mqtt-presence"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # re-raises the failure that ended the session
        raise SinkError("MQTT session ended")

    async def _publish_forever(self) -> None:
        while True:
            await self.drain()
            await self.wait_for_work()

    async def send(self, payload: bytes) -> None:
        client = self._client
        if client is None:
            raise SinkError("MQTT not connected")
        rule = json.loads(payload).get("rule", "unknown")
        try:
            # aiomqtt returns from a QoS 1 publish only after the broker's PUBACK.
            await client.publish(
                self.alert_topic(rule), payload, qos=1, timeout=self.cfg.publish_timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise SinkError(f"MQTT publish failed: {exc}") from exc

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = (
                message.payload
                if isinstance(message.payload, bytes)
                else str(message.payload).encode()
            )
            try:
                await self.on_message(str(message.topic), payload)
            except Exception:  # one bad message must not drop the session; counted
                self.errors += 1
                log.exception("handling MQTT message on %s failed", message.topic)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex; sent as `X-Harbourgrid-Signature: sha256=…`."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookPublisher(DeliveryLoop):
    destination = "webhook"

    def __init__(self, *, cfg: WebhookSection, secret: str, outbox: Outbox, clock: Clock) -> None:
        super().__init__(outbox=outbox, clock=clock)
        self.cfg = cfg
        self.secret = secret.encode()
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        backoff = Backoff()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        )
        try:
            while True:
                try:
                    await self.drain()
                    self.connected = True
                    backoff.reset()
                    await self.wait_for_work()
                except SinkError as exc:
                    self.errors += 1
                    self.last_error = str(exc)
                    if self.connected or backoff.failures == 0:
                        log.warning("webhook unavailable, alerts stay queued: %s", exc)
                    self.connected = False
                    await backoff.wait()
        finally:
            await self._session.close()

    async def send(self, payload: bytes) -> None:
        assert self._session is not None
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Harbourgrid-Timestamp": timestamp,
            "X-Harbourgrid-Signature": "sha256=" + sign(self.secret, timestamp, payload),
        }
        try:
            async with self._session.post(self.cfg.url, data=payload, headers=headers) as resp:
                if resp.status // 100 == 2:
                    return
                raise classify(resp.status, await resp.text())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SinkError(f"webhook unreachable: {exc.__class__.__name__}: {exc}") from exc


ACK_SCHEMA_ID = "harbourgrid.ack/1"
MAX_ACK_BYTES = 4096
_ALERT_ID = re.compile(r"[0-9a-f]{20}")


def parse_ack(payload: bytes) -> tuple[str, str]:
    """An ack (hub/schemas/ack.schema.json) → (alert_id, by):
    {"schema": "harbourgrid.ack/1", "alert_id": "5f0c1d8e2a9b47c3d6e1", "by": "worker-17"}.
    Acks without `schema` (sent before the schema was versioned) are accepted for one release."""
    if len(payload) > MAX_ACK_BYTES:
        raise ValueError(f"ack is {len(payload)} bytes, more than {MAX_ACK_BYTES}")
    try:
        doc: Any = json.loads(payload)
    except ValueError as exc:
        raise ValueError(f"ack is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("ack must be a JSON object")
    schema = doc.get("schema", ACK_SCHEMA_ID)
    if schema != ACK_SCHEMA_ID:
        raise ValueError(f"ack schema {str(schema)[:40]!r} is not {ACK_SCHEMA_ID!r}")
    unknown = sorted(set(doc) - {"schema", "alert_id", "by"})
    if unknown:
        raise ValueError(f"ack has unknown keys: {', '.join(k[:40] for k in unknown[:5])}")
    alert_id, by = doc.get("alert_id"), doc.get("by", "")
    if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id):
        raise ValueError("ack alert_id must be 20 lowercase hex digits")
    if not isinstance(by, str) or len(by) > 64:
        raise ValueError("ack by must be a string of at most 64 characters")
    return alert_id, by
