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
    """Clock running `factor` times faster than real time from `start_ns` (the demo's clock)."""

    def __init__(self, factor: float, start_ns: int | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self._start_ns = time.time_ns() if start_ns is None else start_ns
        self._mono0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return self._start_ns + int((time.monotonic_ns() - self._mono0) * self.factor)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.factor)


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
