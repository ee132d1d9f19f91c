"""Prometheus metrics, collected from the live services at scrape time (no double bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.app import Hub


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        yield from self._sources()
        yield from self._outbox()
        yield from self._alerts()
        yield from self._registry()

    def _sources(self) -> Iterator[Metric]:
        msgs = CounterMetricFamily("hub_source_messages", "Messages received", labels=["source"])
        errors = CounterMetricFamily(
            "hub_source_errors", "Errors by kind", labels=["source", "kind"]
        )
        restarts = CounterMetricFamily(
            "hub_source_restarts", "Supervisor restarts", labels=["source"]
        )
        up = GaugeMetricFamily("hub_source_connected", "1 when connected", labels=["source"])
        counted = CounterMetricFamily(
            "hub_source_inputs",
            "Accepted inputs by kind (ignored, unknown)",
            labels=["source", "kind"],
        )
        for s in self.hub.sources:
            msgs.add_metric([s.name], s.stats.messages)
            restarts.add_metric([s.name], s.stats.restarts)
            up.add_metric([s.name], 1 if s.stats.connected else 0)
            for kind, n in s.stats.errors.items():
                errors.add_metric([s.name, kind], n)
            for kind, n in s.stats.counts.items():
                counted.add_metric([s.name, kind], n)
        yield from (msgs, errors, restarts, up, counted)

    def _outbox(self) -> Iterator[Metric]:
        hub = self.hub
        st = hub.outbox.stats
        yield GaugeMetricFamily("hub_outbox_rows", "Points waiting in the outbox", value=st.rows)
        yield GaugeMetricFamily("hub_outbox_bytes", "Bytes of points in the outbox", value=st.bytes)
        yield GaugeMetricFamily(
            "hub_alert_deliveries_pending", "Alert deliveries waiting", value=st.deliveries
        )
        yield CounterMetricFamily(
            "hub_outbox_dropped", "Readings dropped (budget)", value=st.dropped
        )
        yield CounterMetricFamily(
            "hub_dead_letters", "Items refused for good", value=st.dead_letters
        )
        yield CounterMetricFamily("hub_records", "Records committed", value=hub.pipeline.records_in)
        unstorable = CounterMetricFamily(
            "hub_records_unstorable", "Records with no field to store", labels=["measurement"]
        )
        for measurement, n in hub.pipeline.encode_errors.items():
            unstorable.add_metric([measurement], n)
        yield unstorable
        yield CounterMetricFamily(
            "hub_outbox_commit_failures",
            "Failed outbox commits",
            value=hub.pipeline.commit_failures,
        )
        fwd = hub.forwarder
        yield GaugeMetricFamily(
            "hub_forwarder_lag_seconds",
            "Age of oldest unsent point",
            value=fwd.lag_s if fwd else 0.0,
        )
        yield CounterMetricFamily(
            "hub_forwarder_points", "Points written to the sink", value=fwd.written if fwd else 0
        )
        yield CounterMetricFamily(
            "hub_forwarder_errors", "Failed sink writes", value=fwd.errors if fwd else 0
        )
        pub = CounterMetricFamily(
            "hub_alerts_sent", "Alert deliveries sent", labels=["destination"]
        )
        for p in hub.publishers:
            pub.add_metric([p.destination], p.sent)
        yield pub

    def _alerts(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "hub_alerts_open",
            "Open alerts by rule and severity",
            labels=["rule", "severity", "state"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for alert in self.hub.engine.alerts.open_alerts():
            key = (alert.rule, alert.severity, alert.state)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            by_state.add_metric(list(key), n)
        yield by_state
        changes = CounterMetricFamily("hub_alert_changes", "Alert state changes", labels=["state"])
        for state, n in self.hub.engine.alert_counts.items():
            changes.add_metric([state], n)
        yield changes
        rule_errors = CounterMetricFamily("hub_rule_errors", "Rule failures", labels=["rule"])
        for rule, n in self.hub.engine.rule_errors.items():
            rule_errors.add_metric([rule], n)
        yield rule_errors

    def _registry(self) -> Iterator[Metric]:
        unknown = CounterMetricFamily(
            "hub_registry_unknown_ids",
            "Records whose id the registry does not know",
            labels=["part", "kind"],
        )
        bad = GaugeMetricFamily(
            "hub_registry_bad_rows", "Registry rows skipped as invalid", labels=["part", "kind"]
        )
        for name, part in self.hub.registry.parts.items():
            for kind, n in getattr(part, "unknown_ids", {}).items():
                unknown.add_metric([name, kind], n)
            for kind, n in getattr(part, "bad_rows", {}).items():
                bad.add_metric([name, kind], n)
            problems = getattr(part, "problems", None)
            if isinstance(problems, list):
                bad.add_metric([name, "all"], len(problems))
        yield from (unknown, bad)


def render(hub: Hub) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return generate_latest(registry)
