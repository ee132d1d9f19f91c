"""Meter profiles: a model's register map as data, loaded from drivers/profiles/<name>.toml."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError
from hub.records import MeterAlarm

PROFILE_DIR = Path(__file__).parents[1] / "profiles"
# Modbus application protocol v1.1b3, 6.3/6.4: a read returns 1..125 registers.
MAX_READ_REGISTERS = 125


ALARM_NAMES: dict[str, MeterAlarm] = {str(flag.name).lower(): flag for flag in MeterAlarm}

DataType = Literal["uint16", "int16", "uint32", "int32", "float32"]
WordOrder = Literal["big", "little"]
MeterField = Literal["total_m3", "flow_m3h", "battery_v", "alarm_bits", "reverse_flow"]


class ValueSpec(BaseModel):
    """One value of a profile: where it lives, how it is encoded, and which reading field it feeds.

    Several specs may feed the same numeric field (an integer part and a fraction): they are summed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: MeterField
    address: int = Field(ge=0, le=0xFFFF, description="0-based PDU address")
    function: Literal[3, 4] = 3
    type: DataType = "uint16"
    word_order: WordOrder | None = None
    scale: float = 1.0
    unit: str = ""
    note: str = ""

    @property
    def count(self) -> int:
        return 1 if self.type in ("uint16", "int16") else 2


class MeterProfile(BaseModel):
    """A meter model's register map, parsed from drivers/profiles/<name>.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str = ""
    source: str = ""
    word_order: WordOrder = "big"
    max_read_registers: int = Field(default=MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    # False for meters that report an absolute flow (its sign says nothing about direction).
    reverse_from_negative_flow: bool = True
    values: tuple[ValueSpec, ...] = Field(alias="value", min_length=1)
    alarms: dict[str, int] = Field(default_factory=dict)

    @field_validator("alarms")
    @classmethod
    def _known_alarms(cls, alarms: dict[str, int]) -> dict[str, int]:
        for name, mask in alarms.items():
            if name not in ALARM_NAMES:
                raise ValueError(f"unknown alarm {name!r}; known: {sorted(ALARM_NAMES)}")
            if not 0 < mask <= 0xFFFF_FFFF:
                raise ValueError(f"alarm {name!r} mask {mask:#x} out of range")
        return alarms

    def word_order_of(self, spec: ValueSpec) -> WordOrder:
        return spec.word_order or self.word_order


def profile_path(ref: str) -> Path:
    """A profile reference is a name in drivers/profiles/ or a path to a .toml file."""
    if ref.endswith(".toml") or "/" in ref:
        return Path(ref)
    return PROFILE_DIR / f"{ref}.toml"


@lru_cache(maxsize=64)
def load_profile(ref: str) -> MeterProfile:
    path = profile_path(ref)
    try:
        return MeterProfile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"meter profile {ref!r}: cannot read {path}: {exc}") from exc
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"meter profile {path}: {exc}") from exc
