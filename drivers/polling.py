"""The polling loop shared by the meter buses (Modbus, CJ/T 188): cycle timing, per-meter health
with offline backoff, and the order meters are read in within a cycle."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from hub.clock import NS_PER_S, Clock
from hub.source import SourceStats

_MAX_BACKOFF_EXPONENT = 16


async def poll_forever(
    clock: Clock,
    interval_s: float,
    stats: SourceStats,
    poll_once: Callable[[int], Awaitable[object]],
) -> None:
    """Call `poll_once(deadline_ns)` every `interval_s` of clock time, each cycle scheduled from
    where the previous one ended: a cycle that overran starts the next at once (counted as
    `poll_overrun`) instead of skipping to a fixed phase grid and leaving the bus idle a slot."""
    interval_ns = int(interval_s * NS_PER_S)
    while True:
        started_ns = clock.now_ns()
        await poll_once(started_ns + interval_ns)
        now_ns = clock.now_ns()
        if now_ns > started_ns + interval_ns:
            stats.error("poll_overrun")
            await clock.sleep(0)  # let other tasks run even if every cycle overruns
            continue
        await clock.sleep((started_ns + interval_ns - now_ns) / NS_PER_S)


@dataclass(slots=True, kw_only=True)
class MeterHealth:
    """Consecutive failures of one meter: offline after a threshold, then probed with backoff."""

    failures: int = 0
    offline: bool = False
    offline_since_ns: int = 0
    next_probe_ns: int = 0
    logged: set[str] = field(default_factory=set)

    def failed(self, now_ns: int, threshold: int, interval_s: float, max_probe_s: float) -> bool:
        """Count a failure; True when this failure made the meter go offline."""
        self.failures += 1
        went_offline = not self.offline and self.failures >= threshold
        if went_offline:
            self.offline = True
            self.offline_since_ns = now_ns
        if self.offline:
            exponent = min(self.failures - threshold, _MAX_BACKOFF_EXPONENT)
            backoff_s = min(interval_s * 2**exponent, max_probe_s)
            self.next_probe_ns = now_ns + int(backoff_s * NS_PER_S)
        return went_offline

    def succeeded(self, now_ns: int) -> float | None:
        """Reset; returns how long the meter had been offline if it just came back."""
        offline_s = (now_ns - self.offline_since_ns) / NS_PER_S if self.offline else None
        self.failures = 0
        self.offline = False
        self.next_probe_ns = 0
        self.logged.clear()
        return offline_s

    def first(self, kind: str) -> bool:
        """True the first time `kind` is reported since the meter last read well."""
        if kind in self.logged:
            return False
        self.logged.add(kind)
        return True


class PolledMeter(Protocol):
    @property
    def health(self) -> MeterHealth: ...


M = TypeVar("M", bound=PolledMeter)


def due_in_order(meters: Iterable[M], now_ns: int) -> list[M]:
    """The meters due for a read now: healthy ones first, then those that failed before, each
    group in configured order (so a failing meter never delays the healthy ones)."""
    due = [m for m in meters if m.health.next_probe_ns <= now_ns]
    due.sort(key=lambda m: m.health.failures > 0)  # stable: configured order otherwise
    return due
