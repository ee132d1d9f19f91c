"""The compiled per-class line-protocol encoders write exactly what the generic encoder writes.

Records are drawn for every class in RECORD_TYPES from its dataclass annotations (a new record
type is covered without editing this file), with values of the declared types and of the types a
careless driver might pass instead (an int where a float is declared, an IntFlag, a bool, str and
float subclasses, NaN and infinities), and text from every character line protocol escapes.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.records import (
    RECORD_TYPES,
    GridTags,
    MeterAlarm,
    Record,
    UniqueTimes,
    VesselPosition,
    encode_record,
    encode_record_generic,
)

TEXT = st.text(alphabet=st.sampled_from('ab 9,="\\\n\té#中'), max_size=6)


class _Str(str):
    pass


class _Float(float):
    pass


class _Small(enum.IntEnum):
    ONE = 1


FLOATS = st.floats(allow_nan=True, allow_infinity=True)
INTS = st.integers(-(2**63), 2**63)
BY_TYPE: dict[object, st.SearchStrategy[object]] = {
    type(None): st.none(),
    float: st.one_of(FLOATS, FLOATS.map(_Float), INTS, st.sampled_from([0.0, -0.0, 1e16, 5e-324])),
    int: st.one_of(INTS, st.booleans(), st.sampled_from([*MeterAlarm, _Small.ONE])),
    bool: st.one_of(st.booleans(), st.integers(0, 1)),
    str: st.one_of(TEXT, TEXT.map(_Str), st.sampled_from(["", "A", "412345678"])),
    GridTags: st.builds(GridTags, TEXT, TEXT, TEXT) | st.just(GridTags()),
}


def _strategy(hint: object) -> st.SearchStrategy[object]:
    if isinstance(hint, types.UnionType):
        return st.one_of(*(_strategy(arm) for arm in typing.get_args(hint)))
    return BY_TYPE[hint]


def _records(kind: type) -> st.SearchStrategy[Record]:
    hints = typing.get_type_hints(kind)
    arguments = {f.name: _strategy(hints[f.name]) for f in dataclasses.fields(kind) if f.init}
    arguments["time_ns"] = st.integers(0, 2**62) | st.integers(0, 2**52).map(lambda s: s * 1000)
    return st.builds(kind, **arguments)


RECORDS = st.one_of(*(_records(kind) for kind in RECORD_TYPES))
SITES = TEXT | st.just("site-1")


def _both(record: Record, site: str, times: tuple[UniqueTimes, UniqueTimes] | None = None) -> None:
    """The compiled and the generic encoder agree on the line, the time, or the error."""
    compiled_times, generic_times = times or (None, None)
    try:
        expected = encode_record_generic(record, site, generic_times)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            encode_record(record, site, compiled_times)
        return
    assert encode_record(record, site, compiled_times) == expected


@settings(max_examples=1000)
@given(RECORDS, SITES)
def test_compiled_encoder_writes_what_the_generic_one_writes(record: Record, site: str) -> None:
    _both(record, site)


@settings(max_examples=200)
@given(st.lists(RECORDS, max_size=30), SITES)
def test_same_times_assigned_both_ways(records: list[Record], site: str) -> None:
    """Clashing (series, time) points get the same unique times from both encoders."""
    times = (UniqueTimes(), UniqueTimes())
    for record in records + records:  # the second pass is a redelivery
        _both(dataclasses.replace(record, time_ns=1_000_000_000), site, times)


def test_every_record_type_is_covered() -> None:
    """A record type whose fields this test cannot draw fails here, not silently."""
    for kind in RECORD_TYPES:
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            _strategy(hints[f.name])


@dataclass(slots=True, frozen=True, kw_only=True)
class _TaggedPosition(VesselPosition):
    """A record class outside RECORD_TYPES, with a tag its base does not have."""

    def tags(self) -> dict[str, str]:
        return {**VesselPosition.tags(self), "zone": "z 1"}


def test_other_record_classes_take_the_generic_path() -> None:
    record = _TaggedPosition(mmsi="412345678", time_ns=5, lat=1.5)
    plain = VesselPosition(mmsi="412345678", time_ns=5, lat=1.5)
    line = encode_record(record, "s").line
    assert line == encode_record_generic(record, "s").line
    assert b",zone=z\\ 1 " in line
    assert encode_record(plain, "s").line == line.replace(b",zone=z\\ 1 ", b" ")
