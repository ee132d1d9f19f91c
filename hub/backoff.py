"""Exponential backoff with jitter, shared by the forwarder, the publishers and the supervisor."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays of initial_s, 2×, 4× … capped at max_s, each drawn from [d/2, d] so that many
    gateways coming back after one outage do not retry in step."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.max_s, self.initial_s * 2 ** min(self.failures - 1, 16))
        return random.uniform(delay / 2, delay)

    async def wait(self, at_least_s: float = 0.0) -> None:
        """Count a failure and sleep; `at_least_s` (a server's Retry-After) is honoured up to
        max_s."""
        await asyncio.sleep(max(self.next_delay(), min(at_least_s, self.max_s)))

    def reset(self) -> None:
        self.failures = 0
