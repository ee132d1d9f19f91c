"""Modbus RTU/TCP water meters: device profiles as data, one merged read per meter per poll."""

from __future__ import annotations

from drivers.modbus_meter.planning import (
    MeterValues,
    Number,
    ReadRequest,
    decode_meter,
    decode_registers,
    encode_registers,
    normalise_alarms,
    plan_reads,
)
from drivers.modbus_meter.poller import (
    MeterConfig,
    ModbusBusConfig,
    ModbusBusSource,
)
from drivers.modbus_meter.profiles import (
    ALARM_NAMES,
    MAX_READ_REGISTERS,
    PROFILE_DIR,
    DataType,
    MeterField,
    MeterProfile,
    ValueSpec,
    WordOrder,
    load_profile,
    profile_path,
    shipped_profiles,
)
from drivers.modbus_meter.transport import (
    BusUnreachable,
    ExceptionReply,
    PymodbusReader,
    RegisterReader,
)
from hub.records import MeterAlarm

__all__ = [
    "ALARM_NAMES",
    "MAX_READ_REGISTERS",
    "PROFILE_DIR",
    "BusUnreachable",
    "DataType",
    "ExceptionReply",
    "MeterAlarm",
    "MeterConfig",
    "MeterField",
    "MeterProfile",
    "MeterValues",
    "ModbusBusConfig",
    "ModbusBusSource",
    "Number",
    "PymodbusReader",
    "ReadRequest",
    "RegisterReader",
    "ValueSpec",
    "WordOrder",
    "decode_meter",
    "decode_registers",
    "encode_registers",
    "load_profile",
    "normalise_alarms",
    "plan_reads",
    "profile_path",
    "shipped_profiles",
]
