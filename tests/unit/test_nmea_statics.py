"""The static-data fast path (types 5, 19, 21, 24 without pyais objects) against pyais.

Every static message in the real captures under tests/data (tests/data/README.md says where each
comes from) is read by drivers/nmea/statics.py and compared with pyais' message field by field,
after the hub's own text rule ('@' padding is a space, ends stripped); random payloads of every
accepted bit length, with text fields padded with '@' or spaces, in one sentence or several, are
decoded both ways (fast path and `fast_path=False`, pyais for every type) and compared record by
record and field by field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyais import encode_dict
from pyais.bit_vector import bit_vector
from pyais.messages import MSG_CLASS, MessageType24PartA

from drivers.nmea import statics as sx
from drivers.nmea.decoder import AIS_BIT_LENGTHS
from drivers.nmea.positions import ARMOUR_VALUE, payload_int
from hub.records import VesselPosition, VesselStatic
from tests.unit.test_nmea_fast_path import armour, assert_same_records, both_ways, sentence

DATA = Path(__file__).parent.parent / "data"
REAL_CAPTURES = [p for p in sorted(DATA.glob("*.nmea")) if p.name != "ais_synthetic.nmea"]
STATIC_TYPES = (5, 19, 21, 24)
FRAGMENT = re.compile(rb"!..VD[MO],([1-9]),([1-9]),([^,]*),([^,]*),([^,]*),([0-5])\*")
SIXBIT_TEXT = "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_ !\"#$%&'()*+,-./0123456789:;<=>?"


def hub_text(value: Any) -> str | None:
    """The hub's text rule applied to a pyais string: '@' is padding (a space), ends stripped."""
    return (value or "").replace("@", " ").strip() or None


def hub_dims(msg: Any) -> tuple[float | None, float | None]:
    length = (msg.to_bow or 0) + (msg.to_stern or 0)
    beam = (msg.to_port or 0) + (msg.to_starboard or 0)
    return float(length) or None, float(beam) or None


def read_static(payload: bytes, fill_bits: int) -> tuple[int, Any]:
    """(MMSI, what statics.py reads) for a static payload of an accepted length."""
    msg_type, bits = ARMOUR_VALUE[payload[0]], len(payload) * 6 - fill_bits
    value = payload_int(payload, fill_bits)
    mmsi = (value >> (bits - 38)) & 0x3FFFFFFF
    if msg_type == 5:
        return mmsi, sx.read_type5(value, bits, payload)
    if msg_type == 19:
        return mmsi, sx.read_type19(value, bits, payload)
    if msg_type == 21:
        return mmsi, sx.read_type21_name(value, bits)
    if sx.type24_part(value, bits) == 0:
        return mmsi, sx.read_type24a(value, bits)
    return mmsi, sx.read_type24b(value, bits, mmsi, payload)


def assert_static_matches_pyais(payload: bytes, fill_bits: int) -> tuple[int, int | None]:
    """Compare statics.py with pyais field by field; (type, part number of a type 24)."""
    msg: Any = MSG_CLASS[ARMOUR_VALUE[payload[0]]].from_vector(bit_vector(payload, fill_bits))
    mmsi, mine = read_static(payload, fill_bits)
    assert mmsi == msg.mmsi
    if msg.msg_type == 21:
        name = hub_text(f"{hub_text(msg.name) or ''}{hub_text(msg.name_ext) or ''}")
        assert mine == name
        return 21, None
    if msg.msg_type == 24 and isinstance(msg, MessageType24PartA):
        assert mine == sx.StaticReport(name=hub_text(msg.shipname))
        return 24, 0
    if msg.msg_type == 24:
        dims = hub_dims(msg) if hasattr(msg, "to_bow") else (None, None)
        assert (mine.name, mine.imo) == (None, None)
        assert (mine.callsign, (mine.length_m, mine.beam_m)) == (hub_text(msg.callsign), dims)
        assert_ship_type(mine.ship_type, payload, fill_bits, 40)
        return 24, 1
    assert mine.name == hub_text(msg.shipname)
    assert (mine.length_m, mine.beam_m) == hub_dims(msg)
    assert_ship_type(mine.ship_type, payload, fill_bits, 232 if msg.msg_type == 5 else 263)
    if msg.msg_type == 5:
        assert (mine.callsign, mine.imo) == (hub_text(msg.callsign), msg.imo or None)
    else:
        assert (mine.callsign, mine.imo) == (None, None)
    return msg.msg_type, None


def assert_ship_type(mine: int | None, payload: bytes, fill_bits: int, start: int) -> None:
    """The raw 8 bits (pyais folds unknown codes into its enum, so read its bit vector); a
    character outside the armour alphabet reads as 0 in the hub, so only armoured ones count."""
    if all(char in sx.SIXBIT for char in payload[start // 6 : (start + 7) // 6 + 1]):
        assert mine == (bit_vector(payload, fill_bits).get(start, 8) or None)


def assembled_payloads(data: bytes) -> Iterator[tuple[bytes, int]]:
    """(payload, fill bits) of each message in a capture, fragments joined per sequence id."""
    pending: dict[tuple[bytes, bytes], list[bytes]] = {}
    for count, number, seq, channel, payload, fill in FRAGMENT.findall(data):
        if count == b"1":
            yield payload, int(fill)
            continue
        parts = pending.setdefault((seq, channel), [])
        if number == b"1":
            parts.clear()
        parts.append(payload)
        if number == count and len(parts) == int(count):
            yield b"".join(parts), int(fill)
            del pending[(seq, channel)]


def accepted(payload: bytes, fill_bits: int) -> bool:
    bits = len(payload) * 6 - fill_bits
    ranges = AIS_BIT_LENGTHS.get(ARMOUR_VALUE[payload[0]] if payload else -1, ())
    return any(lo <= bits <= hi for lo, hi in ranges)


def test_every_real_static_payload_matches_pyais_field_by_field() -> None:
    seen: dict[tuple[int, int | None], int] = {}
    for path in REAL_CAPTURES:
        for payload, fill_bits in assembled_payloads(path.read_bytes()):
            if ARMOUR_VALUE[payload[0]] in STATIC_TYPES and accepted(payload, fill_bits):
                bits = len(payload) * 6 - fill_bits
                part = sx.type24_part(payload_int(payload, fill_bits), bits)
                if ARMOUR_VALUE[payload[0]] == 24 and part > 1:
                    continue  # part numbers 2 and 3 do not decode (pyais raises)
                kind = assert_static_matches_pyais(payload, fill_bits)
                seen[kind] = seen.get(kind, 0) + 1
    assert set(seen) == {(5, None), (19, None), (21, None), (24, 0), (24, 1)}
    assert sum(seen.values()) > 500


def test_real_static_records_are_the_same_both_ways_and_not_vacuous() -> None:
    """The real logs hold every static type, with text and dimensions both given and absent."""
    records = [
        r
        for path in REAL_CAPTURES
        for r in assert_same_records(path.read_bytes().splitlines())
        if isinstance(r, VesselStatic)
    ]
    assert {r.msg_type for r in records} == set(STATIC_TYPES)
    for field in ("name", "callsign", "imo", "ship_type", "length_m", "beam_m"):
        assert any(getattr(r, field) is None for r in records), field
        assert any(getattr(r, field) is not None for r in records), field
    assert any(" " in (r.name or "") for r in records)  # inner spaces survive the stripping


# --- random payloads ---------------------------------------------------------------------------


@st.composite
def padded_text(draw: st.DrawFn, chars: int) -> str:
    """`chars` 6-bit characters the way transmitters fill a field: text, then '@' or spaces
    (or a mix), sometimes leading spaces or an '@' inside."""
    core = draw(st.text(SIXBIT_TEXT, max_size=chars))
    lead = " " * draw(st.integers(0, 2))
    tail = draw(st.text("@ ", min_size=chars, max_size=chars) | st.just("@" * chars))
    return (lead + core + tail)[:chars]


# (first bit, characters) of the text fields of each type and type 24 part.
TEXT_FIELDS = {5: ((70, 7), (112, 20), (302, 20)), 19: ((143, 20),), 21: ((43, 20),),
               (24, 0): ((40, 20),), (24, 1): ((90, 7),)}  # fmt: skip


def splice(value: int, bits: int, start: int, width: int, field: int) -> int:
    shift = bits - start - width
    return value & ~(((1 << width) - 1) << shift) | field << shift


def text_bits(text: str) -> int:
    field = 0
    for char in text:
        field = field << 6 | SIXBIT_TEXT.index(char)
    return field


@st.composite
def raw_static_lines(draw: st.DrawFn) -> list[bytes]:
    """Any bits behind a static type at any accepted length (odd ones and fill bits included),
    padded text in its text fields, in one sentence or up to three fragments, sometimes with a
    character outside the armour alphabet."""
    msg_type = draw(st.sampled_from(STATIC_TYPES))
    [(shortest, longest)] = AIS_BIT_LENGTHS[msg_type]
    bits = draw(st.sampled_from([shortest, longest]) | st.integers(shortest, longest))
    value = draw(st.integers(0, 2 ** (bits - 6) - 1)) | msg_type << (bits - 6)
    key: Any = msg_type
    if msg_type == 24:
        part = draw(st.sampled_from([0, 1, 0, 1, 2, 3]))
        value = splice(value, bits, 38, 2, part)
        key = (24, part)
        if draw(st.booleans()):  # an auxiliary craft (98XXXYYYY) has no dimensions
            value = splice(value, bits, 8, 30, draw(st.integers(980_000_000, 989_999_999)))
    if msg_type == 21 and bits > 272:  # the name extension runs to the end of the message
        ext = draw(padded_text((bits - 272) // 6))
        value = splice(value, bits, 272, 6 * len(ext), text_bits(ext))
    for start, chars in TEXT_FIELDS.get(key, ()):
        if start + 6 * chars <= bits:
            value = splice(value, bits, start, 6 * chars, text_bits(draw(padded_text(chars))))
    armoured, fill_bits = armour(value, bits)
    payload = bytearray(armoured)
    if draw(st.integers(0, 3)) == 0:
        payload[draw(st.integers(1, len(payload) - 1))] = draw(st.sampled_from(b"XYZ[]^_xyz~"))
    count = draw(st.integers(1, 3))
    cuts = sorted(draw(st.sets(st.integers(1, len(payload) - 1), min_size=count - 1,
                               max_size=count - 1)))  # fmt: skip
    pieces = [bytes(payload[a:b]) for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    return [
        sentence(piece, fill_bits if number == count else 0, count, number)
        for number, piece in enumerate(pieces, 1)
    ]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_static_lines())
def test_random_static_bits_decode_the_same_both_ways(lines: list[bytes]) -> None:
    records = assert_same_records(lines)
    payload = b"".join(line.split(b",")[5] for line in lines)
    fill_bits = int(lines[-1].split(b",")[6][:1])
    if not records:  # a type 24 with part number 2 or 3: the same decode error both ways
        assert ARMOUR_VALUE[payload[0]] == 24
        return
    assert isinstance(records[-1], VesselStatic)
    assert_static_matches_pyais(payload, fill_bits)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg_type=st.sampled_from(STATIC_TYPES),
    name=padded_text(20),
    callsign=padded_text(7),
    numbers=st.lists(st.integers(0, 2**30 - 1), min_size=6, max_size=6),
    partno=st.integers(0, 1),
)
@example(msg_type=5, name="@" * 20, callsign="       ", numbers=[0] * 6, partno=0)
@example(msg_type=21, name="BUOY NO 7 WITH A LON", callsign="G@", numbers=[1] * 6, partno=0)
def test_pyais_encoded_statics_decode_the_same_both_ways(
    msg_type: int, name: str, callsign: str, numbers: list[int], partno: int
) -> None:
    mmsi, imo, bow, stern, port, starboard = numbers
    fields: dict[str, Any] = {
        "type": msg_type,
        "mmsi": mmsi,
        "imo": imo,
        "shipname": name,
        "name": name,
        "callsign": callsign,
        "partno": partno,
        "ship_type": bow % 256,
        "to_bow": bow % 512,
        "to_stern": stern % 512,
        "to_port": port % 64,
        "to_starboard": starboard % 64,
    }
    if msg_type == 21 and name[-1] not in "@ ":  # a full name continues in the extension
        fields["name_ext"] = callsign
    lines = [line.encode() for line in encode_dict(fields, talker_id="AI", sentence_type="VDM")]
    records = assert_same_records(lines)
    assert isinstance(records[-1], VesselStatic) and records[-1].msg_type == msg_type
    assert isinstance(records[0], VesselStatic if msg_type in (5, 24) else VesselPosition)
    payload = b"".join(line.split(b",")[5] for line in lines)
    assert_static_matches_pyais(payload, int(lines[-1].split(b",")[6][:1]))


@pytest.mark.parametrize("bits", [272, 273, 274, 277, 278, 283, 300, 355, 359, 360])
def test_a_type21_name_extension_cut_at_any_bit_reads_as_pyais_reads_it(bits: int) -> None:
    """pyais keeps the bits of a last, short character right-aligned: 'Z' (011010) cut to 2
    bits reads 'A' (1), to 4 bits 'F' (6). The name is stripped before the extension is added."""
    name = text_bits("NORTH CARDINAL MARK ")
    ext = text_bits("Z" * 14) << 4 | 0b0110  # 88 bits: 14 characters and 4 bits
    value = 21 << 354 | name << (360 - 163) | ext
    payload, fill_bits = armour(value >> (360 - bits), bits)
    [position, static] = assert_same_records([sentence(payload, fill_bits)])
    assert isinstance(position, VesselPosition) and isinstance(static, VesselStatic)
    full, cut = divmod(bits - 272, 6)
    last = {0: "", 1: "", 2: "A", 3: "C", 4: "F", 5: "M"}[cut]  # the last 4 bits are also 0110
    assert static.name == "NORTH CARDINAL MARK" + "Z" * full + last
    assert_static_matches_pyais(payload, fill_bits)


@pytest.mark.parametrize("part", [2, 3])
def test_a_type24_of_an_undefined_part_number_is_a_decode_error_both_ways(part: int) -> None:
    line = sentence(*armour(24 << 162 | 412000024 << 130 | part << 128, 168))
    fast, got, reference, want = both_ways([line])
    assert got == want == []
    assert fast.stats.errors == reference.stats.errors == {"decode": 1}


def test_text_reads_every_character_as_pyais_does() -> None:
    """ITU-R M.1371 Table 47, every code as the first character of a type 5 name."""
    for code, char in enumerate(SIXBIT_TEXT):
        payload, fill_bits = armour(5 << 418 | code << (424 - 112 - 6), 424)
        _, report = read_static(payload, fill_bits)
        assert report.name == (None if char in "@ " else char)
        assert_static_matches_pyais(payload, fill_bits)
