"""The live vessel table: last position and static data per MMSI, first/last seen, zone dwell.

Bounded: vessels quiet for `expiry_s` are dropped, and past `max_vessels` the least recently
heard vessel goes first. Feeds the status page and /api/vessels; rules keep their own state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.alerts import iso
from hub.records import AisBaseStation, Record, SarAircraftPosition, VesselPosition, VesselStatic
from hub.registry import Observation
from hub.registry.maritime import Zone

NS = 1_000_000_000
ZonesAt = Callable[[float, float], Iterable[str]]


@dataclass(slots=True, kw_only=True)
class Vessel:
    mmsi: str
    first_seen_ns: int
    last_seen_ns: int
    position: VesselPosition | None = None
    static: VesselStatic | None = None
    zones: tuple[str, ...] = ()
    dwell_s: dict[str, float] = field(default_factory=dict)
    # An AIS base station (type 4) or SAR aircraft (type 9): shown on the map, not a vessel.
    station: AisBaseStation | SarAircraftPosition | None = None

    @property
    def has_fix(self) -> bool:
        """Whether the map can place it: a vessel position, or a base station's / aircraft's."""
        return self.position is not None or self.station is not None

    @property
    def kind(self) -> str:
        return "vessel" if self.station is None else self.station.measurement

    def to_json(self) -> dict[str, Any]:
        pos, static, station = self.position, self.static, self.station
        fix = pos or station
        return {
            "mmsi": self.mmsi,
            "kind": self.kind,
            "name": static.name if static else None,
            "ship_type": static.ship_type if static else None,
            "lat": fix.lat if fix else None,
            "lon": fix.lon if fix else None,
            "sog_kn": fix.sog_kn if isinstance(fix, VesselPosition | SarAircraftPosition) else None,
            "cog_deg": fix.cog_deg
            if isinstance(fix, VesselPosition | SarAircraftPosition)
            else None,
            "heading_deg": pos.heading_deg if pos else None,
            "altitude_m": station.altitude_m if isinstance(station, SarAircraftPosition) else None,
            "registered": pos.registered if pos else None,
            "grid": pos.grid.grid if pos else "",
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
                self._vessel(record.mmsi, record.time_ns).static = record
            elif isinstance(record, AisBaseStation | SarAircraftPosition):
                station = self._vessel(record.mmsi, record.time_ns)
                if record.lat is not None and record.lon is not None:
                    station.station = record

    def _vessel(self, mmsi: str, time_ns: int) -> Vessel:
        vessel = self._vessels.pop(mmsi, None)
        if vessel is None:
            vessel = Vessel(mmsi=mmsi, first_seen_ns=time_ns, last_seen_ns=time_ns)
            if len(self._vessels) >= self.max_vessels:
                self._vessels.popitem(last=False)
        vessel.last_seen_ns = max(vessel.last_seen_ns, time_ns)
        self._vessels[mmsi] = vessel  # most recently heard last
        return vessel

    def _position(self, record: VesselPosition, zones: tuple[Zone, ...] | None) -> None:
        vessel = self._vessel(record.mmsi, record.time_ns)
        previous = vessel.position
        if previous is not None and vessel.zones:
            step_s = (record.time_ns - previous.time_ns) / NS
            if 0 < step_s <= self.max_dwell_step_s:
                for zone in vessel.zones:
                    vessel.dwell_s[zone] = vessel.dwell_s.get(zone, 0.0) + step_s
        if record.lat is None or record.lon is None:
            return
        vessel.position = record
        if zones is not None:
            vessel.zones = tuple(z.id for z in zones)
        else:
            vessel.zones = tuple(self.zones_at(record.lat, record.lon)) if self.zones_at else ()

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
