"""Clocks: wall time for production, an accelerated clock for the demo, a manual one for tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int:
        """Current UTC time in nanoseconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AcceleratedClock:
    """Clock running `factor` times faster than real time from `start_ns` (the demo's clock).

    With `catch_up`, a clock started in the past runs fast only until it reaches the wall clock
    and then at real time, so nothing it stamps is ever in the future.
    """

    def __init__(self, factor: float, start_ns: int | None = None, *, catch_up: bool = False):
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        wall_ns = time.time_ns()
        self._start_ns = wall_ns if start_ns is None else start_ns
        self._wall0_ns = wall_ns
        self._mono0 = time.monotonic_ns()
        # real ns after which the clock has caught up with the wall clock (None: never slows)
        self._catch_up_after: float | None = None
        if catch_up and factor > 1:
            self._catch_up_after = max(0, wall_ns - self._start_ns) / (factor - 1)

    def now_ns(self) -> int:
        elapsed = time.monotonic_ns() - self._mono0
        fast = self._start_ns + int(elapsed * self.factor)
        if self._catch_up_after is None:
            return fast
        return min(fast, self._wall0_ns + elapsed)

    def real_seconds(self, seconds: float) -> float:
        """Real seconds this clock takes, from now, to advance by `seconds`."""
        if self._catch_up_after is None:
            return seconds / self.factor
        fast_left_s = (
            max(0.0, self._catch_up_after - (time.monotonic_ns() - self._mono0)) / NS_PER_S
        )
        if seconds <= fast_left_s * self.factor:
            return seconds / self.factor
        return fast_left_s + (seconds - fast_left_s * self.factor)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(seconds))


def backdated_start_ns(duration_s: float | None, factor: float, backfill_s: float) -> int:
    """Start time for an accelerated clock whose data should end at "now".

    A run of `duration_s` real seconds at `factor` covers duration_s * factor clock seconds, so
    starting duration_s * (factor - 1) seconds ago ends at the wall clock's now. An open-ended
    run starts `backfill_s` ago (and, with `catch_up`, continues at real time once there).
    """
    back_s = backfill_s if duration_s is None else duration_s * max(0.0, factor - 1)
    return time.time_ns() - int(back_s * NS_PER_S)


class ManualClock:
    """A clock that moves only when told to; `sleep` returns at once after advancing."""

    def __init__(self, start_ns: int = 1_767_225_600 * NS_PER_S) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def advance(self, seconds: float) -> None:
        self._now_ns += int(seconds * NS_PER_S)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
