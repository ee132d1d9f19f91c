"""A built-in simulated meter source for the demo and tests: no device, no protocol library."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hub.records import WaterMeterReading
from hub.source import Publish, Source, SourceConfig, SourceContext


class SimulatedMetersConfig(SourceConfig):
    type: Literal["simulated_meters"] = "simulated_meters"
    meters: int = Field(default=4, ge=1, le=10_000)
    prefix: str = "SIM-"
    interval_s: float = Field(default=60.0, gt=0)
    flow_m3h: float = Field(default=0.02, ge=0)
    # Stop producing after this much clock time (seconds): demonstrates `source_silent`.
    stop_after_s: float | None = Field(default=None, gt=0)

    def build(self, ctx: SourceContext) -> Source:
        return SimulatedMeters(self, ctx)


class SimulatedMeters(Source):
    kind = "simulated_meters"

    def __init__(self, cfg: SimulatedMetersConfig, ctx: SourceContext) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.clock = ctx.clock
        self.totals = [100.0 + i for i in range(cfg.meters)]

    async def run(self, publish: Publish) -> None:
        started_ns = self.clock.now_ns()
        self.stats.connected = True
        while True:
            now_ns = self.clock.now_ns()
            if self.cfg.stop_after_s and now_ns - started_ns > self.cfg.stop_after_s * 1e9:
                self.stats.connected = False
                await self.clock.sleep(self.cfg.interval_s)
                continue
            hours = self.cfg.interval_s / 3600
            readings = []
            for i in range(self.cfg.meters):
                self.totals[i] += self.cfg.flow_m3h * hours
                readings.append(
                    WaterMeterReading(
                        meter_id=f"{self.cfg.prefix}{i + 1:03d}",
                        time_ns=now_ns,
                        total_m3=round(self.totals[i], 4),
                        flow_m3h=self.cfg.flow_m3h,
                        battery_v=3.6,
                        source=self.name,
                    )
                )
            await publish(readings)
            self.stats.messages += len(readings)
            self.stats.records += len(readings)
            self.stats.last_message_ns = now_ns
            await self.clock.sleep(self.cfg.interval_s)
