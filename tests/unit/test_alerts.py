"""Alert lifecycle: stable ids, open → updated → acknowledged → resolved, cooldown, schema."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from hub.alerts import STORM_RULE, Alert, AlertManager, StormLimits, install_hub_id
from hub.engine import AlertBatch, Engine
from hub.outbox import Commit, Outbox
from hub.publishers import parse_ack
from hub.records import GridTags, Record, WaterMeterReading
from hub.rules import Signal
from hub.rules.state import NoState

NS = 1_000_000_000
T0 = 1_767_225_600 * NS


def raise_(severity: str = "warning", message: str = "m") -> Signal:
    return Signal(
        rule="r",
        subject="meter:1",
        active=True,
        severity=severity,
        message=message,
        data={"litres": 0},
        grid=GridTags("G1", "M1", "P1"),
    )


def test_lifecycle_keeps_id_and_grows_seq() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    opened, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    assert opened.state == "open" and opened.seq == 1
    assert mgr.apply(raise_(), T0 + NS) is None  # nothing changed: no new event
    updated, _ = mgr.apply(raise_("critical", "worse"), T0 + 2 * NS)  # type: ignore[misc]
    assert (updated.state, updated.seq, updated.alert_id) == ("updated", 2, opened.alert_id)
    acked, _ = mgr.acknowledge(opened.alert_id, "worker-7", T0 + 3 * NS)  # type: ignore[misc]
    assert acked.state == "acknowledged" and acked.acknowledged_by == "worker-7"
    resolved, _ = mgr.apply(Signal(rule="r", subject="meter:1", active=False), T0 + 4 * NS)  # type: ignore[misc]
    assert (resolved.state, resolved.seq, resolved.alert_id) == ("resolved", 4, opened.alert_id)
    assert mgr.open_alerts() == []


def test_acknowledged_alert_not_reraised_within_cooldown_then_new_episode() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    first, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    mgr.acknowledge(first.alert_id, "w", T0 + NS)
    mgr.apply(Signal(rule="r", subject="meter:1", active=False), T0 + 2 * NS)
    assert mgr.apply(raise_(), T0 + 300 * NS) is None  # drifting back in: suppressed
    assert mgr.suppressed == 1
    second, _ = mgr.apply(raise_(), T0 + 700 * NS)  # type: ignore[misc]
    assert second.state == "open" and second.alert_id != first.alert_id


def test_unacknowledged_alert_reraises_at_once_and_state_survives_restart() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    first, entry = mgr.apply(raise_(), T0)  # type: ignore[misc]
    restored = AlertManager("s", cooldown_s=600)
    restored.restore({"r|meter:1": json.loads(entry)})
    assert restored.apply(raise_(), T0 + NS) is None  # not re-raised after a restart
    assert restored.open_alerts()[0].alert_id == first.alert_id


def test_payload_matches_published_schema() -> None:
    schema = json.loads(resources.files("hub").joinpath("schemas/alert.schema.json").read_text())
    mgr = AlertManager("s", cooldown_s=0, hub_id="0123456789abcdef")
    opened, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    resolved, _ = mgr.apply(Signal(rule="r", subject="meter:1", active=False), T0 + NS)  # type: ignore[misc]
    for alert in (opened, resolved):
        jsonschema.validate(alert.payload(), schema)
    assert opened.payload()["grid"] == "G1" and opened.payload()["data"] == {"litres": 0}
    assert opened.payload()["hub_id"] == "0123456789abcdef"
    assert opened.payload()["schema"] == "harbourgrid.alert/2"


# --- per-install id (issue 9 item 6) ------------------------------------------------------------


def test_alert_ids_differ_across_fresh_installs(tmp_path: Path) -> None:
    first_install = install_hub_id(tmp_path / "a")
    assert install_hub_id(tmp_path / "a") == first_install  # made once, kept in data_dir
    reinstall = install_hub_id(tmp_path / "b")  # a wiped data_dir: a new install
    assert reinstall != first_install and len(reinstall) == 16
    ids = []
    for hub_id in (first_install, reinstall):
        mgr = AlertManager("s", cooldown_s=0, hub_id=hub_id)
        opened, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
        assert opened.hub_id == hub_id and opened.payload()["hub_id"] == hub_id
        ids.append(opened.alert_id)
    assert ids[0] != ids[1]


def test_alert_ids_stay_unique_after_state_is_pruned() -> None:
    mgr = AlertManager("s", cooldown_s=0, hub_id="0123456789abcdef")
    seen = set()
    for i in range(3):
        opened, _ = mgr.apply(raise_(), T0 + 10 * i * NS)  # type: ignore[misc]
        mgr.apply(Signal(rule="r", subject="meter:1", active=False), T0 + (10 * i + 1) * NS)
        assert mgr.tick(T0 + (10 * i + 2) * NS)[1] == ["r|meter:1"]  # forgotten at once
        seen.add(opened.alert_id)
    assert len(seen) == 3


# --- points unique on (measurement, tags, time) (issue 9 item 4) ---------------------------------


def test_alert_changes_committed_together_are_distinct_points() -> None:
    mgr = AlertManager("s", cooldown_s=0)
    batch = AlertBatch()
    for subject in ("meter:1", "meter:2"):
        opened, _ = mgr.apply(Signal(rule="r", subject=subject, active=True, message="m"), T0)  # type: ignore[misc]
        batch.alerts.append(opened)
    resolved, _ = mgr.apply(Signal(rule="r", subject="meter:1", active=False), T0)  # type: ignore[misc]
    batch.alerts.append(resolved)
    commit = Commit()
    batch.fill(commit, [])
    keys = set()
    for line in commit.alert_points:
        text = line.decode()
        keys.add((text.split(" ", 1)[0], text.rsplit(" ", 1)[1]))
    assert len(keys) == 4  # three alert points and the resolution's alert_response point
    assert any("subject=meter:1" in series for series, _ in keys)


# --- storm control and pruning (issue 9 item 7) --------------------------------------------------


def invalid(i: int) -> Signal:
    return Signal(
        rule="invalid_mmsi",
        subject=f"mmsi:{i:05d}",
        active=True,
        severity="warning",
        message="bad mmsi",
    )


def test_storm_folds_new_subjects_into_one_alert_then_ends() -> None:
    limits = StormLimits(max_new_per_minute=20, max_open=1000, samples=5, update_s=60)
    mgr = AlertManager("s", cooldown_s=600, storm=limits)
    changes: list[Alert] = []
    for i in range(50_000):  # 50,000 spoofed subjects in 50 s
        changed = mgr.apply(invalid(i), T0 + i * NS // 1000)
        if changed:
            changes.append(changed[0])
    individual = [a for a in changes if a.rule == "invalid_mmsi"]
    storms = [a for a in changes if a.rule == STORM_RULE]
    assert len(individual) == 20
    assert [(a.subject, a.state) for a in storms] == [("invalid_mmsi", "open")]
    assert mgr.folded == 50_000 - 20
    assert mgr.tracked() == 21  # memory bounded: no entry per folded subject
    # A tick within the same minute reports nothing new yet (at most one update per update_s).
    assert mgr.tick(T0 + 50 * NS) == ([], [])
    # The next minute is quiet but the flood's minute still counts: the count is reported.
    (update,), _ = mgr.tick(T0 + 61 * NS)
    assert update[0].state == "updated" and update[0].data["folded"] == 50_000 - 20
    assert len(update[0].data["samples"]) == 5
    # A whole quiet minute later the storm alert resolves with its final count.
    (end,), _ = mgr.tick(T0 + 122 * NS)
    assert end[0].rule == STORM_RULE and end[0].state == "resolved"
    assert end[0].data["folded"] == 50_000 - 20
    opened, _ = mgr.apply(invalid(99_999), T0 + 123 * NS)  # type: ignore[misc]
    assert opened.rule == "invalid_mmsi"  # new subjects alert on their own again


def test_storm_when_too_many_alerts_of_a_rule_are_open() -> None:
    limits = StormLimits(max_new_per_minute=1000, max_open=3)
    mgr = AlertManager("s", cooldown_s=0, storm=limits)
    rules = [mgr.apply(invalid(i), T0 + i * 120 * NS)[0].rule for i in range(4)]  # type: ignore[index]
    assert rules == ["invalid_mmsi"] * 3 + [STORM_RULE]
    assert mgr.apply(invalid(4), T0 + 600 * NS) is None  # folded into the open storm alert
    assert mgr.apply(invalid(5), T0 + 700 * NS) is None
    mgr.apply(Signal(rule="invalid_mmsi", subject="mmsi:00000", active=False), T0 + 800 * NS)
    (end,), _ = mgr.tick(T0 + 900 * NS)  # 2 open, quiet: the storm is over
    assert end[0].state == "resolved" and end[0].data["folded"] == 3


def test_resolved_state_is_pruned_after_the_cooldown() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    for i in range(100):
        mgr.apply(Signal(rule="r", subject=f"meter:{i}", active=True, message="m"), T0)
        mgr.apply(Signal(rule="r", subject=f"meter:{i}", active=False), T0 + NS)
    assert mgr.tracked() == 100
    assert mgr.tick(T0 + 300 * NS)[1] == []  # still within the cooldown: kept
    _, pruned = mgr.tick(T0 + 602 * NS)
    assert len(pruned) == 100 and mgr.tracked() == 0


# --- ack schema (issue 9 item 17) -----------------------------------------------------------------

ACK_OK = [
    {"schema": "harbourgrid.ack/1", "alert_id": "5f0c1d8e2a9b47c3d6e1", "by": "worker-17"},
    {"schema": "harbourgrid.ack/1", "alert_id": "5f0c1d8e2a9b47c3d6e1"},
]
ACK_BAD = [
    {"schema": "harbourgrid.ack/2", "alert_id": "5f0c1d8e2a9b47c3d6e1"},
    {"schema": "harbourgrid.ack/1", "alert_id": "not-an-id"},
    {"schema": "harbourgrid.ack/1", "alert_id": "5f0c1d8e2a9b47c3d6e1", "by": "x" * 65},
    {"schema": "harbourgrid.ack/1", "alert_id": "5f0c1d8e2a9b47c3d6e1", "phone": "13800000000"},
    {"schema": "harbourgrid.ack/1", "alert_id": 5},
    ["5f0c1d8e2a9b47c3d6e1"],
]


def test_parse_ack_accepts_exactly_what_the_ack_schema_accepts() -> None:
    schema = json.loads(resources.files("hub").joinpath("schemas/ack.schema.json").read_text())
    for doc in ACK_OK:
        jsonschema.validate(doc, schema)
        assert parse_ack(json.dumps(doc).encode()) == (doc["alert_id"], doc.get("by", ""))
    for bad in ACK_BAD:
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad)
        with pytest.raises(ValueError):
            parse_ack(json.dumps(bad).encode())
    with pytest.raises(ValueError, match="not JSON"):
        parse_ack(b"{not json")
    with pytest.raises(ValueError, match="bytes"):
        parse_ack(b" " * 5000)


def test_unversioned_ack_still_accepted_for_one_release() -> None:
    assert parse_ack(b'{"alert_id": "5f0c1d8e2a9b47c3d6e1", "by": "w"}') == (
        "5f0c1d8e2a9b47c3d6e1",
        "w",
    )


class ScriptedRule:
    """A rule that answers each record with the next of its signals."""

    name = "r"
    state_class = NoState

    def __init__(self, signals: list[Signal]) -> None:
        self.signals = signals

    def on_record(self, state: NoState, record: Record, now_ns: int) -> list[Signal]:
        return [self.signals.pop(0)]

    def on_tick(self, state: NoState, now_ns: int) -> list[Signal]:
        return []


async def test_pruned_alert_state_leaves_the_outbox(tmp_path: Path) -> None:
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=10**7)
    await outbox.open()
    engine = Engine(
        [ScriptedRule([raise_(), Signal(rule="r", subject="meter:1", active=False)])],
        AlertManager("s", 60),
    )
    reading = WaterMeterReading(meter_id="1", time_ns=T0, total_m3=1.0)
    for _ in range(2):  # opened, then resolved
        commit = Commit()
        engine.on_records([reading], T0).fill(commit, [])
        await outbox.commit(commit)
    assert list(await outbox.load_alert_state()) == ["r|meter:1"]
    for now, kept in ((T0 + 30 * NS, ["r|meter:1"]), (T0 + 61 * NS, [])):
        commit = Commit()
        engine.on_tick(now).fill(commit, [])
        await outbox.commit(commit)
        assert list(await outbox.load_alert_state()) == kept
    await outbox.close()
