"""The hub side of the fleet link: the status document and what to do with config/upgrade pushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from hub import __version__
from hub.alerts import install_hub_id
from hub.fleet.presence import Identity, SourceState, config_hash, iso, offline_will, online
from hub.fleet.reports import Reporter
from hub.fleet.settings import FleetSection

# config_apply, sealed and upgrade (cryptography, aiohttp) are imported only where remote
# control is on: a hub without it does not carry those libraries (RSS).
if TYPE_CHECKING:
    from hub.fleet.config_apply import ConfigApplier
    from hub.fleet.upgrade import Upgrader
    from hub.status import HubStatus

log = logging.getLogger("hub.fleet")

CONFIG_SET, UPGRADE = "config/set", "upgrade"


def _env_public_key(data_dir: Path) -> str:
    from hub.fleet.sealed import gateway_key, public_b64

    return public_b64(gateway_key(data_dir / "fleet"))


class FleetControl:
    """Built per hub instance by the supervisor; lives as long as that instance's MQTT link."""

    def __init__(
        self,
        *,
        settings: FleetSection,
        site: str,
        data_dir: Path,
        config_path: Path | None,
        reporter: Reporter,
        applier: ConfigApplier | None,
        upgrader: Upgrader | None,
        restart: asyncio.Event,
        started_at: float,
    ) -> None:
        self.settings = settings
        self.reporter = reporter
        self.applier = applier
        self.upgrader = upgrader
        self.restart = restart
        base = config_path.parent if config_path else None
        files = [p for p in base.rglob("*") if p.is_file()] if base else []
        registry = [p for p in files if base and "registry" in p.relative_to(base).parts]
        self.identity = Identity(
            site=site,
            hub_id=install_hub_id(data_dir),
            version=__version__,
            started_at=iso(started_at),
            config_hash=config_hash(config_path, registry) if config_path else "",
            status_interval_s=settings.status_interval_s,
            env_public_key=_env_public_key(data_dir) if settings.remote_control else "",
        )
        self._upgrade_task: asyncio.Task[None] | None = None

    @property
    def remote_topics(self) -> tuple[str, ...]:
        return (CONFIG_SET, UPGRADE) if self.settings.remote_control else ()

    def will(self) -> bytes:
        return offline_will(self.identity, time.time())

    def status(self, snapshot: HubStatus) -> bytes:
        """The fleet status document of the hub's status snapshot."""
        sources = [
            SourceState(
                name=s.name,
                connected=s.connected,
                messages=s.messages,
                errors=s.error_total,
                restarts=s.restarts,
            )
            for s in snapshot.sources
        ]
        by_rule = Counter(a.rule for a in snapshot.open_alerts)
        stats = snapshot.outbox
        version = self.applier.applied_version if self.applier else 0
        return online(
            self.identity, time.time(), sources, stats.rows, stats.dead_letters, by_rule, version
        )

    async def on_message(self, tail: str, payload: bytes) -> None:
        if tail == CONFIG_SET and self.applier is not None:
            from hub.fleet.config_apply import ConfigRejected

            try:
                await asyncio.to_thread(self.applier.receive, payload)
            except ConfigRejected:
                return  # reported and logged (throttled) by the reporter
            self.restart.set()
        elif tail == UPGRADE and self.upgrader is not None:
            if self._upgrade_task is not None and not self._upgrade_task.done():
                self.reporter.report("upgrade", "rejected", None, "another upgrade is in progress")
                return
            self._upgrade_task = asyncio.create_task(self._upgrade(payload), name="upgrade")

    async def _upgrade(self, payload: bytes) -> None:
        from hub.fleet.upgrade import UpgradeFailed

        assert self.upgrader is not None
        with contextlib.suppress(UpgradeFailed):  # reported and logged step by step
            await self.upgrader.handle(payload)

    async def aclose(self) -> None:
        if self._upgrade_task is not None:
            self._upgrade_task.cancel()
            await asyncio.gather(self._upgrade_task, return_exceptions=True)
