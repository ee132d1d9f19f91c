"""Maritime anomaly rules over AIS records: unregistered, invalid, dark, jumping, trespassing."""

from __future__ import annotations

from hub.registry.maritime import MaritimeRegistry
from hub.rules import Rule, enabled_rules
from hub.rules.maritime._base import NS_PER_MIN, VesselRule
from hub.rules.maritime.config import (
    AisGapConfig,
    FishingMoratoriumConfig,
    InvalidMmsiConfig,
    MaritimeRulesConfig,
    PositionJumpConfig,
    RestrictedZoneConfig,
    Severity,
    UnregisteredVesselConfig,
)
from hub.rules.maritime.integrity import (
    COARSE_FIX_NM,
    AisGapRule,
    InvalidMmsiRule,
    PositionJumpRule,
    class_problems,
    mmsi_problems,
)
from hub.rules.maritime.presence import (
    FishingMoratoriumRule,
    RestrictedZoneRule,
    UnregisteredVesselRule,
)

__all__ = [
    "COARSE_FIX_NM",
    "NS_PER_MIN",
    "RULE_CLASSES",
    "AisGapConfig",
    "AisGapRule",
    "FishingMoratoriumConfig",
    "FishingMoratoriumRule",
    "InvalidMmsiConfig",
    "InvalidMmsiRule",
    "MaritimeRulesConfig",
    "PositionJumpConfig",
    "PositionJumpRule",
    "RestrictedZoneConfig",
    "RestrictedZoneRule",
    "Severity",
    "UnregisteredVesselConfig",
    "UnregisteredVesselRule",
    "VesselRule",
    "build_maritime_rules",
    "class_problems",
    "mmsi_problems",
]

RULE_CLASSES: dict[str, type[VesselRule]] = {
    "unregistered_vessel": UnregisteredVesselRule,
    "invalid_mmsi": InvalidMmsiRule,
    "ais_gap": AisGapRule,
    "position_jump": PositionJumpRule,
    "restricted_zone": RestrictedZoneRule,
    "fishing_moratorium": FishingMoratoriumRule,
}


def build_maritime_rules(cfg: MaritimeRulesConfig, registry: MaritimeRegistry) -> list[Rule]:
    """The enabled maritime rules, each reading its thresholds from `cfg`."""
    return enabled_rules(cfg, RULE_CLASSES, registry)
