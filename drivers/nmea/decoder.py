"""NMEA 0183 / AIS line decoder: tag blocks, checksums, fragment reassembly, records out."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import operator
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyais.bit_vector import bit_vector
from pyais.messages import MSG_CLASS, MessageType24PartA

from drivers.nmea import positions as pos
from drivers.nmea import records as rec
from drivers.nmea import statics as st
from drivers.nmea.gnss import FIX_READERS, read_fix
from drivers.nmea.positions import LAT_MAX, LON_MAX
from hub.errors import ChecksumError, FrameError, ProtocolError
from hub.records import (
    NO_GRID,
    AisBaseStation,
    GatewayFix,
    Record,
    SarAircraftPosition,
    VesselPosition,
    VesselStatic,
)
from hub.source import SourceStats

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
MAX_LINE_BYTES = 400  # tag block + an 82-char sentence; longer lines are garbage
AIS_SENTENCES = (b"VDM", b"VDO")
_DIGIT = {str(i).encode(): i for i in range(10)}  # fragment count/number and fill bits are 0-9


class TruncatedError(FrameError):
    """A sentence cut short: no checksum, or an AIS payload shorter than its message type."""


class BitLengthError(FrameError):
    """An AIS message whose bit length is not one ITU-R M.1371 allows for its type."""


# Bit lengths per message type (ITU-R M.1371-5, Annex 8, Tables 46-83), as (min, max) ranges.
# Tolerances are those real transmitters need: type 5 is 424 bits, but many send 420 or 422,
# or 426 with the fill bits left at 0; type 21 carries 0-84 bits of name extension plus spare
# to a byte boundary (272-360); type 24 part A is 160 bits, often padded to a 168-bit slot, and
# part B is sent in slots of up to 180 bits (gpsd test/daemon/ais-18-27.log); type 27 is 96
# bits, and some units send it in a full 168-bit slot (all also in gpsd). Position reports:
# see positions.BIT_LENGTHS.
AIS_BIT_LENGTHS: dict[int, tuple[tuple[int, int], ...]] = {
    **pos.BIT_LENGTHS,
    4: ((168, 168),),
    5: ((420, 426),),
    9: ((168, 168),),
    19: ((312, 312),),
    21: ((272, 360),),
    24: ((160, 204),),
}
_ALLOWED_BITS = {
    msg_type: frozenset(n for lo, hi in ranges for n in range(lo, hi + 1))
    for msg_type, ranges in AIS_BIT_LENGTHS.items()
}
# Receive times after the checksum (USCG/NAIS loggers) are taken only in this range (2000-2100).
UNIX_TIME_RANGE_S = (946_684_800, 4_102_444_800)


@dataclass(slots=True, frozen=True)
class Sentence:
    """One checked NMEA sentence with what its tag block said."""

    body: bytes  # from the leading '!' or '$' up to, not including, '*hh'
    time_ns: int | None  # tag block c: (receiver time), if any
    station: str  # tag block s: (source station), "" if none
    group: str  # tag block g: group id tying the fragments of one message, "" if none
    tag_block_ignored: bool = False  # a tag block was there but failed its checksum or parse


def _xor(data: bytes) -> int:
    """XOR of all bytes (the NMEA checksum): one int folded in halves, not a loop per byte."""
    if len(data) > 128:
        return functools.reduce(operator.xor, data, 0)
    folded = int.from_bytes(data, "little")
    if len(data) > 64:
        folded ^= folded >> 512
    folded ^= folded >> 256
    folded ^= folded >> 128
    folded ^= folded >> 64
    folded ^= folded >> 32
    folded ^= folded >> 16
    folded ^= folded >> 8
    return folded & 0xFF


_HEX = {b"%02X" % i: i for i in range(256)} | {b"%02x" % i: i for i in range(256)}


def _tag_block_content(tag: bytes) -> bytes:
    """The tag block before '*hh' after checking hh; raise ChecksumError/FrameError."""
    if len(tag) < 4 or tag[-3:-2] != b"*":
        raise TruncatedError("tag block without checksum")
    expected = _HEX.get(tag[-2:])
    if expected is None:
        raise FrameError("tag block checksum is not hex")
    content = tag[:-3]
    if _xor(content) != expected:
        raise ChecksumError("tag block checksum mismatch")
    return content


_Tag = tuple[int | None, str, str]  # (time_ns, station, group)


def _parse_tag_block(tag: bytes) -> _Tag:
    """IEC 61162-450 / NMEA 4.10 tag block `g:1-2-73,s:station,c:unixtime*hh`."""
    content = _tag_block_content(tag)
    time_ns: int | None = None
    station = group = ""
    for part in content.split(b","):
        key, _, value = part.partition(b":")
        if key == b"c":
            try:
                stamp = int(value)
            except ValueError as exc:
                raise FrameError("tag block c: is not an integer") from exc
            # c: is seconds per IEC 61162-450; some receivers send milliseconds.
            time_ns = stamp * 1_000_000 if stamp > 10_000_000_000 else stamp * NS_PER_S
        elif key == b"s":
            station = value.decode("ascii", "replace")
        elif key == b"g":  # sentence-number - total - group id
            group = "g:" + value.rpartition(b"-")[2].decode("ascii", "replace")
    return time_ns, station, group


_TAG_CACHE: dict[bytes, _Tag] = {}  # tag blocks repeat within a second


def _tag_block(tag: bytes) -> _Tag:
    parsed = _TAG_CACHE.get(tag)
    if parsed is None:
        parsed = _parse_tag_block(tag)
        if len(_TAG_CACHE) >= 256:
            _TAG_CACHE.clear()
        _TAG_CACHE[tag] = parsed
    return parsed


def _trailing_time_ns(fields: bytes) -> int | None:
    """The logger's Unix time among receiver fields after '*hh' (USCG/NAIS: `,r003669987,1152921693`).

    Letter-prefixed fields (r/b station, d dBm, S slot, t/T receiver time, s RSSI, x counter) are
    skipped; the first bare number in a sane range is the receive time (as libais reads it).
    """
    for field in fields.split(b","):
        if not field[:1].isdigit():
            continue
        try:
            stamp = float(field)
        except ValueError:
            continue
        if UNIX_TIME_RANGE_S[0] <= stamp <= UNIX_TIME_RANGE_S[1]:
            return int(stamp * NS_PER_S)
    return None


_Split = tuple[bytes, int | None, str, str, bool]


def _split_line(line: bytes) -> _Split:
    """(sentence body without '*hh', tag time, station, group, tag block ignored).

    Raises ProtocolError subclasses. Receiver fields after the checksum are accepted; a tag block
    that fails its checksum (satellite feeds write `*00`) is dropped, not the sentence behind it.
    """
    line = line.strip()
    if len(line) > MAX_LINE_BYTES:
        raise FrameError("line too long")
    time_ns: int | None = None
    station = group = ""
    tag_ignored = False
    if line[:1] == b"\\":
        end = line.find(b"\\", 1)
        if end < 0:
            raise FrameError("unterminated tag block")
        try:
            time_ns, station, group = _tag_block(line[1:end])
        except ProtocolError:  # bad checksum (satellite feeds write *00), truncated, bad c:
            tag_ignored = True
        line = line[end + 1 :]
    if line[:1] not in (b"!", b"$") or not line.isascii():
        raise FrameError("not an NMEA sentence")
    if line[-3:-2] != b"*":
        star = line.rfind(b"*")
        if star > 0 and line[star + 3 : star + 4] == b",":
            if time_ns is None:
                time_ns = _trailing_time_ns(line[star + 4 :])
            line = line[: star + 3]
    # The checksum is the XOR of everything between '!' or '$' and '*' (IEC 61162-1 §7.2.4).
    expected = _HEX.get(line[-2:])
    if len(line) < 4 or line[-3] != 42:  # '*'
        raise TruncatedError("sentence without checksum")
    if expected is None:
        raise FrameError("sentence checksum is not hex")
    if _xor(line[1:-3]) != expected:
        raise ChecksumError("sentence checksum mismatch")
    return line[:-3], time_ns, station, group, tag_ignored


def parse_line(line: bytes) -> Sentence:
    """Strip and check one line; raise a ProtocolError subclass when it is not valid NMEA."""
    return Sentence(*_split_line(line))


_GroupKey = tuple[bytes, bytes, str, str]  # (channel, sequence id, sender, station or g: group)


@dataclass(slots=True)
class _Group:
    """Fragments of one multi-sentence AIS message awaiting their siblings."""

    started_ns: int  # receive time, for expiry
    time_ns: int  # the first fragment's time, for the record
    payloads: list[bytes | None]
    missing: int
    fill_bits: int = 0


def _none_if(value: Any, sentinel: Any) -> Any:
    return None if value is None or value == sentinel else value


def _lat_lon(msg: Any) -> tuple[float | None, float | None]:
    """ITU-R M.1371 "not available" is lat 91 / lon 181; anything off the globe is missing too."""
    lat, lon = msg.lat, msg.lon
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None, None
    return float(lat), float(lon)


def _nav_status(msg: Any) -> int | None:
    status = getattr(msg, "status", None)
    return None if status is None or int(status) == 15 else int(status)


def _station_utc_s(msg: Any) -> int | None:
    """Type 4 UTC as Unix seconds; None when any part is "not available" (0 / 24 / 60) or invalid."""
    try:
        moment = dt.datetime(
            msg.year, msg.month, msg.day, msg.hour, msg.minute, msg.second, tzinfo=dt.UTC
        )
    except (TypeError, ValueError):  # year/month/day 0, hour 24, minute/second 60+
        return None
    return int(moment.timestamp())


def _text(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).replace("@", " ").strip()
    return text or None


def _dims(msg: Any) -> tuple[float | None, float | None]:
    length = (msg.to_bow or 0) + (msg.to_stern or 0)
    beam = (msg.to_port or 0) + (msg.to_starboard or 0)
    return (float(length) or None), (float(beam) or None)


class NmeaDecoder:
    """Turns NMEA lines into hub records; errors are counted in `stats`, never raised."""

    def __init__(
        self,
        source_name: str,
        stats: SourceStats | None = None,
        *,
        max_fragments: int = 1024,
        fragment_timeout_s: float = 10.0,
        fast_path: bool = True,
    ) -> None:
        """`fast_path=False` decodes every AIS type with pyais (the reference path)."""
        self.source_name = source_name
        self.stats = stats if stats is not None else SourceStats()
        self.max_fragments = max_fragments
        self.fragment_timeout_ns = int(fragment_timeout_s * NS_PER_S)
        self.ignored = 0  # valid messages of types the hub has no record for (6, 8, 11, GSV...)
        self._groups: dict[_GroupKey, _Group] = {}
        self._logged: set[str] = set()
        self._ais: dict[int, Callable[[Any, str, int, bytes], list[Record]]] = {
            1: self._class_a,
            2: self._class_a,
            3: self._class_a,
            4: self._type4,
            5: self._type5,
            9: self._type9,
            18: self._class_b,
            19: self._type19,
            21: self._type21,
            24: self._type24,
            27: self._type27,
        }
        # Types read straight from the payload int (positions.py, statics.py), not through pyais.
        self._fast: dict[int, Callable[[int, int, bytes, int], list[Record]]] = {}
        if fast_path:
            self._fast = {
                **dict.fromkeys(pos.LAYOUTS, self._fast_class_ab),
                pos.LONG_RANGE: self._fast_long_range,
                5: self._fast_type5,
                19: self._fast_type19,
                21: self._fast_type21,
                24: self._fast_type24,
            }

    @property
    def pending_fragments(self) -> int:
        return len(self._groups)

    def feed(self, line: bytes, now_ns: int, sender: str = "") -> list[Record]:
        """Decode one line (with or without line end); return the records it completed.

        `sender` tells feeds that share this decoder apart (a UDP peer) for fragment reassembly.
        """
        self.stats.messages += 1
        try:
            body, time_ns, station, group, tag_ignored = _split_line(line)
            if tag_ignored:
                self._error("tag_block_ignored", FrameError("bad tag block"), line)
            if time_ns is None:
                time_ns = now_ns
            else:
                # A tag block's c: (or a logger's time) has whole seconds or ms: two reports of one vessel in the
                # same second would be one InfluxDB point (same series and timestamp). An offset
                # below 1 ms derived from the sentence keeps them apart, identically on a replay.
                time_ns += zlib.crc32(body) % 1_000_000
            if body[3:6] in AIS_SENTENCES:
                stream = (sender, group or station)
                return self._ais_sentence(body, time_ns, stream, now_ns)
            return self._dollar_sentence(body, time_ns)
        except ChecksumError as exc:
            self._error("checksum", exc, line)
        except TruncatedError as exc:
            self._error("truncated", exc, line)
        except BitLengthError as exc:
            self._error("bit_length", exc, line)
        except FrameError as exc:
            self._error("framing", exc, line)
        except ProtocolError as exc:
            self._error("decode", exc, line)
        return []

    def feed_many(self, lines: Iterable[bytes], now_ns: int, sender: str = "") -> list[Record]:
        """Decode a batch received at `now_ns`.

        Lines without a tag block time are stamped now_ns + their index (ns): InfluxDB keeps one
        point per series and timestamp, so a vessel seen twice in one batch must not collide.
        """
        records: list[Record] = []
        feed = self.feed
        for index, line in enumerate(lines):
            if line:
                records.extend(feed(line, now_ns + index, sender))
        return records

    def _error(self, kind: str, exc: Exception, line: bytes) -> None:
        self.stats.error(kind)
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(
                "%s: %s error (%s) in %r; further ones only counted",
                self.source_name,
                kind,
                exc,
                line[:100],
            )

    # --- AIS -----------------------------------------------------------------------------------

    def _ais_sentence(
        self, body: bytes, time_ns: int, stream: tuple[str, str], now_ns: int
    ) -> list[Record]:
        fields = body.split(b",")
        if len(fields) != 7:
            raise FrameError(f"AIS sentence with {len(fields)} fields")
        _, count_f, number_f, seq_f, channel, payload, fill_f = fields
        count, number, fill_bits = _DIGIT.get(count_f), _DIGIT.get(number_f), _DIGIT.get(fill_f)
        if count is None or number is None or fill_bits is None:
            raise FrameError("AIS fragment fields are not digits")
        if not (1 <= number <= count and fill_bits <= 5 and payload):
            raise FrameError("AIS fragment fields out of range")
        if count > 1:
            # A tag block group id (g:) ties fragments together; otherwise channel + sequence id
            # per receiving station (IEC 61162-1 VDM fields 3 and 4), per sender.
            key = (b"" if stream[1][:2] == "g:" else channel, seq_f, *stream)
            assembled = self._reassemble(key, count, number, payload, fill_bits, time_ns, now_ns)
            if assembled is None:
                return []
            payload, fill_bits, time_ns = assembled
        return self._decode_payload(payload, fill_bits, time_ns)

    def _reassemble(
        self,
        key: _GroupKey,
        count: int,
        number: int,
        payload: bytes,
        fill_bits: int,
        time_ns: int,
        now_ns: int,
    ) -> tuple[bytes, int, int] | None:
        group = self._groups.get(key)
        if group is not None and (len(group.payloads) != count or group.payloads[number - 1]):
            # A new message reuses the sequence id before the old one completed.
            del self._groups[key]
            self.stats.error("fragment_dropped")
            group = None
        if group is None:
            self._expire(now_ns)
            group = _Group(now_ns, time_ns, [None] * count, count)
            self._groups[key] = group
        group.payloads[number - 1] = payload
        group.missing -= 1
        if number == count:
            group.fill_bits = fill_bits
        if group.missing:
            return None
        del self._groups[key]
        return b"".join(p for p in group.payloads if p), group.fill_bits, group.time_ns

    def _expire(self, now_ns: int) -> None:
        """Drop groups older than the timeout, and the oldest ones beyond the bound."""
        groups = self._groups
        while groups:
            key, oldest = next(iter(groups.items()))
            too_old = now_ns - oldest.started_ns > self.fragment_timeout_ns
            if not too_old and len(groups) < self.max_fragments:
                return
            del groups[key]
            self.stats.error("fragment_expired")

    def _decode_payload(self, payload: bytes, fill_bits: int, time_ns: int) -> list[Record]:
        msg_type = st.SIXBIT.get(payload[0], -1)  # the first 6 bits are the message type
        bits = len(payload) * 6 - fill_bits
        fast = self._fast.get(msg_type)
        if fast is not None:
            if bits not in _ALLOWED_BITS[msg_type]:
                raise BitLengthError(f"AIS type {msg_type} with {bits} bits")
            return fast(pos.payload_int(payload, fill_bits), bits, payload, time_ns)
        handler = self._ais.get(msg_type)
        if handler is None:
            if msg_type in MSG_CLASS:
                self.ignored += 1
            else:
                self.stats.error("unknown_type")
            return []
        if bits not in _ALLOWED_BITS[msg_type]:
            # A garbled or truncated payload decodes to some MMSI and position: a phantom vessel.
            raise BitLengthError(f"AIS type {msg_type} with {bits} bits")
        try:
            msg = MSG_CLASS[msg_type].from_vector(bit_vector(payload, fill_bits))
        except Exception as exc:  # pyais raises assorted errors on bit garbage
            raise ProtocolError(f"AIS payload does not decode: {exc!r}") from exc
        if msg.mmsi is None:
            raise TruncatedError("AIS payload too short")
        try:
            return handler(msg, f"{msg.mmsi:09d}", time_ns, payload)
        except (TypeError, ValueError, AttributeError) as exc:  # fields missing from short payloads
            raise ProtocolError(f"AIS type {msg_type} lacks fields: {exc!r}") from exc

    # --- fast path: fields read from the payload int, the same records as the pyais path -------

    def _fast_class_ab(self, value: int, bits: int, _payload: bytes, time_ns: int) -> list[Record]:
        """Types 1, 2, 3 and 18: the same record as `_moving` builds."""
        if bits != pos.POSITION_BITS:
            value = pos.align(value, bits, pos.POSITION_BITS)
        return [self._class_ab_record(value, pos.LAYOUTS[value >> 162], time_ns)]

    def _fast_long_range(
        self, value: int, bits: int, _payload: bytes, time_ns: int
    ) -> list[Record]:
        value = pos.align(value, bits, pos.LONG_RANGE_BITS)
        return [self._long_range(pos.read_long_range(value), time_ns)]

    def _class_ab_record(self, value: int, layout: pos.Layout, time_ns: int) -> VesselPosition:
        """A 168-bit class A/B position (or the first 168 bits of a type 19) as a record."""
        msg_type, mmsi, status, _, sog, _, lon, lat, cog, heading, _ = pos.class_ab_fields(
            value, layout
        )
        in_range = -LAT_MAX <= lat <= LAT_MAX and -LON_MAX <= lon <= LON_MAX
        return rec.vessel_position(
            mmsi=f"{mmsi:09d}",
            time_ns=time_ns,
            # positions.degrees, inlined: 1/10,000 min to degrees as pyais rounds them
            lat=((10 * lat + 3) // 6) / 1e6 if in_range else None,
            lon=((10 * lon + 3) // 6) / 1e6 if in_range else None,
            sog_kn=None if sog == pos.SOG_NA else sog / 10.0,
            cog_deg=None if cog == pos.COG_NA else cog / 10.0,
            heading_deg=None if heading == pos.HEADING_NA else float(heading),
            nav_status=None if status == pos.STATUS_NA or status < 0 else status,
            msg_type=msg_type,
            ais_class=layout.ais_class,
            source=self.source_name,
        )

    def _static(
        self, report: st.StaticReport, mmsi: str, time_ns: int, msg_type: int
    ) -> VesselStatic:
        name, callsign, imo, ship_type, length, beam = report
        return rec.vessel_static(
            mmsi=mmsi,
            time_ns=time_ns,
            name=name,
            callsign=callsign,
            imo=imo,
            ship_type=ship_type,
            length_m=length,
            beam_m=beam,
            msg_type=msg_type,
            source=self.source_name,
        )

    def _fast_type5(self, value: int, bits: int, payload: bytes, time_ns: int) -> list[Record]:
        mmsi = f"{(value >> (bits - 38)) & 0x3FFFFFFF:09d}"
        return [self._static(st.read_type5(value, bits, payload), mmsi, time_ns, 5)]

    def _fast_type19(self, value: int, bits: int, payload: bytes, time_ns: int) -> list[Record]:
        # The first 168 bits of a type 19 are laid out as a type 18 (Tables 49 and 50).
        position = self._class_ab_record(value >> (bits - 168), pos.LAYOUTS[18], time_ns)
        static = st.read_type19(value, bits, payload)
        return [position, self._static(static, position.mmsi, time_ns, 19)]

    def _fast_type21(self, value: int, bits: int, _payload: bytes, time_ns: int) -> list[Record]:
        # Type 21 (Table 72): lon 164-191, lat 192-218 in 1/10,000 min, as types 1-3.
        head = value >> (bits - 219)
        lon = (((head >> 27) & 0xFFFFFFF) ^ 0x8000000) - 0x8000000
        lat = ((head & 0x7FFFFFF) ^ 0x4000000) - 0x4000000
        in_range = -pos.LAT_MAX <= lat <= pos.LAT_MAX and -pos.LON_MAX <= lon <= pos.LON_MAX
        mmsi = f"{(head >> 181) & 0x3FFFFFFF:09d}"
        position = rec.vessel_position(
            mmsi=mmsi,
            time_ns=time_ns,
            lat=pos.degrees(lat) if in_range else None,
            lon=pos.degrees(lon) if in_range else None,
            msg_type=21,
            ais_class="AtoN",
            source=self.source_name,
        )
        name = st.read_type21_name(value, bits)
        static = rec.vessel_static(
            mmsi=mmsi, time_ns=time_ns, name=name, msg_type=21, source=self.source_name
        )
        return [position, static]

    def _fast_type24(self, value: int, bits: int, payload: bytes, time_ns: int) -> list[Record]:
        mmsi = (value >> (bits - 38)) & 0x3FFFFFFF
        part = st.type24_part(value, bits)
        if part == 0:
            report = st.read_type24a(value, bits)
        elif part == 1:
            report = st.read_type24b(value, bits, mmsi, payload)
        else:  # pyais raises UnknownPartNoException: the same "decode" error
            raise ProtocolError(f"AIS type 24 with part number {part}")
        return [self._static(report, f"{mmsi:09d}", time_ns, 24)]

    def _long_range(self, report: pos.PositionReport, time_ns: int) -> VesselPosition:
        lat, lon, sog, cog = report.lat, report.lon, report.sog, report.cog
        in_range = (
            -pos.LR_LAT_MAX <= lat <= pos.LR_LAT_MAX and -pos.LR_LON_MAX <= lon <= pos.LR_LON_MAX
        )
        return rec.vessel_position(
            mmsi=f"{report.mmsi:09d}",
            time_ns=time_ns,
            lat=pos.long_range_degrees(lat) if in_range else None,
            lon=pos.long_range_degrees(lon) if in_range else None,
            sog_kn=None if sog == pos.LR_SOG_NA else float(sog),
            cog_deg=None if cog == pos.LR_COG_NA else float(cog),
            nav_status=None if report.nav_status == pos.STATUS_NA else report.nav_status,
            msg_type=pos.LONG_RANGE,
            ais_class="A",
            source=self.source_name,
        )

    def _position(self, msg: Any, mmsi: str, time_ns: int, ais_class: str, **kw: Any) -> Record:
        lat, lon = _lat_lon(msg)
        return VesselPosition(
            mmsi=mmsi,
            time_ns=time_ns,
            lat=lat,
            lon=lon,
            msg_type=msg.msg_type,
            ais_class=ais_class,
            source=self.source_name,
            **kw,
        )

    def _moving(self, msg: Any, mmsi: str, time_ns: int, ais_class: str) -> VesselPosition:
        # ITU-R M.1371 types 1-3, 18, 19: SOG 1023 (102.3 kn), COG 3600 (360.0), heading 511 = n/a.
        lat, lon = msg.lat, msg.lon
        if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            lat = lon = None
        sog, cog, heading = msg.speed, msg.course, msg.heading
        return VesselPosition(
            mmsi=mmsi,
            time_ns=time_ns,
            lat=lat,
            lon=lon,
            sog_kn=None if sog == 102.3 else sog,
            cog_deg=None if cog == 360.0 else cog,
            heading_deg=None if heading is None or heading == 511 else float(heading),
            nav_status=_nav_status(msg) if ais_class == "A" else None,
            msg_type=msg.msg_type,
            ais_class=ais_class,
            registered=False,
            grid=NO_GRID,
            source=self.source_name,
        )

    def _class_a(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        return [self._moving(msg, mmsi, time_ns, "A")]

    def _class_b(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        return [self._moving(msg, mmsi, time_ns, "B")]

    def _type4(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        lat, lon = _lat_lon(msg)
        utc = _station_utc_s(msg)
        if lat is None and utc is None:  # nothing a point could hold
            self.ignored += 1
            return []
        return [
            AisBaseStation(
                mmsi=mmsi,
                time_ns=time_ns,
                lat=lat,
                lon=lon,
                station_utc_s=utc,
                source=self.source_name,
            )
        ]

    def _type9(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        # ITU-R M.1371 type 9: altitude 4095 and SOG 1023 (whole knots) mean "not available",
        # 4094 / 1022 "this or higher"; COG 3600 (1/10 degree) is "not available".
        lat, lon = _lat_lon(msg)
        sog, cog = msg.speed, msg.course
        return [
            SarAircraftPosition(
                mmsi=mmsi,
                time_ns=time_ns,
                lat=lat,
                lon=lon,
                altitude_m=None if msg.alt is None or msg.alt == 4095 else float(msg.alt),
                sog_kn=None if sog is None or sog == 1023 else float(sog),
                cog_deg=None if cog is None or cog >= 360.0 else float(cog),
                source=self.source_name,
            )
        ]

    def _type19(self, msg: Any, mmsi: str, time_ns: int, payload: bytes) -> list[Record]:
        length, beam = _dims(msg)
        static = VesselStatic(
            mmsi=mmsi,
            time_ns=time_ns,
            name=_text(msg.shipname),
            ship_type=st.ship_type(payload, 263),
            length_m=length,
            beam_m=beam,
            msg_type=19,
            source=self.source_name,
        )
        return [*self._class_b(msg, mmsi, time_ns, payload), static]

    def _type27(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        # Type 27 (long-range): SOG 63 kn and COG 511 deg mean "not available".
        kw = {"sog_kn": _none_if(msg.speed, 63.0), "cog_deg": _none_if(msg.course, 511.0)}
        return [self._position(msg, mmsi, time_ns, "A", nav_status=_nav_status(msg), **kw)]

    def _type21(self, msg: Any, mmsi: str, time_ns: int, _payload: bytes) -> list[Record]:
        # Name and extension are each padded with '@' or spaces: strip each before joining.
        name = _text(f"{_text(msg.name) or ''}{_text(msg.name_ext) or ''}")
        static = VesselStatic(
            mmsi=mmsi, time_ns=time_ns, name=name, msg_type=21, source=self.source_name
        )
        return [self._position(msg, mmsi, time_ns, "AtoN"), static]

    def _type5(self, msg: Any, mmsi: str, time_ns: int, payload: bytes) -> list[Record]:
        length, beam = _dims(msg)
        return [
            VesselStatic(
                mmsi=mmsi,
                time_ns=time_ns,
                name=_text(msg.shipname),
                callsign=_text(msg.callsign),
                imo=msg.imo or None,
                ship_type=st.ship_type(payload, 232),
                length_m=length,
                beam_m=beam,
                msg_type=5,
                source=self.source_name,
            )
        ]

    def _type24(self, msg: Any, mmsi: str, time_ns: int, payload: bytes) -> list[Record]:
        if isinstance(msg, MessageType24PartA):
            return [
                VesselStatic(
                    mmsi=mmsi,
                    time_ns=time_ns,
                    name=_text(msg.shipname),
                    msg_type=24,
                    source=self.source_name,
                )
            ]
        length, beam = _dims(msg) if hasattr(msg, "to_bow") else (None, None)
        return [
            VesselStatic(
                mmsi=mmsi,
                time_ns=time_ns,
                callsign=_text(msg.callsign),
                ship_type=st.ship_type(payload, 40),
                length_m=length,
                beam_m=beam,
                msg_type=24,
                source=self.source_name,
            )
        ]

    # --- $-sentences (the gateway's own GNSS / compass) ----------------------------------------

    def _dollar_sentence(self, body: bytes, time_ns: int) -> list[Record]:
        kind = body[3:6].decode("ascii")
        if kind not in FIX_READERS:
            self.ignored += 1
            return []
        lat, lon, sog, cog, heading = read_fix(kind, body)
        return [
            GatewayFix(
                time_ns=time_ns,
                lat=lat,
                lon=lon,
                sog_kn=sog,
                cog_deg=cog,
                heading_deg=heading,
                sentence=kind,
                source=self.source_name,
            )
        ]
