"""`hub doctor` says what is wrong with a gateway's setup, one line per check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.services import InfluxDB
from tests.util import free_port


def doctor(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "HUB_T"},
    )


def test_doctor_names_each_problem(tmp_path: Path) -> None:
    (tmp_path / "households.csv").write_text(
        "household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until\n"
        "3-2-501,3,2,501,G-03,G-03-2,PG-07,yes,\n"
        ",3,2,502,G-03,G-03-2,PG-07,maybe,\n"
    )
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n'
        f'[influxdb]\napi = "v2"\nurl = "http://127.0.0.1:{free_port()}"\ntoken_env = "HUB_T"\n'
        f'[registry.community]\nhouseholds_csv = "households.csv"\n'
        f'[[sources]]\ntype = "cjt188"\nname = "line-1"\nserial_port = "{tmp_path}/ttyNone"\n'
    )
    result = doctor(config)
    assert result.returncode == 1
    out = result.stdout
    assert (
        "FAIL  secrets from the environment — influxdb.token_env: environment variable HUB_T is not set"
        in out
    )
    assert f"FAIL  serial port {tmp_path}/ttyNone of source line-1 — missing" in out
    assert "FAIL  community registry — 1 invalid rows skipped" in out
    assert "FAIL  connection — InfluxDB at http://127.0.0.1:" in out
    assert "OK    data dir" in out and "Traceback" not in result.stderr


def test_doctor_passes_on_a_healthy_gateway(tmp_path: Path, influxdb: InfluxDB) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[influxdb]\napi = "v1"\nurl = "{influxdb.url}"\n'
    )
    result = doctor(config)
    assert result.returncode == 0, result.stdout
    assert "0 failing" in result.stdout
    assert not (tmp_path / "data").exists()  # a check, not a set-up: nothing created
