"""The demo clock starts in the past so its data ends at "now", and never runs into the future."""

from __future__ import annotations

import time

import pytest

from hub.clock import NS_PER_S, AcceleratedClock, backdated_start_ns
from sim.demo import DEMO_BACKFILL_S, demo_clock


def test_a_run_of_known_length_ends_at_now() -> None:
    before = time.time_ns()
    start = backdated_start_ns(60, 120, backfill_s=99)
    after = time.time_ns()
    # 60 real seconds at x120 cover 7,200 clock seconds: start 7,140 s back, end at now + 60 s
    assert before - 7140 * NS_PER_S <= start <= after - 7140 * NS_PER_S


def test_an_open_ended_run_starts_one_backfill_back() -> None:
    before = time.time_ns()
    clock = demo_clock(None, 120)
    after = time.time_ns()
    assert before - int(DEMO_BACKFILL_S * NS_PER_S) <= clock.now_ns() <= after


def test_the_demo_clock_is_never_ahead_of_the_wall_clock() -> None:
    clock = demo_clock(60, 120)
    assert clock.now_ns() < time.time_ns() - 3600 * NS_PER_S  # about 2 h back at first
    assert clock.real_seconds(120) == pytest.approx(1.0)  # runs at x120 until it catches up


def test_a_caught_up_clock_runs_at_real_time() -> None:
    start = time.time_ns() - NS_PER_S // 10  # 0.1 s back at x1000: caught up after 0.1 ms
    clock = AcceleratedClock(1000, start, catch_up=True)
    deadline = time.monotonic() + 10
    while clock.real_seconds(1) != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert clock.real_seconds(1) == 1 and clock.real_seconds(30) == 30
    for _ in range(1000):
        assert clock.now_ns() <= time.time_ns()


def test_without_catch_up_the_clock_keeps_its_speed() -> None:
    clock = AcceleratedClock(1000, time.time_ns() - NS_PER_S)
    assert clock.real_seconds(1000) == 1
    now = time.time_ns()
    assert clock.now_ns() >= now - NS_PER_S  # and it will overtake the wall clock


def test_a_sleep_that_spans_the_catch_up_is_fast_then_real_time() -> None:
    clock = AcceleratedClock(2, time.time_ns() - 3600 * NS_PER_S, catch_up=True)
    # about one real hour at x2 covers the 2 clock hours to now; 10 more clock seconds are real
    assert 3600 < clock.real_seconds(7200 + 10) < 3620
