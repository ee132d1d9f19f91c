"""Outcome reports for `hub/{site}/config/state` and `hub/{site}/upgrade/state`, queued for MQTT."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass

from hub.fleet.documents import now_iso
from hub.logs import ThrottledLog

STATE_SCHEMA = "harbourgrid.fleet_state/1"
MAX_QUEUED = 64

log = logging.getLogger("hub.fleet")
_rejected_log = ThrottledLog(log)  # rejections are driven by the network: never a log flood


@dataclass(slots=True, frozen=True)
class Report:
    topic_suffix: str  # "config/state" or "upgrade/state"
    payload: bytes


class Reporter:
    """Bounded queue of reports; lives across in-process restarts so none is lost to one."""

    def __init__(self, site: str) -> None:
        self.site = site
        self._queue: deque[Report] = deque(maxlen=MAX_QUEUED)
        self.event = asyncio.Event()
        self.history: deque[dict[str, object]] = deque(maxlen=MAX_QUEUED)

    def report(
        self, kind: str, outcome: str, version: int | str | None, reason: str = "", **extra: object
    ) -> None:
        doc: dict[str, object] = {
            "schema": STATE_SCHEMA,
            "site": self.site,
            "kind": kind,
            "outcome": outcome,
            "version": version,
            "reason": reason,
            "at": now_iso(),
            **extra,
        }
        self.history.append(doc)
        if outcome == "rejected":
            _rejected_log.warning("fleet %s rejected: version=%s %s", kind, version, reason)
        elif outcome in ("failed", "rolled_back"):
            log.warning("fleet %s %s: version=%s %s", kind, outcome, version, reason)
        else:
            log.info("fleet %s %s: version=%s %s", kind, outcome, version, reason)
        self._queue.append(Report(f"{kind}/state", json.dumps(doc).encode()))
        self.event.set()

    def take(self) -> list[Report]:
        """Everything queued, oldest first; put back what could not be sent with `requeue`."""
        self.event.clear()
        out = list(self._queue)
        self._queue.clear()
        return out

    def requeue(self, reports: list[Report]) -> None:
        self._queue.extendleft(reversed(reports))
