"""The decoder's record builders (drivers/nmea/records.py) give what the record constructors give."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.nmea.records import vessel_position, vessel_static
from hub.records import GridTags, VesselPosition, VesselStatic

BUILDERS: list[tuple[Callable[..., Any], type]] = [
    (vessel_position, VesselPosition),
    (vessel_static, VesselStatic),
]
optional_float = st.none() | st.floats(allow_nan=False)
optional_int = st.none() | st.integers(-(2**31), 2**31)
text = st.text(max_size=20)
grids = st.builds(GridTags, grid=text, micro_grid=text, police_grid=text)


@pytest.mark.parametrize(("builder", "cls"), BUILDERS, ids=lambda b: getattr(b, "__name__", ""))
def test_a_builder_takes_every_field_by_keyword_with_the_same_defaults(
    builder: Callable[..., Any], cls: type
) -> None:
    mine = inspect.signature(builder).parameters.values()
    theirs = list(inspect.signature(cls).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    assert len(theirs) == len(dataclasses.fields(cls))


@pytest.mark.parametrize(("builder", "cls"), BUILDERS, ids=lambda b: getattr(b, "__name__", ""))
def test_defaults_only_give_the_same_record(builder: Callable[..., Any], cls: type) -> None:
    mine, theirs = builder(mmsi="412000001", time_ns=1), cls(mmsi="412000001", time_ns=1)
    assert type(mine) is cls
    assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)
    assert (mine, hash(mine), repr(mine)) == (theirs, hash(theirs), repr(theirs))


@given(
    mmsi=text,
    time_ns=st.integers(0, 2**63),
    lat=optional_float,
    lon=optional_float,
    sog_kn=optional_float,
    cog_deg=optional_float,
    heading_deg=optional_float,
    nav_status=optional_int,
    msg_type=st.integers(0, 63),
    ais_class=st.sampled_from(["A", "B", "AtoN", "base", ""]),
    registered=st.booleans(),
    grid=grids,
    source=text,
)
def test_vessel_position_is_the_constructors_record(**fields: Any) -> None:
    assert_same(vessel_position(**fields), VesselPosition(**fields))


@given(
    mmsi=text,
    time_ns=st.integers(0, 2**63),
    name=st.none() | text,
    callsign=st.none() | text,
    imo=optional_int,
    ship_type=optional_int,
    length_m=optional_float,
    beam_m=optional_float,
    msg_type=st.integers(0, 63),
    grid=grids,
    source=text,
)
def test_vessel_static_is_the_constructors_record(**fields: Any) -> None:
    assert_same(vessel_static(**fields), VesselStatic(**fields))


def assert_same(mine: Any, theirs: Any) -> None:
    assert type(mine) is type(theirs)
    assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)
    assert (mine, hash(mine), repr(mine)) == (theirs, hash(theirs), repr(theirs))
    assert pickle.loads(pickle.dumps(mine)) == theirs
    assert dataclasses.replace(mine, source="other") == dataclasses.replace(theirs, source="other")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mine.mmsi = "x"
