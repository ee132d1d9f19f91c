"""The fleet through a real two-broker topology: the hub on a gateway-local mosquitto, bridged
(deploy/mosquitto-bridge.conf, TLS + password) to a central mosquitto where the platform sits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.integration.test_fleet_mqtt import Gateway, Watcher, config_outcome, status_is
from tests.integration.test_mqtt_tls import SecureMosquitto
from tests.services import Mosquitto
from tests.util import free_port, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pa55-word-xyz"  # the one SecureMosquitto installs for user "hub"


class BridgedMosquitto(Mosquitto):
    """The shipped bridge config with the site, the central address and the CA filled in."""

    def __init__(self, workdir: Path, central: SecureMosquitto, site: str) -> None:
        super().__init__(workdir)
        shipped = (REPO / "deploy" / "mosquitto-bridge.conf").read_text()
        bridge = [
            line
            for line in shipped.splitlines()
            if line and not line.startswith(("#", "listener", "allow_anonymous"))
        ]
        text = "\n".join(bridge).replace("SITE", site)
        text = text.replace("central.example:8883", f"127.0.0.1:{central.port}")
        text = text.replace("/etc/mosquitto/certs/central-ca.pem", str(central.workdir / "ca.pem"))
        text = text.replace(f"gw-{site}", "hub").replace("CHANGE-ME", PASSWORD)
        conf = self.workdir / "mosq.conf"
        conf.write_text(conf.read_text() + text + "\n")


class CentralWatcher(Watcher):
    """The platform's view: subscribed on the central broker only."""

    async def run_central(self, central: SecureMosquitto, site: str) -> None:
        tls = ssl.create_default_context(cafile=str(central.workdir / "ca.pem"))
        async with aiomqtt.Client(
            "127.0.0.1", central.port, username="hub", password=PASSWORD, tls_context=tls
        ) as client:
            await client.subscribe(f"hub/{site}/#", qos=1)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                tail = str(message.topic).removeprefix(f"hub/{site}/")
                with contextlib.suppress(ValueError):
                    self.seen.setdefault(tail, []).append(json.loads(message.payload))

    @staticmethod
    async def publish(central: SecureMosquitto, topic: str, payload: bytes) -> None:
        tls = ssl.create_default_context(cafile=str(central.workdir / "ca.pem"))
        async with aiomqtt.Client(
            "127.0.0.1", central.port, username="hub", password=PASSWORD, tls_context=tls
        ) as client:
            await client.publish(topic, payload, qos=1)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[SecureMosquitto]:
    broker = SecureMosquitto(tmp_path / "central")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def bridged(
    tmp_path: Path, central: SecureMosquitto
) -> AsyncIterator[tuple[Gateway, CentralWatcher, SecureMosquitto]]:
    site = "harbour-bridge"
    local = BridgedMosquitto(tmp_path / "local", central, site)
    local.start()
    watcher = CentralWatcher()
    task = asyncio.create_task(watcher.run_central(central, site))
    await wait_for(lambda: watcher.last("bridge") == 1 or None, 30, message="bridge not up")
    gw = Gateway(tmp_path / "gw", site, local)
    gw.start()
    try:
        yield gw, watcher, central
    finally:
        gw.stop()
        print(gw.log())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        local.stop()


async def test_through_the_bridge_status_config_and_last_will(
    bridged: tuple[Gateway, CentralWatcher, SecureMosquitto],
) -> None:
    gw, watcher, central = bridged
    online = await wait_for(lambda: status_is(watcher, "online"), 60)
    assert online["site"] == gw.site
    # The platform's table, read from the central broker over TLS with a password.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "fleet", "status",
        "--broker", f"127.0.0.1:{central.port}", "--ca-file", str(central.workdir / "ca.pem"),
        "--username", "hub", "--password-env", "TEST_CENTRAL_PASSWORD",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_CENTRAL_PASSWORD": PASSWORD},
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    row = next(line for line in out.decode().splitlines() if line.startswith(gw.site))
    assert row.split()[1] == "online" and online["hub_id"] in row
    topic = f"hub/{gw.site}/config/set"
    good = gw.config.read_text() + "[alerts]\ntick_s = 2.0\n"
    envelope = gw.signed(1, good)
    await watcher.publish(central, topic, envelope)
    await wait_for(lambda: config_outcome(watcher, "applied", 1), 60)
    assert gw.config.read_text() == good

    await watcher.publish(central, topic, envelope)
    replay = await wait_for(lambda: config_outcome(watcher, "rejected", 1), 30)
    assert replay["reason"] == "version 1 is not newer than 1"
    tampered = json.loads(gw.signed(2, good + "# changed\n"))
    tampered["payload"] = tampered["payload"][:-8] + "AAAAAAA="
    await watcher.publish(central, topic, json.dumps(tampered).encode())
    bad = await wait_for(lambda: config_outcome(watcher, "rejected", None), 30)
    assert bad["reason"] == "bad signature"

    # Passes check-config, but the hub can no longer reach its (local) broker: rolled back.
    stranded = good.replace(f"port = {gw.port}", f"port = {free_port()}")
    assert stranded != good
    await watcher.publish(central, topic, gw.signed(3, stranded))
    rolled = await wait_for(lambda: config_outcome(watcher, "rolled_back", 3), 60)
    assert "not healthy" in rolled["reason"] and gw.config.read_text() == good

    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    will = await wait_for(lambda: status_is(watcher, "offline"), 60, message="no will centrally")
    assert will["hub_id"] == online["hub_id"]


async def test_through_the_bridge_an_upgrade_installs_and_a_broken_one_is_reported(
    tmp_path: Path, central: SecureMosquitto
) -> None:
    from aiohttp import web

    from hub.fleet.documents import build_manifest_payload
    from hub.fleet.signing import load_private_key, sign_envelope

    www = tmp_path / "www"
    www.mkdir()
    bundle = www / "hub.tar.gz"
    bundle.write_bytes(os.urandom(150_000))
    app = web.Application()
    app.router.add_static("/", www)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hub.tar.gz"
    # Stands in for install.sh: 9.0.1 fails its health check and rolls back (exit 4).
    installer = tmp_path / "install.sh"
    installer.write_text(
        '#!/bin/sh\nif [ "$2" = 9.0.1 ]; then echo "hub 9.0.1 not healthy: rolling back"; exit 4; fi\n'
    )
    installer.chmod(0o755)
    site = "harbour-upgrade"
    local = BridgedMosquitto(tmp_path / "local", central, site)
    local.start()
    watcher = CentralWatcher()
    task = asyncio.create_task(watcher.run_central(central, site))
    extra = f'install_command = ["{installer}", "{{bundle}}", "{{version}}"]\n'
    gw = Gateway(tmp_path / "gw", site, local, extra)
    gw.start()
    key = load_private_key(tmp_path / "gw" / "keys" / "ops.key")

    def steps() -> list[tuple[str, str]]:
        return [(d["outcome"], d["version"]) for d in watcher.seen.get("upgrade/state", [])]

    try:
        await wait_for(lambda: status_is(watcher, "online"), 60)
        for version in ("9.0.0", "9.0.1"):
            manifest = sign_envelope(key, build_manifest_payload(bundle, url, version))
            await watcher.publish(central, f"hub/{site}/upgrade", manifest)
            await wait_for(lambda v=version: steps() and steps()[-1][1] == v
                           and steps()[-1][0] in ("installed", "failed"), 60)  # fmt: skip
    finally:
        gw.stop()
        print(gw.log())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        local.stop()
        await runner.cleanup()
    ends = [s for s in steps() if s[0] in ("installed", "failed")]
    assert ends == [("installed", "9.0.0"), ("failed", "9.0.1")]
    failed = watcher.seen["upgrade/state"][-1]
    assert failed["reason"] == "installer exited 4" and "rolling back" in failed["output"]
