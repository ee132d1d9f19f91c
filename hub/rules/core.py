"""Rules about the hub itself: a source that went silent, a sink that refuses every write."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from hub.records import Record
from hub.rules import Signal
from hub.rules.state import layout

NS = 1_000_000_000


@dataclass(slots=True, kw_only=True)
class SourceSilentState:
    """When each watched source last sent a record, and which are silent (alert open)."""

    VERSION: ClassVar[int] = 1
    last_record_ns: dict[str, int] = field(default_factory=dict)
    silent: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.VERSION,
            "last_record_ns": dict(self.last_record_ns),
            "silent": list(self.silent),
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if layout(data, cls.VERSION) == 0:
            return cls(
                last_record_ns=dict(data.get("last", {})), silent=list(data.get("silent", []))
            )
        return cls(last_record_ns=dict(data["last_record_ns"]), silent=list(data["silent"]))


class SourceSilent:
    """`source_silent`: no record from a source for longer than its `silent_timeout_s`."""

    name = "source_silent"
    state_class = SourceSilentState

    def __init__(self, timeouts_s: dict[str, float]) -> None:
        self.timeouts_s = timeouts_s

    def on_record(self, state: SourceSilentState, record: Record, now_ns: int) -> list[Signal]:
        if record.source not in self.timeouts_s or record.measurement == "hub_health":
            return []
        was_silent = record.source in state.silent
        state.last_record_ns[record.source] = now_ns
        if not was_silent:
            return []
        state.silent.remove(record.source)
        return [
            Signal(
                rule=self.name,
                subject=f"source:{record.source}",
                active=False,
                message=f"source {record.source} is reporting again",
                data={"source": record.source},
            )
        ]

    def on_tick(self, state: SourceSilentState, now_ns: int) -> list[Signal]:
        last, silent = state.last_record_ns, state.silent
        signals = []
        for source, timeout_s in self.timeouts_s.items():
            seen_ns = last.setdefault(source, now_ns)  # watching starts now for a new source
            quiet_s = (now_ns - seen_ns) / NS
            if quiet_s > timeout_s and source not in silent:
                silent.append(source)
                signals.append(
                    Signal(
                        rule=self.name,
                        subject=f"source:{source}",
                        active=True,
                        severity="warning",
                        message=f"source {source} silent for {_human(quiet_s)} "
                        f"(timeout {_human(timeout_s)})",
                        data={"source": source, "last_seen_ns": seen_ns, "timeout_s": timeout_s},
                    )
                )
        return signals


@dataclass(slots=True, kw_only=True)
class SinkRefusedState:
    """Whether the sink_refused alert is open."""

    VERSION: ClassVar[int] = 1
    open: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"version": self.VERSION, "open": self.open}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        layout(data, cls.VERSION)  # version 0 was {"open": bool} too
        return cls(open=bool(data.get("open", False)))


class SinkRefusedRule:
    """`sink_refused`: the sink refuses every write (credentials, missing database or bucket).

    `refusal()` says why ("" while the sink accepts writes); it is the forwarder's live verdict,
    read on each clock tick. The points are kept in the outbox meanwhile, so the alert says so."""

    name = "sink_refused"
    state_class = SinkRefusedState

    def __init__(self, sink: str, refusal: Callable[[], str], backlog: Callable[[], int]) -> None:
        self.sink = sink
        self.refusal = refusal
        self.backlog = backlog

    def on_record(self, state: SinkRefusedState, record: Record, now_ns: int) -> list[Signal]:
        return []

    def on_tick(self, state: SinkRefusedState, now_ns: int) -> list[Signal]:
        reason = self.refusal()
        if bool(reason) == state.open:
            return []
        state.open = bool(reason)
        subject = f"sink:{self.sink}"
        if not reason:
            message = f"sink {self.sink} accepts writes again"
            return [
                Signal(
                    rule=self.name, subject=subject, active=False, severity="info", message=message
                )
            ]
        rows = self.backlog()
        return [
            Signal(
                rule=self.name,
                subject=subject,
                active=True,
                severity="critical",
                message=f"sink {self.sink} refuses every write ({reason}); "
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
