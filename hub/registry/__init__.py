"""Registries: who lives where (community) and which vessels and zones are known (maritime).

The normaliser asks the registry to tag each record with its grid ids; rules ask it whether a
household is a solitary elder or a vessel is whitelisted. Each part reloads its files on change
and accepts updates pushed by the platform (MQTT `hub/{site}/registry/...` or local HTTP).
"""

from __future__ import annotations

from typing import Any, Protocol

from hub.records import Record


class RegistryPart(Protocol):
    name: str

    def tag(self, record: Record) -> Record:
        """Return the record with grid tags (and household / registered flags) filled in."""
        ...

    def reload_if_changed(self) -> bool:
        """Re-read files whose mtime changed; True if anything was reloaded."""
        ...

    def apply_update(self, kind: str, payload: Any) -> None:
        """Apply a platform push (`kind` is the topic tail, e.g. "households" or "household");
        raises ConfigError on a bad payload."""
        ...


class Registry:
    """All registry parts behind one `tag` call."""

    def __init__(self, parts: list[RegistryPart]) -> None:
        self.parts = {p.name: p for p in parts}

    def tag(self, record: Record) -> Record:
        for part in self.parts.values():
            record = part.tag(record)
        return record

    def reload_if_changed(self) -> bool:
        return any([p.reload_if_changed() for p in self.parts.values()])

    def apply_update(self, part: str, kind: str, payload: Any) -> None:
        from hub.errors import ConfigError

        if part not in self.parts:
            raise ConfigError(f"unknown registry part {part!r} (known: {sorted(self.parts)})")
        self.parts[part].apply_update(kind, payload)
