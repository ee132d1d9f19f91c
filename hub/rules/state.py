"""Typed rule state: the protocol every rule's state class follows, and its JSON versioning.

A state is a slotted dataclass with `to_json()` (readable names, a `version` field) and a
`from_json(data)` classmethod. `from_json` migrates the layouts it knows (version 0 is the
`dict[str, Any]` kept before states were typed: it has no `version` key) and raises
`UnknownStateVersion` for any other; the engine then starts that rule afresh with a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, TypeVar

from hub.errors import HubError
from hub.records import GridTags

T = TypeVar("T")


class UnknownStateVersion(HubError):
    """A persisted rule state of a version this code cannot read."""


class RuleState(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: Any) -> Self: ...


def layout(data: Any, current: int) -> int:
    """Which layout `data` is in: `current`, or 0 for the untyped dict of before; raises
    UnknownStateVersion for anything else."""
    if not isinstance(data, dict):
        raise UnknownStateVersion(f"rule state is a {type(data).__name__}, not an object")
    version = data.get("version", 0)
    if version == current or version == 0:
        return int(version)
    raise UnknownStateVersion(f"rule state version {version!r} (this hub reads {current})")


def entries(raw: Any, parse: Callable[[Any], T]) -> dict[str, T]:
    """A JSON object of per-entity entries parsed one by one ({} when absent)."""
    return {str(k): parse(v) for k, v in (raw or {}).items()}


def grid_json(grid: GridTags) -> list[str]:
    return [grid.grid, grid.micro_grid, grid.police_grid]


def grid_from(raw: Any) -> GridTags:
    return GridTags(*raw) if isinstance(raw, list) and len(raw) == 3 else GridTags()


@dataclass(slots=True, kw_only=True)
class NoState:
    """The state of a rule that keeps none."""

    VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        return {"version": self.VERSION}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)
        return cls()
