"""The outbox's one SQLite thread, with a lane for work a person or an alert is waiting on.

Work runs one item at a time, in submission order, except that an urgent item (a door event's
commit, the peek that starts its alert's delivery) runs before queued *bulk* items it shares no
state with (readings commits, forwarder peeks and acks, delivery acks). It never overtakes an
ordered item (rule-state snapshots, alert changes from clock ticks, maintenance), so nothing
older can overwrite what it wrote, and a bulk item is overtaken at most MAX_OVERTAKEN times,
so a steady stream of urgent work (slow fsyncs on a loaded disk) cannot starve ingest.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

MAX_OVERTAKEN = 2


class Lane(Enum):
    URGENT = "urgent"  # may overtake queued bulk items with disjoint keys
    ORDERED = "ordered"  # never overtaken
    BULK = "bulk"  # may be overtaken by urgent items with disjoint keys


@dataclass(slots=True, kw_only=True)
class _Item:
    fn: Callable[[], Any]
    lane: Lane
    keys: frozenset[str]  # the alert and rule state the item writes
    overtaken: int = 0
    future: Future[Any] = field(default_factory=Future)


class OutboxThread:
    """A single worker thread (SQLite connections stay on one thread) with urgent overtaking."""

    def __init__(self, name: str = "outbox") -> None:
        self._name = name
        self._queue: list[_Item] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(
        self, fn: Callable[[], Any], lane: Lane = Lane.ORDERED, keys: frozenset[str] = frozenset()
    ) -> Future[Any]:
        item = _Item(fn=fn, lane=lane, keys=keys)
        with self._cv:
            if self._closed:
                raise RuntimeError("outbox thread is shut down")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return item.future

    def shutdown(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _next(self) -> _Item | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None
            return self._queue.pop(self._pick())

    def _pick(self) -> int:
        """The head, unless an urgent item is queued behind bulk items only, none sharing keys
        and none overtaken MAX_OVERTAKEN times already."""
        passed: set[str] = set()
        for index, item in enumerate(self._queue):
            if item.lane is Lane.URGENT:
                if index and not item.keys & passed:  # urgent items stay in order
                    for bulk in self._queue[:index]:
                        bulk.overtaken += 1
                    return index
                return 0
            if item.lane is Lane.ORDERED or item.overtaken >= MAX_OVERTAKEN:
                return 0
            passed |= item.keys
        return 0

    def _work(self) -> None:
        while (item := self._next()) is not None:
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                result = item.fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
