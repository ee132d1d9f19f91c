"""Snapshots of the running hub for its surfaces (HTTP, /metrics, fleet reports, the demo).

Built in one place from the live services and detached from them: a surface reads a snapshot,
never `hub.engine`, `hub.pipeline` or `hub.outbox`, so a service can change its insides without
breaking what operators see.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hub.alerts import Alert
from hub.forwarder import SinkStatus
from hub.outbox import OutboxStats

if TYPE_CHECKING:
    from hub.app import Hub

Counts = Mapping[str, int]


def _frozen(counts: Mapping[str, int]) -> Counts:
    """A read-only copy in the live counter's order (so /metrics prints in that order); like a
    Counter, it answers 0 for a key never counted."""
    return MappingProxyType(Counter(counts))


@dataclass(slots=True, frozen=True, kw_only=True)
class SourceStatus:
    name: str
    kind: str
    connected: bool
    messages: int
    errors: Counts  # by kind
    counts: Counts  # accepted-but-not-stored inputs by kind
    restarts: int
    last_message_ns: int  # 0: never
    last_error: str

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


@dataclass(slots=True, frozen=True, kw_only=True)
class PublisherStatus:
    destination: str
    connected: bool
    sent: int
    errors: int
    last_error: str


@dataclass(slots=True, frozen=True, kw_only=True)
class HubStatus:
    """What the hub is doing now: health, queues, connections and the open alerts."""

    site: str
    now_ns: int
    dead_tasks: tuple[str, ...]
    sources: tuple[SourceStatus, ...]
    outbox: OutboxStats  # a copy
    sink_api: str  # influxdb.api: v1, v2, local or none
    sink: SinkStatus | None  # None without a forwarder
    publishers: tuple[PublisherStatus, ...]
    open_alerts: tuple[Alert, ...]
    vessel_count: int

    @property
    def sink_refused(self) -> str:
        return self.sink.refused if self.sink else ""


@dataclass(slots=True, frozen=True, kw_only=True)
class HubCounters:
    """Counters since start (alert changes, failures, refusals), each a read-only copy."""

    records_in: int
    unstorable: Counts  # by measurement: records with no field left to store
    commit_failures: int
    alert_changes: Counts  # by state
    rule_errors: Counts  # by rule
    false_alarms: Counts  # by rule
    feedback: Counts  # by outcome
    feedback_rejected: Counts  # by reason
    registry_unknown_ids: tuple[tuple[str, str, int], ...]  # (part, kind, n)
    registry_bad_rows: tuple[tuple[str, str, int], ...]  # (part, kind or "all", n)
    registry_pushes_refused: tuple[tuple[str, str, int], ...]  # (via, reason, n)


@dataclass(slots=True, frozen=True, kw_only=True)
class VesselView:
    """One entry of the live vessel table: its JSON form and what the map needs to draw it."""

    entry: Mapping[str, Any]
    last_seen_ns: int
    has_fix: bool


def hub_status(hub: Hub) -> HubStatus:
    fwd = hub.forwarder
    return HubStatus(
        site=hub.cfg.hub.site,
        now_ns=hub.clock.now_ns(),
        dead_tasks=tuple(hub.dead_tasks()),
        sources=tuple(
            SourceStatus(
                name=s.name,
                kind=s.kind,
                connected=s.stats.connected,
                messages=s.stats.messages,
                errors=_frozen(s.stats.errors),
                counts=_frozen(s.stats.counts),
                restarts=s.stats.restarts,
                last_message_ns=s.stats.last_message_ns,
                last_error=s.stats.last_error,
            )
            for s in hub.sources
        ),
        outbox=dataclasses.replace(hub.outbox.stats),
        sink_api=hub.cfg.influxdb.api,
        sink=fwd.status() if fwd else None,
        publishers=tuple(
            PublisherStatus(
                destination=p.destination,
                connected=p.connected,
                sent=p.sent,
                errors=p.errors,
                last_error=p.last_error,
            )
            for p in hub.publishers
        ),
        open_alerts=tuple(hub.engine.alerts.open_alerts()),
        vessel_count=len(hub.vessels),
    )


def hub_counters(hub: Hub) -> HubCounters:
    engine, registry = hub.engine, hub.registry
    unknown, bad = [], []
    for name, part in registry.parts.items():
        unknown += [(name, kind, n) for kind, n in getattr(part, "unknown_ids", {}).items()]
        bad += [(name, kind, n) for kind, n in getattr(part, "bad_rows", {}).items()]
        problems = getattr(part, "problems", None)
        if isinstance(problems, list):
            bad.append((name, "all", len(problems)))
    return HubCounters(
        records_in=hub.pipeline.records_in,
        unstorable=_frozen(hub.pipeline.encode_errors),
        commit_failures=hub.pipeline.commit_failures,
        alert_changes=_frozen(engine.alert_counts),
        rule_errors=_frozen(engine.rule_errors),
        false_alarms=_frozen(engine.alerts.false_alarms),
        feedback=_frozen(engine.feedback_counts),
        feedback_rejected=_frozen(hub.feedback_rejected),
        registry_unknown_ids=tuple(unknown),
        registry_bad_rows=tuple(bad),
        registry_pushes_refused=tuple((via, why, n) for (via, why), n in registry.rejected.items()),
    )


@dataclass(slots=True, frozen=True, kw_only=True)
class VesselTableView:
    count: int  # entries in the whole table
    latest: tuple[VesselView, ...]  # the most recently heard, newest last


def vessel_table_view(hub: Hub, limit: int) -> VesselTableView:
    latest = tuple(
        VesselView(entry=v.to_json(), last_seen_ns=v.last_seen_ns, has_fix=v.has_fix)
        for v in hub.vessels.latest(limit)
    )
    return VesselTableView(count=len(hub.vessels), latest=latest)
