"""`hub demo` shows an alert within 60 s; `hub replay` pushes a capture into InfluxDB and flushes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tests.services import InfluxDB

DEMO_ALERTS = (
    "source_silent",  # foundation
    "door_forced",  # community: door controller over HTTP
    "door_denied_repeatedly",
    "elder_no_water",  # community: Modbus building, elder stops using water
    "unregistered_vessel",  # maritime: AIS over UDP
    "ais_gap",
    "restricted_zone",
)


def test_demo_prints_every_scene_alert_within_60_seconds() -> None:
    launched_ns = time.time_ns()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "demo", "--duration", "60", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    opened: dict[str, str] = {}
    started = time.monotonic()
    try:
        for line in proc.stdout:
            seen.append(line)
            for rule in DEMO_ALERTS:
                if f" open         {rule} (" in line:
                    opened.setdefault(rule, line)
            if len(opened) == len(DEMO_ALERTS):
                break
    finally:
        proc.terminate()
        proc.wait(20)
    elapsed = time.monotonic() - started
    text = "".join(seen)
    assert set(opened) == set(DEMO_ALERTS), text
    assert elapsed < 60
    assert "status page: http://127.0.0.1:" in text
    assert "meters-b silent" in opened["source_silent"]
    assert "(G-03/G-03-2): elder 3-2-501 has used no water" in opened["elder_no_water"]
    assert "MMSI 412999001" in opened["unregistered_vessel"]
    assert "ZHOUSHAN FERRY 3" in opened["ais_gap"]
    assert "Traceback" not in text
    # the x120 clock starts 60 * 119 s back so the run's data ends at now: never in the future
    stamps = [_alert_time_ns(line) for line in opened.values()]
    assert max(stamps) <= time.time_ns(), text
    assert min(stamps) >= launched_ns - (60 * 119 + 60) * 10**9, text


def _alert_time_ns(line: str) -> int:
    """The `[YYYY-mm-dd HH:MM]` of a demo alert line (printed at the default UTC+8)."""
    stamp = line[line.index("[") + 1 : line.index("]")]
    at = datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=timezone(timedelta(hours=8)))
    return int(at.timestamp()) * 10**9


def test_replay_jsonl_into_influxdb(influxdb: InfluxDB, tmp_path: Path) -> None:
    db = influxdb.create_database("replay")
    t0 = time.time_ns() - 86400 * 10**9
    capture = tmp_path / "capture.jsonl"
    with capture.open("w") as f:
        for i in range(5000):
            doc = {
                "measurement": "water_meter",
                "meter_id": f"R-{i % 50}",
                "total_m3": i / 8,
                "time_ns": t0 + i * 10**6,
            }
            f.write(json.dumps(doc) + "\n")
        f.write('{"measurement": "water_meter", "meter_id": 7}\n')  # a bad line: counted
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[influxdb]\napi = "v1"\nurl = "{db.url}"\ndatabase = "{db.db}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "replay", "--config", str(cfg), str(capture)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "5001 lines -> 5000 records" in result.stderr
    assert "1 errors" in result.stderr and "records/s" in result.stderr
    assert "progress:" in result.stderr  # not a terminal: plain progress lines
    rows = db.query("SELECT count(total_m3), sum(total_m3) FROM water_meter")
    assert rows[0]["count"] == 5000
    assert rows[0]["sum"] == sum(i / 8 for i in range(5000))
