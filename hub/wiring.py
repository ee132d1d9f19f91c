"""The one place the hub reaches outside its own package: source types, driver tools and the demo.

Everything behind it is looked up by name, lazily, through the source registry
(drivers/registry.py), so the hub core never imports a protocol library or a driver it does not
use, and never imports the simulators (`sim`). tests/unit/test_layering.py holds this in place.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable
from typing import Protocol, cast

from drivers.registry import SOURCE_TYPES, config_model, tool

__all__ = ["SOURCE_TYPES", "config_model", "demo_runner", "tool"]

DEMO = "sim.demo:run_demo"


class DemoRunner(Protocol):
    def __call__(
        self, duration_s: float | None, speed: float, port: int, *, stop: asyncio.Event
    ) -> Awaitable[int]: ...


def demo_runner() -> DemoRunner:
    """`sim.demo.run_demo`: the simulators and the demo scenes, installed beside the hub."""
    module_name, _, name = DEMO.partition(":")
    return cast(DemoRunner, getattr(importlib.import_module(module_name), name))
