"""Fleet over a real mosquitto: presence with a last will, signed remote config with rollback.

The hub runs as a real `hub run` process, so the last-will test can SIGKILL it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest

from hub.fleet.documents import build_config_payload
from hub.fleet.signing import generate_keypair, load_private_key, sign_envelope
from tests.services import Mosquitto
from tests.util import free_port, wait_for

pytestmark = pytest.mark.integration

SCHEMAS = resources.files("hub").joinpath("schemas")
STATUS_SCHEMA = json.loads(SCHEMAS.joinpath("status.schema.json").read_text())
STATE_SCHEMA = json.loads(SCHEMAS.joinpath("fleet_state.schema.json").read_text())


def hub_toml(site: str, port: int, root: Path, extra: str = "") -> str:
    return f"""
[hub]
site = "{site}"
data_dir = "{root / "var"}"
[http]
enabled = false
[influxdb]
api = "none"
[mqtt]
enabled = true
port = {port}
client_id = "gw-{site}"
[fleet]
status_interval_s = 1
remote_control = true
trusted_keys_dir = "{root / "trusted"}"
apply_timeout_s = 4
{extra}"""


class Watcher:
    """Everything published under hub/{site}/, kept per topic in arrival order."""

    def __init__(self) -> None:
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def last(self, topic: str) -> dict[str, Any] | None:
        docs = self.seen.get(topic)
        return docs[-1] if docs else None

    async def run(self, port: int, site: str) -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(f"hub/{site}/#", qos=1)
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                tail = str(message.topic).removeprefix(f"hub/{site}/")
                with contextlib.suppress(ValueError):
                    self.seen.setdefault(tail, []).append(json.loads(payload))


class Gateway:
    def __init__(self, root: Path, site: str, mosquitto: Mosquitto, extra: str = "") -> None:
        self.root, self.site, self.port = root, site, mosquitto.port
        generate_keypair(root / "keys", "ops")
        (root / "trusted").mkdir()
        (root / "trusted" / "ops.pub").write_bytes((root / "keys" / "ops.pub").read_bytes())
        self.etc = root / "etc"
        self.etc.mkdir()
        self.config = self.etc / "hub.toml"
        self.config.write_text(hub_toml(site, self.port, root, extra))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "hub.log", "wb"),  # noqa: SIM115 - closed with the process
        )

    def log(self) -> str:
        return (self.root / "hub.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def signed(self, version: int, toml: str, registry: str = "") -> bytes:
        platform = self.root / f"platform-{version}"
        (platform / "registry").mkdir(parents=True)
        (platform / "hub.toml").write_text(toml)
        if registry:
            (platform / "registry" / "notes.csv").write_text(registry)
        key = load_private_key(self.root / "keys" / "ops.key")
        return sign_envelope(key, build_config_payload(platform, self.site, version))


@pytest.fixture
async def gateway(
    tmp_path: Path, mosquitto: Mosquitto, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Gateway, Watcher]]:
    site = f"fleet-{request.node.name[5:25].replace('_', '-')}-{os.getpid()}"
    gw = Gateway(tmp_path, site, mosquitto)
    watcher = Watcher()
    task = asyncio.create_task(watcher.run(mosquitto.port, site))
    gw.start()
    try:
        yield gw, watcher
    finally:
        gw.stop()
        print(gw.log())  # shown by pytest when the test failed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=1)


def status_is(watcher: Watcher, state: str) -> dict[str, Any] | None:
    doc = watcher.last("status")
    return doc if doc is not None and doc["state"] == state else None


async def test_status_online_then_last_will_on_sigkill(
    gateway: tuple[Gateway, Watcher], mosquitto: Mosquitto
) -> None:
    gw, watcher = gateway
    online = await wait_for(lambda: status_is(watcher, "online"), 30)
    jsonschema.validate(online, STATUS_SCHEMA)
    assert online["site"] == gw.site and len(online["hub_id"]) == 16
    assert online["open_alerts"] == {} and online["outbox_rows"] == 0
    first = len(watcher.seen["status"])
    await wait_for(lambda: len(watcher.seen["status"]) > first, 15, message="status not refreshed")
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    will = await wait_for(lambda: status_is(watcher, "offline"), 30, message="no last will")
    jsonschema.validate(will, STATUS_SCHEMA)
    assert will["hub_id"] == online["hub_id"]
    # The will is retained: a platform that looks only now still sees the gateway as offline.
    late = Watcher()
    task = asyncio.create_task(late.run(mosquitto.port, gw.site))
    try:
        assert (await wait_for(lambda: late.last("status"), 10))["state"] == "offline"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def config_outcome(watcher: Watcher, outcome: str, version: int) -> dict[str, Any] | None:
    for doc in watcher.seen.get("config/state", []):
        if doc["outcome"] == outcome and doc["version"] == version:
            return doc
    return None


async def test_signed_config_applied_replay_and_tamper_rejected_bad_one_rolled_back(
    gateway: tuple[Gateway, Watcher],
) -> None:
    gw, watcher = gateway
    before = await wait_for(lambda: status_is(watcher, "online"), 30)
    topic = f"hub/{gw.site}/config/set"

    good = hub_toml(gw.site, gw.port, gw.root, "[alerts]\ntick_s = 2.0\n")
    envelope = gw.signed(1, good, registry="id\nA\n")
    await publish(gw.port, topic, envelope)
    await wait_for(lambda: config_outcome(watcher, "applied", 1), 60)
    assert gw.config.read_text() == good
    assert (gw.etc / "registry" / "notes.csv").read_text() == "id\nA\n"
    after = await wait_for(
        lambda: (s := status_is(watcher, "online")) and s["config_version"] == 1 and s, 30
    )
    assert after["config_hash"] != before["config_hash"]

    await publish(gw.port, topic, envelope)  # replay
    replay = await wait_for(lambda: config_outcome(watcher, "rejected", 1), 30)
    assert replay["reason"] == "version 1 is not newer than 1"

    tampered = json.loads(gw.signed(2, good + "# changed\n"))
    tampered["payload"] = tampered["payload"][:-8] + "AAAAAAA="
    await publish(gw.port, topic, json.dumps(tampered).encode())
    bad = await wait_for(lambda: config_outcome(watcher, "rejected", None), 30)
    assert bad["reason"] == "bad signature"

    # Passes check-config but strands the gateway: the broker it names is not there.
    stranded = hub_toml(gw.site, free_port(), gw.root)
    await publish(gw.port, topic, gw.signed(3, stranded))
    rolled = await wait_for(lambda: config_outcome(watcher, "rolled_back", 3), 60)
    assert "not healthy" in rolled["reason"]
    assert gw.config.read_text() == good
    for doc in watcher.seen["config/state"]:
        jsonschema.validate(doc, STATE_SCHEMA)
    outcomes = [(d["outcome"], d["version"]) for d in watcher.seen["config/state"]]
    assert outcomes == [
        ("restarting", 1),
        ("applied", 1),
        ("rejected", 1),
        ("rejected", None),
        ("restarting", 3),
        ("rolled_back", 3),
    ]
    assert "Traceback" not in gw.log()


def upgrade_outcomes(watcher: Watcher) -> list[tuple[str, str | None]]:
    return [(d["outcome"], d["version"]) for d in watcher.seen.get("upgrade/state", [])]


async def test_signed_upgrade_over_mqtt_reports_every_step(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    from aiohttp import web

    from hub.fleet.documents import build_manifest_payload

    www = tmp_path / "www"
    www.mkdir()
    bundle = www / "hub-9.0.0.tar.gz"
    bundle.write_bytes(os.urandom(200_000))
    app = web.Application()
    app.router.add_static("/", www)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hub-9.0.0.tar.gz"

    site = f"fleet-upgrade-{os.getpid()}"
    gw = Gateway(tmp_path, site, mosquitto)
    installer = tmp_path / "fake-install.sh"
    installer.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "installed.txt"}\n')
    installer.chmod(0o755)
    extra = f'install_command = ["{installer}", "--offline", "{{bundle}}"]\n'
    gw.config.write_text(hub_toml(site, gw.port, tmp_path, extra))
    watcher = Watcher()
    task = asyncio.create_task(watcher.run(mosquitto.port, site))
    gw.start()
    key = load_private_key(tmp_path / "keys" / "ops.key")
    try:
        await wait_for(lambda: status_is(watcher, "online"), 30)
        topic = f"hub/{site}/upgrade"
        old = sign_envelope(key, build_manifest_payload(bundle, url, "0.0.1"))
        await publish(gw.port, topic, old)
        await wait_for(lambda: ("rejected", "0.0.1") in upgrade_outcomes(watcher), 30)
        await publish(
            gw.port, topic, sign_envelope(key, build_manifest_payload(bundle, url, "9.0.0"))
        )
        await wait_for(lambda: ("installed", "9.0.0") in upgrade_outcomes(watcher), 60)
    finally:
        gw.stop()
        print(gw.log())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    assert upgrade_outcomes(watcher) == [
        ("rejected", "0.0.1"),
        ("accepted", "9.0.0"),
        ("downloaded", "9.0.0"),
        ("verified", "9.0.0"),
        ("installing", "9.0.0"),
        ("installed", "9.0.0"),
    ]
    assert watcher.seen["upgrade/state"][0]["reason"].startswith("downgrade from")
    assert (tmp_path / "installed.txt").read_text().startswith("--offline ")
    for doc in watcher.seen["upgrade/state"]:
        jsonschema.validate(doc, STATE_SCHEMA)


async def test_fleet_status_table_marks_stale_and_offline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    import time

    from hub.fleet.presence import Identity, iso, offline_will, online

    prefix = f"fleettable{os.getpid()}"
    now = time.time()

    def ident(site: str) -> Identity:
        return Identity(
            site=site,
            hub_id="0123456789abcdef",
            version="0.1.0",
            started_at=iso(now - 3600),
            config_hash="0" * 64,
            status_interval_s=30.0,
        )

    docs = {
        "alive": online(ident("alive"), now, [], 5, 0, {"dark_vessel": 2}, 3),
        "late": online(ident("late"), now - 900, [], 0, 0, {}, 3),
        "gone": offline_will(ident("gone"), now - 900),
    }
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for site, payload in docs.items():
            await client.publish(f"{prefix}/{site}/status", payload, qos=1, retain=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "fleet", "status",
        "--broker", f"127.0.0.1:{mosquitto.port}", "--prefix", prefix,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = {line.split()[0]: line for line in out.decode().splitlines()[1:-1]}
    assert set(rows) == {"alive", "late", "gone"}
    assert " online " in rows["alive"] and "STALE" not in rows["alive"]
    assert "online (STALE)" in rows["late"]
    assert " offline " in rows["gone"]
    assert out.decode().splitlines()[-1] == "3 gateway(s), 1 offline, 1 stale"


async def test_process_killed_on_probation_rolls_back_at_next_start(
    gateway: tuple[Gateway, Watcher],
) -> None:
    gw, watcher = gateway
    await wait_for(lambda: status_is(watcher, "online"), 30)
    original = gw.config.read_text()
    # Strands the gateway, with a probation long enough to kill the process during it.
    stranded = hub_toml(gw.site, free_port(), gw.root).replace(
        "apply_timeout_s = 4", "apply_timeout_s = 600"
    )
    await publish(gw.port, f"hub/{gw.site}/config/set", gw.signed(1, stranded))
    await wait_for(lambda: config_outcome(watcher, "restarting", 1), 30)
    await wait_for(lambda: gw.config.read_text() == stranded, 30)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)  # as a power cut or an OOM kill would
    gw.proc.wait()
    gw.start()  # what systemd's Restart=always does
    rolled = await wait_for(lambda: config_outcome(watcher, "rolled_back", 1), 60)
    assert rolled["reason"] == "the hub stopped before the new config proved healthy"
    assert gw.config.read_text() == original
    await wait_for(lambda: status_is(watcher, "online"), 30)
