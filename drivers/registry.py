"""Source types known to the hub: config `type` name -> the pydantic model that builds it.

Models are imported lazily so that `hub check-config` and the hub core never import a protocol
library (pymodbus, pyserial, pyais, pynmea2) for a source type the config does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

SOURCE_TYPES: dict[str, str] = {
    "simulated_meters": "drivers.simulated:SimulatedMetersConfig",
    "modbus": "drivers.modbus_meter:ModbusBusConfig",
    "cjt188": "drivers.cjt188:Cjt188Config",
    "door_mqtt": "drivers.door_mqtt:DoorMqttConfig",
    "door_http": "drivers.door_http:DoorHttpConfig",
    "door_dahua_mqtt": "drivers.door_dahua:DahuaMqttConfig",
    "door_zkteco": "drivers.door_zkteco:ZktecoPushConfig",
    "nmea_serial": "drivers.nmea:NmeaSerialConfig",
    "nmea_tcp": "drivers.nmea:NmeaTcpConfig",
    "nmea_tcp_server": "drivers.nmea:NmeaTcpServerConfig",
    "nmea_udp": "drivers.nmea:NmeaUdpConfig",
}


# Driver functions the hub's commands call (`hub modbus-probe`, `hub replay` of a capture).
TOOLS: dict[str, str] = {
    "modbus_probe": "drivers.modbus_meter.probe:probe_sources",
    "nmea_file_replay": "drivers.nmea.replay:FileReplay",
}


def _load(ref: str) -> Any:
    module_name, _, name = ref.partition(":")
    return getattr(importlib.import_module(module_name), name)


def config_model(type_name: str) -> Any:
    """The pydantic model class for a source type; KeyError if the type is unknown."""
    return _load(SOURCE_TYPES[type_name])


def tool(name: str) -> Any:
    """A driver function or class named in TOOLS; KeyError if there is no such tool."""
    return _load(TOOLS[name])
