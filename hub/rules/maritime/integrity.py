"""Maritime rules on the AIS reports themselves: invalid MMSIs, going dark, jumping positions."""

from __future__ import annotations

import functools
from typing import Any

from hub.clock import NS_PER_S
from hub.geo import destination, distance_nm
from hub.mid import MID_COUNTRY, MmsiKind, mid_of, mmsi_kind
from hub.records import VesselPosition, VesselStatic
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

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
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

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
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
        zone = self._watched_zone(obs.zones)
        if zone is None:
            vessels.pop(mmsi, None)
            return signals
        entry = vessels[mmsi] = {"zone": zone.id, "active": False, "settled": False}
        _store_fix(entry, record, now)
        return signals

    def _watched_zone(self, at: tuple[Zone, ...]) -> Zone | None:
        """The largest watched zone containing the position: the one a vessel would leave last."""
        zones = [z for z in at if z.kind in self.cfg.zone_kinds]
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

    def on_position(
        self, state: dict[str, Any], record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
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
