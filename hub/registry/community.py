"""Community registry: households, meters and doors from CSV; tags readings and door events."""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.errors import ConfigError
from hub.records import NO_GRID, DoorEvent, GridTags, Record, WaterMeterReading

log = logging.getLogger("hub.registry.community")
NS = 1_000_000_000
MAX_ROWS = 200_000
_TRUE = {"1", "true", "yes", "y", "t", "是"}
_FALSE = {"0", "false", "no", "n", "f", "否", ""}
# Personal columns a households file may carry: never kept, never logged, never in records.
PERSONAL_COLUMNS = frozenset(
    {"name", "phone", "mobile", "contact", "contact_name", "contact_phone", "id_card"}
)


class CommunityRegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    households_csv: Path | None = None
    meters_csv: Path | None = None
    doors_csv: Path | None = None
    # Local time zone in which `away_until` dates end (China Standard Time by default).
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)


@dataclass(slots=True, frozen=True, kw_only=True)
class Household:
    household_id: str
    building: str = ""
    unit: str = ""
    room: str = ""
    grid: GridTags = NO_GRID
    is_solitary_elder: bool = False
    away_until: date | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class Meter:
    meter_id: str
    household_id: str
    bus: str = ""
    device_id: str = ""
    profile: str = ""


@dataclass(slots=True, frozen=True, kw_only=True)
class Door:
    door_id: str
    building: str = ""
    unit: str = ""
    grid: GridTags = NO_GRID
    household_id: str = ""


class RowError(ValueError):
    """One CSV row or pushed item is invalid; the message names the column, never its value."""


def _required(row: Mapping[str, Any], column: str) -> str:
    value = _opt(row, column)
    if not value:
        raise RowError(f"{column} is missing")
    if len(value) > 64 or not value.isprintable():
        raise RowError(f"{column} is too long or not printable")
    return value


def _opt(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RowError(f"{column} must be text")
    return str(value).strip()


def _grid(row: Mapping[str, Any]) -> GridTags:
    return GridTags(_opt(row, "grid"), _opt(row, "micro_grid"), _opt(row, "police_grid"))


def _bool(row: Mapping[str, Any], column: str) -> bool:
    value = row.get(column)
    if isinstance(value, bool):
        return value
    text = _opt(row, column).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(f"{column} is not a yes/no value")


def _date(row: Mapping[str, Any], column: str) -> date | None:
    text = _opt(row, column)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise RowError(f"{column} is not an ISO date") from exc


def household_from(row: Mapping[str, Any]) -> Household:
    return Household(
        household_id=_required(row, "household_id"),
        building=_opt(row, "building"),
        unit=_opt(row, "unit"),
        room=_opt(row, "room"),
        grid=_grid(row),
        is_solitary_elder=_bool(row, "is_solitary_elder"),
        away_until=_date(row, "away_until"),
    )


def meter_from(row: Mapping[str, Any]) -> Meter:
    return Meter(
        meter_id=_required(row, "meter_id"),
        household_id=_opt(row, "household_id"),
        bus=_opt(row, "bus"),
        device_id=_opt(row, "device_id"),
        profile=_opt(row, "profile"),
    )


def door_from(row: Mapping[str, Any]) -> Door:
    return Door(
        door_id=_required(row, "door_id"),
        building=_opt(row, "building"),
        unit=_opt(row, "unit"),
        grid=_grid(row),
        household_id=_opt(row, "household_id"),
    )


@dataclass(slots=True, frozen=True)
class TableSpec:
    kind: str  # "households" | "meters" | "doors"
    key: str
    required_columns: tuple[str, ...]


SPECS = {
    "households": TableSpec("households", "household_id", ("household_id", "is_solitary_elder")),
    "meters": TableSpec("meters", "meter_id", ("meter_id", "household_id")),
    "doors": TableSpec("doors", "door_id", ("door_id", "building")),
}
_GRID_COLUMNS = ("grid", "micro_grid", "police_grid")
# What a push may keep, per table: the columns the parsers read; anything else (a name, a phone,
# a column nobody asked for) is dropped before the push is applied or written to the data dir.
KEPT_COLUMNS: dict[str, frozenset[str]] = {
    "households": frozenset(
        ("household_id", "building", "unit", "room", *_GRID_COLUMNS, "is_solitary_elder")
    )
    | {"away_until"},
    "meters": frozenset(("meter_id", "household_id", "bus", "device_id", "profile")),
    "doors": frozenset(("door_id", "building", "unit", "household_id", *_GRID_COLUMNS)),
}
KEPT_COLUMNS["household"] = KEPT_COLUMNS["households"]
PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "households": household_from,
    "meters": meter_from,
    "doors": door_from,
}


class CommunityRegistry:
    """Who lives where. `tag` fills household and grid tags; rules use the query methods."""

    name = "community"
    record_types = (WaterMeterReading, DoorEvent)  # what `tag` changes; others pass through

    def __init__(self, cfg: CommunityRegistryConfig, hash_salt: str = "") -> None:
        self.cfg = cfg
        self.hash_salt = hash_salt
        self.households: dict[str, Household] = {}
        self.meters: dict[str, Meter] = {}
        self.doors: dict[str, Door] = {}
        self.unknown_ids: Counter[str] = Counter()
        self.bad_rows: Counter[str] = Counter()
        self._tz = timezone(timedelta(hours=cfg.utc_offset_hours))
        self._stamps: dict[str, tuple[int, int]] = {}
        for kind in SPECS:
            path = self._path(kind)
            if path is not None:
                self._load_file(kind, path)

    # --- loading -------------------------------------------------------------------------------

    def _path(self, kind: str) -> Path | None:
        paths = {
            "households": self.cfg.households_csv,
            "meters": self.cfg.meters_csv,
            "doors": self.cfg.doors_csv,
        }
        return paths[kind]

    def _load_file(self, kind: str, path: Path) -> None:
        try:
            stat = path.stat()
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"community registry: cannot read {kind} file {path}: {exc}") from exc
        table, bad = parse_csv(kind, text, str(path))
        self._install(kind, table)
        self.bad_rows[kind] = bad
        self._stamps[kind] = (stat.st_mtime_ns, stat.st_size)
        log.info(
            "community registry: %d %s loaded from %s (%d bad rows)", len(table), kind, path, bad
        )

    def _install(self, kind: str, table: dict[str, Any]) -> None:
        if kind == "households":
            self.households = table
        elif kind == "meters":
            self.meters = table
        else:
            self.doors = table

    def reload_if_changed(self) -> bool:
        """Re-read files whose mtime or size changed; a bad file raises and keeps the old data."""
        changed = False
        for kind in SPECS:
            path = self._path(kind)
            if path is None:
                continue
            try:
                stat = path.stat()
            except OSError as exc:
                raise ConfigError(
                    f"community registry: {kind} file {path} vanished: {exc}"
                ) from exc
            if self._stamps.get(kind) != (stat.st_mtime_ns, stat.st_size):
                self._load_file(kind, path)
                changed = True
        return changed

    def apply_update(self, kind: str, payload: Any) -> None:
        """Platform push: a full table ("households", "meters", "doors") or one "household"."""
        if kind == "household":
            self._upsert_household(payload)
            return
        if kind not in SPECS:
            raise ConfigError(f"community registry: unknown update kind {kind!r}")
        if not isinstance(payload, list) or len(payload) > MAX_ROWS:
            raise ConfigError(f"community registry: {kind} update must be a list of objects")
        table = _parse_items(kind, payload)
        self._install(kind, table)
        log.info("community registry: %s replaced by a platform push (%d rows)", kind, len(table))

    def scrub(self, kind: str, payload: Any) -> Any:
        """Keep only the columns the parsers read (see KEPT_COLUMNS)."""
        keep = KEPT_COLUMNS.get(kind)
        if keep is None:
            return payload
        if isinstance(payload, dict):
            return _kept(payload, keep)
        if isinstance(payload, list):
            return [_kept(item, keep) if isinstance(item, dict) else item for item in payload]
        return payload

    def _upsert_household(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise ConfigError("community registry: household update must be an object")
        hid = payload.get("household_id")
        current = self.households.get(hid) if isinstance(hid, str) else None
        merged: dict[str, Any] = _household_row(current) if current else {}
        merged.update(payload)
        if current is None and "is_solitary_elder" not in payload:
            merged["is_solitary_elder"] = False
        try:
            household = household_from(merged)
        except RowError as exc:
            raise ConfigError(f"community registry: bad household update: {exc}") from exc
        self.households = {**self.households, household.household_id: household}
        log.info(
            "community registry: household %s updated by a platform push", household.household_id
        )

    # --- tagging -------------------------------------------------------------------------------

    def tag(self, record: Record) -> Record:
        if isinstance(record, WaterMeterReading):
            return self._tag_reading(record)
        if isinstance(record, DoorEvent):
            return self._tag_door(record)
        return record

    def _tag_reading(self, record: WaterMeterReading) -> WaterMeterReading:
        meter = self.meters.get(record.meter_id)
        if meter is None:
            self.unknown_ids["meter"] += 1
            return record
        household = self.households.get(meter.household_id)
        if household is None:
            self.unknown_ids["household"] += 1
            return replace(record, household=meter.household_id)
        return replace(record, household=household.household_id, grid=household.grid)

    def _tag_door(self, record: DoorEvent) -> DoorEvent:
        door = self.doors.get(record.door_id)
        if door is None:
            self.unknown_ids["door"] += 1
            return record
        grid = door.grid
        if not grid.grid and door.household_id in self.households:
            grid = self.households[door.household_id].grid
        return replace(record, building=door.building, grid=grid)

    # --- queries for rules -----------------------------------------------------------------------

    def household_of_meter(self, meter_id: str) -> Household | None:
        meter = self.meters.get(meter_id)
        return self.households.get(meter.household_id) if meter else None

    def household(self, household_id: str) -> Household | None:
        return self.households.get(household_id)

    def is_away(self, household_id: str, now_ns: int) -> bool:
        """True while today (local date) is on or before the household's `away_until`."""
        household = self.households.get(household_id)
        if household is None or household.away_until is None:
            return False
        today = datetime.fromtimestamp(now_ns / NS, tz=UTC).astimezone(self._tz).date()
        return today <= household.away_until

    def doors_of_building(self, building: str, unit: str = "") -> list[Door]:
        return [
            d
            for d in self.doors.values()
            if d.building == building and (not unit or not d.unit or d.unit == unit)
        ]

    def doors_of_household(self, household_id: str) -> list[Door]:
        """The household's own doors, else the doors of its building (and unit)."""
        own = [d for d in self.doors.values() if d.household_id == household_id]
        if own:
            return own
        household = self.households.get(household_id)
        if household is None or not household.building:
            return []
        return self.doors_of_building(household.building, household.unit)

    def door(self, door_id: str) -> Door | None:
        return self.doors.get(door_id)

    def elders(self) -> list[Household]:
        return [h for h in self.households.values() if h.is_solitary_elder]


def _kept(item: dict[Any, Any], keep: frozenset[str]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in item.items() if str(k).strip().lower() in keep}


def _household_row(household: Household) -> dict[str, Any]:
    return {
        "household_id": household.household_id,
        "building": household.building,
        "unit": household.unit,
        "room": household.room,
        "grid": household.grid.grid,
        "micro_grid": household.grid.micro_grid,
        "police_grid": household.grid.police_grid,
        "is_solitary_elder": household.is_solitary_elder,
        "away_until": household.away_until.isoformat() if household.away_until else "",
    }


def parse_csv(kind: str, text: str, where: str) -> tuple[dict[str, Any], int]:
    """Parse one registry CSV: (table by id, count of bad rows). Bad rows are skipped and
    counted; a missing required column is a ConfigError. Messages never quote cell values."""
    spec = SPECS[kind]
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    missing = [c for c in spec.required_columns if c not in columns]
    if missing:
        raise ConfigError(f"community registry: {where} lacks column(s) {', '.join(missing)}")
    table: dict[str, Any] = {}
    errors: Counter[str] = Counter()
    for row in _rows(reader):
        try:
            item = PARSERS[kind](row)
        except RowError as exc:
            errors[str(exc)] += 1
            continue
        if getattr(item, spec.key) in table:
            errors[f"duplicate {spec.key}"] += 1
        table[getattr(item, spec.key)] = item
    for reason, count in errors.items():
        log.warning("community registry: %s: %d row(s) skipped: %s", where, count, reason)
    return table, sum(errors.values())


def _rows(reader: Iterable[dict[str | Any, Any]]) -> Iterable[dict[str, Any]]:
    for n, raw in enumerate(reader):
        if n >= MAX_ROWS:
            raise ConfigError(f"community registry: more than {MAX_ROWS} rows")
        row = {str(k).strip().lower(): v for k, v in raw.items() if k is not None}
        yield {k: v for k, v in row.items() if k not in PERSONAL_COLUMNS}


def _parse_items(kind: str, items: list[Any]) -> dict[str, Any]:
    spec = SPECS[kind]
    table: dict[str, Any] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"community registry: {kind}[{n}] is not an object")
        row = {str(k).lower(): v for k, v in item.items() if str(k).lower() not in PERSONAL_COLUMNS}
        try:
            parsed = PARSERS[kind](row)
        except RowError as exc:
            raise ConfigError(f"community registry: {kind}[{n}]: {exc}") from exc
        table[getattr(parsed, spec.key)] = parsed
    return table
