"""`hub modbus probe`: read a meter's registers under both address bases, say which is plausible.

Manuals number registers from 1 (REG0001, 40001) or from 0, and public readers of the same meter
disagree. Reading one register off gives values that decode without error but are absurd: a
float of 1e-27, a "decimal fraction" of 15965, a negative total. The probe reads the profile's
registers as the profile declares them and shifted by one, and reports which base decodes to
plausible readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.modbus_meter.planning import ReadRequest, decode_registers, plan_reads
from drivers.modbus_meter.poller import MeterConfig, ModbusBusConfig
from drivers.modbus_meter.profiles import AddressBase, MeterProfile, ValueSpec, load_profile
from drivers.modbus_meter.transport import ExceptionReply, PymodbusReader, RegisterReader
from hub.errors import ConfigError, DeviceUnreachable, ProtocolError

# Beyond these a decoded value is a misread, not a measurement.
_TINY_FLOAT, _HUGE_FLOAT = 1e-12, 1e12
_LIMITS = {"total_m3": 1e9, "flow_m3h": 1e6, "battery_v": 100.0}


@dataclass(slots=True, frozen=True)
class BaseVerdict:
    address_base: AddressBase
    problems: tuple[str, ...]  # empty: every value is plausible

    @property
    def plausible(self) -> bool:
        return not self.problems


@dataclass(slots=True, frozen=True, kw_only=True)
class ProbeResult:
    meter_id: str
    device_id: int
    declared_base: AddressBase
    verdicts: tuple[BaseVerdict, ...]

    @property
    def plausible_bases(self) -> tuple[AddressBase, ...]:
        return tuple(v.address_base for v in self.verdicts if v.plausible)

    @property
    def ok(self) -> bool:
        """The declared base, and only it, gives plausible values."""
        return self.plausible_bases == (self.declared_base,)

    def summary(self) -> str:
        who = f"meter {self.meter_id} (device {self.device_id})"
        bases = self.plausible_bases
        if self.ok:
            return (
                f"{who}: address_base = {self.declared_base} (as declared) gives plausible values"
            )
        if len(bases) == 1:
            return (
                f"{who}: address_base = {bases[0]} gives plausible values, the profile declares "
                f"{self.declared_base}; use a copy of the profile with address_base = {bases[0]}"
            )
        if bases:
            return (
                f"{who}: both bases give plausible values; compare a total with the meter's display"
            )
        why = "; ".join(f"base {v.address_base}: {', '.join(v.problems)}" for v in self.verdicts)
        return f"{who}: no address base gives plausible values ({why})"


def implausible(profile: MeterProfile, blocks: dict[ReadRequest, Sequence[int]]) -> list[str]:
    """Why the decoded values of one read cannot be real (empty list: they can)."""
    problems: list[str] = []
    parts: dict[str, list[tuple[ValueSpec, float]]] = {}
    for spec in profile.values:
        request = next(r for r in blocks if r.covers(spec))
        offset = spec.address - request.address
        words = blocks[request][offset : offset + spec.count]
        raw = float(decode_registers(words, spec.type, profile.word_order_of(spec)))
        where = f"{spec.field} at {spec.address}"
        if not math.isfinite(raw):
            problems.append(f"non-finite {where}")
        elif spec.type == "float32" and raw != 0 and not _TINY_FLOAT <= abs(raw) <= _HUGE_FLOAT:
            problems.append(f"{where} = {raw:.3g}")
        elif spec.field in _LIMITS:
            parts.setdefault(spec.field, []).append((spec, raw * spec.scale))
    for name, values in parts.items():
        first_spec = values[0][0]
        for spec, part in values[1:]:  # a fraction is less than one unit of the integer part
            if not 0 <= part < first_spec.scale:
                problems.append(f"{name} fraction at {spec.address} = {part:.3g}")
        total = sum(part for _, part in values)
        if abs(total) > _LIMITS[name]:
            problems.append(f"{name} = {total:.3g}")
        if name in ("total_m3", "battery_v") and total < 0 and profile.accumulator != "net":
            problems.append(f"negative {name} = {total:.3g}")
    return problems


async def probe_meter(
    reader: RegisterReader, meter: MeterConfig, max_gap_registers: int = 32
) -> ProbeResult:
    declared = load_profile(meter.profile, meter.accumulator)
    other: AddressBase = 0 if declared.address_base == 1 else 1
    verdicts = [await _verdict(reader, declared, meter.device_id, max_gap_registers)]
    shifted = declared.rebased(other)
    if len(shifted.values) < len(declared.values):
        verdicts.append(BaseVerdict(other, ("a register of the profile would be below address 0",)))
    else:
        verdicts.append(await _verdict(reader, shifted, meter.device_id, max_gap_registers))
    return ProbeResult(
        meter_id=meter.meter_id,
        device_id=meter.device_id,
        declared_base=declared.address_base,
        verdicts=tuple(verdicts),
    )


async def _verdict(
    reader: RegisterReader, profile: MeterProfile, device_id: int, max_gap_registers: int
) -> BaseVerdict:
    base = profile.address_base
    blocks: dict[ReadRequest, Sequence[int]] = {}
    for request in plan_reads(profile.values, max_gap_registers, profile.max_read_registers):
        try:
            reply = await reader.read(request.function, request.address, request.count, device_id)
        except (DeviceUnreachable, ProtocolError) as exc:
            return BaseVerdict(base, (f"no answer ({exc.__class__.__name__}: {exc})",))
        if isinstance(reply, ExceptionReply):
            where = f"{request.address}+{request.count}"
            return BaseVerdict(base, (f"exception {reply.code:#04x} reading {where}",))
        blocks[request] = reply
    return BaseVerdict(base, tuple(implausible(profile, blocks)))


async def probe_bus(
    cfg: ModbusBusConfig, meter_ids: Iterable[str] = (), reader: RegisterReader | None = None
) -> list[ProbeResult]:
    """Probe the meters of one bus (all, or those named), one at a time."""
    wanted = set(meter_ids)
    meters = [m for m in cfg.meters if not wanted or m.meter_id in wanted]
    if wanted - {m.meter_id for m in meters}:
        raise ConfigError(
            f"bus {cfg.name} has no meter {sorted(wanted - {m.meter_id for m in meters})}"
        )
    own = reader is None
    reader = reader or PymodbusReader(cfg)
    try:
        return [await probe_meter(reader, m, cfg.max_gap_registers) for m in meters]
    finally:
        if own:
            await reader.close()


async def probe_sources(
    sources: Iterable[object], source: str | None = None, meter_ids: Iterable[str] = ()
) -> list[ProbeResult]:
    """Probe the Modbus buses of a hub config (all, or the one named `source`)."""
    buses = [
        s
        for s in sources
        if isinstance(s, ModbusBusConfig) and (source is None or s.name == source)
    ]
    if not buses:
        raise ConfigError(f"no modbus source{f' named {source!r}' if source else ''} in the config")
    results: list[ProbeResult] = []
    for bus in buses:
        results += await probe_bus(bus, meter_ids)
    return results
