"""The outbox thread's lanes: what an urgent item may overtake, and what it may not."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hub.outbox_thread import MAX_OVERTAKEN, Lane, OutboxThread


def run_order(items: list[tuple[str, Lane, frozenset[str]]]) -> list[str]:
    """Submit `items` while the thread is held by a first item; the order they ran in."""
    thread = OutboxThread()
    held, ran = threading.Event(), []

    def record(name: str) -> Callable[[], None]:
        return lambda: ran.append(name)

    first = thread.submit(lambda: held.wait(10))
    futures = [thread.submit(record(name), lane, keys) for name, lane, keys in items]
    held.set()
    first.result(10)
    for future in futures:
        future.result(10)
    thread.shutdown()
    return ran


NONE: frozenset[str] = frozenset()


def test_urgent_work_runs_before_queued_bulk_work() -> None:
    order = run_order(
        [
            ("bulk-1", Lane.BULK, frozenset({"rule:speeding"})),
            ("bulk-2", Lane.BULK, NONE),
            ("door-1", Lane.URGENT, frozenset({"door_forced|D1"})),
            ("door-2", Lane.URGENT, frozenset({"door_forced|D2"})),
        ]
    )
    assert order == ["door-1", "door-2", "bulk-1", "bulk-2"]


def test_urgent_work_never_overtakes_ordered_work_or_shared_state() -> None:
    order = run_order(
        [
            ("snapshot", Lane.ORDERED, NONE),
            ("door-1", Lane.URGENT, NONE),
            ("bulk", Lane.BULK, frozenset({"rule:door_forced"})),
            ("door-2", Lane.URGENT, frozenset({"rule:door_forced"})),
            ("door-3", Lane.URGENT, NONE),  # urgent items keep their order among themselves
        ]
    )
    assert order == ["snapshot", "door-1", "bulk", "door-2", "door-3"]


def test_bulk_work_is_overtaken_a_bounded_number_of_times() -> None:
    doors = [(f"door-{i}", Lane.URGENT, NONE) for i in range(MAX_OVERTAKEN + 2)]
    order = run_order([("bulk", Lane.BULK, NONE), *doors])
    # The bulk item runs once it has been overtaken MAX_OVERTAKEN times, whatever urgent
    # work is still queued behind it.
    assert order.index("bulk") <= MAX_OVERTAKEN
    assert sorted(order) == sorted(["bulk", *(name for name, _, _ in doors)])


def test_a_failing_item_reports_to_its_caller_and_the_thread_goes_on() -> None:
    thread = OutboxThread()

    def fail() -> None:
        raise OSError(28, "No space left on device")

    failed = thread.submit(fail)
    assert isinstance(failed.exception(10), OSError)
    assert thread.submit(lambda: 42).result(10) == 42
    thread.shutdown()
