"""Water-meter rules: continuous flow, meter offline, low battery and tamper / reverse flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

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
    _hours,
)
from hub.rules.community.config import CommunityRulesConfig
from hub.rules.state import Sections, TrackedDict, entries, grid_from, grid_json, layout


@dataclass(slots=True, kw_only=True)
class FlowMeter:
    """One meter's flow run: since when it has flowed without a pause, and its last reading."""

    since_ns: int | None = None
    active: bool = False
    prev_time_ns: int | None = None  # None until a reading with a total or a flow
    prev_total_m3: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "since_ns": self.since_ns,
            "active": self.active,
            "prev_time_ns": self.prev_time_ns,
            "prev_total_m3": self.prev_total_m3,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if "since_ns" not in data:  # version 0: {"since", "active", "prev": [t_ns, total]}
            prev = data.get("prev") or [None, None]
            return cls(
                since_ns=data["since"],
                active=bool(data["active"]),
                prev_time_ns=prev[0],
                prev_total_m3=prev[1],
            )
        return cls(
            since_ns=data["since_ns"],
            active=bool(data["active"]),
            prev_time_ns=data["prev_time_ns"],
            prev_total_m3=data["prev_total_m3"],
        )


@dataclass(slots=True, kw_only=True)
class ContinuousFlowState(Sections):
    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"meters": FlowMeter.from_json}
    meters: TrackedDict[FlowMeter] = field(default_factory=TrackedDict)

    def record_keys(self, records: Sequence[Any]) -> set[str]:
        return {f"meters/{r.meter_id}" for r in records}

    def to_json(self) -> dict[str, Any]:
        meters = {meter_id: m.to_json() for meter_id, m in self.meters.items()}
        return {"version": self.VERSION, "meters": meters}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)
        return cls(meters=entries(data.get("meters"), FlowMeter.from_json))


class ContinuousFlow(_CommunityRule):
    """`continuous_flow`: flow never pauses (≤ zero_flow_m3h) for `hours`: tap left running or leak.

    Flow comes from `flow_m3h`, or from the total's rise between readings when a meter has none."""

    name = "continuous_flow"
    state_class = ContinuousFlowState
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.continuous_flow

    def on_record(self, state: ContinuousFlowState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        meter = state.meters.get(record.meter_id)
        if meter is None:
            meter = state.meters[record.meter_id] = FlowMeter()
        prev_ns = meter.prev_time_ns
        if prev_ns is not None and record.time_ns <= prev_ns:
            return []
        flow = self._flow(record, meter)
        gap = prev_ns is not None and record.time_ns - prev_ns > self.cfg.max_gap_minutes * 60 * NS
        if record.total_m3 is not None or record.flow_m3h is not None:
            meter.prev_time_ns, meter.prev_total_m3 = record.time_ns, record.total_m3
        if flow is None:
            return []
        if gap:
            meter.since_ns = None
        if flow <= self.cfg.zero_flow_m3h:
            meter.since_ns = None
            if meter.active:
                meter.active = False
                message = f"meter {record.meter_id}: flow paused, continuous-flow alert resolved"
                return [
                    self.signal(f"meter:{record.meter_id}", False, "info", message, {}, record.grid)
                ]
            return []
        meter.since_ns = meter.since_ns or record.time_ns
        flowing_h = _hours(record.time_ns - meter.since_ns)
        if meter.active or flowing_h < self.cfg.hours:
            return []
        meter.active = True
        return [self._raise(record, flow, flowing_h)]

    def _flow(self, record: WaterMeterReading, meter: FlowMeter) -> float | None:
        if record.flow_m3h is not None:
            return record.flow_m3h
        prev_ns, prev_total = meter.prev_time_ns, meter.prev_total_m3
        if record.total_m3 is None or prev_ns is None or prev_total is None:
            return None
        dt_h = _hours(record.time_ns - prev_ns)
        return max(0.0, (record.total_m3 - prev_total) / dt_h) if dt_h > 0 else None

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


@dataclass(slots=True, kw_only=True)
class MeterSeen:
    """When a meter last reported (hub clock), its grid and its household."""

    seen_ns: int
    grid: GridTags
    household: str

    def to_json(self) -> dict[str, Any]:
        return {"seen_ns": self.seen_ns, "grid": grid_json(self.grid), "household": self.household}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if isinstance(data, list):  # version 0: [seen_ns, grid, micro_grid, police_grid, household]
            return cls(seen_ns=int(data[0]), grid=grid_from(data[1:4]), household=str(data[4]))
        return cls(
            seen_ns=int(data["seen_ns"]),
            grid=grid_from(data["grid"]),
            household=str(data["household"]),
        )


@dataclass(slots=True, kw_only=True)
class MeterOfflineState(Sections):
    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"last": MeterSeen.from_json}
    last: TrackedDict[MeterSeen] = field(default_factory=TrackedDict)
    offline: list[str] = field(default_factory=list)

    def header_json(self) -> dict[str, Any]:
        return {"version": self.VERSION, "offline": list(self.offline)}

    @classmethod
    def header_fields(cls, header: dict[str, Any]) -> dict[str, Any]:
        return {"offline": [str(m) for m in header["offline"]]}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "last": {meter_id: seen.to_json() for meter_id, seen in self.last.items()},
            "offline": list(self.offline),
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)  # version 0 kept the same keys, entries as lists
        return cls(
            last=entries(data.get("last"), MeterSeen.from_json),
            offline=[str(m) for m in data.get("offline", [])],
        )


class MeterOffline(_CommunityRule):
    """`meter_offline`: no reading from a meter for `offline_minutes` (clock-tick based)."""

    name = "meter_offline"
    state_class = MeterOfflineState
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_offline

    def on_record(self, state: MeterOfflineState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        offline = state.offline
        state.last[record.meter_id] = MeterSeen(
            seen_ns=now_ns, grid=record.grid, household=record.household
        )
        if record.meter_id not in offline:
            return []
        offline.remove(record.meter_id)
        message = f"meter {record.meter_id} is reporting again"
        return [self.signal(f"meter:{record.meter_id}", False, "info", message, {}, record.grid)]

    def on_tick(self, state: MeterOfflineState, now_ns: int) -> list[Signal]:
        last, offline = state.last, state.offline
        if self.cfg.watch_registry:
            for meter_id, meter in self.registry.meters.items():
                if meter_id not in last:
                    household = self.registry.household(meter.household_id)
                    grid = household.grid if household else GridTags()
                    last[meter_id] = MeterSeen(
                        seen_ns=now_ns, grid=grid, household=meter.household_id
                    )
        signals = []
        for meter_id, seen in last.items():
            silent_min = (now_ns - seen.seen_ns) / (60 * NS)
            if silent_min > self.cfg.offline_minutes and meter_id not in offline:
                offline.append(meter_id)
                signals.append(
                    self._raise(meter_id, seen.seen_ns, silent_min, seen.grid, seen.household)
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


@dataclass(slots=True, kw_only=True)
class MeterLowBatteryState(Sections):
    """The severity of each meter whose low-battery alert is open."""

    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"low": str}
    low: TrackedDict[str] = field(default_factory=TrackedDict)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.VERSION, "low": dict(self.low)}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)  # version 0 kept the same key
        return cls(low=entries(data.get("low"), str))


class MeterLowBattery(_CommunityRule):
    """`meter_low_battery`: battery_v under min_battery_v (critical under critical_battery_v);
    resolves at min_battery_v + hysteresis_v. Without a voltage the LOW_BATTERY alarm bit counts."""

    name = "meter_low_battery"
    state_class = MeterLowBatteryState
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_low_battery

    def on_record(self, state: MeterLowBatteryState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        low = state.low
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


@dataclass(slots=True, kw_only=True)
class MeterTamperState(Sections):
    """The reasons of each meter whose tamper alert is open."""

    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"active": lambda reasons: [str(r) for r in reasons]}
    active: TrackedDict[list[str]] = field(default_factory=TrackedDict)

    def to_json(self) -> dict[str, Any]:
        active = {meter_id: list(reasons) for meter_id, reasons in self.active.items()}
        return {"version": self.VERSION, "active": active}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)  # version 0 kept the same key
        return cls(active=entries(data.get("active"), list))


class MeterTamper(_CommunityRule):
    """`meter_tamper`: the meter's tamper alarm bit, or reverse flow; resolves on a clean reading."""

    name = "meter_tamper"
    state_class = MeterTamperState
    record_types: tuple[type, ...] = (WaterMeterReading,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.meter_tamper

    def on_record(self, state: MeterTamperState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, WaterMeterReading):
            return []
        if record.alarm_bits is None and record.reverse_flow is None:
            return []
        active = state.active
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
