"""The hub's surfaces (HTTP, /metrics, fleet status) read the Hub's snapshots, never its services'
insides: read from the source with `ast`, so a new handler that reaches in fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SURFACES = ("hub/http.py", "hub/metrics.py", "hub/fleet/control.py")
SERVICES = frozenset(
    {"engine", "pipeline", "outbox", "forwarder", "publishers", "vessels", "sources"}
)
# Handing records over is an action, not a read: ingest commits through the pipeline.
ACTIONS = frozenset({("pipeline", "publish")})


def _is_hub(node: ast.expr) -> bool:
    """`hub`, `self.hub` or `_hub(request)`: the live Hub, as the surfaces name it."""
    if isinstance(node, ast.Call):
        node = node.func
    return (isinstance(node, ast.Name) and node.id in ("hub", "_hub")) or (
        isinstance(node, ast.Attribute) and node.attr == "hub"
    )


def _reaches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.Attribute) and node.attr in SERVICES and _is_hub(node.value):
            outer = parents.get(node)
            then = outer.attr if isinstance(outer, ast.Attribute) else ""
            if (node.attr, then) not in ACTIONS:
                found.append(f"{path.name}:{node.lineno} .{node.attr}{'.' + then if then else ''}")
    return found


@pytest.mark.parametrize("surface", SURFACES)
def test_surface_reads_snapshots_not_services(surface: str) -> None:
    path = ROOT / surface
    assert path.exists(), f"{surface} moved: update SURFACES"
    assert _reaches(path) == []


def test_the_check_sees_a_reach_into_a_service(tmp_path: Path) -> None:
    sample = tmp_path / "handler.py"
    sample.write_text(
        "def f(hub):\n"
        "    a = hub.engine.alerts.open_alerts()\n"
        "    b = hub.outbox.stats.rows\n"
        "    return hub.pipeline.publish([])\n"
    )
    assert _reaches(sample) == ["handler.py:2 .engine.alerts", "handler.py:3 .outbox.stats"]
