"""The maritime rules' one vessel table: per MMSI the last fix, static data and each rule's watch.

The six maritime rules used to keep six dictionaries keyed by MMSI, each with its own copy of the
last position and of the static data. Now one `Vessel` per MMSI holds what they all need, and a
rule's own flags and timers sit in its watch slot (None while the rule is not watching it).
Version 0 of this state is the six old per-rule dicts, keyed by rule name (see `from_json`).
It is stored as one entry per MMSI (a `KeyedState`, see hub/rules/state.py), so a step writes
only the vessels it touched, not the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from hub.rules.state import TrackedDict, UnknownStateVersion, layout, tracked


@dataclass(slots=True, frozen=True, kw_only=True)
class Fix:
    """A usable position report: where, how fast, when it was taken and when the hub heard it."""

    lat: float
    lon: float
    sog_kn: float | None
    cog_deg: float | None
    time_ns: int  # the report's time (the hub's when the report has none)
    seen_ns: int  # the hub's clock when it arrived

    def to_json(self) -> dict[str, Any]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "sog_kn": self.sog_kn,
            "cog_deg": self.cog_deg,
            "time_ns": self.time_ns,
            "seen_ns": self.seen_ns,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(
            lat=float(data["lat"]),
            lon=float(data["lon"]),
            sog_kn=data["sog_kn"],
            cog_deg=data["cog_deg"],
            time_ns=int(data["time_ns"]),
            seen_ns=int(data["seen_ns"]),
        )

    @classmethod
    def from_legacy(cls, entry: dict[str, Any]) -> Fix | None:
        """The fix in a version-0 rule entry ({"lat", "lon", "sog", "cog", "at", "seen"})."""
        if entry.get("lat") is None or entry.get("lon") is None:
            return None
        return cls(
            lat=entry["lat"],
            lon=entry["lon"],
            sog_kn=entry.get("sog"),
            cog_deg=entry.get("cog"),
            time_ns=int(entry.get("at", 0)),
            seen_ns=int(entry.get("seen", 0)),
        )


@dataclass(slots=True, kw_only=True)
class InvalidWatch:
    """invalid_mmsi: the problems already reported for this MMSI."""

    problems: list[str] = field(default_factory=list)
    active: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"problems": list(self.problems), "active": self.active}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(problems=[str(p) for p in data["problems"]], active=bool(data["active"]))


@dataclass(slots=True, kw_only=True)
class GapWatch:
    """ais_gap: the watched zone the vessel was last heard in."""

    zone: str
    active: bool = False
    settled: bool = False  # silence judged not suspicious (stopped, or heading out)

    def to_json(self) -> dict[str, Any]:
        return {"zone": self.zone, "active": self.active, "settled": self.settled}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(
            zone=str(data["zone"]), active=bool(data["active"]), settled=bool(data["settled"])
        )


@dataclass(slots=True, kw_only=True)
class JumpWatch:
    """position_jump: the fix the next report is measured against, and the jump episode."""

    origin: Fix
    coarse: bool = False  # the origin came from a message 27 (1/10 minute resolution)
    active: bool = False
    ok: int = 0  # consistent reports since the last jump
    jumps: int = 0

    def to_json(self, current: Fix | None) -> dict[str, Any]:
        origin = None if self.origin is current else self.origin.to_json()  # None: the last fix
        return {
            "origin": origin,
            "coarse": self.coarse,
            "active": self.active,
            "ok": self.ok,
            "jumps": self.jumps,
        }

    @classmethod
    def from_json(cls, data: Any, current: Fix | None) -> Self:
        origin = Fix.from_json(data["origin"]) if data["origin"] is not None else current
        if origin is None:
            raise ValueError("position_jump watch without a fix")
        return cls(
            origin=origin,
            coarse=bool(data["coarse"]),
            active=bool(data["active"]),
            ok=int(data["ok"]),
            jumps=int(data["jumps"]),
        )


@dataclass(slots=True, kw_only=True)
class Stay:
    """A stay inside an area (the sea grid, a restricted zone, a fishing run): when it began,
    since when the vessel has been out of it (None while inside) and whether it is alerted."""

    since_ns: int
    out_ns: int | None = None
    active: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"since_ns": self.since_ns, "out_ns": self.out_ns, "active": self.active}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(
            since_ns=int(data["since_ns"]), out_ns=data["out_ns"], active=bool(data["active"])
        )


@dataclass(slots=True, kw_only=True)
class Vessel:
    """Everything the maritime rules keep about one MMSI."""

    heard_ns: int  # the hub's clock at its last report of any kind
    fix: Fix | None = None
    name: str | None = None  # from static reports (message 5 / 24)
    ship_type: int | None = None
    static_ns: int | None = None  # when the static data was last heard
    unregistered: Stay | None = None
    invalid: InvalidWatch | None = None
    gap: GapWatch | None = None
    jump: JumpWatch | None = None
    restricted: dict[str, Stay] | None = None  # by zone id
    fishing: Stay | None = None
    # invalid_mmsi's verdict on the MMSI itself: derived, so neither saved nor compared
    mmsi_problems: tuple[str, ...] | None = field(default=None, compare=False)

    def watched(self) -> bool:
        return not (
            self.unregistered is None
            and self.invalid is None
            and self.gap is None
            and self.jump is None
            and self.restricted is None
            and self.fishing is None
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"heard_ns": self.heard_ns}
        if self.fix is not None:
            out["fix"] = self.fix.to_json()
        if self.static_ns is not None:
            out["static"] = {
                "name": self.name,
                "ship_type": self.ship_type,
                "seen_ns": self.static_ns,
            }
        for slot in ("unregistered", "invalid", "gap", "fishing"):
            watch = getattr(self, slot)
            if watch is not None:
                out[slot] = watch.to_json()
        if self.jump is not None:
            out["jump"] = self.jump.to_json(self.fix)
        if self.restricted is not None:
            out["restricted"] = {z: stay.to_json() for z, stay in self.restricted.items()}
        return out

    @classmethod
    def from_json(cls, data: Any) -> Self:
        fix = Fix.from_json(data["fix"]) if "fix" in data else None
        static = data.get("static")
        restricted = data.get("restricted")
        return cls(
            heard_ns=int(data["heard_ns"]),
            fix=fix,
            name=static["name"] if static else None,
            ship_type=static["ship_type"] if static else None,
            static_ns=int(static["seen_ns"]) if static else None,
            unregistered=_opt(data, "unregistered", Stay.from_json),
            invalid=_opt(data, "invalid", InvalidWatch.from_json),
            gap=_opt(data, "gap", GapWatch.from_json),
            jump=JumpWatch.from_json(data["jump"], fix) if "jump" in data else None,
            restricted=(
                {str(z): Stay.from_json(s) for z, s in restricted.items()}
                if restricted is not None
                else None
            ),
            fishing=_opt(data, "fishing", Stay.from_json),
        )


def _opt(data: dict[str, Any], key: str, parse: Any) -> Any:
    return parse(data[key]) if key in data else None


@dataclass(slots=True, kw_only=True)
class MaritimeState:
    """The vessel table shared by the maritime rules, by MMSI, in order of first report."""

    VERSION: ClassVar[int] = 1
    vessels: TrackedDict[Vessel] = field(default_factory=TrackedDict)

    def __post_init__(self) -> None:
        self.vessels = tracked(self.vessels)

    def __len__(self) -> int:
        return len(self.vessels)

    def mmsis(self) -> list[str]:
        """The MMSIs the table keeps."""
        return list(self.vessels)

    def watched(self) -> list[str]:
        """The MMSIs some rule is watching (an episode under way, open or not yet)."""
        return [mmsi for mmsi, v in self.vessels.items() if v.watched()]

    def vessel(self, mmsi: str, now_ns: int) -> Vessel:
        """The MMSI's entry, made (heard now) if it has none."""
        vessel = self.vessels.get(mmsi)
        if vessel is None:
            vessel = self.vessels[mmsi] = Vessel(heard_ns=now_ns)
        return vessel

    def to_json(self) -> dict[str, Any]:
        vessels = {mmsi: v.to_json() for mmsi, v in self.vessels.items()}
        return {"version": self.VERSION, "vessels": vessels}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if layout(data, cls.VERSION) == 0:
            return cls.from_rule_dicts(data)
        return cls.from_entries({"version": cls.VERSION}, data["vessels"])

    # KeyedState: one entry per MMSI

    def header_json(self) -> dict[str, Any]:
        return {"version": self.VERSION}

    def entry_json(self, key: str) -> Any:
        vessel = self.vessels.get(key)
        return vessel.to_json() if vessel is not None else None

    def entry_keys(self) -> list[str]:
        return list(self.vessels)

    def record_keys(self, records: Sequence[Any]) -> set[str]:
        return {record.mmsi for record in records}

    def signal_keys(self, signals: Sequence[Any]) -> set[str]:
        return {s.data["mmsi"] for s in signals if "mmsi" in s.data}

    def take_changed(self) -> set[str]:
        return self.vessels.take_changed()

    @classmethod
    def from_entries(cls, header: Any, entries: dict[str, Any]) -> Self:
        if layout(header, cls.VERSION) != cls.VERSION:
            raise UnknownStateVersion("a stored header of version 0")
        return cls(vessels=TrackedDict((str(m), Vessel.from_json(v)) for m, v in entries.items()))

    @classmethod
    def from_rule_dicts(cls, rules: dict[str, Any]) -> Self:
        """Version 0: the six rules' own dicts ({"v": {mmsi: entry}, "s": {mmsi: static}}),
        by rule name, as the hub kept them before this table. Open episodes carry over."""
        unknown = set(rules) - set(_LEGACY)
        if unknown:
            raise UnknownStateVersion(f"no maritime rule named {sorted(unknown)}")
        state = cls()
        for name, old in rules.items():
            if not isinstance(old, dict):
                raise UnknownStateVersion(f"{name}: state is not an object")
            for mmsi, static in old.get("s", {}).items():
                _legacy_static(state, mmsi, static)
            for mmsi, entry in old.get("v", {}).items():
                vessel = _legacy_vessel(state, mmsi, entry)
                _LEGACY[name](vessel, entry)
        return state


def _legacy_static(state: MaritimeState, mmsi: str, static: list[Any]) -> None:
    name, ship_type, seen_ns = static
    vessel = state.vessel(mmsi, seen_ns)
    if vessel.static_ns is None or seen_ns > vessel.static_ns:
        vessel.name, vessel.ship_type, vessel.static_ns = name, ship_type, seen_ns
    vessel.heard_ns = max(vessel.heard_ns, seen_ns)


def _legacy_vessel(state: MaritimeState, mmsi: str, entry: dict[str, Any]) -> Vessel:
    seen_ns = int(entry.get("seen", 0))
    vessel = state.vessel(mmsi, seen_ns)
    vessel.heard_ns = max(vessel.heard_ns, seen_ns)
    fix = Fix.from_legacy(entry)
    if fix is not None and (vessel.fix is None or fix.seen_ns > vessel.fix.seen_ns):
        vessel.fix = fix
    return vessel


def _legacy_jump(vessel: Vessel, entry: dict[str, Any]) -> None:
    origin = Fix.from_legacy(entry)
    if origin is None:
        return
    vessel.jump = JumpWatch(
        origin=vessel.fix if vessel.fix == origin and vessel.fix is not None else origin,
        coarse=bool(entry.get("coarse", False)),
        active=bool(entry["active"]),
        ok=int(entry["ok"]),
        jumps=int(entry["jumps"]),
    )


def _legacy_restricted(vessel: Vessel, entry: dict[str, Any]) -> None:
    zones = {
        z: Stay(since_ns=v["in"], out_ns=v["out"], active=bool(v["active"]))
        for z, v in entry["z"].items()
    }
    vessel.restricted = zones or None


_LEGACY: dict[str, Any] = {
    "unregistered_vessel": lambda v, e: setattr(
        v, "unregistered", Stay(since_ns=e["in"], out_ns=e["out"], active=bool(e["active"]))
    ),
    "invalid_mmsi": lambda v, e: setattr(
        v, "invalid", InvalidWatch(problems=list(e["problems"]), active=bool(e["active"]))
    ),
    "ais_gap": lambda v, e: setattr(
        v, "gap", GapWatch(zone=e["zone"], active=bool(e["active"]), settled=bool(e["settled"]))
    ),
    "position_jump": _legacy_jump,
    "restricted_zone": _legacy_restricted,
    "fishing_moratorium": lambda v, e: setattr(
        v, "fishing", Stay(since_ns=e["since"], out_ns=e["miss"], active=bool(e["active"]))
    ),
}
