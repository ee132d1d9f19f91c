"""Meter profiles: a model's register map as data, loaded from drivers/profiles/<name>.toml."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.errors import ConfigError
from hub.records import MeterAlarm

PROFILE_DIR = Path(__file__).parents[1] / "profiles"
# Modbus application protocol v1.1b3, 6.3/6.4: a read returns 1..125 registers.
MAX_READ_REGISTERS = 125


ALARM_NAMES: dict[str, MeterAlarm] = {str(flag.name).lower(): flag for flag in MeterAlarm}

DataType = Literal["uint16", "int16", "uint32", "int32", "float32"]
WordOrder = Literal["big", "little"]
MeterField = Literal["total_m3", "flow_m3h", "battery_v", "alarm_bits", "reverse_flow"]
# Meters with several volume counters (forward, reverse, net) tag each with the counter it belongs to.
Accumulator = Literal["positive", "negative", "net"]
AddressBase = Literal[0, 1]


class ValueSpec(BaseModel):
    """One value of a profile: where it lives, how it is encoded, and which reading field it feeds.

    Several specs may feed the same numeric field (an integer part and a fraction): they are summed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: MeterField
    address: int = Field(
        ge=0, le=0x1_0000, description="register number as the manual prints it (see address_base)"
    )
    function: Literal[3, 4] = 3
    type: DataType = "uint16"
    word_order: WordOrder | None = None
    scale: float = 1.0
    unit: str = ""
    note: str = ""
    accumulator: Accumulator | None = None  # None: read whatever accumulator is chosen

    @property
    def count(self) -> int:
        return 1 if self.type in ("uint16", "int16") else 2


class MeterProfile(BaseModel):
    """A meter model's register map, parsed from drivers/profiles/<name>.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str = ""
    source: str = ""
    # 0: the manual's register n is PDU address n; 1: it is PDU address n-1 (REG0001 = address 0).
    # After loading, every ValueSpec.address is the PDU address.
    address_base: AddressBase = 0
    # Which tagged volume counter feeds total_m3 (values without a tag are always read).
    accumulator: Accumulator = "positive"
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

    @model_validator(mode="before")
    @classmethod
    def _to_pdu_addresses(cls, data: Any) -> Any:
        """Turn the manual's register numbers into PDU addresses, once, at load time."""
        if not isinstance(data, dict) or data.get("address_base", 0) != 1:
            return data
        values = data.get("value", data.get("values"))
        if not isinstance(values, list):
            return data
        shifted = []
        for value in values:
            if isinstance(value, dict) and isinstance(value.get("address"), int):
                if value["address"] < 1:
                    raise ValueError(
                        f"address {value['address']} with address_base = 1 (REG0001 is 1)"
                    )
                value = {**value, "address": value["address"] - 1}
            shifted.append(value)
        key = "value" if "value" in data else "values"
        return {**data, key: shifted}

    @model_validator(mode="after")
    def _accumulator_exists(self) -> MeterProfile:
        tagged = {v.accumulator for v in self.values if v.accumulator is not None}
        if tagged and self.accumulator not in tagged:
            raise ValueError(
                f"accumulator {self.accumulator!r} not in this profile: {sorted(tagged)}"
            )
        if any(v.address > 0xFFFF for v in self.values):
            raise ValueError("address above 65535 (0xFFFF) after applying address_base")
        return self

    def word_order_of(self, spec: ValueSpec) -> WordOrder:
        return spec.word_order or self.word_order

    @property
    def accumulators(self) -> frozenset[str]:
        return frozenset(v.accumulator for v in self.values if v.accumulator is not None)

    def selected(self, accumulator: Accumulator | None = None) -> MeterProfile:
        """The profile reading one accumulator: values tagged with another one are dropped."""
        chosen = accumulator or self.accumulator
        if self.accumulators and chosen not in self.accumulators:
            raise ConfigError(
                f"meter profile {self.name}: no {chosen!r} accumulator; has {sorted(self.accumulators)}"
            )
        values = tuple(v for v in self.values if v.accumulator in (None, chosen))
        return self.model_copy(update={"values": values, "accumulator": chosen})

    def rebased(self, address_base: AddressBase) -> MeterProfile:
        """The same register map read as if the manual numbered registers from `address_base`
        (what `hub modbus probe` tries when the declared base gives implausible values)."""
        shift = self.address_base - address_base
        values = tuple(
            v.model_copy(update={"address": v.address + shift})
            for v in self.values
            if 0 <= v.address + shift <= 0xFFFF - v.count + 1
        )
        return self.model_copy(update={"values": values, "address_base": address_base})


def shipped_profiles() -> list[str]:
    """Names of the meter profiles in PROFILE_DIR: the TOML files with `[[value]]` register tables
    (the directory also holds other drivers' tables, e.g. CJ/T 188 status layouts)."""
    names = []
    for path in sorted(PROFILE_DIR.glob("*.toml")):
        try:
            if "value" in tomllib.loads(path.read_text(encoding="utf-8")):
                names.append(path.stem)
        except (OSError, tomllib.TOMLDecodeError):
            names.append(path.stem)  # let load_profile report it
    return names


def profile_path(ref: str) -> Path:
    """A profile reference is a name in drivers/profiles/ or a path to a .toml file."""
    if ref.endswith(".toml") or "/" in ref:
        return Path(ref)
    return PROFILE_DIR / f"{ref}.toml"


def load_profile(ref: str, accumulator: Accumulator | None = None) -> MeterProfile:
    """A profile with PDU addresses, reading `accumulator` (default: the profile's choice)."""
    return _declared_profile(ref).selected(accumulator)


@lru_cache(maxsize=64)
def _declared_profile(ref: str) -> MeterProfile:
    path = profile_path(ref)
    try:
        return MeterProfile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"meter profile {ref!r}: cannot read {path}: {exc}") from exc
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"meter profile {path}: {exc}") from exc
