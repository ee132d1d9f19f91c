"""Config models of the NMEA source types: nmea_serial, nmea_tcp, nmea_tcp_server, nmea_udp."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hub.source import Source, SourceConfig, SourceContext


class NmeaSerialConfig(SourceConfig):
    type: Literal["nmea_serial"] = "nmea_serial"
    port: str = "/dev/ttyUSB0"
    baudrate: int = Field(default=38400, gt=0)  # AIS receivers: 38400; GNSS: often 4800

    def build(self, ctx: SourceContext) -> Source:
        from drivers.nmea.sources import NmeaSerialSource

        return NmeaSerialSource(self.name, ctx.clock, self.port, self.baudrate)


class NmeaTcpConfig(SourceConfig):
    type: Literal["nmea_tcp"] = "nmea_tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=10110, ge=1, le=65535)  # 10110: the IANA NMEA-0183 port
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    # Reconnect when a connection stays silent this long (half-open TCP); None: never.
    idle_timeout_s: float | None = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _backoff_order(self) -> NmeaTcpConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def build(self, ctx: SourceContext) -> Source:
        from drivers.nmea.sources import NmeaTcpSource

        return NmeaTcpSource(
            self.name,
            ctx.clock,
            self.host,
            self.port,
            backoff_min_s=self.reconnect_min_s,
            backoff_max_s=self.reconnect_max_s,
            idle_timeout_s=self.idle_timeout_s,
        )


class NmeaTcpServerConfig(SourceConfig):
    type: Literal["nmea_tcp_server"] = "nmea_tcp_server"
    # Loopback by default, like the HTTP server: receivers on the LAN need an explicit address.
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(default=10110, ge=0, le=65535)
    max_clients: int = Field(default=16, ge=1, le=1024)
    # A client that sends nothing this long is dropped (it would hold a client slot); None: never.
    client_idle_timeout_s: float | None = Field(default=300.0, gt=0)
    # Multi-part AIS messages awaiting their other fragments, for all clients together.
    max_pending_fragments: int = Field(default=1024, ge=16, le=100_000)

    def build(self, ctx: SourceContext) -> Source:
        from drivers.nmea.sources import NmeaTcpServerSource

        return NmeaTcpServerSource(
            self.name,
            ctx.clock,
            self.bind_host,
            self.bind_port,
            max_clients=self.max_clients,
            client_idle_timeout_s=self.client_idle_timeout_s,
            max_pending_fragments=self.max_pending_fragments,
        )


class NmeaUdpConfig(SourceConfig):
    type: Literal["nmea_udp"] = "nmea_udp"
    # Loopback by default, like the HTTP server: receivers on the LAN need an explicit address.
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(default=10110, ge=0, le=65535)
    rcvbuf_bytes: int = Field(default=8 * 1024 * 1024, ge=65536)
    # Multi-part AIS messages awaiting their other fragments, for all senders together.
    max_pending_fragments: int = Field(default=1024, ge=16, le=100_000)

    def build(self, ctx: SourceContext) -> Source:
        from drivers.nmea.sources import NmeaUdpSource

        return NmeaUdpSource(
            self.name,
            ctx.clock,
            self.bind_host,
            self.bind_port,
            self.rcvbuf_bytes,
            max_pending_fragments=self.max_pending_fragments,
        )
