"""Records written through the hub are read back from real InfluxDB 1.6 and VictoriaMetrics."""

from __future__ import annotations

import time
from pathlib import Path

from hub.records import DoorEvent, GridTags, VesselStatic
from tests.hubtest import config, meter_readings, running
from tests.services import InfluxDB, VictoriaMetrics
from tests.util import wait_for


async def test_v1_roundtrip_same_count_tags_values(influxdb: InfluxDB, tmp_path: Path) -> None:
    db = influxdb.create_database("roundtrip_v1")
    cfg = config(
        tmp_path,
        f"""
[influxdb]
api = "v1"
url = "{db.url}"
database = "{db.db}"
batch_size = 100
flush_interval_s = 0.05
""",
    )
    start = time.time_ns() - 3600 * 10**9
    readings = meter_readings(1000, start)
    door = DoorEvent(
        door_id="D-1",
        time_ns=start,
        event="forced",
        credential_hash="ab12",
        grid=GridTags("G1", "G1-3", "P7"),
        source="test",
    )
    static = VesselStatic(
        mmsi="412345678", time_ns=start, name='SEA "STAR" 7', ship_type=30, source="test"
    )
    async with running(cfg) as hub:
        await hub.pipeline.publish(readings)
        await hub.pipeline.publish([door, static])
        assert hub.forwarder is not None
        assert await hub.forwarder.flush(30)

    rows = db.query("SELECT * FROM water_meter ORDER BY time")
    assert len(rows) == 1000
    for row, reading in zip(rows, readings, strict=True):
        assert row["time"] == reading.time_ns
        assert row["meter_id"] == reading.meter_id
        assert row["site"] == "test-site"
        assert row["total_m3"] == reading.total_m3
        assert row["flow_m3h"] == reading.flow_m3h
        assert row["alarm_bits"] == reading.alarm_bits
    (door_row,) = db.query("SELECT * FROM door_event")
    assert (door_row["grid"], door_row["micro_grid"], door_row["police_grid"]) == (
        "G1",
        "G1-3",
        "P7",
    )
    assert door_row["event"] == "forced" and door_row["credential_hash"] == "ab12"
    (static_row,) = db.query("SELECT * FROM vessel_static")
    assert static_row["name"] == 'SEA "STAR" 7' and static_row["ship_type"] == 30


async def test_v2_roundtrip_through_influxdb_client(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    cfg = config(
        tmp_path,
        f"""
[influxdb]
api = "v2"
url = "{victoria.url}"
org = "harbour"
bucket = "hub"
batch_size = 50
flush_interval_s = 0.05
""",
    )
    # VictoriaMetrics keeps one month: recent timestamps.
    readings = meter_readings(200, time.time_ns() - 600 * 10**9, prefix="V2-")
    async with running(cfg) as hub:
        await hub.pipeline.publish(readings)
        assert hub.forwarder is not None
        assert await hub.forwarder.flush(30)
        sink = hub.status().sink
        assert sink is not None and sink.written == 200

    def exported() -> list[dict[str, object]]:
        series = victoria.export('{__name__="water_meter_total_m3",meter_id=~"V2-.*"}')
        return series if sum(len(s["values"]) for s in series) == 200 else []  # type: ignore[arg-type]

    series = await wait_for(exported, timeout=15)
    assert len(series) == 10
    got = {
        (s["metric"]["meter_id"], ts * 1_000_000): v  # type: ignore[index]
        for s in series
        for ts, v in zip(s["timestamps"], s["values"], strict=True)  # type: ignore[arg-type]
    }
    want = {(r.meter_id, r.time_ns // 10**6 * 10**6): r.total_m3 for r in readings}
    assert got == want
    assert all(s["metric"]["site"] == "test-site" for s in series)  # type: ignore[index]
