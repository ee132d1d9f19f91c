"""Maritime anomaly rules over AIS records: unregistered, invalid, dark, jumping, trespassing."""

from __future__ import annotations

from hub.registry.maritime import MaritimeRegistry
from hub.rules import Rule, enabled_rules
from hub.rules.maritime._base import NS_PER_MIN, MaritimeRules, VesselRule
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
from hub.rules.maritime.state import MaritimeState

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
    "MaritimeRules",
    "MaritimeRulesConfig",
    "MaritimeState",
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
    """The enabled maritime rules, each reading its thresholds from `cfg`, as one rule group
    over one vessel table (none if no rule is enabled)."""
    rules = [r for r in enabled_rules(cfg, RULE_CLASSES, registry) if isinstance(r, VesselRule)]
    if not rules:
        return []
    expiry_ns = int(cfg.vessel_expiry_minutes * NS_PER_MIN)
    return [MaritimeRules(rules, registry, expiry_ns, cfg.max_vessels)]
