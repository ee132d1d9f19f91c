"""Maritime registry: vessel whitelist (CSV) and sea-grid zones (GeoJSON) behind fast lookups."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.errors import ShapelyError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from hub.errors import ConfigError
from hub.records import NO_GRID, GridTags, Record, VesselPosition, VesselStatic
from hub.source import salted_hash

log = logging.getLogger(__name__)

ZONE_KINDS = ("sea_grid", "restricted", "anchorage")
CSV_COLUMNS = ("mmsi", "name", "owner", "home_port", "type", "permits")
MAX_REPORTED_PROBLEMS = 5
MAX_PUSHED_ITEMS = 100_000
SCAN_ZONES = 32  # up to this many zones a linear bounding-box scan beats the STRtree
_OWNER_HASH = re.compile(r"[0-9a-f]{16}")


class MaritimeRegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Vessel whitelist: columns mmsi,name,owner,home_port,type,permits (permits split on ';').
    vessels_csv: Path | None = None
    # FeatureCollection of Polygon/MultiPolygon features with properties id, kind, grid, ...
    zones_geojson: Path | None = None
    # Grid id given to a sea_grid zone whose feature has no `grid` property.
    sea_grid_id: str = "sea"
    # How many MMSIs remember their last sea grid, so static reports can be tagged too.
    grid_memory_vessels: int = Field(default=20_000, ge=0)


class VesselEntry(BaseModel):
    """One whitelist row, as read from the CSV or pushed by the platform."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    mmsi: str = Field(pattern=r"^[0-9]{9}$")
    name: str = ""
    owner: str = ""
    home_port: str = ""
    type: str = ""
    permits: tuple[str, ...] = ()

    @field_validator("mmsi", mode="before")
    @classmethod
    def _mmsi_text(cls, value: Any) -> Any:
        return (
            str(value).strip() if isinstance(value, int) and not isinstance(value, bool) else value
        )

    @field_validator("permits", mode="before")
    @classmethod
    def _split_permits(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.replace("|", ";").split(";") if p.strip())
        return value


@dataclass(slots=True, frozen=True, kw_only=True)
class Vessel:
    """A whitelisted vessel. The owner is kept only as a salted hash: it names a person."""

    mmsi: str
    name: str
    owner_hash: str
    home_port: str
    vessel_type: str
    permits: tuple[str, ...]


@dataclass(slots=True, frozen=True, eq=False, kw_only=True)
class Zone:
    id: str
    kind: str
    name: str
    tags: GridTags
    allowed_mmsi: frozenset[str]
    geometry: BaseGeometry
    area: float

    def contains(self, lat: float, lon: float) -> bool:
        """Point-in-polygon, boundary included; the geometry is prepared at load."""
        return bool(shapely.intersects_xy(self.geometry, lon, lat))


class ZoneSet:
    """Zones with an STRtree over their bounding boxes; lookups test prepared geometries."""

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self.zones: tuple[Zone, ...] = tuple(zones)
        self.by_id = {z.id: z for z in self.zones}
        for zone in self.zones:
            shapely.prepare(zone.geometry)
        self._tree = shapely.STRtree([z.geometry for z in self.zones])
        # (zone, min_x, min_y, max_x, max_y, exact): a rectangle's bounding box is the rectangle.
        self._boxes = [
            (z, *z.geometry.bounds, bool(z.geometry.equals(shapely.box(*z.geometry.bounds))))
            for z in self.zones
        ]

    def at(self, lat: float, lon: float) -> list[Zone]:
        return list(self.lookup(lat, lon)) if self.zones else []

    def lookup(self, lat: float, lon: float) -> tuple[Zone, ...]:
        """Zones containing the point, in load order. A few zones: bounding boxes in Python
        (exact for rectangles, the usual sea-grid cell); many: the STRtree."""
        if len(self._boxes) > SCAN_ZONES:
            candidates = self._tree.query(shapely.Point(lon, lat))
            zones = self.zones
            return tuple([zones[i] for i in sorted(candidates) if zones[i].contains(lat, lon)])
        return tuple(
            [
                zone
                for zone, min_x, min_y, max_x, max_y, exact in self._boxes
                if min_x <= lon <= max_x
                and min_y <= lat <= max_y
                and (exact or zone.contains(lat, lon))
            ]
        )

    def sea_grid_at(self, lat: float, lon: float) -> Zone | None:
        """The smallest (most specific) sea-grid zone containing the position."""
        return smallest_sea_grid(self.lookup(lat, lon))


def smallest_sea_grid(zones: Iterable[Zone]) -> Zone | None:
    """The smallest sea-grid zone among `zones` (the first of equally small ones)."""
    smallest = None
    for zone in zones:
        if zone.kind == "sea_grid" and (smallest is None or zone.area < smallest.area):
            smallest = zone
    return smallest


class _ZoneProps(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    id: str = Field(min_length=1)
    kind: Literal["sea_grid", "restricted", "anchorage"]
    name: str = ""
    grid: str = ""
    micro_grid: str = ""
    police_grid: str = ""
    allowed_mmsi: tuple[str, ...] = ()

    @field_validator("id", "grid", "micro_grid", "police_grid", "name", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("allowed_mmsi", mode="before")
    @classmethod
    def _mmsi_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value)
        return value

    @field_validator("allowed_mmsi")
    @classmethod
    def _nine_digits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not (len(v) == 9 and v.isdigit())]
        if bad:
            raise ValueError(f"allowed_mmsi entries must be 9 digits, got {bad[:3]}")
        return value


def _describe(exc: ValidationError) -> str:
    """Validation errors without the offending input values (they may name a person)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


def _vessel(entry: VesselEntry, hash_salt: str) -> Vessel:
    owner_hash = salted_hash(hash_salt, entry.owner) if entry.owner else ""
    return Vessel(
        mmsi=entry.mmsi,
        name=entry.name,
        owner_hash=owner_hash,
        home_port=entry.home_port,
        vessel_type=entry.type,
        permits=entry.permits,
    )


def parse_vessel(raw: Any, hash_salt: str) -> Vessel:
    """One pushed vessel dict → Vessel; ConfigError on a bad entry. A scrubbed push carries
    `owner_hash` (see `scrub_vessel`) instead of the owner."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"vessel entry must be an object, got {type(raw).__name__}")
    fields = dict(raw)
    owner_hash = fields.pop("owner_hash", None)
    if owner_hash is not None and not (
        isinstance(owner_hash, str) and (owner_hash == "" or _OWNER_HASH.fullmatch(owner_hash))
    ):
        raise ConfigError("bad vessel entry: owner_hash must be 16 lowercase hex digits or empty")
    try:
        vessel = _vessel(VesselEntry.model_validate(fields), hash_salt)
    except ValidationError as exc:
        raise ConfigError(f"bad vessel entry: {_describe(exc)}") from exc
    if owner_hash and not vessel.owner_hash:
        vessel = dataclasses.replace(vessel, owner_hash=owner_hash)
    return vessel


def scrub_vessel(raw: Any, hash_salt: str) -> Any:
    """A pushed vessel as it may be kept: the owner replaced by its salted hash, as the CSV
    reader does (the vessel's own name is not personal and stays)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("owner"), str):
        return raw  # no owner, or one of the wrong type that `parse_vessel` refuses
    fields = {k: v for k, v in raw.items() if k != "owner"}
    owner = raw["owner"].strip()
    fields["owner_hash"] = salted_hash(hash_salt, owner) if owner else ""  # "": owner cleared
    return fields


def scrub_zones(doc: Any) -> Any:
    """Zones as they may be kept: only the feature properties the hub reads (`_ZoneProps`)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("features"), list):
        return doc
    features = []
    for feature in doc["features"]:
        props = feature.get("properties") if isinstance(feature, Mapping) else None
        if isinstance(props, Mapping):
            kept = {k: v for k, v in props.items() if k in _ZoneProps.model_fields}
            feature = {**feature, "properties": kept}
        features.append(feature)
    return {**doc, "features": features}


def parse_vessels_csv(text: str, hash_salt: str, label: str) -> tuple[dict[str, Vessel], list[str]]:
    """Whitelist CSV text → (vessels by MMSI, problems). Bad rows are skipped, never fatal."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "mmsi" not in header:
        raise ConfigError(f"{label}: header must have an 'mmsi' column, got {header}")
    reader.fieldnames = header
    vessels: dict[str, Vessel] = {}
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        known = {k: v for k, v in row.items() if k in CSV_COLUMNS and v is not None}
        try:
            vessel = _vessel(VesselEntry.model_validate(known), hash_salt)
        except ValidationError as exc:
            problems.append(f"{label} line {line}: {_describe(exc)}")
            continue
        if vessel.mmsi in vessels:
            problems.append(f"{label} line {line}: duplicate mmsi {vessel.mmsi}, row skipped")
            continue
        vessels[vessel.mmsi] = vessel
    return vessels, problems


def _zone(feature: Any, index: int, sea_grid_id: str) -> Zone:
    where = f"feature {index}"
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise ConfigError(f"{where}: not a GeoJSON Feature")
    try:
        props = _ZoneProps.model_validate(feature.get("properties") or {})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from exc
    where = f"feature {index} (id {props.id!r})"
    try:
        geometry = shape(feature.get("geometry"))
    except (ShapelyError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(f"{where}: bad geometry: {exc}") from exc
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or geometry.is_empty:
        raise ConfigError(f"{where}: geometry must be a non-empty Polygon or MultiPolygon")
    if not shapely.is_valid(geometry):
        raise ConfigError(f"{where}: invalid polygon: {shapely.is_valid_reason(geometry)}")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ConfigError(f"{where}: coordinates must be [lon, lat] in degrees")
    grid = props.grid or (sea_grid_id if props.kind == "sea_grid" else "")
    tags = GridTags(grid, props.micro_grid, props.police_grid)
    allowed = frozenset(props.allowed_mmsi)
    return Zone(
        id=props.id,
        kind=props.kind,
        name=props.name,
        tags=tags,
        allowed_mmsi=allowed,
        geometry=geometry,
        area=geometry.area,
    )


def parse_zones(doc: Any, sea_grid_id: str) -> ZoneSet:
    """A GeoJSON FeatureCollection (dict) → ZoneSet; ConfigError names the bad feature."""
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise ConfigError("zones must be a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list) or len(features) > MAX_PUSHED_ITEMS:
        raise ConfigError(f"zones: 'features' must be a list of at most {MAX_PUSHED_ITEMS}")
    zones = [_zone(f, i, sea_grid_id) for i, f in enumerate(features)]
    seen: set[str] = set()
    for zone in zones:
        if zone.id in seen:
            raise ConfigError(f"zones: duplicate zone id {zone.id!r}")
        seen.add(zone.id)
    return ZoneSet(zones)


def _decode(payload: Any) -> Any:
    if isinstance(payload, bytes | bytearray | str):
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"payload is not JSON: {exc}") from exc
    return payload


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class MaritimeRegistry:
    """Vessel whitelist and zones; swapped whole on reload or push so lookups never see a mix."""

    name = "maritime"
    record_types = (VesselPosition, VesselStatic)  # what `tag` changes; others pass through

    def __init__(self, cfg: MaritimeRegistryConfig, hash_salt: str = "") -> None:
        self.cfg = cfg
        self._salt = hash_salt
        self._vessels: dict[str, Vessel] = {}
        self._zones = ZoneSet()
        self._stamps: dict[Path, tuple[int, int] | None] = {}
        self._last_grid: OrderedDict[str, GridTags] = OrderedDict()
        self.problems: list[str] = []  # from the last vessel CSV load: bad rows, skipped
        for path in (cfg.vessels_csv, cfg.zones_geojson):
            if path is not None and not path.is_file():
                raise ConfigError(f"maritime registry file not found: {path}")
        if cfg.vessels_csv is not None:
            self._load_vessels(cfg.vessels_csv)
        if cfg.zones_geojson is not None:
            self._load_zones(cfg.zones_geojson)

    # --- queries for rules and the normaliser

    @property
    def zones(self) -> tuple[Zone, ...]:
        return self._zones.zones

    @property
    def vessel_count(self) -> int:
        return len(self._vessels)

    def is_registered(self, mmsi: str) -> bool:
        return mmsi in self._vessels

    def vessel(self, mmsi: str) -> Vessel | None:
        return self._vessels.get(mmsi)

    def zone(self, zone_id: str) -> Zone | None:
        return self._zones.by_id.get(zone_id)

    def zones_at(self, lat: float, lon: float) -> list[Zone]:
        return self._zones.at(lat, lon)

    def sea_grid_at(self, lat: float, lon: float) -> Zone | None:
        return self._zones.sea_grid_at(lat, lon)

    # --- RegistryPart

    def tag(self, record: Record) -> Record:
        if isinstance(record, VesselPosition):
            return self._tag_position(record)
        if isinstance(record, VesselStatic):
            tags = self._last_grid.get(record.mmsi)
            if tags is not None and tags != record.grid:
                return dataclasses.replace(record, grid=tags)
        return record

    def observe(self, record: Record) -> tuple[Record, tuple[Zone, ...], Zone | None]:
        """The tagged record, the zones its position is in and its sea grid: one lookup."""
        if not isinstance(record, VesselPosition) or record.lat is None or record.lon is None:
            return self.tag(record), (), None
        zones = self._zones.lookup(record.lat, record.lon)
        sea = smallest_sea_grid(zones)
        return self._tag_position(record, sea, looked_up=True), zones, sea

    def _tag_position(
        self, record: VesselPosition, sea: Zone | None = None, looked_up: bool = False
    ) -> VesselPosition:
        registered = record.mmsi in self._vessels
        tags = NO_GRID
        if record.lat is not None and record.lon is not None:
            if not looked_up:
                sea = self._zones.sea_grid_at(record.lat, record.lon)
            tags = sea.tags if sea is not None else NO_GRID
            self._remember_grid(record.mmsi, tags)
        if registered == record.registered and tags == record.grid:
            return record
        r = record  # the constructor directly: dataclasses.replace costs 3x on every report
        return VesselPosition(
            mmsi=r.mmsi, time_ns=r.time_ns, lat=r.lat, lon=r.lon, sog_kn=r.sog_kn,
            cog_deg=r.cog_deg, heading_deg=r.heading_deg, nav_status=r.nav_status,
            msg_type=r.msg_type, ais_class=r.ais_class, registered=registered, grid=tags,
            source=r.source,
        )  # fmt: skip

    def _remember_grid(self, mmsi: str, tags: GridTags) -> None:
        if self.cfg.grid_memory_vessels == 0:
            return
        self._last_grid[mmsi] = tags
        self._last_grid.move_to_end(mmsi)
        if len(self._last_grid) > self.cfg.grid_memory_vessels:
            self._last_grid.popitem(last=False)

    def reload_if_changed(self) -> bool:
        changed = False
        if self.cfg.vessels_csv is not None:
            changed |= self._reload(self.cfg.vessels_csv, self._load_vessels)
        if self.cfg.zones_geojson is not None:
            changed |= self._reload(self.cfg.zones_geojson, self._load_zones)
        return changed

    def apply_update(self, kind: str, payload: Any) -> None:
        """Platform push: "vessels" (full list), "vessel" (one upsert or delete), "zones"."""
        payload = _decode(payload)
        if kind == "vessels":
            self._vessels = self._vessel_list(payload)
        elif kind == "vessel":
            self._vessels = self._vessel_upsert(payload)
        elif kind == "zones":
            self._zones = parse_zones(payload, self.cfg.sea_grid_id)
        else:
            raise ConfigError(f"unknown maritime registry update {kind!r} (vessels, vessel, zones)")
        log.info("maritime registry %s updated by platform push", kind)

    def scrub(self, kind: str, payload: Any) -> Any:
        """Owners hashed (as the CSV reader does), unread zone properties dropped."""
        try:
            payload = _decode(payload)
        except ConfigError:
            return payload  # `apply_update` refuses it
        if kind == "vessel":
            return scrub_vessel(payload, self._salt)
        if kind == "vessels":
            wrapped = isinstance(payload, Mapping) and isinstance(payload.get("vessels"), list)
            items = payload["vessels"] if wrapped else payload
            if not isinstance(items, list):
                return payload
            scrubbed = [scrub_vessel(v, self._salt) for v in items]
            return {**payload, "vessels": scrubbed} if wrapped else scrubbed
        if kind == "zones":
            return scrub_zones(payload)
        return payload

    # --- internals

    def _vessel_list(self, payload: Any) -> dict[str, Vessel]:
        if isinstance(payload, Mapping) and "vessels" in payload:
            payload = payload["vessels"]
        if not isinstance(payload, list) or len(payload) > MAX_PUSHED_ITEMS:
            raise ConfigError(
                f"vessels update must be a list of at most {MAX_PUSHED_ITEMS} objects"
            )
        vessels: dict[str, Vessel] = {}
        for i, raw in enumerate(payload):
            try:
                vessel = parse_vessel(raw, self._salt)
            except ConfigError as exc:
                raise ConfigError(f"vessels[{i}]: {exc}") from exc
            vessels[vessel.mmsi] = vessel
        return vessels

    def _vessel_upsert(self, payload: Any) -> dict[str, Vessel]:
        if not isinstance(payload, Mapping):
            raise ConfigError("vessel update must be an object with an 'mmsi'")
        vessels = dict(self._vessels)
        fields = {k: v for k, v in payload.items() if k not in ("deleted", "delete")}
        if payload.get("deleted") is True or payload.get("delete") is True:
            mmsi = str(fields.get("mmsi", "")).strip()
            if not (len(mmsi) == 9 and mmsi.isdigit()):
                raise ConfigError("vessel delete needs a 9-digit 'mmsi'")
            vessels.pop(mmsi, None)
            return vessels
        vessel = parse_vessel(fields, self._salt)
        current = vessels.get(vessel.mmsi)
        if current is not None:  # a partial push keeps the fields it does not mention
            kept: dict[str, Any] = {"name": current.name, "home_port": current.home_port}
            kept |= {"type": current.vessel_type, "permits": current.permits}
            vessel = parse_vessel(kept | fields, self._salt)
            if "owner" not in fields and "owner_hash" not in fields:
                vessel = dataclasses.replace(vessel, owner_hash=current.owner_hash)
        vessels[vessel.mmsi] = vessel
        return vessels

    def _reload(self, path: Path, load: Callable[[Path], None]) -> bool:
        stamp = _stamp(path)
        if stamp == self._stamps.get(path):
            return False
        self._stamps[path] = stamp
        if stamp is None:
            log.warning("maritime registry file %s disappeared; keeping the loaded copy", path)
            return False
        try:
            load(path)
        except ConfigError as exc:
            log.error("maritime registry reload failed, keeping the loaded copy: %s", exc)
            return False
        return True

    def _load_vessels(self, path: Path) -> None:
        self._stamps[path] = _stamp(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read vessel whitelist {path}: {exc}") from exc
        vessels, problems = parse_vessels_csv(text, self._salt, path.name)
        self._vessels, self.problems = vessels, problems
        if problems:
            shown = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
            log.warning(
                "vessel whitelist %s: %d vessels loaded, %d bad rows skipped: %s",
                path, len(vessels), len(problems), shown,
            )  # fmt: skip
        else:
            log.info("vessel whitelist %s: %d vessels loaded", path, len(vessels))

    def _load_zones(self, path: Path) -> None:
        self._stamps[path] = _stamp(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read zones {path}: {exc}") from exc
        try:
            self._zones = parse_zones(doc, self.cfg.sea_grid_id)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        log.info("zones %s: %d zones loaded", path, len(self._zones.zones))
