"""Capture replay helper and the NMEA source config models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.nmea import FileReplay, iter_file_records
from drivers.nmea.sources import (
    NmeaSerialSource,
    NmeaTcpServerSource,
    NmeaTcpSource,
    NmeaUdpSource,
)
from drivers.registry import config_model
from hub.clock import ManualClock
from hub.records import VesselPosition
from hub.source import SourceContext, SourceStats

DATA = Path(__file__).parent.parent / "data"


def test_file_replay_batches_and_counts(tmp_path: Path) -> None:
    capture = tmp_path / "mixed.log"
    capture.write_bytes((DATA / "ais_synthetic.nmea").read_bytes() + b"garbage\r\n" * 3)
    clock = ManualClock()
    replay = FileReplay(capture, "replay", clock, batch_lines=100)
    batches = list(replay)
    assert len(batches) > 3
    assert sum(map(len, batches)) == 641 == replay.stats.records
    assert replay.stats.messages == 652 + 3
    assert replay.stats.errors == {"framing": 3}
    assert replay.bytes_read == replay.total_bytes == capture.stat().st_size


def test_replay_times_come_from_tag_blocks_else_the_clock() -> None:
    clock = ManualClock(start_ns=42)
    records = [
        r for batch in iter_file_records(DATA / "ais_synthetic.nmea", "r", clock) for r in batch
    ]
    tagged = [r for r in records if r.time_ns >= 1_780_000_000 * 10**9]
    untimed = [r for r in records if r.time_ns < 1_780_000_000 * 10**9]
    assert tagged and untimed
    # Untimed lines get the read time plus their line index, so no two points of one vessel
    # share a timestamp (InfluxDB would keep only one of them).
    assert all(42 <= r.time_ns < 42 + 10_000 for r in untimed)
    keys = [(type(r).__name__, getattr(r, "mmsi", ""), r.time_ns) for r in untimed]
    assert len(keys) == len(set(keys))


def test_iter_file_records_fills_given_stats() -> None:
    stats = SourceStats()
    batches = list(iter_file_records(DATA / "ais_public.nmea", "r", ManualClock(), stats))
    assert stats.messages == 21 and stats.records == 20 == sum(map(len, batches))
    assert all(r.source == "r" for batch in batches for r in batch)
    assert any(isinstance(r, VesselPosition) for r in batches[0])


@pytest.fixture
def ctx(tmp_path: Path) -> SourceContext:
    return SourceContext(site="t", clock=ManualClock(), data_dir=tmp_path)


@pytest.mark.parametrize(
    ("type_name", "options", "source_class"),
    [
        ("nmea_serial", {"port": "/dev/ttyUSB1"}, NmeaSerialSource),
        ("nmea_tcp", {"host": "10.0.0.5", "port": 5631}, NmeaTcpSource),
        ("nmea_tcp_server", {"bind_port": 10110}, NmeaTcpServerSource),
        ("nmea_udp", {"bind_port": 10110}, NmeaUdpSource),
    ],
)
def test_registry_types_build_sources(
    ctx: SourceContext, type_name: str, options: dict[str, object], source_class: type
) -> None:
    model = config_model(type_name)
    cfg = model.model_validate({"type": type_name, "name": "ais", **options})
    source = cfg.build(ctx)
    assert isinstance(source, source_class)
    assert source.name == "ais"


def test_config_defaults() -> None:
    serial_cfg = config_model("nmea_serial").model_validate({"type": "nmea_serial", "name": "s"})
    assert serial_cfg.baudrate == 38400
    udp_cfg = config_model("nmea_udp").model_validate({"type": "nmea_udp", "name": "u"})
    assert udp_cfg.rcvbuf_bytes == 8 * 1024 * 1024
    tcp_cfg = config_model("nmea_tcp").model_validate({"type": "nmea_tcp", "name": "t"})
    assert (tcp_cfg.reconnect_min_s, tcp_cfg.reconnect_max_s) == (1.0, 60.0)


@pytest.mark.parametrize(
    ("type_name", "bad"),
    [
        ("nmea_tcp", {"reconnect_min_s": 10, "reconnect_max_s": 1}),
        ("nmea_tcp", {"port": 0}),
        ("nmea_udp", {"rcvbuf_bytes": 1024}),
        ("nmea_serial", {"baud": 4800}),
        ("nmea_serial", {"baudrate": 0}),
    ],
)
def test_config_rejects_bad_options(type_name: str, bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        config_model(type_name).model_validate({"type": type_name, "name": "x", **bad})
