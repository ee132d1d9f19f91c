"""Configuration of the community rules (`[rules.community]`), validated once at the edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.records import MeterAlarm


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class ElderNoWaterConfig(_Section):
    """Less than `min_litres` over the trailing `warn_hours` → warning; over `critical_hours`
    → critical. 12 h is longer than a night's sleep plus the evening and morning routine."""

    min_litres: float = Field(default=5.0, ge=0)
    warn_hours: float = Field(default=12.0, gt=0)
    critical_hours: float = Field(default=24.0, gt=0)
    # Samples of the meter total are kept this far apart (bounds memory: ~150 per meter).
    sample_minutes: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> ElderNoWaterConfig:
        if self.critical_hours < self.warn_hours:
            raise ValueError("critical_hours must be >= warn_hours")
        return self


class ContinuousFlowConfig(_Section):
    hours: float = Field(default=6.0, gt=0)  # flow never paused for this long → leak / tap running
    zero_flow_m3h: float = Field(default=0.001, ge=0)  # at or below this (1 L/h) counts as a pause
    max_gap_minutes: float = Field(default=90.0, gt=0)  # a longer reading gap restarts the count


class MeterOfflineConfig(_Section):
    offline_minutes: float = Field(default=60.0, gt=0)
    watch_registry: bool = True  # also watch registered meters that never reported


class MeterLowBatteryConfig(_Section):
    min_battery_v: float = 3.3
    critical_battery_v: float = 3.0
    hysteresis_v: float = Field(default=0.1, ge=0)  # resolves at min_battery_v + hysteresis_v


class MeterTamperConfig(_Section):
    tamper_bits: int = Field(default=int(MeterAlarm.TAMPER), ge=0)
    reverse_flow: bool = True


class DoorForcedConfig(_Section):
    events: list[str] = Field(default_factory=lambda: ["forced", "alarm"])
    resolve_minutes: float = Field(default=30.0, gt=0)


class DoorHeldOpenConfig(_Section):
    resolve_minutes: float = Field(default=10.0, gt=0)  # or earlier, on the door's next open


class DoorDeniedConfig(_Section):
    count: int = Field(default=5, ge=1)
    window_minutes: float = Field(default=10.0, gt=0)


class CommunityRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    elder_no_water: ElderNoWaterConfig = ElderNoWaterConfig()
    continuous_flow: ContinuousFlowConfig = ContinuousFlowConfig()
    meter_offline: MeterOfflineConfig = MeterOfflineConfig()
    meter_low_battery: MeterLowBatteryConfig = MeterLowBatteryConfig()
    meter_tamper: MeterTamperConfig = MeterTamperConfig()
    door_forced: DoorForcedConfig = DoorForcedConfig()
    door_held_open: DoorHeldOpenConfig = DoorHeldOpenConfig()
    door_denied_repeatedly: DoorDeniedConfig = DoorDeniedConfig()
    # grid or micro_grid id → recipient group; matches go to alert data["recipients"].
    routing: dict[str, str] = Field(default_factory=dict)
    # Time zone of clock times in alert messages ("door not opened since 20:10").
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
