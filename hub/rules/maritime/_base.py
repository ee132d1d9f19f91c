"""Shared bookkeeping of the maritime rules: the VesselRule base, per-vessel state and formatting."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from hub.clock import NS_PER_S
from hub.records import NO_GRID, GridTags, Record, VesselPosition, VesselStatic
from hub.registry import Observation
from hub.registry.maritime import MaritimeRegistry
from hub.rules import Signal
from hub.rules.maritime.config import MaritimeRulesConfig

NS_PER_MIN = 60 * NS_PER_S
Entry = dict[str, Any]


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


class _UntypedState(dict[str, Any]):
    """Interim: the maritime rules' dict state until they share one typed vessel table."""

    def to_json(self) -> dict[str, Any]:
        return dict(self)

    @classmethod
    def from_json(cls, data: Any) -> _UntypedState:
        return cls(data)


class VesselRule:
    """Base of the maritime rules: state["v"] holds per-MMSI entries, state["s"] static data.

    Both maps are bounded: entries quiet for `vessel_expiry_minutes` are evicted on tick, and the
    oldest go first beyond `max_vessels`. Evicting an entry with an open alert resolves it.
    """

    name = ""
    # The engine hands this rule only these records (see hub/engine.py), as the pipeline's
    # observations: the zones of a position are looked up once, by the pipeline.
    record_types: tuple[type, ...] = (VesselPosition, VesselStatic)
    observes = True
    state_class = _UntypedState

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        self.registry = registry
        self.expiry_ns = int(common.vessel_expiry_minutes * NS_PER_MIN)
        self.max_vessels = common.max_vessels
        self._observed: Observation | None = None  # the one being handled, for its sea grid

    # Rule protocol

    def on_record(
        self, state: dict[str, Any], item: Record | Observation, now_ns: int
    ) -> list[Signal]:
        obs = item if isinstance(item, Observation) else self._observe(item)
        record = obs.record
        if isinstance(record, VesselPosition):
            self._observed = obs
            try:
                signals = self.on_position(state, record, now_ns, obs)
            finally:
                self._observed = None
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

    def _observe(self, record: Record) -> Observation:
        """A bare record handed in directly (not through the pipeline): observed here."""
        tagged, zones, sea_grid = self.registry.observe(record)
        return Observation(record=tagged, zones=zones, sea_grid=sea_grid)

    # hooks

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
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
        seen = self._observed
        if seen is not None and (seen.record.lat, seen.record.lon) == (lat, lon):  # type: ignore[union-attr]
            sea = seen.sea_grid  # the position being handled: already looked up
        elif lat is not None and lon is not None:
            sea = self.registry.sea_grid_at(lat, lon)
        else:
            sea = None
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
        return Signal(
            rule=self.name,
            subject=subject,
            active=active,
            severity=sev,
            message=message,
            data=data,
            grid=tags,
        )

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
