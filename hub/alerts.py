"""Alert lifecycle: signals from rules become alerts that open, update, get acknowledged, resolve.

An alert's id is stable per (site, rule, subject, episode): every state change of one episode
carries the same `alert_id` and a growing `seq`, so the platform can de-duplicate at-least-once
deliveries. A subject whose acknowledged alert resolved is not raised again within the cooldown,
so a vessel drifting across a zone edge does not page the same worker over and over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hub.records import GridTags, Point
from hub.rules import SEVERITIES, Signal

SCHEMA_ID = "harbourgrid.alert/1"
NS = 1_000_000_000


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        datetime.fromtimestamp(ns / NS, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(slots=True, frozen=True)
class Alert:
    alert_id: str
    rule: str
    subject: str
    state: str  # open | updated | acknowledged | resolved
    severity: str
    message: str
    site: str
    grid: GridTags
    opened_ns: int
    updated_ns: int
    seq: int = 1
    resolved_ns: int | None = None
    acknowledged_ns: int | None = None
    acknowledged_by: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON document published to MQTT and the webhook (hub/schemas/alert.schema.json)."""
        return {
            "schema": SCHEMA_ID,
            "alert_id": self.alert_id,
            "seq": self.seq,
            "rule": self.rule,
            "subject": self.subject,
            "state": self.state,
            "severity": self.severity,
            "message": self.message,
            "site": self.site,
            "grid": self.grid.grid,
            "micro_grid": self.grid.micro_grid,
            "police_grid": self.grid.police_grid,
            "opened_at": iso(self.opened_ns),
            "updated_at": iso(self.updated_ns),
            "resolved_at": iso(self.resolved_ns),
            "acknowledged_at": iso(self.acknowledged_ns),
            "acknowledged_by": self.acknowledged_by or None,
            "data": self.data,
        }

    def point(self) -> Point:
        tags = {
            "site": self.site,
            "grid": self.grid.grid,
            "micro_grid": self.grid.micro_grid,
            "police_grid": self.grid.police_grid,
            "rule": self.rule,
            "severity": self.severity,
        }
        fields: dict[str, Any] = {
            "alert_id": self.alert_id,
            "state": self.state,
            "message": self.message,
            "subject": self.subject,
            "seq": self.seq,
        }
        return Point("alert", tags, fields, self.updated_ns)

    def to_json(self) -> dict[str, Any]:
        """Every field in declaration order (what `dataclasses.asdict` gave, without its deep
        copies: this runs for every alert change and the result is serialised at once)."""
        grid = self.grid
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "subject": self.subject,
            "state": self.state,
            "severity": self.severity,
            "message": self.message,
            "site": self.site,
            "grid": {
                "grid": grid.grid,
                "micro_grid": grid.micro_grid,
                "police_grid": grid.police_grid,
            },
            "opened_ns": self.opened_ns,
            "updated_ns": self.updated_ns,
            "seq": self.seq,
            "resolved_ns": self.resolved_ns,
            "acknowledged_ns": self.acknowledged_ns,
            "acknowledged_by": self.acknowledged_by,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Alert:
        return cls(**{**raw, "grid": GridTags(**raw["grid"])})


@dataclass(slots=True)
class _Entry:
    """What the manager remembers per (rule, subject)."""

    episode: int = 0
    alert: Alert | None = None  # the open alert, if any
    last_resolved_ns: int | None = None
    last_was_acked: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "episode": self.episode,
                "alert": self.alert.to_json() if self.alert else None,
                "last_resolved_ns": self.last_resolved_ns,
                "last_was_acked": self.last_was_acked,
            }
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Entry:
        alert = Alert.from_json(raw["alert"]) if raw.get("alert") else None
        return cls(
            raw["episode"], alert, raw.get("last_resolved_ns"), raw.get("last_was_acked", False)
        )


class AlertManager:
    def __init__(self, site: str, cooldown_s: float) -> None:
        self.site = site
        self.cooldown_ns = int(cooldown_s * NS)
        self._entries: dict[str, _Entry] = {}
        self._by_id: dict[str, str] = {}
        self.suppressed = 0

    def restore(self, state: dict[str, Any]) -> None:
        for key, raw in state.items():
            entry = _Entry.from_json(raw)
            self._entries[key] = entry
            if entry.alert:
                self._by_id[entry.alert.alert_id] = key

    def open_alerts(self) -> list[Alert]:
        return [e.alert for e in self._entries.values() if e.alert is not None]

    def apply(self, signal: Signal, now_ns: int) -> tuple[Alert, str] | None:
        """Apply one signal; returns (changed alert, entry json to persist) or None."""
        key = f"{signal.rule}|{signal.subject}"
        entry = self._entries.setdefault(key, _Entry())
        alert = entry.alert
        if signal.active:
            severity = signal.severity if signal.severity in SEVERITIES else "warning"
            if alert is None:
                if self._cooling_down(entry, now_ns):
                    self.suppressed += 1
                    return None
                entry.episode += 1
                alert = Alert(
                    alert_id=self._alert_id(key, entry.episode),
                    rule=signal.rule,
                    subject=signal.subject,
                    state="open",
                    severity=severity,
                    message=signal.message,
                    site=self.site,
                    grid=signal.grid,
                    opened_ns=now_ns,
                    updated_ns=now_ns,
                    data=signal.data,
                )
                self._by_id[alert.alert_id] = key
            elif severity != alert.severity or signal.message != alert.message:
                alert = replace(
                    alert,
                    state="updated",
                    severity=severity,
                    message=signal.message,
                    data=signal.data,
                    grid=signal.grid if signal.grid.grid else alert.grid,
                    updated_ns=now_ns,
                    seq=alert.seq + 1,
                )
            else:
                return None
            entry.alert = alert
            return alert, entry.to_json()
        if alert is None:
            return None
        resolved = replace(
            alert,
            state="resolved",
            message=signal.message or f"{alert.message} — resolved",
            data={**alert.data, **signal.data},
            updated_ns=now_ns,
            resolved_ns=now_ns,
            seq=alert.seq + 1,
        )
        entry.alert = None
        entry.last_resolved_ns = now_ns
        entry.last_was_acked = alert.acknowledged_ns is not None
        self._by_id.pop(alert.alert_id, None)
        return resolved, entry.to_json()

    def acknowledge(self, alert_id: str, by: str, now_ns: int) -> tuple[Alert, str] | None:
        key = self._by_id.get(alert_id)
        entry = self._entries.get(key) if key else None
        if entry is None or entry.alert is None or entry.alert.acknowledged_ns is not None:
            return None
        alert = replace(
            entry.alert,
            state="acknowledged",
            acknowledged_ns=now_ns,
            acknowledged_by=by[:64],
            updated_ns=now_ns,
            seq=entry.alert.seq + 1,
        )
        entry.alert = alert
        return alert, entry.to_json()

    def _cooling_down(self, entry: _Entry, now_ns: int) -> bool:
        return (
            entry.last_was_acked
            and entry.last_resolved_ns is not None
            and now_ns - entry.last_resolved_ns < self.cooldown_ns
        )

    def _alert_id(self, key: str, episode: int) -> str:
        digest = hashlib.sha256(f"{self.site}|{key}|{episode}".encode()).hexdigest()
        return digest[:20]
