"""Shared base of the community rules: signal routing and local clock times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hub.records import GridTags, MeterAlarm, Record
from hub.registry.community import CommunityRegistry
from hub.rules import Signal
from hub.rules.community.config import CommunityRulesConfig

NS = 1_000_000_000
LITRES_PER_M3 = 1000.0
USE_EPSILON_M3 = 0.0001  # 0.1 L: below any meter's resolution, above float noise
ALARM_LOW_BATTERY = int(MeterAlarm.LOW_BATTERY)
ALARM_TAMPER = int(MeterAlarm.TAMPER)
ALARM_REVERSE_FLOW = int(MeterAlarm.REVERSE_FLOW)


class _CommunityRule:
    """Shared plumbing: grid routing, local clock times."""

    name = ""

    def __init__(self, cfg: CommunityRulesConfig, registry: CommunityRegistry) -> None:
        self.rules_cfg = cfg
        self.registry = registry
        self.tz = timezone(timedelta(hours=cfg.utc_offset_hours))

    def signal(
        self,
        subject: str,
        active: bool,
        severity: str,
        message: str,
        data: dict[str, Any],
        grid: GridTags,
    ) -> Signal:
        recipients = self.recipients(grid)
        if recipients:
            data = {**data, "recipients": recipients}
        return Signal(
            rule=self.name,
            subject=subject,
            active=active,
            severity=severity,
            message=message,
            data=data,
            grid=grid,
        )

    def recipients(self, grid: GridTags) -> list[str]:
        routing = self.rules_cfg.routing
        groups = [routing.get(g) for g in (grid.micro_grid, grid.grid) if g]
        return list(dict.fromkeys(g for g in groups if g))

    def clock_time(self, time_ns: int, ref_ns: int) -> str:
        """ "20:10", or "11-22 20:10" when more than a day before `ref_ns`."""
        local = datetime.fromtimestamp(time_ns / NS, tz=UTC).astimezone(self.tz)
        return local.strftime("%m-%d %H:%M" if ref_ns - time_ns > 86_400 * NS else "%H:%M")

    def on_record(self, state: Any, record: Record, now_ns: int) -> list[Signal]:
        raise NotImplementedError

    def on_tick(self, state: Any, now_ns: int) -> list[Signal]:
        return []


def _hours(ns: int) -> float:
    return ns / (3600 * NS)
