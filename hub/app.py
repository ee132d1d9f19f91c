"""Wiring: builds every service from the config and runs them on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.alerts import AlertManager, StormLimits, install_hub_id
from hub.backoff import Backoff
from hub.clock import Clock, SystemClock
from hub.config import HubConfig, env_secret
from hub.engine import Engine
from hub.errors import ConfigError, HubError
from hub.feedback import Feedback, parse_feedback
from hub.fleet.control import FleetControl
from hub.fleet.reports import Reporter
from hub.fleet.supervisor import build_control
from hub.forwarder import Forwarder
from hub.logs import ThrottledLog, register_secret
from hub.outbox import Outbox
from hub.pipeline import Pipeline
from hub.records import HealthSample
from hub.registry import Registry, RegistryPart
from hub.registry.community import CommunityRegistry
from hub.registry.maritime import MaritimeRegistry
from hub.rules import Rule
from hub.rules.community import build_community_rules
from hub.rules.core import SinkRefusedRule, SourceSilent
from hub.rules.maritime import build_maritime_rules
from hub.sinks import InfluxV1Sink, InfluxV2Sink, LocalSink, Sink
from hub.source import Source, SourceContext
from hub.status import (
    HubCounters,
    HubStatus,
    VesselTableView,
    hub_counters,
    hub_status,
    vessel_table_view,
)
from hub.vessels import VesselTable

if TYPE_CHECKING:
    from hub.publishers import DeliveryLoop, MqttLink

log = logging.getLogger("hub.app")
_ack_log = ThrottledLog(log)  # acks come from the network: a flood must not flood the log
_feedback_log = ThrottledLog(log)


@dataclass(slots=True, frozen=True, kw_only=True)
class Secrets:
    influx_password: str = ""
    influx_token: str = ""
    mqtt_password: str | None = None
    webhook_secret: str = ""
    http_token: str = ""
    hash_salt: str = ""


def read_secrets(cfg: HubConfig) -> Secrets:
    """Read every secret the config names from the environment (ConfigError if one is unset)."""

    def get(env_name: str, what: str) -> str:
        if not env_name:
            return ""
        value = env_secret(env_name, what).get_secret_value()
        register_secret(value)
        return value

    influx = cfg.influxdb
    return Secrets(
        influx_password=get(influx.password_env, "influxdb.password_env"),
        influx_token=get(influx.token_env, "influxdb.token_env"),
        mqtt_password=get(cfg.mqtt.password_env, "mqtt.password_env") or None,
        webhook_secret=get(cfg.webhook.secret_env, "webhook.secret_env")
        if cfg.webhook.enabled
        else "",
        http_token=get(cfg.http.token_env, "http.token_env"),
        hash_salt=get(cfg.hub.hash_salt_env, "hub.hash_salt_env"),
    )


def install_salt(data_dir: Path) -> str:
    """A random per-install salt kept in data_dir, for when no salt comes from the environment."""
    path = data_dir / "hash_salt"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def build_sink(cfg: HubConfig, sec: Secrets) -> Sink | None:
    influx = cfg.influxdb
    if influx.api == "v1":
        return InfluxV1Sink(
            url=influx.url,
            database=influx.database,
            retention_policy=influx.retention_policy,
            username=influx.username,
            password=sec.influx_password,
            gzip_body=influx.gzip,
            timeout_s=influx.timeout_s,
        )
    if influx.api == "v2":
        return InfluxV2Sink(
            url=influx.url,
            org=influx.org,
            bucket=influx.bucket,
            token=sec.influx_token,
            gzip_body=influx.gzip,
            timeout_s=influx.timeout_s,
        )
    if influx.api == "local":
        return LocalSink(path=cfg.hub.data_dir / "store.sqlite")
    return None


def build_alert_manager(cfg: HubConfig) -> AlertManager:
    alerts = cfg.alerts
    return AlertManager(
        cfg.hub.site,
        alerts.cooldown_minutes * 60,
        hub_id=install_hub_id(cfg.hub.data_dir),
        storm=StormLimits(
            max_new_per_minute=alerts.storm_max_new_per_minute,
            max_open=alerts.storm_max_open,
            samples=alerts.storm_samples,
            update_s=alerts.storm_update_s,
        ),
    )


class Hub:
    def __init__(
        self,
        cfg: HubConfig,
        *,
        clock: Clock | None = None,
        extra_sources: Sequence[Source] = (),
        fleet: FleetControl | None = None,
    ) -> None:
        self.cfg = cfg
        self.fleet = fleet or build_control(cfg, None, Reporter(cfg.hub.site), asyncio.Event())
        self.clock = clock or SystemClock()
        self.secrets = read_secrets(cfg)
        data_dir = cfg.hub.data_dir
        salt = self.secrets.hash_salt or install_salt(data_dir)
        self.ctx = SourceContext(
            site=cfg.hub.site,
            clock=self.clock,
            data_dir=data_dir,
            hash_salt=salt,
            mqtt=cfg.mqtt,
            utc_offset_hours=cfg.hub.utc_offset_hours,
        )
        self.registry = self._build_registry(salt)
        self.sources: list[Source] = [s.build(self.ctx) for s in cfg.sources]
        self.sources += list(extra_sources)
        self.outbox = Outbox(path=data_dir / "outbox.sqlite", max_bytes=cfg.outbox.max_bytes)
        self.engine = Engine(self._build_rules(), build_alert_manager(cfg))
        self.sink = build_sink(cfg, self.secrets)
        self.forwarder = (
            Forwarder(
                outbox=self.outbox,
                sink=self.sink,
                clock=self.clock,
                batch_size=cfg.influxdb.batch_size,
                flush_interval_s=cfg.influxdb.flush_interval_s,
                retry_initial_s=cfg.influxdb.retry_initial_s,
                retry_max_s=cfg.influxdb.retry_max_s,
            )
            if self.sink
            else None
        )
        self.publishers: list[DeliveryLoop] = []
        self.feedback_rejected: Counter[str] = Counter()  # invalid | unknown | conflict
        self.mqtt: MqttLink | None = None
        # The MQTT and HTTP client libraries are loaded only by a hub that publishes (RSS).
        if cfg.mqtt.enabled:
            from hub.publishers import MqttLink

            self.mqtt = MqttLink(
                cfg=cfg.mqtt,
                password=self.secrets.mqtt_password,
                site=cfg.hub.site,
                outbox=self.outbox,
                clock=self.clock,
                on_message=self.on_mqtt,
                fleet=self.fleet,
                status=self.fleet_status,
            )
            self.publishers.append(self.mqtt)
        if cfg.webhook.enabled:
            from hub.publishers import WebhookPublisher

            self.publishers.append(
                WebhookPublisher(
                    cfg=cfg.webhook,
                    secret=self.secrets.webhook_secret,
                    outbox=self.outbox,
                    clock=self.clock,
                )
            )
        self.vessels = self._build_vessel_table()
        self.pipeline = Pipeline(
            site=cfg.hub.site,
            clock=self.clock,
            registry=self.registry,
            engine=self.engine,
            outbox=self.outbox,
            destinations=[p.destination for p in self.publishers],
            write_batch=cfg.outbox.write_batch,
            queue_batches=cfg.outbox.queue_batches,
            vessels=self.vessels,
        )
        self.started_at = time.time()
        self.http_url = ""
        self.mqtt_errors = 0
        self._rejected_log = ThrottledLog(log)  # a flood of bad pushes is not a flood of lines
        self._tasks: list[asyncio.Task[Any]] = []
        self._source_tasks: list[asyncio.Task[Any]] = []
        self._http_runner: Any = None

    def _build_registry(self, salt: str) -> Registry:
        parts: list[RegistryPart] = [
            CommunityRegistry(self.cfg.registry.community, salt),
            MaritimeRegistry(self.cfg.registry.maritime, salt),
        ]
        return Registry(
            parts,
            overlay_path=self.cfg.hub.data_dir / "registry_pushes.jsonl",
            max_push_bytes=self.cfg.registry.max_push_bytes,
        )

    def _build_vessel_table(self) -> VesselTable:
        maritime = self.registry.parts["maritime"]
        assert isinstance(maritime, MaritimeRegistry)

        def zones_at(lat: float, lon: float) -> list[str]:
            return [zone.id for zone in maritime.zones_at(lat, lon)]

        expiry_s = self.cfg.rules.maritime.vessel_expiry_minutes * 60
        return VesselTable(zones_at, expiry_s=expiry_s)

    def _build_rules(self) -> list[Rule]:
        rules: list[Rule] = []
        silent = self.cfg.rules.source_silent
        if silent.enabled:
            timeouts = {
                s.name: s.silent_timeout_s or silent.default_timeout_s
                for s in self.cfg.sources
                if s.silent_timeout_s or silent.default_timeout_s
            }
            rules.append(SourceSilent({k: v for k, v in timeouts.items() if v}))
        if self.cfg.influxdb.api in ("v1", "v2"):
            rules.append(
                SinkRefusedRule(
                    "influxdb",
                    lambda: self.forwarder.refused if self.forwarder else "",
                    lambda: self.outbox.stats.rows,
                )
            )
        community = self.registry.parts["community"]
        maritime = self.registry.parts["maritime"]
        assert isinstance(community, CommunityRegistry) and isinstance(maritime, MaritimeRegistry)
        rules += build_community_rules(self.cfg.rules.community, community)
        rules += build_maritime_rules(self.cfg.rules.maritime, maritime)
        return rules

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.outbox.open()
        self.engine.restore(
            await self.outbox.load_rule_state(), await self.outbox.load_alert_state()
        )
        rewrite = self.engine.rewrite()  # state of an earlier layout, stored in this one
        if rewrite is not None:
            await self.outbox.replace_rule_state(rewrite.headers, rewrite.entries, rewrite.old_rows)
        self._spawn(self.pipeline.run(), "pipeline")
        if self.forwarder:
            self._spawn(self.forwarder.run(), "forwarder")
        for publisher in self.publishers:
            self._spawn(publisher.run(), publisher.destination)  # type: ignore[attr-defined]
        self._spawn(self._tick_loop(), "rules-tick")
        self._spawn(self._health_loop(), "health")
        self._spawn(self._registry_watch(), "registry-watch")
        if self.cfg.http.enabled:
            from hub.http import start_http

            self._http_runner, self.http_url = await start_http(self)
        for source in self.sources:
            self._source_tasks.append(
                asyncio.create_task(self._supervise(source), name=source.name)
            )
        log.info(
            "hub started: site=%s sources=%d sink=%s alerts=%s status=%s",
            self.cfg.hub.site,
            len(self.sources),
            self.cfg.influxdb.api,
            ",".join(p.destination for p in self.publishers) or "none",
            self.http_url or "off",
        )

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Stop sources, commit what they handed over, flush the sink briefly. Rule state needs
        no saving: each step committed what it changed, with its records and alerts."""
        await _cancel_and_wait(self._source_tasks, "sources")
        for source in self.sources:
            with contextlib.suppress(Exception):
                await source.aclose()
        if self.forwarder and flush_timeout_s > 0:
            await self.forwarder.flush(flush_timeout_s)
        if self.mqtt is not None:
            await self.mqtt.goodbye()
        await _cancel_and_wait(self._tasks, "hub tasks")
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self.sink:
            await self.sink.aclose()
        await self.outbox.close()
        log.info("hub stopped")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task %s died: %r", task.get_name(), task.exception())

    async def _supervise(self, source: Source) -> None:
        """Run a source forever; a crash or an unexpected return restarts it with backoff."""
        backoff = Backoff(initial_s=1.0, max_s=60.0)
        while True:
            started = time.monotonic()
            try:
                await source.run(self.pipeline.publish)
                log.warning("source %s returned; restarting", source.name)
                source.stats.last_error = "stopped; restarting"
            except asyncio.CancelledError:
                raise
            except HubError as exc:
                log.error("source %s failed: %s; restarting", source.name, exc)
                source.stats.last_error = str(exc)[:200]
            except Exception as exc:
                log.exception("source %s crashed; restarting", source.name)
                source.stats.last_error = f"crashed: {exc.__class__.__name__}"
            source.stats.restarts += 1
            source.stats.connected = False
            if time.monotonic() - started > 60:  # it ran fine for a while: start over gently
                backoff.reset()
            await backoff.wait()

    # --- periodic work -------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await self.clock.sleep(self.cfg.alerts.tick_s)
            await self.pipeline.commit_alerts(self.engine.on_tick(self.clock.now_ns()))

    async def _health_loop(self) -> None:
        while True:
            await self.clock.sleep(self.cfg.hub.health_interval_s)
            self.vessels.expire(self.clock.now_ns())
            await self.pipeline.publish(self.health_samples())

    def health_samples(self) -> list[HealthSample]:
        now_ns = self.clock.now_ns()
        samples = [
            HealthSample(
                time_ns=now_ns, msgs=s.stats.messages, errors=s.stats.error_total, source=s.name
            )
            for s in self.sources
        ]
        stats = self.outbox.stats
        lag = self.forwarder.lag_s if self.forwarder else 0.0
        samples.append(
            HealthSample(
                time_ns=now_ns,
                msgs=self.pipeline.records_in,
                errors=0,
                lag_s=lag,
                outbox_rows=stats.rows,
                dropped=stats.dropped,
                source="hub",
            )
        )
        return samples

    async def _registry_watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry.reload_check_s)
            try:
                if self.registry.reload_if_changed():
                    log.info("registry files reloaded")
            except ConfigError as exc:
                log.error("registry reload failed, keeping the previous data: %s", exc)

    # --- inbound control -----------------------------------------------------------------------

    async def on_mqtt(self, topic: str, payload: bytes) -> None:
        prefix = f"{self.cfg.mqtt.topic_prefix}/{self.cfg.hub.site}/"
        tail = topic[len(prefix) :] if topic.startswith(prefix) else topic
        try:
            if tail == "feedback":
                await self._on_feedback(topic, payload)
            elif tail in ("acks", "alerts/ack"):
                await self._on_ack(topic, tail, payload)
            elif tail in self.fleet.remote_topics:
                await self.fleet.on_message(tail, payload)
            elif tail.startswith("registry/") and tail.count("/") == 2:
                _, part, kind = tail.split("/")
                self.registry.apply_push(part, kind, payload, via="mqtt")
                log.info("registry update applied: %s/%s", part, kind)
        except (ValueError, RecursionError, HubError) as exc:
            self.mqtt_errors += 1
            self._rejected_log.warning("rejected MQTT message on %s: %s", topic, exc)

    def fleet_status(self) -> bytes:
        return self.fleet.status(self.status())

    async def _on_ack(self, topic: str, tail: str, payload: bytes) -> None:
        from hub.publishers import parse_ack

        try:
            alert_id, by = parse_ack(payload)
        except ValueError as exc:
            self.mqtt_errors += 1
            _ack_log.warning("rejected ack on %s: %s", topic, exc)
            return
        if tail == "alerts/ack":
            _ack_log.info("ack on deprecated topic %s; publish acks to .../acks", topic)
        await self.acknowledge(alert_id, by)

    async def _on_feedback(self, topic: str, payload: bytes) -> None:
        try:
            feedback = parse_feedback(payload)
        except ValueError as exc:
            self.mqtt_errors += 1
            self.reject_feedback(topic, exc)
            return
        outcome = await self.feedback(feedback)
        if outcome in ("unknown", "conflict"):
            _feedback_log.warning("feedback on %s refused: %s alert", topic, outcome)

    def reject_feedback(self, where: str, exc: ValueError) -> None:
        """Count and (throttled) log feedback that did not parse, from MQTT or HTTP."""
        self.feedback_rejected["invalid"] += 1
        _feedback_log.warning("rejected feedback on %s: %s", where, exc)

    async def feedback(self, feedback: Feedback) -> str:
        """Record the platform's verdict on an alert; returns the outcome (recorded, duplicate,
        unknown, conflict). Unknown and conflicting feedback is counted as rejected."""
        result, batch = self.engine.feedback(feedback, self.clock.now_ns())
        await self.pipeline.commit_alerts(batch)
        if result.outcome in ("unknown", "conflict"):
            self.feedback_rejected[result.outcome] += 1
        return result.outcome

    def dead_tasks(self) -> list[str]:
        """Names of hub tasks that ended; each should run for the hub's whole life."""
        return [t.get_name() for t in self._tasks if t.done()]

    # --- snapshots: what surfaces (HTTP, /metrics, fleet reports) read -------------------------

    def status(self) -> HubStatus:
        """Health, queues, connections and open alerts now, detached from the live services."""
        return hub_status(self)

    def counters(self) -> HubCounters:
        """Counters since start, detached from the live services."""
        return hub_counters(self)

    def vessel_table(self, limit: int) -> VesselTableView:
        """The `limit` most recently heard entries of the vessel table (newest last), copied."""
        return vessel_table_view(self, limit)

    async def acknowledge(self, alert_id: str, by: str) -> bool:
        batch = self.engine.acknowledge(alert_id, by, self.clock.now_ns())
        await self.pipeline.commit_alerts(batch)
        return bool(batch.alerts)


async def _cancel_and_wait(
    tasks: list[asyncio.Task[Any]], what: str, timeout_s: float = 10.0
) -> None:
    """Cancel and wait, bounded: a task that swallows its cancellation (a client library stuck
    in a connect) must not keep the hub from stopping and saving its state."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:  # retrieved, so asyncio does not warn about them at exit
        if not task.cancelled():
            task.exception()
    if pending:
        names = ", ".join(sorted(t.get_name() for t in pending))
        log.error(
            "%s did not stop within %.0f s (%s); stopping without them", what, timeout_s, names
        )
