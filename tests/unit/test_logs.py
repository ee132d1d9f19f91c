"""ThrottledLog: a flood of the same rejection becomes one line plus periodic counts."""

from __future__ import annotations

import logging

import pytest

from hub.logs import ThrottledLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeated_message_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = ThrottledLog(logging.getLogger("t.throttle"), interval_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.throttle"):
        for i in range(1000):
            clock.now = i * 0.05  # 50 s of rejections, 20 per second
            log.warning("rejected message on %s", f"topic/{i}")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "rejected message on topic/0"
    assert 5 <= len(lines) <= 6
    counted = sum(int(line.split("(")[1].split()[0]) for line in lines[1:])
    assert counted + len(lines) <= 1000
    assert all("more like this" in line for line in lines[1:])


def test_distinct_messages_are_not_merged_and_keys_are_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    log = ThrottledLog(logging.getLogger("t.throttle2"), interval_s=10.0, clock=clock, max_keys=4)
    with caplog.at_level(logging.WARNING, logger="t.throttle2"):
        log.warning("bad frame from %s", "a")
        log.error("accept failed: %s", "EMFILE")
        log.warning("bad frame from %s", "b")
        assert [r.getMessage() for r in caplog.records] == [
            "bad frame from a",
            "accept failed: EMFILE",
        ]
        for i in range(100):
            log.warning(f"template {i}")  # distinct templates: the oldest are forgotten
        caplog.clear()
        log.warning("bad frame from %s", "c")
    assert [r.getMessage() for r in caplog.records] == ["bad frame from c"]
