"""CJ/T 188-2004 household water meters over RS-485: frames, the 901F reading, a polling source."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.modbus_meter import ALARM_NAMES, MeterHealth, poll_forever
from hub.clock import NS_PER_S, Clock
from hub.errors import ChecksumError, DeviceUnreachable, FrameError, HubError, ProtocolError
from hub.records import MeterAlarm, WaterMeterReading
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger(__name__)

# CJ/T 188-2004 frame: [FE..] 68 T A0..A6 C L DI0 DI1 SER DATA.. CS 16, multi-byte data low byte
# first, CS = sum mod 256 of the bytes from 68 through the data.
PREAMBLE = 0xFE
START = 0x68
END = 0x16
HEADER_LEN = 11  # 68 T A0..A6 C L
METER_TYPE_COLD_WATER = 0x10
CTRL_READ_DATA = 0x01
CTRL_READ_DATA_REPLY = 0x81  # D7=1: slave -> master; D6=1 (0xC1) would be an abnormal reply
CTRL_ABNORMAL = 0x40
DI_METER_DATA = b"\x90\x1f"  # 901F: read metering data (DI0 = 90h sent first)
METER_DATA_LEN = 22  # DI(2) SER(1) current(5) settlement(5) clock(7) status(2)
BROADCAST_ADDRESS = "AAAAAAAAAAAAAA"
# Unit codes (CJ/T 188-2004 table of units) for volume: m³ and litre.
VOLUME_UNITS_M3 = {0x2C: 1.0, 0x29: 0.001}
VALVE_STATES = {0b00: "open", 0b01: "closed", 0b11: "abnormal"}


@dataclass(slots=True, frozen=True)
class Frame:
    meter_type: int
    address: str  # 14 digits as printed on the meter (A6 .. A0)
    control: int
    data: bytes


@dataclass(slots=True, frozen=True)
class MeterData:
    """The 901F reply of a water meter."""

    ser: int
    total_m3: float
    settlement_total_m3: float
    meter_time: datetime | None  # the meter's own clock (naive, meter-local), None if not a date
    valve: str  # open / closed / abnormal / unknown
    battery_low: bool
    status: int  # ST1 | ST2 << 8, raw

    def alarm_bits(self, vendor_alarms: Mapping[str, int] | None = None) -> int:
        """Hub alarm flags; `vendor_alarms` maps vendor-defined ST2 bits (e.g. magnetic attack)."""
        flags = MeterAlarm(0)
        for name, mask in (vendor_alarms or {}).items():
            if (self.status >> 8) & mask:
                flags |= ALARM_NAMES[name]
        if self.battery_low:
            flags |= MeterAlarm.LOW_BATTERY
        if self.valve == "closed":
            flags |= MeterAlarm.VALVE_CLOSED
        elif self.valve in ("abnormal", "unknown"):
            flags |= MeterAlarm.FAULT
        return int(flags)


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


def build_read_request(
    address: str, meter_type: int = METER_TYPE_COLD_WATER, ser: int = 0, preamble: int = 2
) -> bytes:
    """The 901F read-metering-data request for one meter."""
    request = Frame(meter_type, address, CTRL_READ_DATA, DI_METER_DATA + bytes([ser & 0xFF]))
    return build_frame(request, preamble)


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
    return Frame(raw[1], decode_address(raw[2:9]), raw[9], bytes(raw[HEADER_LEN:-2]))


def _bcd(raw: bytes, what: str) -> int:
    """Packed BCD, low byte first."""
    digits = raw[::-1].hex()
    if not digits.isdigit():
        raise FrameError(f"{what}: {raw.hex()} is not BCD")
    return int(digits)


def _volume_m3(raw: bytes, what: str) -> float:
    """4-byte BCD XXXXXX.XX followed by a unit byte."""
    factor = VOLUME_UNITS_M3.get(raw[4])
    if factor is None:
        raise FrameError(f"{what}: unit {raw[4]:#04x} is not a volume unit")
    return _bcd(raw[:4], what) / 100 * factor


def _meter_clock(raw: bytes) -> datetime | None:
    """7-byte BCD YYYYMMDDhhmmss sent low byte first (ss mm hh DD MM YYlo YYhi)."""
    try:
        stamp = str(_bcd(raw, "clock")).zfill(14)
        return datetime.strptime(stamp, "%Y%m%d%H%M%S")
    except (FrameError, ValueError):
        return None


def parse_meter_data(frame: Frame) -> MeterData:
    """Decode a 901F reply (control 81h); an abnormal reply or wrong layout is a ProtocolError."""
    if frame.control & CTRL_ABNORMAL:
        raise ProtocolError(
            f"meter {frame.address} answered abnormal (control {frame.control:#04x})"
        )
    if frame.control != CTRL_READ_DATA_REPLY:
        raise FrameError(f"control {frame.control:#04x} is not a read-data reply")
    data = frame.data
    if len(data) < METER_DATA_LEN or data[:2] != DI_METER_DATA:
        raise FrameError(f"not a 901F reply: {data[:2].hex()} with {len(data)} data bytes")
    status = data[20] | data[21] << 8
    return MeterData(
        ser=data[2],
        total_m3=_volume_m3(data[3:8], "current total"),
        settlement_total_m3=_volume_m3(data[8:13], "settlement total"),
        meter_time=_meter_clock(data[13:20]),
        # ST1 D0-D1 valve (00 open, 01 closed, 11 abnormal), D2 battery (1 = low).
        valve=VALVE_STATES.get(status & 0b11, "unknown"),
        battery_low=bool(status & 0b100),
        status=status,
    )


def encode_meter_data(data: MeterData) -> bytes:
    """Inverse of parse_meter_data for the simulator and tests (units: m³)."""

    def bcd(value: int, size: int) -> bytes:
        return bytes.fromhex(str(value).zfill(size * 2))[::-1]

    clock = data.meter_time.strftime("%Y%m%d%H%M%S") if data.meter_time else "0" * 14
    return (
        DI_METER_DATA
        + bytes([data.ser & 0xFF])
        + bcd(round(data.total_m3 * 100), 4)
        + b"\x2c"
        + bcd(round(data.settlement_total_m3 * 100), 4)
        + b"\x2c"
        + bytes.fromhex(clock)[::-1]
        + data.status.to_bytes(2, "little")
    )


# --- configuration ----------------------------------------------------------------------------


class Cjt188MeterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    address: str = Field(pattern=r"^[0-9]{14}$")
    meter_type: int = Field(default=METER_TYPE_COLD_WATER, ge=0x10, le=0x19)


class Cjt188Config(SourceConfig):
    """A serial line of CJ/T 188 meters (the standard's default framing: 2400 baud 8E1)."""

    type: Literal["cjt188"] = "cjt188"
    serial_port: str
    baudrate: int = Field(default=2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    preamble_bytes: int = Field(default=2, ge=0, le=4)
    poll_interval_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    offline_after_failures: int = Field(default=3, ge=1)
    dead_probe_interval_s: float = Field(default=3600.0, gt=0)
    # The meter clock is local time; it is used as the timestamp only when this close to ours.
    meter_utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
    clock_tolerance_s: float = Field(default=300.0, ge=0)
    # ST2 is vendor-defined: map its bits to hub alarms, e.g. {tamper = 0x08} for a magnetic attack.
    vendor_status_alarms: dict[str, int] = Field(default_factory=dict)
    meters: tuple[Cjt188MeterConfig, ...] = ()

    @field_validator("vendor_status_alarms")
    @classmethod
    def _known_alarms(cls, alarms: dict[str, int]) -> dict[str, int]:
        for name, mask in alarms.items():
            if name not in ALARM_NAMES or not 0 < mask <= 0xFF:
                raise ValueError(f"bad alarm {name!r} = {mask:#x}; known: {sorted(ALARM_NAMES)}")
        return alarms

    @model_validator(mode="after")
    def _consistent(self) -> Cjt188Config:
        if self.timeout_s >= self.poll_interval_s:
            raise ValueError("timeout_s must be shorter than poll_interval_s")
        ids = [m.meter_id for m in self.meters]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate meter_id in meters")
        return self

    def build(self, ctx: SourceContext) -> Cjt188Source:
        return Cjt188Source(self, ctx.clock)


# --- the source -------------------------------------------------------------------------------


class SerialLink:
    """Request/response over a serial port with pyserial-asyncio-fast (never blocks the loop)."""

    def __init__(self, cfg: Cjt188Config) -> None:
        self.cfg = cfg
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = b""

    async def open(self) -> None:
        import serial
        import serial_asyncio_fast

        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.cfg.serial_port,
                baudrate=self.cfg.baudrate,
                parity=self.cfg.parity,
                stopbits=self.cfg.stopbits,
                bytesize=8,
            )
        except (OSError, serial.SerialException) as exc:
            raise DeviceUnreachable(f"cannot open {self.cfg.serial_port}: {exc}") from exc

    async def exchange(self, request: bytes, address: str) -> Frame:
        """Send a request, return the first valid reply frame from `address`.

        Frames from other addresses are skipped; a corrupt frame raises ProtocolError.
        """
        if self._reader is None or self._writer is None:
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._buffer = b""  # a late answer to an earlier request is stale now
        self._writer.write(request)
        await self._writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.timeout_s
        while True:
            raw, self._buffer = split_frame(self._buffer)
            if raw is not None:
                frame = parse_frame(raw)
                if frame.address == address and frame.control & 0x80:
                    return frame
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeviceUnreachable(f"no reply from meter {address}")
            try:
                chunk = await asyncio.wait_for(self._reader.read(256), remaining)
            except TimeoutError:
                raise DeviceUnreachable(f"no reply from meter {address}") from None
            if not chunk:
                await self.close()
                raise DeviceUnreachable(f"serial port {self.cfg.serial_port} closed")
            self._buffer += chunk

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass(slots=True)
class _Meter:
    cfg: Cjt188MeterConfig
    health: MeterHealth = field(default_factory=MeterHealth)
    clock_off: bool = False


class Cjt188Source(Source):
    """Polls each CJ/T 188 meter on one serial line with a 901F read; failing meters go last."""

    kind = "cjt188"

    def __init__(self, cfg: Cjt188Config, clock: Clock, link: SerialLink | None = None) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.clock = clock
        self.link = link or SerialLink(cfg)
        self._meters = [_Meter(m) for m in cfg.meters]
        self._ser = 0
        self.offline_total = 0

    @property
    def offline_meters(self) -> frozenset[str]:
        return frozenset(m.cfg.meter_id for m in self._meters if m.health.offline)

    async def run(self, publish: Publish) -> None:
        await poll_forever(
            self.clock,
            self.cfg.poll_interval_s,
            self.stats,
            lambda deadline_ns: self.poll_once(publish, deadline_ns=deadline_ns),
        )

    async def poll_once(
        self, publish: Publish, deadline_ns: int | None = None
    ) -> list[WaterMeterReading]:
        now_ns = self.clock.now_ns()
        if deadline_ns is None:
            deadline_ns = now_ns + int(self.cfg.poll_interval_s * NS_PER_S)
        due = [m for m in self._meters if m.health.next_probe_ns <= now_ns]
        due.sort(key=lambda m: m.health.failures > 0)
        timeout_ns = int(self.cfg.timeout_s * NS_PER_S)
        readings: list[WaterMeterReading] = []
        for meter in due:
            if meter.health.failures and deadline_ns - self.clock.now_ns() < timeout_ns:
                break
            reading = await self._poll_meter(meter)
            if reading is not None:
                readings.append(reading)
        if readings:
            await publish(readings)
            self.stats.records += len(readings)
        return readings

    async def _poll_meter(self, meter: _Meter) -> WaterMeterReading | None:
        self._ser = (self._ser + 1) & 0xFF
        request = build_read_request(
            meter.cfg.address, meter.cfg.meter_type, self._ser, self.cfg.preamble_bytes
        )
        try:
            frame = await self.link.exchange(request, meter.cfg.address)
            data = parse_meter_data(frame)
        except DeviceUnreachable:
            self._failed(meter)
            return None
        except ProtocolError as exc:
            self._bad_frame(meter, exc)
            return None
        return self._reading(meter, data)

    def _reading(self, meter: _Meter, data: MeterData) -> WaterMeterReading:
        now_ns = self.clock.now_ns()
        self.stats.messages += 1
        self.stats.last_message_ns = now_ns
        offline_s = meter.health.succeeded(now_ns)
        if offline_s is not None:
            log.info("meter %s back online after %.0f s", meter.cfg.meter_id, offline_s)
        return WaterMeterReading(
            meter_id=meter.cfg.meter_id,
            time_ns=self._timestamp(meter, data.meter_time, now_ns),
            total_m3=data.total_m3,
            alarm_bits=data.alarm_bits(self.cfg.vendor_status_alarms),
            source=self.name,
        )

    def _timestamp(self, meter: _Meter, meter_time: datetime | None, now_ns: int) -> int:
        """The meter's clock when it is sane (close to ours), else the gateway clock."""
        if meter_time is None:
            return now_ns
        zone = timezone(timedelta(hours=self.cfg.meter_utc_offset_hours))
        meter_ns = int(meter_time.replace(tzinfo=zone).timestamp()) * NS_PER_S
        sane = abs(meter_ns - now_ns) <= self.cfg.clock_tolerance_s * NS_PER_S
        if not sane:
            self.stats.error("meter_clock_off")
        if not sane and not meter.clock_off:
            off_s = (meter_ns - now_ns) / NS_PER_S
            log.warning(
                "meter %s clock is off by %.0f s; using gateway time", meter.cfg.meter_id, off_s
            )
        meter.clock_off = not sane
        return meter_ns if sane else now_ns

    def _failed(self, meter: _Meter) -> None:
        self.stats.error("timeout")
        cfg = self.cfg
        threshold = cfg.offline_after_failures
        now_ns = self.clock.now_ns()
        if meter.health.failed(now_ns, threshold, cfg.poll_interval_s, cfg.dead_probe_interval_s):
            self.offline_total += 1
            log.warning("meter %s (%s) offline after %d failed reads", meter.cfg.meter_id,
                        meter.cfg.address, threshold)  # fmt: skip

    def _bad_frame(self, meter: _Meter, exc: HubError) -> None:
        kind = "checksum" if isinstance(exc, ChecksumError) else "bad_frame"
        self.stats.messages += 1
        self.stats.error(kind)
        if meter.health.first(kind):
            log.warning("meter %s: %s", meter.cfg.meter_id, exc)

    async def aclose(self) -> None:
        await self.link.close()
