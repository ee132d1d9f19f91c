"""Property tests: no NMEA input crashes the decoder; the reassembly buffer stays bounded."""

from __future__ import annotations

import functools
import operator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.nmea import NmeaDecoder, parse_line
from hub.errors import HubError

DATA = Path(__file__).parent.parent / "data"
SAMPLES = [
    line
    for name in ("ais_public.nmea", "ais_synthetic.nmea")
    for line in (DATA / name).read_bytes().splitlines()[:200]
]
ARMOUR = b"0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVW`abcdefghijklmnopqrstuvw"


def with_checksum(sentence: bytes) -> bytes:
    """Give a sentence body (from '!' or '$') a correct '*hh' so it reaches the AIS decoder."""
    body = sentence.split(b"*")[0]
    return body + b"*%02X" % functools.reduce(operator.xor, body[1:], 0)


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    line = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(line) - 1, 0)))
        action = draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        byte = draw(st.sampled_from(list(ARMOUR + b",*\\!$\r\n\x00\xff")))
        if action == "replace" and line:
            line[pos] = byte
        elif action == "delete" and line:
            del line[pos]
        elif action == "insert":
            line.insert(pos, byte)
        else:
            del line[pos:]
    if draw(st.booleans()) and line[:1] in (b"!", b"$"):
        return with_checksum(bytes(line))
    return bytes(line)


@st.composite
def ais_payload_lines(draw: st.DrawFn) -> bytes:
    """Well-formed VDM framing around a random payload: exercises pyais on arbitrary bits."""
    payload = draw(
        st.binary(min_size=1, max_size=80).map(lambda b: bytes(ARMOUR[x % 64] for x in b))
    )
    count = draw(st.integers(1, 3))
    number = draw(st.integers(1, count))
    fill = draw(st.integers(0, 5))
    seq = draw(st.sampled_from([b"", b"1", b"7"]))
    channel = draw(st.sampled_from([b"A", b"B", b""]))
    return with_checksum(b"!AIVDM,%d,%d,%s,%s,%s,%d" % (count, number, seq, channel, payload, fill))


any_line = st.one_of(st.binary(max_size=200), mutated_lines(), ais_payload_lines())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_line, max_size=20))
def test_decoder_never_raises(lines: list[bytes]) -> None:
    decoder = NmeaDecoder("fuzz", max_fragments=4)
    decoder.feed_many(lines, 1_780_000_000 * 10**9)
    assert decoder.stats.messages == sum(1 for line in lines if line)
    assert decoder.pending_fragments <= 4


@settings(max_examples=1500, deadline=None)
@given(any_line)
def test_parse_line_raises_only_hub_errors(line: bytes) -> None:
    try:
        sentence = parse_line(line)
    except HubError:
        return
    assert sentence.body[:1] in (b"!", b"$")


@st.composite
def fragment_lines(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(2, 9))
    number = draw(st.integers(1, count))
    station = draw(st.integers(0, 30))
    tag = b"s:rx%d" % station
    tag_block = b"\\%s*%02X\\" % (tag, functools.reduce(operator.xor, tag, 0))
    seq = draw(st.integers(0, 9))
    channel = draw(st.sampled_from([b"A", b"B"]))
    return tag_block + with_checksum(
        b"!AIVDM,%d,%d,%d,%s,55?MbV02;H;s<HtKR20EHE:0,0" % (count, number, seq, channel)
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 16), st.lists(fragment_lines(), min_size=1, max_size=200))
def test_reassembly_buffer_never_exceeds_bound(bound: int, lines: list[bytes]) -> None:
    decoder = NmeaDecoder("fuzz", max_fragments=bound)
    for line in lines:
        decoder.feed(line, 1_780_000_000 * 10**9)
        assert decoder.pending_fragments <= bound


SINGLE = [ln for ln in SAMPLES if ln.startswith(b"!AIVDM,1,1,")]
RECEIVER_FIELD = st.from_regex(rb"\A[a-zA-Z]?[-0-9A-Za-z.]{0,12}\Z", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    line=st.sampled_from(SINGLE),
    fields=st.lists(RECEIVER_FIELD, max_size=6),
    stamp=st.integers(946_684_800, 4_102_444_800),
)
def test_receiver_fields_never_change_what_a_sentence_decodes_to(
    line: bytes, fields: list[bytes], stamp: int
) -> None:
    """USCG/NAIS-style fields after '*hh' are accepted whatever they hold; the decoded values are
    those of the bare sentence, and a Unix time among them (after letter fields) is the time."""
    bare = NmeaDecoder("p").feed(line, 0)
    letters = [f for f in fields if f[:1].isalpha()]  # bare numbers would be taken as the time
    with_fields = b",".join([line, *letters, b"%d" % stamp])
    decoder = NmeaDecoder("p")
    got = decoder.feed(with_fields, 0)
    assert not decoder.stats.errors
    assert [type(r) for r in got] == [type(r) for r in bare] and got
    for before, after in zip(bare, got, strict=True):
        assert after.time_ns // 10**9 == stamp
        assert getattr(after, "mmsi", None) == getattr(before, "mmsi", None)
        assert getattr(after, "lat", None) == getattr(before, "lat", None)
