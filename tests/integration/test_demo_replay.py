"""`hub demo` shows an alert within 60 s; `hub replay` pushes a capture into InfluxDB and flushes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.services import InfluxDB


def test_demo_prints_an_alert_within_60_seconds() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "demo", "--duration", "60", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    started = time.monotonic()
    try:
        for line in proc.stdout:
            seen.append(line)
            if "source_silent" in line:
                break
    finally:
        proc.terminate()
        proc.wait(20)
    elapsed = time.monotonic() - started
    text = "".join(seen)
    assert "status page: http://127.0.0.1:" in text
    alert_lines = [line for line in seen if "source_silent" in line]
    assert alert_lines, text
    assert "open" in alert_lines[0] and "meters-b silent" in alert_lines[0]
    assert elapsed < 60
    assert "Traceback" not in text


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
    assert "5001 messages -> 5000 records" in result.stderr
    assert "1 errors" in result.stderr and "msg/s" in result.stderr
    assert "progress:" in result.stderr  # not a terminal: plain progress lines
    rows = db.query("SELECT count(total_m3), sum(total_m3) FROM water_meter")
    assert rows[0]["count"] == 5000
    assert rows[0]["sum"] == sum(i / 8 for i in range(5000))
