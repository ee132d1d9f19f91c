"""The central stack in deploy/central/, tested with what can run here.

- mosquitto 2.0 (Debian) runs the SHIPPED mosquitto.conf and acl, changed only for temp paths and
  a loopback port, with certificates made by the test and users made by the shipped
  add-gateway.sh: the per-gateway ACL, TLS-only and no anonymous access are proven on it.
- influxd 1.6 (Debian) runs the shipped influxdb.conf (temp paths and ports only) and the shipped
  init statements, with the users compose.yaml gives the image.
- docker compose cannot run on this machine, and no Grafana server can be installed from any
  registry it reaches: the compose file's structure is checked with PyYAML and Grafana's
  provisioning files against the keys Grafana documents
  (https://grafana.com/docs/grafana/latest/administration/provisioning/ and the InfluxDB data
  source's provisioning page). `hub dashboards push` is tested against a stand-in Grafana in
  test_grafana_push.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.hubtest import config, running
from tests.services import Service, require
from tests.util import free_port, wait_for, wait_for_sync

REPO = Path(__file__).resolve().parents[2]
CENTRAL = REPO / "deploy" / "central"
SITES = ("site-a", "site-b")


# --- certificates ------------------------------------------------------------------------------


def make_certs(out: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1, named as the stack expects."""
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "central test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.crt").write_bytes(ca.public_bytes(pem))
    (out / "server.crt").write_bytes(cert.public_bytes(pem))
    (out / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def adapt(text: str, replacements: dict[str, str]) -> str:
    """The shipped file with only these substitutions; each must be there, so a changed shipped
    file fails here rather than silently testing something else."""
    for old, new in replacements.items():
        assert old in text, f"shipped config no longer contains {old!r}"
        text = text.replace(old, new)
    return text


# --- the broker --------------------------------------------------------------------------------


class CentralBroker(Service):
    """mosquitto with deploy/central's config and ACL; users made by add-gateway.sh."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        for sub in ("config", "certs", "data"):
            (workdir / sub).mkdir()
        make_certs(workdir / "certs")
        shutil.copy(CENTRAL / "mosquitto" / "config" / "acl", workdir / "config" / "acl")
        shipped = (CENTRAL / "mosquitto" / "config" / "mosquitto.conf").read_text()
        conf = adapt(
            shipped,
            {
                "/mosquitto/config/": f"{workdir}/config/",
                "/mosquitto/certs/": f"{workdir}/certs/",
                "/mosquitto/data/": f"{workdir}/data/",
                "\nlistener 8883\n": f"\nlistener {self.port} 127.0.0.1\n",
            },
        )
        # Run as ourselves: as root mosquitto would switch to a user that cannot read the temp dir.
        (workdir / "config" / "mosquitto.conf").write_text(conf + f"user {getpass.getuser()}\n")
        self.credentials = {site: self.add_gateway(site) for site in SITES}
        self.credentials["platform"] = self.add_gateway("--platform")

    def add_gateway(self, arg: str) -> dict[str, str]:
        env = {
            **os.environ,
            "MOSQUITTO_PASSWD_FILE": str(self.workdir / "config" / "passwd"),
            "CENTRAL_MQTT_HOST": "127.0.0.1",
        }
        out = subprocess.run(
            [str(CENTRAL / "add-gateway.sh"), arg], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        values = dict(
            line.split("=", 1) for line in out.stdout.splitlines() if line and line[0] != "#"
        )
        return {"text": out.stdout, **values}

    def password(self, user: str) -> str:
        cred = self.credentials[user]
        return cred.get("HUB_MQTT_PASSWORD") or cred["CENTRAL_MQTT_PASSWORD"]

    def command(self) -> list[str]:
        return [require("mosquitto"), "-c", str(self.workdir / "config" / "mosquitto.conf")]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.workdir / "certs" / "ca.crt"))

    def client(self, user: str, **kwargs: Any) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=user,
            password=self.password(user),
            tls_context=self.tls(),
            **kwargs,
        )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralBroker]:
    service = CentralBroker(tmp_path_factory.mktemp("central-mqtt"))
    service.start()
    yield service
    service.stop()


class Inbox:
    """Everything one client receives, in order."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.got]

    def has(self, topic: str, payload: bytes) -> bool:
        return (topic, payload) in self.got


@contextlib.asynccontextmanager
async def listening(client: aiomqtt.Client) -> AsyncIterator[Inbox]:
    inbox = Inbox()

    async def pump() -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            inbox.got.append((str(message.topic), payload))

    task = asyncio.create_task(pump())
    try:
        yield inbox
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def subscribe(client: aiomqtt.Client, topic: str) -> int:
    """The SUBACK code: the granted QoS (128 = refused)."""
    granted = await client.subscribe(topic, qos=1)
    code = granted[0]
    return int(code.value if hasattr(code, "value") else code)


# --- the ACL -----------------------------------------------------------------------------------


async def test_gateway_publishes_its_alerts_and_reads_its_acks(broker: CentralBroker) -> None:
    async with (
        broker.client("platform") as platform,
        broker.client("site-a") as gateway,
        listening(platform) as seen,
        listening(gateway) as acks,
    ):
        assert await subscribe(platform, "hub/+/alerts/+") == 1
        assert await subscribe(gateway, "hub/site-a/acks") == 1
        alert = b'{"rule": "water_leak", "alert_id": "a1"}'
        await gateway.publish("hub/site-a/alerts/water_leak", alert, qos=1)
        await wait_for(lambda: seen.has("hub/site-a/alerts/water_leak", alert), timeout=10)
        ack = b'{"schema": "harbourgrid.ack/1", "alert_id": "a1", "by": "worker-7"}'
        await platform.publish("hub/site-a/acks", ack, qos=1)
        await wait_for(lambda: acks.has("hub/site-a/acks", ack), timeout=10)


async def test_cross_site_publish_is_not_delivered(broker: CentralBroker) -> None:
    forged = [
        "hub/site-b/alerts/door_forced",
        "hub/site-b/status",
        "hub/site-b/config/state",
        "hub/site-b/upgrade/state",
        "hub/site-b/acks",  # forging acks or commands to another gateway
        "hub/site-b/config/set",
        "hub/site-b/registry/community/households",
    ]
    async with (
        broker.client("platform") as platform,
        broker.client("site-a") as gateway_a,
        broker.client("site-b") as gateway_b,
        listening(platform) as at_platform,
        listening(gateway_b) as at_b,
    ):
        for topic in (
            "hub/+/alerts/+",
            "hub/+/status",
            "hub/+/config/state",
            "hub/+/upgrade/state",
        ):
            assert await subscribe(platform, topic) == 1
        for tail in ("acks", "config/set", "registry/#"):
            assert await subscribe(gateway_b, f"hub/site-b/{tail}") == 1
        for topic in forged:
            await gateway_a.publish(topic, b"forged by site-a", qos=1)
        # Markers sent after the forged messages: once they arrive, anything the broker had
        # routed from site-a would have arrived before them (one broker, FIFO per client).
        await gateway_a.publish("hub/site-a/alerts/marker", b"a-marker", qos=1)
        await platform.publish("hub/site-b/acks", b"platform-marker", qos=1)
        await wait_for(lambda: at_platform.has("hub/site-a/alerts/marker", b"a-marker"), 10)
        await wait_for(lambda: at_b.has("hub/site-b/acks", b"platform-marker"), 10)
    assert [t for t, p in at_platform.got if p == b"forged by site-a"] == []
    assert [t for t, p in at_b.got if p == b"forged by site-a"] == []


async def test_gateway_cannot_subscribe_to_other_sites(broker: CentralBroker) -> None:
    others = [
        "hub/site-b/acks",
        "hub/site-b/alerts/ack",
        "hub/site-b/config/set",
        "hub/site-b/upgrade",
        "hub/site-b/feedback",
        "hub/site-b/registry/#",
        "hub/site-b/alerts/+",
        "hub/+/acks",
        "hub/#",
        "#",
    ]
    async with (
        broker.client("platform") as platform,
        broker.client("site-a") as gateway_a,
        listening(gateway_a) as at_a,
    ):
        assert await subscribe(gateway_a, "hub/site-a/acks") == 1
        for topic in others:
            # mosquitto's acl_file grants the SUBACK and checks `read` on every delivery.
            await subscribe(gateway_a, topic)
        for tail in ("acks", "alerts/ack", "config/set", "upgrade", "feedback"):
            await platform.publish(f"hub/site-b/{tail}", b"for site-b only", qos=1)
        await platform.publish("hub/site-a/acks", b"a-marker", qos=1)
        await wait_for(lambda: at_a.has("hub/site-a/acks", b"a-marker"), 10)
    assert at_a.topics() == ["hub/site-a/acks"]


async def test_platform_reads_every_site_and_commands_each(broker: CentralBroker) -> None:
    async with (
        broker.client("platform") as platform,
        broker.client("site-a") as gateway_a,
        broker.client("site-b") as gateway_b,
        listening(platform) as at_platform,
        listening(gateway_a) as at_a,
        listening(gateway_b) as at_b,
    ):
        for topic in ("hub/+/alerts/+", "hub/+/status"):
            assert await subscribe(platform, topic) == 1
        for gateway, site in ((gateway_a, "site-a"), (gateway_b, "site-b")):
            for tail in ("acks", "feedback", "config/set", "upgrade", "registry/#"):
                assert await subscribe(gateway, f"hub/{site}/{tail}") == 1
            await gateway.publish(f"hub/{site}/status", b"online", qos=1, retain=True)
            await gateway.publish(f"hub/{site}/alerts/source_silent", site.encode(), qos=1)
        expected_seen = {
            "hub/site-a/alerts/source_silent",
            "hub/site-a/status",
            "hub/site-b/alerts/source_silent",
            "hub/site-b/status",
        }
        await wait_for(lambda: set(at_platform.topics()) == expected_seen, 10)
        sends = ["acks", "feedback", "config/set", "upgrade", "registry/maritime/vessels"]
        for site in SITES:
            for tail in sends:
                await platform.publish(f"hub/{site}/{tail}", f"{site} {tail}".encode(), qos=1)
        expected = {site: [f"hub/{site}/{tail}" for tail in sends] for site in SITES}
        await wait_for(lambda: at_a.topics() == expected["site-a"], 10)
        await wait_for(lambda: at_b.topics() == expected["site-b"], 10)


async def test_platform_consumers_share_the_load(broker: CentralBroker) -> None:
    """Scale-out: two platform consumers in one `$share` group get each alert exactly once."""
    shared = "$share/consumers/hub/+/alerts/+"
    async with (
        broker.client("platform", identifier="consumer-1") as one,
        broker.client("platform", identifier="consumer-2") as two,
        broker.client("site-a") as gateway_a,
        broker.client("site-b") as gateway_b,
        listening(one) as at_one,
        listening(two) as at_two,
    ):
        assert await subscribe(one, shared) == 1
        assert await subscribe(two, shared) == 1
        sent = []
        for i in range(20):
            for gateway, site in ((gateway_a, "site-a"), (gateway_b, "site-b")):
                payload = f"{site}-{i}".encode()
                await gateway.publish(f"hub/{site}/alerts/meter_offline", payload, qos=1)
                sent.append(payload)
        await wait_for(lambda: len(at_one.got) + len(at_two.got) >= len(sent), 10)
    got = [p for _, p in at_one.got] + [p for _, p in at_two.got]
    assert sorted(got) == sorted(sent)  # every alert once, none twice
    assert at_one.got and at_two.got  # both consumers took a share


async def test_anonymous_and_wrong_password_are_refused(broker: CentralBroker) -> None:
    attempts: list[dict[str, Any]] = [
        {},
        {"username": "site-a", "password": "not-the-password"},
        {"username": "site-a", "password": broker.password("site-b")},
    ]
    for kwargs in attempts:
        client = aiomqtt.Client(broker.host, broker.port, tls_context=broker.tls(), **kwargs)
        with pytest.raises(aiomqtt.MqttCodeError) as refused:
            async with client:
                pass
        assert str(refused.value.rc) == "Not authorized"  # CONNACK return code 5


def test_plain_mqtt_is_refused(broker: CentralBroker) -> None:
    """The broker's only listener speaks TLS: an MQTT CONNECT in the clear gets no CONNACK."""
    connect = bytes.fromhex("101000044d5154540402003c0004") + b"test"
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(connect)
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                reply += chunk
    assert not reply.startswith(b"\x20")  # 0x20 = CONNACK
    # and the same port does speak MQTT over TLS (positive control)
    with (
        socket.create_connection((broker.host, broker.port), timeout=10) as raw,
        broker.tls().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(connect)
        assert tls.recv(4) == bytes.fromhex("20020005")  # CONNACK, refused: no credentials


def test_add_gateway_refuses_ids_that_escape_the_acl(tmp_path: Path) -> None:
    env = {**os.environ, "MOSQUITTO_PASSWD_FILE": str(tmp_path / "passwd")}
    for bad in ("site/b", "+", "#", "", "platform", "a b", "-x"):
        out = subprocess.run(
            [str(CENTRAL / "add-gateway.sh"), bad], env=env, capture_output=True, text=True
        )
        assert out.returncode == 2, bad
        assert out.stdout == ""
    assert not (tmp_path / "passwd").exists() or (tmp_path / "passwd").read_text() == ""


def test_credentials_file_matches_the_hub_config(broker: CentralBroker) -> None:
    text = broker.credentials["site-a"]["text"]
    assert 'site = "site-a"' in text and 'username = "site-a"' in text
    assert 'password_env = "HUB_MQTT_PASSWORD"' in text and "tls = true" in text
    assert "port = 8883" in text
    assert len(broker.password("site-a")) >= 40
    assert broker.password("site-a") != broker.password("site-b")


async def test_real_hub_as_a_gateway_through_the_acl(
    broker: CentralBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub itself, configured from add-gateway.sh's credentials file: alert out, ack back."""
    monkeypatch.setenv("HUB_MQTT_PASSWORD", broker.password("site-a"))
    ca = broker.workdir / "certs" / "ca.crt"
    snippet = broker.credentials["site-a"]["text"]
    mqtt = "\n".join(
        line[2:]
        for line in snippet.splitlines()
        if line.startswith("#   ") and "[hub]" not in line and "site =" not in line
    )
    mqtt = adapt(
        mqtt,
        {
            "port = 8883": f"port = {broker.port}",
            "/etc/harbourgrid/central-ca.crt": str(ca),
        },
    )
    cfg = config(
        tmp_path,
        mqtt
        + """
[influxdb]
api = "none"
[alerts]
tick_s = 0.1
[[sources]]
type = "simulated_meters"
name = "quiet"
interval_s = 0.1
stop_after_s = 0.2
silent_timeout_s = 1.0
""",
        site="site-a",
    )
    async with broker.client("platform") as platform, listening(platform) as seen:
        assert await subscribe(platform, "hub/+/alerts/+") == 1

        def alerts(state: str) -> list[dict[str, Any]]:
            docs = [json.loads(p) for t, p in seen.got if t == "hub/site-a/alerts/source_silent"]
            return [d for d in docs if d["state"] == state]

        async with running(cfg) as hub:
            opened = (await wait_for(lambda: alerts("open"), timeout=20))[0]
            ack = {"schema": "harbourgrid.ack/1", "alert_id": opened["alert_id"], "by": "w-9"}
            await platform.publish("hub/site-a/acks", json.dumps(ack), qos=1)
            acked = (await wait_for(lambda: alerts("acknowledged"), timeout=20))[0]
            assert acked["alert_id"] == opened["alert_id"] and acked["acknowledged_by"] == "w-9"
            assert hub.mqtt is not None and hub.mqtt.connected and hub.mqtt_errors == 0


# --- InfluxDB ----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CENTRAL / "compose.yaml").read_text())
    return doc


class CentralInflux(Service):
    """influxd with deploy/central's influxdb.conf (temp paths and ports only)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        make_certs(workdir / "certs")
        conf = adapt(
            (CENTRAL / "influxdb" / "influxdb.conf").read_text(),
            {
                "/var/lib/influxdb/": f"{workdir}/",
                "/etc/ssl/harbourgrid/": f"{workdir}/certs/",
                'bind-address = ":8086"': f'bind-address = "127.0.0.1:{self.port}"',
                'bind-address = "127.0.0.1:8088"': f'bind-address = "127.0.0.1:{free_port()}"',
            },
        )
        (workdir / "influxdb.conf").write_text(conf)
        self.url = f"https://127.0.0.1:{self.port}"
        self.tls = ssl.create_default_context(cafile=str(workdir / "certs" / "ca.crt"))

    def command(self) -> list[str]:
        return [require("influxd"), "-config", str(self.workdir / "influxdb.conf")]

    def ready(self) -> bool:
        return self.request("GET", "/ping")[0] == 204

    def request(
        self, method: str, path: str, params: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params or {})}"
        req = urllib.request.Request(url, data=body or None, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.tls) as resp:
                raw = resp.read()
                return int(resp.status), json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return int(exc.code), json.loads(raw) if raw.startswith(b"{") else {}
        except OSError:
            return 0, {}

    def query(self, q: str, user: str = "", password: str = "") -> tuple[int, dict[str, Any]]:
        params = {"q": q, "db": "hub"}
        if user:
            params |= {"u": user, "p": password}
        return self.request("POST", "/query", params)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralInflux]:
    service = CentralInflux(tmp_path_factory.mktemp("central-influx"))
    service.start()
    yield service
    service.stop()


def init_like_the_image(influx: CentralInflux, env: dict[str, str]) -> None:
    """What the influxdb:1.8 image's init-influxdb.sh does with compose.yaml's environment
    (users, each with its privileges revoked), then every shipped init/*.iql as the admin."""
    admin, admin_pw = env["INFLUXDB_ADMIN_USER"], env["INFLUXDB_ADMIN_PASSWORD"]
    status, _ = influx.query(
        f"CREATE USER \"{admin}\" WITH PASSWORD '{admin_pw}' WITH ALL PRIVILEGES"
    )
    assert status == 200
    for role in ("WRITE", "READ"):
        user, password = env[f"INFLUXDB_{role}_USER"], env[f"INFLUXDB_{role}_USER_PASSWORD"]
        for q in (
            f"CREATE USER \"{user}\" WITH PASSWORD '{password}'",
            f'REVOKE ALL PRIVILEGES FROM "{user}"',
        ):
            status, body = influx.query(q, admin, admin_pw)
            assert status == 200 and "error" not in body["results"][0], body
    scripts = sorted((CENTRAL / "influxdb" / "init").iterdir())
    assert [p.suffix for p in scripts] == [".iql"] * len(scripts) and scripts
    for script in scripts:
        status, body = influx.query(script.read_text(), admin, admin_pw)
        assert status == 200 and all("error" not in r for r in body["results"]), body


def test_influx_init_creates_the_database_and_least_privilege_users(
    influx: CentralInflux,
) -> None:
    env = {k: str(v) for k, v in compose()["services"]["influxdb"]["environment"].items()}
    assert env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    secrets = {k: f"test-{k.lower()}" for k in env if k.endswith("PASSWORD")}
    env |= secrets
    init_like_the_image(influx, env)
    admin = (env["INFLUXDB_ADMIN_USER"], env["INFLUXDB_ADMIN_PASSWORD"])
    gateway = (env["INFLUXDB_WRITE_USER"], env["INFLUXDB_WRITE_USER_PASSWORD"])
    grafana = (env["INFLUXDB_READ_USER"], env["INFLUXDB_READ_USER_PASSWORD"])

    _, body = influx.query("SHOW RETENTION POLICIES ON hub", *admin)
    policies = {row[0]: row for row in body["results"][0]["series"][0]["values"]}
    assert [name for name, row in policies.items() if row[-1]] == ["two_years"]  # the default
    assert policies["two_years"][1] == "17520h0m0s"

    line = b"water_meter,site=site-a,meter=m1 litres=12.5 1764633600000000000"
    write = {"db": "hub", "precision": "ns"}
    assert (
        influx.request("POST", "/write", write | dict(zip("up", gateway, strict=True)), line)[0]
        == 204
    )
    assert (
        influx.request("POST", "/write", write | dict(zip("up", grafana, strict=True)), line)[0]
        == 403
    )
    assert influx.request("POST", "/write", write, line)[0] == 401  # anonymous
    select = "SELECT litres FROM water_meter"
    status, body = influx.query(select, *grafana)
    assert status == 200 and body["results"][0]["series"][0]["values"][0][1] == 12.5
    assert influx.query(select, *gateway)[0] == 403
    assert influx.query(select)[0] == 401
    assert influx.query("DROP DATABASE hub", *grafana)[0] == 403


def test_influx_speaks_only_https(influx: CentralInflux) -> None:
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{influx.port}/ping", timeout=5)


# --- Grafana provisioning and the compose file (no Grafana, no docker here) ---------------------


def _strict(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
# Keys from Grafana's "Provision Grafana" page (data sources, dashboards) and the InfluxDB data
# source's provisioning examples (jsonData / secureJsonData for InfluxQL).
DATASOURCES_SCHEMA = _strict(
    {
        "apiVersion": {"const": 1},
        "prune": _BOOL,
        "deleteDatasources": {
            "type": "array",
            "items": _strict({"name": _STR, "orgId": _INT}, ["name"]),
        },
        "datasources": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                {
                    "name": _STR,
                    "type": _STR,
                    "access": {"enum": ["proxy", "direct"]},
                    "orgId": _INT,
                    "uid": _STR,
                    "url": _STR,
                    "user": _STR,
                    "database": _STR,
                    "basicAuth": _BOOL,
                    "basicAuthUser": _STR,
                    "withCredentials": _BOOL,
                    "isDefault": _BOOL,
                    "version": _INT,
                    "editable": _BOOL,
                    "jsonData": _strict(
                        {
                            "version": {"enum": ["InfluxQL", "Flux", "SQL"]},
                            "dbName": _STR,
                            "httpMode": {"enum": ["GET", "POST"]},
                            "timeInterval": _STR,
                            "organization": _STR,
                            "defaultBucket": _STR,
                            "tlsSkipVerify": _BOOL,
                            "tlsAuth": _BOOL,
                            "tlsAuthWithCACert": _BOOL,
                            "maxSeries": _INT,
                        },
                        [],
                    ),
                    "secureJsonData": _strict(
                        {
                            "password": _STR,
                            "token": _STR,
                            "basicAuthPassword": _STR,
                            "tlsCACert": _STR,
                            "tlsClientCert": _STR,
                            "tlsClientKey": _STR,
                        },
                        [],
                    ),
                },
                ["name", "type", "access"],
            ),
        },
    },
    ["apiVersion", "datasources"],
)
PROVIDERS_SCHEMA = _strict(
    {
        "apiVersion": {"const": 1},
        "providers": {
            "type": "array",
            "minItems": 1,
            "items": _strict(
                {
                    "name": _STR,
                    "orgId": _INT,
                    "folder": _STR,
                    "folderUid": _STR,
                    "type": {"const": "file"},
                    "disableDeletion": _BOOL,
                    "updateIntervalSeconds": _INT,
                    "allowUiUpdates": _BOOL,
                    "options": _strict(
                        {"path": _STR, "foldersFromFilesStructure": _BOOL}, ["path"]
                    ),
                },
                ["name", "type", "options"],
            ),
        },
    },
    ["apiVersion", "providers"],
)
PROVISIONING = CENTRAL / "grafana" / "provisioning"


def provisioning(kind: str) -> list[dict[str, Any]]:
    files = sorted((PROVISIONING / kind).glob("*.y*ml"))
    assert files, f"no {kind} provisioning files"
    return [yaml.safe_load(path.read_text()) for path in files]


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path (resolved from deploy/central) of a service's bind mounts."""
    out = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = str((CENTRAL / source).resolve())
    return out


def test_datasource_is_influxdb_in_influxql_mode() -> None:
    services = compose()["services"]
    grafana_env = services["grafana"]["environment"]
    influx_env = services["influxdb"]["environment"]
    (doc,) = provisioning("datasources")
    jsonschema.validate(doc, DATASOURCES_SCHEMA)
    (ds,) = doc["datasources"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy" and ds["isDefault"] is True
    assert ds["jsonData"]["version"] == "InfluxQL"
    url = urllib.parse.urlsplit(ds["url"])
    assert url.hostname == "influxdb" and url.hostname in services
    assert url.scheme == "https"  # influxdb.conf: https-enabled = true
    assert "https-enabled = true" in (CENTRAL / "influxdb" / "influxdb.conf").read_text()
    assert f"{url.port}:{url.port}" in services["influxdb"]["ports"][0]
    init = " ".join(p.read_text() for p in (CENTRAL / "influxdb" / "init").glob("*.iql"))
    assert f'CREATE DATABASE "{ds["jsonData"]["dbName"]}"' in init
    assert ds["user"] == influx_env["INFLUXDB_READ_USER"]
    # The password is an env lookup that compose fills from the same secret as the read user's.
    var = ds["secureJsonData"]["password"].strip("${}")
    assert ds["secureJsonData"]["password"] in (f"${var}", f"${{{var}}}")
    assert grafana_env[var] == influx_env["INFLUXDB_READ_USER_PASSWORD"]
    # Grafana verifies InfluxDB's certificate with the stack's CA (no tlsSkipVerify).
    assert not ds["jsonData"].get("tlsSkipVerify")
    ca_dir = grafana_env["SSL_CERT_DIR"].split(":")[-1]
    assert mounts("grafana")[f"{ca_dir}/ca.crt"] == str(CENTRAL / "certs" / "ca.crt")


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    (doc,) = provisioning("dashboards")
    jsonschema.validate(doc, PROVIDERS_SCHEMA)
    (provider,) = doc["providers"]
    path = provider["options"]["path"]
    grafana = mounts("grafana")
    assert grafana[path] == str(REPO / "dashboards")
    assert grafana["/etc/grafana/provisioning"] == str(PROVISIONING)
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards
    for path_ in dashboards:
        assert json.loads(path_.read_text())["uid"]


def test_compose_ties_the_shipped_files_together() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
        assert service.get("restart") == "unless-stopped"
    assert services["mosquitto"]["ports"] == ["8883:8883"]  # TLS only, no 1883
    generated = {str(CENTRAL / "certs"), str(CENTRAL / "certs" / "ca.crt")}  # make-certs.sh
    for name in services:
        for target, source in mounts(name).items():
            assert Path(source).exists() or source in generated, f"{name}: {source} for {target}"
    named = {v.split(":")[0] for s in services.values() for v in s["volumes"]}
    assert {n for n in named if not n.startswith((".", "/"))} == set(doc["volumes"])
    # Every path the shipped configs name lies under one of the service's mounts.
    for name, conf in (
        ("mosquitto", CENTRAL / "mosquitto" / "config" / "mosquitto.conf"),
        ("influxdb", CENTRAL / "influxdb" / "influxdb.conf"),
    ):
        targets = [v.split(":")[1] for v in services[name]["volumes"]]
        paths = [w.strip('"') for w in conf.read_text().split() if w.strip('"').startswith("/")]
        assert paths
        for path in paths:
            assert any(path.startswith(t.rstrip("/") + "/") for t in targets), f"{name}: {path}"


def test_compose_secrets_come_from_env_and_are_never_empty() -> None:
    example = (CENTRAL / "env.example").read_text()
    listed = {line.split("=")[0] for line in example.splitlines() if "=" in line and line[0] != "#"}
    used = set()
    for name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                var, _, rest = str(value).removeprefix("${").partition(":?")
                assert str(value).startswith("${") and rest, f"{name}.{key} must be ${{VAR:?...}}"
                used.add(var)
    assert used == listed
    ignored = (CENTRAL / ".gitignore").read_text().split()
    assert {"/.env", "/certs/", "/mosquitto/config/passwd"} <= set(ignored)


def _connect_with_will(broker: CentralBroker, user: str, ident: str, will_topic: str) -> Any:
    """A paho client (own loop, no automatic reconnect) connected with a retained last will."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=ident)
    client.username_pw_set(user, broker.password(user))
    client.tls_set_context(broker.tls())
    client.will_set(will_topic, f"offline {ident}".encode(), qos=1, retain=True)
    connected: list[Any] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: connected.append(rc)
    client.connect(broker.host, broker.port, keepalive=60)
    wait_for_sync(lambda: client.loop(timeout=0.1) or connected, timeout=10)
    assert not connected[0].is_failure, connected
    return client


def _die(client: Any) -> None:
    """Drop the TCP connection without an MQTT DISCONNECT: the broker fires the will."""
    client.socket().shutdown(socket.SHUT_RDWR)
    client.socket().close()


async def test_last_will_only_under_the_gateways_own_site(broker: CentralBroker) -> None:
    async with broker.client("platform") as platform, listening(platform) as seen:
        assert await subscribe(platform, "hub/+/status") == 1
        forger = await asyncio.to_thread(
            _connect_with_will, broker, "site-a", "will-1", "hub/site-b/status"
        )
        await asyncio.to_thread(_die, forger)
        # Same client id again: its CONNACK comes after the broker has ended the first
        # session (and dealt with its will), so anything that will published is queued first.
        honest = await asyncio.to_thread(
            _connect_with_will, broker, "site-a", "will-1", "hub/site-a/status"
        )
        await asyncio.to_thread(_die, honest)
        await wait_for(lambda: seen.has("hub/site-a/status", b"offline will-1"), timeout=15)
    assert [t for t, p in seen.got if p.startswith(b"offline")] == ["hub/site-a/status"]
