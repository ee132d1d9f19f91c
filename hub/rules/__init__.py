"""Rules: pure logic over (persisted state, record, clock time) that emits alert signals.

A rule never talks to the network or the database. The engine (hub/engine.py) owns each rule's
state (an instance of the rule's `state_class`, see hub/rules/state.py), persists what each step
changed in it in SQLite with that step's records and alert changes, and turns signals into alert
lifecycle events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.records import NO_GRID, GridTags, Record
from hub.rules.state import RuleState

SEVERITIES = ("info", "warning", "critical")


@dataclass(slots=True, frozen=True, kw_only=True)
class Signal:
    """A rule's verdict about one subject: `active=True` raises or updates, False resolves.

    `subject` is the stable key of what the alert is about ("meter:M-001", "mmsi:412345678");
    the alert id is derived from (site, rule, subject, episode). `data` carries the structured
    evidence (position, litres in window, last door event ...) and must be JSON-serialisable.
    """

    rule: str
    subject: str
    active: bool
    severity: str = "warning"
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    grid: GridTags = NO_GRID


def resolve(rule: str, subject: str, message: str = "", **data: Any) -> Signal:
    return Signal(
        rule=rule, subject=subject, active=False, severity="info", message=message, data=data
    )


class Rule(Protocol):
    """What the engine calls. `state` is this rule's own `state_class` instance, mutated in
    place and persisted; the engine creates it (`state_class()`) and restores it
    (`state_class.from_json`)."""

    name: str

    @property
    def state_class(self) -> type[RuleState]: ...

    def on_record(self, state: Any, record: Record, now_ns: int) -> list[Signal]: ...

    def on_tick(self, state: Any, now_ns: int) -> list[Signal]: ...


def enabled_rules(cfg: Any, classes: dict[str, Any], registry: Any) -> list[Rule]:
    """Build each rule in `classes` whose section `cfg.<name>` has `enabled = true`."""
    return [cls(cfg, registry) for name, cls in classes.items() if getattr(cfg, name).enabled]
