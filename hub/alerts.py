"""Alert lifecycle: signals from rules become alerts that open, update, get acknowledged, resolve.

An alert's id is stable per (hub_id, site, rule, subject, episode): every state change of one
episode carries the same `alert_id` and a growing `seq`, so the platform can de-duplicate
at-least-once deliveries. `hub_id` is random per install (kept in data_dir), so a reinstalled hub,
whose episode counters start again at 1, never reuses an id the platform has already seen. A subject whose acknowledged alert resolved is not raised again within the cooldown,
so a vessel drifting across a zone edge does not page the same worker over and over.

The closed loop is measured here too: acknowledging, resolving and reopening an alert, and
feedback from the platform, each make one `alert_response` point (see `Alert.response_point`).
A resolved alert is *reopened* when its subject is raised again within the cooldown after it
resolved: once per episode, whether the new raise is suppressed (it had been acknowledged) or
opens a new episode (it had not). `reopened` counts reopenings in a row. An acknowledged alert
never goes back to open: an update keeps its acknowledgement.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.feedback import Feedback, is_worker_id
from hub.records import FieldValue, GridTags, Point
from hub.rules import SEVERITIES, Signal

SCHEMA_ID = "harbourgrid.alert/2"
NS = 1_000_000_000
RECENT_RESOLVED = 10_000  # resolved alerts remembered for late feedback


def install_hub_id(data_dir: Path) -> str:
    """This install's random id: made once, kept in data_dir/hub_id, mixed into every alert_id."""
    path = data_dir / "hub_id"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(8) + "\n")
    return path.read_text().strip()


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return (
        datetime.fromtimestamp(ns / NS, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(slots=True, frozen=True, kw_only=True)
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
    hub_id: str = ""
    reopened: int = 0  # raised again within the cooldown after resolving, this many times in a row
    feedback: str = ""  # the platform's verdict: handled | false_alarm

    def payload(self) -> dict[str, Any]:
        """The JSON document published to MQTT and the webhook (hub/schemas/alert.schema.json)."""
        return {
            "schema": SCHEMA_ID,
            "alert_id": self.alert_id,
            "hub_id": self.hub_id,
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

    def point(self, offset_ns: int = 0) -> Point:
        """The `alert` point. `subject` is a tag so that alerts of one rule raised at the same
        instant are distinct series (its cardinality is bounded: one value per meter, door or
        vessel, and storm control folds floods of new subjects into one `alert_storm` subject);
        `offset_ns` separates changes of one subject committed together."""
        tags = {
            "site": self.site,
            "grid": self.grid.grid,
            "micro_grid": self.grid.micro_grid,
            "police_grid": self.grid.police_grid,
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
        }
        fields: dict[str, Any] = {
            "alert_id": self.alert_id,
            "state": self.state,
            "message": self.message,
            "seq": self.seq,
        }
        return Point(
            measurement="alert", tags=tags, fields=fields, time_ns=self.updated_ns + offset_ns
        )

    def response_point(self, event: str, now_ns: int, offset_ns: int = 0) -> Point:
        """The `alert_response` point of an acknowledgement, a resolution or a reopening of this
        resolved alert (`event`: acknowledged | resolved | reopened). Seconds are written once per
        alert: `seconds_to_ack` only on its acknowledgement, `seconds_to_resolve` only on its
        resolution, so medians count each alert once. `acknowledged_by` is written only when it
        is a worker id."""
        fields: dict[str, FieldValue] = {"alert_id": self.alert_id, "reopened": self.reopened}
        by = self.acknowledged_by if is_worker_id(self.acknowledged_by) else ""
        if event == "acknowledged" and self.acknowledged_ns is not None:
            fields["seconds_to_ack"] = (self.acknowledged_ns - self.opened_ns) / NS
            fields["acknowledged_by"] = by
        elif event == "resolved" and self.resolved_ns is not None:
            fields["seconds_to_resolve"] = (self.resolved_ns - self.opened_ns) / NS
            fields["resolved_unacknowledged"] = self.acknowledged_ns is None
            if by:
                fields["acknowledged_by"] = by
        elif event == "reopened" and self.resolved_ns is not None:
            fields["seconds_after_resolve"] = (now_ns - self.resolved_ns) / NS
            fields["was_acknowledged"] = self.acknowledged_ns is not None  # own name: see README
        return Point(
            measurement="alert_response",
            tags=self._response_tags(event),
            fields=fields,
            time_ns=now_ns + offset_ns,
        )

    def feedback_point(self, feedback: Feedback, now_ns: int, offset_ns: int = 0) -> Point:
        """The `alert_response` point of the platform's feedback: `false_alarm` is 0 or 1, so
        `sum("false_alarm")` per rule is the number of false alarms to tune its thresholds by."""
        fields: dict[str, FieldValue] = {
            "alert_id": self.alert_id,
            "feedback": feedback.verdict,
            "false_alarm": int(feedback.verdict == "false_alarm"),
            "feedback_by": feedback.by,
        }
        if feedback.note_id:
            fields["note_id"] = feedback.note_id
        return Point(
            measurement="alert_response",
            tags=self._response_tags("feedback"),
            fields=fields,
            time_ns=now_ns + offset_ns,
        )

    def _response_tags(self, event: str) -> dict[str, str]:
        """The `alert` point's tags plus `event`, so an acknowledgement, a resolution and
        feedback of one subject at one instant are three points, not one merged point."""
        return {
            "site": self.site,
            "grid": self.grid.grid,
            "micro_grid": self.grid.micro_grid,
            "police_grid": self.grid.police_grid,
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "event": event,
        }

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
            "hub_id": self.hub_id,
            "reopened": self.reopened,
            "feedback": self.feedback,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], hub_id: str = "") -> Alert:
        """`hub_id` fills state saved before ids were per install (schema 1)."""
        return cls(**{"hub_id": hub_id, **raw, "grid": GridTags(**raw["grid"])})


@dataclass(slots=True, frozen=True, kw_only=True)
class StormLimits:
    """Per-rule storm control: beyond `max_new_per_minute` new subjects in a minute, or with
    `max_open` alerts of the rule open, new subjects are folded into one `alert_storm` alert."""

    max_new_per_minute: int = 100
    max_open: int = 500
    samples: int = 10
    update_s: float = 60.0


STORM_RULE = "alert_storm"


@dataclass(slots=True, kw_only=True)
class _Entry:
    """What the manager remembers per (rule, subject)."""

    episode: int = 0
    alert: Alert | None = None  # the open alert, if any
    last_resolved_ns: int | None = None
    last_was_acked: bool = False
    last: Alert | None = None  # the last resolved alert (feedback may still come for it)
    came_back: bool = False  # `last` was raised again within the cooldown

    def to_json(self) -> str:
        return json.dumps(
            {
                "episode": self.episode,
                "alert": self.alert.to_json() if self.alert else None,
                "last_resolved_ns": self.last_resolved_ns,
                "last_was_acked": self.last_was_acked,
                "last": self.last.to_json() if self.last else None,
                "came_back": self.came_back,
            }
        )

    @classmethod
    def from_json(cls, raw: dict[str, Any], hub_id: str = "") -> _Entry:
        alert = Alert.from_json(raw["alert"], hub_id) if raw.get("alert") else None
        last = Alert.from_json(raw["last"], hub_id) if raw.get("last") else None
        return cls(
            episode=raw["episode"],
            alert=alert,
            last_resolved_ns=raw.get("last_resolved_ns"),
            last_was_acked=raw.get("last_was_acked", False),
            last=last,
            came_back=raw.get("came_back", False),
        )


@dataclass(slots=True, kw_only=True)
class _RuleLoad:
    """New-subject attempts of one rule in fixed one-minute windows, and its open alerts."""

    open: int = 0
    window_start_ns: int = 0
    in_window: int = 0
    last_window: int = 0
    folded_since_update: int = 0
    last_update_ns: int = 0

    def count_attempt(self, now_ns: int) -> int:
        self.roll(now_ns)
        self.in_window += 1
        return self.in_window

    def roll(self, now_ns: int) -> None:
        if now_ns - self.window_start_ns >= 60 * NS:
            gap = now_ns - self.window_start_ns >= 120 * NS
            self.last_window = 0 if gap else self.in_window
            self.window_start_ns, self.in_window = now_ns, 0


Change = tuple[Alert, str]  # (changed alert, entry json to persist)


@dataclass(slots=True, frozen=True)
class FeedbackResult:
    """What became of one feedback: `recorded` (with the alert it applies to, and the entry to
    persist when the entry is still kept), `duplicate` (same verdict again: at-least-once
    delivery), `conflict` (a different verdict was recorded first) or `unknown` (no such alert,
    or resolved too long ago)."""

    outcome: str
    alert: Alert | None = None
    state: tuple[str, str] | None = None  # (alert_state key, entry json)


class AlertManager:
    def __init__(
        self,
        site: str,
        cooldown_s: float,
        *,
        hub_id: str = "",
        storm: StormLimits | None = None,
    ) -> None:
        self.site = site
        self.hub_id = hub_id
        self.cooldown_ns = int(cooldown_s * NS)
        self.storm = storm or StormLimits()
        self._entries: dict[str, _Entry] = {}
        self._by_id: dict[str, str] = {}
        self._load: dict[str, _RuleLoad] = {}
        self._recent: OrderedDict[str, tuple[str, Alert]] = OrderedDict()  # id → (key, resolved)
        self.false_alarms: Counter[str] = Counter()  # per rule, since start
        self._comebacks: list[Change] = []  # reopened resolved alerts, for take_comebacks()
        self.suppressed = 0
        self.folded = 0
        self.pruned = 0

    def restore(self, state: dict[str, Any]) -> None:
        for key, raw in state.items():
            entry = _Entry.from_json(raw, self.hub_id)
            self._entries[key] = entry
            if entry.alert:
                self._by_id[entry.alert.alert_id] = key
                if entry.alert.rule != STORM_RULE:
                    self._rule_load(entry.alert.rule).open += 1
            if entry.last:
                self._remember(key, entry.last)

    def open_alerts(self) -> list[Alert]:
        return [e.alert for e in self._entries.values() if e.alert is not None]

    def tracked(self) -> int:
        """How many (rule, subject) entries are kept (open, or resolved within the cooldown)."""
        return len(self._entries)

    def apply(self, signal: Signal, now_ns: int) -> Change | None:
        """Apply one signal; returns (changed alert, entry json to persist) or None."""
        key = f"{signal.rule}|{signal.subject}"
        entry = self._entries.get(key)
        alert = entry.alert if entry else None
        if signal.active:
            if alert is None:
                return self._open(key, entry, signal, now_ns)
            assert entry is not None
            return self._update(entry, alert, signal, now_ns)
        if entry is None or alert is None:
            return None
        return self._resolve(entry, alert, signal.message, signal.data, now_ns)

    def _open(self, key: str, entry: _Entry | None, signal: Signal, now_ns: int) -> Change | None:
        reopened = self._came_back(entry, now_ns)
        if entry is not None and self._cooling_down(entry, now_ns):
            self.suppressed += 1
            return None
        load = self._rule_load(signal.rule)
        attempts = load.count_attempt(now_ns)
        storm_key = f"{STORM_RULE}|{signal.rule}"
        storm = self._entries.get(storm_key)
        storming = storm is not None and storm.alert is not None
        if storming or attempts > self.storm.max_new_per_minute or load.open >= self.storm.max_open:
            return self._fold(storm_key, signal, now_ns)
        entry = self._entries.setdefault(key, _Entry())
        entry.episode += 1
        alert = Alert(
            alert_id=self._alert_id(key, entry.episode, now_ns),
            rule=signal.rule,
            subject=signal.subject,
            state="open",
            severity=_severity(signal),
            message=signal.message,
            site=self.site,
            grid=signal.grid,
            opened_ns=now_ns,
            updated_ns=now_ns,
            data=signal.data,
            hub_id=self.hub_id,
            reopened=reopened,
        )
        self._by_id[alert.alert_id] = key
        load.open += 1
        entry.alert = alert
        return alert, entry.to_json()

    def _update(self, entry: _Entry, alert: Alert, signal: Signal, now_ns: int) -> Change | None:
        severity = _severity(signal)
        if severity == alert.severity and signal.message == alert.message:
            return None
        entry.alert = replace(
            alert,
            state="updated",
            severity=severity,
            message=signal.message,
            data=signal.data,
            grid=signal.grid if signal.grid.grid else alert.grid,
            updated_ns=now_ns,
            seq=alert.seq + 1,
        )
        return entry.alert, entry.to_json()

    def _resolve(
        self, entry: _Entry, alert: Alert, message: str, data: dict[str, Any], now_ns: int
    ) -> Change:
        resolved = replace(
            alert,
            state="resolved",
            message=message or f"{alert.message} — resolved",
            data={**alert.data, **data},
            updated_ns=now_ns,
            resolved_ns=now_ns,
            seq=alert.seq + 1,
        )
        entry.alert = None
        entry.last_resolved_ns = now_ns
        entry.last_was_acked = alert.acknowledged_ns is not None
        entry.last = resolved
        entry.came_back = False
        self._by_id.pop(alert.alert_id, None)
        self._remember(f"{alert.rule}|{alert.subject}", resolved)
        if alert.rule != STORM_RULE:
            self._rule_load(alert.rule).open -= 1
        return resolved, entry.to_json()

    # --- storm control ---------------------------------------------------------------------------

    def _fold(self, storm_key: str, signal: Signal, now_ns: int) -> Change | None:
        """Count a new subject into its rule's storm alert instead of opening its own alert.
        The storm alert opens at once, then changes at most once per `update_s` (on tick)."""
        self.folded += 1
        load = self._rule_load(signal.rule)
        load.folded_since_update += 1
        storm = self._entries.setdefault(storm_key, _Entry())
        if storm.alert is not None:
            samples = storm.alert.data["samples"]
            if len(samples) < self.storm.samples:
                samples.append(signal.subject)
            storm.alert.data["folded"] += 1
            return None
        storm.episode += 1
        data = {"rule": signal.rule, "folded": 1, "samples": [signal.subject][: self.storm.samples]}
        alert = Alert(
            alert_id=self._alert_id(storm_key, storm.episode, now_ns),
            rule=STORM_RULE,
            subject=signal.rule,
            state="open",
            severity=_severity(signal),
            message=_storm_message(signal.rule, 1),
            site=self.site,
            grid=signal.grid,
            opened_ns=now_ns,
            updated_ns=now_ns,
            data=data,
            hub_id=self.hub_id,
        )
        self._by_id[alert.alert_id] = storm_key
        storm.alert = alert
        load.folded_since_update, load.last_update_ns = 0, now_ns
        return alert, storm.to_json()

    def tick(self, now_ns: int) -> tuple[list[Change], list[str]]:
        """Storm alerts report their count (at most once per `update_s`) and resolve once their
        rule is back under both limits for a whole minute; resolved entries past the cooldown
        are forgotten. Returns (changes, keys of pruned entries)."""
        changes = []
        for rule, load in self._load.items():
            load.roll(now_ns)
            storm = self._entries.get(f"{STORM_RULE}|{rule}")
            if storm is None or storm.alert is None:
                continue
            calm = (
                load.last_window <= self.storm.max_new_per_minute
                and load.in_window <= self.storm.max_new_per_minute
                and load.open < self.storm.max_open
                and now_ns - storm.alert.opened_ns >= 60 * NS
            )
            folded = storm.alert.data["folded"]
            if calm:
                message = f"alert storm over: {folded} new {rule} alerts were folded"
                changes.append(self._resolve(storm, storm.alert, message, {}, now_ns))
            elif (
                load.folded_since_update
                and now_ns - load.last_update_ns >= self.storm.update_s * NS
            ):
                storm.alert = replace(
                    storm.alert,
                    state="updated",
                    message=_storm_message(rule, folded),
                    data={**storm.alert.data, "samples": list(storm.alert.data["samples"])},
                    updated_ns=now_ns,
                    seq=storm.alert.seq + 1,
                )
                load.folded_since_update, load.last_update_ns = 0, now_ns
                changes.append((storm.alert, storm.to_json()))
        return changes, self._prune(now_ns)

    def _prune(self, now_ns: int) -> list[str]:
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.alert is None
            and (
                entry.last_resolved_ns is None
                or now_ns - entry.last_resolved_ns >= self.cooldown_ns
            )
        ]
        for key in stale:
            del self._entries[key]
        self.pruned += len(stale)
        return stale

    def _rule_load(self, rule: str) -> _RuleLoad:
        load = self._load.get(rule)
        if load is None:
            load = self._load[rule] = _RuleLoad()
        return load

    # --- acknowledgements ------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, by: str, now_ns: int) -> Change | None:
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

    # --- feedback and the closed loop ------------------------------------------------------------

    def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Record the platform's verdict on an open alert or one of the last RECENT_RESOLVED
        resolved ones; the first verdict stands."""
        found = self._find(feedback.alert_id)
        if found is None:
            return FeedbackResult("unknown")
        key, alert = found
        if alert.feedback:
            return FeedbackResult("duplicate" if alert.feedback == feedback.verdict else "conflict")
        alert = replace(alert, feedback=feedback.verdict)
        if feedback.verdict == "false_alarm":
            self.false_alarms[alert.rule] += 1
        entry = self._entries.get(key)
        if alert.resolved_ns is None:
            assert entry is not None
            entry.alert = alert
        else:
            self._remember(key, alert)
            if entry is None or entry.last is None or entry.last.alert_id != alert.alert_id:
                return FeedbackResult("recorded", alert)  # its entry was already forgotten
            entry.last = alert
        return FeedbackResult("recorded", alert, (key, entry.to_json()))

    def _find(self, alert_id: str) -> tuple[str, Alert] | None:
        key = self._by_id.get(alert_id)
        entry = self._entries.get(key) if key else None
        if key and entry is not None and entry.alert is not None:
            return key, entry.alert
        return self._recent.get(alert_id)

    def _remember(self, key: str, resolved: Alert) -> None:
        self._recent[resolved.alert_id] = (key, resolved)
        self._recent.move_to_end(resolved.alert_id)
        while len(self._recent) > RECENT_RESOLVED:
            self._recent.popitem(last=False)

    def _came_back(self, entry: _Entry | None, now_ns: int) -> int:
        """A subject raised again within the cooldown after resolving reopens its last episode:
        recorded once per episode (for `take_comebacks`), whether the new raise is suppressed
        (it was acknowledged) or opens a new episode. Returns the count of reopenings in a row
        (0 if this raise is no reopening)."""
        if entry is None or entry.last is None or entry.last_resolved_ns is None:
            return 0
        if now_ns - entry.last_resolved_ns >= self.cooldown_ns:
            return 0
        if not entry.came_back:
            entry.came_back = True
            entry.last = replace(entry.last, reopened=entry.last.reopened + 1)
            key = f"{entry.last.rule}|{entry.last.subject}"
            self._remember(key, entry.last)
            self._comebacks.append((entry.last, entry.to_json()))
        return entry.last.reopened

    def take_comebacks(self) -> list[Change]:
        """Resolved alerts reopened since the last call, with their entry json to persist."""
        taken, self._comebacks = self._comebacks, []
        return taken

    def _cooling_down(self, entry: _Entry, now_ns: int) -> bool:
        return (
            entry.last_was_acked
            and entry.last_resolved_ns is not None
            and now_ns - entry.last_resolved_ns < self.cooldown_ns
        )

    def _alert_id(self, key: str, episode: int, now_ns: int) -> str:
        """Unique across installs (hub_id) and across pruned state (episode restarts at 1 once
        a subject's entry was forgotten, so the opening time is mixed in too)."""
        text = f"{self.hub_id}|{self.site}|{key}|{episode}|{now_ns}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _severity(signal: Signal) -> str:
    return signal.severity if signal.severity in SEVERITIES else "warning"


def _storm_message(rule: str, folded: int) -> str:
    return f"alert storm: {folded} new {rule} alerts folded into this one"
