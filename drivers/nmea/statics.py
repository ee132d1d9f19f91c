"""AIS static and voyage data (types 5, 19, 21, 24) read straight from the payload int.

One in five AIS messages carries text. pyais reads a text field one 6-bit character per call;
here a field's bits are re-armoured onto the base64 alphabet in one `b2a_base64` and mapped to
text in one `translate`. Only the fields the hub's records hold are read, with pyais' semantics
(a field cut by the end of the payload holds only the bits that are there, right-aligned), so a
record built from these values equals one built from pyais' message object:
tests/unit/test_nmea_statics.py checks both on real logs and on random payloads. Bit positions
are those of ITU-R M.1371-5 Annex 8 (Table 52: type 5, Table 50: type 19, Table 72: type 21,
Tables 76-78: type 24).
"""

from __future__ import annotations

from binascii import b2a_base64
from typing import NamedTuple

from drivers.nmea.positions import ARMOUR_VALUE

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# 6-bit ASCII (ITU-R M.1371 Table 47): 0-31 are '@'..'_', 32-63 are ' '..'?'. '@' (0) is the
# padding of a text field; the hub treats it as a space (stripped), so it maps to ' ' here.
_B64_TO_TEXT = bytes.maketrans(_B64, b" " + bytes(v + 64 if v < 32 else v for v in range(1, 64)))
_B64_PAD_CHARS = (0, 3, 2, 1)  # characters that fill a text field up to a 4-character group
# The armour alphabet alone (ITU-R M.1371 Annex 8 §3.3.7: ASCII 48-87 and 96-119).
SIXBIT = {c: ARMOUR_VALUE[c] for c in [*range(48, 88), *range(96, 120)]}


def text(field: int, chars: int) -> str:
    """The `chars` 6-bit characters of `field` (the last one in the lowest bits) with '@'
    padding read as spaces and the ends stripped."""
    pad = _B64_PAD_CHARS[chars & 3]
    armoured = b2a_base64(((field << (6 * pad)).to_bytes((chars + pad) * 3 // 4)), newline=False)
    return armoured[:chars].translate(_B64_TO_TEXT).strip().decode("ascii")


def get(value: int, bits: int, start: int, width: int) -> int:
    """A field as pyais' bit vector reads it: only the bits before the end, right-aligned."""
    if start >= bits:
        return 0
    available = min(width, bits - start)
    return (value >> (bits - start - available)) & ((1 << available) - 1)


def tail_text(value: int, bits: int, start: int) -> str:
    """Text from bit `start` to the end: a last character cut short keeps its bits
    right-aligned, as pyais reads it (type 21's name extension)."""
    if start >= bits:
        return ""
    full, cut = divmod(bits - start, 6)
    field = (value >> cut) & ((1 << 6 * full) - 1)
    if cut:
        field = (field << 6) | (value & ((1 << cut) - 1))
        full += 1
    return text(field, full)


def ship_type(payload: bytes, start: int) -> int | None:
    """The raw 8-bit ship and cargo type (ITU-R M.1371 Table 53), reserved codes included.

    Read from the payload characters, not a library enum, which may fold unknown codes (39, 57)
    into others. `start` is the field's first bit. Characters outside the armour alphabet read
    as 0 here (as the hub always read them).
    """
    first, last = start // 6, (start + 7) // 6
    if last >= len(payload):
        return None
    value = 0
    for char in payload[first : last + 1]:
        value = (value << 6) | SIXBIT.get(char, 0)
    spare = (last + 1) * 6 - (start + 8)
    return ((value >> spare) & 0xFF) or None  # 0: "not available"


class Dimensions(NamedTuple):
    """Length and beam from the four reference-point distances (m), None when both are 0."""

    length_m: float | None
    beam_m: float | None


def dimensions(dims: int) -> Dimensions:
    """The 30-bit dimension field (bow 9, stern 9, port 6, starboard 6 bits) as length, beam."""
    length = (dims >> 21) + ((dims >> 12) & 0x1FF)
    beam = ((dims >> 6) & 0x3F) + (dims & 0x3F)
    return Dimensions(float(length) or None, float(beam) or None)


class StaticReport(NamedTuple):
    """The static fields of a type 5, 19, 21 or 24 message the hub keeps."""

    name: str | None = None
    callsign: str | None = None
    imo: int | None = None
    ship_type: int | None = None
    length_m: float | None = None
    beam_m: float | None = None


def read_type5(value: int, bits: int, payload: bytes) -> StaticReport:
    """Type 5 (Table 52): IMO 40-69, call sign 70-111, name 112-231, ship type 232-239,
    dimensions 240-269; every accepted length (420-426 bits) holds all of them."""
    head = value >> (bits - 270)
    return StaticReport(
        text((head >> 38) & _BITS_120, 20) or None,
        text((head >> 158) & _BITS_42, 7) or None,
        ((head >> 200) & 0x3FFFFFFF) or None,
        ship_type(payload, 232),
        *dimensions(head & 0x3FFFFFFF),
    )


def read_type19(value: int, bits: int, payload: bytes) -> StaticReport:
    """Type 19 (Table 50): name 143-262, ship type 263-270, dimensions 271-300 (312 bits)."""
    head = value >> (bits - 301)
    return StaticReport(
        text((head >> 38) & _BITS_120, 20) or None,
        None,
        None,
        ship_type(payload, 263),
        *dimensions(head & 0x3FFFFFFF),
    )


def read_type21_name(value: int, bits: int) -> str | None:
    """Type 21 (Table 72): name 43-162, then the name extension from bit 272 to the end;
    each is padded on its own, so each is stripped before they are joined."""
    name = text((value >> (bits - 163)) & _BITS_120, 20)
    return (name + tail_text(value, bits, 272)) or None


def type24_part(value: int, bits: int) -> int:
    """Part number of a type 24 (Table 76): 0 is part A, 1 part B, 2 and 3 are not defined."""
    return (value >> (bits - 40)) & 3


def read_type24a(value: int, bits: int) -> StaticReport:
    """Type 24 part A (Table 77): name 40-159 (160 bits or more)."""
    return StaticReport(text((value >> (bits - 160)) & _BITS_120, 20) or None)


AUXILIARY_MMSI = range(980_000_000, 990_000_000)  # 98XXXYYYY: craft of a mother ship


def read_type24b(value: int, bits: int, mmsi: int, payload: bytes) -> StaticReport:
    """Type 24 part B (Table 78): ship type 40-47, call sign 90-131, then dimensions 132-161,
    or the mother ship's MMSI for an auxiliary craft (no dimensions). A 160- or 161-bit part B
    cuts the starboard distance short: it keeps the bits that are there."""
    callsign = text(get(value, bits, 90, 42), 7) or None
    length = beam = None
    if mmsi not in AUXILIARY_MMSI:
        length, beam = dimensions(
            get(value, bits, 132, 9) << 21
            | get(value, bits, 141, 9) << 12
            | get(value, bits, 150, 6) << 6
            | get(value, bits, 156, 6)
        )
    return StaticReport(None, callsign, None, ship_type(payload, 40), length, beam)


_BITS_42 = (1 << 42) - 1
_BITS_120 = (1 << 120) - 1
