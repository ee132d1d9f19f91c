"""Community rules: elder no-water-use, meter health, continuous flow and door-access alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.alerts import iso
from hub.records import DoorEvent, GridTags, Record, WaterMeterReading
from hub.registry.community import CommunityRegistry, Household
from hub.rules import Rule, Signal

NS = 1_000_000_000
LITRES_PER_M3 = 1000.0
USE_EPSILON_M3 = 0.0001  # 0.1 L: below any meter's resolution, above float noise
# WaterMeterReading.alarm_bits meanings (drivers.modbus_meter.MeterAlarm).
ALARM_LOW_BATTERY = 0x02
ALARM_TAMPER = 0x04
ALARM_REVERSE_FLOW = 0x08


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class ElderNoWaterConfig(_Section):
    """Less than `min_litres` over the trailing `warn_hours` → warning; over `critical_hours`
    → critical. 12 h is longer than a night's sleep plus the evening and morning routine."""

    min_litres: float = Field(default=5.0, ge=0)
    warn_hours: float = Field(default=12.0, gt=0)
    critical_hours: float = Field(default=24.0, gt=0)
    # Samples of the meter total are kept this far apart (bounds memory: ~150 per meter).
    sample_minutes: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ElderNoWaterConfig:
        if self.critical_hours < self.warn_hours:
            raise ValueError("critical_hours must be >= warn_hours")
        return self


class ContinuousFlowConfig(_Section):
    hours: float = Field(default=6.0, gt=0)  # flow never paused for this long → leak / tap running
    zero_flow_m3h: float = Field(default=0.001, ge=0)  # at or below this (1 L/h) counts as a pause
    max_gap_minutes: float = Field(default=90.0, gt=0)  # a longer reading gap restarts the count


class MeterOfflineConfig(_Section):
    offline_minutes: float = Field(default=60.0, gt=0)
    watch_registry: bool = True  # also watch registered meters that never reported


class MeterLowBatteryConfig(_Section):
    min_battery_v: float = 3.3
    critical_battery_v: float = 3.0
    hysteresis_v: float = Field(default=0.1, ge=0)  # resolves at min_battery_v + hysteresis_v


class MeterTamperConfig(_Section):
    tamper_bits: int = Field(default=ALARM_TAMPER, ge=0)
    reverse_flow: bool = True


class DoorForcedConfig(_Section):
    events: list[str] = Field(default_factory=lambda: ["forced", "alarm"])
    resolve_minutes: float = Field(default=30.0, gt=0)


class DoorHeldOpenConfig(_Section):
    resolve_minutes: float = Field(default=10.0, gt=0)  # or earlier, on the door's next open


class DoorDeniedConfig(_Section):
    count: int = Field(default=5, ge=1)
    window_minutes: float = Field(default=10.0, gt=0)


class CommunityRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    elder_no_water: ElderNoWaterConfig = ElderNoWaterConfig()
    continuous_flow: ContinuousFlowConfig = ContinuousFlowConfig()
    meter_offline: MeterOfflineConfig = MeterOfflineConfig()
    meter_low_battery: MeterLowBatteryConfig = MeterLowBatteryConfig()
    meter_tamper: MeterTamperConfig = MeterTamperConfig()
    door_forced: DoorForcedConfig = DoorForcedConfig()
    door_held_open: DoorHeldOpenConfig = DoorHeldOpenConfig()
    door_denied_repeatedly: DoorDeniedConfig = DoorDeniedConfig()
    # grid or micro_grid id → recipient group; matches go to alert data["recipients"].
    routing: dict[str, str] = Field(default_factory=dict)
    # Time zone of clock times in alert messages ("door not opened since 20:10").
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)


class _CommunityRule:
    """Shared plumbing: grid routing, local clock times, grid tags kept in JSON state."""

    name = ""

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        self.rules_cfg = cfg
        self.registry = registry
        self.tz = timezone(timedelta(hours=cfg.utc_offset_hours))

    def signal(
        self,
        subject: str,
        active: bool,
        severity: str,
        message: str,
        data: dict[str, Any],
        grid: GridTags,
    ) -> Signal:
        recipients = self.recipients(grid)
        if recipients:
            data = {**data, "recipients": recipients}
        return Signal(self.name, subject, active, severity, message, data, grid)

    def recipients(self, grid: GridTags) -> list[str]:
        routing = self.rules_cfg.routing
        groups = [routing.get(g) for g in (grid.micro_grid, grid.grid) if g]
        return list(dict.fromkeys(g for g in groups if g))

    def clock_time(self, time_ns: int, ref_ns: int) -> str:
        """ "20:10", or "11-22 20:10" when more than a day before `ref_ns`."""
        local = datetime.fromtimestamp(time_ns / NS, tz=UTC).astimezone(self.tz)
        return local.strftime("%m-%d %H:%M" if ref_ns - time_ns > 86_400 * NS else "%H:%M")

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        raise NotImplementedError

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        return []


def _grid_json(grid: GridTags) -> list[str]:
    return [grid.grid, grid.micro_grid, grid.police_grid]


def _grid_from(raw: Any) -> GridTags:
    return GridTags(*raw) if isinstance(raw, list) and len(raw) == 3 else GridTags()


def _hours(ns: int) -> float:
    return ns / (3600 * NS)


# --- water ---------------------------------------------------------------------------------------


class ElderNoWater(_CommunityRule):
    """`elder_no_water`: a solitary elder's meter total rose by < min_litres over the window.

    The window ends at the latest reading, never at "now": a meter that stops reporting freezes
    the verdict (that is `meter_offline`'s alert), so missing data never looks like no water use.
    State: {"meters": {meter_id: {...samples...}}, "doors": {door_id: [t_ns, event]},
    "buildings": {building: [t_ns, event, door_id]}}."""

    name = "elder_no_water"
    record_types: tuple[type, ...] = (WaterMeterReading, DoorEvent)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.elder_no_water

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if isinstance(record, DoorEvent):
            self._remember_door(state, record)
            return []
        if not isinstance(record, WaterMeterReading) or record.total_m3 is None:
            return []
        meters = state.setdefault("meters", {})
        household = self._household(record)
        if household is None or not household.is_solitary_elder:
            return self._forget(meters, record.meter_id)
        meter = meters.setdefault(record.meter_id, _new_meter(record, household))
        meter["hh"] = household.household_id
        if not self._add_reading(meter, record):
            return []
        return self._evaluate(state, record.meter_id, meter, household)

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals = []
        for meter_id, meter in state.get("meters", {}).items():
            household = self.registry.household(meter["hh"])
            if meter.get("sev") and (
                household is None
                or not household.is_solitary_elder
                or self.registry.is_away(meter["hh"], now_ns)
            ):
                signals += self._evaluate(state, meter_id, meter, household)
        return signals

    def _household(self, record: WaterMeterReading) -> Household | None:
        if record.household:
            return self.registry.household(record.household)
        return self.registry.household_of_meter(record.meter_id)

    def _forget(self, meters: dict[str, Any], meter_id: str) -> list[Signal]:
        meter = meters.pop(meter_id, None)
        if not meter or not meter.get("sev"):
            return []
        grid = _grid_from(meter.get("grid"))
        message = f"household {meter['hh']} is no longer registered as a solitary elder"
        return [self.signal(f"household:{meter['hh']}", False, "info", message, {}, grid)]

    def _remember_door(self, state: dict[str, Any], record: DoorEvent) -> None:
        if self.registry.door(record.door_id) is None:
            return  # only registered doors are evidence; keeps the state bounded
        state.setdefault("doors", {})[record.door_id] = [record.time_ns, record.event]
        if record.building:
            entry = [record.time_ns, record.event, record.door_id]
            state.setdefault("buildings", {})[record.building] = entry

    def _add_reading(self, meter: dict[str, Any], record: WaterMeterReading) -> bool:
        """Fold one reading into the meter's samples; False if it is out of order."""
        assert record.total_m3 is not None
        t_ns, total = record.time_ns, record.total_m3
        latest = meter.get("latest")
        if latest is not None and t_ns <= latest[0]:
            return False
        if latest is not None and total < latest[1] - USE_EPSILON_M3:
            meter["samples"] = []  # meter replaced or reset: start the window afresh
        elif latest is not None and total > latest[1] + USE_EPSILON_M3:
            meter["last_use_ns"] = t_ns
        meter["latest"] = [t_ns, total]
        meter["grid"] = _grid_json(record.grid)
        samples = meter["samples"]
        t_s = t_ns // NS
        if not samples or t_s - samples[-1][0] >= self.cfg.sample_minutes * 60:
            samples.append([t_s, total])
        cutoff_s = t_s - self.cfg.critical_hours * 3600
        while len(samples) >= 2 and samples[1][0] <= cutoff_s:
            samples.pop(0)
        return True

    def _litres_in(self, meter: dict[str, Any], hours: float) -> float | None:
        """Litres used over the trailing `hours` up to the latest reading; None until covered."""
        end_ns, total = meter["latest"]
        start_s = end_ns // NS - hours * 3600
        before = [s for s in meter["samples"] if s[0] <= start_s]
        # Rounded: totals are whole litres, but their m³ float difference is not (4.99999…).
        return round((total - before[-1][1]) * LITRES_PER_M3, 6) if before else None

    def _evaluate(
        self,
        state: dict[str, Any],
        meter_id: str,
        meter: dict[str, Any],
        household: Household | None,
    ) -> list[Signal]:
        hid = meter["hh"]
        end_ns = meter["latest"][0]
        severity = None
        if (
            household is not None
            and household.is_solitary_elder
            and not self.registry.is_away(hid, end_ns)
        ):
            severity = self._severity(meter)
        if severity == meter.get("sev"):
            return []
        previous, meter["sev"] = meter.get("sev"), severity
        grid = _grid_from(meter.get("grid"))
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

    def _severity(self, meter: dict[str, Any]) -> str | None:
        critical = self._litres_in(meter, self.cfg.critical_hours)
        if critical is not None and critical < self.cfg.min_litres:
            return "critical"
        warn = self._litres_in(meter, self.cfg.warn_hours)
        if warn is not None and warn < self.cfg.min_litres:
            return "warning"
        return None

    def _resolution(
        self, meter: dict[str, Any], hid: str, household: Household | None, end_ns: int
    ) -> str:
        if household is not None and self.registry.is_away(hid, end_ns):
            return f"elder {hid} is marked away; no-water alert withdrawn"
        if household is None or not household.is_solitary_elder:
            return f"household {hid} is no longer registered as a solitary elder"
        litres = self._litres_in(meter, self.cfg.warn_hours) or 0.0
        return f"elder {hid} is using water again ({litres:.0f} L in the last {self.cfg.warn_hours:g} h)"

    def _evidence(
        self,
        state: dict[str, Any],
        meter_id: str,
        meter: dict[str, Any],
        household: Household | None,
    ) -> tuple[str, dict[str, Any]]:
        hid = meter["hh"]
        end_ns = meter["latest"][0]
        window_h = self.cfg.critical_hours if meter["sev"] == "critical" else self.cfg.warn_hours
        litres = self._litres_in(meter, window_h) or 0.0
        last_use_ns = meter.get("last_use_ns")
        quiet_h = _hours(end_ns - (last_use_ns or meter["first_ns"]))
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
        self, state: dict[str, Any], hid: str, household: Household | None
    ) -> dict[str, Any] | None:
        """The latest event of the household's doors (or, failing that, of its building)."""
        seen = state.get("doors", {})
        candidates = [
            (seen[d.door_id][0], seen[d.door_id][1], d.door_id)
            for d in self.registry.doors_of_household(hid)
            if d.door_id in seen
        ]
        opens = [c for c in candidates if c[1] == "open"] or candidates
        if not opens and household is not None and household.building:
            entry = state.get("buildings", {}).get(household.building)
            opens = [tuple(entry)] if entry else []
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


def _new_meter(record: WaterMeterReading, household: Household) -> dict[str, Any]:
    return {
        "hh": household.household_id,
        "samples": [],
        "latest": None,
        "last_use_ns": None,
        "first_ns": record.time_ns,
        "sev": None,
        "grid": _grid_json(record.grid),
    }


class ContinuousFlow(_CommunityRule):
    """`continuous_flow`: flow never pauses (≤ zero_flow_m3h) for `hours`: tap left running or leak.

    Flow comes from `flow_m3h`, or from the total's rise between readings when a meter has none."""

    name = "continuous_flow"
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.continuous_flow

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        meter = state.setdefault("meters", {}).setdefault(
            record.meter_id, {"since": None, "active": False}
        )
        previous = meter.get("prev")
        if previous is not None and record.time_ns <= previous[0]:
            return []
        flow = self._flow(record, previous)
        gap = (
            previous is not None
            and record.time_ns - previous[0] > self.cfg.max_gap_minutes * 60 * NS
        )
        if record.total_m3 is not None or record.flow_m3h is not None:
            meter["prev"] = [record.time_ns, record.total_m3]
        if flow is None:
            return []
        if gap:
            meter["since"] = None
        if flow <= self.cfg.zero_flow_m3h:
            meter["since"] = None
            if meter["active"]:
                meter["active"] = False
                message = f"meter {record.meter_id}: flow paused, continuous-flow alert resolved"
                return [
                    self.signal(f"meter:{record.meter_id}", False, "info", message, {}, record.grid)
                ]
            return []
        meter["since"] = meter["since"] or record.time_ns
        flowing_h = _hours(record.time_ns - meter["since"])
        if meter["active"] or flowing_h < self.cfg.hours:
            return []
        meter["active"] = True
        return [self._raise(record, flow, flowing_h)]

    def _flow(self, record: WaterMeterReading, previous: list[Any] | None) -> float | None:
        if record.flow_m3h is not None:
            return record.flow_m3h
        if record.total_m3 is None or previous is None or previous[1] is None:
            return None
        dt_h = _hours(record.time_ns - previous[0])
        return max(0.0, (record.total_m3 - previous[1]) / dt_h) if dt_h > 0 else None

    def _raise(self, record: WaterMeterReading, flow: float, flowing_h: float) -> Signal:
        who = f" ({record.household})" if record.household else ""
        message = (
            f"meter {record.meter_id}{who} has had water flowing for {flowing_h:.1f} h without a "
            f"pause ({flow * LITRES_PER_M3:.0f} L/h now): tap left running or leak"
        )
        data = {
            "meter_id": record.meter_id,
            "household": record.household,
            "flow_m3h": flow,
            "flowing_hours": round(flowing_h, 2),
            "threshold_hours": self.cfg.hours,
        }
        return self.signal(f"meter:{record.meter_id}", True, "warning", message, data, record.grid)


class MeterOffline(_CommunityRule):
    """`meter_offline`: no reading from a meter for `offline_minutes` (clock-tick based).

    State: {"last": {meter_id: [seen_ns, grid, micro_grid, police_grid, household]},
    "offline": [meter_id, ...]}."""

    name = "meter_offline"
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_offline

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        last = state.setdefault("last", {})
        offline = state.setdefault("offline", [])
        last[record.meter_id] = [now_ns, *_grid_json(record.grid), record.household]
        if record.meter_id not in offline:
            return []
        offline.remove(record.meter_id)
        message = f"meter {record.meter_id} is reporting again"
        return [self.signal(f"meter:{record.meter_id}", False, "info", message, {}, record.grid)]

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        last = state.setdefault("last", {})
        offline = state.setdefault("offline", [])
        if self.cfg.watch_registry:
            for meter_id, meter in self.registry.meters.items():
                if meter_id not in last:
                    household = self.registry.household(meter.household_id)
                    grid = household.grid if household else GridTags()
                    last[meter_id] = [now_ns, *_grid_json(grid), meter.household_id]
        signals = []
        for meter_id, (seen_ns, *grid, household) in last.items():
            silent_min = (now_ns - seen_ns) / (60 * NS)
            if silent_min > self.cfg.offline_minutes and meter_id not in offline:
                offline.append(meter_id)
                signals.append(
                    self._raise(meter_id, seen_ns, silent_min, _grid_from(grid), household)
                )
        return signals

    def _raise(
        self, meter_id: str, seen_ns: int, silent_min: float, grid: GridTags, hid: str
    ) -> Signal:
        household = self.registry.household(hid) if hid else None
        who = f" ({hid})" if hid else ""
        message = f"meter {meter_id}{who} has sent no reading for {silent_min:.0f} min"
        if household is not None and household.is_solitary_elder:
            message += ": the elder's no-water watch is blind"
        data = {
            "meter_id": meter_id,
            "household": hid,
            "last_seen_at": iso(seen_ns),
            "offline_minutes": self.cfg.offline_minutes,
        }
        return self.signal(f"meter:{meter_id}", True, "warning", message, data, grid)


class MeterLowBattery(_CommunityRule):
    """`meter_low_battery`: battery_v under min_battery_v (critical under critical_battery_v);
    resolves at min_battery_v + hysteresis_v. Without a voltage the LOW_BATTERY alarm bit counts."""

    name = "meter_low_battery"
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_low_battery

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        low = state.setdefault("low", {})
        current = low.get(record.meter_id)
        severity = self._severity(record, current)
        if severity == current:
            return []
        subject = f"meter:{record.meter_id}"
        if severity is None:
            del low[record.meter_id]
            message = f"meter {record.meter_id} battery is fine again"
            return [
                self.signal(
                    subject, False, "info", message, {"battery_v": record.battery_v}, record.grid
                )
            ]
        low[record.meter_id] = severity
        volts = f"{record.battery_v:.2f} V" if record.battery_v is not None else "alarm bit set"
        message = f"meter {record.meter_id} battery low ({volts})"
        data = {
            "meter_id": record.meter_id,
            "household": record.household,
            "battery_v": record.battery_v,
        }
        return [self.signal(subject, True, severity, message, data, record.grid)]

    def _severity(self, record: WaterMeterReading, current: str | None) -> str | None:
        volts = record.battery_v
        if volts is None:
            if record.alarm_bits is None:
                return current
            return "warning" if record.alarm_bits & ALARM_LOW_BATTERY else None
        cfg = self.cfg
        if volts < cfg.critical_battery_v or (
            current == "critical" and volts < cfg.critical_battery_v + cfg.hysteresis_v
        ):
            return "critical"
        if volts < cfg.min_battery_v or (current and volts < cfg.min_battery_v + cfg.hysteresis_v):
            return "warning"
        return None


class MeterTamper(_CommunityRule):
    """`meter_tamper`: the meter's tamper alarm bit, or reverse flow; resolves on a clean reading."""

    name = "meter_tamper"
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_tamper

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        if record.alarm_bits is None and record.reverse_flow is None:
            return []
        active = state.setdefault("active", {})
        reasons = self._reasons(record)
        if reasons == active.get(record.meter_id, []):
            return []
        subject = f"meter:{record.meter_id}"
        if not reasons:
            del active[record.meter_id]
            message = f"meter {record.meter_id}: tamper / reverse flow cleared"
            return [self.signal(subject, False, "info", message, {}, record.grid)]
        active[record.meter_id] = reasons
        message = f"meter {record.meter_id}: {' and '.join(reasons)}"
        data = {
            "meter_id": record.meter_id,
            "household": record.household,
            "reasons": reasons,
            "alarm_bits": record.alarm_bits,
        }
        return [self.signal(subject, True, "warning", message, data, record.grid)]

    def _reasons(self, record: WaterMeterReading) -> list[str]:
        bits = record.alarm_bits or 0
        reasons = []
        if bits & self.cfg.tamper_bits:
            reasons.append("tamper alarm")
        if self.cfg.reverse_flow and (record.reverse_flow or bits & ALARM_REVERSE_FLOW):
            reasons.append("reverse flow")
        return reasons


# --- doors ---------------------------------------------------------------------------------------

_EVENT_TEXT = {
    "forced": "forced open",
    "alarm": "controller alarm (tamper)",
    "held_open": "held open",
}


class _DoorEpisodes(_CommunityRule):
    """Door alerts raised by one event type and resolved after `resolve_minutes` on a tick.

    State: {"open": {door_id: [raised_ns, grid, micro_grid, police_grid]}}."""

    record_types: tuple[type, ...] = (DoorEvent,)
    events: tuple[str, ...] = ()
    severity = "warning"
    resolve_minutes = 10.0
    resolve_on_open = False

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent):
            return []
        episodes = state.setdefault("open", {})
        subject = f"door:{record.door_id}"
        if record.event == "open" and self.resolve_on_open and record.door_id in episodes:
            del episodes[record.door_id]
            return [
                self.signal(
                    subject,
                    False,
                    "info",
                    f"door {record.door_id} closed and used normally again",
                    {},
                    record.grid,
                )
            ]
        if record.event not in self.events:
            return []
        episodes[record.door_id] = [record.time_ns, *_grid_json(record.grid)]
        where = f" (building {record.building})" if record.building else ""
        at = self.clock_time(record.time_ns, now_ns)
        message = (
            f"door {record.door_id}{where} {_EVENT_TEXT.get(record.event, record.event)} at {at}"
        )
        data = {
            "door_id": record.door_id,
            "building": record.building,
            "event": record.event,
            "at": iso(record.time_ns),
        }
        return [self.signal(subject, True, self.severity, message, data, record.grid)]

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        episodes = state.setdefault("open", {})
        expired = [
            d
            for d, (t_ns, *_) in episodes.items()
            if now_ns - t_ns >= self.resolve_minutes * 60 * NS
        ]
        signals = []
        for door_id in expired:
            grid = _grid_from(episodes.pop(door_id)[1:])
            message = f"door {door_id}: no further {'/'.join(self.events)} events for {self.resolve_minutes:g} min"
            signals.append(self.signal(f"door:{door_id}", False, "info", message, {}, grid))
        return signals


class DoorForced(_DoorEpisodes):
    """`door_forced`: a door forced open or a controller alarm; critical."""

    name = "door_forced"
    severity = "critical"

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.events = tuple(cfg.door_forced.events)
        self.resolve_minutes = cfg.door_forced.resolve_minutes


class DoorHeldOpen(_DoorEpisodes):
    """`door_held_open`: a door left open; resolves on its next normal open or after a while."""

    name = "door_held_open"
    resolve_on_open = True

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.events = ("held_open",)
        self.resolve_minutes = cfg.door_held_open.resolve_minutes


class DoorDeniedRepeatedly(_CommunityRule):
    """`door_denied_repeatedly`: `count` denied credentials within `window_minutes` on one door;
    resolves once the window holds no denial. State: {"doors": {door_id: {"t": [...], ...}}}."""

    name = "door_denied_repeatedly"
    record_types: tuple[type, ...] = (DoorEvent,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.door_denied_repeatedly

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent) or record.event != "denied":
            return []
        door = state.setdefault("doors", {}).setdefault(
            record.door_id, {"t": [], "cred": [], "active": False}
        )
        door["t"].append(record.time_ns)
        door["cred"].append(record.credential_hash)
        door["grid"] = _grid_json(record.grid)
        self._prune(door, record.time_ns)
        if door["active"] or len(door["t"]) < self.cfg.count:
            return []
        door["active"] = True
        distinct = len({c for c in door["cred"] if c})
        where = f" (building {record.building})" if record.building else ""
        message = (
            f"door {record.door_id}{where}: {len(door['t'])} denied credentials within "
            f"{self.cfg.window_minutes:g} min ({distinct} different cards)"
        )
        data = {
            "door_id": record.door_id,
            "building": record.building,
            "denied": len(door["t"]),
            "distinct_credentials": distinct,
            "window_minutes": self.cfg.window_minutes,
            "first_at": iso(door["t"][0]),
            "last_at": iso(record.time_ns),
        }
        return [self.signal(f"door:{record.door_id}", True, "warning", message, data, record.grid)]

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        doors = state.setdefault("doors", {})
        signals = []
        for door_id in list(doors):
            door = doors[door_id]
            self._prune(door, now_ns)
            if door["t"]:
                continue
            del doors[door_id]
            if door["active"]:
                message = (
                    f"door {door_id}: no denied credentials for {self.cfg.window_minutes:g} min"
                )
                signals.append(
                    self.signal(
                        f"door:{door_id}", False, "info", message, {}, _grid_from(door.get("grid"))
                    )
                )
        return signals

    def _prune(self, door: dict[str, Any], now_ns: int) -> None:
        cutoff = now_ns - self.cfg.window_minutes * 60 * NS
        keep = [i for i, t in enumerate(door["t"]) if t > cutoff][-max(self.cfg.count, 50) :]
        door["t"] = [door["t"][i] for i in keep]
        door["cred"] = [door["cred"][i] for i in keep]


RULE_CLASSES: dict[str, type[_CommunityRule]] = {
    "elder_no_water": ElderNoWater,
    "continuous_flow": ContinuousFlow,
    "meter_offline": MeterOffline,
    "meter_low_battery": MeterLowBattery,
    "meter_tamper": MeterTamper,
    "door_forced": DoorForced,
    "door_held_open": DoorHeldOpen,
    "door_denied_repeatedly": DoorDeniedRepeatedly,
}


def build_community_rules(cfg: CommunityRulesConfig, registry: CommunityRegistry) -> list[Rule]:
    """The enabled community rules, each reading its thresholds from `cfg`."""
    rules: list[Rule] = []
    for name, cls in RULE_CLASSES.items():
        section = getattr(cfg, name)
        if section.enabled:
            rules.append(cls(cfg, registry))
    return rules
