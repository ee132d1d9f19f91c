"""Modbus bus config and poller: one merged read per meter per poll, offline meters backed off."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.modbus_meter.planning import ReadRequest, decode_meter, plan_reads
from drivers.modbus_meter.profiles import (
    MAX_READ_REGISTERS,
    Accumulator,
    MeterProfile,
    load_profile,
)
from drivers.modbus_meter.transport import (
    BusUnreachable,
    ExceptionReply,
    PymodbusReader,
    RegisterReader,
    rtu_char_s,
    rtu_read_wire_s,
)
from drivers.polling import MeterHealth, ResponseTimes, due_in_order, poll_forever
from hub.clock import NS_PER_S, Clock
from hub.errors import ConfigError, DeviceUnreachable, ProtocolError
from hub.records import WaterMeterReading
from hub.source import Publish, Source, SourceConfig, SourceContext

log = logging.getLogger(__name__)

# Exception codes 0x0A/0x0B come from a gateway whose target did not answer: that is silence.
_GATEWAY_NO_RESPONSE = frozenset({0x0A, 0x0B})


def default_timeout_s(poll_interval_s: float) -> float:
    """A third of the poll interval, at most 1 s: a silent meter then leaves room for the others
    in its cycle. A Modbus RTU slave answers within tens of ms; 125 registers take 0.28 s at 9600."""
    return min(1.0, poll_interval_s / 3)


class MeterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    device_id: int = Field(ge=1, le=247)
    profile: str = "generic"
    # Overrides the profile's accumulator for meters that count several (TUF-2000M: positive, net).
    accumulator: Accumulator | None = None


class ModbusBusConfig(SourceConfig):
    """One Modbus bus (a serial line or a TCP endpoint/gateway) with its meters."""

    type: Literal["modbus"] = "modbus"
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str = ""
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    poll_interval_s: float = Field(default=60.0, gt=0)
    # Default: a third of the poll interval, at most 1 s (see default_timeout_s).
    timeout_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    # At 9600 baud one extra request costs about as much bus time as ~30 unused registers.
    max_gap_registers: int = Field(default=32, ge=0, le=MAX_READ_REGISTERS)
    offline_after_failures: int = Field(default=3, ge=1)
    # A meter that has not answered once since the hub started holds up the bus for nothing.
    offline_after_failures_never_answered: int = Field(default=1, ge=1)
    dead_probe_interval_s: float = Field(default=600.0, gt=0)
    # Opt-in: a live meter's first try waits a timeout fitted to its answers, never below the
    # read's line time plus min_timeout_s (a slow meter's turnaround). Off by default: on a
    # loaded gateway the event loop's own latency can exceed it (measured in bench/RESULTS.md).
    fitted_timeouts: bool = False
    min_timeout_s: float = Field(default=0.1, ge=0)
    meters: tuple[MeterConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _derived_timeout(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("timeout_s") is None:
            interval = data.get("poll_interval_s", 60.0)
            if isinstance(interval, int | float) and interval > 0:
                return {**data, "timeout_s": default_timeout_s(float(interval))}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModbusBusConfig:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport 'rtu' needs serial_port")
        if self.timeout_s >= self.poll_interval_s:
            raise ValueError("timeout_s must be shorter than poll_interval_s")
        for key in ("meter_id", "device_id"):
            seen = [getattr(m, key) for m in self.meters]
            if len(seen) != len(set(seen)):
                raise ValueError(f"duplicate {key} in meters")
        for meter in self.meters:
            try:
                load_profile(meter.profile, meter.accumulator)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return self

    def build(self, ctx: SourceContext) -> ModbusBusSource:
        return ModbusBusSource(self, ctx.clock)


@dataclass(slots=True, kw_only=True)
class _Meter:
    cfg: MeterConfig
    profile: MeterProfile
    plan: tuple[ReadRequest, ...]
    health: MeterHealth = field(default_factory=MeterHealth)
    response_times: ResponseTimes = field(default_factory=ResponseTimes)
    cut_short: bool = False  # its last read failed on a fitted (shorter) timeout


class ModbusBusSource(Source):
    """Polls every meter of one bus in turn; meters that failed before go after the healthy ones.

    A failed read yields no reading. Every due meter is read once per cycle, so after
    `offline_after_failures` consecutive failures (as many cycles; `..._never_answered` for a
    meter that has not answered since start) a meter is offline (in `offline_meters`, one log
    line) and is then probed with exponential backoff. Only extra same-cycle retries wait for
    room: the rest of the interval must fit a full timeout.

    With `fitted_timeouts`, the first try of a meter that answered last time waits a timeout
    fitted to its recent response times (see `ResponseTimes`); retries, probes and meters never
    heard from wait the full `timeout_s`, and a read cut short gets its retry even without room,
    so a meter that merely slowed down (or a loaded gateway) costs no reading when retries >= 1.
    """

    kind = "modbus"

    def __init__(
        self, cfg: ModbusBusConfig, clock: Clock, reader: RegisterReader | None = None
    ) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.clock = clock
        self._reader = reader
        self._meters = [self._meter(m) for m in cfg.meters]
        self._bus_down = False
        self.offline_total = 0  # how many times a meter went offline
        serial = cfg.transport == "rtu"
        self._char_s = (
            rtu_char_s(cfg.baudrate, cfg.bytesize, cfg.parity, cfg.stopbits) if serial else 0.0
        )

    def _meter(self, cfg: MeterConfig) -> _Meter:
        profile = load_profile(cfg.profile, cfg.accumulator)
        gap = self.cfg.max_gap_registers
        plan = plan_reads(profile.values, gap, profile.max_read_registers)
        return _Meter(cfg=cfg, profile=profile, plan=plan)

    @property
    def offline_meters(self) -> frozenset[str]:
        return frozenset(m.cfg.meter_id for m in self._meters if m.health.offline)

    @property
    def requests_per_poll(self) -> int:
        return sum(len(m.plan) for m in self._meters)

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
        """One poll cycle: every due meter gets one read, healthy ones first, then those that
        failed before (each failure counts towards offline, so none is starved by a busy bus);
        extra retries only while the cycle has room for a full timeout."""
        if deadline_ns is None:
            deadline_ns = self.clock.now_ns() + int(self.cfg.poll_interval_s * NS_PER_S)
        now_ns = self.clock.now_ns()
        due = due_in_order(self._meters, now_ns)
        readings: list[WaterMeterReading] = []
        retry: list[_Meter] = []
        for meter in due:
            had_failed = meter.health.failures > 0
            reading = await self._poll_meter(meter, fitted_timeout=not had_failed)
            if reading is not None:
                readings.append(reading)
            elif meter.health.failures and not meter.health.offline and not had_failed:
                retry.append(meter)
            if self._bus_down:
                return await self._publish(publish, readings)
        await self._publish(publish, readings)
        return readings + await self._retry(publish, retry, deadline_ns)

    async def _retry(
        self, publish: Publish, retry: list[_Meter], deadline_ns: int
    ) -> list[WaterMeterReading]:
        """Same-cycle retries of meters that just failed for the first time, while time is left."""
        timeout_ns = int(self.cfg.timeout_s * NS_PER_S)
        readings: list[WaterMeterReading] = []
        for meter in retry:
            for attempt in range(self.cfg.retries):
                if self._bus_down:
                    return await self._publish(publish, readings)
                room = deadline_ns - self.clock.now_ns() >= timeout_ns
                # A reply cut short by a fitted timeout is likely late, not lost: worth one overrun.
                if not room and not (attempt == 0 and meter.cut_short):
                    break
                reading = await self._poll_meter(meter, fitted_timeout=False)
                if reading is not None:
                    readings.append(reading)
                    break
                if meter.health.offline:
                    break
        return await self._publish(publish, readings)

    async def _publish(
        self, publish: Publish, readings: list[WaterMeterReading]
    ) -> list[WaterMeterReading]:
        if readings:
            await publish(readings)
            self.stats.records += len(readings)
        return readings

    def _timeout_s(self, meter: _Meter, request: ReadRequest, fitted: bool) -> float | None:
        if not (fitted and self.cfg.fitted_timeouts) or meter.health.offline:
            return None
        floor_s = rtu_read_wire_s(self._char_s, request.count) + self.cfg.min_timeout_s
        timeout_s = meter.response_times.timeout_s(floor_s, self.cfg.timeout_s)
        return None if timeout_s >= self.cfg.timeout_s else timeout_s

    async def _poll_meter(self, meter: _Meter, *, fitted_timeout: bool) -> WaterMeterReading | None:
        reader = self._reader_or_open()
        responses: dict[ReadRequest, list[int]] = {}
        meter.cut_short = False
        for request in meter.plan:
            timeout_s = self._timeout_s(meter, request, fitted_timeout)
            asked_ns = self.clock.now_ns()
            try:
                reply = await reader.read(
                    request.function,
                    request.address,
                    request.count,
                    meter.cfg.device_id,
                    timeout_s=timeout_s,
                )
            except BusUnreachable as exc:
                self._bus_state(down=True, reason=str(exc))
                return None
            except DeviceUnreachable:
                meter.cut_short = timeout_s is not None
                self._failed(meter, "timeout")
                return None
            except ProtocolError as exc:
                self._answered_badly(meter, "bad_response", str(exc))
                return None
            self._bus_state(down=False)
            meter.response_times.record((self.clock.now_ns() - asked_ns) / NS_PER_S)
            if isinstance(reply, ExceptionReply):
                self._exception_reply(meter, request, reply)
                return None
            responses[request] = reply
        return self._reading(meter, responses)

    def _reading(
        self, meter: _Meter, responses: Mapping[ReadRequest, Sequence[int]]
    ) -> WaterMeterReading | None:
        try:
            values = decode_meter(meter.profile, responses)
        except ProtocolError as exc:
            self._answered_badly(meter, "bad_response", str(exc))
            return None
        if values.bad_fields:
            self.stats.error("bad_value")
            self._log_once(
                meter, "bad_value", "meter %s: non-finite %s", meter.cfg.meter_id, values.bad_fields
            )
        self._succeeded(meter)
        return WaterMeterReading(
            meter_id=meter.cfg.meter_id,
            time_ns=self.stats.last_message_ns,
            total_m3=values.total_m3,
            flow_m3h=values.flow_m3h,
            battery_v=values.battery_v,
            alarm_bits=values.alarm_bits,
            reverse_flow=values.reverse_flow,
            source=self.name,
        )

    def _reader_or_open(self) -> RegisterReader:
        if self._reader is None:
            self._reader = PymodbusReader(self.cfg)
        return self._reader

    def _exception_reply(self, meter: _Meter, request: ReadRequest, reply: ExceptionReply) -> None:
        if reply.code in _GATEWAY_NO_RESPONSE:
            self._failed(meter, "timeout")
            return
        where = f"fc{request.function} {request.address}+{request.count}"
        detail = f"exception {reply.code:#04x} for {where}"
        self._answered_badly(meter, "modbus_exception", detail)

    def _answered_badly(self, meter: _Meter, kind: str, detail: str) -> None:
        """The device is alive but gave no usable data: counted, logged once, not offline."""
        self.stats.messages += 1
        self.stats.error(kind)
        self._log_once(
            meter, kind, "meter %s (device %d): %s", meter.cfg.meter_id, meter.cfg.device_id, detail
        )

    def _failed(self, meter: _Meter, kind: str) -> None:
        self.stats.error(kind)
        cfg = self.cfg
        now_ns = self.clock.now_ns()
        health = meter.health
        if health.failed(
            now_ns,
            cfg.offline_after_failures,
            cfg.poll_interval_s,
            cfg.dead_probe_interval_s,
            threshold_never_answered=cfg.offline_after_failures_never_answered,
        ):
            self.offline_total += 1
            self.stats.counts["meter_offline"] += 1
            log.warning(
                "meter %s (device %d on %s) offline after %d failed read%s; probed with backoff",
                meter.cfg.meter_id, meter.cfg.device_id, self.name, health.offline_after,
                "s" if health.offline_after > 1 else "",
            )  # fmt: skip

    def _succeeded(self, meter: _Meter) -> None:
        now_ns = self.clock.now_ns()
        self.stats.messages += 1
        self.stats.last_message_ns = now_ns
        offline_s = meter.health.succeeded(now_ns)
        if offline_s is not None:
            self.stats.counts["meter_back_online"] += 1
            log.info(
                "meter %s (device %d) back online after %.0f s",
                meter.cfg.meter_id,
                meter.cfg.device_id,
                offline_s,
            )

    def _bus_state(self, *, down: bool, reason: str = "") -> None:
        self.stats.connected = not down
        if down:
            self.stats.error("bus_unreachable")
            self.stats.last_error = f"bus unreachable: {reason}"[:200]
        if down != self._bus_down:
            self._bus_down = down
            if down:
                log.warning("modbus bus %s unreachable: %s", self.name, reason)
            else:
                log.info("modbus bus %s reachable", self.name)

    def _log_once(self, meter: _Meter, kind: str, msg: str, *args: object) -> None:
        if meter.health.first(kind):
            log.warning(msg, *args)

    async def aclose(self) -> None:
        if self._reader is not None:
            await self._reader.close()
