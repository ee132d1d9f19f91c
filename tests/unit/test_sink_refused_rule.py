"""`sink_refused`: raised once while the sink refuses every write, resolved when it accepts."""

from __future__ import annotations

from hub.alerts import AlertManager
from hub.engine import Engine
from hub.rules.core import SinkRefusedRule

NS = 1_000_000_000


def test_raised_once_while_refused_resolved_on_recovery() -> None:
    refusal = {"why": ""}
    rule = SinkRefusedRule("influxdb", lambda: refusal["why"], lambda: 1234)
    engine = Engine([rule], AlertManager("s", cooldown_s=0))
    assert engine.on_tick(1 * NS).alerts == []
    refusal["why"] = 'HTTP 404: {"error":"database not found: \\"hub\\""}'
    (raised,) = engine.on_tick(2 * NS).alerts
    assert (raised.rule, raised.state, raised.severity) == ("sink_refused", "open", "critical")
    assert raised.data["outbox_rows"] == 1234 and "database not found" in raised.message
    assert engine.on_tick(3 * NS).alerts == []  # no repeat while it lasts

    refusal["why"] = ""
    (resolved,) = engine.on_tick(4 * NS).alerts
    assert resolved.state == "resolved" and resolved.alert_id == raised.alert_id
    assert engine.alerts.open_alerts() == []
