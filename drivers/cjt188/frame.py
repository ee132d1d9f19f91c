"""CJ/T 188 link frames: FE preamble, 68 T A0..A6 C L DATA CS 16, BCD addresses, stream splitting."""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import ChecksumError, FrameError

# CJ/T 188-2004 §6 (unchanged in 2018): [FE..] 68 T A0..A6 C L DATA CS 16; multi-byte fields low
# byte first; CS = sum mod 256 of the bytes from 68 through the data.
PREAMBLE = 0xFE
START = 0x68
END = 0x16
HEADER_LEN = 11  # 68 T A0..A6 C L
METER_TYPE_COLD_WATER = 0x10
CTRL_READ_DATA = 0x01
CTRL_READ_DATA_REPLY = 0x81  # D7=1: slave -> master; D6=1 (0xC1) is an abnormal reply
CTRL_ABNORMAL = 0x40
BROADCAST_ADDRESS = "AAAAAAAAAAAAAA"


@dataclass(slots=True, frozen=True, kw_only=True)
class Frame:
    meter_type: int
    address: str  # 14 digits as printed on the meter (A6 .. A0)
    control: int
    data: bytes


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_address(address: str) -> bytes:
    """14 BCD digits (A6..A0 as printed) -> A0..A6 on the wire, low byte first."""
    if len(address) != 14:
        raise FrameError(f"meter address must have 14 digits, got {address!r}")
    try:
        return bytes.fromhex(address)[::-1]
    except ValueError as exc:
        raise FrameError(f"meter address {address!r} is not BCD") from exc


def decode_address(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def build_frame(frame: Frame, preamble: int = 2) -> bytes:
    if len(frame.data) > 0xFF:
        raise FrameError("data longer than 255 bytes")
    body = (
        bytes([START, frame.meter_type])
        + encode_address(frame.address)
        + bytes([frame.control, len(frame.data)])
        + frame.data
    )
    return bytes([PREAMBLE]) * preamble + body + bytes([checksum(body), END])


def split_frame(buffer: bytes) -> tuple[bytes | None, bytes]:
    """Take one complete frame off a byte stream: (frame bytes or None, remaining buffer).

    Preamble and noise before the start byte are dropped; an incomplete frame stays buffered.
    """
    start = buffer.find(START)
    if start < 0:
        return None, b""
    buffer = buffer[start:]
    if len(buffer) < HEADER_LEN:
        return None, buffer
    total = HEADER_LEN + buffer[10] + 2
    if len(buffer) < total:
        return None, buffer
    return buffer[:total], buffer[total:]


def parse_frame(raw: bytes) -> Frame:
    """Parse one frame (optionally preceded by FE bytes); raises FrameError or ChecksumError."""
    raw = raw.lstrip(bytes([PREAMBLE]))
    if len(raw) < HEADER_LEN + 2:
        raise FrameError(f"short frame ({len(raw)} bytes)")
    if raw[0] != START:
        raise FrameError(f"frame starts with {raw[0]:#04x}, not 68h")
    total = HEADER_LEN + raw[10] + 2
    if len(raw) != total:
        raise FrameError(f"length field says {total} bytes, frame has {len(raw)}")
    if raw[-1] != END:
        raise FrameError(f"frame ends with {raw[-1]:#04x}, not 16h")
    if checksum(raw[:-2]) != raw[-2]:
        raise ChecksumError(f"checksum {raw[-2]:#04x}, computed {checksum(raw[:-2]):#04x}")
    return Frame(
        meter_type=raw[1],
        address=decode_address(raw[2:9]),
        control=raw[9],
        data=bytes(raw[HEADER_LEN:-2]),
    )
