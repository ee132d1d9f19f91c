"""What every source (driver) implements, and the counters the hub keeps for it."""

from __future__ import annotations

import abc
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.clock import Clock
from hub.records import Record

# A source hands records to the hub through this callable; it returns once the records are
# committed to the durable outbox. Only then may the source acknowledge them to its device.
Publish = Callable[[Sequence[Record]], Awaitable[None]]


@dataclass(slots=True, kw_only=True)
class SourceStats:
    """Counters one source keeps; exported on /metrics and as hub_health points."""

    messages: int = 0
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # Inputs accepted but not stored (heartbeats, camera events, ignored codes) and other
    # non-error tallies, by kind.
    counts: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    last_message_ns: int = 0
    connected: bool = False
    last_error: str = ""  # why it last failed (shown on the status page with the token)

    def error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] += n

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


class Source(abc.ABC):
    """A long-running producer of records. `run` returns or raises only when something is wrong;
    the hub's supervisor then restarts it with backoff and counts the restart."""

    kind: str = "source"

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = SourceStats()

    @abc.abstractmethod
    async def run(self, publish: Publish) -> None:
        """Produce records forever, handing them to `publish`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release resources (ports, sockets); called once when the hub stops."""


@dataclass(slots=True, kw_only=True)
class SourceContext:
    """What the hub lends a source when building it from config."""

    site: str
    clock: Clock
    data_dir: Path
    # Salt for hashing credentials (card numbers) and personal ids; read from the environment.
    hash_salt: str = ""
    # aiohttp routes a source wants on the hub's local HTTP server: (method, path, handler).
    http_routes: list[tuple[str, str, Any]] = field(default_factory=list)
    # The hub's own MQTT broker settings (hub.config.MqttConfig) for sources that subscribe.
    mqtt: Any = None
    # `[hub] utc_offset_hours`: for devices that send local time without a zone.
    utc_offset_hours: float = 8.0


def salted_hash(salt: str, value: str) -> str:
    """Stable, non-reversible id for a credential or personal number (hex, 16 chars)."""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:16]


class SourceConfig(BaseModel):
    """Fields every `[[sources]]` entry has; each driver subclasses it with its own options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Raise `source_silent` when no message arrived for this long (None: never).
    silent_timeout_s: float | None = Field(default=None, gt=0)

    def build(self, ctx: SourceContext) -> Source:
        raise NotImplementedError
