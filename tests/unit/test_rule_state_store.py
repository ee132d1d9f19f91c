"""Rule state in the outbox: each step commits the entries it changed, with its records and alerts,
so the file after any commit (a kill leaves nothing else) restores into the same episodes; the
layouts of earlier hubs are read and upgraded with nothing open lost."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.alerts import AlertManager
from hub.engine import AlertBatch, Engine
from hub.outbox import Commit, Outbox, StoredState
from hub.records import VesselPosition
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules.core import SinkRefusedState, SourceSilentState
from hub.rules.maritime import MaritimeRulesConfig, build_maritime_rules
from hub.rules.state import NoState, is_keyed
from tests.rule_state_scenario import NS, PHASE1_MIN, PHASE2_MIN, T0, Scenario, records_at
from tests.unit.test_rule_state import STATES

DATA = Path(__file__).parent.parent / "data"
MAIN_OUTBOX = DATA / "rule_state" / "main_outbox.sqlite"  # made by main's hub, see the scenario
V0_STATE = DATA / "rule_state" / "v0_state.json"


async def commit(outbox: Outbox, batch: AlertBatch) -> None:
    step = Commit()
    batch.fill(step, [])
    await outbox.commit(step)


async def run(scenario: Scenario, engine: Engine, outbox: Outbox, first: int, last: int) -> None:
    """Minutes `first` to `last` of the scenario, every step committed as the pipeline does."""
    for minute in range(first, last):
        now = T0 + minute * 60 * NS
        records = [scenario._tag(r) for r in records_at(minute, now)]
        for batch in (engine.on_records(records, now), engine.on_tick(now)):
            scenario._keep(minute, batch)
            await commit(outbox, batch)


async def restart(path: Path, alert_state: dict[str, object]) -> tuple[Scenario, Engine, Outbox]:
    """A new hub on the file: its outbox opened, state restored, an earlier layout upgraded."""
    scenario = Scenario()
    scenario.alert_state = dict(alert_state)
    engine = scenario.engine()
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    engine.restore(await outbox.load_rule_state(), await outbox.load_alert_state())
    rewrite = engine.rewrite()
    if rewrite is not None:
        await outbox.replace_rule_state(rewrite.headers, rewrite.entries, rewrite.old_rows)
    return scenario, engine, outbox


def control_changes() -> list[tuple[int, str, str, str, str]]:
    """Phase 2's alert changes by a hub restarted from its in-memory state."""
    scenario = Scenario()
    engine = scenario.engine()
    scenario.run(engine, 0, PHASE1_MIN)
    persisted = scenario.persisted(engine)
    after = Scenario()
    after.alert_state = dict(persisted["alert_state"])
    restored = after.engine()
    restored.restore(persisted["rule_state"], persisted["alert_state"])
    after.run(restored, PHASE1_MIN, PHASE1_MIN + PHASE2_MIN)
    return after.changes


async def test_what_a_kill_leaves_restores_into_the_same_episodes(tmp_path: Path) -> None:
    """Phase 1 committed step by step, then the file is left as a SIGKILL leaves it (no save at
    stop, no snapshot): phase 2 after the restart makes exactly the control's alert changes."""
    path = tmp_path / "outbox.sqlite"
    first = Scenario()
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    await run(first, first.engine(), outbox, 0, PHASE1_MIN)
    await outbox.close()  # closes the file only: nothing is written at stop

    scenario, engine, outbox = await restart(path, first.alert_state)
    assert engine.rewrite() is None  # already in this layout
    await run(scenario, engine, outbox, PHASE1_MIN, PHASE1_MIN + PHASE2_MIN)
    await outbox.close()
    assert scenario.changes == control_changes()
    assert any(state == "resolved" for _, _, _, state, _ in scenario.changes)


async def test_outbox_of_the_hub_before_entries_upgrades_with_nothing_open_lost(
    tmp_path: Path,
) -> None:
    """main_outbox.sqlite: phase 1 as the hub of commit 6212552 left it (one JSON text per rule).
    It restores into the same episodes, is rewritten in this layout at start, and phase 2
    resolves what that hub left open, exactly as the control does."""
    path = tmp_path / "outbox.sqlite"
    shutil.copy(MAIN_OUTBOX, path)
    with closing(sqlite3.connect(path)) as db, db:
        old_rows = {r for (r,) in db.execute("SELECT rule FROM rule_state")}
        opened = {k for (k,) in db.execute("SELECT key FROM alert_state")}
        # a row an even older hub left for one of the six rules the maritime group replaced
        db.execute("INSERT INTO rule_state(rule, value) VALUES ('ais_gap', '{\"v\": {}}')")
    assert "maritime" in old_rows and len(opened) == 19

    scenario, engine, outbox = await restart(path, {})
    scenario.alert_state = await outbox.load_alert_state()
    stored = await outbox.load_rule_state()
    assert set(stored) == old_rows and all(isinstance(s, StoredState) for s in stored.values())
    await run(scenario, engine, outbox, PHASE1_MIN, PHASE1_MIN + PHASE2_MIN)
    await outbox.close()
    assert scenario.changes == control_changes()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0

    resolved = {(r, s) for _, r, s, state, _ in scenario.changes if state == "resolved"}
    held = {  # meters that never report, a vessel silent in the grid (held until expiry)
        ("meter_offline", "meter:M-301"),
        ("meter_offline", "meter:M-ORPHAN"),
        ("unregistered_vessel", "mmsi:123456789"),
    }
    assert {tuple(k.split("|", 1)) for k in opened} - resolved == held


async def test_untyped_rows_of_the_oldest_hub_upgrade_too(tmp_path: Path) -> None:
    """v0_state.json (the hub before typed state), as rows of the old `rule_state` table."""
    old = json.loads(V0_STATE.read_text(encoding="utf-8"))
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path=path, max_bytes=1024 * 1024)
    await outbox.open()
    await outbox.close()
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO rule_state(rule, value) VALUES (?, ?)",
            [(rule, json.dumps(state)) for rule, state in old["rule_state"].items()],
        )
        db.executemany(
            "INSERT INTO alert_state(key, value) VALUES (?, ?)",
            [(key, json.dumps(state)) for key, state in old["alert_state"].items()],
        )
    scenario, engine, outbox = await restart(path, old["alert_state"])
    await run(scenario, engine, outbox, PHASE1_MIN, PHASE1_MIN + PHASE2_MIN)
    await outbox.close()
    (end,) = [c for c in scenario.changes if c[1] == "door_forced"]
    assert end[0] == 140 + 30 and end[3] == "resolved"  # resolved on time, as the old hub would
    with closing(sqlite3.connect(path)) as db:  # the six rules' rows replaced by the group's
        assert db.execute("SELECT count(*) FROM rule_state").fetchone()[0] == 0


def maritime_engine(max_vessels: int = 5000) -> Engine:
    registry = MaritimeRegistry(
        MaritimeRegistryConfig(
            vessels_csv=DATA / "maritime" / "vessels.csv",
            zones_geojson=DATA / "maritime" / "zones.geojson",
        )
    )
    cfg = MaritimeRulesConfig.model_validate({"max_vessels": max_vessels})
    return Engine(build_maritime_rules(cfg, registry), AlertManager("site", 0))


def fleet(count: int, now: int, lat: float = 30.0) -> list[VesselPosition]:
    return [
        VesselPosition(
            mmsi=f"41200{i:04d}", time_ns=now, lat=lat, lon=122.3, sog_kn=5.0, msg_type=1
        )
        for i in range(count)
    ]


def test_a_step_writes_only_the_entries_it_changed() -> None:
    engine = maritime_engine()
    first = engine.on_records(fleet(1000, T0), T0)
    assert len(first.rule_entries) == 1000
    one = fleet(1, T0 + NS, lat=30.001)
    batch = engine.on_records(one, T0 + NS)
    assert list(batch.rule_entries) == [("maritime", one[0].mmsi)]
    assert not batch.rule_state  # the header did not change


async def test_evicted_entries_are_deleted_from_the_file(tmp_path: Path) -> None:
    engine = maritime_engine(max_vessels=100)
    outbox = Outbox(path=tmp_path / "o.sqlite", max_bytes=64 * 1024 * 1024)
    await outbox.open()
    await commit(outbox, engine.on_records(fleet(300, T0), T0))
    await commit(outbox, engine.on_tick(T0 + NS))  # the bound: the oldest 200 go
    stored = (await outbox.load_rule_state())["maritime"]
    await outbox.close()
    restored = maritime_engine(max_vessels=100)
    restored.restore({"maritime": stored}, {})
    assert len(stored.entries) == 100
    assert restored.snapshot() == engine.snapshot()


def test_changes_of_a_failed_commit_are_written_with_the_next() -> None:
    engine = maritime_engine()
    lost = engine.on_records(fleet(10, T0), T0)
    failed = Commit()
    lost.fill(failed, [])
    engine.unsaved(failed)
    later = VesselPosition(mmsi="413000001", time_ns=T0, lat=30.0, lon=122.3, msg_type=1)
    batch = engine.on_records([later], T0 + NS)
    assert {k for _, k in batch.rule_entries} == {v.mmsi for v in fleet(10, T0)} | {later.mmsi}
    assert "maritime" in batch.rule_state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(STATES))
def test_every_keyed_state_survives_its_entries_round_trip(state: Any) -> None:
    """Header and entries as stored (JSON text each) give back the same state."""
    if not is_keyed(type(state)):
        return
    header = json.loads(json.dumps(state.header_json(), allow_nan=False))
    entries = {
        key: json.loads(json.dumps(state.entry_json(key), allow_nan=False))
        for key in state.entry_keys()
    }
    assert type(state).from_entries(header, entries) == state


def test_every_state_that_grows_with_what_it_watches_is_keyed() -> None:
    """Only the rules' fixed-size states are stored whole."""
    whole = {type(s) for s in Scenario().engine().states.values() if not is_keyed(type(s))}
    assert whole <= {NoState, SourceSilentState, SinkRefusedState}


async def test_a_damaged_entry_starts_that_rule_afresh_and_the_hub_starts(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    engine = maritime_engine()
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    await commit(outbox, engine.on_records(fleet(3, T0), T0))
    await outbox.close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute('UPDATE rule_entry SET value=\'{"heard_ns": 1, "fix": {\'')
    outbox = Outbox(path=path, max_bytes=64 * 1024 * 1024)
    await outbox.open()
    restored = maritime_engine()
    restored.restore(await outbox.load_rule_state(), {})
    rewrite = restored.rewrite()
    assert rewrite is not None and rewrite.headers == [("maritime", '{"version":1}')]
    await outbox.replace_rule_state(rewrite.headers, rewrite.entries, rewrite.old_rows)
    stored = (await outbox.load_rule_state())["maritime"]
    await outbox.close()
    assert stored.entries == {}  # the damaged rows are gone with the state they belonged to
