"""Maritime rules (stub until its issue lands)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hub.registry.maritime import MaritimeRegistry
from hub.rules import Rule


class MaritimeRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def build_maritime_rules(cfg: MaritimeRulesConfig, registry: MaritimeRegistry) -> list[Rule]:
    return []
