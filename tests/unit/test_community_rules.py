"""Community rules on a simulated clock, through the real alert lifecycle (AlertManager)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from hub.alerts import Alert, AlertManager
from hub.clock import ManualClock
from hub.records import DoorEvent, Record, WaterMeterReading
from hub.registry.community import CommunityRegistry, CommunityRegistryConfig
from hub.rules import Rule
from hub.rules.community import CommunityRulesConfig, build_community_rules

DATA = Path(__file__).parent.parent / "data" / "community"
CST = timezone(timedelta(hours=8))
NS = 1_000_000_000
MIN = 60


def local_ns(day: int, hour: int, minute: int = 0) -> int:
    """Nanoseconds of 2026-11-<day> hh:mm China Standard Time."""
    return int(datetime(2026, 11, day, hour, minute, tzinfo=CST).timestamp()) * NS


class Hub:
    """Rules + their JSON state + the real AlertManager, advanced by a ManualClock."""

    def __init__(self, cfg: CommunityRulesConfig | None = None, start_ns: int = 0) -> None:
        self.registry = CommunityRegistry(
            CommunityRegistryConfig(
                households_csv=DATA / "households.csv",
                meters_csv=DATA / "meters.csv",
                doors_csv=DATA / "doors.csv",
            )
        )
        self.rules: list[Rule] = build_community_rules(cfg or CommunityRulesConfig(), self.registry)
        self.states: dict[str, Any] = {r.name: r.state_class() for r in self.rules}
        self.alerts = AlertManager("test-site", cooldown_s=0)
        self.clock = ManualClock(start_ns or local_ns(20, 0))
        self.changes: list[Alert] = []

    def feed(self, record: Record) -> list[Alert]:
        record = self.registry.tag(record)
        out = []
        for rule in self.rules:
            for signal in rule.on_record(self.states[rule.name], record, self.clock.now_ns()):
                out += self._apply(signal)
        return out

    def tick(self) -> list[Alert]:
        out = []
        for rule in self.rules:
            for signal in rule.on_tick(self.states[rule.name], self.clock.now_ns()):
                out += self._apply(signal)
        # the engine persists states as JSON: carry on from the reloaded copy, as after a restart
        for rule in self.rules:
            saved = json.loads(json.dumps(self.states[rule.name].to_json()))
            restored = rule.state_class.from_json(saved)
            assert restored == self.states[rule.name]
            self.states[rule.name] = restored
        return out

    def state_size(self, rule: str) -> int:
        """Bytes of one rule's persisted state."""
        return len(json.dumps(self.states[rule].to_json()))

    def _apply(self, signal: Any) -> list[Alert]:
        changed = self.alerts.apply(signal, self.clock.now_ns())
        if changed is None:
            return []
        self.changes.append(changed[0])
        return [changed[0]]

    def of(self, rule: str) -> list[Alert]:
        return [a for a in self.changes if a.rule == rule]


def elder_day(
    start_day: int, days: int, stop_at: tuple[int, int, int] | None = None
) -> Iterator[tuple[int, float]]:
    """(time, litres used since the previous reading) every 10 min: 10 L at each full hour from
    07:00 to 21:00, none at night (a 10 h sleep); nothing at all after `stop_at` (day, h, m)."""
    t = local_ns(start_day, 0)
    end = t + days * 86_400 * NS
    stop_ns = local_ns(*stop_at) if stop_at else end + 1
    while t < end:
        local = datetime.fromtimestamp(t / NS, tz=CST)
        used = 10.0 if 7 <= local.hour <= 21 and local.minute == 0 and t < stop_ns else 0.0
        yield t, used
        t += 10 * MIN * NS


def move_to(hub: Hub, time_ns: int) -> None:
    hub.clock.advance((time_ns - hub.clock.now_ns()) / NS)


def run_meter(
    hub: Hub, meter_id: str, samples: Iterator[tuple[int, float]], total_m3: float = 100.0
) -> float:
    for t, used in samples:
        move_to(hub, t)
        total_m3 += used / 1000
        hub.feed(
            WaterMeterReading(
                meter_id=meter_id, time_ns=t, total_m3=total_m3, flow_m3h=0.0, battery_v=3.6
            )
        )
        hub.tick()
    return total_m3


def test_elder_sleeping_through_the_night_raises_nothing() -> None:
    hub = Hub()
    run_meter(hub, "M-501", elder_day(20, 4))
    assert hub.of("elder_no_water") == []


def test_elder_no_water_warns_escalates_with_door_evidence_then_resolves() -> None:
    hub = Hub()
    # a normal day, then the last use at 20:00 on the 21st; the stairwell door opened at 19:10
    total = run_meter(hub, "M-501", elder_day(20, 1))
    samples = list(elder_day(21, 3, stop_at=(21, 20, 1)))
    first_half = [s for s in samples if s[0] < local_ns(21, 19, 10)]
    total = run_meter(hub, "M-501", iter(first_half), total)
    hub.feed(
        DoorEvent(
            door_id="D-3-2", time_ns=local_ns(21, 19, 10), event="open", credential_hash="abc"
        )
    )
    total = run_meter(
        hub, "M-501", iter([s for s in samples if s[0] >= local_ns(21, 19, 10)]), total
    )
    alerts = hub.of("elder_no_water")
    assert [(a.state, a.severity) for a in alerts] == [("open", "warning"), ("updated", "critical")]
    warning, critical = alerts
    # warned 12 h after the last use (window start lies up to one sample step earlier)
    assert local_ns(22, 8) <= warning.opened_ns <= local_ns(22, 8, 20)
    assert local_ns(22, 20) <= critical.updated_ns <= local_ns(22, 20, 20)
    assert (
        warning.message == "elder 3-2-501 has used no water for 12 h, door not opened since 19:10"
    )
    assert critical.message == (
        "elder 3-2-501 has used no water for 24 h, door not opened since 11-21 19:10"
    )
    assert warning.subject == "household:3-2-501"
    assert warning.grid.micro_grid == "G-03-2" and warning.grid.police_grid == "PG-07"
    assert warning.data["litres_in_window"] == 0.0
    assert warning.data["last_door_event"]["door_id"] == "D-3-2"
    assert warning.data["last_use_at"] == "2026-11-21T12:00:00Z"
    assert critical.data["window_hours"] == 24.0
    # water again → resolved, same alert id
    move_to(hub, local_ns(24, 0, 10))
    resolved = hub.feed(
        WaterMeterReading(meter_id="M-501", time_ns=local_ns(24, 0, 10), total_m3=total + 0.008)
    )
    assert [(a.state, a.alert_id) for a in resolved] == [("resolved", warning.alert_id)]


def test_door_not_opened_since_is_in_the_message() -> None:
    hub = Hub()
    hub.feed(DoorEvent(door_id="D-3-2", time_ns=local_ns(20, 20, 10), event="open"))
    run_meter(hub, "M-501", elder_day(20, 2, stop_at=(20, 21, 1)))
    opened = hub.of("elder_no_water")[0]
    assert opened.message == "elder 3-2-501 has used no water for 12 h, door not opened since 20:10"


def test_trickle_below_min_litres_still_warns_with_litres_in_message() -> None:
    hub = Hub()
    samples = ((t, 0.2 if i % 6 == 0 else 0.0) for i, (t, _) in enumerate(elder_day(20, 1)))
    run_meter(hub, "M-501", samples)
    opened = hub.of("elder_no_water")[0]
    assert opened.severity == "warning"
    assert opened.message.startswith("elder 3-2-501 has used only 2.4 L of water in 12 h")


def test_away_household_is_not_alerted_and_away_resolves_open_alert() -> None:
    hub = Hub()
    # 3-2-601 is away until 2026-12-01: two silent days raise nothing
    run_meter(hub, "M-601", elder_day(20, 2, stop_at=(20, 0)))
    assert hub.of("elder_no_water") == []
    run_meter(hub, "M-501", elder_day(20, 1, stop_at=(20, 0)))
    assert [a.state for a in hub.of("elder_no_water")] == ["open"]
    hub.registry.apply_update("household", {"household_id": "3-2-501", "away_until": "2026-11-30"})
    resolved = hub.tick()
    assert [(a.state, a.message) for a in resolved] == [
        ("resolved", "elder 3-2-501 is marked away; no-water alert withdrawn")
    ]


def test_non_elder_household_is_not_watched() -> None:
    hub = Hub()
    run_meter(hub, "M-502", elder_day(20, 2, stop_at=(20, 0)))
    assert hub.of("elder_no_water") == []
    fresh = next(r for r in hub.rules if r.name == "elder_no_water").state_class()
    assert hub.states["elder_no_water"].to_json() == fresh.to_json()


def test_elder_window_state_is_bounded() -> None:
    """Five days of readings persist no more than two: the window forgets what it is past."""
    sizes = []
    for days in (2, 5):
        hub = Hub()
        run_meter(hub, "M-501", elder_day(20, days))
        sizes.append(hub.state_size("elder_no_water"))
    assert sizes[1] <= sizes[0] * 1.05


def _readings(
    hub: Hub, meter_id: str, minutes: int, step_min: int = 10, **fields: Any
) -> list[Alert]:
    out = []
    for _ in range(minutes // step_min):
        hub.clock.advance(step_min * MIN)
        out += hub.feed(WaterMeterReading(meter_id=meter_id, time_ns=hub.clock.now_ns(), **fields))
        out += hub.tick()
    return out


def test_continuous_flow_raises_after_hours_and_resolves_on_pause() -> None:
    hub = Hub()
    _readings(hub, "M-502", 5 * 60, flow_m3h=0.03)
    assert hub.of("continuous_flow") == []
    alerts = [a for a in _readings(hub, "M-502", 70, flow_m3h=0.03) if a.rule == "continuous_flow"]
    assert [(a.rule, a.state) for a in alerts] == [("continuous_flow", "open")]
    assert "flowing for 6.0 h without a pause (30 L/h now)" in alerts[0].message
    assert alerts[0].data["household"] == "3-2-502"
    alerts = _readings(hub, "M-502", 10, flow_m3h=0.0)
    assert [(a.rule, a.state) for a in alerts if a.rule == "continuous_flow"] == [
        ("continuous_flow", "resolved")
    ]


def test_continuous_flow_from_totals_when_meter_has_no_flow_register() -> None:
    hub = Hub()
    total = 10.0
    for _ in range(6 * 6 + 2):
        hub.clock.advance(10 * MIN)
        total += 0.002  # 12 L/h
        hub.feed(WaterMeterReading(meter_id="M-502", time_ns=hub.clock.now_ns(), total_m3=total))
    assert [a.state for a in hub.of("continuous_flow")] == ["open"]


def test_meter_offline_on_tick_and_back() -> None:
    hub = Hub()
    hub.feed(WaterMeterReading(meter_id="M-502", time_ns=hub.clock.now_ns(), total_m3=1.0))
    hub.clock.advance(59 * MIN)
    assert [a for a in hub.tick() if a.subject == "meter:M-502"] == []
    hub.clock.advance(2 * MIN)
    raised = [a for a in hub.tick() if a.subject == "meter:M-502"]
    assert [(a.rule, a.state) for a in raised] == [("meter_offline", "open")]
    assert raised[0].message == "meter M-502 (3-2-502) has sent no reading for 61 min"
    assert [a for a in hub.tick() if a.subject == "meter:M-502"] == []  # raised once only
    back = hub.feed(WaterMeterReading(meter_id="M-502", time_ns=hub.clock.now_ns(), total_m3=1.0))
    assert [(a.rule, a.state) for a in back] == [("meter_offline", "resolved")]


def test_registered_meter_that_never_reported_goes_offline_and_elder_watch_is_blind() -> None:
    hub = Hub()
    hub.tick()
    hub.clock.advance(61 * MIN)
    raised = {a.subject: a for a in hub.tick() if a.rule == "meter_offline"}
    assert set(raised) == {
        "meter:M-501",
        "meter:M-502",
        "meter:M-601",
        "meter:M-301",
        "meter:M-ORPHAN",
    }
    assert raised["meter:M-501"].message.endswith("the elder's no-water watch is blind")
    assert raised["meter:M-501"].grid.grid == "G-03"


def test_low_battery_with_hysteresis_and_escalation() -> None:
    hub = Hub()
    seen = []
    for volts in (3.6, 3.25, 3.35, 3.2, 2.9, 3.05, 3.15, 3.38, 3.45):
        seen += [
            (a.state, a.severity)
            for a in _readings(hub, "M-502", 10, battery_v=volts)
            if a.rule == "meter_low_battery"
        ]
    assert seen == [
        ("open", "warning"),  # 3.25
        ("updated", "critical"),  # 2.9
        ("updated", "warning"),  # 3.15 (>= 3.0 + 0.1 hysteresis)
        ("resolved", "warning"),  # 3.45 (>= 3.3 + 0.1)
    ]


def test_tamper_bit_and_reverse_flow() -> None:
    hub = Hub()
    alerts = _readings(hub, "M-502", 10, alarm_bits=0x04)
    assert [(a.rule, a.message) for a in alerts if a.rule == "meter_tamper"] == [
        ("meter_tamper", "meter M-502: tamper alarm")
    ]
    alerts = _readings(hub, "M-502", 10, alarm_bits=0x04, reverse_flow=True)
    assert [a.message for a in alerts if a.rule == "meter_tamper"] == [
        "meter M-502: tamper alarm and reverse flow"
    ]
    assert [a for a in _readings(hub, "M-502", 10, total_m3=1.0) if a.rule == "meter_tamper"] == []
    cleared = _readings(hub, "M-502", 10, alarm_bits=0, reverse_flow=False)
    assert [a.state for a in cleared if a.rule == "meter_tamper"] == ["resolved"]


def test_door_forced_is_critical_routed_and_resolves_after_quiet() -> None:
    cfg = CommunityRulesConfig(routing={"G-03-2": "worker-zhao", "G-03": "grid-office-3"})
    hub = Hub(cfg, start_ns=local_ns(21, 2, 14))
    raised = hub.feed(DoorEvent(door_id="D-3-2", time_ns=hub.clock.now_ns(), event="forced"))
    assert [(a.rule, a.severity) for a in raised] == [("door_forced", "critical")]
    assert raised[0].message == "door D-3-2 (building 3) forced open at 02:14"
    assert raised[0].data["recipients"] == ["worker-zhao", "grid-office-3"]
    assert raised[0].grid.police_grid == "PG-07"
    hub.clock.advance(29 * MIN)
    assert [a for a in hub.tick() if a.rule == "door_forced"] == []
    hub.clock.advance(2 * MIN)
    assert [a.state for a in hub.tick() if a.rule == "door_forced"] == ["resolved"]


def test_door_held_open_resolves_on_next_open() -> None:
    hub = Hub(start_ns=local_ns(21, 8))
    raised = hub.feed(DoorEvent(door_id="D-5", time_ns=hub.clock.now_ns(), event="held_open"))
    assert [(a.rule, a.state, a.severity) for a in raised] == [
        ("door_held_open", "open", "warning")
    ]
    hub.clock.advance(3 * MIN)
    closed = hub.feed(DoorEvent(door_id="D-5", time_ns=hub.clock.now_ns(), event="open"))
    assert [(a.rule, a.state) for a in closed] == [("door_held_open", "resolved")]


def test_door_held_open_resolves_after_resolve_minutes() -> None:
    hub = Hub()
    hub.feed(DoorEvent(door_id="D-5", time_ns=hub.clock.now_ns(), event="held_open"))
    hub.clock.advance(10 * MIN)
    assert [(a.rule, a.state) for a in hub.tick() if a.rule == "door_held_open"] == [
        ("door_held_open", "resolved")
    ]


def test_denied_n_in_m_window() -> None:
    hub = Hub()
    # 4 denials spread over 20 minutes: never 5 within 10 minutes
    for _ in range(8):
        hub.clock.advance(3 * MIN)
        hub.feed(
            DoorEvent(
                door_id="D-3-1", time_ns=hub.clock.now_ns(), event="denied", credential_hash="c1"
            )
        )
        hub.tick()
    assert hub.of("door_denied_repeatedly") == []
    hub.clock.advance(30 * MIN)
    hub.tick()
    raised = []
    for i in range(5):
        hub.clock.advance(MIN)
        raised += hub.feed(
            DoorEvent(
                door_id="D-3-1",
                time_ns=hub.clock.now_ns(),
                event="denied",
                credential_hash=f"c{i % 3}",
            )
        )
    assert [(a.rule, a.state) for a in raised] == [("door_denied_repeatedly", "open")]
    assert (
        raised[0].message
        == "door D-3-1 (building 3): 5 denied credentials within 10 min (3 different cards)"
    )
    assert raised[0].data["denied"] == 5
    hub.clock.advance(9 * MIN)
    assert [a for a in hub.tick() if a.rule == "door_denied_repeatedly"] == []
    hub.clock.advance(2 * MIN)
    assert [a.state for a in hub.tick() if a.rule == "door_denied_repeatedly"] == ["resolved"]


def test_disabled_rules_are_not_built() -> None:
    cfg = CommunityRulesConfig.model_validate({"door_forced": {"enabled": False}})
    hub = Hub(cfg)
    assert "door_forced" not in [r.name for r in hub.rules]
    assert len(hub.rules) == 7


def test_bad_threshold_order_is_rejected() -> None:
    with pytest.raises(ValueError, match="critical_hours"):
        CommunityRulesConfig.model_validate({"elder_no_water": {"warn_hours": 30}})
