"""Maritime rules on the AIS reports themselves: invalid MMSIs, going dark, jumping positions."""

from __future__ import annotations

from functools import lru_cache

from hub.clock import NS_PER_S
from hub.geo import destination, distance_nm
from hub.mid import MID_COUNTRY, MmsiKind, mid_of, mmsi_kind
from hub.records import VesselPosition, VesselStatic
from hub.registry import Observation
from hub.registry.maritime import MaritimeRegistry, Zone
from hub.rules import Signal
from hub.rules.maritime._base import NS_PER_MIN, VesselRule, _fmt_pos, _iso
from hub.rules.maritime.config import MaritimeRulesConfig
from hub.rules.maritime.state import Fix, GapWatch, InvalidWatch, JumpWatch, MaritimeState, Vessel

# --- invalid_mmsi

# Placeholders seen from unconfigured transponders and test sets.
_PLACEHOLDERS = frozenset({"123456789", "012345678", "987654321", "100000000", "999999999"})
_CLASS_A_POSITION = frozenset({1, 2, 3})
_SHIP_MESSAGES = frozenset({1, 2, 3, 5, 18, 19, 24})
_NOT_TRANSMITTERS = (MmsiKind.COAST, MmsiKind.GROUP)


def mmsi_problems(mmsi: str, check_mid: bool = True) -> list[str]:
    """What is wrong with an MMSI on its own (ITU-R M.585-9): an empty list if nothing."""
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
    return list(_class_problems(mmsi_kind(mmsi), record.msg_type, record.ais_class))


@lru_cache(maxsize=1024)  # a handful of (kind, message type, class) combinations in practice
def _class_problems(kind: MmsiKind, msg: int, ais_class: str) -> tuple[str, ...]:
    if (msg == 21 or ais_class == "AtoN") and kind is not MmsiKind.ATON:
        return ("class_mismatch: AtoN report from an MMSI not starting 99",)
    if (msg == 4 or ais_class == "base") and kind is not MmsiKind.COAST:
        return ("class_mismatch: base station report from an MMSI not starting 00",)
    # AIS-SART, MOB and EPIRB-AIS (970/972/974) legitimately send message 1 (M.1371-5 Annex 9).
    if msg in _CLASS_A_POSITION and kind in (MmsiKind.ATON, MmsiKind.CRAFT_ASSOCIATED):
        return (f"class_mismatch: class A position report from a {kind.value} MMSI",)
    if msg in _SHIP_MESSAGES and kind in _NOT_TRANSMITTERS:
        return (f"class_mismatch: ship report from a {kind.value} MMSI",)
    return ()


class InvalidMmsiRule(VesselRule):
    """Malformed, placeholder, unknown-MID MMSIs and reports their MMSI class cannot send."""

    name = "invalid_mmsi"
    slot = "invalid"
    fix_only = False  # an MMSI is checked on every report, with a position or without

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.invalid_mmsi
        self.check_class = self.cfg.check_class
        self.quiet_ns = int(self.cfg.quiet_minutes * NS_PER_MIN)

    def seen_ns(self, vessel: Vessel) -> int:
        return vessel.heard_ns  # any report counts: a static one too

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        mmsi = record.mmsi
        problems = self._mmsi_problems(vessel, mmsi)
        if self.check_class:
            problems += _class_problems(mmsi_kind(mmsi), record.msg_type, record.ais_class)
        if not problems:  # nothing new to raise: the usual report
            return []
        return self._raise_new(table, vessel, mmsi, list(problems), record.msg_type, now)

    def on_static(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselStatic, now: int
    ) -> list[Signal]:
        problems = self._mmsi_problems(vessel, record.mmsi)
        if not problems:
            return []
        return self._raise_new(table, vessel, record.mmsi, list(problems), record.msg_type, now)

    def _mmsi_problems(self, vessel: Vessel | None, mmsi: str) -> tuple[str, ...]:
        """The MMSI's own problems, worked out once per vessel entry (the same MMSIs report
        over and over; the entry is where the rules keep per-vessel facts anyway)."""
        if vessel is None:
            return tuple(mmsi_problems(mmsi, self.cfg.check_mid))
        if vessel.mmsi_problems is None:
            vessel.mmsi_problems = tuple(mmsi_problems(mmsi, self.cfg.check_mid))
        return vessel.mmsi_problems

    def _raise_new(
        self, table: MaritimeState, vessel: Vessel | None, mmsi: str, problems: list[str],
        msg_type: int, now: int,
    ) -> list[Signal]:  # fmt: skip
        watch = vessel.invalid if vessel is not None else None
        if watch is None:
            if not problems:
                return []
            vessel = table.vessel(mmsi, now)
            watch = vessel.invalid = InvalidWatch()
        new = [p for p in problems if p not in watch.problems]
        if not new:
            return []
        watch.problems = watch.problems + new
        watch.active = True
        message = f"invalid MMSI {mmsi!r}: {'; '.join(watch.problems)}"
        return [
            self.signal(
                vessel, mmsi, f"mmsi:{mmsi}", True, message, self.cfg.severity,
                problems=list(watch.problems), msg_type=msg_type,
            )
        ]  # fmt: skip

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, vessel, _ in self.watching(table):
            if now_ns - vessel.heard_ns >= self.quiet_ns:
                vessel.invalid = None
                msg = f"MMSI {mmsi!r} not heard for {self.cfg.quiet_minutes:.0f} min"
                signals.append(self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg))
        return signals


# --- ais_gap


class AisGapRule(VesselRule):
    """A vessel moving inside a zone that stops reporting for `gap_minutes` ("going dark")."""

    name = "ais_gap"
    slot = "gap"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.ais_gap
        self.zone_kinds = frozenset(self.cfg.zone_kinds)
        self.gap_ns = int(self.cfg.gap_minutes * NS_PER_MIN)

    def expires(self, watch: GapWatch) -> bool:
        return not watch.active  # a dark vessel stays open until it is heard again

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        assert vessel is not None  # fix_only: the group hands in reports with a fix
        signals: list[Signal] = []
        watch = vessel.gap
        if watch is not None and watch.active:
            mmsi = record.mmsi
            silent_min = (now - (previous.seen_ns if previous else now)) / NS_PER_MIN
            msg = f"{self.label(vessel, mmsi)} reported again after {silent_min:.0f} min"
            signals.append(self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason="reported"))
        zone = self._watched_zone(obs.zones)
        if zone is None:
            vessel.gap = None
        elif watch is None or watch.active or watch.settled or watch.zone != zone.id:
            vessel.gap = GapWatch(zone=zone.id)  # else: the same fresh watch, kept as it is
        return signals

    def _watched_zone(self, at: tuple[Zone, ...]) -> Zone | None:
        """The largest watched zone containing the position: the one a vessel would leave last
        (the first of equally large ones)."""
        largest = None
        for zone in at:
            if zone.kind in self.zone_kinds and (largest is None or zone.area > largest.area):
                largest = zone
        return largest

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, vessel, watch in self.watching(table):
            fix = vessel.fix
            if watch.active or watch.settled or fix is None or now_ns - fix.seen_ns <= self.gap_ns:
                continue
            zone = self.registry.zone(watch.zone)
            if zone is None or fix.sog_kn is None or fix.sog_kn < self.cfg.min_moving_kn:
                watch.settled = True  # not moving inside a zone: silence is not suspicious
                continue
            if self._left_heading_out(fix, zone):
                watch.settled = True
                continue
            watch.active = True
            signals.append(self._dark(vessel, mmsi, fix, zone, now_ns))
        return signals

    def _left_heading_out(self, fix: Fix, zone: Zone) -> bool:
        cog = fix.cog_deg
        if cog is None or not 0 <= cog < 360:
            return False
        lat, lon = destination(fix.lat, fix.lon, cog, self.cfg.edge_nm)
        return not zone.contains(lat, lon)

    def _dark(self, vessel: Vessel, mmsi: str, fix: Fix, zone: Zone, now: int) -> Signal:
        silent_min = (now - fix.seen_ns) / NS_PER_MIN
        msg = (
            f"AIS gap: {self.label(vessel, mmsi)} was moving at {fix.sog_kn:.1f} kn in "
            f"{zone.kind} {zone.id} and has not reported since {_iso(fix.seen_ns)} "
            f"(last at {_fmt_pos(fix.lat, fix.lon)})"
        )
        return self.signal(
            vessel, mmsi, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
            grid=zone.tags if zone.tags.grid else None, zone=zone.id,
            last_report_time=_iso(fix.seen_ns), silent_minutes=round(silent_min, 1),
        )  # fmt: skip


# --- position_jump


# ITU-R M.1371 message 27 (long-range broadcast) gives positions in 1/10 minute steps and may
# carry a latent fix (position latency > 5 s): against such a fix a jump counts only beyond this.
COARSE_FIX_NM = 0.15


class PositionJumpRule(VesselRule):
    """Consecutive reports whose implied speed exceeds `max_knots` (spoofing or a bad GNSS fix)."""

    name = "position_jump"
    slot = "jump"

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        super().__init__(common, registry)
        self.cfg = common.position_jump
        self.quiet_ns = int(self.cfg.quiet_minutes * NS_PER_MIN)

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        assert vessel is not None and vessel.fix is not None  # fix_only
        fix, watch = vessel.fix, vessel.jump
        if watch is None:
            vessel.jump = JumpWatch(origin=fix)
            return []
        origin = watch.origin
        interval_s = (fix.time_ns - origin.time_ns) / NS_PER_S
        if interval_s < self.cfg.min_interval_s:
            return []  # duplicate, out of order, or too close in time to measure a speed
        dist = distance_nm(origin.lat, origin.lon, fix.lat, fix.lon)
        speed_kn = dist / (interval_s / 3600)
        coarse = record.msg_type == 27 or watch.coarse
        floor_nm = self.cfg.min_distance_nm + (COARSE_FIX_NM if coarse else 0.0)
        watch.origin, watch.coarse = fix, record.msg_type == 27
        if speed_kn > self.cfg.max_knots and dist >= floor_nm:
            return [self._jump(vessel, record.mmsi, watch, origin, dist, interval_s, speed_kn)]
        if not watch.active:
            return []
        watch.ok += 1
        if watch.ok < self.cfg.resolve_after_reports:
            return []
        watch.active = False
        mmsi = record.mmsi
        msg = f"{self.label(vessel, mmsi)}: {watch.ok} consistent reports since the last jump"
        return [self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason="consistent")]

    def _jump(
        self,
        vessel: Vessel,
        mmsi: str,
        watch: JumpWatch,
        origin: Fix,
        dist: float,
        interval_s: float,
        speed_kn: float,
    ) -> Signal:
        watch.active, watch.ok = True, 0
        watch.jumps += 1
        count = f" ({watch.jumps} jumps)" if watch.jumps > 1 else ""
        msg = (
            f"position jump: {self.label(vessel, mmsi)} moved {dist:.1f} nm in {interval_s:.0f} s "
            f"(implied {speed_kn:.0f} kn > {self.cfg.max_knots:.0f} kn){count}"
        )
        return self.signal(
            vessel, mmsi, f"mmsi:{mmsi}", True, msg, self.cfg.severity,
            from_lat=origin.lat, from_lon=origin.lon, distance_nm=round(dist, 3),
            interval_s=round(interval_s, 1), implied_speed_kn=round(speed_kn, 1),
            jumps=watch.jumps,
        )  # fmt: skip

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        signals: list[Signal] = []
        for mmsi, vessel, watch in self.watching(table):
            if watch.active and now_ns - self.seen_ns(vessel) >= self.quiet_ns:
                watch.active = False
                msg = f"{self.label(vessel, mmsi)}: no report for {self.cfg.quiet_minutes:.0f} min"
                signals.append(
                    self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason="quiet")
                )
        return signals
