"""Signed remote configuration: accepted, rejected (each reason), committed, rolled back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub.fleet.config_apply import ConfigApplier, ConfigRejected
from hub.fleet.documents import build_config_payload
from hub.fleet.reports import Reporter
from hub.fleet.sealed import aad, gateway_key, public_b64, seal
from hub.fleet.signing import generate_keypair, load_private_key, load_trusted_keys, sign_envelope

GOOD = (
    '[hub]\nsite = "s1"\ndata_dir = "var"\n[http]\nenabled = false\n'
    "[mqtt]\nenabled = true\n[fleet]\nremote_control = true\n"
)


class Gateway:
    def __init__(self, root: Path) -> None:
        generate_keypair(root / "keys", "ops")
        self.key = load_private_key(root / "keys" / "ops.key")
        trusted = root / "trusted"
        trusted.mkdir()
        (trusted / "ops.pub").write_bytes((root / "keys" / "ops.pub").read_bytes())
        self.etc = root / "etc"
        (self.etc / "registry").mkdir(parents=True)
        (self.etc / "hub.toml").write_text(GOOD)
        (self.etc / "registry" / "zones.csv").write_text("old\n")
        self.reporter = Reporter("s1")
        self.applier = ConfigApplier(
            self.etc / "hub.toml", root / "state", "s1", load_trusted_keys(trusted), self.reporter
        )
        self.platform = root / "platform"
        self.state = root / "state"

    def envelope(self, version: int, toml: str, site: str = "s1", zones: str = "new\n") -> bytes:
        (self.platform / "registry").mkdir(parents=True, exist_ok=True)
        (self.platform / "hub.toml").write_text(toml)
        (self.platform / "registry" / "zones.csv").write_text(zones)
        return sign_envelope(self.key, build_config_payload(self.platform, site, version))

    def outcomes(self) -> list[tuple[object, object, object]]:
        return [(r["outcome"], r["version"], r["reason"]) for r in self.reporter.history]


@pytest.fixture
def gw(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def test_good_config_is_written_then_committed(gw: Gateway) -> None:
    new = GOOD + "[alerts]\ntick_s = 2.0\n"
    gw.applier.receive(gw.envelope(1, new))
    assert (gw.etc / "hub.toml").read_text() == new
    assert (gw.etc / "registry" / "zones.csv").read_text() == "new\n"
    assert gw.applier.pending is not None
    gw.applier.commit()
    assert gw.applier.pending is None and gw.applier.applied_version == 1
    assert [o[0] for o in gw.outcomes()] == ["restarting", "applied"]


def test_rollback_restores_every_file(gw: Gateway) -> None:
    gw.applier.receive(gw.envelope(3, GOOD + "# broken at runtime\n"))
    gw.applier.rollback("not healthy within 5s")
    assert (gw.etc / "hub.toml").read_text() == GOOD
    assert (gw.etc / "registry" / "zones.csv").read_text() == "old\n"
    assert gw.outcomes()[-1] == ("rolled_back", 3, "not healthy within 5s")
    with pytest.raises(ConfigRejected, match="not newer"):  # a rolled-back version stays burnt
        gw.applier.receive(gw.envelope(3, GOOD))


def test_replayed_and_older_versions_are_rejected(gw: Gateway) -> None:
    first = gw.envelope(5, GOOD)
    gw.applier.receive(first)
    gw.applier.commit()
    with pytest.raises(ConfigRejected, match="version 5 is not newer than 5"):
        gw.applier.receive(first)
    with pytest.raises(ConfigRejected, match="version 4 is not newer"):
        gw.applier.receive(gw.envelope(4, GOOD))
    assert gw.outcomes()[-1][0] == "rejected"


def test_tampered_config_is_rejected_and_nothing_changes(gw: Gateway) -> None:
    envelope = json.loads(gw.envelope(1, GOOD + "# x\n"))
    envelope["signature"] = envelope["signature"][:-4] + "AAA="
    with pytest.raises(ConfigRejected, match="bad signature"):
        gw.applier.receive(json.dumps(envelope).encode())
    assert (gw.etc / "hub.toml").read_text() == GOOD
    assert gw.applier.highest_version == 0  # a forged version must not burn real ones


def test_config_failing_check_config_is_rejected(gw: Gateway) -> None:
    with pytest.raises(
        ConfigRejected, match=r"check-config failed: hub.toml:10: hub.extra: unknown key"
    ):
        gw.applier.receive(gw.envelope(2, GOOD + "[hub.extra]\nno_such_key = 1\n"))
    with pytest.raises(ConfigRejected, match="HUB_FLEET_TEST_UNSET_SECRET"):
        gw.applier.receive(
            gw.envelope(3, GOOD + '[webhook]\nenabled = true\nurl = "http://x"\n'
                        'secret_env = "HUB_FLEET_TEST_UNSET_SECRET"\n')
        )  # fmt: skip
    assert (gw.etc / "hub.toml").read_text() == GOOD
    assert gw.applier.pending is None


def test_config_for_another_site_is_rejected(gw: Gateway) -> None:
    with pytest.raises(ConfigRejected, match="for site 'other'"):
        gw.applier.receive(gw.envelope(1, GOOD, site="other"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("[mqtt]\nenabled = true", "[mqtt]\nenabled = false"), "cut the gateway off"),
        (("remote_control = true", "remote_control = false"), "cut the gateway off"),
        (('site = "s1"', 'site = "s2"'), "hub.site 's2' differs"),
    ],
)
def test_config_that_would_lose_the_gateway_is_rejected(
    gw: Gateway, change: tuple[str, str], reason: str
) -> None:
    with pytest.raises(ConfigRejected, match=reason):
        gw.applier.receive(gw.envelope(1, GOOD.replace(*change)))
    assert (gw.etc / "hub.toml").read_text() == GOOD


# --- the sealed env part ------------------------------------------------------------------------

WEBHOOK = '[webhook]\nenabled = true\nurl = "http://x"\nsecret_env = "HUB_FLEET_SEALED_SECRET"\n'


def sealed_envelope(gw: Gateway, version: int, env_text: str, site: str = "s1") -> bytes:
    recipient = public_b64(gateway_key(gw.state))
    (gw.platform / "registry").mkdir(parents=True, exist_ok=True)
    (gw.platform / "hub.toml").write_text(GOOD + WEBHOOK)
    sealed = seal(recipient, env_text.encode(), aad(site, version))
    return sign_envelope(gw.key, build_config_payload(gw.platform, "s1", version, sealed))


def test_sealed_secret_satisfies_check_config_and_is_rolled_back_with_the_config(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_FLEET_SEALED_SECRET", raising=False)
    gw.applier.receive(sealed_envelope(gw, 1, "HUB_FLEET_SEALED_SECRET=s3cr3t-value\n"))
    assert os.environ["HUB_FLEET_SEALED_SECRET"] == "s3cr3t-value"
    env_file = gw.state / "env"
    assert env_file.stat().st_mode & 0o077 == 0
    assert all("s3cr3t" not in json.dumps(r) for r in gw.reporter.history)
    gw.applier.rollback("not healthy")
    assert "HUB_FLEET_SEALED_SECRET" not in os.environ and not env_file.exists()


def test_sealed_part_for_another_version_or_key_is_rejected(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_FLEET_SEALED_SECRET", raising=False)
    recipient = public_b64(gateway_key(gw.state))
    lifted = seal(recipient, b"HUB_FLEET_SEALED_SECRET=x\n", aad("s1", 1))  # sealed for v1
    (gw.platform / "registry").mkdir(parents=True, exist_ok=True)
    (gw.platform / "hub.toml").write_text(GOOD + WEBHOOK)
    envelope = sign_envelope(gw.key, build_config_payload(gw.platform, "s1", 2, lifted))
    with pytest.raises(ConfigRejected, match="cannot be opened"):
        gw.applier.receive(envelope)
    stranger = public_b64(X25519PrivateKey.generate())
    other = seal(stranger, b"HUB_FLEET_SEALED_SECRET=x\n", aad("s1", 3))
    envelope = sign_envelope(gw.key, build_config_payload(gw.platform, "s1", 3, other))
    with pytest.raises(ConfigRejected, match="cannot be opened"):
        gw.applier.receive(envelope)
    assert "HUB_FLEET_SEALED_SECRET" not in os.environ
    assert (gw.etc / "hub.toml").read_text() == GOOD


def test_sealed_env_errors_never_quote_values(gw: Gateway) -> None:
    with pytest.raises(ConfigRejected) as info:
        gw.applier.receive(sealed_envelope(gw, 1, "lower_case=hunter2-secret\n"))
    assert "hunter2" not in str(info.value)
