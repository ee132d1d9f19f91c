"""ZKTeco ADMS/PUSH ATTLOG parsing and mapping on real public samples (see tests/data/README.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.door_zkteco import (
    ZktecoPushConfig,
    load_profile,
    options_reply,
    parse_attlog_line,
    record_time_ns,
)
from hub.clock import ManualClock
from hub.errors import ConfigError, FrameError
from hub.records import DOOR_EVENTS
from hub.source import SourceContext

DATA = Path(__file__).parent.parent / "data" / "doors"


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def test_saifulcoder_capture_parses_with_crlf_and_empty_workcode() -> None:
    body = (DATA / "zkteco_saifulcoder_attlog.body").read_bytes()
    records = [parse_attlog_line(line) for line in body.decode().splitlines()]
    assert [(r.pin, r.status, r.verify) for r in records] == [
        ("1", "0", "1"),
        ("1", "0", "1"),
        ("4", "0", "1"),
    ]
    # BOCK200961014 sent local time; the server in that project answers TimeZone=7.
    assert record_time_ns(records[0], 7.0, _ns("2024-07-28T00:00:00")) == _ns("2024-07-27T18:25:24")
    profile = load_profile()
    assert {profile.classify(r.status, r.verify) for r in records} == {"open"}


def test_vendor_example_with_spaces_for_tabs() -> None:
    lines = (DATA / "zkteco_push_protocol_attlog_example.body").read_text().splitlines()
    records = [parse_attlog_line(line) for line in lines]
    assert len(records) == 9
    assert [r.pin for r in records].count("8965") == 2
    assert records[-1].local_time == datetime(2015, 7, 30, 15, 16, 37)
    assert (records[-1].status, records[-1].verify) == ("0", "1")


def test_time_offset_field_wins_over_the_hub_offset() -> None:
    line = "7\t2026-11-30 09:00:00\t1\t15\t0\t0\t0\t0\t36.2\t36.2\t+28800\t"
    record = parse_attlog_line(line)
    assert record.offset_s == 28_800
    assert record_time_ns(record, -5.0, _ns("2026-12-01T00:00:00")) == _ns("2026-11-30T01:00:00")


def test_clock_far_in_the_future_falls_back_to_now() -> None:
    record = parse_attlog_line("7\t2031-01-01 00:00:00\t0\t1")
    now = _ns("2026-12-01T00:00:00")
    assert record_time_ns(record, 0.0, now) == now


@pytest.mark.parametrize(
    ("status", "verify", "event"),
    [("0", "15", "open"), ("255", "4", "open"), ("9", "1", "unknown"), ("0", "99", "unknown")],
)
def test_profile_codes(status: str, verify: str, event: str) -> None:
    assert load_profile().classify(status, verify) == event


@pytest.mark.parametrize(
    "line",
    [
        "",
        "only-a-pin",
        "1\tyesterday\t0\t1",
        "\t2024-07-28 01:25:24\t0\t1",
        "x" * 40 + "\t2024-07-28 01:25:24",
    ],
)
def test_malformed_lines(line: str) -> None:
    with pytest.raises(FrameError):
        parse_attlog_line(line)


def test_options_reply_follows_the_protocol_example() -> None:
    reply = options_reply("BOCK200961014", 8.0, 10, 30).splitlines()
    assert reply[0] == "GET OPTION FROM: BOCK200961014"
    assert "TimeZone=8" in reply and "Realtime=1" in reply
    assert "TransFlag=TransData AttLog" in reply
    assert "TimeZone=330" in options_reply("X", 5.5, 10, 30).splitlines()


def test_config_requires_a_serial_allow_list(tmp_path: Path) -> None:
    ctx = SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path)
    with pytest.raises(ValueError, match="devices"):
        ZktecoPushConfig.model_validate({"name": "zk", "devices": {}})
    cfg = ZktecoPushConfig.model_validate({"name": "zk", "devices": {"BOCK200961014": "gate"}})
    cfg.build(ctx)
    assert {path for _, path, _ in ctx.http_routes} >= {"/iclock/cdata", "/iclock/getrequest"}
    with pytest.raises(ConfigError, match="already served"):
        cfg.build(ctx)
    bad = ZktecoPushConfig.model_validate({"name": "zk2", "devices": {"../x": "gate"}})
    with pytest.raises(ConfigError, match="bad device"):
        bad.build(SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path))


@given(st.text(max_size=80))
def test_any_line_parses_or_is_a_frame_error(line: str) -> None:
    try:
        record = parse_attlog_line(line)
    except FrameError:
        return
    assert load_profile().classify(record.status, record.verify) in DOOR_EVENTS


@given(status=st.text(max_size=4), verify=st.text(max_size=4))
def test_any_code_pair_is_a_door_event_and_forced_only_if_listed(status: str, verify: str) -> None:
    profile = load_profile()
    event = profile.classify(status, verify)
    assert event in DOOR_EVENTS
    assert event != "forced" or profile.status[status] == "forced"
