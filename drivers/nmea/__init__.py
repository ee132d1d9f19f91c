"""NMEA 0183 / AIS driver: decoder, serial/TCP/UDP sources and capture replay."""

from drivers.nmea.config import NmeaSerialConfig, NmeaTcpConfig, NmeaTcpServerConfig, NmeaUdpConfig
from drivers.nmea.decoder import NmeaDecoder, Sentence, parse_line
from drivers.nmea.replay import REPLAY_SUFFIXES, FileReplay, iter_file_records

__all__ = [
    "REPLAY_SUFFIXES",
    "FileReplay",
    "NmeaDecoder",
    "NmeaSerialConfig",
    "NmeaTcpConfig",
    "NmeaTcpServerConfig",
    "NmeaUdpConfig",
    "Sentence",
    "iter_file_records",
    "parse_line",
]
