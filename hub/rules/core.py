"""Rules about the hub itself: a source that went silent, a sink that refuses every write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.records import Record
from hub.rules import Signal

NS = 1_000_000_000


class SourceSilent:
    """`source_silent`: no record from a source for longer than its `silent_timeout_s`.

    State: {"last": {source: last record time ns}, "since": start of watching ns}."""

    name = "source_silent"

    def __init__(self, timeouts_s: dict[str, float]) -> None:
        self.timeouts_s = timeouts_s

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        if record.source not in self.timeouts_s or record.measurement == "hub_health":
            return []
        last = state.setdefault("last", {})
        was_silent = record.source in state.setdefault("silent", [])
        last[record.source] = now_ns
        if not was_silent:
            return []
        state["silent"].remove(record.source)
        return [
            Signal(
                self.name,
                f"source:{record.source}",
                active=False,
                message=f"source {record.source} is reporting again",
                data={"source": record.source},
            )
        ]

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        last = state.setdefault("last", {})
        silent = state.setdefault("silent", [])
        signals = []
        for source, timeout_s in self.timeouts_s.items():
            seen_ns = last.setdefault(source, now_ns)  # watching starts now for a new source
            quiet_s = (now_ns - seen_ns) / NS
            if quiet_s > timeout_s and source not in silent:
                silent.append(source)
                signals.append(
                    Signal(
                        self.name,
                        f"source:{source}",
                        active=True,
                        severity="warning",
                        message=f"source {source} silent for {_human(quiet_s)} "
                        f"(timeout {_human(timeout_s)})",
                        data={"source": source, "last_seen_ns": seen_ns, "timeout_s": timeout_s},
                    )
                )
        return signals


class SinkRefusedRule:
    """`sink_refused`: the sink refuses every write (credentials, missing database or bucket).

    `refusal()` says why ("" while the sink accepts writes); it is the forwarder's live verdict,
    read on each clock tick. The points are kept in the outbox meanwhile, so the alert says so.
    State: {"open": bool}."""

    name = "sink_refused"

    def __init__(self, sink: str, refusal: Callable[[], str], backlog: Callable[[], int]) -> None:
        self.sink = sink
        self.refusal = refusal
        self.backlog = backlog

    def on_record(self, state: dict[str, Any], record: Record, now_ns: int) -> list[Signal]:
        return []

    def on_tick(self, state: dict[str, Any], now_ns: int) -> list[Signal]:
        reason = self.refusal()
        was_open = bool(state.get("open"))
        if bool(reason) == was_open:
            return []
        state["open"] = bool(reason)
        subject = f"sink:{self.sink}"
        if not reason:
            return [
                Signal(self.name, subject, False, "info", f"sink {self.sink} accepts writes again")
            ]
        rows = self.backlog()
        return [
            Signal(
                self.name,
                subject,
                True,
                "critical",
                f"sink {self.sink} refuses every write ({reason}); "
                f"{rows} point(s) kept in the outbox",
                data={"sink": self.sink, "reason": reason, "outbox_rows": rows},
            )
        ]


def _human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
