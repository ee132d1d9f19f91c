"""A serial line of CJ/T 188 water meters: its configuration and the polling source."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.cjt188.frame import CTRL_ABNORMAL, METER_TYPE_COLD_WATER, Frame
from drivers.cjt188.link import SerialLink
from drivers.cjt188.meter_data import (
    DiOrder,
    MeterData,
    UnitRefused,
    build_read_request,
    parse_meter_data,
)
from drivers.cjt188.status import DEFAULT_LAYOUT, StatusLayout, status_layout, status_layouts
from drivers.modbus_meter import ALARM_NAMES
from drivers.polling import MeterHealth, due_in_order, poll_forever
from hub.clock import NS_PER_S, Clock
from hub.errors import ChecksumError, DeviceUnreachable, FrameError, HubError, ProtocolError
from hub.logs import ThrottledLog
from hub.records import WaterMeterReading
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger(__name__)
DiOrderSetting = Literal["auto", "901F", "1F90"]


# --- configuration ----------------------------------------------------------------------------


class Cjt188MeterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    address: str = Field(pattern=r"^[0-9]{14}$")
    meter_type: int = Field(default=METER_TYPE_COLD_WATER, ge=0x10, le=0x19)
    # Per-meter overrides of the line's settings (a line may mix vendors).
    di_order: DiOrderSetting | None = None
    status_layout: str | None = None


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
    # Wire order of the 901F identifier in requests; "auto" tries 90 1F, then 1F 90 on a silent
    # meter, and keeps what worked per meter. Replies are accepted in either order.
    di_order: DiOrderSetting = "auto"
    # Which ST1/ST2 bits mean what (drivers/profiles/cjt188_status.toml); undefined bits raise nothing.
    status_layout: str = DEFAULT_LAYOUT
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
        known = status_layouts()
        for name in {self.status_layout, *(m.status_layout for m in self.meters)} - {None}:
            if name not in known:
                raise ValueError(f"unknown status_layout {name!r}; known: {sorted(known)}")
        ids = [m.meter_id for m in self.meters]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate meter_id in meters")
        return self

    def build(self, ctx: SourceContext) -> Cjt188Source:
        return Cjt188Source(self, ctx.clock)


# --- the source -------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Meter:
    cfg: Cjt188MeterConfig
    di_setting: DiOrderSetting
    layout: StatusLayout
    health: MeterHealth = field(default_factory=MeterHealth)
    clock_off: bool = False
    learned: DiOrder | None = None  # with "auto": the request order this meter answered

    def orders(self) -> tuple[DiOrder, ...]:
        """Request orders to try this poll: the configured one, the learned one, or both."""
        if self.di_setting != "auto":
            return (self.di_setting,)
        return (self.learned,) if self.learned else ("901F", "1F90")


class Cjt188Source(Source):
    """Polls each CJ/T 188 meter on one serial line with a 901F read; failing meters go last."""

    kind = "cjt188"

    def __init__(self, cfg: Cjt188Config, clock: Clock, link: SerialLink | None = None) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.clock = clock
        self.link = link or SerialLink(cfg)
        self._meters = [
            _Meter(
                cfg=m,
                di_setting=m.di_order or cfg.di_order,
                layout=status_layout(m.status_layout or cfg.status_layout),
            )
            for m in cfg.meters
        ]
        self._ser = 0
        self._rejects = ThrottledLog(log)
        self.offline_total = 0

    @property
    def offline_meters(self) -> frozenset[str]:
        return frozenset(m.cfg.meter_id for m in self._meters if m.health.offline)

    @property
    def di_orders(self) -> dict[str, DiOrder | None]:
        """meter_id -> the DI order its requests use (None: "auto" has not found one yet)."""
        return {
            m.cfg.meter_id: m.learned if m.di_setting == "auto" else m.di_setting
            for m in self._meters
        }

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
        due = due_in_order(self._meters, now_ns)
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
        refused: Frame | None = None  # an abnormal reply: the meter may not know this DI order
        for order in meter.orders():
            try:
                frame = await self.link.exchange(self._request(meter, order), meter.cfg.address)
            except DeviceUnreachable:
                continue  # silent: with "auto", try the other order
            except ProtocolError as exc:
                self._bad_frame(meter, exc)
                return None
            if frame.control & CTRL_ABNORMAL and len(meter.orders()) > 1:
                refused = frame
                continue
            self._learn(meter, order)
            return self._decode(meter, frame)
        if refused is not None:
            return self._decode(meter, refused)  # alive, but refused both: counted, no reading
        self._failed(meter)
        return None

    def _decode(self, meter: _Meter, frame: Frame) -> WaterMeterReading | None:
        try:
            data = parse_meter_data(frame)
        except ProtocolError as exc:
            self._bad_frame(meter, exc)
            return None
        return self._reading(meter, data)

    def _request(self, meter: _Meter, order: DiOrder) -> bytes:
        self._ser = (self._ser + 1) & 0xFF
        cfg = meter.cfg
        return build_read_request(
            cfg.address, cfg.meter_type, self._ser, self.cfg.preamble_bytes, di_order=order
        )

    def _learn(self, meter: _Meter, order: DiOrder) -> None:
        if meter.di_setting == "auto" and meter.learned != order:
            meter.learned = order
            log.info("meter %s answers read requests with DI %s", meter.cfg.meter_id, order)

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
            alarm_bits=meter.layout.decode(data.status, self.cfg.vendor_status_alarms).alarm_bits,
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
            meter.learned = None  # it may come back as another meter: probe both orders again
            log.warning("meter %s (%s) offline after %d failed reads", meter.cfg.meter_id,
                        meter.cfg.address, threshold)  # fmt: skip

    def _bad_frame(self, meter: _Meter, exc: HubError) -> None:
        kind = _error_kind(exc)
        self.stats.messages += 1
        self.stats.error(kind)
        self._rejects.warning("meter %s: %s reply refused: %s", meter.cfg.meter_id, kind, exc)

    async def aclose(self) -> None:
        await self.link.close()


def _error_kind(exc: HubError) -> str:
    """The counter a refused reply goes to."""
    if isinstance(exc, ChecksumError):
        return "checksum"
    if isinstance(exc, UnitRefused):
        return "unit_refused"
    if isinstance(exc, FrameError):
        return "bad_frame"
    return "abnormal_reply"
