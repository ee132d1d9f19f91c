"""Prometheus metrics, from the hub's status and counter snapshots taken at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.status import HubCounters, HubStatus


class HubCollector(Collector):
    def __init__(self, *, status: HubStatus, counters: HubCounters) -> None:
        self.status = status
        self.counters = counters

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
        for s in self.status.sources:
            msgs.add_metric([s.name], s.messages)
            restarts.add_metric([s.name], s.restarts)
            up.add_metric([s.name], 1 if s.connected else 0)
            for kind, n in s.errors.items():
                errors.add_metric([s.name, kind], n)
            for kind, n in s.counts.items():
                counted.add_metric([s.name, kind], n)
        yield from (msgs, errors, restarts, up, counted)

    def _outbox(self) -> Iterator[Metric]:
        st = self.status.outbox
        yield GaugeMetricFamily("hub_outbox_rows", "Points waiting in the outbox", value=st.rows)
        yield GaugeMetricFamily("hub_outbox_bytes", "Bytes of points in the outbox", value=st.bytes)
        yield GaugeMetricFamily(
            "hub_alert_deliveries_pending", "Alert deliveries waiting", value=st.deliveries
        )
        yield CounterMetricFamily(
            "hub_outbox_dropped", "Readings dropped (budget)", value=st.dropped
        )
        yield CounterMetricFamily(
            "hub_outbox_dropped_alert_points",
            "Alert points dropped (budget full with no reading left)",
            value=st.dropped_alert_points,
        )
        yield CounterMetricFamily(
            "hub_outbox_dropped_deliveries",
            "Alert deliveries dropped (budget full with no reading or alert point left)",
            value=st.dropped_deliveries,
        )
        yield CounterMetricFamily(
            "hub_outbox_dropped_dead_letters",
            "Dead letters dropped (budget full with no reading left)",
            value=st.dropped_dead_letters,
        )
        yield GaugeMetricFamily(
            "hub_dead_letters",
            "Items refused for good, waiting in the dead-letter table (see hub dead-letters)",
            value=st.dead_letters,
        )
        counters = self.counters
        yield CounterMetricFamily("hub_records", "Records committed", value=counters.records_in)
        unstorable = CounterMetricFamily(
            "hub_records_unstorable", "Records with no field to store", labels=["measurement"]
        )
        for measurement, n in counters.unstorable.items():
            unstorable.add_metric([measurement], n)
        yield unstorable
        yield CounterMetricFamily(
            "hub_outbox_commit_failures",
            "Failed outbox commits",
            value=counters.commit_failures,
        )
        yield from self._sink()
        yield from self._publishers()

    def _sink(self) -> Iterator[Metric]:
        sink = self.status.sink
        yield GaugeMetricFamily(
            "hub_forwarder_lag_seconds",
            "Seconds since the oldest unsent point was queued (grows during an outage)",
            value=sink.lag_s if sink else 0.0,
        )
        yield CounterMetricFamily(
            "hub_forwarder_points", "Points written to the sink", value=sink.written if sink else 0
        )
        yield CounterMetricFamily(
            "hub_forwarder_errors", "Failed sink writes", value=sink.errors if sink else 0
        )
        if sink is not None:
            up = GaugeMetricFamily(
                "hub_sink_up", "1 when the last write to the sink succeeded", labels=["sink"]
            )
            up.add_metric([sink.name], 1 if sink.up else 0)
            refused = GaugeMetricFamily(
                "hub_sink_refused",
                "1 while the sink refuses every write (rows kept, sink_refused alert open)",
                labels=["sink"],
            )
            refused.add_metric([sink.name], 1 if sink.refused else 0)
            yield from (up, refused)

    def _publishers(self) -> Iterator[Metric]:
        pub = CounterMetricFamily(
            "hub_alerts_sent", "Alert deliveries sent", labels=["destination"]
        )
        up = GaugeMetricFamily(
            "hub_publisher_up", "1 when the alert destination is reachable", labels=["destination"]
        )
        failed = CounterMetricFamily(
            "hub_publisher_errors", "Failed alert deliveries or connects", labels=["destination"]
        )
        for p in self.status.publishers:
            pub.add_metric([p.destination], p.sent)
            up.add_metric([p.destination], 1 if p.connected else 0)
            failed.add_metric([p.destination], p.errors)
        yield from (pub, up, failed)

    def _alerts(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "hub_alerts_open",
            "Open alerts by rule and severity",
            labels=["rule", "severity", "state"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for alert in self.status.open_alerts:
            key = (alert.rule, alert.severity, alert.state)
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            by_state.add_metric(list(key), n)
        yield by_state
        changes = CounterMetricFamily("hub_alert_changes", "Alert state changes", labels=["state"])
        for state, n in self.counters.alert_changes.items():
            changes.add_metric([state], n)
        yield changes
        rule_errors = CounterMetricFamily("hub_rule_errors", "Rule failures", labels=["rule"])
        for rule, n in self.counters.rule_errors.items():
            rule_errors.add_metric([rule], n)
        yield rule_errors
        yield from self._feedback()

    def _feedback(self) -> Iterator[Metric]:
        false_alarms = CounterMetricFamily(
            "hub_alert_false_alarms", "Alerts the platform called false alarms", labels=["rule"]
        )
        for rule, n in self.counters.false_alarms.items():
            false_alarms.add_metric([rule], n)
        feedback = CounterMetricFamily(
            "hub_alert_feedback", "Feedback on alerts by outcome", labels=["outcome"]
        )
        for outcome, n in self.counters.feedback.items():
            feedback.add_metric([outcome], n)
        rejected = CounterMetricFamily(
            "hub_alert_feedback_rejected", "Feedback refused, by reason", labels=["reason"]
        )
        for reason, n in self.counters.feedback_rejected.items():
            rejected.add_metric([reason], n)
        yield from (false_alarms, feedback, rejected)

    def _registry(self) -> Iterator[Metric]:
        unknown = CounterMetricFamily(
            "hub_registry_unknown_ids",
            "Records whose id the registry does not know",
            labels=["part", "kind"],
        )
        bad = GaugeMetricFamily(
            "hub_registry_bad_rows", "Registry rows skipped as invalid", labels=["part", "kind"]
        )
        for name, kind, n in self.counters.registry_unknown_ids:
            unknown.add_metric([name, kind], n)
        for name, kind, n in self.counters.registry_bad_rows:
            bad.add_metric([name, kind], n)
        refused = CounterMetricFamily(
            "hub_registry_pushes_refused", "Registry pushes refused", labels=["via", "reason"]
        )
        for via, reason, n in self.counters.registry_pushes_refused:
            refused.add_metric([via, reason], n)
        yield from (unknown, bad, refused)


def render(status: HubStatus, counters: HubCounters, *collectors: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(status=status, counters=counters))
    # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds, ... (Linux)
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
