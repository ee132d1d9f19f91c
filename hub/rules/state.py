"""Typed rule state: the protocol every rule's state class follows, and its JSON versioning.

A state is a slotted dataclass with `to_json()` (readable names, a `version` field) and a
`from_json(data)` classmethod. `from_json` migrates the layouts it knows (version 0 is the
`dict[str, Any]` kept before states were typed: it has no `version` key) and raises
`UnknownStateVersion` for any other; the engine then starts that rule afresh with a warning.

A state that grows with what it watches (a vessel per MMSI, a meter per id) is a `KeyedState`:
it is stored as a small header plus one entry per key, and after each step the engine writes
only the entries that step changed, in the transaction that commits the step's records and
alerts. What changed is known three ways: the keys of the records the rule was given
(`record_keys`), the keys its signals name (`signal_keys`, for clock ticks), and the keys its
`TrackedDict`s saw added, replaced or removed (`take_changed`). A change a tick makes in place
without a signal (an inactive watch settled or dropped) is written with the entry's next change;
a restart recomputes it on its first tick, as it depends only on the entry and the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, TypeVar

from hub.errors import HubError
from hub.records import GridTags

T = TypeVar("T")
V = TypeVar("V")


class UnknownStateVersion(HubError):
    """A persisted rule state of a version this code cannot read."""


class RuleState(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: Any) -> Self: ...


class KeyedState(RuleState, Protocol):
    """A rule state stored as a header plus one entry per key (see the module docstring)."""

    def header_json(self) -> dict[str, Any]: ...

    def entry_json(self, key: str) -> Any:
        """The JSON of the entry under `key`; None when there is none (deleted)."""

    def entry_keys(self) -> Iterable[str]: ...

    def record_keys(self, records: Sequence[Any]) -> Iterable[str]: ...

    def signal_keys(self, signals: Sequence[Any]) -> Iterable[str]: ...

    def take_changed(self) -> set[str]: ...

    @classmethod
    def from_entries(cls, header: Any, entries: dict[str, Any]) -> Self: ...


def is_keyed(state_class: type[Any]) -> bool:
    return hasattr(state_class, "from_entries")


class TrackedDict(dict[str, V]):
    """A dict that remembers the keys added, replaced or removed since `take_changed()`.

    Reads are the plain dict's; only writes pay for the bookkeeping."""

    __slots__ = ("changed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed: set[str] = set()

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed

    def __setitem__(self, key: str, value: V) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changed.add(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.changed.add(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, V]:
        key, value = super().popitem()
        self.changed.add(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.changed.add(key)
        return super().setdefault(key, default)

    def clear(self) -> None:
        self.changed.update(self)
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        other = dict(*args, **kwargs)
        self.changed.update(other)
        super().update(other)


def tracked(entries: dict[str, V]) -> TrackedDict[V]:
    return entries if isinstance(entries, TrackedDict) else TrackedDict(entries)


class Sections:
    """A `KeyedState` whose entries sit in `TrackedDict` fields ("sections"): `SECTIONS` maps
    each field name to its entry parser; an entry's key is "<section>/<id>". Entries with a
    `to_json()` are stored as its result, plain values as they are."""

    __slots__ = ()
    VERSION: ClassVar[int]
    SECTIONS: ClassVar[dict[str, Callable[[Any], Any]]]

    def __post_init__(self) -> None:
        for section in self.SECTIONS:
            setattr(self, section, tracked(getattr(self, section)))

    def header_json(self) -> dict[str, Any]:
        return {"version": self.VERSION}

    @classmethod
    def header_fields(cls, header: dict[str, Any]) -> dict[str, Any]:
        """The fields kept in the header, as constructor arguments."""
        return {}

    def entry_json(self, key: str) -> Any:
        section, _, ident = key.partition("/")
        entry = getattr(self, section).get(ident)
        return entry.to_json() if hasattr(entry, "to_json") else entry

    def entry_keys(self) -> list[str]:
        return [
            f"{section}/{ident}" for section in self.SECTIONS for ident in getattr(self, section)
        ]

    def record_keys(self, records: Sequence[Any]) -> Iterable[str]:
        """Keys of entries a record changes in place (replacing or removing one is tracked)."""
        return ()

    def signal_keys(self, signals: Sequence[Any]) -> Iterable[str]:
        return ()

    def take_changed(self) -> set[str]:
        return {
            f"{section}/{ident}"
            for section in self.SECTIONS
            for ident in getattr(self, section).take_changed()
        }

    @classmethod
    def from_entries(cls, header: Any, entries: dict[str, Any]) -> Self:
        if layout(header, cls.VERSION) != cls.VERSION:
            raise UnknownStateVersion("a stored header of version 0")
        sections: dict[str, TrackedDict[Any]] = {name: TrackedDict() for name in cls.SECTIONS}
        for key, value in entries.items():
            section, _, ident = key.partition("/")
            dict.__setitem__(sections[section], ident, cls.SECTIONS[section](value))
        return cls(**sections, **cls.header_fields(header))


def layout(data: Any, current: int) -> int:
    """Which layout `data` is in: `current`, or 0 for the untyped dict of before; raises
    UnknownStateVersion for anything else."""
    if not isinstance(data, dict):
        raise UnknownStateVersion(f"rule state is a {type(data).__name__}, not an object")
    version = data.get("version", 0)
    if version == current or version == 0:
        return int(version)
    raise UnknownStateVersion(f"rule state version {version!r} (this hub reads {current})")


def entries(raw: Any, parse: Callable[[Any], T]) -> TrackedDict[T]:
    """A JSON object of per-entity entries parsed one by one ({} when absent)."""
    return TrackedDict((str(k), parse(v)) for k, v in (raw or {}).items())


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
