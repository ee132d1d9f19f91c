"""AIS position reports (types 1, 2, 3, 18, 27) read straight from the armoured payload.

Four in five AIS messages are position reports. Decoding them without building a pyais message
object (and its bit vector) is what lets the hub decoder keep up with raw pyais; the static
types are read the same way in statics.py, the rarer ones (4, 9) still go through pyais. The bit
offsets are those of ITU-R M.1371-5 Annex 8 (Table 46: types 1-3, Table 49: type 18, Table 82:
type 27), and every value is converted exactly as pyais converts it:
tests/unit/test_nmea_fast_path.py checks both field by field on real logs and on
random payloads encoded by pyais.
"""

from __future__ import annotations

from binascii import a2b_base64
from typing import NamedTuple

# Payload armouring (IEC 61162-1 / ITU-R M.1371 Annex 8 §3.3.7): ASCII 48-87 -> 0-39 and
# 96-119 -> 40-63. Characters outside the alphabet map as pyais maps them (88-95 -> 32-40 by the
# same arithmetic, anything else -> 0), so both paths read garbage the same way. Re-mapping onto
# the base64 alphabet lets binascii repack 6-bit groups into bytes in C.
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
ARMOUR_VALUE = tuple(
    (c - 56 if c - 48 > 40 else c - 48) if 48 <= c <= 119 else 0 for c in range(256)
)
_ARMOUR_TO_B64 = bytes(_B64[v] for v in ARMOUR_VALUE)
_B64_PAD = (b"", b"AAA", b"AA", b"A")  # 'A' is six zero bits

# "Not available" and range limits as raw integers (ITU-R M.1371-5 Table 46 / Table 82).
SOG_NA = 1023  # 102.3 kn
COG_NA = 3600  # 360.0 deg
HEADING_NA = 511
STATUS_NA = 15  # "undefined (default)"
LAT_MAX = 54_000_000  # 90 deg in 1/10,000 min; 91 deg (54,600,000) means "not available"
LON_MAX = 108_000_000  # 180 deg; 181 deg means "not available"
LR_SOG_NA = 63  # type 27: whole knots
LR_COG_NA = 511  # type 27: whole degrees
LR_LAT_MAX = 54_000  # type 27: 1/10 min
LR_LON_MAX = 108_000


class Layout(NamedTuple):
    """Right shifts of the fields of a 168-bit class A/B position report held as one int."""

    ais_class: str
    status: int  # -1: the type has no navigational status (class B)
    turn: int  # -1: no rate of turn (class B)
    sog: int
    accuracy: int
    lon: int
    lat: int
    cog: int
    heading: int
    second: int


# shift = 168 - first bit - width, from the tables' bit positions.
_CLASS_A = Layout("A", status=126, turn=118, sog=108, accuracy=107, lon=79, lat=52, cog=40,
                  heading=31, second=25)  # fmt: skip
_CLASS_B = Layout("B", status=-1, turn=-1, sog=112, accuracy=111, lon=83, lat=56, cog=44,
                  heading=35, second=29)  # fmt: skip
LAYOUTS = {1: _CLASS_A, 2: _CLASS_A, 3: _CLASS_A, 18: _CLASS_B}
LONG_RANGE = 27
POSITION_BITS = 168  # types 1-3 and 18 (ITU-R M.1371-5 Tables 46 and 49)
LONG_RANGE_BITS = 96  # type 27 (Table 82); some units send it in a 168-bit slot
# Bit lengths accepted, as (min, max) ranges. Real class A units send 163 (the last 5 bits of
# the communication state cut) and 204 bits besides 168; class B units pad to longer slots.
# gpsd accepts the same (drivers/driver_ais.c: types 1-3 163-204 after the USCG NAVCEN notes,
# type 18 from 168 up); the cap at 204 keeps rejecting garbage. Every field read lies within
# the first 149 bits, so any of these lengths gives the same record.
BIT_LENGTHS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((163, 204),),
    2: ((163, 204),),
    3: ((163, 204),),
    18: ((168, 204),),
    27: ((LONG_RANGE_BITS, LONG_RANGE_BITS), (POSITION_BITS, POSITION_BITS)),
}


def payload_int(payload: bytes, fill_bits: int) -> int:
    """The payload's bits as one unsigned int, fill bits dropped (bit 0 is the most significant)."""
    remainder = len(payload) & 3
    value = int.from_bytes(
        a2b_base64(payload.translate(_ARMOUR_TO_B64) + _B64_PAD[remainder]), "big"
    )
    if remainder:
        value >>= 6 * (4 - remainder)
    return value >> fill_bits


def signed(value: int, width: int) -> int:
    """Two's complement of a `width`-bit field."""
    return value - (1 << width) if value >> (width - 1) else value


def degrees(raw: int) -> float:
    """1/10,000 min to degrees, rounded to 6 decimals: round(raw * 5 / 3) / 1e6, in integers.

    pyais computes lat/lon this way (equal to round(raw / 600000, 6), never a tie), so a
    fast-path record and a pyais record of the same payload hold the same float.
    """
    return ((10 * raw + 3) // 6) / 1e6


def long_range_degrees(raw: int) -> float:
    """Type 27: 1/10 min to degrees, round(raw * 5000 / 3) / 1e6 (as pyais)."""
    return ((10_000 * raw + 3) // 6) / 1e6


class PositionReport(NamedTuple):
    """Every field of a position report the hub reads or a test compares, "not available" kept
    as the raw sentinel: the record builder maps sentinels to None."""

    msg_type: int
    mmsi: int
    nav_status: int | None  # None for class B
    turn: int | None  # raw rate-of-turn indicator (-128..127), None for class B and type 27
    sog: int  # 1/10 kn (type 27: kn)
    accuracy: bool
    lon: int  # 1/10,000 min (type 27: 1/10 min)
    lat: int
    cog: int  # 1/10 deg (type 27: deg)
    heading: int | None  # None for type 27
    second: int | None  # UTC second of the report (60-63: n/a), None for type 27


def class_ab_fields(value: int, layout: Layout) -> tuple[int, ...]:
    """The fields of a 168-bit type 1/2/3/18 payload held as one int, in PositionReport's order
    (a plain tuple: the decoder's hot path unpacks it at once). Sign extension is
    `(field ^ sign_bit) - sign_bit`; status and turn are -1 where the type has none."""
    _, status, turn, sog, accuracy, lon, lat, cog, heading, second = layout
    return (
        value >> 162,
        (value >> 130) & 0x3FFFFFFF,
        (value >> status) & 0xF if status >= 0 else -1,
        (((value >> turn) & 0xFF) ^ 0x80) - 0x80 if turn >= 0 else -1,
        (value >> sog) & 0x3FF,
        (value >> accuracy) & 1,
        (((value >> lon) & 0xFFFFFFF) ^ 0x8000000) - 0x8000000,
        (((value >> lat) & 0x7FFFFFF) ^ 0x4000000) - 0x4000000,
        (value >> cog) & 0xFFF,
        (value >> heading) & 0x1FF,
        (value >> second) & 0x3F,
    )


def read_class_ab(value: int, layout: Layout) -> PositionReport:
    """`class_ab_fields` as a PositionReport (None where the type has no such field)."""
    fields = class_ab_fields(value, layout)
    no_status = layout.status < 0
    return PositionReport._make(
        (
            *fields[:2],
            None if no_status else fields[2],
            None if layout.turn < 0 else fields[3],
            fields[4],
            bool(fields[5]),
            *fields[6:],
        )
    )


def read_long_range(value: int) -> PositionReport:
    """Fields of the first 96 bits of a type 27 payload held as one int."""
    return PositionReport(
        msg_type=value >> 90,
        mmsi=(value >> 58) & 0x3FFFFFFF,
        nav_status=(value >> 52) & 0xF,
        turn=None,
        sog=(value >> 11) & 0x3F,
        accuracy=bool((value >> 57) & 1),
        lon=signed((value >> 34) & 0x3FFFF, 18),
        lat=signed((value >> 17) & 0x1FFFF, 17),
        cog=(value >> 2) & 0x1FF,
        heading=None,
        second=None,
    )


def align(value: int, bits: int, to_bits: int) -> int:
    """A `bits`-long payload int cut or zero-padded at its end to `to_bits`."""
    return value >> (bits - to_bits) if bits >= to_bits else value << (to_bits - bits)


def position_report(payload: bytes, fill_bits: int = 0) -> PositionReport | None:
    """The fields of a type 1/2/3/18/27 payload of an accepted bit length, else None."""
    msg_type = ARMOUR_VALUE[payload[0]] if payload else -1
    bits = len(payload) * 6 - fill_bits
    if not any(lo <= bits <= hi for lo, hi in BIT_LENGTHS.get(msg_type, ())):
        return None
    value = payload_int(payload, fill_bits)
    if msg_type == LONG_RANGE:
        return read_long_range(align(value, bits, LONG_RANGE_BITS))
    return read_class_ab(align(value, bits, POSITION_BITS), LAYOUTS[msg_type])
