"""`hub check-config` finds what `hub run` would refuse at start-up: all of it, with file:line:key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HOUSEHOLDS = (
    "household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until\n"
    "3-2-501,3,2,501,G-03,G-03-2,PG-07,yes,\n"
)


def hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGES_")}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def lines(path: Path, text: str) -> dict[str, int]:
    """Line number of the first line containing each marker comment `# @name`."""
    path.write_text(text)
    return {
        line.split("# @")[1].strip(): n
        for n, line in enumerate(text.splitlines(), start=1)
        if "# @" in line
    }


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_secrets_are_refused_by_name(tmp_path: Path, value: str) -> None:
    config = tmp_path / "hub.toml"
    at = lines(
        config,
        f'[hub]\ndata_dir = "{tmp_path}/data"\n'
        '[influxdb]\napi = "v2"\ntoken_env = "EDGES_INFLUX_TOKEN"  # @influx\n'
        '[webhook]\nenabled = true\nurl = "https://platform.example/a"\n'
        'secret_env = "EDGES_HMAC_KEY"  # @hmac\n'
        '[http]\ntoken_env = "EDGES_HTTP_TOKEN"  # @http\n'
        '[[sources]]  # @door\ntype = "door_mqtt"\nname = "gate"\npassword_env = "EDGES_DOOR"\n'
        '[[sources]]  # @dhttp\ntype = "door_http"\nname = "entry"\ntoken_env = "EDGES_DOOR_HTTP"\n',
    )
    env = {"EDGES_INFLUX_TOKEN": value, "EDGES_HMAC_KEY": value, "EDGES_HTTP_TOKEN": "fine"}
    env["EDGES_DOOR"] = env["EDGES_DOOR_HTTP"] = value
    result = hub("check-config", str(config), env=env)
    assert result.returncode == 2, result.stdout
    err = result.stderr
    assert (
        f":{at['influx']}: influxdb.token_env: environment variable EDGES_INFLUX_TOKEN is empty"
        in err
    )
    assert f":{at['hmac']}: webhook.secret_env: environment variable EDGES_HMAC_KEY is empty" in err
    assert f":{at['door']}: sources[0] (gate): " in err and "EDGES_DOOR is empty" in err
    assert (
        f":{at['dhttp']}: sources[1] (entry): " in err
        and "EDGES_DOOR_HTTP is not set or empty" in err
    )
    assert "EDGES_HTTP_TOKEN" not in err and "Traceback" not in err
    good = {**env, "EDGES_INFLUX_TOKEN": "t0k3n", "EDGES_HMAC_KEY": "k3y", "EDGES_DOOR": "pw"}
    good["EDGES_DOOR_HTTP"] = "d00r"
    assert hub("check-config", str(config), env=good).returncode == 0


def test_doctor_fails_an_empty_secret(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[influxdb]\napi = "none"\n'
        '[webhook]\nenabled = true\nurl = "https://platform.example/a"\n'
        'secret_env = "EDGES_HMAC_KEY"\n'
    )
    result = hub("doctor", "--config", str(config), env={"EDGES_HMAC_KEY": " "})
    assert result.returncode == 1
    assert (
        "FAIL  secrets from the environment — webhook.secret_env: "
        "environment variable EDGES_HMAC_KEY is empty" in result.stdout
    )
    assert "OK    secrets" not in result.stdout
    ok = hub("doctor", "--config", str(config), env={"EDGES_HMAC_KEY": "k3y"})
    assert "OK    secrets from the environment" in ok.stdout


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    (tmp_path / "zones.geojson").write_text('{"type": "FeatureCollection", "features": [')
    config = tmp_path / "hub.toml"
    at = lines(
        config,
        f'[hub]\ndata_dir = "{tmp_path}/data"\n'
        '[influxdb]\napi = "v2"\ntoken_env = "EDGES_UNSET_TOKEN"  # @token\n'
        "[registry.community]\n"
        'households_csv = "households.csv"\n'
        'meters_csv = "missing-meters.csv"  # @meters\n'
        "[registry.maritime]\n"
        'zones_geojson = "zones.geojson"  # @zones\n'
        '[[sources]]\ntype = "simulated_meters"\nname = "a"  # @a\n'
        '[[sources]]\ntype = "simulated_meters"\nname = "b"\nmeters = -1  # @meters1\n'
        '[[sources]]\ntype = "simulated_meters"\nname = "c"\ninterval_s = "often"  # @interval2\n'
        '[[sources]]\ntype = "simulated_meters"\nname = "a"  # @dup3\n'
        '[[sources]]  # @door\ntype = "door_http"\nname = "d"\ntoken_env = "EDGES_UNSET_DOOR"\n',
    )
    # First pass: what validation sees (every bad [[sources]] entry, duplicates by line).
    first = hub("check-config", str(config))
    assert first.returncode == 2 and "Traceback" not in first.stderr
    assert f":{at['meters1']}: sources[1].meters:" in first.stderr
    assert f":{at['interval2']}: sources[2].interval_s:" in first.stderr
    assert f":{at['dup3']}: sources[3].name: 'a' is already the name of sources[0]" in first.stderr
    assert f"(line {at['a']})" in first.stderr
    # Fix those: now what only building and loading find, again all of it.
    text = config.read_text().replace("meters = -1", "meters = 2")
    text = text.replace('interval_s = "often"', "interval_s = 5").replace(
        'name = "a"  # @dup3', 'name = "e"  # @dup3'
    )
    config.write_text(text)
    second = hub("check-config", str(config))
    assert second.returncode == 2 and "Traceback" not in second.stderr
    err = second.stderr
    assert (
        f":{at['token']}: influxdb.token_env: environment variable EDGES_UNSET_TOKEN is not set"
        in err
    )
    assert f":{at['meters']}: registry.community.meters_csv: " in err
    assert "missing-meters.csv: no such file" in err
    assert f":{at['zones']}: registry.maritime.zones_geojson: cannot read zones" in err
    assert f":{at['door']}: sources[4] (d): " in err and "EDGES_UNSET_DOOR is not set" in err
    assert "households_csv" not in err  # the good file is not blamed


def test_a_config_that_passes_check_config_starts(tmp_path: Path) -> None:
    """The restart loop of the issue: check-config passed, `hub run` exited 2."""
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path}/data"\n[http]\nenabled = false\n[influxdb]\napi = "none"\n'
        '[registry.community]\nhouseholds_csv = "households.csv"\n'
    )
    refused = hub("check-config", str(config))
    assert refused.returncode == 2 and "registry.community.households_csv" in refused.stderr
    run = hub("run", "--config", str(config))
    assert run.returncode == 2  # what check-config predicted
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    assert hub("check-config", str(config)).returncode == 0


def test_missing_meter_profile_names_its_line(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    at = lines(
        config,
        '[[sources]]  # @bus\ntype = "modbus"\nname = "bus"\n'
        '[[sources.meters]]\nmeter_id = "M-1"\ndevice_id = 1\nprofile = "no-such-profile"\n'
        "[[sources]]\n"
        'type = "modbus"  # @bus2\nname = "bus2"\nport = 0\n',
    )
    result = hub("check-config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        f":{at['bus']}: sources[0]: Value error, meter profile 'no-such-profile'" in result.stderr
    )
    assert f":{at['bus2'] + 2}: sources[1].port: Input should be" in result.stderr
