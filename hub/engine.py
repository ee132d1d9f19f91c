"""Rules engine: runs every rule over records and clock ticks, keeps their state, makes alerts."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.alerts import Alert, AlertManager, FeedbackResult
from hub.feedback import Feedback
from hub.outbox import Commit
from hub.records import Record, to_line
from hub.registry import Observation
from hub.rules import Rule, Signal
from hub.rules.state import RuleState

log = logging.getLogger("hub.engine")


@dataclass(slots=True, kw_only=True)
class AlertBatch:
    """Alert changes of one step, in the shape the outbox commits."""

    alerts: list[Alert] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)  # alert_state keys to forget
    feedback: list[tuple[Alert, Feedback, int]] = field(default_factory=list)  # (…, now_ns)
    reopened: list[tuple[Alert, int]] = field(default_factory=list)  # (resolved alert, now_ns)
    # The state (JSON of its `to_json()`) of each rule that signalled in this step: committed
    # in the same transaction as the alert changes, so a crash cannot keep one without the
    # other (it rides along; on its own it is left to the periodic snapshot).
    rule_state: dict[str, str] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.alerts and not self.pruned and not self.feedback and not self.reopened

    def fill(self, commit: Commit, destinations: Sequence[str]) -> None:
        commit.alert_points = self._points()
        if destinations:
            payloads = [json.dumps(a.payload(), ensure_ascii=False).encode() for a in self.alerts]
            commit.deliveries = [(dest, p) for p in payloads for dest in destinations]
        else:
            commit.deliveries = []
        commit.alert_state = list(self.state.items())
        commit.pruned_state = [k for k in self.pruned if k not in self.state]
        commit.rule_state = list(self.rule_state.items())

    def _points(self) -> list[bytes]:
        """One `alert` point per change, and an `alert_response` point per acknowledgement,
        resolution and feedback; changes of one subject in this batch (open then resolve in
        one step) get timestamps 1 ns apart so none overwrites another in InfluxDB."""
        seen: Counter[tuple[str, str]] = Counter()
        points = []
        for alert in self.alerts:
            series = (alert.rule, alert.subject)
            offset = seen[series]
            points.append(alert.point(offset_ns=offset))
            if alert.state in RESPONSE_EVENTS:
                points.append(alert.response_point(alert.state, alert.updated_ns, offset))
            seen[series] += 1
        fed: Counter[tuple[str, str]] = Counter()
        for alert, feedback, now_ns in self.feedback:
            series = (alert.rule, alert.subject)
            points.append(alert.feedback_point(feedback, now_ns, fed[series]))
            fed[series] += 1
        back: Counter[tuple[str, str]] = Counter()
        for alert, now_ns in self.reopened:
            series = (alert.rule, alert.subject)
            points.append(alert.response_point("reopened", now_ns, back[series]))
            back[series] += 1
        return [to_line(point).encode() for point in points]


RESPONSE_EVENTS = ("acknowledged", "resolved")


def _record_types(rule: Rule) -> tuple[type, ...] | None:
    """The record classes a rule declares it looks at (`record_types`), None if it takes all."""
    types = getattr(rule, "record_types", None)
    return tuple(types) if types is not None else None


def _select(
    records: list[Record],
    observations: list[Observation | None],
    types: tuple[type, ...] | None,
    observes: bool,
) -> list[Any]:
    """The items one rule takes: of its record types, as observations if it observes."""
    picked = [
        (o if observes and o is not None else r)
        for r, o in zip(records, observations, strict=True)
        if types is None or isinstance(r, types)
    ]
    return picked


def _dump(state: RuleState) -> str:
    return json.dumps(state.to_json(), separators=(",", ":"))


def _load_state(rule: Rule, raw: Any) -> RuleState:
    try:
        return rule.state_class.from_json(raw)
    except Exception as exc:  # any unreadable state: this rule starts afresh, the hub runs on
        log.warning(
            "rule %s: persisted state not restored (%s: %s); starting with a fresh state",
            rule.name,
            type(exc).__name__,
            exc,
        )
        return rule.state_class()


class Engine:
    def __init__(self, rules: Sequence[Rule], alerts: AlertManager) -> None:
        self.rules = list(rules)
        self._rule_types = [_record_types(rule) for rule in self.rules]
        self.alerts = alerts
        self.states: dict[str, RuleState] = {r.name: r.state_class() for r in self.rules}
        self.rule_errors: Counter[str] = Counter()
        for rule in self.rules:
            if hasattr(rule, "report_failure"):  # a rule group: its parts fail one by one
                rule.report_failure = self._rule_failed
        self.alert_counts: Counter[str] = Counter()
        self.feedback_counts: Counter[str] = Counter()  # by outcome (recorded, duplicate, …)
        self.listeners: list[Callable[[Alert], None]] = []

    def restore(self, rule_state: dict[str, Any], alert_state: dict[str, Any]) -> None:
        """Rule states from their persisted JSON (as parsed), alert states likewise. A rule
        group that replaced several rules (`legacy_names`) is restored from their rows when
        it has none of its own. A state this hub cannot read starts afresh, with a warning."""
        for rule in self.rules:
            raw = rule_state.get(rule.name)
            if raw is None:
                legacy = {
                    n: rule_state[n] for n in getattr(rule, "legacy_names", ()) if n in rule_state
                }
                raw = legacy or None
            if raw is not None:
                self.states[rule.name] = _load_state(rule, raw)
        self.alerts.restore(alert_state)

    def snapshot(self) -> dict[str, str]:
        return {name: _dump(state) for name, state in self.states.items()}

    def on_records(self, items: Sequence[Record | Observation], now_ns: int) -> AlertBatch:
        """Each rule over the records it takes, in arrival order; rule after rule. A rule that
        declares `observes = True` gets the pipeline's Observation (record plus zones), the
        others the bare record."""
        batch = AlertBatch()
        observations = [i if isinstance(i, Observation) else None for i in items]
        records = [i.record if isinstance(i, Observation) else i for i in items]
        selected: dict[tuple[tuple[type, ...] | None, bool], Sequence[Any]] = {}
        for rule, types in zip(self.rules, self._rule_types, strict=True):
            observes = bool(getattr(rule, "observes", False))
            mine = selected.get((types, observes))
            if mine is None:
                mine = selected[(types, observes)] = _select(records, observations, types, observes)
            state = self.states[rule.name]
            on_record = rule.on_record
            for record in mine:
                try:
                    signals = on_record(state, record, now_ns)
                except Exception:  # a rule bug must not stop ingest; counted and logged
                    self._rule_failed(rule.name)
                    continue
                if signals:
                    self._apply(rule.name, signals, now_ns, batch)
        self._dirty_states(batch)
        return batch

    def on_tick(self, now_ns: int) -> AlertBatch:
        batch = AlertBatch()
        changes, batch.pruned = self.alerts.tick(now_ns)
        for changed in changes:
            self._record(changed, batch)
        for rule in self.rules:
            try:
                signals = rule.on_tick(self.states[rule.name], now_ns)
            except Exception:
                self._rule_failed(rule.name)
                continue
            self._apply(rule.name, signals, now_ns, batch)
        self._dirty_states(batch)
        return batch

    def acknowledge(self, alert_id: str, by: str, now_ns: int) -> AlertBatch:
        batch = AlertBatch()
        changed = self.alerts.acknowledge(alert_id, by, now_ns)
        if changed:
            self._record(changed, batch)
        return batch

    def feedback(self, feedback: Feedback, now_ns: int) -> tuple[FeedbackResult, AlertBatch]:
        """The platform's verdict on an alert; a recorded one becomes an `alert_response` point
        (and persisted alert state) in the returned batch."""
        batch = AlertBatch()
        result = self.alerts.feedback(feedback)
        self.feedback_counts[result.outcome] += 1
        if result.alert is not None:
            batch.feedback.append((result.alert, feedback, now_ns))
        if result.state is not None:
            batch.state[result.state[0]] = result.state[1]
        return result, batch

    def _apply(self, rule: str, signals: list[Signal], now_ns: int, batch: AlertBatch) -> None:
        if signals:
            batch.rule_state[rule] = ""  # filled once at the end of the step
        for signal in signals:
            changed = self.alerts.apply(signal, now_ns)
            for alert, entry_json in self.alerts.take_comebacks():  # before `changed`: older state
                batch.reopened.append((alert, now_ns))
                batch.state[f"{alert.rule}|{alert.subject}"] = entry_json
            if changed:
                self._record(changed, batch)

    def _dirty_states(self, batch: AlertBatch) -> None:
        """Serialise, once per step, the state of every rule that signalled."""
        for name in batch.rule_state:
            batch.rule_state[name] = _dump(self.states[name])

    def _record(self, changed: tuple[Alert, str], batch: AlertBatch) -> None:
        alert, entry_json = changed
        batch.alerts.append(alert)
        batch.state[f"{alert.rule}|{alert.subject}"] = entry_json
        self.alert_counts[alert.state] += 1

    def _rule_failed(self, name: str) -> None:
        if self.rule_errors[name] == 0:
            log.exception("rule %s failed; further failures are only counted", name)
        self.rule_errors[name] += 1

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Tell in-process listeners (the demo console) about committed alert changes."""
        for alert in alerts:
            for listener in self.listeners:
                listener(alert)
