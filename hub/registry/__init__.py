"""Registries: who lives where (community) and which vessels and zones are known (maritime).

The normaliser asks the registry to tag each record with its grid ids; rules ask it whether a
household is a solitary elder or a vessel is whitelisted. Each part reloads its files on change
and accepts updates pushed by the platform (MQTT `hub/{site}/registry/...` or local HTTP).

Pushed updates are kept in an overlay file in the data dir and applied again after every start
and every reload of the files, so "elder away until 2026-12-01" survives a gateway restart and a
technician's edit of the CSV. A full-table push supersedes the earlier pushes to that table.
Personal fields (names, phones, owners) are dropped or hashed before a push is applied or stored,
exactly as when the same table is read from a file.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hub.errors import ConfigError
from hub.records import Record
from hub.registry.maritime import MaritimeRegistry, Zone

log = logging.getLogger("hub.registry")
DEFAULT_MAX_PUSH_BYTES = 4 * 1024 * 1024


class PushTooLarge(ConfigError):
    """A pushed registry body over the size limit; refused before it is parsed."""


@dataclass(slots=True, frozen=True, kw_only=True)
class Observation:
    """A record as the rules and the vessel table see it: tagged by the registries (grid ids,
    household, `registered`) plus the zones its position is in. The pipeline makes one per
    record, with one zone lookup; nothing downstream asks the registry where a position is."""

    record: Record
    zones: tuple[Zone, ...] = ()  # every zone containing the position, in load order
    sea_grid: Zone | None = None  # the smallest sea-grid zone among them


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

    def scrub(self, kind: str, payload: Any) -> Any:
        """The push as it may be kept: personal fields dropped or hashed as the file readers do.
        Never raises; a payload of the wrong shape is returned for `apply_update` to refuse."""
        ...


class Registry:
    """All registry parts behind one `tag` call, plus the overlay of platform pushes."""

    def __init__(
        self,
        parts: list[RegistryPart],
        overlay_path: Path | None = None,
        max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
    ) -> None:
        self.parts = {p.name: p for p in parts}
        self._routes: dict[type, list[RegistryPart]] = {}  # record class -> parts that tag it
        self.overlay_path = overlay_path
        self.max_push_bytes = max_push_bytes
        self.rejected: Counter[tuple[str, str]] = Counter()  # (via, reason) -> refused pushes
        self._overlay: list[tuple[str, str, Any]] = []
        if overlay_path is not None and overlay_path.exists():
            stored = _read_overlay(overlay_path)
            self._overlay = [(p, k, self._scrub(p, k, v)) for p, k, v in stored]
            if self._overlay != stored:  # written by an older version that kept personal data
                _write_overlay(overlay_path, self._overlay)
            for part in self.parts:
                self._reapply(part)

    def tag(self, record: Record) -> Record:
        for part in self.parts.values():
            record = part.tag(record)
        return record

    def observe(self, record: Record) -> Observation:
        """Tag the record and look up, once, the zones its position is in."""
        parts = self._routes.get(type(record))
        if parts is None:
            parts = self._routes[type(record)] = self._route(type(record))
        zones: tuple[Zone, ...] = ()
        sea_grid = None
        for part in parts:
            if isinstance(part, MaritimeRegistry):
                record, zones, sea_grid = part.observe(record)
            else:
                record = part.tag(record)
        return Observation(record=record, zones=zones, sea_grid=sea_grid)

    def _route(self, kind: type) -> list[RegistryPart]:
        """The parts, in order, that tag records of this class: those that declare it in
        `record_types`, and every part that declares none."""
        route = []
        for part in self.parts.values():
            types: tuple[type, ...] | None = getattr(part, "record_types", None)
            if types is None or issubclass(kind, types):
                route.append(part)
        return route

    def reload_if_changed(self) -> bool:
        reloaded = [name for name, p in self.parts.items() if p.reload_if_changed()]
        for name in reloaded:
            self._reapply(name)
        return bool(reloaded)

    def apply_push(self, part: str, kind: str, body: bytes, *, via: str) -> None:
        """A push as it arrived (JSON bytes from MQTT or HTTP): its size is checked before it
        is parsed, and every refusal is counted by `via` and reason. Raises ConfigError."""
        if len(body) > self.max_push_bytes:
            self.rejected[(via, "too_large")] += 1
            raise PushTooLarge(f"registry push of {len(body)} bytes > {self.max_push_bytes}")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            self.rejected[(via, "not_json")] += 1
            raise ConfigError(f"registry push is not JSON: {exc.__class__.__name__}") from exc
        try:
            self.apply_update(part, kind, payload)
        except ConfigError:
            self.rejected[(via, "invalid")] += 1
            raise

    def apply_update(self, part: str, kind: str, payload: Any) -> None:
        if part not in self.parts:
            raise ConfigError(f"unknown registry part {part!r} (known: {sorted(self.parts)})")
        payload = self._scrub(part, kind, payload)  # nothing personal is applied or stored
        self.parts[part].apply_update(kind, payload)  # raises before anything is persisted
        if kind.endswith("s"):  # a whole table: earlier pushes to it no longer matter
            self._overlay = [
                e for e in self._overlay if not (e[0] == part and kind in (e[1], e[1] + "s"))
            ]
        else:  # one row, partially: fold earlier pushes for the same row into this one
            key = _row_key(payload)
            for i, (p, k, old) in enumerate(self._overlay):
                if (p, k) == (part, kind) and key is not None and _row_key(old) == key:
                    payload = {**old, **payload}
                    del self._overlay[i]
                    break
        self._overlay.append((part, kind, payload))
        if self.overlay_path is not None:
            _write_overlay(self.overlay_path, self._overlay)

    def _scrub(self, part: str, kind: str, payload: Any) -> Any:
        return self.parts[part].scrub(kind, payload) if part in self.parts else payload

    def _reapply(self, part: str) -> None:
        for name, kind, payload in self._overlay:
            if name != part:
                continue
            try:
                self.parts[name].apply_update(kind, payload)
            except ConfigError as exc:  # e.g. a row that the new files made inconsistent
                log.warning("stored registry push %s/%s no longer applies: %s", name, kind, exc)


_ROW_IDS = ("household_id", "meter_id", "door_id", "mmsi")


def _row_key(payload: Any) -> tuple[str, str] | None:
    if isinstance(payload, dict):
        for name in _ROW_IDS:
            if name in payload:
                return name, str(payload[name])
    return None


def _read_overlay(path: Path) -> list[tuple[str, str, Any]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            part, kind, payload = json.loads(line)
        except ValueError:
            log.warning("skipping an unreadable line in %s", path)
            continue
        entries.append((str(part), str(kind), payload))
    return entries


def _write_overlay(path: Path, entries: list[tuple[str, str, Any]]) -> None:
    """Replace the overlay file atomically (write, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
