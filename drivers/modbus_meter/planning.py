"""Merge a meter's registers into few reads, and decode the replies into reading values."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from drivers.modbus_meter.profiles import (
    ALARM_NAMES,
    MAX_READ_REGISTERS,
    DataType,
    MeterProfile,
    ValueSpec,
    WordOrder,
)
from hub.errors import ProtocolError
from hub.records import MeterAlarm

Number = int | float


@dataclass(slots=True, frozen=True)
class ReadRequest:
    function: int
    address: int
    count: int

    def covers(self, spec: ValueSpec) -> bool:
        return (
            spec.function == self.function
            and self.address <= spec.address
            and spec.address + spec.count <= self.address + self.count
        )


def plan_reads(
    specs: Iterable[ValueSpec],
    max_gap_registers: int,
    max_read_registers: int = MAX_READ_REGISTERS,
) -> tuple[ReadRequest, ...]:
    """Merge the registers of one meter into as few reads as possible, per function code.

    Two spans merge when at most `max_gap_registers` unused registers lie between them and the
    merged read stays within `max_read_registers`.
    """
    specs = list(specs)
    plan: list[ReadRequest] = []
    for function in sorted({s.function for s in specs}):
        spans = sorted((s.address, s.address + s.count) for s in specs if s.function == function)
        start, end = spans[0]
        for span_start, span_end in spans[1:]:
            merged_end = max(end, span_end)
            if span_start - end <= max_gap_registers and merged_end - start <= max_read_registers:
                end = merged_end
                continue
            plan.append(ReadRequest(function, start, end - start))
            start, end = span_start, span_end
        plan.append(ReadRequest(function, start, end - start))
    return tuple(plan)


# --- decoding ---------------------------------------------------------------------------------


def decode_registers(
    registers: Sequence[int], data_type: DataType, word_order: WordOrder
) -> Number:
    """Decode one value; 32-bit types take two registers, "big" = high word first (AB CD)."""
    if data_type == "uint16":
        return registers[0]
    if data_type == "int16":
        return registers[0] - 0x1_0000 if registers[0] & 0x8000 else registers[0]
    high, low = (
        (registers[0], registers[1]) if word_order == "big" else (registers[1], registers[0])
    )
    raw = (high << 16) | low
    if data_type == "uint32":
        return raw
    if data_type == "int32":
        return raw - 0x1_0000_0000 if raw & 0x8000_0000 else raw
    return float(struct.unpack(">f", raw.to_bytes(4, "big"))[0])


def encode_registers(value: Number, data_type: DataType, word_order: WordOrder) -> list[int]:
    """Inverse of decode_registers (used by the simulators and tests)."""
    if data_type in ("uint16", "int16"):
        return [int(value) & 0xFFFF]
    if data_type == "float32":
        raw = int.from_bytes(struct.pack(">f", float(value)), "big")
    else:
        raw = int(value) & 0xFFFF_FFFF
    high, low = raw >> 16, raw & 0xFFFF
    return [high, low] if word_order == "big" else [low, high]


@dataclass(slots=True, frozen=True, kw_only=True)
class MeterValues:
    total_m3: float | None = None
    flow_m3h: float | None = None
    battery_v: float | None = None
    alarm_bits: int | None = None
    reverse_flow: bool | None = None
    bad_fields: tuple[str, ...] = ()


def normalise_alarms(device_bits: int, alarm_masks: Mapping[str, int]) -> int:
    flags = MeterAlarm(0)
    for name, mask in alarm_masks.items():
        if device_bits & mask:
            flags |= ALARM_NAMES[name]
    return int(flags)


def decode_meter(
    profile: MeterProfile, responses: Mapping[ReadRequest, Sequence[int]]
) -> MeterValues:
    """Turn the register blocks of one poll into reading values; non-finite values become None."""
    sums: dict[str, float] = {}
    bad: set[str] = set()
    device_bits: int | None = None
    reverse: bool | None = None
    for spec in profile.values:
        request = next((r for r in responses if r.covers(spec)), None)
        if request is None:
            raise ProtocolError(f"no read covers {spec.field} at {spec.address}")
        offset = spec.address - request.address
        block = responses[request]
        if len(block) < offset + spec.count:
            raise ProtocolError(f"short response for {spec.field} at {spec.address}")
        value = decode_registers(
            block[offset : offset + spec.count], spec.type, profile.word_order_of(spec)
        )
        if spec.field == "alarm_bits":
            device_bits = (device_bits or 0) | int(value)
        elif spec.field == "reverse_flow":
            reverse = bool(value)
        elif math.isfinite(scaled := value * spec.scale):
            sums[spec.field] = sums.get(spec.field, 0.0) + scaled
        else:
            bad.add(spec.field)
    alarms = None if device_bits is None else normalise_alarms(device_bits, profile.alarms)
    flow = None if "flow_m3h" in bad else sums.get("flow_m3h")
    if reverse is None and alarms is not None and "reverse_flow" in profile.alarms:
        reverse = bool(alarms & MeterAlarm.REVERSE_FLOW)
    if reverse is None and flow is not None and profile.reverse_from_negative_flow:
        reverse = flow < 0
    if reverse:
        alarms = (alarms or 0) | MeterAlarm.REVERSE_FLOW
    return MeterValues(
        total_m3=None if "total_m3" in bad else sums.get("total_m3"),
        flow_m3h=flow,
        battery_v=None if "battery_v" in bad else sums.get("battery_v"),
        alarm_bits=alarms,
        reverse_flow=reverse,
        bad_fields=tuple(sorted(bad)),
    )
