"""The hub's exception hierarchy; every error the hub raises on purpose derives from HubError."""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises deliberately."""


class ConfigError(HubError):
    """The configuration file or a registry file is invalid."""


class ProtocolError(HubError):
    """Bytes from a device or feed could not be turned into a record."""


class ChecksumError(ProtocolError):
    """A frame or sentence whose checksum does not match its content."""


class FrameError(ProtocolError):
    """A frame that is truncated, too long or structurally wrong."""


class DeviceUnreachable(HubError):
    """A device did not answer (timeout, connection refused, no reply on the bus)."""


class SinkError(HubError):
    """A sink (InfluxDB, MQTT broker, webhook) failed; the data stays in the outbox."""


class SinkRejected(SinkError):
    """A sink refused data for good (HTTP 4xx other than 408/429): retrying cannot help."""


class PointRejected(SinkRejected):
    """The sink named a bad point (type conflict, time out of range, unparsable line): the batch
    is split until the bad points are isolated and dead-lettered."""


class BatchTooLarge(SinkRejected):
    """HTTP 413: the batch is split; only a single point that is still too large is refused."""


class SinkRefused(SinkError):
    """The sink refuses every write (401/403/404, database or bucket missing, any whole-request
    refusal): the sink is misconfigured, not the data. Rows stay; the hub backs off and alerts."""
