"""Community rules: elder no-water-use, meter health, continuous flow and door-access alerts."""

from __future__ import annotations

from hub.registry.community import CommunityRegistry
from hub.rules import Rule, enabled_rules
from hub.rules.community._base import (
    ALARM_LOW_BATTERY,
    ALARM_REVERSE_FLOW,
    ALARM_TAMPER,
    _CommunityRule,
)
from hub.rules.community.config import (
    CommunityRulesConfig,
    ContinuousFlowConfig,
    DoorDeniedConfig,
    DoorForcedConfig,
    DoorHeldOpenConfig,
    ElderNoWaterConfig,
    MeterLowBatteryConfig,
    MeterOfflineConfig,
    MeterTamperConfig,
)
from hub.rules.community.doors import DoorDeniedRepeatedly, DoorForced, DoorHeldOpen
from hub.rules.community.elder import ElderNoWater
from hub.rules.community.water import ContinuousFlow, MeterLowBattery, MeterOffline, MeterTamper

__all__ = [
    "ALARM_LOW_BATTERY",
    "ALARM_REVERSE_FLOW",
    "ALARM_TAMPER",
    "RULE_CLASSES",
    "CommunityRulesConfig",
    "ContinuousFlow",
    "ContinuousFlowConfig",
    "DoorDeniedConfig",
    "DoorDeniedRepeatedly",
    "DoorForced",
    "DoorForcedConfig",
    "DoorHeldOpen",
    "DoorHeldOpenConfig",
    "ElderNoWater",
    "ElderNoWaterConfig",
    "MeterLowBattery",
    "MeterLowBatteryConfig",
    "MeterOffline",
    "MeterOfflineConfig",
    "MeterTamper",
    "MeterTamperConfig",
    "build_community_rules",
]


RULE_CLASSES: dict[str, type[_CommunityRule]] = {
    "elder_no_water": ElderNoWater,
    "continuous_flow": ContinuousFlow,
    "meter_offline": MeterOffline,
    "meter_low_battery": MeterLowBattery,
    "meter_tamper": MeterTamper,
    "door_forced": DoorForced,
    "door_held_open": DoorHeldOpen,
    "door_denied_repeatedly": DoorDeniedRepeatedly,
}


def build_community_rules(cfg: CommunityRulesConfig, registry: CommunityRegistry) -> list[Rule]:
    """The enabled community rules, each reading its thresholds from `cfg`."""
    return enabled_rules(cfg, RULE_CLASSES, registry)
