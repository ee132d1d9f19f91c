"""A running hub loads the client libraries of the features its config turns on, not the others:
aiohttp, aiomqtt and cryptography together are ~20 MiB of a hub's resident memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPTIONAL = ("aiohttp", "aiomqtt", "paho", "cryptography", "prometheus_client")

PROBE = """
import asyncio, json, sys
from pathlib import Path
from hub.cli import _parser
from hub.config import load_config
from hub.doctor import check_connections
from hub.fleet.supervisor import build_control
from hub.app import Hub
from hub.fleet.reports import Reporter

async def main():
    cfg = load_config(Path(sys.argv[1]))
    await check_connections(cfg, mqtt=False)
    control = build_control(cfg, Path(sys.argv[1]), Reporter(cfg.hub.site), asyncio.Event())
    hub = Hub(cfg, fleet=control)
    await hub.start()
    await hub.stop(flush_timeout_s=0)

_parser()
asyncio.run(main())
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def loaded(tmp_path: Path, extra: str) -> set[str]:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path / "var"}"\nlog_level = "warning"\n'
        "[http]\nenabled = false\n"
        '[[sources]]\ntype = "simulated_meters"\nname = "meters"\nmeters = 2\n' + extra,
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_a_hub_without_http_mqtt_or_fleet_loads_none_of_their_libraries(tmp_path: Path) -> None:
    modules = loaded(tmp_path, '[influxdb]\napi = "none"\n')
    assert "hub" in modules and "pydantic" in modules  # the probe saw the real process
    assert modules.isdisjoint(OPTIONAL), sorted(modules.intersection(OPTIONAL))


def test_a_hub_that_publishes_and_writes_to_influxdb_loads_their_clients(tmp_path: Path) -> None:
    modules = loaded(
        tmp_path,
        '[influxdb]\napi = "v1"\nurl = "http://127.0.0.1:9"\n'
        '[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = 9\n',
    )
    assert {"aiohttp", "aiomqtt"} <= modules
