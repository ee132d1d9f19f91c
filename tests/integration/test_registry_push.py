"""The platform pushes registry updates over MQTT and the local HTTP API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from hub.registry.community import CommunityRegistry
from tests.hubtest import config, running
from tests.services import Mosquitto
from tests.util import free_port, wait_for

HOUSEHOLDS = """household_id,building,unit,room,grid,micro_grid,police_grid,is_solitary_elder,away_until
3-2-501,3,2,501,G-03,G-03-2,PG-07,yes,
"""


async def test_household_away_pushed_over_mqtt_and_http(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_REG_TOKEN", "registry-token-1")
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    port = free_port()
    cfg = config(
        tmp_path,
        f"""
[mqtt]
enabled = true
port = {mosquitto.port}
[registry.community]
households_csv = "{tmp_path}/households.csv"
""",
        site="regsite",
    )
    http = cfg.http.model_copy(
        update={"enabled": True, "port": port, "token_env": "TEST_REG_TOKEN"}
    )
    cfg = cfg.model_copy(update={"http": http})
    async with running(cfg) as hub:
        part = hub.registry.parts["community"]
        assert isinstance(part, CommunityRegistry)
        now = hub.clock.now_ns()
        assert not part.is_away("3-2-501", now)
        await wait_for(lambda: hub.mqtt is not None and hub.mqtt.connected)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(
                "hub/regsite/registry/community/household",
                json.dumps({"household_id": "3-2-501", "away_until": "2099-12-01"}),
                qos=1,
            )
            await wait_for(lambda: part.is_away("3-2-501", now), message="away pushed over MQTT")
            await platform.publish("hub/regsite/registry/community/household", b"[1, 2", qos=1)
            await wait_for(lambda: hub.mqtt_errors == 1)  # refused, counted, registry unchanged
        assert part.is_away("3-2-501", now)
        url = f"http://127.0.0.1:{port}/api/v1/registry/community/household"
        body = {"household_id": "3-2-501", "away_until": ""}
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=body) as resp:
                assert resp.status == 401
            headers = {"Authorization": "Bearer registry-token-1"}
            async with session.post(url, json=body, headers=headers) as resp:
                assert resp.status == 200
            async with session.post(url, json={"nope": 1}, headers=headers) as resp:
                assert resp.status == 400 and "error" in await resp.json()
        assert not part.is_away("3-2-501", now)


async def test_pushes_survive_a_restart_and_a_file_reload(tmp_path: Path) -> None:
    (tmp_path / "households.csv").write_text(HOUSEHOLDS)
    cfg = config(tmp_path, f'[registry.community]\nhouseholds_csv = "{tmp_path}/households.csv"\n')
    async with running(cfg) as hub:
        hub.registry.apply_update(
            "community", "household", {"household_id": "3-2-501", "away_until": "2099-12-01"}
        )
        hub.registry.apply_update(
            "community", "household", {"household_id": "3-2-501", "micro_grid": "G-03-9"}
        )
        now = hub.clock.now_ns()
    overlay = (tmp_path / "data" / "registry_pushes.jsonl").read_text().splitlines()
    assert len(overlay) == 1  # two partial pushes for one household folded into one entry
    async with running(cfg) as hub:  # a restart: the file says "not away", the push wins
        part = hub.registry.parts["community"]
        assert isinstance(part, CommunityRegistry)
        assert part.is_away("3-2-501", now)
        household = part.household("3-2-501")
        assert household is not None and household.grid.micro_grid == "G-03-9"
        # A technician edits the CSV: it is reloaded, and the platform's push applies again.
        (tmp_path / "households.csv").write_text(HOUSEHOLDS.replace("PG-07", "PG-08"))
        os.utime(tmp_path / "households.csv", (1, 2_000_000_000))
        assert hub.registry.reload_if_changed()
        household = part.household("3-2-501")
        assert household is not None and household.grid.police_grid == "PG-08"
        assert part.is_away("3-2-501", now)
