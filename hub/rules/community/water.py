"""Water-meter rules: continuous flow, meter offline, low battery and tamper / reverse flow."""

from __future__ import annotations

from typing import Any

from hub.alerts import iso
from hub.records import GridTags, Record, WaterMeterReading
from hub.registry.community import CommunityRegistry
from hub.rules import Signal
from hub.rules.community._base import (
    ALARM_LOW_BATTERY,
    ALARM_REVERSE_FLOW,
    LITRES_PER_M3,
    NS,
    _CommunityRule,
    _grid_from,
    _grid_json,
    _hours,
)
from hub.rules.community.config import CommunityRulesConfig


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
