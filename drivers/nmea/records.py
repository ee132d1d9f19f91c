"""Builders of the two records the AIS decoder makes per message, without the dataclass __init__.

A frozen dataclass's __init__ sets every field through `object.__setattr__` (plain assignment is
what the frozen class forbids): 2.7 µs for VesselPosition's 13 fields on the bench machine, more
than reading the payload. These builders fill the same slots through the slots' own descriptors
(1.2 µs) and give the same object: same type, same fields, the dataclass' defaults. They take
every field by keyword, like the classes. A field added to a record later is filled with its
default; tests/unit/test_nmea_records.py checks each builder against the class constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hub.records import NO_GRID, GridTags, VesselPosition, VesselStatic

_Setter = Callable[[Any, Any], None]


def _slots(cls: type, names: tuple[str, ...]) -> tuple[tuple[_Setter, ...], tuple[Any, ...]]:
    """(setters of `names` in order, (setter, default) of every other field)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if hasattr(cls, "__post_init__") or not set(names) <= fields.keys():
        raise TypeError(f"{cls.__name__} changed: update drivers/nmea/records.py")
    setters = tuple(getattr(cls, name).__set__ for name in names)
    others = []
    for name, field in fields.items():
        if name in names:
            continue
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{name} has no default: update drivers/nmea/records.py")
        others.append((getattr(cls, name).__set__, field.default))
    return setters, tuple(others)


_new = object.__new__
_POSITION_FIELDS = ("mmsi", "time_ns", "lat", "lon", "sog_kn", "cog_deg", "heading_deg",
                    "nav_status", "msg_type", "ais_class", "registered", "grid", "source")  # fmt: skip
(_p_mmsi, _p_time, _p_lat, _p_lon, _p_sog, _p_cog, _p_heading, _p_status, _p_type, _p_class,
 _p_registered, _p_grid, _p_source), _POSITION_OTHERS = _slots(VesselPosition, _POSITION_FIELDS)  # fmt: skip
_STATIC_FIELDS = ("mmsi", "time_ns", "name", "callsign", "imo", "ship_type", "length_m", "beam_m",
                  "msg_type", "grid", "source")  # fmt: skip
(_s_mmsi, _s_time, _s_name, _s_callsign, _s_imo, _s_ship_type, _s_length, _s_beam, _s_type,
 _s_grid, _s_source), _STATIC_OTHERS = _slots(VesselStatic, _STATIC_FIELDS)  # fmt: skip


def vessel_position(
    *,
    mmsi: str,
    time_ns: int,
    lat: float | None = None,
    lon: float | None = None,
    sog_kn: float | None = None,
    cog_deg: float | None = None,
    heading_deg: float | None = None,
    nav_status: int | None = None,
    msg_type: int = 0,
    ais_class: str = "",
    registered: bool = False,
    grid: GridTags = NO_GRID,
    source: str = "",
) -> VesselPosition:
    """The same VesselPosition as `VesselPosition(...)` with these keywords."""
    record: VesselPosition = _new(VesselPosition)
    _p_mmsi(record, mmsi)
    _p_time(record, time_ns)
    _p_lat(record, lat)
    _p_lon(record, lon)
    _p_sog(record, sog_kn)
    _p_cog(record, cog_deg)
    _p_heading(record, heading_deg)
    _p_status(record, nav_status)
    _p_type(record, msg_type)
    _p_class(record, ais_class)
    _p_registered(record, registered)
    _p_grid(record, grid)
    _p_source(record, source)
    for setter, default in _POSITION_OTHERS:
        setter(record, default)
    return record


def vessel_static(
    *,
    mmsi: str,
    time_ns: int,
    name: str | None = None,
    callsign: str | None = None,
    imo: int | None = None,
    ship_type: int | None = None,
    length_m: float | None = None,
    beam_m: float | None = None,
    msg_type: int = 0,
    grid: GridTags = NO_GRID,
    source: str = "",
) -> VesselStatic:
    """The same VesselStatic as `VesselStatic(...)` with these keywords."""
    record: VesselStatic = _new(VesselStatic)
    _s_mmsi(record, mmsi)
    _s_time(record, time_ns)
    _s_name(record, name)
    _s_callsign(record, callsign)
    _s_imo(record, imo)
    _s_ship_type(record, ship_type)
    _s_length(record, length_m)
    _s_beam(record, beam_m)
    _s_type(record, msg_type)
    _s_grid(record, grid)
    _s_source(record, source)
    for setter, default in _STATIC_OTHERS:
        setter(record, default)
    return record
