"""The closed loop measured: `alert_response` points on acknowledge, resolve and feedback."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest

from hub.alerts import RECENT_RESOLVED, AlertManager, StormLimits
from hub.clock import ManualClock
from hub.engine import AlertBatch, Engine
from hub.feedback import MAX_FEEDBACK_BYTES, Feedback, parse_feedback
from hub.outbox import Commit
from hub.records import GridTags, Record
from hub.rules import Signal
from hub.rules.state import NoState

NS = 1_000_000_000
GRID = GridTags("G1", "M1", "P1")


class Switch:
    """A rule whose alerts the test turns on and off: {subject: active}, read on each tick."""

    name = "switch"
    state_class = NoState

    def __init__(self) -> None:
        self.wanted: dict[str, bool] = {}

    def on_record(self, state: NoState, record: Record, now_ns: int) -> list[Signal]:
        return []

    def on_tick(self, state: NoState, now_ns: int) -> list[Signal]:
        signals = [
            Signal(
                rule="switch",
                subject=subject,
                active=active,
                severity="critical",
                message="m",
                data={},
                grid=GRID,
            )
            for subject, active in self.wanted.items()
        ]
        self.wanted = {}
        return signals


def lines(batch: AlertBatch) -> list[bytes]:
    commit = Commit()
    batch.fill(commit, [])
    return list(commit.alert_points)


_FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^,]+)')


def parse(line: bytes) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Just enough line protocol for these points (no spaces or commas in tags)."""
    head, rest = line.decode().split(" ", 1)
    field_text, time_text = rest.rsplit(" ", 1)
    measurement, *tag_pairs = head.split(",")
    tags = dict(pair.split("=", 1) for pair in tag_pairs)
    fields: dict[str, Any] = {}
    for key, raw in _FIELD.findall(field_text):
        if raw.startswith('"'):
            fields[key] = raw[1:-1]
        elif raw.endswith("i"):
            fields[key] = int(raw[:-1])
        elif raw in ("true", "false", "t", "f", "T", "F", "True", "False"):
            fields[key] = raw.lower() in ("true", "t")
        else:
            fields[key] = float(raw)
    return measurement, tags, fields, int(time_text)


def responses(batch: AlertBatch) -> list[tuple[dict[str, str], dict[str, Any], int]]:
    return [(t, f, ts) for m, t, f, ts in map(parse, lines(batch)) if m == "alert_response"]


class Loop:
    """An engine on a manual clock with one switchable rule."""

    def __init__(self, cooldown_s: float = 900) -> None:
        self.clock = ManualClock()
        self.t0 = self.clock.now_ns()
        self.rule = Switch()
        self.engine = Engine([self.rule], AlertManager("s1", cooldown_s))

    def at(self, seconds: float) -> int:
        self.clock.advance(seconds - (self.clock.now_ns() - self.t0) / NS)
        return self.clock.now_ns()

    def set(self, seconds: float, **wanted: bool) -> AlertBatch:
        now = self.at(seconds)
        self.rule.wanted = {k.replace("_", ":"): v for k, v in wanted.items()}
        return self.engine.on_tick(now)


def test_ack_after_120_s_and_resolve_after_600_s_give_their_seconds() -> None:
    loop = Loop()
    opened = loop.set(0, meter_1=True)
    assert responses(opened) == []  # opening is not a response
    alert_id = opened.alerts[0].alert_id
    acked = loop.engine.acknowledge(alert_id, "worker-17", loop.at(120))
    ((tags, fields, ts),) = responses(acked)
    assert tags == {
        "site": "s1",
        "grid": "G1",
        "micro_grid": "M1",
        "police_grid": "P1",
        "rule": "switch",
        "severity": "critical",
        "subject": "meter:1",
        "event": "acknowledged",
    }
    assert fields == {
        "alert_id": alert_id,
        "reopened": 0,
        "seconds_to_ack": 120.0,
        "acknowledged_by": "worker-17",
    }
    assert ts == loop.t0 + 120 * NS
    resolved = loop.set(600, meter_1=False)
    ((tags, fields, ts),) = responses(resolved)
    assert tags["event"] == "resolved" and ts == loop.t0 + 600 * NS
    assert fields == {
        "alert_id": alert_id,
        "reopened": 0,
        "seconds_to_resolve": 600.0,
        "resolved_unacknowledged": False,
        "acknowledged_by": "worker-17",
    }


def test_resolve_without_ack_is_resolved_unacknowledged() -> None:
    loop = Loop()
    loop.set(0, meter_1=True)
    ((tags, fields, _),) = responses(loop.set(45.5, meter_1=False))
    assert tags["event"] == "resolved"
    assert fields["resolved_unacknowledged"] is True
    assert fields["seconds_to_resolve"] == 45.5
    assert "acknowledged_by" not in fields and "seconds_to_ack" not in fields


def test_a_name_as_acknowledged_by_never_reaches_the_point() -> None:
    loop = Loop()
    alert_id = loop.set(0, meter_1=True).alerts[0].alert_id
    ((_, fields, _),) = responses(loop.engine.acknowledge(alert_id, "Zhang Wei", loop.at(5)))
    assert fields["acknowledged_by"] == ""
    ((_, fields, _),) = responses(loop.set(10, meter_1=False))
    assert "acknowledged_by" not in fields


def test_reopened_counts_raises_within_the_cooldown_after_resolving() -> None:
    loop = Loop(cooldown_s=600)
    first = loop.set(0, meter_1=True).alerts[0]
    loop.set(10, meter_1=False)
    batch = loop.set(100, meter_1=True)  # back within the cooldown: a new episode
    assert batch.alerts[0].reopened == 1
    ((tags, fields, ts),) = responses(batch)
    assert tags["event"] == "reopened" and ts == loop.clock.now_ns()
    assert fields == {
        "alert_id": first.alert_id,  # the episode that came back
        "reopened": 1,
        "seconds_after_resolve": 90.0,
        "was_acknowledged": False,
    }
    ((_, fields, _),) = responses(loop.set(110, meter_1=False))
    assert fields["reopened"] == 1
    assert loop.set(200, meter_1=True).alerts[0].reopened == 2  # again: two in a row
    loop.set(210, meter_1=False)
    assert loop.set(900, meter_1=True).alerts[0].reopened == 0  # after the cooldown


def test_acknowledged_alert_coming_back_is_suppressed_but_counted_once() -> None:
    loop = Loop(cooldown_s=600)
    alert_id = loop.set(0, meter_1=True).alerts[0].alert_id
    loop.engine.acknowledge(alert_id, "worker-5", loop.at(30))
    loop.set(60, meter_1=False)
    batch = loop.set(90, meter_1=True)
    assert batch.alerts == []  # suppressed within the cooldown, as before
    ((tags, fields, _),) = responses(batch)
    assert tags["event"] == "reopened"
    assert (fields["alert_id"], fields["reopened"], fields["seconds_after_resolve"]) == (
        alert_id,
        1,
        30.0,
    )
    assert fields["was_acknowledged"] is True
    assert loop.set(95, meter_1=True).empty()  # still there: no second reopening
    restored = AlertManager("s1", 600)  # the reopening is persisted with its entry
    restored.restore({k: json.loads(v) for k, v in batch.state.items()})
    signal = Signal(
        rule="switch",
        subject="meter:1",
        active=True,
        severity="critical",
        message="m",
        data={},
        grid=GRID,
    )
    assert restored.apply(signal, loop.at(100)) is None and restored.take_comebacks() == []


def test_open_and_resolve_in_one_step_are_distinct_points() -> None:
    """Two subjects resolved at one instant, and one subject resolved twice in one batch, never
    share (measurement, tag set, time)."""
    loop = Loop()
    loop.set(0, meter_1=True, meter_2=True)
    batch = loop.set(30, meter_1=False, meter_2=False)
    now = loop.clock.now_ns()
    rule = loop.rule
    rule.wanted = {"meter:1": True}
    batch.alerts += loop.engine.on_tick(now).alerts
    rule.wanted = {"meter:1": False}
    batch.alerts += loop.engine.on_tick(now).alerts
    keys = [(tuple(sorted(t.items())), ts) for t, _, ts in responses(batch)]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_false_alarm_feedback_counted_per_rule_and_written() -> None:
    loop = Loop()
    first = loop.set(0, meter_1=True, meter_2=True).alerts
    ids = {a.subject: a.alert_id for a in first}
    loop.set(60, meter_1=False)  # feedback may come after the alert resolved
    result, batch = loop.engine.feedback(
        Feedback(alert_id=ids["meter:1"], verdict="false_alarm", by="worker-3", note_id="note-88"),
        loop.at(90),
    )
    assert result.outcome == "recorded"
    ((tags, fields, ts),) = responses(batch)
    assert tags["event"] == "feedback" and tags["rule"] == "switch" and ts == loop.clock.now_ns()
    assert fields == {
        "alert_id": ids["meter:1"],
        "feedback": "false_alarm",
        "false_alarm": 1,
        "feedback_by": "worker-3",
        "note_id": "note-88",
    }
    handled, batch = loop.engine.feedback(
        Feedback(alert_id=ids["meter:2"], verdict="handled", by="w4"), loop.at(95)
    )
    assert handled.outcome == "recorded" and responses(batch)[0][1]["false_alarm"] == 0
    # at-least-once delivery: the same verdict again is no second false alarm
    again, batch = loop.engine.feedback(
        Feedback(alert_id=ids["meter:1"], verdict="false_alarm", by="w3"), loop.at(99)
    )
    assert again.outcome == "duplicate" and batch.empty()
    other, _ = loop.engine.feedback(
        Feedback(alert_id=ids["meter:1"], verdict="handled", by="w3"), loop.at(99)
    )
    assert other.outcome == "conflict"
    unknown, _ = loop.engine.feedback(
        Feedback(alert_id="0" * 20, verdict="false_alarm", by="w3"), loop.at(99)
    )
    assert unknown.outcome == "unknown"
    assert loop.engine.alerts.false_alarms == {"switch": 1}


def test_feedback_on_open_alert_survives_a_restart() -> None:
    loop = Loop()
    alert_id = loop.set(0, meter_1=True).alerts[0].alert_id
    _, batch = loop.engine.feedback(
        Feedback(alert_id=alert_id, verdict="false_alarm", by="w3"), loop.at(5)
    )
    restored = AlertManager("s1", 900)
    restored.restore({k: json.loads(v) for k, v in batch.state.items()})
    assert (
        restored.feedback(Feedback(alert_id=alert_id, verdict="false_alarm", by="w3")).outcome
        == "duplicate"
    )


def test_feedback_on_resolved_alert_survives_a_restart_within_the_cooldown() -> None:
    loop = Loop()
    alert_id = loop.set(0, meter_1=True).alerts[0].alert_id
    resolved = loop.set(30, meter_1=False)
    restored = AlertManager("s1", 900)
    restored.restore({k: json.loads(v) for k, v in resolved.state.items()})
    result = restored.feedback(Feedback(alert_id=alert_id, verdict="false_alarm", by="w3"))
    assert result.outcome == "recorded" and result.state is not None
    assert restored.false_alarms == {"switch": 1}


def test_resolved_alerts_kept_for_feedback_are_bounded() -> None:
    mgr = AlertManager(
        "s1", cooldown_s=0, storm=StormLimits(max_new_per_minute=RECENT_RESOLVED * 2)
    )
    ids = []
    for i in range(RECENT_RESOLVED + 1):
        signal = Signal(
            rule="r",
            subject=f"meter:{i}",
            active=True,
            severity="warning",
            message="m",
            data={},
            grid=GRID,
        )
        opened, _ = mgr.apply(signal, i)  # type: ignore[misc]
        mgr.apply(Signal(rule="r", subject=f"meter:{i}", active=False), i)
        ids.append(opened.alert_id)
    mgr.tick(RECENT_RESOLVED + 1)  # past the cooldown: every entry is forgotten
    assert mgr.tracked() == 0
    assert mgr.feedback(Feedback(alert_id=ids[0], verdict="handled", by="w")).outcome == "unknown"
    assert mgr.feedback(Feedback(alert_id=ids[1], verdict="handled", by="w")).outcome == "recorded"


# --- the feedback document ----------------------------------------------------------------------


def doc(**changes: Any) -> bytes:
    base = {
        "schema": "harbourgrid.feedback/1",
        "alert_id": "5f0c1d8e2a9b47c3d6e1",
        "verdict": "false_alarm",
        "note_id": "n-1",
        "by": "worker-17",
    }
    return json.dumps({k: v for k, v in {**base, **changes}.items() if v is not None}).encode()


def test_valid_feedback_parses_and_matches_schema() -> None:
    schema = json.loads(resources.files("hub").joinpath("schemas/feedback.schema.json").read_text())
    payload = doc()
    jsonschema.validate(json.loads(payload), schema)
    assert parse_feedback(payload) == Feedback(
        alert_id="5f0c1d8e2a9b47c3d6e1", verdict="false_alarm", by="worker-17", note_id="n-1"
    )
    assert (
        parse_feedback(doc(alert_id=None), "5f0c1d8e2a9b47c3d6e1").alert_id
        == "5f0c1d8e2a9b47c3d6e1"
    )


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (doc(verdict="maybe"), "verdict"),
        (doc(by="Zhang Wei"), "worker id"),
        (doc(by="+86 138 0000 0000"), "worker id"),
        (doc(note_id="the elder was visiting her daughter"), "note_id"),
        (doc(note_id="n" * 65), "note_id"),
        (doc(alert_id="XYZ"), "alert_id"),
        (doc(schema="harbourgrid.feedback/9"), "schema"),
        (doc(note="free text"), "unknown keys"),
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b" " * (MAX_FEEDBACK_BYTES + 1), "bytes"),
    ],
)
def test_bad_feedback_is_refused_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_feedback(payload)


def test_refusal_does_not_repeat_a_name_used_as_a_key() -> None:
    with pytest.raises(ValueError) as refused:
        parse_feedback(doc(**{"Zhang Wei": "x"}))
    assert "Zhang" not in str(refused.value) and "unknown keys: ?" in str(refused.value)


def test_path_and_body_alert_ids_must_agree() -> None:
    with pytest.raises(ValueError, match="differs"):
        parse_feedback(doc(), "0" * 20)
