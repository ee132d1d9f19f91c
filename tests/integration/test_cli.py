"""The `hub` command's answers to bad input: clear message, right exit code, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.util import free_port, wait_for_sync


def hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "deploy" / "hub.example.toml"
    result = hub(
        "check-config",
        str(example),
        env={
            "HUB_INFLUX_TOKEN": "t",
            "HUB_WEBHOOK_SECRET": "w",
            "HUB_HTTP_TOKEN": "h",
            "HUB_MQTT_PASSWORD": "m",
            "HUB_DOOR_TOKEN": "d",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[hub]\nsite = "a"\n\n[influxdb]\napi = "v1"\nbatchsize = 10\n',
            ":6: influxdb.batchsize: unknown key",
        ),
        (
            '[influxdb]\nbatch_size = "many"\n',
            ":2: influxdb.batch_size: Input should be a valid integer",
        ),
        (
            '[influxdb]\napi = "v9"\n',
            ":2: influxdb.api: Input should be 'v1', 'v2', 'local' or 'none'",
        ),
        (
            '[[sources]]\ntype = "simulated_meters"\nname = "a"\n\n[[sources]]\ntype = "telepathy"\nname = "b"\n',
            ":6: sources[1].type: unknown source type 'telepathy'",
        ),
        (
            '[[sources]]\ntype = "simulated_meters"\nname = "a"\nmeters = -1\n',
            ":4: sources[0].meters: Input should be greater than or equal to 1",
        ),
        ("[hub\nsite=1", "not valid TOML"),
        (
            '[influxdb]\napi = "v2"\ntoken_env = "HUB_TEST_UNSET_TOKEN"\n',
            "environment variable HUB_TEST_UNSET_TOKEN is not set",
        ),
    ],
)
def test_bad_config_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    result = hub("check-config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = hub("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read config" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_influxdb(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = write(
        tmp_path,
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[http]\nenabled = false\n'
        f'[influxdb]\napi = "v1"\nurl = "http://127.0.0.1:{port}"\n',
    )
    result = hub("check-config", str(path), "--connect")
    assert result.returncode == 3
    assert f"InfluxDB at http://127.0.0.1:{port} is unreachable" in result.stderr
    # `hub run` starts anyway (a gateway may boot before its uplink), says so, and buffers.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    wait_for_sync(
        lambda: lines.append(proc.stderr.readline()) or "hub started" in lines[-1], timeout=30
    )  # type: ignore[union-attr, func-returns-value]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    text = "".join(lines)
    assert "unreachable" in text and "buffers in the outbox" in text and "Traceback" not in text


def test_secrets_never_logged(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[hub]\ndata_dir = "{tmp_path}/data"\nlog_level = "debug"\nhealth_interval_s = 0.2\n'
        "[http]\nenabled = false\n"
        '[influxdb]\napi = "v2"\nurl = "http://127.0.0.1:1"\ntoken_env = "HUB_T"\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HUB_T": "very-secret-token-42"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    wait_for_sync(
        lambda: lines.append(proc.stderr.readline()) or "unavailable" in lines[-1], timeout=30
    )  # type: ignore[union-attr, func-returns-value]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert "very-secret-token-42" not in "".join(lines) + (out or "")
