"""Configuration of the maritime rules (`[rules.maritime]`), validated once at the edge."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["info", "warning", "critical"]


class _RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity = "warning"


class UnregisteredVesselConfig(_RuleConfig):
    dwell_minutes: float = Field(default=10.0, ge=0)
    # Hysteresis: the vessel must stay outside the sea grid this long before the alert resolves.
    exit_minutes: float = Field(default=5.0, ge=0)


class InvalidMmsiConfig(_RuleConfig):
    check_mid: bool = True
    check_class: bool = True
    # The alert resolves once the MMSI has not been heard for this long.
    quiet_minutes: float = Field(default=60.0, gt=0)


class AisGapConfig(_RuleConfig):
    gap_minutes: float = Field(default=15.0, gt=0)
    min_moving_kn: float = Field(default=1.0, ge=0)
    # No alert when the last course, sailed for this distance, leaves the zone ("left heading out").
    edge_nm: float = Field(default=1.0, ge=0)
    zone_kinds: tuple[Literal["sea_grid", "restricted", "anchorage"], ...] = ("sea_grid",)


class PositionJumpConfig(_RuleConfig):
    max_knots: float = Field(default=60.0, gt=0)
    # Reports closer together than this (duplicates, two receivers) are not compared.
    min_interval_s: float = Field(default=2.0, ge=0)
    # Jumps shorter than this are GPS noise whatever the implied speed.
    min_distance_nm: float = Field(default=0.1, ge=0)
    resolve_after_reports: int = Field(default=5, ge=1)
    quiet_minutes: float = Field(default=30.0, gt=0)


class RestrictedZoneConfig(_RuleConfig):
    severity: Severity = "critical"
    dwell_minutes: float = Field(default=1.0, ge=0)
    exit_minutes: float = Field(default=5.0, ge=0)


class FishingMoratoriumConfig(_RuleConfig):
    # Closed season as month-day in the site's local time, both days included; may wrap the year.
    season_start: str = Field(default="05-01", pattern=r"^\d{2}-\d{2}$")
    season_end: str = Field(default="09-16", pattern=r"^\d{2}-\d{2}$")
    utc_offset_hours: float = Field(default=8.0, ge=-12, le=14)
    min_speed_kn: float = Field(default=1.5, ge=0)
    max_speed_kn: float = Field(default=5.0, gt=0)
    min_minutes: float = Field(default=10.0, ge=0)
    # The condition must stay false this long before the alert resolves (speed dips while hauling).
    grace_minutes: float = Field(default=5.0, ge=0)
    fishing_ship_types: tuple[int, ...] = (30,)
    registry_types: tuple[str, ...] = ("fishing",)

    @field_validator("season_start", "season_end")
    @classmethod
    def _real_day(cls, value: str) -> str:
        month, day = (int(p) for p in value.split("-"))
        dt.date(2000, month, day)  # a leap year, so 02-29 is accepted
        return value

    @model_validator(mode="after")
    def _speed_band(self) -> FishingMoratoriumConfig:
        if self.min_speed_kn > self.max_speed_kn:
            raise ValueError("min_speed_kn must not exceed max_speed_kn")
        return self


class MaritimeRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per-vessel rule state is dropped after this much quiet (and the oldest beyond max_vessels).
    vessel_expiry_minutes: float = Field(default=360.0, gt=0)
    max_vessels: int = Field(default=5000, ge=10)
    unregistered_vessel: UnregisteredVesselConfig = UnregisteredVesselConfig()
    invalid_mmsi: InvalidMmsiConfig = InvalidMmsiConfig()
    ais_gap: AisGapConfig = AisGapConfig()
    position_jump: PositionJumpConfig = PositionJumpConfig()
    restricted_zone: RestrictedZoneConfig = RestrictedZoneConfig()
    fishing_moratorium: FishingMoratoriumConfig = FishingMoratoriumConfig()
