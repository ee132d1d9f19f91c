"""Maritime anomaly rules over AIS records: unregistered, invalid, dark, jumping, trespassing."""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.clock import NS_PER_S
from hub.geo import destination, distance_nm
from hub.mid import MID_COUNTRY, MmsiKind, mid_of, mmsi_kind
from hub.records import NO_GRID, GridTags, Record, VesselPosition, VesselStatic
from hub.registry.maritime import MaritimeRegistry, Zone
from hub.rules import Rule, Signal

NS_PER_MIN = 60 * NS_PER_S
Severity = Literal["info", "warning", "critical"]
Entry = dict[str, Any]

# --- configuration


class _RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity = "warning"


class UnregisteredVesselConfig(_RuleConfig):
    dwell_minutes: float = Field(default=10.0, ge=0)
    # Hysteresis: the vessel must stay outside the sea grid this long before the alert resolves.
    exit_minutes: float = Field(default=5.0, ge=0)


class InvalidMmsiConfig(_RuleConfig):
    check_mid: bool = True
    check_class: bool = True
    # The alert resolves once the MMSI has not been heard for this long.
    quiet_minutes: float = Field(default=60.0, gt=0)


class AisGapConfig(_RuleConfig):
    gap_minutes: float = Field(default=15.0, gt=0)
    min_moving_kn: float = Field(default=1.0, ge=0)
    # No alert when the last course, sailed for this distance, leaves the zone ("left heading out").
    edge_nm: float = Field(default=1.0, ge=0)
    zone_kinds: tuple[Literal["sea_grid", "restricted", "anchorage"], ...] = ("sea_grid",)


class PositionJumpConfig(_RuleConfig):
    max_knots: float = Field(default=60.0, gt=0)
    # Reports closer together than this (duplicates, two receivers) are not compared.
    min_interval_s: float = Field(default=2.0, ge=0)
    # Jumps shorter than this are GPS noise whatever the implied speed.
    min_distance_nm: float = Field(default=0.1, ge=0)
    resolve_after_reports: int = Field(default=5, ge=1)
    quiet_minutes: float = Field(default=30.0, gt=0)


class RestrictedZoneConfig(_RuleConfig):
    severity: Severity = "critical"
    dwell_minutes: float = Field(default=1.0, ge=0)
    exit_minutes: float = Field(default=5.0, ge=0)


class FishingMoratoriumConfig(_RuleConfig):
    # Closed season as month-day in the site's local time, both days included; may wrap the year.
    season_start: str = Field(default="05-01", pattern=r"^\d{2}-\d{2}$")
    season_end: str = Field(default="09-16", pattern=r"^\d{2}-\d{2}$")
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
    min_speed_kn: float = Field(default=1.5, ge=0)
    max_speed_kn: float = Field(default=5.0, gt=0)
    min_minutes: float = Field(default=10.0, ge=0)
    # The condition must stay false this long before the alert resolves (speed dips while hauling).
    grace_minutes: float = Field(default=5.0, ge=0)
    fishing_ship_types: tuple[int, ...] = (30,)
    registry_types: tuple[str, ...] = ("fishing",)

    @field_validator("season_start", "season_end")
    @classmethod
    def _real_day(cls, value: str) -> str:
        month, day = (int(p) for p in value.split("-"))
        dt.date(2000, month, day)  # a leap year, so 02-29 is accepted
        return value

    @model_validator(mode="after")
    def _speed_band(self) -> FishingMoratoriumConfig:
        if self.min_speed_kn > self.max_speed_kn:
            raise ValueError("min_speed_kn must not exceed max_speed_kn")
        return self


class MaritimeRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per-vessel rule state is dropped after this much quiet (and the oldest beyond max_vessels).
    vessel_expiry_minutes: float = Field(default=360.0, gt=0)
    max_vessels: int = Field(default=5000, ge=10)
    unregistered_vessel: UnregisteredVesselConfig = UnregisteredVesselConfig()
    invalid_mmsi: InvalidMmsiConfig = InvalidMmsiConfig()
    ais_gap: AisGapConfig = AisGapConfig()
    position_jump: PositionJumpConfig = PositionJumpConfig()
    restricted_zone: RestrictedZoneConfig = RestrictedZoneConfig()
    fishing_moratorium: FishingMoratoriumConfig = FishingMoratoriumConfig()


# --- shared vessel bookkeeping


def _iso(time_ns: int | None) -> str | None:
    if time_ns is None:
        return None
    return dt.datetime.fromtimestamp(time_ns / NS_PER_S, dt.UTC).isoformat(timespec="seconds")


def _fmt_pos(lat: float | None, lon: float | None) -> str:
    if lat is None or lon is None:
        return "unknown position"
    return f"{abs(lat):.4f}{'N' if lat >= 0 else 'S'} {abs(lon):.4f}{'E' if lon >= 0 else 'W'}"


def _has_fix(record: VesselPosition) -> bool:
    """A usable position: present and on the globe (drivers map AIS 91/181 to None already)."""
    lat, lon = record.lat, record.lon
    return lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _store_fix(entry: Entry, record: VesselPosition, now_ns: int) -> None:
    entry["lat"], entry["lon"] = record.lat, record.lon
    entry["sog"], entry["cog"] = _finite(record.sog_kn), _finite(record.cog_deg)
    entry["at"] = record.time_ns if record.time_ns > 0 else now_ns
    entry["seen"] = now_ns


class VesselRule:
    """Base of the maritime rules: state["v"] holds per-MMSI entries, state["s"] static data.

    Both maps are bounded: entries quiet for `vessel_expiry_minutes` are evicted on tick, and the
    oldest go first beyond `max_vessels`. Evicting an entry with an open alert resolves it.
    """

    name = ""
    # The engine hands this rule only these records (see hub/engine.py).
    record_types: tuple[type, ...] = (VesselPosition, VesselStatic)

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        self.registry = registry
        self.expiry_ns = int(common.vessel_expiry_minutes * NS_PER_MIN)
        self.max_vessels = common.max_vessels

    # Rule protocol

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if isinstance(record, VesselPosition):
            signals = self.on_position(state, record, now_ns)
        elif isinstance(record, VesselStatic):
            self._remember_static(state, record, now_ns)
            signals = self.on_static(state, record, now_ns)
        else:
            return []
        limit = 2 * self.max_vessels
        if len(state.get("v", ())) > limit or len(state.get("s", ())) > limit:
            signals += self._evict(state, now_ns)  # a flood between ticks stays bounded too
        return signals

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        return self.check(state, now_ns) + self._evict(state, now_ns)

    # hooks

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        raise NotImplementedError

    def on_static(self, state: dict[str, Any], record: VesselStatic, now: int) -> list[Signal]:
        return []

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        return []

    def expires(self, entry: Entry) -> bool:
        return True

    def on_evict(self, state: dict[str, Any], mmsi: str, entry: Entry) -> list[Signal]:
        if not entry.get("active"):
            return []
        msg = f"{self.label(state, mmsi)} not heard for a while; dropped from the vessel table"
        return [self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason="expired")]

    # helpers

    @staticmethod
    def vessels(state: dict[str, Any]) -> dict[str, Entry]:
        vessels: dict[str, Entry] = state.setdefault("v", {})
        return vessels

    def ship_type(self, state: dict[str, Any], mmsi: str) -> int | None:
        static = state.get("s", {}).get(mmsi)
        return static[1] if static else None

    def vessel_name(self, state: dict[str, Any], mmsi: str) -> str | None:
        static = state.get("s", {}).get(mmsi)
        if static and static[0]:
            return str(static[0])
        vessel = self.registry.vessel(mmsi)
        return vessel.name if vessel and vessel.name else None

    def label(self, state: dict[str, Any], mmsi: str) -> str:
        name = self.vessel_name(state, mmsi)
        return f"{name} (MMSI {mmsi})" if name else f"MMSI {mmsi}"

    def signal(
        self,
        state: dict[str, Any],
        mmsi: str,
        entry: Entry,
        subject: str,
        active: bool,
        message: str,
        severity: str = "info",
        grid: GridTags | None = None,
        **extra: Any,
    ) -> Signal:
        """A signal whose data carries the vessel, its sea grid and its last position."""
        lat, lon = entry.get("lat"), entry.get("lon")
        sea = self.registry.sea_grid_at(lat, lon) if lat is not None and lon is not None else None
        data: dict[str, Any] = {
            "mmsi": mmsi,
            "name": self.vessel_name(state, mmsi),
            "registered": self.registry.is_registered(mmsi),
            "sea_grid": sea.tags.grid if sea else "",
            "sea_grid_zone": sea.id if sea else "",
            "lat": lat,
            "lon": lon,
            "sog_kn": entry.get("sog"),
            "cog_deg": entry.get("cog"),
            "position_time": _iso(entry.get("at")),
        }
        data.update(extra)
        tags = grid if grid is not None else (sea.tags if sea else NO_GRID)
        sev = severity if active else "info"
        return Signal(self.name, subject, active, sev, message, data, tags)

    def _remember_static(self, state: dict[str, Any], record: VesselStatic, now_ns: int) -> None:
        if record.name is None and record.ship_type is None:
            return
        statics: dict[str, list[Any]] = state.setdefault("s", {})
        old = statics.get(record.mmsi, [None, None, 0])
        name = record.name.strip()[:64] if record.name else old[0]
        ship_type = record.ship_type if record.ship_type is not None else old[1]
        statics[record.mmsi] = [name, ship_type, now_ns]

    def _evict(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        vessels = self.vessels(state)
        cutoff = now_ns - self.expiry_ns
        for mmsi, entry in list(vessels.items()):
            if entry.get("seen", 0) < cutoff and self.expires(entry):
                del vessels[mmsi]
                signals += self.on_evict(state, mmsi, entry)
        if len(vessels) > self.max_vessels:
            oldest = sorted(vessels, key=lambda m: vessels[m].get("seen", 0))
            for mmsi in oldest[: len(vessels) - self.max_vessels]:
                signals += self.on_evict(state, mmsi, vessels.pop(mmsi))
        statics: dict[str, list[Any]] = state.get("s", {})
        for mmsi in [m for m, s in statics.items() if s[2] < cutoff]:
            del statics[mmsi]
        if len(statics) > self.max_vessels:
            oldest = sorted(statics, key=lambda m: statics[m][2])
            for mmsi in oldest[: len(statics) - self.max_vessels]:
                del statics[mmsi]
        return signals


# --- unregistered_vessel


class UnregisteredVesselRule(VesselRule):
    """An MMSI not on the whitelist that stays inside the sea grid for `dwell_minutes`."""

    name = "unregistered_vessel"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.unregistered_vessel
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        if self.registry.is_registered(mmsi):
            if entry is None:
                return []
            del vessels[mmsi]
            return self._ended(state, mmsi, entry, "vessel is now whitelisted", "whitelisted")
        assert record.lat is not None and record.lon is not None
        sea = self.registry.sea_grid_at(record.lat, record.lon)
        if entry is None:
            if sea is None:
                return []
            entry = vessels[mmsi] = {"in": now, "out": None, "active": False}
        _store_fix(entry, record, now)
        if sea is None:
            entry["out"] = entry["out"] if entry["out"] is not None else now
            return self._check_exit(state, mmsi, entry, now)
        entry["out"] = None
        if entry["active"] or now - entry["in"] < self.dwell_ns:
            return []
        entry["active"] = True
        minutes = (now - entry["in"]) / NS_PER_MIN
        msg = (
            f"unregistered vessel {self.label(state, mmsi)} in sea grid {sea.tags.grid} "
            f"for {minutes:.0f} min at {_fmt_pos(record.lat, record.lon)}"
        )
        since = _iso(entry["in"])
        return [
            self.signal(
                state, mmsi, entry, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
                dwell_minutes=round(minutes, 1), in_grid_since=since,
            )
        ]  # fmt: skip

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, entry in list(self.vessels(state).items()):
            if entry["out"] is not None:
                signals += self._check_exit(state, mmsi, entry, now_ns)
        return signals

    def _check_exit(self, state: dict[str, Any], mmsi: str, entry: Entry, now: int) -> list[Signal]:
        if now - entry["out"] < self.exit_ns:
            return []
        del self.vessels(state)[mmsi]
        return self._ended(state, mmsi, entry, "vessel left the sea grid", "left")

    def _ended(
        self, state: dict[str, Any], mmsi: str, entry: Entry, msg: str, reason: str
    ) -> list[Signal]:
        if not entry.get("active"):
            return []
        return [self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason=reason)]


# --- invalid_mmsi

# Placeholders seen from unconfigured transponders and test sets.
_PLACEHOLDERS = frozenset({"123456789", "012345678", "987654321", "100000000", "999999999"})
_CLASS_A_POSITION = frozenset({1, 2, 3})
_SHIP_MESSAGES = frozenset({1, 2, 3, 5, 18, 19, 24})
_NOT_TRANSMITTERS = (MmsiKind.COAST, MmsiKind.GROUP)


def mmsi_problems(mmsi: str, check_mid: bool = True) -> list[str]:
    """What is wrong with an MMSI on its own (ITU-R M.585-9): an empty list if nothing."""
    return list(_mmsi_problems(mmsi, check_mid))


@functools.lru_cache(maxsize=16_384)  # the same few thousand MMSIs report over and over
def _mmsi_problems(mmsi: str, check_mid: bool) -> tuple[str, ...]:
    return tuple(_find_mmsi_problems(mmsi, check_mid))


def _find_mmsi_problems(mmsi: str, check_mid: bool) -> list[str]:
    kind = mmsi_kind(mmsi)
    if kind is MmsiKind.MALFORMED:
        return ["malformed: not nine digits"]
    if mmsi in _PLACEHOLDERS or len(set(mmsi)) == 1:
        return ["placeholder"]
    if kind is MmsiKind.UNASSIGNED:
        return ["unassigned_prefix"]
    mid = mid_of(mmsi)
    if check_mid and mid is not None and mid not in MID_COUNTRY:
        return [f"unknown_mid: {mid:03d}"]
    return []


def class_problems(mmsi: str, record: VesselPosition) -> list[str]:
    """Report types an MMSI of this format cannot send (ITU-R M.1371-5 §3.3, M.585-9)."""
    kind, msg = mmsi_kind(mmsi), record.msg_type
    if (msg == 21 or record.ais_class == "AtoN") and kind is not MmsiKind.ATON:
        return ["class_mismatch: AtoN report from an MMSI not starting 99"]
    if (msg == 4 or record.ais_class == "base") and kind is not MmsiKind.COAST:
        return ["class_mismatch: base station report from an MMSI not starting 00"]
    # AIS-SART, MOB and EPIRB-AIS (970/972/974) legitimately send message 1 (M.1371-5 Annex 9).
    if msg in _CLASS_A_POSITION and kind in (MmsiKind.ATON, MmsiKind.CRAFT_ASSOCIATED):
        return [f"class_mismatch: class A position report from a {kind.value} MMSI"]
    if msg in _SHIP_MESSAGES and kind in _NOT_TRANSMITTERS:
        return [f"class_mismatch: ship report from a {kind.value} MMSI"]
    return []


class InvalidMmsiRule(VesselRule):
    """Malformed, placeholder, unknown-MID MMSIs and reports their MMSI class cannot send."""

    name = "invalid_mmsi"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.invalid_mmsi
        self.quiet_ns = int(self.cfg.quiet_minutes * NS_PER_MIN)

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        problems = mmsi_problems(record.mmsi, self.cfg.check_mid)
        if self.cfg.check_class:
            problems += class_problems(record.mmsi, record)
        entry = self.vessels(state).get(record.mmsi)
        if entry is None and not problems:
            return []
        entry = self._touch(state, record.mmsi, now)
        if _has_fix(record):
            _store_fix(entry, record, now)
        return self._raise_new(state, record.mmsi, entry, problems, record.msg_type)

    def on_static(self, state: dict[str, Any], record: VesselStatic, now: int) -> list[Signal]:
        problems = mmsi_problems(record.mmsi, self.cfg.check_mid)
        entry = self.vessels(state).get(record.mmsi)
        if entry is None and not problems:
            return []
        entry = self._touch(state, record.mmsi, now)
        return self._raise_new(state, record.mmsi, entry, problems, record.msg_type)

    def _touch(self, state: dict[str, Any], mmsi: str, now: int) -> Entry:
        entry = self.vessels(state).setdefault(mmsi, {"problems": [], "active": False})
        entry["seen"] = now
        return entry

    def _raise_new(
        self, state: dict[str, Any], mmsi: str, entry: Entry, problems: list[str], msg_type: int
    ) -> list[Signal]:
        new = [p for p in problems if p not in entry["problems"]]
        if not new:
            return []
        entry["problems"] = entry["problems"] + new
        entry["active"] = True
        text = "; ".join(entry["problems"])
        message = f"invalid MMSI {mmsi!r}: {text}"
        return [
            self.signal(
                state, mmsi, entry, f"mmsi:{mmsi}", True, message, self.cfg.severity,
                problems=list(entry["problems"]), msg_type=msg_type,
            )
        ]  # fmt: skip

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        vessels = self.vessels(state)
        for mmsi, entry in list(vessels.items()):
            if now_ns - entry["seen"] >= self.quiet_ns:
                del vessels[mmsi]
                msg = f"MMSI {mmsi!r} not heard for {self.cfg.quiet_minutes:.0f} min"
                signals.append(self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg))
        return signals


# --- ais_gap


class AisGapRule(VesselRule):
    """A vessel moving inside a zone that stops reporting for `gap_minutes` ("going dark")."""

    name = "ais_gap"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.ais_gap
        self.gap_ns = int(self.cfg.gap_minutes * NS_PER_MIN)

    def expires(self, entry: Entry) -> bool:
        return not entry.get("active")  # a dark vessel stays open until it is heard again

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        signals: list[Signal] = []
        if entry is not None and entry.get("active"):
            silent_min = (now - entry["seen"]) / NS_PER_MIN
            _store_fix(entry, record, now)
            msg = f"{self.label(state, mmsi)} reported again after {silent_min:.0f} min"
            signals.append(
                self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason="reported")
            )
        assert record.lat is not None and record.lon is not None
        zone = self._watched_zone(record.lat, record.lon)
        if zone is None:
            vessels.pop(mmsi, None)
            return signals
        entry = vessels[mmsi] = {"zone": zone.id, "active": False, "settled": False}
        _store_fix(entry, record, now)
        return signals

    def _watched_zone(self, lat: float, lon: float) -> Zone | None:
        """The largest watched zone containing the position: the one a vessel would leave last."""
        zones = [z for z in self.registry.zones_at(lat, lon) if z.kind in self.cfg.zone_kinds]
        return max(zones, key=lambda z: z.area) if zones else None

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, entry in self.vessels(state).items():
            if entry["active"] or entry["settled"] or now_ns - entry["seen"] <= self.gap_ns:
                continue
            zone = self.registry.zone(entry["zone"])
            sog = entry.get("sog")
            if zone is None or sog is None or sog < self.cfg.min_moving_kn:
                entry["settled"] = True  # not moving inside a zone: silence is not suspicious
                continue
            if self._left_heading_out(entry, zone):
                entry["settled"] = True
                continue
            entry["active"] = True
            signals.append(self._dark(state, mmsi, entry, zone, now_ns))
        return signals

    def _left_heading_out(self, entry: Entry, zone: Zone) -> bool:
        cog = entry.get("cog")
        if cog is None or not 0 <= cog < 360:
            return False
        lat, lon = destination(entry["lat"], entry["lon"], cog, self.cfg.edge_nm)
        return not zone.contains(lat, lon)

    def _dark(self, state: dict[str, Any], mmsi: str, entry: Entry, zone: Zone, now: int) -> Signal:
        silent_min = (now - entry["seen"]) / NS_PER_MIN
        msg = (
            f"AIS gap: {self.label(state, mmsi)} was moving at {entry['sog']:.1f} kn in "
            f"{zone.kind} {zone.id} and has not reported since {_iso(entry['seen'])} "
            f"(last at {_fmt_pos(entry['lat'], entry['lon'])})"
        )
        return self.signal(
            state, mmsi, entry, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
            grid=zone.tags if zone.tags.grid else None, zone=zone.id,
            last_report_time=_iso(entry["seen"]), silent_minutes=round(silent_min, 1),
        )  # fmt: skip


# --- position_jump


# ITU-R M.1371 message 27 (long-range broadcast) gives positions in 1/10 minute steps and may
# carry a latent fix (position latency > 5 s): against such a fix a jump counts only beyond this.
COARSE_FIX_NM = 0.15


class PositionJumpRule(VesselRule):
    """Consecutive reports whose implied speed exceeds `max_knots` (spoofing or a bad GNSS fix)."""

    name = "position_jump"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.position_jump
        self.quiet_ns = int(self.cfg.quiet_minutes * NS_PER_MIN)

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        if entry is None:
            entry = vessels[mmsi] = {"active": False, "ok": 0, "jumps": 0}
            _store_fix(entry, record, now)
            return []
        entry["seen"] = now
        t = record.time_ns if record.time_ns > 0 else now
        interval_s = (t - entry["at"]) / NS_PER_S
        if interval_s < self.cfg.min_interval_s:
            return []  # duplicate, out of order, or too close in time to measure a speed
        assert record.lat is not None and record.lon is not None
        dist = distance_nm(entry["lat"], entry["lon"], record.lat, record.lon)
        speed_kn = dist / (interval_s / 3600)
        origin = (entry["lat"], entry["lon"])
        coarse = record.msg_type == 27 or entry.get("coarse", False)
        floor_nm = self.cfg.min_distance_nm + (COARSE_FIX_NM if coarse else 0.0)
        _store_fix(entry, record, now)
        entry["coarse"] = record.msg_type == 27
        if speed_kn > self.cfg.max_knots and dist >= floor_nm:
            return [self._jump(state, mmsi, entry, origin, dist, interval_s, speed_kn)]
        if not entry["active"]:
            return []
        entry["ok"] += 1
        if entry["ok"] < self.cfg.resolve_after_reports:
            return []
        entry["active"] = False
        msg = f"{self.label(state, mmsi)}: {entry['ok']} consistent reports since the last jump"
        return [self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason="consistent")]

    def _jump(
        self,
        state: dict[str, Any],
        mmsi: str,
        entry: Entry,
        origin: tuple[float, float],
        dist: float,
        interval_s: float,
        speed_kn: float,
    ) -> Signal:
        entry["active"], entry["ok"] = True, 0
        entry["jumps"] += 1
        count = f" ({entry['jumps']} jumps)" if entry["jumps"] > 1 else ""
        msg = (
            f"position jump: {self.label(state, mmsi)} moved {dist:.1f} nm in {interval_s:.0f} s "
            f"(implied {speed_kn:.0f} kn > {self.cfg.max_knots:.0f} kn){count}"
        )
        return self.signal(
            state, mmsi, entry, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
            from_lat=origin[0], from_lon=origin[1], distance_nm=round(dist, 3),
            interval_s=round(interval_s, 1), implied_speed_kn=round(speed_kn, 1),
            jumps=entry["jumps"],
        )  # fmt: skip

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, entry in self.vessels(state).items():
            if entry["active"] and now_ns - entry["seen"] >= self.quiet_ns:
                entry["active"] = False
                msg = f"{self.label(state, mmsi)}: no report for {self.cfg.quiet_minutes:.0f} min"
                signals.append(
                    self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason="quiet")
                )
        return signals


# --- restricted_zone


class RestrictedZoneRule(VesselRule):
    """Entry into a restricted polygon by an MMSI not on that zone's allowed list."""

    name = "restricted_zone"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.restricted_zone
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        if not _has_fix(record):
            return []
        assert record.lat is not None and record.lon is not None
        mmsi, vessels = record.mmsi, self.vessels(state)
        restricted = [
            z for z in self.registry.zones_at(record.lat, record.lon) if z.kind == "restricted"
        ]
        inside = {z.id: z for z in restricted if mmsi not in z.allowed_mmsi}
        entry = vessels.get(mmsi)
        if entry is None:
            if not inside:
                return []
            entry = vessels[mmsi] = {"z": {}}
        _store_fix(entry, record, now)
        signals: list[Signal] = []
        for zone in inside.values():
            signals += self._inside(state, mmsi, entry, zone, now)
        for zone_id in [z for z in entry["z"] if z not in inside]:
            visit = entry["z"][zone_id]
            current = self.registry.zone(zone_id)
            if current is None or mmsi in current.allowed_mmsi:
                signals += self._end(state, mmsi, entry, zone_id, "no longer restricted for it")
                continue
            visit["out"] = visit["out"] if visit["out"] is not None else now
            signals += self._check_exit(state, mmsi, entry, zone_id, now)
        if not entry["z"]:
            del vessels[mmsi]
        return signals

    def _inside(
        self, state: dict[str, Any], mmsi: str, entry: Entry, zone: Zone, now: int
    ) -> list[Signal]:
        visit = entry["z"].setdefault(zone.id, {"in": now, "out": None, "active": False})
        visit["out"] = None
        if visit["active"] or now - visit["in"] < self.dwell_ns:
            return []
        visit["active"] = True
        label = zone.name or zone.id
        msg = (
            f"{self.label(state, mmsi)} entered restricted zone {label} "
            f"at {_fmt_pos(entry['lat'], entry['lon'])}"
        )
        return [
            self.signal(
                state, mmsi, entry, self._subject(mmsi, zone.id), True, msg, self.cfg.severity,
                grid=zone.tags, zone=zone.id, zone_name=zone.name, entered_at=_iso(visit["in"]),
            )
        ]  # fmt: skip

    def _check_exit(
        self, state: dict[str, Any], mmsi: str, entry: Entry, zone_id: str, now: int
    ) -> list[Signal]:
        if now - entry["z"][zone_id]["out"] < self.exit_ns:
            return []
        return self._end(state, mmsi, entry, zone_id, "left the zone")

    def _end(
        self, state: dict[str, Any], mmsi: str, entry: Entry, zone_id: str, why: str
    ) -> list[Signal]:
        visit = entry["z"].pop(zone_id)
        if not visit["active"]:
            return []
        zone = self.registry.zone(zone_id)
        msg = f"{self.label(state, mmsi)} {why} ({zone_id})"
        grid = zone.tags if zone else None
        subject = self._subject(mmsi, zone_id)
        return [self.signal(state, mmsi, entry, subject, False, msg, grid=grid, zone=zone_id)]

    @staticmethod
    def _subject(mmsi: str, zone_id: str) -> str:
        return f"mmsi:{mmsi}:zone:{zone_id}"

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        vessels = self.vessels(state)
        for mmsi, entry in list(vessels.items()):
            for zone_id in [z for z, v in entry["z"].items() if v["out"] is not None]:
                signals += self._check_exit(state, mmsi, entry, zone_id, now_ns)
            if not entry["z"]:
                del vessels[mmsi]
        return signals

    def on_evict(self, state: dict[str, Any], mmsi: str, entry: Entry) -> list[Signal]:
        signals: list[Signal] = []
        for zone_id in list(entry["z"]):
            signals += self._end(state, mmsi, entry, zone_id, "expired from the vessel table")
        return signals


# --- fishing_moratorium


def _month_day(text: str) -> tuple[int, int]:
    month, day = text.split("-")
    return int(month), int(day)


class FishingMoratoriumRule(VesselRule):
    """A fishing vessel moving at fishing speed in the sea grid during the closed season."""

    name = "fishing_moratorium"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.fishing_moratorium
        self.tz = dt.timezone(dt.timedelta(hours=self.cfg.utc_offset_hours))
        self.start = _month_day(self.cfg.season_start)
        self.end = _month_day(self.cfg.season_end)
        self.min_ns = int(self.cfg.min_minutes * NS_PER_MIN)
        self.grace_ns = int(self.cfg.grace_minutes * NS_PER_MIN)
        self.registry_types = {t.lower() for t in self.cfg.registry_types}
        self._season_at, self._season_open = -1, False

    def in_season(self, now_ns: int) -> bool:
        if now_ns != self._season_at:  # the engine passes one `now` for a whole batch
            self._season_at, self._season_open = now_ns, self._in_season(now_ns)
        return self._season_open

    def _in_season(self, now_ns: int) -> bool:
        local = dt.datetime.fromtimestamp(now_ns / NS_PER_S, self.tz)
        day = (local.month, local.day)
        if self.start <= self.end:
            return self.start <= day <= self.end
        return day >= self.start or day <= self.end

    def is_fishing(self, state: dict[str, Any], mmsi: str) -> bool:
        if self.ship_type(state, mmsi) in self.cfg.fishing_ship_types:
            return True
        vessel = self.registry.vessel(mmsi)
        return vessel is not None and vessel.vessel_type.lower() in self.registry_types

    def on_position(self, state: dict[str, Any], record: VesselPosition, now: int) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        sea = self._fishing_in_grid(state, record, now)
        if entry is None:
            if sea is None:
                return []
            entry = vessels[mmsi] = {"since": now, "miss": None, "active": False}
        _store_fix(entry, record, now)
        if sea is None:
            entry["miss"] = entry["miss"] if entry["miss"] is not None else now
            return self._check_end(state, mmsi, entry, now)
        entry["miss"] = None
        if entry["active"] or now - entry["since"] < self.min_ns:
            return []
        entry["active"] = True
        minutes = (now - entry["since"]) / NS_PER_MIN
        msg = (
            f"fishing vessel {self.label(state, mmsi)} moving at {record.sog_kn:.1f} kn in sea "
            f"grid {sea.tags.grid} during the closed season "
            f"({self.cfg.season_start} to {self.cfg.season_end}) for {minutes:.0f} min"
        )
        return [
            self.signal(
                state, mmsi, entry, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
                fishing_since=_iso(entry["since"]), ship_type=self.ship_type(state, mmsi),
            )
        ]  # fmt: skip

    def _fishing_in_grid(
        self, state: dict[str, Any], record: VesselPosition, now: int
    ) -> Zone | None:
        """The sea grid when every part of the condition holds for this report, else None."""
        sog = record.sog_kn
        if sog is None or not self.cfg.min_speed_kn <= sog <= self.cfg.max_speed_kn:
            return None
        if not self.in_season(now) or not self.is_fishing(state, record.mmsi):
            return None
        assert record.lat is not None and record.lon is not None
        return self.registry.sea_grid_at(record.lat, record.lon)

    def _check_end(self, state: dict[str, Any], mmsi: str, entry: Entry, now: int) -> list[Signal]:
        if self.in_season(now) and now - entry["miss"] < self.grace_ns:
            return []
        del self.vessels(state)[mmsi]
        if not entry["active"]:
            return []
        why = "closed season over" if not self.in_season(now) else "no longer fishing in the grid"
        msg = f"{self.label(state, mmsi)}: {why}"
        return [self.signal(state, mmsi, entry, f"mmsi:{mmsi}", False, msg, reason=why)]

    def check(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        season = self.in_season(now_ns)
        for mmsi, entry in list(self.vessels(state).items()):
            if not season:
                entry["miss"] = entry["miss"] if entry["miss"] is not None else now_ns
            if entry["miss"] is not None:
                signals += self._check_end(state, mmsi, entry, now_ns)
        return signals


RULE_CLASSES: dict[str, type[VesselRule]] = {
    "unregistered_vessel": UnregisteredVesselRule,
    "invalid_mmsi": InvalidMmsiRule,
    "ais_gap": AisGapRule,
    "position_jump": PositionJumpRule,
    "restricted_zone": RestrictedZoneRule,
    "fishing_moratorium": FishingMoratoriumRule,
}


def build_maritime_rules(cfg: MaritimeRulesConfig, registry: MaritimeRegistry) -> list[Rule]:
    """The enabled maritime rules, each reading its thresholds from `cfg`."""
    rules: list[Rule] = []
    for name, cls in RULE_CLASSES.items():
        sub = getattr(cfg, name)
        if sub.enabled:
            rules.append(cls(cfg, registry))
    return rules
