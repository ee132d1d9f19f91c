"""Runs the hub and restarts it in-process when a remote config was applied, with rollback.

A new config is on probation until the restarted hub is healthy — started, MQTT connected (so
the platform can still reach it), no service task dead — within `fleet.apply_timeout_s`. If it
fails to build, to start, or to become healthy, the files are put back and the hub restarts on
the last good config. If the whole process dies during probation (systemd restarts it), the
pending marker found at start-up rolls back before the new config is even loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hub import __version__
from hub.config import HubConfig, load_config
from hub.errors import HubError
from hub.fleet.control import FleetControl
from hub.fleet.reports import Reporter

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger("hub.fleet")
HEALTH_POLL_S = 0.2


def build_control(
    cfg: HubConfig, config_path: Path | None, reporter: Reporter, restart: asyncio.Event
) -> FleetControl:
    fleet = cfg.fleet
    state_dir = cfg.hub.data_dir / "fleet"
    applier = upgrader = None
    if fleet.remote_control and config_path is not None:
        # Only remote control needs the signing and upgrade code (cryptography, aiohttp).
        from hub.fleet.config_apply import ConfigApplier
        from hub.fleet.signing import load_trusted_keys
        from hub.fleet.upgrade import Upgrader

        trusted = load_trusted_keys(fleet.trusted_keys_dir)
        if not trusted:
            log.warning("fleet.remote_control is on but %s holds no *.pub", fleet.trusted_keys_dir)
        applier = ConfigApplier(config_path, state_dir, cfg.hub.site, trusted, reporter)
        upgrader = Upgrader(fleet, state_dir, cfg.hub.site, __version__, trusted, reporter)
    return FleetControl(
        settings=fleet,
        site=cfg.hub.site,
        data_dir=cfg.hub.data_dir,
        config_path=config_path,
        reporter=reporter,
        applier=applier,
        upgrader=upgrader,
        restart=restart,
        started_at=time.time(),
    )


def healthy(hub: Hub) -> bool:
    return (hub.mqtt is None or hub.mqtt.connected) and not hub.dead_tasks()


async def run_supervised(config_path: Path, cfg: HubConfig, stop: asyncio.Event) -> int:
    from hub.app import Hub

    reporter = Reporter(cfg.hub.site)
    if cfg.fleet.remote_control:
        from hub.fleet.config_apply import load_env

        load_env(cfg.hub.data_dir / "fleet")  # secrets delivered sealed in an earlier config
    first = build_control(cfg, config_path, reporter, asyncio.Event())
    if first.applier is not None and first.applier.pending is not None:
        first.applier.rollback("the hub stopped before the new config proved healthy")
        cfg = load_config(config_path)
    if first.upgrader is not None:
        first.upgrader.report_after_restart()
    while True:
        restart = asyncio.Event()
        control = build_control(cfg, config_path, reporter, restart)
        applier = control.applier
        hub: Hub | None = None
        try:
            hub = Hub(cfg, fleet=control)
            await hub.start()
            if applier is not None and applier.pending is not None:
                await _probation(hub, cfg.fleet.apply_timeout_s, stop)
                if stop.is_set():  # stopped on probation: the next start rolls back
                    await _stop(hub, control)
                    return 0
                applier.commit()
        except (HubError, OSError, TimeoutError) as exc:
            if applier is None or applier.pending is None:
                raise
            if hub is not None:
                await _stop(hub, control)
            applier.rollback(_why(exc, cfg.fleet.apply_timeout_s))
            cfg = load_config(config_path)
            continue
        await _first_of(stop, restart)
        await _stop(hub, control)
        if stop.is_set():
            return 0
        log.info("restarting the hub in-process on the new config")
        try:
            cfg = load_config(config_path)
        except HubError as exc:  # checked before it was written; only a race gets here
            if applier is not None:
                applier.rollback(f"new config failed to load: {exc}")
            cfg = load_config(config_path)


async def _probation(hub: Hub, timeout_s: float, stop: asyncio.Event) -> None:
    async with asyncio.timeout(timeout_s):
        # Health is several states (MQTT link, every task) with no single event to wait on.
        while not healthy(hub) and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(HEALTH_POLL_S)


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"not healthy (MQTT connected, all services running) within {timeout_s:g}s"
    return f"start-up failed: {exc}"


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def _stop(hub: Hub, control: FleetControl) -> None:
    await control.aclose()
    with contextlib.suppress(HubError, OSError):
        await hub.stop()
