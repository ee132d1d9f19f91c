"""The hub's surfaces (HTTP, /metrics, fleet status) read the Hub's snapshots, never its services'
insides: checked in the source with `ast`, so a new handler that reaches in fails here, and by
rendering /metrics from snapshots alone."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from hub.alerts import Alert
from hub.metrics import render
from hub.outbox import OutboxStats
from hub.records import GridTags
from hub.status import HubCounters, HubStatus, SourceStatus

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


def test_metrics_are_rendered_from_the_snapshots_alone() -> None:
    """No Hub at all: /metrics is a function of a status and a counters snapshot."""
    alert = Alert(
        alert_id="a1",
        rule="door_forced",
        subject="door:D-1",
        state="open",
        severity="critical",
        message="m",
        site="s",
        grid=GridTags(),
        opened_ns=1,
        updated_ns=1,
    )
    source = SourceStatus(
        name="doors",
        kind="door_http",
        connected=True,
        messages=12,
        errors=MappingProxyType({"bad_json": 2}),
        counts=MappingProxyType({}),
        restarts=1,
        last_message_ns=5,
        last_error="",
    )
    status = HubStatus(
        site="s",
        now_ns=10,
        dead_tasks=(),
        sources=(source,),
        outbox=OutboxStats(rows=3, dead_letters=1),
        sink_api="none",
        sink=None,
        publishers=(),
        open_alerts=(alert,),
        vessel_count=0,
    )
    empty: Mapping[str, int] = MappingProxyType({})
    counters = HubCounters(
        records_in=42,
        unstorable=empty,
        commit_failures=0,
        alert_changes=MappingProxyType({"open": 1}),
        rule_errors=empty,
        false_alarms=empty,
        feedback=empty,
        feedback_rejected=empty,
        registry_unknown_ids=(("community", "meter", 4),),
        registry_bad_rows=(),
        registry_pushes_refused=(),
    )
    lines = render(status, counters).decode().splitlines()
    for expected in (
        'hub_source_messages_total{source="doors"} 12.0',
        'hub_source_errors_total{kind="bad_json",source="doors"} 2.0',
        "hub_outbox_rows 3.0",
        "hub_dead_letters 1.0",
        "hub_records_total 42.0",
        "hub_forwarder_points_total 0.0",
        'hub_alerts_open{rule="door_forced",severity="critical",state="open"} 1.0',
        'hub_alert_changes_total{state="open"} 1.0',
        'hub_registry_unknown_ids_total{kind="meter",part="community"} 4.0',
    ):
        assert expected in lines
    assert not any(line.startswith("hub_sink_up") for line in lines)  # no forwarder, no sink
