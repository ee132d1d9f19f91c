"""`hub doctor` and start-up checks: is InfluxDB/MQTT reachable, is the gateway set up right."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import HubConfig
from hub.errors import HubError
from hub.sinks import basic_auth

if TYPE_CHECKING:
    import aiohttp


async def check_connections(cfg: HubConfig, mqtt: bool = True) -> list[str]:
    """Human-readable problems; empty when everything configured answered."""
    problems = []
    influx = cfg.influxdb
    if influx.api in ("v1", "v2"):
        import aiohttp  # not loaded by a hub that never talks HTTP (RSS)

        url = f"{influx.url.rstrip('/')}/ping"
        try:
            timeout = aiohttp.ClientTimeout(total=min(influx.timeout_s, 5))
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url) as resp:
                    status = resp.status
                if status not in (200, 204):
                    problems.append(f"InfluxDB at {influx.url} answered HTTP {status} to /ping")
                else:
                    problems += await _can_write(session, cfg)
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


async def _can_write(session: aiohttp.ClientSession, cfg: HubConfig) -> list[str]:
    """A write of zero points: proves the database (v1) or bucket (v2) exists and that the
    credentials may write to it, without storing anything."""
    influx = cfg.influxdb
    password, token = _influx_secrets(cfg)
    base = influx.url.rstrip("/")
    if influx.api == "v1":
        params = {"db": influx.database, "precision": "ns"}
        if influx.retention_policy:
            params["rp"] = influx.retention_policy
        url, where = f"{base}/write", f'database "{influx.database}"'
        headers = basic_auth(influx.username, password)
    else:
        params = {"org": influx.org, "bucket": influx.bucket, "precision": "ns"}
        url, where = f"{base}/api/v2/write", f'bucket "{influx.bucket}" (org "{influx.org}")'
        headers = {"Authorization": f"Token {token}"} if token else {}
    async with session.post(url, params=params, data=b"", headers=headers) as resp:
        if resp.status // 100 == 2:
            return []
        said = f"HTTP {resp.status}: {(await resp.text()).strip()[:200]}"
    if resp.status == 404:
        fix = (
            f'create it (CREATE DATABASE "{influx.database}") or fix influxdb.database'
            if influx.api == "v1"
            else "create it or fix influxdb.bucket / influxdb.org"
        )
        return [f"InfluxDB at {influx.url} has no {where} ({said}): {fix}"]
    if resp.status in (401, 403):
        who = (
            f'user "{influx.username}" (password from ${influx.password_env})'
            if influx.api == "v1"
            else f"the token from ${influx.token_env}"
        )
        return [f"InfluxDB at {influx.url} does not let {who} write to {where} ({said})"]
    return [f"InfluxDB at {influx.url} refused a test write to {where} ({said})"]


def _influx_secrets(cfg: HubConfig) -> tuple[str, str]:
    """(password, token) from the environment; empty when unset (reported by its own check)."""
    from hub.app import read_secrets

    try:
        secrets = read_secrets(cfg)
    except HubError:
        return "", ""
    return secrets.influx_password, secrets.influx_token


@dataclass(slots=True, frozen=True)
class Check:
    ok: bool
    what: str
    detail: str = ""


def _serial_ports(cfg: HubConfig) -> list[tuple[str, str]]:
    ports = []
    for source in cfg.sources:
        port = getattr(source, "serial_port", "") or (
            getattr(source, "port", "") if source.type == "nmea_serial" else ""
        )
        if isinstance(port, str) and port:
            ports.append((source.name, port))
    return ports


def local_checks(cfg: HubConfig) -> list[Check]:
    """What can be checked on the gateway itself: data dir, disk, serial ports, outbox, registry."""
    checks = []
    data_dir = cfg.hub.data_dir
    existing = next(p for p in (data_dir, *data_dir.parents) if p.exists())
    writable = os.access(existing, os.W_OK)
    note = "" if existing == data_dir else f"created at start under {existing}"
    checks.append(Check(writable, f"data dir {data_dir} is writable", note))
    free = shutil.disk_usage(existing).free
    enough = free > 2 * cfg.outbox.max_bytes
    checks.append(
        Check(
            enough,
            "free disk for the outbox budget",
            f"{free / 2**20:,.0f} MiB free, budget {cfg.outbox.max_bytes / 2**20:,.0f} MiB",
        )
    )
    for name, port in _serial_ports(cfg):
        exists = os.path.exists(port)
        usable = exists and os.access(port, os.R_OK | os.W_OK)
        why = "" if usable else ("missing" if not exists else "no read/write permission (dialout?)")
        checks.append(Check(usable, f"serial port {port} of source {name}", why))
    checks += _outbox_checks(data_dir / "outbox.sqlite")
    return checks


def _outbox_checks(path: Path) -> list[Check]:
    if not path.exists():
        return [Check(True, "outbox", "not created yet")]
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = int(db.execute("SELECT count(*) FROM points").fetchone()[0])
        dead = int(db.execute("SELECT count(*) FROM dead_letter").fetchone()[0])
        pending = int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
    finally:
        db.close()
    return [
        Check(True, "outbox backlog", f"{rows} points, {pending} alert deliveries waiting"),
        Check(dead == 0, "dead letters", f"{dead} items refused for good (see dead_letter table)"),
    ]


def registry_checks(cfg: HubConfig) -> list[Check]:
    """Load the registry files the way the hub does and report rows it had to skip."""
    from hub.registry.community import CommunityRegistry
    from hub.registry.maritime import MaritimeRegistry

    checks = []
    for name, build in (
        ("community", lambda: CommunityRegistry(cfg.registry.community)),
        ("maritime", lambda: MaritimeRegistry(cfg.registry.maritime)),
    ):
        try:
            part = build()
        except HubError as exc:
            checks.append(Check(False, f"{name} registry", str(exc)))
            continue
        bad = sum(getattr(part, "bad_rows", {}).values()) + len(getattr(part, "problems", []))
        checks.append(Check(bad == 0, f"{name} registry", f"{bad} invalid rows skipped"))
    return checks
