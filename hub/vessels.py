"""The live vessel table: last position and static data per MMSI, first/last seen, zone dwell.

Bounded: vessels quiet for `expiry_s` are dropped, and past `max_vessels` the least recently
heard vessel goes first. Feeds the status page and /api/vessels; rules keep their own state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hub.alerts import iso
from hub.records import AisBaseStation, Record, SarAircraftPosition, VesselPosition, VesselStatic
from hub.registry import Observation
from hub.registry.maritime import Zone

NS = 1_000_000_000
ZonesAt = Callable[[float, float], Iterable[str]]


@dataclass(slots=True, kw_only=True)
class Vessel:
    """One entry: only what the status page and /api/vessels show, not the records themselves
    (a kept VesselPosition and its strings cost more than the entry; there are up to 20,000)."""

    mmsi: str
    first_seen_ns: int
    last_seen_ns: int
    # The last position with a fix (fix_ns None: none yet), as tagged by the registry.
    fix_ns: int | None = None
    lat: float | None = None
    lon: float | None = None
    sog_kn: float | None = None
    cog_deg: float | None = None
    heading_deg: float | None = None
    registered: bool = False
    grid: str = ""
    # From the last static report (message 5 / 24).
    name: str | None = None
    ship_type: int | None = None
    zones: tuple[str, ...] = ()  # shared between vessels in the same zones
    # Seconds inside each zone ever entered, flat: (zone, seconds, zone, seconds, ...).
    dwell: tuple[str | float, ...] = ()
    # An AIS base station (type 4) or SAR aircraft (type 9): shown on the map, not a vessel.
    station: AisBaseStation | SarAircraftPosition | None = None

    @property
    def has_fix(self) -> bool:
        """Whether the map can place it: a vessel position, or a base station's / aircraft's."""
        return self.fix_ns is not None or self.station is not None

    @property
    def kind(self) -> str:
        return "vessel" if self.station is None else self.station.measurement

    @property
    def dwell_s(self) -> dict[str, float]:
        """Seconds inside each zone ever entered, by zone id."""
        dwell = self.dwell
        return {str(dwell[i]): float(dwell[i + 1]) for i in range(0, len(dwell), 2)}

    def add_dwell(self, zones: tuple[str, ...], step_s: float) -> None:
        totals = self.dwell_s
        for zone in zones:
            totals[zone] = totals.get(zone, 0.0) + step_s
        self.dwell = tuple(item for pair in totals.items() for item in pair)

    def to_json(self) -> dict[str, Any]:
        station = self.station
        moving = self.fix_ns is not None
        fix: Any = self if moving else station
        return {
            "mmsi": self.mmsi,
            "kind": self.kind,
            "name": self.name,
            "ship_type": self.ship_type,
            "lat": fix.lat if fix else None,
            "lon": fix.lon if fix else None,
            "sog_kn": fix.sog_kn if moving or isinstance(fix, SarAircraftPosition) else None,
            "cog_deg": fix.cog_deg if moving or isinstance(fix, SarAircraftPosition) else None,
            "heading_deg": self.heading_deg if moving else None,
            "altitude_m": station.altitude_m if isinstance(station, SarAircraftPosition) else None,
            "registered": self.registered if moving else None,
            "grid": self.grid,
            "zones": list(self.zones),
            "dwell_s": {k: round(v) for k, v in self.dwell_s.items()},
            "first_seen": iso(self.first_seen_ns),
            "last_seen": iso(self.last_seen_ns),
        }


class VesselTable:
    def __init__(
        self,
        zones_at: ZonesAt | None = None,
        expiry_s: float = 6 * 3600,
        max_vessels: int = 20_000,
        max_dwell_step_s: float = 600,
    ) -> None:
        self.zones_at = zones_at
        self.expiry_ns = int(expiry_s * NS)
        self.max_vessels = max_vessels
        # A gap longer than this between two reports is not counted as dwell (the vessel was dark).
        self.max_dwell_step_s = max_dwell_step_s
        self._vessels: OrderedDict[str, Vessel] = OrderedDict()
        self._zone_sets: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per zone set

    def __len__(self) -> int:
        return len(self._vessels)

    def get(self, mmsi: str) -> Vessel | None:
        return self._vessels.get(mmsi)

    def update(self, items: Iterable[Record | Observation]) -> None:
        """Records as the pipeline observed them (their zones looked up once), or bare records
        whose zones `zones_at` finds."""
        for item in items:
            record = item.record if isinstance(item, Observation) else item
            if isinstance(record, VesselPosition):
                zones = item.zones if isinstance(item, Observation) else None
                self._position(record, zones)
            elif isinstance(record, VesselStatic):
                vessel = self._vessel(record.mmsi, record.time_ns)
                vessel.name, vessel.ship_type = record.name, record.ship_type
            elif isinstance(record, AisBaseStation | SarAircraftPosition):
                station = self._vessel(record.mmsi, record.time_ns)
                if record.lat is not None and record.lon is not None:
                    station.station = record

    def _vessel(self, mmsi: str, time_ns: int) -> Vessel:
        vessels = self._vessels
        vessel = vessels.get(mmsi)
        if vessel is None:
            if len(vessels) >= self.max_vessels:
                vessels.popitem(last=False)
            vessel = vessels[mmsi] = Vessel(mmsi=mmsi, first_seen_ns=time_ns, last_seen_ns=time_ns)
        else:
            vessels.move_to_end(mmsi)  # most recently heard last
            vessel.last_seen_ns = max(vessel.last_seen_ns, time_ns)
        return vessel

    def _position(self, record: VesselPosition, zones: tuple[Zone, ...] | None) -> None:
        vessel = self._vessel(record.mmsi, record.time_ns)
        if vessel.fix_ns is not None and vessel.zones:
            step_s = (record.time_ns - vessel.fix_ns) / NS
            if 0 < step_s <= self.max_dwell_step_s:
                vessel.add_dwell(vessel.zones, step_s)
        lat, lon = record.lat, record.lon
        if lat is None or lon is None:
            return
        vessel.fix_ns, vessel.lat, vessel.lon = record.time_ns, lat, lon
        vessel.sog_kn, vessel.cog_deg = record.sog_kn, record.cog_deg
        vessel.heading_deg, vessel.registered = record.heading_deg, record.registered
        vessel.grid = record.grid.grid
        if zones is not None:
            ids = tuple(z.id for z in zones)
        else:
            ids = tuple(self.zones_at(lat, lon)) if self.zones_at else ()
        vessel.zones = self._shared(ids)

    def _shared(self, ids: tuple[str, ...]) -> tuple[str, ...]:
        """The one tuple kept for this set of zones: vessels mostly share a few."""
        shared = self._zone_sets.get(ids)
        if shared is None:
            if len(self._zone_sets) >= 4096:  # bounded, whatever zones a file defines
                self._zone_sets.clear()
            shared = self._zone_sets[ids] = ids
        return shared

    def expire(self, now_ns: int) -> int:
        """Drop vessels not heard for `expiry_s`; returns how many went."""
        dropped = 0
        while self._vessels:
            mmsi, vessel = next(iter(self._vessels.items()))
            if now_ns - vessel.last_seen_ns <= self.expiry_ns:
                break
            del self._vessels[mmsi]
            dropped += 1
        return dropped

    def latest(self, limit: int = 500) -> list[Vessel]:
        """The `limit` most recently heard vessels, newest last."""
        return list(self._vessels.values())[-limit:]
