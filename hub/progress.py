"""Progress for long work: a bar with rate and ETA on a terminal, periodic plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, unit: str, stream: TextIO | None = None, every_s: float = 5.0
    ) -> None:
        self.total = max(total, 1)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if not self.tty else 0.2
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(final=False)

    def close(self) -> None:
        self._print(final=True)

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def _print(self, final: bool) -> None:
        rate = self.rate()
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        pct = min(100.0, 100.0 * self.done / self.total)
        if self.tty:
            bar = "#" * int(pct / 4)
            end = "\n" if final else ""
            self.stream.write(
                f"\r[{bar:<25}] {pct:5.1f}% {self.done}/{self.total} {self.unit} "
                f"{rate:,.0f} {self.unit}/s ETA {eta:4.0f} s{end}"
            )
        else:
            self.stream.write(
                f"progress: {self.done}/{self.total} {self.unit} ({pct:.1f}%), "
                f"{rate:,.0f} {self.unit}/s, eta {eta:.0f} s\n"
            )
        self.stream.flush()
