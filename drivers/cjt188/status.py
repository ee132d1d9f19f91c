"""CJ/T 188 status word (ST1 | ST2 << 8) to hub alarms, through a vendor layout loaded as data."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.modbus_meter import ALARM_NAMES
from hub.errors import ConfigError
from hub.records import MeterAlarm

LAYOUT_FILE = Path(__file__).parents[1] / "profiles" / "cjt188_status.toml"
DEFAULT_LAYOUT = "cjt188-2004"
Valve = Literal["open", "closed", "abnormal", "undefined", "not_reported"]
_WORD = Field(default=None, ge=0, le=0xFFFF)


class StatusLayout(BaseModel):
    """Which status bits mean what for one vendor; bits it does not name mean nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    valve_mask: int = Field(default=0, ge=0, le=0xFFFF)
    valve_open: int | None = _WORD
    valve_closed: int | None = _WORD
    valve_abnormal: int | None = _WORD
    battery_low: int = Field(default=0, ge=0, le=0xFFFF)
    alarms: dict[str, int] = Field(default_factory=dict)

    @field_validator("alarms")
    @classmethod
    def _known_alarms(cls, alarms: dict[str, int]) -> dict[str, int]:
        for name, mask in alarms.items():
            if name not in ALARM_NAMES or not 0 < mask <= 0xFFFF:
                raise ValueError(f"bad alarm {name!r} = {mask:#x}; known: {sorted(ALARM_NAMES)}")
        return alarms

    def valve(self, status: int) -> Valve:
        if not self.valve_mask:
            return "not_reported"
        bits = status & self.valve_mask
        states: dict[int | None, Valve] = {
            self.valve_abnormal: "abnormal",
            self.valve_closed: "closed",
            self.valve_open: "open",
        }
        return states.get(bits, "undefined")

    def decode(self, status: int, extra_st2: Mapping[str, int] | None = None) -> StatusFlags:
        """Hub alarms from a status word; `extra_st2` adds line-configured ST2 bit meanings."""
        flags = MeterAlarm(0)
        valve = self.valve(status)
        if valve == "closed":
            flags |= MeterAlarm.VALVE_CLOSED
        elif valve == "abnormal":
            flags |= MeterAlarm.FAULT
        battery_low = bool(self.battery_low and status & self.battery_low)
        if battery_low:
            flags |= MeterAlarm.LOW_BATTERY
        for name, mask in self.alarms.items():
            if status & mask:
                flags |= ALARM_NAMES[name]
        for name, mask in (extra_st2 or {}).items():
            if (status >> 8) & mask:
                flags |= ALARM_NAMES[name]
        return StatusFlags(valve=valve, battery_low=battery_low, alarm_bits=int(flags))


@dataclass(slots=True, frozen=True, kw_only=True)
class StatusFlags:
    valve: Valve
    battery_low: bool
    alarm_bits: int  # MeterAlarm flags


@functools.cache
def status_layouts() -> dict[str, StatusLayout]:
    """All layouts in drivers/profiles/cjt188_status.toml, validated once."""
    try:
        tables = tomllib.loads(LAYOUT_FILE.read_text(encoding="utf-8"))
        return {
            name: StatusLayout.model_validate({"name": name, **table})
            for name, table in tables.items()
        }
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"{LAYOUT_FILE}: {exc}") from exc


def status_layout(name: str) -> StatusLayout:
    layouts = status_layouts()
    if name not in layouts:
        raise ConfigError(f"unknown CJ/T 188 status layout {name!r}; known: {sorted(layouts)}")
    return layouts[name]
