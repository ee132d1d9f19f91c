"""Registry pushes: nothing personal reaches the data dir; oversized or malformed pushes are
refused before parsing, counted, and logged through the throttle."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from hub.registry.community import CommunityRegistry
from hub.registry.maritime import MaritimeRegistry, parse_vessels_csv
from tests.hubtest import config, running
from tests.services import Mosquitto
from tests.util import free_port, wait_for

TOKEN = "registry-edges-token"
SALT = "edges-salt-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What must never be found on disk: names, phones, owners (also in other spellings of the key).
PERSONAL = ["Wang Xiuying", "13812345678", "Li Guanghui", "0580-2212345", "Chen Dahai", "Zhou Min"]
HOUSEHOLDS_PUSH = [
    {
        "household_id": "5-1-302",
        "building": "5",
        "unit": "1",
        "room": "302",
        "is_solitary_elder": "yes",
        "Name": "Wang Xiuying",
        "phone": "13812345678",
        "contact_name": "Li Guanghui",
        "guardian_phone": "0580-2212345",  # a column nobody asked for is not kept either
    }
]
VESSEL_PUSH = {
    "mmsi": "412440690",
    "name": "ZHE DAI YU 02345",
    "owner": "Chen Dahai",
    "home_port": "Shenjiamen",
    "permits": ["fishing"],
}
ZONES_PUSH = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"id": "anch-1", "kind": "anchorage", "keeper": "Zhou Min"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[122.0, 30.0], [122.1, 30.0], [122.1, 30.1], [122.0, 30.0]]],
            },
        }
    ],
}


def _grep_data_dir(data_dir: Path) -> list[str]:
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            found += [f"{path.name}: {p}" for p in PERSONAL if p.encode() in blob]
    return found


async def test_pushed_names_phones_owners_never_reach_the_data_dir(
    tmp_path: Path,
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EDGES_REG_TOKEN", TOKEN)
    monkeypatch.setenv("EDGES_SALT", SALT)
    port = free_port()
    cfg = config(
        tmp_path,
        f'[mqtt]\nenabled = true\nport = {mosquitto.port}\n[influxdb]\napi = "local"\n',
        site="privsite",
    )
    hub_section = cfg.hub.model_copy(update={"hash_salt_env": "EDGES_SALT"})
    http = cfg.http.model_copy(
        update={"enabled": True, "port": port, "token_env": "EDGES_REG_TOKEN"}
    )
    cfg = cfg.model_copy(update={"http": http, "hub": hub_section})
    base = f"http://127.0.0.1:{port}/api/v1/registry"
    async with running(cfg) as hub, aiohttp.ClientSession() as session:
        community = hub.registry.parts["community"]
        maritime = hub.registry.parts["maritime"]
        assert isinstance(community, CommunityRegistry) and isinstance(maritime, MaritimeRegistry)
        async with session.post(
            f"{base}/community/households", json=HOUSEHOLDS_PUSH, headers=AUTH
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(f"{base}/maritime/zones", json=ZONES_PUSH, headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
        await wait_for(lambda: hub.mqtt is not None and hub.mqtt.connected)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            await platform.publish(
                "hub/privsite/registry/maritime/vessel", json.dumps(VESSEL_PUSH), qos=1
            )
            single = {"household_id": "5-1-302", "mobile": "13812345678", "room": "303"}
            await platform.publish(
                "hub/privsite/registry/community/household", json.dumps(single), qos=1
            )
            await wait_for(lambda: maritime.is_registered("412440690"), message="vessel push")
            await wait_for(
                lambda: getattr(community.household("5-1-302"), "room", "") == "303",
                message="household push",
            )
        household = community.household("5-1-302")
        assert household is not None and household.is_solitary_elder
        assert maritime.zone("anch-1") is not None
        vessel = maritime.vessel("412440690")
        csv_row = "mmsi,name,owner,home_port\n412440690,ZHE DAI YU 02345,Chen Dahai,Shenjiamen\n"
        from_csv, _ = parse_vessels_csv(csv_row, SALT, "csv")
        assert vessel is not None and vessel.owner_hash == from_csv["412440690"].owner_hash
        assert vessel.name == "ZHE DAI YU 02345"  # a ship's name is not personal: kept, as in CSV
    data_dir = cfg.hub.data_dir
    assert (data_dir / "registry_pushes.jsonl").exists()
    assert _grep_data_dir(data_dir) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not [p for p in PERSONAL if p in logged]
    # After a restart the stored (scrubbed) pushes give the same registry.
    async with running(cfg) as hub:
        # Stop only once connected: a stop while the MQTT link is still connecting can hang
        # Hub.stop (hub/publishers.py, reported to the lead); not what this test is about.
        await wait_for(lambda: hub.mqtt is not None and hub.mqtt.connected)
        maritime = hub.registry.parts["maritime"]
        assert isinstance(maritime, MaritimeRegistry)
        restored = maritime.vessel("412440690")
        assert restored is not None and restored.owner_hash == vessel.owner_hash
        community = hub.registry.parts["community"]
        assert isinstance(community, CommunityRegistry)
        assert getattr(community.household("5-1-302"), "room", "") == "303"
    assert _grep_data_dir(data_dir) == []


async def test_an_old_overlay_with_personal_data_is_rewritten(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data_dir = cfg.hub.data_dir
    data_dir.mkdir(parents=True)
    old = [["community", "households", HOUSEHOLDS_PUSH], ["maritime", "vessel", VESSEL_PUSH]]
    (data_dir / "registry_pushes.jsonl").write_text("\n".join(json.dumps(e) for e in old) + "\n")
    async with running(cfg) as hub:
        community = hub.registry.parts["community"]
        maritime = hub.registry.parts["maritime"]
        assert isinstance(community, CommunityRegistry) and isinstance(maritime, MaritimeRegistry)
        assert community.household("5-1-302") is not None
        vessel = maritime.vessel("412440690")
        assert vessel is not None and len(vessel.owner_hash) == 16
    assert _grep_data_dir(data_dir) == []


async def test_oversized_and_malformed_mqtt_pushes_are_refused_counted_and_throttled(
    tmp_path: Path,
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.app")
    monkeypatch.setenv("EDGES_REG_TOKEN", TOKEN)
    port = free_port()
    cfg = config(
        tmp_path,
        f"[mqtt]\nenabled = true\nport = {mosquitto.port}\n[registry]\nmax_push_bytes = 65536\n",
        site="bigsite",
    )
    http = cfg.http.model_copy(
        update={"enabled": True, "port": port, "token_env": "EDGES_REG_TOKEN"}
    )
    cfg = cfg.model_copy(update={"http": http})
    row = {"household_id": "1-1-101", "is_solitary_elder": "no", "building": "1" * 50}
    too_big = json.dumps([row] * 5000).encode()  # ~390 KB against a 64 KiB limit
    topic = "hub/bigsite/registry/community/households"
    async with running(cfg) as hub, aiohttp.ClientSession() as session:
        await wait_for(lambda: hub.mqtt is not None and hub.mqtt.connected)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as platform:
            for _ in range(20):
                await platform.publish(topic, too_big, qos=1)
            await platform.publish(topic, b"[" * 60_000, qos=1)  # RecursionError, no crash
            await platform.publish(topic, b"{not json", qos=1)
            await platform.publish(topic, json.dumps([{"building": "no id"}]), qos=1)
            await wait_for(lambda: hub.mqtt_errors == 23, message="23 pushes refused")
            await platform.publish(topic, json.dumps([row]), qos=1)  # still listening
            community = hub.registry.parts["community"]
            assert isinstance(community, CommunityRegistry)
            await wait_for(lambda: community.household("1-1-101") is not None)
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    assert 'hub_registry_pushes_refused_total{reason="too_large",via="mqtt"} 20.0' in text
    assert 'hub_registry_pushes_refused_total{reason="not_json",via="mqtt"} 2.0' in text
    assert 'hub_registry_pushes_refused_total{reason="invalid",via="mqtt"} 1.0' in text
    rejected = [r for r in caplog.records if "rejected MQTT message" in r.getMessage()]
    assert len(rejected) == 1  # 23 refusals within the throttle's interval: one line
