"""Alerts over MQTT with TLS and username/password against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from tests.hubtest import config, running
from tests.services import Mosquitto, require
from tests.util import wait_for


def make_ca(tmp: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    ossl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    )


class SecureMosquitto(Mosquitto):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        make_ca(workdir)
        subprocess.run(
            [
                require("mosquitto_passwd"),
                "-b",
                "-c",
                str(workdir / "passwd"),
                "hub",
                "pa55-word-xyz",
            ],
            check=True,
        )
        (workdir / "passwd").chmod(0o600)
        conf = (
            (workdir / "mosq.conf")
            .read_text()
            .replace("allow_anonymous true", "allow_anonymous false")
        )
        conf += (
            f"password_file {workdir}/passwd\ncafile {workdir}/ca.pem\n"
            f"certfile {workdir}/server.pem\nkeyfile {workdir}/server.key\n"
        )
        (workdir / "mosq.conf").write_text(conf)


@pytest.fixture
def secure_broker(tmp_path: Path) -> SecureMosquitto:
    broker = SecureMosquitto(tmp_path / "mq")
    broker.start()
    yield broker  # type: ignore[misc]
    broker.stop()


def hub_cfg(tmp_path: Path, port: int) -> str:
    return f"""
[mqtt]
enabled = true
port = {port}
username = "hub"
password_env = "TEST_MQTT_PASSWORD"
tls = true
ca_file = "{tmp_path}/mq/ca.pem"
[alerts]
tick_s = 0.1
[[sources]]
type = "simulated_meters"
name = "quiet"
interval_s = 0.1
stop_after_s = 0.2
silent_timeout_s = 1.0
"""


async def test_alert_over_tls_with_password(
    secure_broker: SecureMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "pa55-word-xyz")
    tls = ssl.create_default_context(cafile=str(tmp_path / "mq" / "ca.pem"))
    async with aiomqtt.Client(
        "127.0.0.1", secure_broker.port, username="hub", password="pa55-word-xyz", tls_context=tls
    ) as platform:
        await platform.subscribe("hub/test-site/alerts/#", qos=1)
        async with running(config(tmp_path, hub_cfg(tmp_path, secure_broker.port))):
            message = await asyncio.wait_for(anext(platform.messages), 20)
    assert json.loads(message.payload)["rule"] == "source_silent"  # type: ignore[arg-type]


async def test_wrong_password_is_counted_and_alert_kept(
    secure_broker: SecureMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong-password")
    async with running(config(tmp_path, hub_cfg(tmp_path, secure_broker.port))) as hub:
        mqtt = hub.mqtt
        assert mqtt is not None

        def queued() -> int:
            return hub.status().outbox.deliveries

        def changes() -> int:
            return sum(hub.counters().alert_changes.values())

        # The engine counts an alert change before its outbox commit lands, and the broker has
        # refused the hub before any alert is raised: wait for the queued delivery itself.
        await wait_for(lambda: queued() >= 1, timeout=15)
        refused = mqtt.errors
        await wait_for(lambda: mqtt.errors > refused, timeout=30)  # refused again while queued
        assert not mqtt.connected
        assert "not authorized" in mqtt.last_error.lower()
        assert "wrong-password" not in mqtt.last_error
        # Every alert change is kept for when the credentials are fixed: the queue catches up
        # with every change the engine counted (one may still be committing), none dropped.
        await wait_for(lambda: queued() == changes(), timeout=15)
        assert hub.counters().alert_changes["open"] >= 1
        assert hub.status().outbox.dropped_deliveries == 0
        assert [row for row in await hub.outbox.dead_letter_rows() if row[0] == "mqtt"] == []
