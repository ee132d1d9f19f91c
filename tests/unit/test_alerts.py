"""Alert lifecycle: stable ids, open → updated → acknowledged → resolved, cooldown, schema."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

from hub.alerts import AlertManager
from hub.records import GridTags
from hub.rules import Signal

NS = 1_000_000_000
T0 = 1_767_225_600 * NS


def raise_(severity: str = "warning", message: str = "m") -> Signal:
    return Signal(
        "r", "meter:1", True, severity, message, {"litres": 0}, GridTags("G1", "M1", "P1")
    )


def test_lifecycle_keeps_id_and_grows_seq() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    opened, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    assert opened.state == "open" and opened.seq == 1
    assert mgr.apply(raise_(), T0 + NS) is None  # nothing changed: no new event
    updated, _ = mgr.apply(raise_("critical", "worse"), T0 + 2 * NS)  # type: ignore[misc]
    assert (updated.state, updated.seq, updated.alert_id) == ("updated", 2, opened.alert_id)
    acked, _ = mgr.acknowledge(opened.alert_id, "worker-7", T0 + 3 * NS)  # type: ignore[misc]
    assert acked.state == "acknowledged" and acked.acknowledged_by == "worker-7"
    resolved, _ = mgr.apply(Signal("r", "meter:1", False), T0 + 4 * NS)  # type: ignore[misc]
    assert (resolved.state, resolved.seq, resolved.alert_id) == ("resolved", 4, opened.alert_id)
    assert mgr.open_alerts() == []


def test_acknowledged_alert_not_reraised_within_cooldown_then_new_episode() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    first, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    mgr.acknowledge(first.alert_id, "w", T0 + NS)
    mgr.apply(Signal("r", "meter:1", False), T0 + 2 * NS)
    assert mgr.apply(raise_(), T0 + 300 * NS) is None  # drifting back in: suppressed
    assert mgr.suppressed == 1
    second, _ = mgr.apply(raise_(), T0 + 700 * NS)  # type: ignore[misc]
    assert second.state == "open" and second.alert_id != first.alert_id


def test_unacknowledged_alert_reraises_at_once_and_state_survives_restart() -> None:
    mgr = AlertManager("s", cooldown_s=600)
    first, entry = mgr.apply(raise_(), T0)  # type: ignore[misc]
    restored = AlertManager("s", cooldown_s=600)
    restored.restore({"r|meter:1": json.loads(entry)})
    assert restored.apply(raise_(), T0 + NS) is None  # not re-raised after a restart
    assert restored.open_alerts()[0].alert_id == first.alert_id


def test_payload_matches_published_schema() -> None:
    schema = json.loads(resources.files("hub").joinpath("schemas/alert.schema.json").read_text())
    mgr = AlertManager("s", cooldown_s=0)
    opened, _ = mgr.apply(raise_(), T0)  # type: ignore[misc]
    resolved, _ = mgr.apply(Signal("r", "meter:1", False), T0 + NS)  # type: ignore[misc]
    for alert in (opened, resolved):
        jsonschema.validate(alert.payload(), schema)
    assert opened.payload()["grid"] == "G1" and opened.payload()["data"] == {"litres": 0}
