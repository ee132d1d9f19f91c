"""Rules engine: runs every rule over records and clock ticks, keeps their state, makes alerts."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from hub.alerts import Alert, AlertManager, FeedbackResult
from hub.feedback import Feedback
from hub.outbox import Commit, StoredState
from hub.records import Record, to_line
from hub.registry import Observation
from hub.rules import Rule, Signal
from hub.rules.state import KeyedState, RuleState, is_keyed

log = logging.getLogger("hub.engine")


@dataclass(slots=True, kw_only=True)
class AlertBatch:
    """Alert changes of one step, in the shape the outbox commits."""

    alerts: list[Alert] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)  # alert_state keys to forget
    feedback: list[tuple[Alert, Feedback, int]] = field(default_factory=list)  # (…, now_ns)
    reopened: list[tuple[Alert, int]] = field(default_factory=list)  # (resolved alert, now_ns)
    # What this step changed in the rules' states, committed in the same transaction as its
    # records and alert changes, so a crash keeps both or neither: the header (a keyed state's)
    # or whole JSON (any other) of each rule whose one changed, and the changed entries of
    # keyed states by (rule, key), None for an entry that is gone.
    rule_state: dict[str, str] = field(default_factory=dict)
    rule_entries: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (
            self.alerts
            or self.pruned
            or self.feedback
            or self.reopened
            or self.rule_state
            or self.rule_entries
        )

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
        commit.rule_entries = [(r, k, v) for (r, k), v in self.rule_entries.items()]

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


def _compact_encoder() -> Callable[[Any], str]:
    """JSON text of a value, compact. JSONEncoder.encode builds a new C encoder on every call,
    which costs as much as encoding a vessel's entry; this one is built once."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return json.JSONEncoder(separators=(",", ":")).encode

    def unserialisable(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    iterencode = make(
        None, unserialisable, json.encoder.encode_basestring_ascii, None, ":", ",",
        False, False, True,
    )  # fmt: skip
    return lambda value: "".join(iterencode(value, 0))


_encode = _compact_encoder()


def _dump(state: RuleState) -> str:
    return _encode(state.to_json())


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _load_state(rule: Rule, raw: Any) -> RuleState | None:
    """The rule's state from its stored form (None if unreadable: the rule starts afresh)."""
    try:
        if not isinstance(raw, StoredState):
            return rule.state_class.from_json(raw)
        if is_keyed(rule.state_class):
            keyed: Any = rule.state_class
            return keyed.from_entries(raw.header, raw.entries)  # type: ignore[no-any-return]
        return rule.state_class.from_json(raw.header)
    except Exception as exc:  # any unreadable state: this rule starts afresh, the hub runs on
        log.warning(
            "rule %s: persisted state not restored (%s: %s); starting with a fresh state",
            rule.name,
            type(exc).__name__,
            exc,
        )
        return None


@dataclass(slots=True, frozen=True, kw_only=True)
class StateRewrite:
    """Whole rule states to store at start, replacing what an earlier layout (or an
    unreadable state) left: arguments of `Outbox.replace_rule_state`."""

    headers: list[tuple[str, str]]
    entries: list[tuple[str, str, str | None]]
    old_rows: list[str]


class Engine:
    def __init__(self, rules: Sequence[Rule], alerts: AlertManager) -> None:
        self.rules = list(rules)
        self._rule_types = [_record_types(rule) for rule in self.rules]
        self.alerts = alerts
        self.states: dict[str, RuleState] = {r.name: r.state_class() for r in self.rules}
        self._keyed = {r.name: is_keyed(r.state_class) for r in self.rules}
        self._header_digests: dict[str, bytes] = {}  # of each header as last handed to a commit
        self._unsaved: dict[str, set[str]] = {}  # written by a commit that failed: write again
        self._rewrite: set[str] = set()
        self._old_rows: list[str] = []
        self.rule_errors: Counter[str] = Counter()
        for rule in self.rules:
            if hasattr(rule, "report_failure"):  # a rule group: its parts fail one by one
                rule.report_failure = self._rule_failed
        self.alert_counts: Counter[str] = Counter()
        self.feedback_counts: Counter[str] = Counter()  # by outcome (recorded, duplicate, …)
        self.listeners: list[Callable[[Alert], None]] = []

    def restore(self, rule_state: dict[str, Any], alert_state: dict[str, Any]) -> None:
        """Rule states as `Outbox.load_rule_state` gives them (a `StoredState`, or the parsed
        JSON of the earlier single-text layout), alert states likewise. A rule group that
        replaced several rules (`legacy_names`) is restored from their rows when it has none
        of its own. A state this hub cannot read starts afresh, with a warning. What did not
        come from the current layout is stored whole by `rewrite()`."""
        for rule in self.rules:
            raw = rule_state.get(rule.name)
            if raw is None:
                legacy = getattr(rule, "legacy_names", ())
                raw = {n: rule_state[n] for n in legacy if n in rule_state} or None
            if raw is None:
                continue
            state = _load_state(rule, raw)
            if state is not None:
                self.states[rule.name] = state
            if state is None or not isinstance(raw, StoredState):
                self._rewrite.add(rule.name)
                rows = [rule.name, *getattr(rule, "legacy_names", ())]  # all it replaces
                self._old_rows += [
                    n
                    for n in rows
                    if n in rule_state and not isinstance(rule_state[n], StoredState)
                ]
        self.alerts.restore(alert_state)

    def rewrite(self) -> StateRewrite | None:
        """The whole state of each rule restored from an earlier layout or not restored at all,
        once (None when there is none): stored at start, it replaces the old rows."""
        if not self._rewrite:
            return None
        headers: list[tuple[str, str]] = []
        entries: list[tuple[str, str, str | None]] = []
        for name in sorted(self._rewrite):
            state = self.states[name]
            if self._keyed[name]:
                keyed: Any = state
                header = _encode(keyed.header_json())
                entries += [(name, k, _encode(keyed.entry_json(k))) for k in keyed.entry_keys()]
                keyed.take_changed()
            else:
                header = _dump(state)
            headers.append((name, header))
            self._header_digests[name] = _digest(header)
        rewrite = StateRewrite(headers=headers, entries=entries, old_rows=self._old_rows)
        self._rewrite, self._old_rows = set(), []
        return rewrite

    def unsaved(self, commit: Commit) -> None:
        """The commit carrying these state changes failed: write them again with the next."""
        for rule, _ in commit.rule_state:
            self._header_digests.pop(rule, None)
            self._unsaved.setdefault(rule, set())
        for rule, key, _ in commit.rule_entries:
            self._unsaved.setdefault(rule, set()).add(key)

    def snapshot(self) -> dict[str, str]:
        """Every rule's whole state as JSON text (its `to_json()`)."""
        return {name: _dump(state) for name, state in self.states.items()}

    def on_records(self, items: Sequence[Record | Observation], now_ns: int) -> AlertBatch:
        """Each rule over the records it takes, in arrival order; rule after rule. A rule that
        declares `observes = True` gets the pipeline's Observation (record plus zones), the
        others the bare record."""
        batch = AlertBatch()
        observations = [i if isinstance(i, Observation) else None for i in items]
        records = [i.record if isinstance(i, Observation) else i for i in items]
        selected: dict[tuple[tuple[type, ...] | None, bool], Sequence[Any]] = {}
        touched: dict[str, set[str]] = {}  # rules that ran, with the entries they changed
        for rule, types in zip(self.rules, self._rule_types, strict=True):
            observes = bool(getattr(rule, "observes", False))
            mine = selected.get((types, observes))
            if mine is None:
                mine = selected[(types, observes)] = _select(records, observations, types, observes)
            if not mine:
                continue
            name = rule.name
            state = self.states[name]
            on_record = rule.on_record
            keys = touched[name] = set()
            for record in mine:
                try:
                    signals = on_record(state, record, now_ns)
                except Exception:  # a rule bug must not stop ingest; counted and logged
                    self._rule_failed(name)
                    continue
                if signals:
                    self._apply(name, signals, now_ns, batch, keys)
            if self._keyed[name]:
                bare = selected.get((types, False))
                if bare is None:
                    bare = selected[(types, False)] = _select(records, observations, types, False)
                keys.update(cast(KeyedState, state).record_keys(bare))
        self._save_states(batch, touched)
        return batch

    def on_tick(self, now_ns: int) -> AlertBatch:
        batch = AlertBatch()
        changes, batch.pruned = self.alerts.tick(now_ns)
        for changed in changes:
            self._record(changed, batch)
        touched: dict[str, set[str]] = {}
        for rule in self.rules:
            keys = touched[rule.name] = set()
            try:
                signals = rule.on_tick(self.states[rule.name], now_ns)
            except Exception:
                self._rule_failed(rule.name)
                continue
            self._apply(rule.name, signals, now_ns, batch, keys)
        self._save_states(batch, touched)
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

    def _apply(
        self, rule: str, signals: list[Signal], now_ns: int, batch: AlertBatch, keys: set[str]
    ) -> None:
        if signals and self._keyed[rule]:
            keys.update(cast(KeyedState, self.states[rule]).signal_keys(signals))
        for signal in signals:
            changed = self.alerts.apply(signal, now_ns)
            for alert, entry_json in self.alerts.take_comebacks():  # before `changed`: older state
                batch.reopened.append((alert, now_ns))
                batch.state[f"{alert.rule}|{alert.subject}"] = entry_json
            if changed:
                self._record(changed, batch)

    def _save_states(self, batch: AlertBatch, touched: dict[str, set[str]]) -> None:
        """Serialise, once per step, what changed in the states of the rules that ran: the
        entries of keyed states it touched, and each header (or unkeyed state) that differs
        from the one last written."""
        if self._unsaved:
            for name, keys in self._unsaved.items():
                touched.setdefault(name, set()).update(keys)
            self._unsaved = {}
        for name, keys in touched.items():
            state = self.states[name]
            if self._keyed[name]:
                keyed = cast(KeyedState, state)
                keys |= keyed.take_changed()
                for key in keys:
                    value = keyed.entry_json(key)
                    batch.rule_entries[(name, key)] = None if value is None else _encode(value)
                header = _encode(keyed.header_json())
            else:
                header = _dump(state)
            digest = _digest(header)
            if self._header_digests.get(name) != digest:
                self._header_digests[name] = digest
                batch.rule_state[name] = header

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
