"""Elder no-water-use rule: a solitary elder's meter shows (almost) no use over hours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from hub.alerts import iso
from hub.records import DoorEvent, GridTags, Record, WaterMeterReading
from hub.registry.community import CommunityRegistry, Household
from hub.rules import Signal
from hub.rules.community._base import (
    LITRES_PER_M3,
    NS,
    USE_EPSILON_M3,
    _CommunityRule,
    _hours,
)
from hub.rules.community.config import CommunityRulesConfig
from hub.rules.state import Sections, TrackedDict, entries, grid_from, grid_json, layout


@dataclass(slots=True, kw_only=True)
class ElderMeter:
    """A solitary elder's meter: sampled totals over the critical window and the verdict."""

    household: str
    first_ns: int  # first reading seen: how long "no use" can have lasted at most
    grid: GridTags
    samples: list[tuple[int, float]] = field(default_factory=list)  # (time_s, total_m3)
    latest: tuple[int, float] | None = None  # (time_ns, total_m3) of the newest reading
    last_use_ns: int | None = None
    severity: str | None = None  # of the open alert

    def to_json(self) -> dict[str, Any]:
        return {
            "household": self.household,
            "first_ns": self.first_ns,
            "grid": grid_json(self.grid),
            "samples": [list(s) for s in self.samples],
            "latest": list(self.latest) if self.latest is not None else None,
            "last_use_ns": self.last_use_ns,
            "severity": self.severity,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        old = "hh" in data  # version 0: terse keys
        latest = data["latest"]
        return cls(
            household=str(data["hh" if old else "household"]),
            first_ns=int(data["first_ns"]),
            grid=grid_from(data.get("grid")),
            samples=[(int(t), float(total)) for t, total in data["samples"]],
            latest=(int(latest[0]), float(latest[1])) if latest is not None else None,
            last_use_ns=data["last_use_ns"],
            severity=data.get("sev" if old else "severity"),
        )


@dataclass(slots=True, kw_only=True)
class DoorSeen:
    """The latest event of a registered door (or of any door of a building)."""

    time_ns: int
    event: str
    door_id: str

    def to_json(self) -> dict[str, Any]:
        return {"time_ns": self.time_ns, "event": self.event, "door_id": self.door_id}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(time_ns=int(data["time_ns"]), event=data["event"], door_id=data["door_id"])


@dataclass(slots=True, kw_only=True)
class ElderState(Sections):
    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {
        "meters": ElderMeter.from_json,
        "doors": DoorSeen.from_json,
        "buildings": DoorSeen.from_json,
    }
    meters: TrackedDict[ElderMeter] = field(default_factory=TrackedDict)
    doors: TrackedDict[DoorSeen] = field(default_factory=TrackedDict)
    buildings: TrackedDict[DoorSeen] = field(default_factory=TrackedDict)

    def record_keys(self, records: Sequence[Any]) -> set[str]:
        return {f"meters/{r.meter_id}" for r in records if isinstance(r, WaterMeterReading)}

    def signal_keys(self, signals: Sequence[Any]) -> set[str]:
        return {f"meters/{s.data['meter_id']}" for s in signals if "meter_id" in s.data}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "meters": {meter_id: m.to_json() for meter_id, m in self.meters.items()},
            "doors": {door_id: d.to_json() for door_id, d in self.doors.items()},
            "buildings": {b: d.to_json() for b, d in self.buildings.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if layout(data, cls.VERSION) == 0:
            doors = data.get("doors", {})  # {door_id: [t_ns, event]}
            buildings = data.get("buildings", {})  # {building: [t_ns, event, door_id]}
            return cls(
                meters=entries(data.get("meters"), ElderMeter.from_json),
                doors=TrackedDict(
                    (d, DoorSeen(time_ns=t, event=e, door_id=d)) for d, (t, e) in doors.items()
                ),
                buildings=TrackedDict(
                    (b, DoorSeen(time_ns=t, event=e, door_id=d))
                    for b, (t, e, d) in buildings.items()
                ),
            )
        return cls(
            meters=entries(data["meters"], ElderMeter.from_json),
            doors=entries(data["doors"], DoorSeen.from_json),
            buildings=entries(data["buildings"], DoorSeen.from_json),
        )


class ElderNoWater(_CommunityRule):
    """`elder_no_water`: a solitary elder's meter total rose by < min_litres over the window.

    The window ends at the latest reading, never at "now": a meter that stops reporting freezes
    the verdict (that is `meter_offline`'s alert), so missing data never looks like no water use.
    """

    name = "elder_no_water"
    state_class = ElderState
    record_types: tuple[type, ...] = (WaterMeterReading, DoorEvent)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.elder_no_water

    def on_record(self, state: ElderState, record: Record, now_ns: int) -> list[Signal]:
        if isinstance(record, DoorEvent):
            self._remember_door(state, record)
            return []
        if not isinstance(record, WaterMeterReading) or record.total_m3 is None:
            return []
        meters = state.meters
        household = self._household(record)
        if household is None or not household.is_solitary_elder:
            return self._forget(meters, record.meter_id)
        meter = meters.get(record.meter_id)
        if meter is None:
            meter = meters[record.meter_id] = ElderMeter(
                household=household.household_id, first_ns=record.time_ns, grid=record.grid
            )
        meter.household = household.household_id
        if not self._add_reading(meter, record):
            return []
        return self._evaluate(state, record.meter_id, meter, household)

    def on_tick(self, state: ElderState, now_ns: int) -> list[Signal]:
        signals = []
        for meter_id, meter in state.meters.items():
            household = self.registry.household(meter.household)
            if meter.severity and (
                household is None
                or not household.is_solitary_elder
                or self.registry.is_away(meter.household, now_ns)
            ):
                signals += self._evaluate(state, meter_id, meter, household)
        return signals

    def _household(self, record: WaterMeterReading) -> Household | None:
        if record.household:
            return self.registry.household(record.household)
        return self.registry.household_of_meter(record.meter_id)

    def _forget(self, meters: dict[str, ElderMeter], meter_id: str) -> list[Signal]:
        meter = meters.pop(meter_id, None)
        if meter is None or not meter.severity:
            return []
        message = f"household {meter.household} is no longer registered as a solitary elder"
        return [self.signal(f"household:{meter.household}", False, "info", message, {}, meter.grid)]

    def _remember_door(self, state: ElderState, record: DoorEvent) -> None:
        if self.registry.door(record.door_id) is None:
            return  # only registered doors are evidence; keeps the state bounded
        seen = DoorSeen(time_ns=record.time_ns, event=record.event, door_id=record.door_id)
        state.doors[record.door_id] = seen
        if record.building:
            state.buildings[record.building] = seen

    def _add_reading(self, meter: ElderMeter, record: WaterMeterReading) -> bool:
        """Fold one reading into the meter's samples; False if it is out of order."""
        assert record.total_m3 is not None
        t_ns, total = record.time_ns, record.total_m3
        latest = meter.latest
        if latest is not None and t_ns <= latest[0]:
            return False
        if latest is not None and total < latest[1] - USE_EPSILON_M3:
            meter.samples = []  # meter replaced or reset: start the window afresh
        elif latest is not None and total > latest[1] + USE_EPSILON_M3:
            meter.last_use_ns = t_ns
        meter.latest = (t_ns, total)
        meter.grid = record.grid
        samples = meter.samples
        t_s = t_ns // NS
        if not samples or t_s - samples[-1][0] >= self.cfg.sample_minutes * 60:
            samples.append((t_s, total))
        cutoff_s = t_s - self.cfg.critical_hours * 3600
        while len(samples) >= 2 and samples[1][0] <= cutoff_s:
            samples.pop(0)
        return True

    def _litres_in(self, meter: ElderMeter, hours: float) -> float | None:
        """Litres used over the trailing `hours` up to the latest reading; None until covered."""
        assert meter.latest is not None
        end_ns, total = meter.latest
        start_s = end_ns // NS - hours * 3600
        before = [s for s in meter.samples if s[0] <= start_s]
        # Rounded: totals are whole litres, but their m³ float difference is not (4.99999…).
        return round((total - before[-1][1]) * LITRES_PER_M3, 6) if before else None

    def _evaluate(
        self,
        state: ElderState,
        meter_id: str,
        meter: ElderMeter,
        household: Household | None,
    ) -> list[Signal]:
        hid = meter.household
        assert meter.latest is not None
        end_ns = meter.latest[0]
        severity = None
        if (
            household is not None
            and household.is_solitary_elder
            and not self.registry.is_away(hid, end_ns)
        ):
            severity = self._severity(meter)
        if severity == meter.severity:
            return []
        previous, meter.severity = meter.severity, severity
        grid = meter.grid
        if household is not None and household.grid.grid:
            grid = household.grid
        subject = f"household:{hid}"
        if severity is None:
            message = self._resolution(meter, hid, household, end_ns)
            return (
                [self.signal(subject, False, "info", message, {"meter_id": meter_id}, grid)]
                if previous
                else []
            )
        message, data = self._evidence(state, meter_id, meter, household)
        return [self.signal(subject, True, severity, message, data, grid)]

    def _severity(self, meter: ElderMeter) -> str | None:
        critical = self._litres_in(meter, self.cfg.critical_hours)
        if critical is not None and critical < self.cfg.min_litres:
            return "critical"
        warn = self._litres_in(meter, self.cfg.warn_hours)
        if warn is not None and warn < self.cfg.min_litres:
            return "warning"
        return None

    def _resolution(
        self, meter: ElderMeter, hid: str, household: Household | None, end_ns: int
    ) -> str:
        if household is not None and self.registry.is_away(hid, end_ns):
            return f"elder {hid} is marked away; no-water alert withdrawn"
        if household is None or not household.is_solitary_elder:
            return f"household {hid} is no longer registered as a solitary elder"
        litres = self._litres_in(meter, self.cfg.warn_hours) or 0.0
        return f"elder {hid} is using water again ({litres:.0f} L in the last {self.cfg.warn_hours:g} h)"

    def _evidence(
        self,
        state: ElderState,
        meter_id: str,
        meter: ElderMeter,
        household: Household | None,
    ) -> tuple[str, dict[str, Any]]:
        hid = meter.household
        assert meter.latest is not None
        end_ns = meter.latest[0]
        window_h = self.cfg.critical_hours if meter.severity == "critical" else self.cfg.warn_hours
        litres = self._litres_in(meter, window_h) or 0.0
        last_use_ns = meter.last_use_ns
        quiet_h = _hours(end_ns - (last_use_ns or meter.first_ns))
        if litres < 0.5:
            text = f"elder {hid} has used no water for {quiet_h:.0f} h"
        else:
            text = f"elder {hid} has used only {litres:.1f} L of water in {window_h:g} h"
        door = self._last_door(state, hid, household)
        text += self._door_text(door, last_use_ns, end_ns)
        data = {
            "household": hid,
            "meter_id": meter_id,
            "building": household.building if household else "",
            "litres_in_window": round(litres, 1),
            "window_hours": window_h,
            "quiet_hours": round(quiet_h, 1),
            "last_use_at": iso(last_use_ns),
            "last_use_ns": last_use_ns,
            "last_reading_at": iso(end_ns),
            "last_door_event": door,
        }
        return text, data

    def _last_door(
        self, state: ElderState, hid: str, household: Household | None
    ) -> dict[str, Any] | None:
        """The latest event of the household's doors (or, failing that, of its building)."""
        seen = state.doors
        candidates = [
            (seen[d.door_id].time_ns, seen[d.door_id].event, d.door_id)
            for d in self.registry.doors_of_household(hid)
            if d.door_id in seen
        ]
        opens = [c for c in candidates if c[1] == "open"] or candidates
        if not opens and household is not None and household.building:
            entry = state.buildings.get(household.building)
            opens = [(entry.time_ns, entry.event, entry.door_id)] if entry else []
        if not opens:
            return None
        t_ns, event, door_id = max(opens)
        return {"door_id": door_id, "event": event, "at": iso(t_ns), "time_ns": t_ns}

    def _door_text(self, door: dict[str, Any] | None, last_use_ns: int | None, end_ns: int) -> str:
        if door is None:
            return ", no door events known"
        at = self.clock_time(door["time_ns"], end_ns)
        if door["event"] != "open":
            return f", last door event {door['event']} at {at}"
        if last_use_ns is None or door["time_ns"] <= last_use_ns:
            return f", door not opened since {at}"
        return f", door last opened at {at}"
