"""Shared bookkeeping of the maritime rules: the VesselRule base, the rule group that runs them
over one vessel table, and formatting."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from math import isfinite
from typing import Any, ClassVar

from hub.clock import NS_PER_S
from hub.records import NO_GRID, GridTags, Record, VesselPosition, VesselStatic
from hub.registry import Observation
from hub.registry.maritime import MaritimeRegistry
from hub.rules import Signal
from hub.rules.maritime.config import MaritimeRulesConfig
from hub.rules.maritime.state import Fix, MaritimeState, Vessel

NS_PER_MIN = 60 * NS_PER_S
log = logging.getLogger("hub.rules.maritime")


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


def _new_fix(record: VesselPosition, now_ns: int) -> Fix:
    assert record.lat is not None and record.lon is not None
    sog, cog = record.sog_kn, record.cog_deg
    return Fix(
        lat=record.lat,
        lon=record.lon,
        sog_kn=sog if sog is not None and isfinite(sog) else None,
        cog_deg=cog if cog is not None and isfinite(cog) else None,
        time_ns=record.time_ns if record.time_ns > 0 else now_ns,
        seen_ns=now_ns,
    )


class VesselRule:
    """Base of the maritime rules. Each keeps its flags and timers in its own watch slot of the
    shared `Vessel` entries (`slot`: the attribute name; None while it does not watch a vessel).

    A rule runs on its own (it is then a rule group of one) or, as the hub runs them, inside a
    `MaritimeRules` group that keeps the vessel table once for all of them.
    """

    name = ""
    slot = ""  # the Vessel attribute holding this rule's watch
    # True: `on_position` sees only reports with a usable fix (then `vessel` is never None and
    # `vessel.fix` is this report's); False: every position report.
    fix_only: ClassVar[bool] = True
    # The engine hands this rule only these records (see hub/engine.py), as the pipeline's
    # observations: the zones of a position are looked up once, by the pipeline.
    record_types: tuple[type, ...] = (VesselPosition, VesselStatic)
    observes = True
    state_class = MaritimeState

    def __init__(self, common: MaritimeRulesConfig, registry: MaritimeRegistry) -> None:
        self.registry = registry
        self.expiry_ns = int(common.vessel_expiry_minutes * NS_PER_MIN)
        self.max_vessels = common.max_vessels
        self._group: MaritimeRules | None = None

    # Rule protocol, when run on its own

    def on_record(
        self, state: MaritimeState, item: Record | Observation, now_ns: int
    ) -> list[Signal]:
        return self._alone().on_record(state, item, now_ns)

    def on_tick(self, state: MaritimeState, now_ns: int) -> list[Signal]:
        return self._alone().on_tick(state, now_ns)

    def _alone(self) -> MaritimeRules:
        if self._group is None:
            self._group = MaritimeRules([self], self.registry, self.expiry_ns, self.max_vessels)
            self._group.report_failure = None  # on its own, the engine sees its failures
        return self._group

    # hooks

    def on_position(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselPosition, now: int,
        obs: Observation, previous: Fix | None,
    ) -> list[Signal]:  # fmt: skip
        """A position report (only those with a usable fix if `fix_only`). `vessel` is None only
        for a report without a usable fix from an unknown MMSI; with a fix, `vessel.fix` is
        already this report's fix, `previous` the one before."""
        raise NotImplementedError

    def on_static(
        self, table: MaritimeState, vessel: Vessel | None, record: VesselStatic, now: int
    ) -> list[Signal]:
        return []

    def check(self, table: MaritimeState, now_ns: int) -> list[Signal]:
        return []

    def seen_ns(self, vessel: Vessel) -> int:
        """When this rule last heard the vessel, for expiry: its last fix."""
        return vessel.fix.seen_ns if vessel.fix is not None else vessel.heard_ns

    def expires(self, watch: Any) -> bool:
        return True

    def on_evict(self, vessel: Vessel, mmsi: str, watch: Any) -> list[Signal]:
        if not watch.active:
            return []
        msg = f"{self.label(vessel, mmsi)} not heard for a while; dropped from the vessel table"
        return [self.signal(vessel, mmsi, f"mmsi:{mmsi}", False, msg, reason="expired")]

    # helpers

    def watching(self, table: MaritimeState) -> list[tuple[str, Vessel, Any]]:
        """(mmsi, vessel, this rule's watch) of every vessel this rule watches."""
        slot = self.slot
        return [(m, v, w) for m, v in table.vessels.items() if (w := getattr(v, slot)) is not None]

    def vessel_name(self, vessel: Vessel | None, mmsi: str) -> str | None:
        if vessel is not None and vessel.name:
            return vessel.name
        known = self.registry.vessel(mmsi)
        return known.name if known and known.name else None

    def label(self, vessel: Vessel | None, mmsi: str) -> str:
        name = self.vessel_name(vessel, mmsi)
        return f"{name} (MMSI {mmsi})" if name else f"MMSI {mmsi}"

    def signal(
        self,
        vessel: Vessel | None,
        mmsi: str,
        subject: str,
        active: bool,
        message: str,
        severity: str = "info",
        grid: GridTags | None = None,
        **extra: Any,
    ) -> Signal:
        """A signal whose data carries the vessel, its sea grid and its last position."""
        fix = vessel.fix if vessel is not None else None
        seen = self._group._observed if self._group is not None else None
        if fix is None:
            sea = None
        elif seen is not None and (seen.record.lat, seen.record.lon) == (fix.lat, fix.lon):  # type: ignore[union-attr]
            sea = seen.sea_grid  # the position being handled: already looked up
        else:
            sea = self.registry.sea_grid_at(fix.lat, fix.lon)
        data: dict[str, Any] = {
            "mmsi": mmsi,
            "name": self.vessel_name(vessel, mmsi),
            "registered": self.registry.is_registered(mmsi),
            "sea_grid": sea.tags.grid if sea else "",
            "sea_grid_zone": sea.id if sea else "",
            "lat": fix.lat if fix else None,
            "lon": fix.lon if fix else None,
            "sog_kn": fix.sog_kn if fix else None,
            "cog_deg": fix.cog_deg if fix else None,
            "position_time": _iso(fix.time_ns) if fix else None,
        }
        data.update(extra)
        tags = grid if grid is not None else (sea.tags if sea else NO_GRID)
        return Signal(
            rule=self.name,
            subject=subject,
            active=active,
            severity=severity if active else "info",
            message=message,
            data=data,
            grid=tags,
        )


class MaritimeRules:
    """The maritime rules as one engine rule over one vessel table (`MaritimeState`).

    Each report updates the vessel's entry once (fix, static data), then goes to every rule in
    turn; expiry and the `max_vessels` bound run once per tick for all of them. Evicting an entry
    resolves the alerts its watches hold open. A rule that fails is reported by its own name
    (`report_failure`, set by the engine) and the others still see the report.

    Which hooks a report reaches is worked out once, here: a position without a usable fix goes
    only to the rules that look at every report (`fix_only = False`), a static report only to
    the rules that define `on_static`.
    """

    name = "maritime"
    record_types: tuple[type, ...] = (VesselPosition, VesselStatic)
    observes = True
    state_class = MaritimeState

    def __init__(
        self,
        rules: Sequence[VesselRule],
        registry: MaritimeRegistry,
        expiry_ns: int,
        max_vessels: int,
    ) -> None:
        self.rules = list(rules)
        self.legacy_names = tuple(r.name for r in self.rules)  # each kept its own state before
        self.registry = registry
        self.expiry_ns = expiry_ns
        self.max_vessels = max_vessels
        self.report_failure: Callable[[str], None] | None = self._failed
        self.errors: Counter[str] = Counter()
        self._observed: Observation | None = None  # the one being handled, for its sea grid
        for rule in self.rules:
            rule._group = self
        self._on_fix = _hooks(self.rules, "on_position")
        self._on_no_fix = _hooks([r for r in self.rules if not r.fix_only], "on_position")
        self._on_static = _hooks(
            [r for r in self.rules if type(r).on_static is not VesselRule.on_static], "on_static"
        )
        self._checks = _hooks(self.rules, "check")

    def on_record(
        self, state: MaritimeState, item: Record | Observation, now_ns: int
    ) -> list[Signal]:
        obs = item if isinstance(item, Observation) else self._observe(item)
        record = obs.record
        if isinstance(record, VesselPosition):
            signals = self._position(state, record, now_ns, obs)
        elif isinstance(record, VesselStatic):
            signals = self._static(state, record, now_ns)
        else:
            return []
        if len(state.vessels) > 2 * self.max_vessels:
            signals += self._evict(state, now_ns)  # a flood between ticks stays bounded too
        return signals

    def on_tick(self, state: MaritimeState, now_ns: int) -> list[Signal]:
        return self._each(self._checks, state, now_ns) + self._evict(state, now_ns)

    def _position(
        self, state: MaritimeState, record: VesselPosition, now: int, obs: Observation
    ) -> list[Signal]:
        vessels, mmsi = state.vessels, record.mmsi
        vessel = vessels.get(mmsi)
        previous = vessel.fix if vessel is not None else None
        if _has_fix(record):
            if vessel is None:
                vessel = vessels[mmsi] = Vessel(heard_ns=now)
            vessel.fix = _new_fix(record, now)
            hooks = self._on_fix
        else:
            hooks = self._on_no_fix
            if vessel is None:  # an unknown MMSI: a rule may make its entry, the next sees it
                return self._each_new(hooks, state, mmsi, record, now, obs, previous)
        vessel.heard_ns = now
        self._observed = obs
        try:
            return self._each(hooks, state, vessel, record, now, obs, previous)
        finally:
            self._observed = None

    def _static(self, state: MaritimeState, record: VesselStatic, now: int) -> list[Signal]:
        vessel = state.vessels.get(record.mmsi)
        if record.name is not None or record.ship_type is not None:
            vessel = state.vessel(record.mmsi, now)
            if record.name:
                vessel.name = record.name.strip()[:64]
            if record.ship_type is not None:
                vessel.ship_type = record.ship_type
            vessel.static_ns = now
        if vessel is None:
            return self._each_new(self._on_static, state, record.mmsi, record, now)
        vessel.heard_ns = now
        return self._each(self._on_static, state, vessel, record, now)

    def _each(self, hooks: _Hooks, *args: Any) -> list[Signal]:
        """Every hook over the same arguments, in rule order. One try around the loop, not one
        per call: a hook that raises is reported by its rule's name, and the loop goes on with
        the next rule (run on its own, the rule's error goes to the engine instead)."""
        signals: list[Signal] = []
        start, count = 0, len(hooks)
        while start < count:
            index = start
            try:
                for index in range(start, count):
                    found = hooks[index][1](*args)
                    if found:
                        signals += found
                return signals
            except Exception:  # one rule's bug must not keep the report from the others
                if self.report_failure is None:
                    raise
                self.report_failure(hooks[index][0])
                start = index + 1
        return signals

    def _each_new(self, hooks: _Hooks, state: MaritimeState, mmsi: str, *args: Any) -> list[Signal]:
        """As `_each`, for a report of an MMSI without an entry yet: each hook gets the entry
        as the hooks before it left it (None until one of them makes it)."""
        signals: list[Signal] = []
        for index in range(len(hooks)):
            vessel = state.vessels.get(mmsi)
            signals += self._each(hooks[index : index + 1], state, vessel, *args)
        return signals

    def _failed(self, name: str) -> None:
        if self.errors[name] == 0:
            log.exception("rule %s failed; further failures are only counted", name)
        self.errors[name] += 1

    def _observe(self, record: Record) -> Observation:
        """A bare record handed in directly (not through the pipeline): observed here."""
        tagged, zones, sea_grid = self.registry.observe(record)
        return Observation(record=tagged, zones=zones, sea_grid=sea_grid)

    def _evict(self, state: MaritimeState, now_ns: int) -> list[Signal]:
        """Drop what has not been heard for the expiry time, then the oldest beyond the bound."""
        signals: list[Signal] = []
        cutoff = now_ns - self.expiry_ns
        vessels = state.vessels
        for mmsi, vessel in list(vessels.items()):
            if _oldest_ns(vessel) >= cutoff:
                continue
            for rule in self.rules:
                watch = getattr(vessel, rule.slot)
                if watch is not None and rule.seen_ns(vessel) < cutoff and rule.expires(watch):
                    setattr(vessel, rule.slot, None)
                    signals += rule.on_evict(vessel, mmsi, watch)
            if vessel.static_ns is not None and vessel.static_ns < cutoff:
                vessel.name = vessel.ship_type = vessel.static_ns = None
            if vessel.heard_ns < cutoff and not vessel.watched():
                del vessels[mmsi]
        if len(vessels) > self.max_vessels:
            oldest = sorted(vessels, key=lambda m: vessels[m].heard_ns)
            for mmsi in oldest[: len(vessels) - self.max_vessels]:
                vessel = vessels.pop(mmsi)
                for rule in self.rules:
                    watch = getattr(vessel, rule.slot)
                    if watch is not None:
                        signals += rule.on_evict(vessel, mmsi, watch)
        return signals


_Hooks = list[tuple[str, Callable[..., list[Signal]]]]  # (rule name, bound hook)


def _hooks(rules: Sequence[VesselRule], hook: str) -> _Hooks:
    return [(rule.name, getattr(rule, hook)) for rule in rules]


def _oldest_ns(vessel: Vessel) -> int:
    """The oldest of the times that expire parts of a vessel's entry."""
    oldest = vessel.heard_ns
    if vessel.fix is not None:
        oldest = min(oldest, vessel.fix.seen_ns)
    if vessel.static_ns is not None:
        oldest = min(oldest, vessel.static_ns)
    return oldest
