"""The polling loop shared by the meter buses (Modbus, CJ/T 188): cycle timing, per-meter health
with offline backoff, and the order meters are read in within a cycle."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from hub.clock import NS_PER_S, Clock
from hub.source import SourceStats

_MAX_BACKOFF_EXPONENT = 16
# A fitted timeout is this many times the slowest of the meter's last few responses.
_TIMEOUT_MARGIN = 3.0
_RESPONSE_WINDOW = 8


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
    """Consecutive failures of one meter: offline after a threshold, then probed with backoff.

    A meter that has never answered since the hub started may be given a lower threshold: on a
    serial bus each of its timeouts holds up every other meter, and nothing suggests it is there.
    """

    failures: int = 0
    offline: bool = False
    answered: bool = False  # has answered at least once since the hub started
    offline_after: int = 0  # the threshold that took it offline (fixes the backoff's origin)
    offline_since_ns: int = 0
    next_probe_ns: int = 0
    logged: set[str] = field(default_factory=set)

    def failed(
        self,
        now_ns: int,
        threshold: int,
        interval_s: float,
        max_probe_s: float,
        *,
        threshold_never_answered: int | None = None,
    ) -> bool:
        """Count a failure; True when this failure made the meter go offline. Offline meters are
        next probed after `interval_s`, doubling per failed probe up to `max_probe_s`."""
        self.failures += 1
        if not self.offline:
            limit = threshold
            if not self.answered and threshold_never_answered is not None:
                limit = min(threshold, threshold_never_answered)
            if self.failures < limit:
                return False
            self.offline = True
            self.offline_after = limit
            self.offline_since_ns = now_ns
            went_offline = True
        else:
            went_offline = False
        exponent = min(self.failures - self.offline_after, _MAX_BACKOFF_EXPONENT)
        backoff_s = min(interval_s * 2**exponent, max_probe_s)
        self.next_probe_ns = now_ns + int(backoff_s * NS_PER_S)
        return went_offline

    def succeeded(self, now_ns: int) -> float | None:
        """Reset; returns how long the meter had been offline if it just came back."""
        offline_s = (now_ns - self.offline_since_ns) / NS_PER_S if self.offline else None
        self.failures = 0
        self.offline = False
        self.answered = True
        self.next_probe_ns = 0
        self.logged.clear()
        return offline_s

    def first(self, kind: str) -> bool:
        """True the first time `kind` is reported since the meter last read well."""
        if kind in self.logged:
            return False
        self.logged.add(kind)
        return True


@dataclass(slots=True)
class ResponseTimes:
    """The last few response times of one meter, to fit its timeout to how fast it answers."""

    recent_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RESPONSE_WINDOW))

    def record(self, seconds: float) -> None:
        self.recent_s.append(seconds)

    def timeout_s(self, floor_s: float, ceiling_s: float) -> float:
        """`ceiling_s` until the meter has answered; then a margin over its slowest recent answer,
        never below `floor_s` nor above `ceiling_s`."""
        if not self.recent_s:
            return ceiling_s
        return min(ceiling_s, max(floor_s, _TIMEOUT_MARGIN * max(self.recent_s)))


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
