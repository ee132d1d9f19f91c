"""Door-access rules: door forced open, door held open, credentials denied repeatedly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from hub.alerts import iso
from hub.records import DoorEvent, GridTags, Record
from hub.registry.community import CommunityRegistry
from hub.rules import Signal
from hub.rules.community._base import NS, _CommunityRule
from hub.rules.community.config import CommunityRulesConfig
from hub.rules.state import Sections, TrackedDict, entries, grid_from, grid_json, layout

_EVENT_TEXT = {
    "forced": "forced open",
    "alarm": "controller alarm (tamper)",
    "held_open": "held open",
}


@dataclass(slots=True, kw_only=True)
class DoorEpisode:
    """An open door alert: when its last event came, and the door's grid for the resolution."""

    raised_ns: int
    grid: GridTags

    def to_json(self) -> dict[str, Any]:
        return {"raised_ns": self.raised_ns, "grid": grid_json(self.grid)}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if isinstance(data, list):  # version 0: [raised_ns, grid, micro_grid, police_grid]
            return cls(raised_ns=int(data[0]), grid=grid_from(data[1:]))
        return cls(raised_ns=int(data["raised_ns"]), grid=grid_from(data["grid"]))


@dataclass(slots=True, kw_only=True)
class DoorEpisodesState(Sections):
    """The open episodes of door_forced / door_held_open, by door id."""

    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"open": DoorEpisode.from_json}
    open: TrackedDict[DoorEpisode] = field(default_factory=TrackedDict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "open": {door: episode.to_json() for door, episode in self.open.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)  # version 0 kept the same key, entries as lists
        return cls(open=entries(data.get("open"), DoorEpisode.from_json))


class _DoorEpisodes(_CommunityRule):
    """Door alerts raised by one event type and resolved after `resolve_minutes` on a tick."""

    state_class = DoorEpisodesState
    record_types: tuple[type, ...] = (DoorEvent,)
    events: tuple[str, ...] = ()
    severity = "warning"
    resolve_minutes = 10.0
    resolve_on_open = False

    def on_record(self, state: DoorEpisodesState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent):
            return []
        episodes = state.open
        subject = f"door:{record.door_id}"
        if record.event == "open" and self.resolve_on_open and record.door_id in episodes:
            del episodes[record.door_id]
            return [
                self.signal(
                    subject,
                    False,
                    "info",
                    f"door {record.door_id} closed and used normally again",
                    {},
                    record.grid,
                )
            ]
        if record.event not in self.events:
            return []
        episodes[record.door_id] = DoorEpisode(raised_ns=record.time_ns, grid=record.grid)
        where = f" (building {record.building})" if record.building else ""
        at = self.clock_time(record.time_ns, now_ns)
        message = (
            f"door {record.door_id}{where} {_EVENT_TEXT.get(record.event, record.event)} at {at}"
        )
        data = {
            "door_id": record.door_id,
            "building": record.building,
            "event": record.event,
            "at": iso(record.time_ns),
        }
        return [self.signal(subject, True, self.severity, message, data, record.grid)]

    def on_tick(self, state: DoorEpisodesState, now_ns: int) -> list[Signal]:
        episodes = state.open
        expired = [
            d for d, e in episodes.items() if now_ns - e.raised_ns >= self.resolve_minutes * 60 * NS
        ]
        signals = []
        for door_id in expired:
            grid = episodes.pop(door_id).grid
            message = f"door {door_id}: no further {'/'.join(self.events)} events for {self.resolve_minutes:g} min"
            signals.append(self.signal(f"door:{door_id}", False, "info", message, {}, grid))
        return signals


class DoorForced(_DoorEpisodes):
    """`door_forced`: a door forced open or a controller alarm; critical."""

    name = "door_forced"
    severity = "critical"

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.events = tuple(cfg.door_forced.events)
        self.resolve_minutes = cfg.door_forced.resolve_minutes


class DoorHeldOpen(_DoorEpisodes):
    """`door_held_open`: a door left open; resolves on its next normal open or after a while."""

    name = "door_held_open"
    resolve_on_open = True

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.events = ("held_open",)
        self.resolve_minutes = cfg.door_held_open.resolve_minutes


@dataclass(slots=True, kw_only=True)
class DeniedDoor:
    """The recent denials at one door (times and credential hashes, oldest first)."""

    times_ns: list[int] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)
    active: bool = False
    grid: GridTags = field(default_factory=GridTags)

    def to_json(self) -> dict[str, Any]:
        return {
            "times_ns": list(self.times_ns),
            "credentials": list(self.credentials),
            "active": self.active,
            "grid": grid_json(self.grid),
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if "t" in data:  # version 0
            return cls(
                times_ns=list(data["t"]),
                credentials=list(data["cred"]),
                active=bool(data["active"]),
                grid=grid_from(data.get("grid")),
            )
        return cls(
            times_ns=list(data["times_ns"]),
            credentials=list(data["credentials"]),
            active=bool(data["active"]),
            grid=grid_from(data["grid"]),
        )


@dataclass(slots=True, kw_only=True)
class DoorDeniedState(Sections):
    VERSION: ClassVar[int] = 1
    SECTIONS: ClassVar[dict[str, Any]] = {"doors": DeniedDoor.from_json}
    doors: TrackedDict[DeniedDoor] = field(default_factory=TrackedDict)

    def record_keys(self, records: Sequence[Any]) -> set[str]:
        return {f"doors/{r.door_id}" for r in records if r.event == "denied"}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "doors": {door_id: door.to_json() for door_id, door in self.doors.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)
        return cls(doors=entries(data.get("doors"), DeniedDoor.from_json))


class DoorDeniedRepeatedly(_CommunityRule):
    """`door_denied_repeatedly`: `count` denied credentials within `window_minutes` on one door;
    resolves once the window holds no denial."""

    name = "door_denied_repeatedly"
    state_class = DoorDeniedState
    record_types: tuple[type, ...] = (DoorEvent,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.door_denied_repeatedly

    def on_record(self, state: DoorDeniedState, record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent) or record.event != "denied":
            return []
        door = state.doors.get(record.door_id)
        if door is None:
            door = state.doors[record.door_id] = DeniedDoor()
        door.times_ns.append(record.time_ns)
        door.credentials.append(record.credential_hash)
        door.grid = record.grid
        self._prune(door, record.time_ns)
        if door.active or len(door.times_ns) < self.cfg.count:
            return []
        door.active = True
        distinct = len({c for c in door.credentials if c})
        where = f" (building {record.building})" if record.building else ""
        message = (
            f"door {record.door_id}{where}: {len(door.times_ns)} denied credentials within "
            f"{self.cfg.window_minutes:g} min ({distinct} different cards)"
        )
        data = {
            "door_id": record.door_id,
            "building": record.building,
            "denied": len(door.times_ns),
            "distinct_credentials": distinct,
            "window_minutes": self.cfg.window_minutes,
            "first_at": iso(door.times_ns[0]),
            "last_at": iso(record.time_ns),
        }
        return [self.signal(f"door:{record.door_id}", True, "warning", message, data, record.grid)]

    def on_tick(self, state: DoorDeniedState, now_ns: int) -> list[Signal]:
        doors = state.doors
        signals = []
        for door_id in list(doors):
            door = doors[door_id]
            self._prune(door, now_ns)
            if door.times_ns:
                continue
            del doors[door_id]
            if door.active:
                message = (
                    f"door {door_id}: no denied credentials for {self.cfg.window_minutes:g} min"
                )
                signals.append(
                    self.signal(f"door:{door_id}", False, "info", message, {}, door.grid)
                )
        return signals

    def _prune(self, door: DeniedDoor, now_ns: int) -> None:
        cutoff = now_ns - self.cfg.window_minutes * 60 * NS
        keep = [i for i, t in enumerate(door.times_ns) if t > cutoff][-max(self.cfg.count, 50) :]
        door.times_ns = [door.times_ns[i] for i in keep]
        door.credentials = [door.credentials[i] for i in keep]
