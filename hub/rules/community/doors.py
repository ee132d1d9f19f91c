"""Door-access rules: door forced open, door held open, credentials denied repeatedly."""

from __future__ import annotations

from typing import Any

from hub.alerts import iso
from hub.records import DoorEvent, Record
from hub.registry.community import CommunityRegistry
from hub.rules import Signal
from hub.rules.community._base import NS, _CommunityRule, _grid_from, _grid_json
from hub.rules.community.config import CommunityRulesConfig

_EVENT_TEXT = {
    "forced": "forced open",
    "alarm": "controller alarm (tamper)",
    "held_open": "held open",
}


class _DoorEpisodes(_CommunityRule):
    """Door alerts raised by one event type and resolved after `resolve_minutes` on a tick.

    State: {"open": {door_id: [raised_ns, grid, micro_grid, police_grid]}}."""

    record_types: tuple[type, ...] = (DoorEvent,)
    events: tuple[str, ...] = ()
    severity = "warning"
    resolve_minutes = 10.0
    resolve_on_open = False

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent):
            return []
        episodes = state.setdefault("open", {})
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
        episodes[record.door_id] = [record.time_ns, *_grid_json(record.grid)]
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

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        episodes = state.setdefault("open", {})
        expired = [
            d
            for d, (t_ns, *_) in episodes.items()
            if now_ns - t_ns >= self.resolve_minutes * 60 * NS
        ]
        signals = []
        for door_id in expired:
            grid = _grid_from(episodes.pop(door_id)[1:])
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


class DoorDeniedRepeatedly(_CommunityRule):
    """`door_denied_repeatedly`: `count` denied credentials within `window_minutes` on one door;
    resolves once the window holds no denial. State: {"doors": {door_id: {"t": [...], ...}}}."""

    name = "door_denied_repeatedly"
    record_types: tuple[type, ...] = (DoorEvent,)

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        super().__init__(cfg, registry)
        self.cfg = cfg.door_denied_repeatedly

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if not isinstance(record, DoorEvent) or record.event != "denied":
            return []
        door = state.setdefault("doors", {}).setdefault(
            record.door_id, {"t": [], "cred": [], "active": False}
        )
        door["t"].append(record.time_ns)
        door["cred"].append(record.credential_hash)
        door["grid"] = _grid_json(record.grid)
        self._prune(door, record.time_ns)
        if door["active"] or len(door["t"]) < self.cfg.count:
            return []
        door["active"] = True
        distinct = len({c for c in door["cred"] if c})
        where = f" (building {record.building})" if record.building else ""
        message = (
            f"door {record.door_id}{where}: {len(door['t'])} denied credentials within "
            f"{self.cfg.window_minutes:g} min ({distinct} different cards)"
        )
        data = {
            "door_id": record.door_id,
            "building": record.building,
            "denied": len(door["t"]),
            "distinct_credentials": distinct,
            "window_minutes": self.cfg.window_minutes,
            "first_at": iso(door["t"][0]),
            "last_at": iso(record.time_ns),
        }
        return [self.signal(f"door:{record.door_id}", True, "warning", message, data, record.grid)]

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        doors = state.setdefault("doors", {})
        signals = []
        for door_id in list(doors):
            door = doors[door_id]
            self._prune(door, now_ns)
            if door["t"]:
                continue
            del doors[door_id]
            if door["active"]:
                message = (
                    f"door {door_id}: no denied credentials for {self.cfg.window_minutes:g} min"
                )
                signals.append(
                    self.signal(
                        f"door:{door_id}", False, "info", message, {}, _grid_from(door.get("grid"))
                    )
                )
        return signals

    def _prune(self, door: dict[str, Any], now_ns: int) -> None:
        cutoff = now_ns - self.cfg.window_minutes * 60 * NS
        keep = [i for i, t in enumerate(door["t"]) if t > cutoff][-max(self.cfg.count, 50) :]
        door["t"] = [door["t"][i] for i in keep]
        door["cred"] = [door["cred"][i] for i in keep]
