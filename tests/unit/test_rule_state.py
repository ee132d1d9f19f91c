"""Typed rule state: JSON round trips, the upgrade from the untyped dicts, unreadable states."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.records import GridTags
from hub.rules.community.doors import DeniedDoor, DoorDeniedState, DoorEpisode, DoorEpisodesState
from hub.rules.community.elder import DoorSeen, ElderMeter, ElderState
from hub.rules.community.water import (
    ContinuousFlowState,
    FlowMeter,
    MeterLowBatteryState,
    MeterOfflineState,
    MeterSeen,
    MeterTamperState,
)
from hub.rules.core import SinkRefusedState, SourceSilentState
from hub.rules.maritime.state import (
    Fix,
    GapWatch,
    InvalidWatch,
    JumpWatch,
    MaritimeState,
    Stay,
    Vessel,
)
from hub.rules.state import NoState
from tests.rule_state_scenario import PHASE1_MIN, PHASE2_MIN, Scenario

V0_STATE = Path(__file__).parent.parent / "data" / "rule_state" / "v0_state.json"

ids = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=9)
times = st.integers(0, 2**62)
finite = st.floats(allow_nan=False, allow_infinity=False)
grids = st.builds(GridTags, ids, ids, ids)
severities = st.sampled_from(["warning", "critical"])
fixes = st.builds(
    Fix, lat=st.floats(-90, 90), lon=st.floats(-180, 180), sog_kn=st.none() | finite,
    cog_deg=st.none() | finite, time_ns=times, seen_ns=times,
)  # fmt: skip
stays = st.builds(Stay, since_ns=times, out_ns=st.none() | times, active=st.booleans())


@st.composite
def vessels(draw: st.DrawFn) -> Vessel:
    fix = draw(st.none() | fixes)
    static = draw(st.booleans())
    jump = None
    if fix is not None and draw(st.booleans()):
        origin = fix if draw(st.booleans()) else draw(fixes)
        jump = JumpWatch(
            origin=origin, coarse=draw(st.booleans()), active=draw(st.booleans()),
            ok=draw(st.integers(0, 9)), jumps=draw(st.integers(0, 99)),
        )  # fmt: skip
    return Vessel(
        heard_ns=draw(times),
        fix=fix,
        name=draw(st.none() | st.text(max_size=64)) if static else None,
        ship_type=draw(st.none() | st.integers(0, 99)) if static else None,
        static_ns=draw(times) if static else None,
        unregistered=draw(st.none() | stays),
        invalid=draw(st.none() | st.builds(InvalidWatch, problems=st.lists(ids), active=st.booleans())),
        gap=draw(st.none() | st.builds(GapWatch, zone=ids, active=st.booleans(), settled=st.booleans())),
        jump=jump,
        restricted=draw(st.none() | st.dictionaries(ids, stays, min_size=1, max_size=3)),
        fishing=draw(st.none() | stays),
    )  # fmt: skip


def by_id(entry: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(ids, entry, max_size=4)


STATES: list[st.SearchStrategy[Any]] = [
    st.builds(NoState),
    st.builds(SourceSilentState, last_record_ns=by_id(times), silent=st.lists(ids)),
    st.builds(SinkRefusedState, open=st.booleans()),
    st.builds(DoorEpisodesState, open=by_id(st.builds(DoorEpisode, raised_ns=times, grid=grids))),
    st.builds(
        DoorDeniedState,
        doors=by_id(
            st.builds(
                DeniedDoor,
                times_ns=st.lists(times),
                credentials=st.lists(ids),
                active=st.booleans(),
                grid=grids,
            )
        ),
    ),
    st.builds(
        ElderState,
        meters=by_id(
            st.builds(
                ElderMeter,
                household=ids,
                first_ns=times,
                grid=grids,
                samples=st.lists(st.tuples(st.integers(0, 2**40), finite)),
                latest=st.none() | st.tuples(times, finite),
                last_use_ns=st.none() | times,
                severity=st.none() | severities,
            )
        ),
        doors=by_id(st.builds(DoorSeen, time_ns=times, event=ids, door_id=ids)),
        buildings=by_id(st.builds(DoorSeen, time_ns=times, event=ids, door_id=ids)),
    ),
    st.builds(
        ContinuousFlowState,
        meters=by_id(
            st.builds(
                FlowMeter,
                since_ns=st.none() | times,
                active=st.booleans(),
                prev_time_ns=st.none() | times,
                prev_total_m3=st.none() | finite,
            )
        ),
    ),
    st.builds(
        MeterOfflineState,
        last=by_id(st.builds(MeterSeen, seen_ns=times, grid=grids, household=st.text(max_size=9))),
        offline=st.lists(ids),
    ),
    st.builds(MeterLowBatteryState, low=by_id(severities)),
    st.builds(MeterTamperState, active=by_id(st.lists(ids, min_size=1))),
    st.builds(MaritimeState, vessels=by_id(vessels())),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(STATES))
def test_every_state_survives_its_json_round_trip(state: Any) -> None:
    saved = json.loads(json.dumps(state.to_json(), allow_nan=False))
    assert saved["version"] == type(state).VERSION
    assert type(state).from_json(saved) == state


def test_every_rule_declares_a_state_that_is_round_tripped() -> None:
    """Every rule the hub builds keeps a state class covered by the round trip above."""
    covered = {
        NoState, SourceSilentState, SinkRefusedState, DoorEpisodesState, DoorDeniedState,
        ElderState, ContinuousFlowState, MeterOfflineState, MeterLowBatteryState,
        MeterTamperState, MaritimeState,
    }  # fmt: skip
    declared = {type(state) for state in Scenario().engine().states.values()}
    assert declared <= covered


# --- the upgrade from the untyped dicts of the hub before typed state


def _phase2(persisted: dict[str, Any]) -> Scenario:
    scenario = Scenario()
    scenario.alert_state = dict(persisted["alert_state"])
    engine = scenario.engine()
    engine.restore(persisted["rule_state"], persisted["alert_state"])
    scenario.run(engine, PHASE1_MIN, PHASE1_MIN + PHASE2_MIN)
    return scenario


def test_upgrade_from_untyped_state_carries_every_open_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """State written by the hub before typed state (tests/data/rule_state: the same phase 1, run
    by commit 89c8808) restores into the same episodes: phase 2 then makes exactly the alert
    changes it makes after a restart of this hub, and resolves what the old hub left open."""
    this_hub = Scenario()
    engine = this_hub.engine()
    this_hub.run(engine, 0, PHASE1_MIN)
    control = _phase2(this_hub.persisted(engine))

    old = json.loads(V0_STATE.read_text(encoding="utf-8"))
    assert all("version" not in state for state in old["rule_state"].values())
    with caplog.at_level(logging.WARNING, logger="hub.engine"):
        upgraded = _phase2(old)
    assert "not restored" not in caplog.text

    assert upgraded.changes == control.changes
    opened_before = {tuple(key.split("|", 1)) for key in old["alert_state"]}
    resolved = {
        (rule, subject) for _, rule, subject, state, _ in upgraded.changes if state == "resolved"
    }
    held = {  # meters that never report, a vessel silent in the grid (held until expiry)
        ("meter_offline", "meter:M-301"),
        ("meter_offline", "meter:M-ORPHAN"),
        ("unregistered_vessel", "mmsi:123456789"),
    }
    assert len(opened_before) == 19 and opened_before - resolved == held
    first: dict[tuple[str, str], str] = {}
    for _, rule, subject, state, _ in upgraded.changes:
        first.setdefault((rule, subject), state)
    # an episode carried over is resolved, never raised again as a new one
    assert {first[key] for key in opened_before if key in first} == {"resolved"}


def test_forced_door_restored_from_untyped_state_resolves_on_time() -> None:
    """The forced-door alert the old hub left open (minute 140) resolves 30 min later."""
    old = json.loads(V0_STATE.read_text(encoding="utf-8"))
    upgraded = _phase2(old)
    (end,) = [c for c in upgraded.changes if c[1] == "door_forced"]
    assert end[0] == 140 + 30 and end[3] == "resolved"


# --- states this hub cannot read


@pytest.mark.parametrize(
    "raw",
    [
        {"version": 99, "open": {}},
        {"version": "2"},
        ["not", "an", "object"],
        "text",
        {"open": {"D-3-2": "not an entry"}},
        {"version": 1, "open": {"D-3-2": {"raised_ns": "soon"}}},
    ],
)
def test_unreadable_state_starts_fresh_with_a_warning(
    raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = Scenario()
    engine = scenario.engine()
    with caplog.at_level(logging.WARNING, logger="hub.engine"):
        engine.restore({"door_forced": raw}, {})
    assert "rule door_forced: persisted state not restored" in caplog.text
    assert "starting with a fresh state" in caplog.text
    scenario.run(engine, 140, 141)  # the forced door: raised as on a fresh start
    assert [c[1:4] for c in scenario.changes if c[1] == "door_forced"] == [
        ("door_forced", "door:D-3-2", "open")
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(Scenario().engine().states)), json_values))
def test_restore_never_crashes_on_any_json(rows: dict[str, Any]) -> None:
    scenario = Scenario()
    engine = scenario.engine()
    engine.restore(rows, {})
    scenario.run(engine, 0, 2)
    assert engine.rule_errors == {}
