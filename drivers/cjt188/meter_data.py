"""The 901F read-metering-data exchange: request, reply decoding (both DI orders), units, clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from drivers.cjt188.frame import (
    CTRL_ABNORMAL,
    CTRL_READ_DATA,
    CTRL_READ_DATA_REPLY,
    METER_TYPE_COLD_WATER,
    Frame,
    build_frame,
)
from hub.errors import FrameError, ProtocolError

DiOrder = Literal["901F", "1F90"]
# The data identifier 901Fh on the wire: CJ/T 188-2004 meters send DI1 first (90 1F); CJ/T 188-2018
# sends the 16-bit identifier low byte first like every other field (1F 90), and so do several
# 2004-era vendors. Replies are accepted in either order; requests use the line's `di_order`.
DI_BYTES: dict[DiOrder, bytes] = {"901F": b"\x90\x1f", "1F90": b"\x1f\x90"}
DI_METER_DATA = DI_BYTES["901F"]
METER_DATA_LEN = 22  # DI(2) SER(1) current(5) settlement(5) clock(7) status(2)

# Unit byte (CJ/T 188-2004 table of units; 2018 adds the x10 / x100 steps): volume units as m³.
VOLUME_UNITS_M3 = {0x29: 0.001, 0x2A: 0.01, 0x2B: 0.1, 0x2C: 1.0, 0x2D: 10.0, 0x2E: 100.0}
# Energy (01h J .. 13h GJx100) and power (14h W .. 1Ch MWx100) are heat-meter quantities, flow
# rates (32h L/h .. 37h m³/h) are not totals: a water total in any of them is refused.
NOT_WATER_UNITS = {
    **{code: "energy (heat meter)" for code in range(0x01, 0x14)},
    **{code: "power (heat meter)" for code in range(0x14, 0x1D)},
    **{code: "flow rate" for code in range(0x32, 0x38)},
}
_CENTURY = 0x20  # BCD 20: meter clocks are 20xx


class UnitRefused(FrameError):
    """A quantity whose unit byte is not a volume (heat-meter energy, a flow rate, an unknown code)."""


@dataclass(slots=True, frozen=True, kw_only=True)
class MeterData:
    """The 901F reply of a water meter, volumes converted to m³."""

    ser: int
    total_m3: float
    settlement_total_m3: float
    meter_time: datetime | None  # the meter's own clock (naive, meter-local), None if not a date
    status: int  # ST1 | ST2 << 8, raw; its meaning depends on the vendor's status layout
    di_order: DiOrder = "901F"


def build_read_request(
    address: str,
    meter_type: int = METER_TYPE_COLD_WATER,
    ser: int = 0,
    preamble: int = 2,
    di_order: DiOrder = "901F",
) -> bytes:
    """The 901F read-metering-data request for one meter, DI in the given wire order."""
    request = Frame(
        meter_type=meter_type,
        address=address,
        control=CTRL_READ_DATA,
        data=DI_BYTES[di_order] + bytes([ser & 0xFF]),
    )
    return build_frame(request, preamble)


def request_di_order(frame: Frame) -> DiOrder | None:
    """The DI order of a read request (for simulators), None if it is not a 901F read."""
    for order, di in DI_BYTES.items():
        if frame.data[:2] == di:
            return order
    return None


def _bcd(raw: bytes, what: str) -> int:
    """Packed BCD, low byte first."""
    digits = raw[::-1].hex()
    if not digits.isdigit():
        raise FrameError(f"{what}: {raw.hex()} is not BCD")
    return int(digits)


def volume_m3(raw: bytes, what: str) -> float:
    """4-byte BCD XXXXXX.XX followed by a unit byte, converted to m³."""
    unit = raw[4]
    factor = VOLUME_UNITS_M3.get(unit)
    if factor is None:
        kind = NOT_WATER_UNITS.get(unit, "unknown unit")
        raise UnitRefused(f"{what}: unit {unit:#04x} is {kind}, not a volume")
    return round(_bcd(raw[:4], what) / 100 * factor, 6)


def meter_clock(raw: bytes) -> datetime | None:
    """7-byte BCD time: ss mm hh DD MM YY CC (standard, low byte first) or, as some vendors send
    it, CC YY MM DD hh mm ss. The order whose century byte is 20h and which is a valid date wins."""
    for natural in (raw[::-1], raw):  # the standard's order first
        if natural[0] != _CENTURY:
            continue
        try:
            return datetime.strptime(natural.hex(), "%Y%m%d%H%M%S")
        except ValueError:
            continue
    return None


def parse_meter_data(frame: Frame) -> MeterData:
    """Decode a 901F reply (control 81h), DI in either order; a wrong layout is a ProtocolError."""
    if frame.control & CTRL_ABNORMAL:
        raise ProtocolError(
            f"meter {frame.address} answered abnormal (control {frame.control:#04x})"
        )
    if frame.control != CTRL_READ_DATA_REPLY:
        raise FrameError(f"control {frame.control:#04x} is not a read-data reply")
    data = frame.data
    order = next((o for o, di in DI_BYTES.items() if data[:2] == di), None)
    if len(data) < METER_DATA_LEN or order is None:
        raise FrameError(f"not a 901F reply: {data[:2].hex()} with {len(data)} data bytes")
    return MeterData(
        ser=data[2],
        total_m3=volume_m3(data[3:8], "current total"),
        settlement_total_m3=volume_m3(data[8:13], "settlement total"),
        meter_time=meter_clock(data[13:20]),
        status=data[20] | data[21] << 8,
        di_order=order,
    )


def encode_meter_data(data: MeterData, unit: int = 0x2C) -> bytes:
    """Inverse of parse_meter_data for the simulator and tests (standard clock order)."""
    factor = VOLUME_UNITS_M3[unit]

    def bcd(value: int, size: int) -> bytes:
        if not 0 <= value < 10 ** (size * 2):
            raise FrameError(f"{value} does not fit {size} BCD bytes")
        return bytes.fromhex(str(value).zfill(size * 2))[::-1]

    clock = data.meter_time.strftime("%Y%m%d%H%M%S") if data.meter_time else "0" * 14
    return (
        DI_BYTES[data.di_order]
        + bytes([data.ser & 0xFF])
        + bcd(round(data.total_m3 / factor * 100), 4)
        + bytes([unit])
        + bcd(round(data.settlement_total_m3 / factor * 100), 4)
        + bytes([unit])
        + bytes.fromhex(clock)[::-1]
        + data.status.to_bytes(2, "little")
    )
