"""Community rules (stub until its issue lands)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hub.registry.community import CommunityRegistry
from hub.rules import Rule


class CommunityRulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def build_community_rules(cfg: CommunityRulesConfig, registry: CommunityRegistry) -> list[Rule]:
    return []
