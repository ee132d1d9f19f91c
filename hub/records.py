"""Normalised hub records and their InfluxDB line-protocol form.

Every record carries the gateway `site` and the grid tags (grid, micro_grid, police_grid) that the
normaliser fills from the registries; timestamps are UTC nanoseconds. Fields that a device did not
report are None and are left out of the point, never written as zero.
"""

from __future__ import annotations

import enum
import math
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, NamedTuple

FieldValue = float | int | bool | str


@dataclass(slots=True, frozen=True)
class GridTags:
    grid: str = ""
    micro_grid: str = ""
    police_grid: str = ""


NO_GRID = GridTags()


class MeterAlarm(enum.IntFlag):
    """Hub-wide meaning of WaterMeterReading.alarm_bits; drivers map device bits onto these."""

    FAULT = 0x01
    LOW_BATTERY = 0x02
    TAMPER = 0x04
    REVERSE_FLOW = 0x08
    LEAK = 0x10
    VALVE_CLOSED = 0x20
    EMPTY_PIPE = 0x40


@dataclass(slots=True, frozen=True, kw_only=True)
class WaterMeterReading:
    measurement: ClassVar[str] = "water_meter"
    meter_id: str
    time_ns: int
    total_m3: float | None = None
    flow_m3h: float | None = None
    battery_v: float | None = None
    alarm_bits: int | None = None
    reverse_flow: bool | None = None
    household: str = ""
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {"meter_id": self.meter_id, "household": self.household}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "total_m3": self.total_m3,
            "flow_m3h": self.flow_m3h,
            "battery_v": self.battery_v,
            "alarm_bits": self.alarm_bits,
            "reverse_flow": self.reverse_flow,
        }


# "unknown": a vendor code no table maps; stored with the raw codes so nothing is lost.
DOOR_EVENTS = ("open", "forced", "held_open", "denied", "alarm", "closed", "unknown")


@dataclass(slots=True, frozen=True, kw_only=True)
class DoorEvent:
    measurement: ClassVar[str] = "door_event"
    door_id: str
    time_ns: int
    event: str  # one of DOOR_EVENTS
    credential_hash: str = ""  # salted hash; the raw card number never leaves the driver
    building: str = ""
    grid: GridTags = NO_GRID
    source: str = ""
    vendor_major: int | None = None  # raw vendor event codes (Hikvision major/minor), if any
    vendor_minor: int | None = None

    def tags(self) -> dict[str, str]:
        return {"door_id": self.door_id, "event": self.event, "building": self.building}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "count": 1,
            "credential_hash": self.credential_hash or None,
            "vendor_major": self.vendor_major,
            "vendor_minor": self.vendor_minor,
        }


@dataclass(slots=True, frozen=True, kw_only=True)
class VesselPosition:
    measurement: ClassVar[str] = "vessel_position"
    mmsi: str
    time_ns: int
    lat: float | None = None
    lon: float | None = None
    sog_kn: float | None = None
    cog_deg: float | None = None
    heading_deg: float | None = None
    nav_status: int | None = None
    msg_type: int = 0
    ais_class: str = ""  # "A", "B", "AtoN", "base"
    registered: bool = False
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {
            "mmsi": self.mmsi,
            "ais_class": self.ais_class,
            "registered": "true" if self.registered else "false",
        }

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "sog_kn": self.sog_kn,
            "cog_deg": self.cog_deg,
            "heading_deg": self.heading_deg,
            "nav_status": self.nav_status,
            "msg_type": self.msg_type,
        }


@dataclass(slots=True, frozen=True, kw_only=True)
class VesselStatic:
    measurement: ClassVar[str] = "vessel_static"
    mmsi: str
    time_ns: int
    name: str | None = None
    callsign: str | None = None
    imo: int | None = None
    ship_type: int | None = None
    length_m: float | None = None
    beam_m: float | None = None
    msg_type: int = 0
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {"mmsi": self.mmsi}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "name": self.name,
            "callsign": self.callsign,
            "imo": self.imo,
            "ship_type": self.ship_type,
            "length_m": self.length_m,
            "beam_m": self.beam_m,
            "msg_type": self.msg_type,
        }


@dataclass(slots=True, frozen=True, kw_only=True)
class AisBaseStation:
    """AIS type 4 base station report: a shore station's surveyed position and its UTC clock.

    A record of its own, not a VesselPosition, so that vessel rules never see a base station.
    """

    measurement: ClassVar[str] = "ais_base_station"
    mmsi: str
    time_ns: int
    lat: float | None = None
    lon: float | None = None
    station_utc_s: int | None = None  # the station's reported UTC as Unix seconds
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {"mmsi": self.mmsi}

    def fields(self) -> dict[str, FieldValue | None]:
        return {"lat": self.lat, "lon": self.lon, "station_utc_s": self.station_utc_s}


@dataclass(slots=True, frozen=True, kw_only=True)
class SarAircraftPosition:
    """AIS type 9 search-and-rescue aircraft position; never a vessel (rules do not see it)."""

    measurement: ClassVar[str] = "sar_aircraft"
    mmsi: str
    time_ns: int
    lat: float | None = None
    lon: float | None = None
    altitude_m: float | None = None  # 4094 means 4094 m or higher
    sog_kn: float | None = None  # whole knots; 1022 means 1022 kn or faster
    cog_deg: float | None = None
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {"mmsi": self.mmsi}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "altitude_m": self.altitude_m,
            "sog_kn": self.sog_kn,
            "cog_deg": self.cog_deg,
        }


@dataclass(slots=True, frozen=True, kw_only=True)
class GatewayFix:
    """The gateway's own position/heading from $-sentences (GGA, RMC, VTG, HDT)."""

    measurement: ClassVar[str] = "gateway_fix"
    time_ns: int
    lat: float | None = None
    lon: float | None = None
    sog_kn: float | None = None
    cog_deg: float | None = None
    heading_deg: float | None = None
    sentence: str = ""
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {"sentence": self.sentence}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "sog_kn": self.sog_kn,
            "cog_deg": self.cog_deg,
            "heading_deg": self.heading_deg,
        }


@dataclass(slots=True, frozen=True, kw_only=True)
class HealthSample:
    measurement: ClassVar[str] = "hub_health"
    time_ns: int
    msgs: int
    errors: int
    lag_s: float = 0.0
    outbox_rows: int = 0
    dropped: int = 0
    grid: GridTags = NO_GRID
    source: str = ""

    def tags(self) -> dict[str, str]:
        return {}

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "msgs": self.msgs,
            "errors": self.errors,
            "lag_s": self.lag_s,
            "outbox_rows": self.outbox_rows,
            "dropped": self.dropped,
        }


Record = (
    WaterMeterReading
    | DoorEvent
    | VesselPosition
    | VesselStatic
    | AisBaseStation
    | SarAircraftPosition
    | GatewayFix
    | HealthSample
)
RECORD_TYPES: tuple[type, ...] = (
    WaterMeterReading,
    DoorEvent,
    VesselPosition,
    VesselStatic,
    AisBaseStation,
    SarAircraftPosition,
    GatewayFix,
    HealthSample,
)


@dataclass(slots=True, frozen=True, kw_only=True)
class Point:
    """One InfluxDB point, already tagged; what the outbox stores as line protocol."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


def record_point(record: Record, site: str) -> Point:
    tags = {"site": site, "source": record.source}
    grid = record.grid
    if grid.grid:
        tags["grid"] = grid.grid
    if grid.micro_grid:
        tags["micro_grid"] = grid.micro_grid
    if grid.police_grid:
        tags["police_grid"] = grid.police_grid
    tags.update(record.tags())
    fields = {
        k: v
        for k, v in record.fields().items()
        if v is not None and not (isinstance(v, float) and not math.isfinite(v))
    }
    return Point(measurement=record.measurement, tags=tags, fields=fields, time_ns=record.time_ns)


# --- line protocol (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/)
#
# InfluxDB's parser (models/points.go, the same in 1.x and 2.x) unescapes only `\,` `\ ` `\=` in
# tag keys and values (`\,` `\ ` in measurement names) and never `\\`; a key or value that ends in
# a backslash is refused ("invalid tag format"). So a backslash stays as it is, except where it
# would escape the next character or end the text: there it is written as U+FF3C (＼), which
# InfluxDB stores unchanged. A newline cannot appear in a key at all and is written as `\n`; a
# measurement starting with `#` would make the line a comment, so that `#` is written as U+FF03.
# String field values escape `\` and `"`; a newline inside the quotes is stored as it is.

_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_TAG_ESC = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n"})
# Measurements and field keys are unescaped one character at a time, `\"` and `\=` included.
_MEAS_BACKSLASH = re.compile(r"\\(?=[,= \"\n]|\Z)")
_TAG_BACKSLASH = re.compile(r"\\(?=[,= \n]|\Z)")
WIDE_BACKSLASH = "\uff3c"
WIDE_HASH = "\uff03"
_CACHE_LIMIT = 65_536  # distinct tag values (MMSIs, meter ids ...) remembered escaped
_tag_cache: dict[str, str] = {}
_key_cache: dict[str, str] = {}  # field key -> "escaped_key="
_meas_cache: dict[str, str] = {}
_GRID_KEYS = ("site", "source", "grid", "micro_grid", "police_grid")
_tag_layouts: dict[tuple[type, tuple[str, ...]], tuple[tuple[str, str], ...]] = {}


def escape_tag(text: str) -> str:
    """A tag key or value (or field key) as line protocol writes it."""
    if "\\" in text:
        text = _TAG_BACKSLASH.sub(WIDE_BACKSLASH, text)
    return text.translate(_TAG_ESC)


def escape_field_key(key: str) -> str:
    if "\\" in key:
        key = _MEAS_BACKSLASH.sub(WIDE_BACKSLASH, key)
    return key.translate(_TAG_ESC)


def stored_field_key(key: str) -> str:
    """What InfluxDB stores for field key `key` written by this encoder."""
    if "\\" in key:
        key = _MEAS_BACKSLASH.sub(WIDE_BACKSLASH, key)
    return key.replace("\n", "\\n")


def escape_measurement(name: str) -> str:
    if "\\" in name:
        name = _MEAS_BACKSLASH.sub(WIDE_BACKSLASH, name)
    if name.startswith("#"):  # a line starting with '#' is a comment: the point would vanish
        name = WIDE_HASH + name[1:]
    return name.translate(_MEAS_ESC)


def stored_measurement(name: str) -> str:
    """What InfluxDB stores for measurement `name` written by this encoder."""
    if "\\" in name:
        name = _MEAS_BACKSLASH.sub(WIDE_BACKSLASH, name)
    if name.startswith("#"):
        name = WIDE_HASH + name[1:]
    return name.replace("\n", "\\n")


def stored_tag(text: str) -> str:
    """What InfluxDB stores (and a query returns) for tag text `text` written by this encoder."""
    if "\\" in text:
        text = _TAG_BACKSLASH.sub(WIDE_BACKSLASH, text)
    return text.replace("\n", "\\n")


def _tag_text(value: str) -> str:
    """A tag key or value escaped; memoised, since the same few thousand repeat endlessly."""
    escaped = _tag_cache.get(value)
    if escaped is None:
        if len(_tag_cache) >= _CACHE_LIMIT:
            _tag_cache.clear()
        escaped = escape_tag(value)
        # Mostly nothing to escape: keep the value itself, not a second copy (one per MMSI).
        escaped = _tag_cache[value] = value if escaped == value else escaped
    return escaped


def _key_prefix(key: str) -> str:
    prefix = _key_cache.get(key)
    if prefix is None:
        if len(_key_cache) >= _CACHE_LIMIT:
            _key_cache.clear()
        prefix = _key_cache[key] = f"{escape_field_key(key)}="
    return prefix


def _measurement(name: str) -> str:
    escaped = _meas_cache.get(name)
    if escaped is None:
        if len(_meas_cache) >= _CACHE_LIMIT:
            _meas_cache.clear()
        escaped = _meas_cache[name] = escape_measurement(name)
    return escaped


def _string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value_text(value: object) -> str | None:
    """A field value as line protocol writes it; None when it is left out (None, NaN, inf)."""
    kind = type(value)
    if kind is float:
        if value - value != 0:  # type: ignore[operator]  # NaN or +-inf
            return None
        return repr(value)
    if kind is int:
        return f"{value}i"
    if kind is str:
        return _string_field(value)  # type: ignore[arg-type]
    if kind is bool or isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return None
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    return _string_field(str(value))


def _fields_text(fields: Mapping[str, FieldValue | None]) -> str:
    """`k=v,...` without None and non-finite floats."""
    parts = []
    for key, value in fields.items():
        text = _value_text(value)
        if text is not None:
            parts.append(_key_prefix(key) + text)
    return ",".join(parts)


def _tag_layout(record: Record, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, ",key=") in line order for one record class and its tag keys (sorted)."""
    layout_key = (type(record), keys)
    layout = _tag_layouts.get(layout_key)
    if layout is None:
        names = sorted(set(_GRID_KEYS) | set(keys))
        layout = _tag_layouts[layout_key] = tuple((k, f",{_tag_text(k)}=") for k in names)
    return layout


def _record_series(record: Record, site: str) -> str:
    """`measurement,tags` of a record: the series part of its line."""
    own = record.tags()
    grid = record.grid
    values = {
        "site": site,
        "source": record.source,
        "grid": grid.grid,
        "micro_grid": grid.micro_grid,
        "police_grid": grid.police_grid,
    }
    values.update(own)
    tags = "".join(
        prefix + _tag_text(value)
        for key, prefix in _tag_layout(record, tuple(own))
        if (value := values[key]) != ""
    )
    return _measurement(record.measurement) + tags


def _point_series(point: Point) -> str:
    tags = "".join(
        f",{_tag_text(k)}={_tag_text(v)}" for k, v in sorted(point.tags.items()) if v != ""
    )
    return _measurement(point.measurement) + tags


class EncodedPoint(NamedTuple):
    """One line of line protocol and the timestamp it carries (never parsed back out); a tuple
    because one is built per record on the ingest path."""

    line: bytes
    time_ns: int


def _encode(series: str, fields: str, time_ns: int, times: UniqueTimes | None) -> EncodedPoint:
    if not fields:
        raise ValueError(f"point {series.split(',', 1)[0]} has no fields")
    if times is not None and time_ns % 1000 == 0:
        # Only coarse (whole-microsecond or coarser) times can clash: a time with nanosecond
        # digits comes from the hub's own clock or an offset already made it unique.
        time_ns = times.assign(series, fields, time_ns)
    return EncodedPoint(f"{series} {fields} {time_ns}".encode(), time_ns)


def encode_record_generic(
    record: Record, site: str, times: UniqueTimes | None = None
) -> EncodedPoint:
    """encode_record for any record, one field at a time: the reference of the compiled encoders
    and the path of record classes outside RECORD_TYPES."""
    return _encode(
        _record_series(record, site), _fields_text(record.fields()), record.time_ns, times
    )


def encode_point(point: Point, times: UniqueTimes | None = None) -> EncodedPoint:
    return _encode(_point_series(point), _fields_text(point.fields), point.time_ns, times)


def record_line(record: Record, site: str) -> str:
    return encode_record(record, site).line.decode()


def to_line(point: Point) -> str:
    """Encode a point as one line of InfluxDB line protocol (empty tag values are omitted)."""
    return encode_point(point).line.decode()


RecordEncoder = Callable[[Record, str, "UniqueTimes | None"], EncodedPoint]
_encoders: dict[type, RecordEncoder] = {}


def encode_record(record: Record, site: str, times: UniqueTimes | None = None) -> EncodedPoint:
    """The record as one line (tags sorted, empty tags and None/NaN/inf fields left out).

    With `times`, a second point of the same series and timestamp gets a distinct timestamp
    (see UniqueTimes). Raises ValueError when no field is left to store."""
    encode = _encoders.get(type(record))
    if encode is None:
        encode = record_encoder(type(record), record)
    return encode(record, site, times)


def record_encoder(kind: type, sample: Record) -> RecordEncoder:
    """The encoder of one record class, compiled on its first record (`sample`).

    The tag and field keys of a class come from its tags()/fields() (the same keys in the same
    order for every record of the class), so the compiled code unpacks their values, writes the
    tags in their sorted order and each field by its type, with every key escaped once; it
    writes exactly what encode_record_generic writes. Nothing is remembered per series (an
    AIS fleet would cost ~270 bytes per vessel and grid cell for ~1 µs per record)."""
    if kind not in RECORD_TYPES:
        return encode_record_generic
    namespace: dict[str, object] = {
        "generic": encode_record_generic,
        "value_text": _value_text,
        "point": partial(tuple.__new__, EncodedPoint),
        "tag_text": _tag_text,
        "known": _tag_cache.get,  # escaped text is never empty; the cache is cleared, not replaced
    }
    source = _encoder_source(sample.measurement, tuple(sample.tags()), tuple(sample.fields()))
    exec(compile(source, f"<line-protocol encoder of {kind.__name__}>", "exec"), namespace)
    encode: RecordEncoder = namespace["encode"]  # type: ignore[assignment]
    _encoders[kind] = encode
    return encode


def _series_source(measurement: str, tag_keys: tuple[str, ...]) -> list[str]:
    """Source lines that build `line`: the measurement and the non-empty tags in key order."""
    where = {"site": "site", "source": "record.source", "grid": "grid.grid"}
    where |= {"micro_grid": "grid.micro_grid", "police_grid": "grid.police_grid"}
    where |= {key: f"t{i}" for i, key in enumerate(tag_keys)}
    lines = [f"    line = {escape_measurement(measurement)!r}"]
    for key in sorted(where):
        lines += [
            f"    if (text := {where[key]}) != '':",
            f"        line += {',' + escape_tag(key) + '='!r} + (known(text) or tag_text(text))",
        ]
    return lines


def _encoder_source(
    measurement: str, tag_keys: tuple[str, ...], field_keys: tuple[str, ...]
) -> str:
    """Python source of `encode(record, site, times)` for one layout of tag and field keys."""
    tags = "".join(f"t{i}, " for i in range(len(tag_keys)))
    values = [f"v{i}" for i in range(len(field_keys))]
    lines = [
        "def encode(record, site, times):",
        "    own = record.tags()",
        "    values = record.fields()",
        f"    if len(own) != {len(tag_keys)} or len(values) != {len(values)}:",
        "        return generic(record, site, times)",
        f"    ({tags}) = own.values()",
        "    grid = record.grid",
        *_series_source(measurement, tag_keys),
        f"    ({''.join(v + ', ' for v in values)}) = values.values()",
        '    out = ""',
    ]
    for value, key in zip(values, field_keys, strict=True):
        prefix = repr("," + escape_field_key(key) + "=")
        lines += [
            f"    if {value} is not None:",
            f"        if {value}.__class__ is float:",
            f"            if {value} - {value} == 0:",  # not NaN or +-inf
            f"                out += {prefix} + repr({value})",
            f"        elif {value}.__class__ is int:",
            f'            out += {prefix} + str({value}) + "i"',
            f"        elif (text := value_text({value})) is not None:",
            f"            out += {prefix} + text",
        ]
    lines += [
        "    if not out:",
        "        raise ValueError(f\"point {line.split(',', 1)[0]} has no fields\")",
        "    fields = out[1:]",
        "    time_ns = record.time_ns",
        "    if times is not None and time_ns % 1000 == 0:",
        "        time_ns = times.assign(line, fields, time_ns)",
        '    return point((f"{line} {fields} {time_ns}".encode(), time_ns))',
    ]
    return "\n".join(lines) + "\n"


class UniqueTimes:
    """Keeps stored points unique on (series, timestamp), as InfluxDB overwrites on a clash.

    Devices stamp events in whole seconds or milliseconds, so distinct events of one series
    (five card swipes at one door) can share a timestamp. The first point of a (series, time)
    keeps its time; a point with other content gets a sub-millisecond offset derived from its
    fields (CRC-32, like the AIS tag-block path), so a replay assigns the same times again. The
    same content seen again — a redelivery — keeps the time it got the first time, except that
    the n-th identical copy inside one batch is a distinct event. Remembers a bounded number of
    recent (series, time) pairs.
    """

    def __init__(self, limit: int = 16_384) -> None:
        self.limit = limit
        # hash((series, time)) -> (content, copy) of its first point, or, once a second point
        # came, {(content, copy): assigned time}. Hashes keep the memory small (no strings).
        self._seen: OrderedDict[int, tuple[int, int] | dict[tuple[int, int], int]] = OrderedDict()
        self._batch: dict[tuple[int, int], int] = {}

    @property
    def remembered(self) -> int:
        return len(self._seen)

    def new_batch(self) -> None:
        self._batch.clear()

    def assign(self, series: str, fields: str, time_ns: int) -> int:
        key = hash((series, time_ns))
        identity = (key, hash(fields))
        copy = self._batch.get(identity, 0)
        self._batch[identity] = copy + 1
        content = (identity[1], copy)
        seen = self._seen
        given = seen.get(key)
        if given is None:
            if len(seen) >= self.limit:
                seen.popitem(last=False)
            seen[key] = content
            return time_ns
        if isinstance(given, tuple):
            if given == content:
                return time_ns
            given = seen[key] = {given: time_ns}
        assigned = given.get(content)
        if assigned is None:
            taken = set(given.values())
            assigned = time_ns + (zlib.crc32(fields.encode()) + content[1]) % 1_000_000
            while assigned in taken:
                assigned += 1
            given[content] = assigned
        return assigned
