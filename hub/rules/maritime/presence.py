"""Maritime rules on where vessels are: unregistered, trespassing, fishing in the closed season."""

from __future__ import annotations

import datetime as dt

from hub.clock import NS_PER_S
from hub.records import VesselPosition
from hub.registry import Observation
from hub.registry.maritime import MaritimeRegistry, Zone
from hub.rules import Signal
from hub.rules.maritime._base import NS_PER_MIN, VesselRule, _fmt_pos, _iso
from hub.rules.maritime.config import MaritimeRulesConfig
from hub.rules.maritime.state import Fix, MaritimeState, Stay, Vessel

# --- unregistered_vessel


class UnregisteredVesselRule(VesselRule):
    """An MMSI not on the whitelist that stays inside the sea grid for `dwell_minutes`."""

    name = "unregistered_vessel"
    slot = "unregistered"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.unregistered_vessel
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        assert vessel is not None  # fix_only: the group hands in reports with a fix
        mmsi, stay = record.mmsi, vessel.unregistered
        if record.registered:
            if stay is None:
                return []
            vessel.unregistered = None
            return self._ended(vessel, mmsi, stay, "vessel is now whitelisted", "whitelisted")
        sea = obs.sea_grid
        if stay is None:
            if sea is None:
                return []
            stay = vessel.unregistered = Stay(since_ns=now)
        if sea is None:
            stay.out_ns = stay.out_ns if stay.out_ns is not None else now
            return self._check_exit(vessel, mmsi, stay, now)
        stay.out_ns = None
        if stay.active or now - stay.since_ns < self.dwell_ns:
            return []
        stay.active = True
        minutes = (now - stay.since_ns) / NS_PER_MIN
        msg = (
            f"unregistered vessel {self.label(vessel, mmsi)} in sea grid {sea.tags.grid} "
            f"for {minutes:.0f} min at {_fmt_pos(record.lat, record.lon)}"
        )
        return [
            self.signal(
                vessel, mmsi, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
                dwell_minutes=round(minutes, 1), in_grid_since=_iso(stay.since_ns),
            )
        ]  # fmt: skip

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, vessel, stay in self.watching(table):
            if stay.out_ns is not None:
                signals += self._check_exit(vessel, mmsi, stay, now_ns)
        return signals

    def _check_exit(self, vessel: Vessel, mmsi: str, stay: Stay, now: int) -> list[Signal]:
        assert stay.out_ns is not None
        if now - stay.out_ns < self.exit_ns:
            return []
        vessel.unregistered = None
        return self._ended(vessel, mmsi, stay, "vessel left the sea grid", "left")

    def _ended(self, vessel: Vessel, mmsi: str, stay: Stay, msg: str, reason: str) -> list[Signal]:
        if not stay.active:
            return []
        return [self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason=reason)]


# --- restricted_zone


class RestrictedZoneRule(VesselRule):
    """Entry into a restricted polygon by an MMSI not on that zone's allowed list."""

    name = "restricted_zone"
    slot = "restricted"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.restricted_zone
        self.dwell_ns = int(self.cfg.dwell_minutes * NS_PER_MIN)
        self.exit_ns = int(self.cfg.exit_minutes * NS_PER_MIN)

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        assert vessel is not None  # fix_only: the group hands in reports with a fix
        visits = vessel.restricted
        if visits is None and not any(z.kind == "restricted" for z in obs.zones):
            return []  # the usual report: no restricted zone here, none being left
        mmsi = record.mmsi
        restricted = [z for z in obs.zones if z.kind == "restricted"]
        inside = {z.id: z for z in restricted if mmsi not in z.allowed_mmsi}
        if visits is None:
            if not inside:
                return []
            visits = vessel.restricted = {}
        signals: list[Signal] = []
        for zone in inside.values():
            signals += self._inside(vessel, mmsi, visits, zone, now)
        for zone_id in [z for z in visits if z not in inside]:
            visit = visits[zone_id]
            current = self.registry.zone(zone_id)
            if current is None or mmsi in current.allowed_mmsi:
                signals += self._end(vessel, mmsi, visits, zone_id, "no longer restricted for it")
                continue
            visit.out_ns = visit.out_ns if visit.out_ns is not None else now
            signals += self._check_exit(vessel, mmsi, visits, zone_id, now)
        if not visits:
            vessel.restricted = None
        return signals

    def _inside(
        self, vessel: Vessel, mmsi: str, visits: dict[str, Stay], zone: Zone, now: int
    ) -> list[Signal]:
        visit = visits.get(zone.id)
        if visit is None:
            visit = visits[zone.id] = Stay(since_ns=now)
        visit.out_ns = None
        if visit.active or now - visit.since_ns < self.dwell_ns:
            return []
        visit.active = True
        label = zone.name or zone.id
        fix = vessel.fix
        where = _fmt_pos(fix.lat, fix.lon) if fix else _fmt_pos(None, None)
        msg = f"{self.label(vessel, mmsi)} entered restricted zone {label} at {where}"
        return [
            self.signal(
                vessel, mmsi, self._subject(mmsi, zone.id), True, msg, self.cfg.severity,
                grid=zone.tags, zone=zone.id, zone_name=zone.name,
                entered_at=_iso(visit.since_ns),
            )
        ]  # fmt: skip

    def _check_exit(
        self, vessel: Vessel, mmsi: str, visits: dict[str, Stay], zone_id: str, now: int
    ) -> list[Signal]:
        out_ns = visits[zone_id].out_ns
        assert out_ns is not None
        if now - out_ns < self.exit_ns:
            return []
        return self._end(vessel, mmsi, visits, zone_id, "left the zone")

    def _end(
        self, vessel: Vessel, mmsi: str, visits: dict[str, Stay], zone_id: str, why: str
    ) -> list[Signal]:
        visit = visits.pop(zone_id)
        if not visit.active:
            return []
        zone = self.registry.zone(zone_id)
        msg = f"{self.label(vessel, mmsi)} {why} ({zone_id})"
        grid = zone.tags if zone else None
        subject = self._subject(mmsi, zone_id)
        return [self.signal(vessel, mmsi, subject, False, msg, grid=grid, zone=zone_id)]

    @staticmethod
    def _subject(mmsi: str, zone_id: str) -> str:
        return f"mmsi:{mmsi}:zone:{zone_id}"

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, vessel, visits in self.watching(table):
            for zone_id in [z for z, v in visits.items() if v.out_ns is not None]:
                signals += self._check_exit(vessel, mmsi, visits, zone_id, now_ns)
            if not visits:
                vessel.restricted = None
        return signals

    def on_evict(self, vessel: Vessel, mmsi: str, watch: dict[str, Stay]) -> list[Signal]:
        signals: list[Signal] = []
        for zone_id in list(watch):
            signals += self._end(vessel, mmsi, watch, zone_id, "expired from the vessel table")
        return signals


# --- fishing_moratorium


def _month_day(text: str) -> tuple[int, int]:
    month, day = text.split("-")
    return int(month), int(day)


class FishingMoratoriumRule(VesselRule):
    """A fishing vessel moving at fishing speed in the sea grid during the closed season."""

    name = "fishing_moratorium"
    slot = "fishing"

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

    def is_fishing(self, vessel: Vessel, mmsi: str) -> bool:
        if vessel.ship_type in self.cfg.fishing_ship_types:
            return True
        known = self.registry.vessel(mmsi)
        return known is not None and known.vessel_type.lower() in self.registry_types

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        assert vessel is not None  # fix_only: the group hands in reports with a fix
        mmsi, run = record.mmsi, vessel.fishing
        sea = self._fishing_in_grid(vessel, record, now, obs)
        if run is None:
            if sea is None:
                return []
            run = vessel.fishing = Stay(since_ns=now)
        if sea is None:
            run.out_ns = run.out_ns if run.out_ns is not None else now
            return self._check_end(vessel, mmsi, run, now)
        run.out_ns = None
        if run.active or now - run.since_ns < self.min_ns:
            return []
        run.active = True
        minutes = (now - run.since_ns) / NS_PER_MIN
        msg = (
            f"fishing vessel {self.label(vessel, mmsi)} moving at {record.sog_kn:.1f} kn in sea "
            f"grid {sea.tags.grid} during the closed season "
            f"({self.cfg.season_start} to {self.cfg.season_end}) for {minutes:.0f} min"
        )
        return [
            self.signal(
                vessel, mmsi, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
                fishing_since=_iso(run.since_ns), ship_type=vessel.ship_type,
            )
        ]  # fmt: skip

    def _fishing_in_grid(
        self, vessel: Vessel, record: VesselPosition, now: int, obs: Observation
    ) -> Zone | None:
        """The sea grid when every part of the condition holds for this report, else None."""
        sog = record.sog_kn
        if sog is None or not self.cfg.min_speed_kn <= sog <= self.cfg.max_speed_kn:
            return None
        if not self.in_season(now) or not self.is_fishing(vessel, record.mmsi):
            return None
        return obs.sea_grid

    def _check_end(self, vessel: Vessel, mmsi: str, run: Stay, now: int) -> list[Signal]:
        assert run.out_ns is not None
        if self.in_season(now) and now - run.out_ns < self.grace_ns:
            return []
        vessel.fishing = None
        if not run.active:
            return []
        why = "closed season over" if not self.in_season(now) else "no longer fishing in the grid"
        msg = f"{self.label(vessel, mmsi)}: {why}"
        return [self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason=why)]

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        season = self.in_season(now_ns)
        for mmsi, vessel, run in self.watching(table):
            if not season:
                run.out_ns = run.out_ns if run.out_ns is not None else now_ns
            if run.out_ns is not None:
                signals += self._check_end(vessel, mmsi, run, now_ns)
        return signals
