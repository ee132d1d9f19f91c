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


def config_model(type_name: str) -> Any:
    """The pydantic model class for a source type; KeyError if the type is unknown."""
    module_name, _, class_name = SOURCE_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
