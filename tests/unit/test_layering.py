"""Package layering, read from the source with `ast`: what `hub` and `drivers` may import.

- `hub` never imports a field-protocol library (those live in `drivers`);
- `hub` reaches `drivers` only through the source registry, from one wiring module;
- nothing in `hub` or `drivers` imports the simulators (`sim`); the CLI names `sim.demo` once;
- the meter polling loop is defined in one place (drivers/polling.py).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.registry import SOURCE_TYPES, TOOLS, config_model, tool
from hub.wiring import demo_runner

ROOT = Path(__file__).resolve().parents[2]
FIELD_PROTOCOL_LIBS = frozenset({"pymodbus", "serial", "serial_asyncio_fast", "pyais", "pynmea2"})
WIRING = "hub/wiring.py"


def _sources(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 3, f"no sources found under {ROOT / package}"  # never pass vacuously
    return files


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, at any depth (also under TYPE_CHECKING or in a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            yield module


def _top(module: str) -> str:
    return module.partition(".")[0]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_hub_imports_no_field_protocol_library() -> None:
    found = {
        (_rel(path), module)
        for path in _sources("hub")
        for module in _imports(path)
        if _top(module) in FIELD_PROTOCOL_LIBS
    }
    assert found == set()


@pytest.mark.parametrize("package", ["hub", "drivers"])
def test_product_packages_never_import_the_simulators(package: str) -> None:
    found = {
        (_rel(path), module)
        for path in _sources(package)
        for module in _imports(path)
        if _top(module) == "sim"
    }
    assert found == set()


def test_hub_reaches_drivers_only_through_the_registry_at_one_wiring_point() -> None:
    found = {
        (_rel(path), module)
        for path in _sources("hub")
        for module in _imports(path)
        if _top(module) == "drivers"
    }
    assert found == {(WIRING, "drivers.registry")}


def test_the_simulators_are_named_only_at_the_wiring_point() -> None:
    """`hub demo` reaches `sim.demo` by name; no other product module mentions a `sim.` module."""
    named = {
        _rel(path)
        for package in ("hub", "drivers")
        for path in _sources(package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("sim.")
    }
    assert named == {WIRING}


def test_every_name_behind_the_wiring_point_resolves() -> None:
    """The registry and the demo are looked up by string: a move that forgets them fails here."""
    for type_name in SOURCE_TYPES:
        assert config_model(type_name).model_fields["type"].default == type_name
    for name in TOOLS:
        assert callable(tool(name))
    runner = demo_runner()
    assert inspect.getmodule(runner).__name__ == "sim.demo"  # type: ignore[union-attr]


def test_the_meter_polling_loop_is_defined_once() -> None:
    shared = {"poll_forever", "MeterHealth", "due_in_order"}
    defined = {
        (_rel(path), node.name)
        for path in _sources("drivers")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef | ast.ClassDef)
        and node.name in shared
    }
    assert defined == {("drivers/polling.py", name) for name in shared}
