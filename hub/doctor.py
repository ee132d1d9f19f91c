"""Reachability checks for the configured InfluxDB and MQTT broker."""

from __future__ import annotations

import asyncio

import aiohttp

from hub.config import HubConfig


async def check_connections(cfg: HubConfig, mqtt: bool = True) -> list[str]:
    """Human-readable problems; empty when everything configured answered."""
    problems = []
    influx = cfg.influxdb
    if influx.api in ("v1", "v2"):
        url = f"{influx.url.rstrip('/')}/ping"
        try:
            timeout = aiohttp.ClientTimeout(total=min(influx.timeout_s, 5))
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status not in (200, 204):
                    problems.append(
                        f"InfluxDB at {influx.url} answered HTTP {resp.status} to /ping"
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            problems.append(f"InfluxDB at {influx.url} is unreachable ({exc.__class__.__name__})")
    if mqtt and cfg.mqtt.enabled:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.mqtt.host, cfg.mqtt.port), timeout=5
            )
            writer.close()
        except (TimeoutError, OSError) as exc:
            problems.append(
                f"MQTT broker at {cfg.mqtt.host}:{cfg.mqtt.port} is unreachable ({exc.__class__.__name__})"
            )
    return problems
