"""Maritime rules on where vessels are: unregistered, trespassing, fishing in the closed season."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.clock import NS_PER_S
from hub.records import VesselPosition
from hub.registry import Observation
from hub.registry.maritime import MaritimeRegistry, Zone
from hub.rules import Signal
from hub.rules.maritime._base import (
    NS_PER_MIN,
    Entry,
    VesselRule,
    _fmt_pos,
    _has_fix,
    _iso,
    _store_fix,
)
from hub.rules.maritime.config import MaritimeRulesConfig

# --- unregistered_vessel


class UnregisteredVesselRule(VesselRule):
    """An MMSI not on the whitelist that stays inside the sea grid for `dwell_minutes`."""

    name = "unregistered_vessel"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.unregistered_vessel
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        if record.registered:
            if entry is None:
                return []
            del vessels[mmsi]
            return self._ended(state, mmsi, entry, "vessel is now whitelisted", "whitelisted")
        sea = obs.sea_grid
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


# --- restricted_zone


class RestrictedZoneRule(VesselRule):
    """Entry into a restricted polygon by an MMSI not on that zone's allowed list."""

    name = "restricted_zone"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.restricted_zone
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        restricted = [z for z in obs.zones if z.kind == "restricted"]
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

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
        if not _has_fix(record):
            return []
        mmsi, vessels = record.mmsi, self.vessels(state)
        entry = vessels.get(mmsi)
        sea = self._fishing_in_grid(state, record, now, obs)
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
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> Zone | None:
        """The sea grid when every part of the condition holds for this report, else None."""
        sog = record.sog_kn
        if sog is None or not self.cfg.min_speed_kn <= sog <= self.cfg.max_speed_kn:
            return None
        if not self.in_season(now) or not self.is_fishing(state, record.mmsi):
            return None
        return obs.sea_grid

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
