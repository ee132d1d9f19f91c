"""Simulated water meters for tests, demo and bench: a Modbus server and a CJ/T 188 meter."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from drivers import cjt188
from drivers.modbus_meter import (
    ALARM_NAMES,
    MeterProfile,
    ValueSpec,
    encode_registers,
    load_profile,
)
from hub.clock import NS_PER_S, Clock, SystemClock
from hub.errors import ProtocolError
from hub.records import MeterAlarm


@dataclass(slots=True, frozen=True)
class MeterState:
    total_m3: float
    flow_m3h: float
    battery_v: float
    alarms: int = 0  # MeterAlarm flags


@dataclass(slots=True)
class MeterSim:
    """One meter's behaviour as a function of elapsed seconds; mutable so tests can steer it.

    Normal use is a draw of `use_flow_m3h` for `use_s_per_hour` seconds at the start of each hour.
    """

    device_id: int
    start_total_m3: float = 100.0
    use_flow_m3h: float = 0.6
    use_s_per_hour: float = 300.0
    stop_after_s: float | None = None  # water use stops for good (the elder case)
    leak_m3h: float = 0.0  # continuous flow on top of normal use
    battery_v: float = 3.6
    alarms: int = 0
    dead: bool = False  # never answers: silence, not an exception reply
    behaviour: Callable[[float], MeterState] | None = None

    def state(self, elapsed_s: float) -> MeterState:
        if self.behaviour is not None:
            return self.behaviour(elapsed_s)
        used_s = elapsed_s if self.stop_after_s is None else min(elapsed_s, self.stop_after_s)
        hours, into_hour = divmod(used_s, 3600.0)
        draw_s = hours * self.use_s_per_hour + min(into_hour, self.use_s_per_hour)
        drawing = into_hour < self.use_s_per_hour and used_s == elapsed_s
        total = (
            self.start_total_m3 + (draw_s * self.use_flow_m3h + elapsed_s * self.leak_m3h) / 3600
        )
        flow = (self.use_flow_m3h if drawing else 0.0) + self.leak_m3h
        return MeterState(total, flow, self.battery_v, self.alarms)


def normal(device_id: int, **kw: Any) -> MeterSim:
    return MeterSim(device_id, **kw)


def stops_using_water(device_id: int, after_s: float, **kw: Any) -> MeterSim:
    return MeterSim(device_id, stop_after_s=after_s, **kw)


def leaking(device_id: int, leak_m3h: float = 0.05, **kw: Any) -> MeterSim:
    return MeterSim(device_id, leak_m3h=leak_m3h, **kw)


def dead(device_id: int, **kw: Any) -> MeterSim:
    return MeterSim(device_id, dead=True, **kw)


def low_battery(device_id: int, **kw: Any) -> MeterSim:
    return MeterSim(device_id, battery_v=3.05, alarms=int(MeterAlarm.LOW_BATTERY), **kw)


def tampered(device_id: int, **kw: Any) -> MeterSim:
    return MeterSim(device_id, alarms=int(MeterAlarm.TAMPER), **kw)


def building(
    meters: int, elder_device_id: int | None = None, elder_stops_after_s: float = 0.0
) -> list[MeterSim]:
    """Device ids 1..meters in normal use; the elder's meter stops using water after a while."""
    return [
        stops_using_water(i, elder_stops_after_s) if i == elder_device_id else normal(i)
        for i in range(1, meters + 1)
    ]


# --- encoding a state into a profile's registers ------------------------------------------------


def _split(value: float, specs: Sequence[ValueSpec]) -> list[float]:
    """Split a value over the parts of one field (integer part, then fraction)."""
    parts: list[float] = []
    remaining = value
    for index, spec in enumerate(specs):
        raw = remaining / spec.scale
        if spec.type != "float32":
            last = index == len(specs) - 1
            raw = float(round(raw) if last else math.floor(raw + 1e-9))
        parts.append(raw)
        remaining -= raw * spec.scale
    return parts


def _device_bits(alarms: int, profile: MeterProfile) -> int:
    bits = 0
    for name, mask in profile.alarms.items():
        if alarms & ALARM_NAMES[name]:
            bits |= mask & -mask  # the lowest bit of the profile's mask
    return bits


def register_image(profile: MeterProfile, state: MeterState) -> dict[tuple[int, int], int]:
    """{(function, address): register} of a meter in `state`, encoded as the profile says."""
    numbers = {"total_m3": state.total_m3, "flow_m3h": state.flow_m3h, "battery_v": state.battery_v}
    image: dict[tuple[int, int], int] = {}
    by_field: dict[str, list[ValueSpec]] = {}
    for spec in profile.values:
        by_field.setdefault(spec.field, []).append(spec)
    for name, specs in by_field.items():
        if name == "alarm_bits":
            raws = [float(_device_bits(state.alarms, profile))] * len(specs)
        elif name == "reverse_flow":
            raws = [float(bool(state.alarms & MeterAlarm.REVERSE_FLOW))] * len(specs)
        else:
            raws = _split(numbers[name], specs)
        for spec, raw in zip(specs, raws, strict=True):
            words = encode_registers(raw, spec.type, profile.word_order_of(spec))
            for offset, word in enumerate(words):
                image[(spec.function, spec.address + offset)] = word
    return image


# --- Modbus server --------------------------------------------------------------------------------


class ModbusMeterServer:
    """A pymodbus server (TCP, or RTU on a serial port) holding simulated meters of one profile.

    Counts the requests it receives per device id; a dead meter's requests are dropped unanswered.
    """

    def __init__(
        self, meters: Sequence[MeterSim], profile: str = "generic", clock: Clock | None = None
    ) -> None:
        self.meters = {m.device_id: m for m in meters}
        self.profile = load_profile(profile)
        self.clock = clock or SystemClock()
        self.start_ns = self.clock.now_ns()
        self.requests: Counter[int] = Counter()
        self._server: Any = None

    def elapsed_s(self) -> float:
        return (self.clock.now_ns() - self.start_ns) / NS_PER_S

    def _devices(self) -> list[Any]:
        from pymodbus.simulator import DataType, SimData, SimDevice

        blocks: dict[int, list[Any]] = {}
        for function in (3, 4):
            addresses = [
                a
                for s in self.profile.values
                if s.function == function
                for a in (s.address, s.address + 1)
            ]
            start, end = (min(addresses), max(addresses) + 1) if addresses else (0, 1)
            blocks[function] = [
                SimData(start, count=end - start, values=0, datatype=DataType.REGISTERS)
            ]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return [
            SimDevice(
                device_id,
                simdata=(bits, list(bits), blocks[3], blocks[4]),
                action=functools.partial(self._refresh, device_id),
            )
            for device_id in self.meters
        ]

    async def _refresh(
        self,
        device_id: int,
        function_code: int,
        start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        _set_values: Any,
    ) -> None:
        """pymodbus calls this before answering: write the meter's current registers."""
        state = self.meters[device_id].state(self.elapsed_s())
        for (function, address), word in register_image(self.profile, state).items():
            if function == function_code:
                registers[address - start_address] = word

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if sending:
            return pdu
        self.requests[pdu.dev_id] += 1
        meter = self.meters.get(pdu.dev_id)
        return None if meter is None or meter.dead else pdu

    async def start_tcp(self, host: str, port: int) -> None:
        from pymodbus.server import ModbusTcpServer

        self._server = ModbusTcpServer(
            self._devices(), address=(host, port), trace_pdu=self._trace_pdu
        )
        await self._server.serve_forever(background=True)

    async def start_rtu(self, port: str, baudrate: int = 9600, parity: str = "N") -> None:
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusSerialServer

        self._server = ModbusSerialServer(
            self._devices(),
            framer=FramerType.RTU,
            port=port,
            baudrate=baudrate,
            parity=parity,
            trace_pdu=self._trace_pdu,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None


# --- paced Modbus RTU line ------------------------------------------------------------------------


def modbus_crc(frame: bytes) -> int:
    """CRC-16/MODBUS (Modbus over serial line v1.02, 6.2.2); sent low byte first."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + modbus_crc(frame).to_bytes(2, "little")


_READ_REQUEST_BYTES = 8  # id, function, address (2), count (2), CRC (2)
_MAX_RECORDED = 100_000
_STAMP_UNCERTAINTY_S = 0.0002


class PacedRtuSlave:
    """Simulated meters on one end of a serial link, timed like a real RS-485 line at `baudrate`.

    A pty delivers bytes instantly; this slave lets each request occupy the line for its length in
    character times before answering, and releases each reply byte one character time after the
    previous one (a UART hands a byte over when its stop bit ends). Absent and dead meters stay
    silent, as on a real bus. It records, as the slave sees them, the silence between the end of
    each reply and the first byte of the next request (`gaps_s`) and when each device was asked.
    """

    def __init__(
        self,
        meters: Sequence[MeterSim],
        profile: str = "generic",
        baudrate: int = 9600,
        bits_per_char: int = 10,
        turnaround_s: float = 0.002,
        silent_for_s: Mapping[int, float] | None = None,
    ) -> None:
        self.meters = {m.device_id: m for m in meters}
        self.silent_for_s = dict(silent_for_s or {})  # device id -> silent for its first seconds
        self.profile = load_profile(profile)
        self.char_s = bits_per_char / baudrate
        self.turnaround_s = turnaround_s
        self.start_s = time.monotonic()
        self.requests: Counter[int] = Counter()
        self.request_times: dict[int, list[float]] = {}
        self.gaps_s: list[float] = []
        self.bad_frames = 0
        self.unmeasured_gaps = 0
        self._reply_end_s: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, port: str) -> None:
        import serial_asyncio_fast

        reader, self._writer = await serial_asyncio_fast.open_serial_connection(
            url=port, baudrate=9600, bytesize=8, parity="N", stopbits=1
        )
        self._task = asyncio.create_task(self._serve(reader, self._writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        first_byte_s = 0.0
        while chunk := await reader.read(256):
            if not buffer:
                first_byte_s = time.monotonic()
                if self._reply_end_s is not None and len(self.gaps_s) < _MAX_RECORDED:
                    self.gaps_s.append(first_byte_s - self._reply_end_s)
                self._reply_end_s = None
            buffer += chunk
            while len(buffer) >= _READ_REQUEST_BYTES:
                frame, buffer = buffer[:_READ_REQUEST_BYTES], buffer[_READ_REQUEST_BYTES:]
                if modbus_crc(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                    self.bad_frames += 1
                    buffer = b""
                    break
                # The request ends on the wire len * char after its first byte, then the meter thinks.
                end_s = first_byte_s + len(frame) * self.char_s + self.turnaround_s
                await _sleep_until(end_s)
                reply = self.answer(frame, time.monotonic())
                if reply is not None:
                    await self._send_paced(writer, reply)

    def answer(self, frame: bytes, now_s: float) -> bytes | None:
        device_id, function = frame[0], frame[1]
        address = int.from_bytes(frame[2:4], "big")
        count = int.from_bytes(frame[4:6], "big")
        self.requests[device_id] += 1
        times = self.request_times.setdefault(device_id, [])
        if len(times) < _MAX_RECORDED:
            times.append(now_s)
        meter = self.meters.get(device_id)
        silent = now_s - self.start_s < self.silent_for_s.get(device_id, 0.0)
        if meter is None or meter.dead or silent:
            return None
        if function not in (3, 4) or not 1 <= count <= 125:
            return with_crc(bytes([device_id, function | 0x80, 0x01 if function > 4 else 0x03]))
        image = register_image(self.profile, meter.state(now_s - self.start_s))
        words = [image.get((function, address + i), 0) for i in range(count)]
        data = b"".join(w.to_bytes(2, "big") for w in words)
        return with_crc(bytes([device_id, function, len(data)]) + data)

    async def _send_paced(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        start_s = time.monotonic()
        for index, byte in enumerate(reply[:-1]):
            await _sleep_until(start_s + (index + 1) * self.char_s)
            writer.write(bytes([byte]))
        await _sleep_until(start_s + len(reply) * self.char_s)
        before_s = time.monotonic()
        writer.write(reply[-1:])
        after_s = time.monotonic()
        # The reply ends when the master can read its last byte. If this process was descheduled
        # around that write, the master may have read it long before `after_s`: no gap measured.
        if after_s - before_s <= _STAMP_UNCERTAINTY_S:
            self._reply_end_s = after_s
        else:
            self.unmeasured_gaps += 1
        await writer.drain()

    def report(self) -> dict[str, Any]:
        """What the slave saw, as JSON-able data (times relative to its start)."""
        return {
            "char_s": self.char_s,
            "requests": {str(k): v for k, v in self.requests.items()},
            "request_times_s": {
                str(k): [t - self.start_s for t in v] for k, v in self.request_times.items()
            },
            "gaps_s": self.gaps_s,
            "unmeasured_gaps": self.unmeasured_gaps,
            "bad_frames": self.bad_frames,
        }

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()


async def _sleep_until(when_s: float) -> None:
    if (left := when_s - time.monotonic()) > 0:
        await asyncio.sleep(left)


# --- CJ/T 188 meter simulator ---------------------------------------------------------------------


TAMPER_ST2_BIT = 0x08


@dataclass(slots=True)
class Cjt188MeterSim:
    address: str
    meter: MeterSim = field(default_factory=lambda: MeterSim(0))
    valve_closed: bool = False
    clock_offset_s: float = 0.0  # how far the meter's own clock is off
    # The DI order the meter understands and answers in (CJ/T 188-2018 meters: "1F90"); a request
    # in the other order gets silence, as on a real bus.
    di_order: cjt188.DiOrder = "901F"
    unit: int = 0x2C  # unit byte of its totals (2Ch m³, 29h L, ...)


class Cjt188Simulator:
    """CJ/T 188 meters answering 901F reads on one end of a serial link (a pty in tests)."""

    def __init__(
        self,
        meters: Sequence[Cjt188MeterSim],
        clock: Clock | None = None,
        utc_offset_hours: float = 8.0,
    ) -> None:
        self.meters = {m.address: m for m in meters}
        self.clock = clock or SystemClock()
        self.start_ns = self.clock.now_ns()
        self.zone = timezone(timedelta(hours=utc_offset_hours))
        self.requests: Counter[str] = Counter()
        self.corrupt_next = 0  # answer this many requests with a bad checksum
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, port: str, baudrate: int = 2400, parity: str = "E") -> None:
        import serial_asyncio_fast

        reader, self._writer = await serial_asyncio_fast.open_serial_connection(
            url=port, baudrate=baudrate, parity=parity, bytesize=8, stopbits=1
        )
        self._task = asyncio.create_task(self._serve(reader, self._writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while chunk := await reader.read(256):
            buffer += chunk
            while True:
                raw, buffer = cjt188.split_frame(buffer)
                if raw is None:
                    break
                reply = self.answer(raw)
                if reply:
                    writer.write(reply)
                    await writer.drain()

    def answer(self, raw: bytes) -> bytes | None:
        """The reply a meter on the bus gives to `raw`, or None (not addressed, dead, garbage)."""
        try:
            request = cjt188.parse_frame(raw)
        except ProtocolError:
            return None
        sim = self.meters.get(request.address)
        if sim is None or request.control != cjt188.CTRL_READ_DATA:
            return None
        self.requests[request.address] += 1
        if sim.meter.dead or cjt188.request_di_order(request) != sim.di_order:
            return None
        reply = cjt188.build_frame(
            cjt188.Frame(
                meter_type=request.meter_type,
                address=sim.address,
                control=cjt188.CTRL_READ_DATA_REPLY,
                data=self._data(sim, request.data[2]),
            )
        )
        if self.corrupt_next:
            self.corrupt_next -= 1
            reply = reply[:-2] + bytes([(reply[-2] + 1) & 0xFF]) + reply[-1:]
        return reply

    def _data(self, sim: Cjt188MeterSim, ser: int) -> bytes:
        now_ns = self.clock.now_ns()
        state = sim.meter.state((now_ns - self.start_ns) / NS_PER_S)
        meter_time = datetime.fromtimestamp(now_ns / NS_PER_S + sim.clock_offset_s, self.zone)
        # ST1: D0-D1 valve, D2 battery low; ST2 bit 3: magnetic attack (a common vendor choice)
        status = 0b01 if sim.valve_closed else 0
        status |= 0b100 if state.alarms & MeterAlarm.LOW_BATTERY else 0
        status |= TAMPER_ST2_BIT << 8 if state.alarms & MeterAlarm.TAMPER else 0
        data = cjt188.MeterData(
            ser=ser,
            total_m3=state.total_m3,
            settlement_total_m3=math.floor(state.total_m3),
            meter_time=meter_time.replace(tzinfo=None, microsecond=0),
            status=status,
            di_order=sim.di_order,
        )
        return cjt188.encode_meter_data(data, unit=sim.unit)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()


# --- command line (the bench runs the simulator in its own process) -------------------------------


async def _serve_forever(args: argparse.Namespace) -> None:
    meters = [normal(device_id) for device_id in range(1, args.meters + 1)]
    server = ModbusMeterServer(meters, profile=args.profile)
    await server.start_tcp(args.host, args.port)
    print(f"serving {args.meters} meters on {args.host}:{args.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


async def _serve_rtu_paced(args: argparse.Namespace) -> dict[str, Any]:
    """Serve on a serial port in its own process, so the slave's timestamps are not delayed by the
    master's event loop; write what it saw to --report when stopped (SIGTERM or SIGINT)."""
    silent = dict(
        (int(device), float(seconds))
        for device, seconds in (item.split(":") for item in args.silent_for)
    )
    meters = [dead(i) if i in args.dead else normal(i) for i in range(1, args.meters + 1)]
    slave = PacedRtuSlave(meters, args.profile, args.baudrate, silent_for_s=silent)
    await slave.start(args.rtu_paced)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving {args.meters} meters on {args.rtu_paced} at {args.baudrate} baud", flush=True)
    await stop.wait()
    await slave.stop()
    return slave.report()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve simulated Modbus water meters.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--meters", type=int, default=32)
    parser.add_argument("--profile", default="generic")
    parser.add_argument("--rtu-paced", metavar="SERIAL_PORT", help="serve RTU, paced at the baud")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--dead", type=int, action="append", default=[], help="device id")
    parser.add_argument("--silent-for", action="append", default=[], help="DEVICE:SECONDS")
    parser.add_argument("--report", help="JSON file written on exit (paced RTU only)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if not args.rtu_paced:
            asyncio.run(_serve_forever(args))
            return
        report = asyncio.run(_serve_rtu_paced(args))
        if args.report:
            Path(args.report).write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
