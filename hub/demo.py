"""`hub demo`: simulators through the real pipeline on an accelerated clock; alerts on the console.

Needs no external service: readings go to a local SQLite store (data_dir/store.sqlite) and
alerts are printed as they are raised, besides going through the durable alert outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hub.alerts import Alert
from hub.app import Hub
from hub.clock import AcceleratedClock
from hub.config import parse_config

DEMO_CONFIG = """
[hub]
site = "demo-harbour"
data_dir = "{data_dir}"
health_interval_s = 600

[http]
port = {port}

[influxdb]
api = "local"

[alerts]
tick_s = 30

[[sources]]
type = "simulated_meters"
name = "meters-a"
meters = 6
interval_s = 300
silent_timeout_s = 1200

[[sources]]
type = "simulated_meters"
name = "meters-b"
prefix = "B-"
meters = 4
interval_s = 300
stop_after_s = 600
silent_timeout_s = 1200
"""

COLOURS = {"critical": "\033[31;1m", "warning": "\033[33;1m", "info": "\033[36m"}


def format_alert(alert: Alert, utc_offset_h: float = 8.0, colour: bool = False) -> str:
    tz = timezone(timedelta(hours=utc_offset_h))
    at = datetime.fromtimestamp(alert.updated_ns / 1e9, tz=UTC).astimezone(tz)
    where = "/".join(x for x in (alert.grid.grid, alert.grid.micro_grid) if x) or alert.site
    sev = alert.severity.upper()
    if colour:
        sev = f"{COLOURS.get(alert.severity, '')}{sev}\033[0m"
    return (
        f"[{at:%Y-%m-%d %H:%M}] {sev:<8} {alert.state:<12} {alert.rule} ({where}): {alert.message}"
    )


async def run_demo(duration_s: float | None, speed: float, port: int) -> int:
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as tmp:
        text = DEMO_CONFIG.format(data_dir=tmp, port=port)
        cfg = parse_config(text, Path(tmp) / "demo.toml")
        clock = AcceleratedClock(speed)
        hub = Hub(cfg, clock=clock)
        colour = sys.stdout.isatty()
        started = time.monotonic()

        def show(alert: Alert) -> None:
            elapsed = time.monotonic() - started
            print(
                f"{elapsed:5.1f}s  {format_alert(alert, cfg.hub.utc_offset_hours, colour)}",
                flush=True,
            )

        hub.engine.listeners.append(show)
        await hub.start()
        print(
            f"Harbourgrid demo: site {cfg.hub.site}, clock x{speed:g} "
            f"(1 real second = {speed / 60:g} simulated minutes)\n"
            f"status page: {hub.http_url}   metrics: {hub.http_url}metrics\n"
            f"sources: {', '.join(s.name for s in hub.sources)} — alerts print below as they are raised "
            f"(Ctrl-C to stop)",
            flush=True,
        )
        with contextlib.suppress(asyncio.CancelledError):
            if duration_s is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration_s)
        await hub.stop(flush_timeout_s=2)
        stats = hub.outbox.stats
        print(
            f"demo finished: {hub.pipeline.records_in} records, {hub.forwarder.written if hub.forwarder else 0} "
            f"stored locally, {sum(hub.engine.alert_counts.values())} alert changes, outbox rows {stats.rows}",
            flush=True,
        )
    return 0
