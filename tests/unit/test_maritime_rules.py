"""Maritime rules on a simulated clock: raise, update, resolve, hysteresis, expiry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from hub.clock import NS_PER_S, ManualClock
from hub.records import NO_GRID, Record, VesselPosition, VesselStatic
from hub.registry.maritime import MaritimeRegistry, MaritimeRegistryConfig
from hub.rules import Rule, Signal
from hub.rules.maritime import (
    AisGapRule,
    FishingMoratoriumConfig,
    FishingMoratoriumRule,
    InvalidMmsiRule,
    MaritimeRules,
    MaritimeRulesConfig,
    MaritimeState,
    PositionJumpRule,
    RestrictedZoneRule,
    UnregisteredVesselRule,
    build_maritime_rules,
)

DATA = Path(__file__).parent.parent / "data" / "maritime"
SEA = (30.0, 122.3)
RESTRICTED = (30.075, 122.44)
OUTSIDE = (30.3, 122.3)
STRANGER = "412000123"  # valid Chinese MMSI, not whitelisted
FISHER = "412401001"  # whitelisted, registry type "fishing"
FERRY = "413801234"  # whitelisted passenger ship
PATROL = "413777001"  # on the restricted zone's allowed list
MIN = 60.0


@pytest.fixture
def registry() -> MaritimeRegistry:
    cfg = MaritimeRegistryConfig(
        vessels_csv=DATA / "vessels.csv", zones_geojson=DATA / "zones.geojson"
    )
    return MaritimeRegistry(cfg)


class Harness:
    """Drives one rule like the engine does, round-tripping its state through JSON each step."""

    def __init__(self, rule: Rule, clock: ManualClock) -> None:
        self.rule, self.clock = rule, clock
        self.state: MaritimeState = MaritimeState()
        self.signals: list[Signal] = []

    def _persist(self) -> None:
        restored = MaritimeState.from_json(json.loads(json.dumps(self.state.to_json())))
        assert restored == self.state
        self.state = restored

    def send(self, record: Record) -> list[Signal]:
        out = self.rule.on_record(self.state, record, self.clock.now_ns())
        self._persist()
        self.signals += out
        return out

    def tick(self) -> list[Signal]:
        out = self.rule.on_tick(self.state, self.clock.now_ns())
        self._persist()
        self.signals += out
        return out

    def pos(
        self,
        mmsi: str,
        where: tuple[float, float],
        sog: float | None = 8.0,
        cog: float | None = 90.0,
        msg_type: int = 1,
        ais_class: str = "A",
    ) -> list[Signal]:
        record = VesselPosition(
            mmsi=mmsi, time_ns=self.clock.now_ns(), lat=where[0], lon=where[1], sog_kn=sog, cog_deg=cog,
            msg_type=msg_type, ais_class=ais_class,
        )  # fmt: skip
        return self.send(record)

    def static(self, mmsi: str, name: str | None = None, ship_type: int | None = None) -> None:
        self.send(
            VesselStatic(mmsi=mmsi, time_ns=self.clock.now_ns(), name=name, ship_type=ship_type)
        )

    def every(self, minutes: float, step_s: float, mmsi: str, where: tuple[float, float],
              **kw: Any) -> list[Signal]:  # fmt: skip
        """Report every `step_s` for `minutes`, ticking between reports."""
        out: list[Signal] = []
        for _ in range(int(minutes * MIN / step_s)):
            self.clock.advance(step_s)
            out += self.pos(mmsi, where, **kw) + self.tick()
        return out


def make(rule_cls: type, registry: MaritimeRegistry, clock: ManualClock | None = None,
         **cfg: Any) -> Harness:  # fmt: skip
    rules_cfg = MaritimeRulesConfig.model_validate(cfg)
    return Harness(rule_cls(rules_cfg, registry), clock or ManualClock())


def only(signals: list[Signal]) -> Signal:
    assert len(signals) == 1, signals
    return signals[0]


def assert_position_data(sig: Signal, mmsi: str) -> None:
    for key in ("mmsi", "name", "sea_grid", "lat", "lon", "sog_kn", "cog_deg", "position_time"):
        assert key in sig.data, key
    assert sig.data["mmsi"] == mmsi
    json.dumps(sig.data)


# --- unregistered_vessel


def test_unregistered_raises_after_dwell_with_evidence(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry)
    h.static(STRANGER, name="MYSTERY 9")
    assert h.pos(STRANGER, SEA) == []
    assert h.every(9.5, 30, STRANGER, SEA) == []
    sig = only(h.every(1, 30, STRANGER, SEA))
    assert sig.active and sig.rule == "unregistered_vessel" and sig.subject == f"mmsi:{STRANGER}"
    assert sig.severity == "warning"
    assert sig.grid.grid == "ZS-SEA-01" and sig.grid.police_grid == "ZS-PG-SEA-1"
    assert_position_data(sig, STRANGER)
    assert sig.data["name"] == "MYSTERY 9" and sig.data["sea_grid"] == "ZS-SEA-01"
    assert sig.data["lat"] == SEA[0] and sig.data["sog_kn"] == 8.0
    assert sig.data["dwell_minutes"] >= 10 and not sig.data["registered"]
    assert "MYSTERY 9" in sig.message and "ZS-SEA-01" in sig.message
    assert h.every(10, 30, STRANGER, SEA) == []  # no repeats while it stays


def test_registered_and_outside_vessels_never_raise(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry)
    h.every(30, 60, FERRY, SEA)
    h.every(30, 60, STRANGER, OUTSIDE)
    assert h.signals == [] and h.state.watched() == []


def test_unregistered_drifting_on_the_edge_does_not_reraise(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry, unregistered_vessel={"exit_minutes": 5})
    assert only(h.every(11, 60, STRANGER, SEA)).active
    for _ in range(10):  # in and out every 2 minutes: never out for 5 minutes in a row
        h.every(2, 60, STRANGER, OUTSIDE)
        h.every(2, 60, STRANGER, SEA)
    assert len(h.signals) == 1
    out = only(h.every(6, 60, STRANGER, OUTSIDE))
    assert not out.active and out.data["reason"] == "left"
    assert out.grid == NO_GRID and out.data["sea_grid"] == ""


def test_brief_exit_does_not_reset_dwell(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry)
    h.every(6, 60, STRANGER, SEA)
    h.every(2, 60, STRANGER, OUTSIDE)
    assert only(h.every(3, 60, STRANGER, SEA)).active


def test_unregistered_resolves_when_whitelisted(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry)
    h.every(11, 60, STRANGER, SEA)
    registry.apply_update("vessel", {"mmsi": STRANGER, "name": "NOW KNOWN"})
    h.clock.advance(60)
    sig = only(h.pos(STRANGER, SEA))
    assert not sig.active and sig.data["reason"] == "whitelisted"
    assert sig.grid.grid == "ZS-SEA-01"


def test_unregistered_resolves_on_tick_after_leaving_silently(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry)
    h.every(11, 60, STRANGER, SEA)
    h.clock.advance(60)
    h.pos(STRANGER, OUTSIDE)
    h.clock.advance(4 * MIN)
    assert h.tick() == []
    h.clock.advance(2 * MIN)
    assert not only(h.tick()).active


def test_expiry_resolves_and_bounds_state(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry, vessel_expiry_minutes=30)
    h.every(11, 60, STRANGER, SEA)
    h.clock.advance(31 * MIN)
    sig = only(h.tick())
    assert not sig.active and sig.data["reason"] == "expired"
    assert h.state.watched() == []


def test_hard_cap_evicts_oldest(registry: MaritimeRegistry) -> None:
    h = make(UnregisteredVesselRule, registry, max_vessels=10)
    for i in range(25):
        h.clock.advance(1)
        h.pos(f"4120{i:05d}", SEA)
    h.tick()
    assert sorted(h.state.mmsis()) == [f"4120{i:05d}" for i in range(15, 25)]


# --- invalid_mmsi


@pytest.mark.parametrize(
    ("mmsi", "msg_type", "ais_class", "problem"),
    [
        ("41240100", 1, "A", "malformed"),
        ("4124010011", 1, "A", "malformed"),
        ("000000000", 1, "A", "placeholder"),
        ("111111111", 1, "A", "placeholder"),
        ("123456789", 18, "B", "placeholder"),
        ("200123456", 1, "A", "unknown_mid: 200"),
        ("780123456", 1, "A", "unknown_mid: 780"),
        ("123412345", 1, "A", "unassigned_prefix"),
        (STRANGER, 21, "AtoN", "class_mismatch: AtoN report"),
        ("994121234", 1, "A", "class_mismatch: class A position report from a aton"),
        ("984121234", 3, "A", "class_mismatch: class A position report"),
        (STRANGER, 4, "base", "class_mismatch: base station"),
        ("004121234", 18, "B", "class_mismatch: ship report from a coast"),
    ],
)
def test_invalid_mmsi_detects(
    registry: MaritimeRegistry, mmsi: str, msg_type: int, ais_class: str, problem: str
) -> None:
    h = make(InvalidMmsiRule, registry)
    sig = only(h.pos(mmsi, SEA, msg_type=msg_type, ais_class=ais_class))
    assert sig.active and sig.subject == f"mmsi:{mmsi}"
    assert sig.data["problems"][0].startswith(problem)
    assert_position_data(sig, mmsi)
    assert sig.grid.grid == "ZS-SEA-01"


@pytest.mark.parametrize(
    ("mmsi", "msg_type", "ais_class"),
    [
        (STRANGER, 1, "A"),
        (FERRY, 18, "B"),
        ("994121234", 21, "AtoN"),
        ("004121234", 4, "base"),
        ("970011234", 1, "A"),  # AIS-SART sends message 1
        ("972011234", 1, "A"),
        ("111412123", 9, ""),
    ],
)
def test_valid_mmsi_is_quiet(
    registry: MaritimeRegistry, mmsi: str, msg_type: int, ais_class: str
) -> None:
    h = make(InvalidMmsiRule, registry)
    assert h.pos(mmsi, SEA, msg_type=msg_type, ais_class=ais_class) == []
    assert h.state.watched() == []


def test_invalid_mmsi_updates_on_new_problem_and_resolves_when_quiet(
    registry: MaritimeRegistry,
) -> None:
    h = make(InvalidMmsiRule, registry, invalid_mmsi={"quiet_minutes": 60})
    bad = "200123456"
    assert only(h.pos(bad, SEA)).active
    assert h.every(5, 10, bad, SEA) == []  # same problem: no repeats
    update = only(h.pos(bad, SEA, msg_type=21, ais_class="AtoN"))
    assert update.active and len(update.data["problems"]) == 2
    h.static(bad, name="GHOST")  # static data keeps it alive, adds nothing new
    h.clock.advance(59 * MIN)
    assert h.tick() == []
    h.clock.advance(2 * MIN)
    end = only(h.tick())
    assert not end.active and end.data["name"] == "GHOST" and h.state.watched() == []


def test_invalid_mmsi_from_static_only(registry: MaritimeRegistry) -> None:
    h = make(InvalidMmsiRule, registry)
    h.static("999999999", name="TEST")
    sig = only(h.signals)
    assert sig.active and sig.data["problems"] == ["placeholder"] and sig.data["lat"] is None
    assert sig.grid == NO_GRID


# --- ais_gap


def test_ais_gap_raises_with_last_position_and_resolves_on_report(
    registry: MaritimeRegistry,
) -> None:
    h = make(AisGapRule, registry)
    h.static(FERRY, name="ZHOUSHAN FERRY 3")
    h.every(5, 10, FERRY, SEA, sog=12.0, cog=0.0)
    last_seen = h.clock.now_ns()
    h.clock.advance(14 * MIN)
    assert h.tick() == []
    h.clock.advance(2 * MIN)
    sig = only(h.tick())
    assert sig.active and sig.rule == "ais_gap" and sig.subject == f"mmsi:{FERRY}"
    assert_position_data(sig, FERRY)
    assert sig.data["lat"] == SEA[0] and sig.data["lon"] == SEA[1] and sig.data["sog_kn"] == 12.0
    assert sig.data["zone"] == "sea-zs-01" and sig.data["silent_minutes"] == 16.0
    iso = dt.datetime.fromtimestamp(last_seen / NS_PER_S, dt.UTC).isoformat(timespec="seconds")
    assert sig.data["last_report_time"] == iso
    assert sig.grid.grid == "ZS-SEA-01" and "ZHOUSHAN FERRY 3" in sig.message
    h.clock.advance(60 * MIN)
    assert h.tick() == []  # raised once
    h.clock.advance(7 * 3600)
    assert h.tick() == []  # an open dark-vessel alert outlives the vessel expiry
    back = only(h.pos(FERRY, SEA))
    assert not back.active and back.data["reason"] == "reported"


def test_ais_gap_ignores_stopped_vessels_and_vessels_outside(registry: MaritimeRegistry) -> None:
    h = make(AisGapRule, registry)
    h.every(5, 10, FERRY, SEA, sog=0.2)
    h.every(5, 10, STRANGER, OUTSIDE, sog=12.0)
    h.every(5, 10, FISHER, SEA, sog=None)
    h.clock.advance(60 * MIN)
    assert h.tick() == [] and h.signals == []


def test_ais_gap_left_heading_out(registry: MaritimeRegistry) -> None:
    """Near the north edge (30.20N) heading north: it left; heading south: it went dark."""
    near_edge = (30.19, 122.3)  # 0.6 nm inside
    h = make(AisGapRule, registry, ais_gap={"edge_nm": 1.0})
    h.every(3, 10, FERRY, near_edge, sog=10.0, cog=0.0)
    h.every(3, 10, STRANGER, near_edge, sog=10.0, cog=180.0)
    h.clock.advance(20 * MIN)
    sig = only(h.tick())
    assert sig.data["mmsi"] == STRANGER
    # deep inside, heading north, it does not count as leaving
    h2 = make(AisGapRule, registry, ais_gap={"edge_nm": 1.0})
    h2.every(3, 10, FERRY, SEA, sog=10.0, cog=0.0)
    h2.clock.advance(20 * MIN)
    assert only(h2.tick()).data["mmsi"] == FERRY


def test_ais_gap_vessel_that_leaves_is_forgotten(registry: MaritimeRegistry) -> None:
    h = make(AisGapRule, registry)
    h.every(3, 10, FERRY, SEA, sog=10.0)
    h.pos(FERRY, OUTSIDE, sog=10.0)
    h.clock.advance(60 * MIN)
    assert h.tick() == [] and h.state.watched() == []


# --- position_jump


def test_position_jump_raises_updates_and_resolves_after_consistent_reports(
    registry: MaritimeRegistry,
) -> None:
    h = make(PositionJumpRule, registry, position_jump={"resolve_after_reports": 3})
    h.every(2, 10, FERRY, SEA, sog=10.0)
    h.clock.advance(10)
    jump = only(h.pos(FERRY, RESTRICTED))  # ~8 nm in 10 s
    assert jump.active and jump.rule == "position_jump" and jump.subject == f"mmsi:{FERRY}"
    assert jump.data["implied_speed_kn"] > 1000 and jump.data["from_lat"] == SEA[0]
    assert jump.data["lat"] == RESTRICTED[0] and jump.data["jumps"] == 1
    assert_position_data(jump, FERRY)
    h.clock.advance(10)
    back = only(h.pos(FERRY, SEA))  # and back again: same alert, updated
    assert back.active and back.data["jumps"] == 2 and "2 jumps" in back.message
    assert h.every(20 / 60, 10, FERRY, SEA) == []
    end = only(h.every(10 / 60, 10, FERRY, SEA))
    assert not end.active and end.data["reason"] == "consistent"


def test_position_jump_ignores_noise_duplicates_and_plausible_speed(
    registry: MaritimeRegistry,
) -> None:
    h = make(PositionJumpRule, registry)
    h.pos(FERRY, SEA)
    h.clock.advance(0.5)
    h.pos(FERRY, RESTRICTED)  # half a second apart: not compared
    h.clock.advance(0.5)
    h.pos(FERRY, SEA)
    h.clock.advance(3)
    h.pos(FERRY, (SEA[0] + 0.001, SEA[1]))  # 0.06 nm in 3 s is GPS noise, not a jump
    h.clock.advance(600)
    h.pos(FERRY, (SEA[0] + 0.1, SEA[1]))  # 6 nm in 10 min = 36 kn
    assert h.signals == []


def test_position_jump_allows_for_the_coarse_grid_of_type_27(registry: MaritimeRegistry) -> None:
    """Type 27 positions are on a 1/10 minute grid and may be latent: 0.2 nm off a type 1 fix
    five seconds apart (144 kn implied) is not a jump; 2.7 nm is."""
    h = make(PositionJumpRule, registry)
    exact = (30.0024, 122.3019)
    h.pos(FERRY, exact)
    h.clock.advance(5)
    h.pos(FERRY, (30.0, 122.3), msg_type=27)
    h.clock.advance(5)
    h.pos(FERRY, exact)
    assert h.signals == []
    h.clock.advance(5)
    h.pos(FERRY, (30.05, 122.3), msg_type=27)  # 2.7 nm in 5 s is a jump even on that grid
    assert [s.active for s in h.signals] == [True]


def test_position_jump_resolves_after_quiet(registry: MaritimeRegistry) -> None:
    h = make(PositionJumpRule, registry, position_jump={"quiet_minutes": 30})
    h.pos(FERRY, SEA)
    h.clock.advance(30)
    assert only(h.pos(FERRY, RESTRICTED)).active
    h.clock.advance(29 * MIN)
    assert h.tick() == []
    h.clock.advance(2 * MIN)
    assert only(h.tick()).data["reason"] == "quiet"


# --- restricted_zone


def test_restricted_zone_entry_dwell_and_exit(registry: MaritimeRegistry) -> None:
    h = make(RestrictedZoneRule, registry)
    h.every(3, 10, STRANGER, SEA)
    h.pos(STRANGER, RESTRICTED)
    assert h.every(50 / 60, 10, STRANGER, RESTRICTED) == []
    sig = only(h.every(20 / 60, 10, STRANGER, RESTRICTED))
    assert sig.active and sig.severity == "critical"
    assert sig.subject == f"mmsi:{STRANGER}:zone:rz-cable-01"
    assert sig.grid.grid == "ZS-SEA-01" and sig.grid.micro_grid == "ZS-SEA-01-R1"
    assert sig.data["zone"] == "rz-cable-01" and sig.data["sea_grid"] == "ZS-SEA-01"
    assert_position_data(sig, STRANGER)
    for _ in range(5):  # drifting across the edge does not re-raise
        h.every(2, 30, STRANGER, SEA)
        h.every(1, 30, STRANGER, RESTRICTED)
    assert len(h.signals) == 1
    h.every(4.5, 30, STRANGER, SEA)
    end = only(h.every(1, 30, STRANGER, SEA))
    assert not end.active and end.subject == sig.subject and end.grid.micro_grid == "ZS-SEA-01-R1"
    assert h.state.watched() == []


def test_restricted_zone_allowed_list(registry: MaritimeRegistry) -> None:
    h = make(RestrictedZoneRule, registry)
    h.every(10, 10, PATROL, RESTRICTED)
    assert h.signals == [] and h.state.watched() == []


def test_restricted_zone_resolves_when_allowed_by_push(registry: MaritimeRegistry) -> None:
    h = make(RestrictedZoneRule, registry, restricted_zone={"dwell_minutes": 0})
    assert only(h.pos(STRANGER, RESTRICTED)).active
    doc = json.loads((DATA / "zones.geojson").read_text())
    doc["features"][1]["properties"]["allowed_mmsi"].append(STRANGER)
    registry.apply_update("zones", doc)
    h.clock.advance(10)
    end = only(h.pos(STRANGER, RESTRICTED))
    assert not end.active and "no longer restricted" in end.message


def test_restricted_zone_silent_exit_resolves_on_tick(registry: MaritimeRegistry) -> None:
    h = make(RestrictedZoneRule, registry, restricted_zone={"dwell_minutes": 0})
    assert only(h.pos(STRANGER, RESTRICTED)).active
    h.clock.advance(30)
    h.pos(STRANGER, SEA)
    h.clock.advance(5 * MIN)
    assert not only(h.tick()).active


# --- fishing_moratorium

LOCAL = dt.timezone(dt.timedelta(hours=8))


def clock_at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> ManualClock:
    local = dt.datetime(year, month, day, hour, minute, tzinfo=LOCAL)
    return ManualClock(int(local.timestamp()) * NS_PER_S)


@pytest.mark.parametrize(
    ("local", "closed"),
    [
        ((2026, 4, 30, 23, 59), False),
        ((2026, 5, 1, 0, 0), True),
        ((2026, 7, 15, 12, 0), True),
        ((2026, 9, 16, 23, 59), True),
        ((2026, 9, 17, 0, 0), False),
        ((2026, 1, 1, 0, 0), False),
    ],
)
def test_season_boundaries_in_local_time(
    registry: MaritimeRegistry, local: tuple[int, ...], closed: bool
) -> None:
    rule = FishingMoratoriumRule(MaritimeRulesConfig(), registry)
    assert rule.in_season(clock_at(*local).now_ns()) is closed


def test_season_wrapping_the_new_year(registry: MaritimeRegistry) -> None:
    cfg = MaritimeRulesConfig(
        fishing_moratorium=FishingMoratoriumConfig(season_start="12-01", season_end="02-28")
    )
    rule = FishingMoratoriumRule(cfg, registry)
    assert rule.in_season(clock_at(2026, 1, 15).now_ns())
    assert rule.in_season(clock_at(2026, 12, 1).now_ns())
    assert not rule.in_season(clock_at(2026, 3, 1).now_ns())


def test_fishing_config_rejects_bad_dates_and_band() -> None:
    with pytest.raises(ValueError, match="day is out of range"):
        FishingMoratoriumConfig(season_end="09-31")
    with pytest.raises(ValueError, match="min_speed_kn"):
        FishingMoratoriumConfig(min_speed_kn=6.0)


def test_fishing_by_registry_type_raises_and_resolves(registry: MaritimeRegistry) -> None:
    h = make(FishingMoratoriumRule, registry, clock_at(2026, 6, 1, 6))
    assert h.every(9.5, 30, FISHER, SEA, sog=3.0) == []
    sig = only(h.every(1, 30, FISHER, SEA, sog=3.0))
    assert sig.active and sig.rule == "fishing_moratorium" and sig.subject == f"mmsi:{FISHER}"
    assert sig.grid.grid == "ZS-SEA-01" and sig.data["sog_kn"] == 3.0
    assert_position_data(sig, FISHER)
    assert "ZHEDAIYU 01001" in sig.message and "closed season" in sig.message
    h.every(3, 30, FISHER, SEA, sog=0.5)  # hauling nets: a short dip does not resolve
    h.every(3, 30, FISHER, SEA, sog=3.5)
    assert len(h.signals) == 1
    h.every(4.5, 30, FISHER, SEA, sog=12.0)  # steaming home
    end = only(h.every(1, 30, FISHER, SEA, sog=12.0))
    assert not end.active and end.data["reason"] == "no longer fishing in the grid"


def test_fishing_by_ais_ship_type(registry: MaritimeRegistry) -> None:
    h = make(FishingMoratoriumRule, registry, clock_at(2026, 6, 1, 6))
    h.every(15, 60, STRANGER, SEA, sog=3.0)
    assert h.signals == []  # unknown type: not a fishing vessel
    h.static(STRANGER, name="ZHEPUYU 9", ship_type=30)
    sig = only(h.every(11, 60, STRANGER, SEA, sog=3.0))
    assert sig.active and sig.data["ship_type"] == 30 and sig.data["name"] == "ZHEPUYU 9"


def test_fishing_outside_season_or_grid_or_band_is_quiet(registry: MaritimeRegistry) -> None:
    h = make(FishingMoratoriumRule, registry, clock_at(2026, 10, 1, 6))
    h.every(20, 60, FISHER, SEA, sog=3.0)
    h2 = make(FishingMoratoriumRule, registry, clock_at(2026, 6, 1, 6))
    h2.every(20, 60, FISHER, OUTSIDE, sog=3.0)
    h2.every(20, 60, FISHER, SEA, sog=8.0)
    h2.every(20, 60, FERRY, SEA, sog=3.0)
    assert h.signals == [] and h2.signals == []


def test_fishing_resolves_when_season_ends(registry: MaritimeRegistry) -> None:
    h = make(FishingMoratoriumRule, registry, clock_at(2026, 9, 16, 23, 40))
    assert only(h.every(15, 60, FISHER, SEA, sog=3.0)).active
    h.clock.advance(10 * MIN)  # 00:05 on 09-17, local time
    end = only(h.tick())
    assert not end.active and end.data["reason"] == "closed season over"


# --- wiring


def test_build_rules_respects_enabled(registry: MaritimeRegistry) -> None:
    (group,) = build_maritime_rules(MaritimeRulesConfig(), registry)
    assert isinstance(group, MaritimeRules)
    names = [r.name for r in group.rules]
    assert names == [
        "unregistered_vessel", "invalid_mmsi", "ais_gap",
        "position_jump", "restricted_zone", "fishing_moratorium",
    ]  # fmt: skip
    cfg = MaritimeRulesConfig.model_validate({"ais_gap": {"enabled": False}})
    (group,) = build_maritime_rules(cfg, registry)
    assert isinstance(group, MaritimeRules)
    assert "ais_gap" not in [r.name for r in group.rules]


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        MaritimeRulesConfig.model_validate({"ais_gap": {"gap_minute": 3}})


def test_rules_ignore_other_records(registry: MaritimeRegistry) -> None:
    from hub.records import WaterMeterReading

    for rule in build_maritime_rules(MaritimeRulesConfig(), registry):
        state = rule.state_class()
        assert (
            rule.on_record(state, WaterMeterReading(meter_id="M", time_ns=1, total_m3=1.0), 1) == []
        )
        assert rule.on_tick(state, 1) == []


def test_through_the_engine_open_then_resolved(registry: MaritimeRegistry) -> None:
    """The real engine and alert manager turn the signals into an alert lifecycle."""
    from hub.alerts import AlertManager
    from hub.engine import Engine

    engine = Engine(build_maritime_rules(MaritimeRulesConfig(), registry), AlertManager("s", 600))
    clock = ManualClock()
    seen: list[tuple[str, str, str]] = []

    def step(where: tuple[float, float]) -> None:
        clock.advance(60)
        record = registry.tag(VesselPosition(mmsi=STRANGER, time_ns=clock.now_ns(), lat=where[0], lon=where[1],
                                             sog_kn=8.0, cog_deg=90.0, msg_type=1))  # fmt: skip
        for batch in (engine.on_records([record], clock.now_ns()), engine.on_tick(clock.now_ns())):
            seen.extend((a.rule, a.state, a.subject) for a in batch.alerts)

    for _ in range(12):
        step(RESTRICTED)
    for _ in range(7):
        step(OUTSIDE)
    assert engine.rule_errors == {}
    assert ("unregistered_vessel", "open", f"mmsi:{STRANGER}") in seen
    assert ("restricted_zone", "open", f"mmsi:{STRANGER}:zone:rz-cable-01") in seen
    assert ("unregistered_vessel", "resolved", f"mmsi:{STRANGER}") in seen
    assert ("restricted_zone", "resolved", f"mmsi:{STRANGER}:zone:rz-cable-01") in seen
    assert engine.alerts.open_alerts() == []
    json.dumps(engine.snapshot())


def test_a_failing_rule_is_counted_by_name_and_the_others_still_run(
    registry: MaritimeRegistry,
) -> None:
    """The six rules run as one group over one vessel table; one rule's bug costs only its own
    verdicts, and the engine counts it under that rule's name."""
    from hub.alerts import AlertManager
    from hub.engine import Engine
    from hub.rules.maritime import NS_PER_MIN

    class Broken(PositionJumpRule):
        def on_position(self, *args: Any) -> list[Signal]:
            raise RuntimeError("bug")

    cfg = MaritimeRulesConfig()
    group = MaritimeRules(
        [Broken(cfg, registry), UnregisteredVesselRule(cfg, registry)],
        registry,
        int(cfg.vessel_expiry_minutes * NS_PER_MIN),
        cfg.max_vessels,
    )
    engine = Engine([group], AlertManager("s", 600))
    clock = ManualClock()
    opened: list[str] = []
    for _ in range(12):
        clock.advance(60)
        record = VesselPosition(
            mmsi=STRANGER, time_ns=clock.now_ns(), lat=SEA[0], lon=SEA[1], sog_kn=8.0
        )
        batch = engine.on_records([registry.tag(record)], clock.now_ns())
        opened += [a.rule for a in batch.alerts if a.state == "open"]
    assert opened == ["unregistered_vessel"]
    assert engine.rule_errors == {"position_jump": 12}


def _group_alerts(
    rules: list[Any], registry: MaritimeRegistry
) -> tuple[list[tuple[str, str, str, str]], dict[str, int]]:
    """Alert changes (rule, state, subject, message) of a busy scene through the real engine:
    an unregistered vessel dwelling, entering a restricted zone and going dark; a placeholder
    MMSI with and without a fix; a jumping ferry; a static report from a stranger."""
    from hub.alerts import AlertManager
    from hub.engine import Engine
    from hub.rules.maritime import NS_PER_MIN

    cfg = MaritimeRulesConfig()
    expiry_ns = int(cfg.vessel_expiry_minutes * NS_PER_MIN)
    engine = Engine([MaritimeRules(rules, registry, expiry_ns, 20)], AlertManager("s", 600))
    clock = ManualClock()
    changes: list[tuple[str, str, str, str]] = []

    def step(*records: Record) -> None:
        now = clock.now_ns()
        tagged = [registry.tag(r) for r in records]
        for batch in (engine.on_records(tagged, now), engine.on_tick(now)):
            changes.extend((a.rule, a.state, a.subject, a.message) for a in batch.alerts)

    for minute in range(40):
        clock.advance(MIN)
        now = clock.now_ns()
        where = SEA if minute < 12 else RESTRICTED
        ferry = SEA if minute % 2 else OUTSIDE
        reports: list[Record] = [
            VesselStatic(mmsi="000000007", time_ns=now),  # an unknown MMSI, nothing else
            VesselPosition(mmsi="123456789", time_ns=now, msg_type=1),  # no fix
            VesselPosition(mmsi="123456789", time_ns=now, lat=SEA[0], lon=SEA[1], msg_type=1),
            VesselPosition(mmsi=FERRY, time_ns=now, lat=ferry[0], lon=ferry[1], sog_kn=9.0),
        ]
        if minute < 20:
            reports.append(
                VesselPosition(mmsi=STRANGER, time_ns=now, lat=where[0], lon=where[1],
                               sog_kn=8.0, cog_deg=10.0, msg_type=1)
            )  # fmt: skip
        step(*reports)
    return changes, dict(engine.rule_errors)


@pytest.mark.parametrize("hook", ["on_position", "on_static", "check"])
@pytest.mark.parametrize("broken", ["unregistered_vessel", "ais_gap", "fishing_moratorium"])
def test_a_rule_failing_first_middle_or_last_costs_only_its_own_alerts(
    registry: MaritimeRegistry, hook: str, broken: str
) -> None:
    """The group runs its rules under one try: whichever rule fails, in whichever hook, the
    others raise and resolve exactly what they do without it (and in the same order), and the
    failures are counted under the failing rule's name."""
    from hub.rules.maritime import RULE_CLASSES

    def fail(*args: Any) -> list[Signal]:
        raise RuntimeError("bug")

    cfg = MaritimeRulesConfig()
    others = [cls(cfg, registry) for name, cls in RULE_CLASSES.items() if name != broken]
    expected, errors = _group_alerts(others, registry)
    assert errors == {}
    assert {"unregistered_vessel", "invalid_mmsi", "position_jump", "restricted_zone"} - {
        broken
    } <= {rule for rule, *_ in expected}

    rules = [
        type("Broken", (cls,), {hook: fail})(cfg, registry)
        if name == broken
        else cls(cfg, registry)
        for name, cls in RULE_CLASSES.items()
    ]
    changes, errors = _group_alerts(rules, registry)
    assert [c for c in changes if c[0] != broken] == expected  # its other hooks still work
    assert list(errors) == [broken] and errors[broken] > 0


def test_a_failing_rule_run_on_its_own_is_counted_by_the_engine(
    registry: MaritimeRegistry,
) -> None:
    from hub.alerts import AlertManager
    from hub.engine import Engine

    class Broken(UnregisteredVesselRule):
        def on_position(self, *args: Any) -> list[Signal]:
            raise RuntimeError("bug")

    engine = Engine([Broken(MaritimeRulesConfig(), registry)], AlertManager("s", 600))
    record = VesselPosition(mmsi=STRANGER, time_ns=1, lat=SEA[0], lon=SEA[1], sog_kn=8.0)
    assert engine.on_records([registry.tag(record)], 1).alerts == []
    assert engine.rule_errors == {"unregistered_vessel": 1}
