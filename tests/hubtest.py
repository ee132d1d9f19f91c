"""Helpers to run a real Hub in-process in tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from hub.app import Hub
from hub.clock import Clock
from hub.config import HubConfig, parse_config
from hub.records import WaterMeterReading


def config(tmp_path: Path, extra: str = "", site: str = "test-site") -> HubConfig:
    text = f"""
[hub]
site = "{site}"
data_dir = "{tmp_path / "data"}"
health_interval_s = 3600

[http]
enabled = false
{extra}
"""
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return parse_config(text, path)


@contextlib.asynccontextmanager
async def running(cfg: HubConfig, clock: Clock | None = None) -> AsyncIterator[Hub]:
    hub = Hub(cfg, clock=clock)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop(flush_timeout_s=0)


def meter_readings(n: int, start_ns: int, prefix: str = "M-") -> list[WaterMeterReading]:
    """n readings with distinct values, one second apart, spread over 10 meters."""
    return [
        WaterMeterReading(
            meter_id=f"{prefix}{i % 10:02d}",
            time_ns=start_ns + i * 1_000_000_000,
            total_m3=round(100.0 + i * 0.125, 3),
            flow_m3h=round((i % 7) * 0.01, 2),
            battery_v=3.6,
            alarm_bits=i % 4,
            source="test",
        )
        for i in range(n)
    ]
