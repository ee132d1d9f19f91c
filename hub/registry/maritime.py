"""Maritime registry (stub until its issue lands): config model and a part that tags nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from hub.records import Record


class MaritimeRegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaritimeRegistry:
    name = "maritime"

    def __init__(self, cfg: MaritimeRegistryConfig, hash_salt: str = "") -> None:
        self.cfg = cfg

    def tag(self, record: Record) -> Record:
        return record

    def reload_if_changed(self) -> bool:
        return False

    def apply_update(self, kind: str, payload: Any) -> None:
        return None
