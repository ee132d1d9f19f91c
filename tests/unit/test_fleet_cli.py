"""`hub fleet keygen | sign-config | sign-upgrade` as an integrator scripts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.cli import main
from hub.fleet.documents import parse_config_document, parse_manifest
from hub.fleet.sealed import aad, gateway_key, public_b64, unseal
from hub.fleet.signing import load_trusted_keys, verify_envelope


def test_keygen_then_sign_config_and_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", "keygen", "--dir", str(tmp_path / "keys"), "--name", "ops"]) == 0
    trusted = load_trusted_keys(tmp_path / "keys")
    conf = tmp_path / "conf"
    (conf / "registry").mkdir(parents=True)
    (conf / "hub.toml").write_text('[hub]\nsite = "gw-3"\n')
    (conf / "registry" / "vessels.csv").write_text("mmsi\n412345678\n")
    gw_key = gateway_key(tmp_path / "gw")
    (tmp_path / "new.env").write_text("HUB_INFLUX_TOKEN=tok-123\n")
    key = str(tmp_path / "keys" / "ops.key")
    args = ["fleet", "sign-config", str(conf), "--key", key, "--site", "gw-3", "--version", "12"]
    args += ["--env-file", str(tmp_path / "new.env"), "--gateway-key", public_b64(gw_key)]
    assert main([*args, "-o", str(tmp_path / "cfg.json")]) == 0
    doc = parse_config_document(
        verify_envelope((tmp_path / "cfg.json").read_bytes(), trusted).payload
    )
    assert (doc.site, doc.version) == ("gw-3", 12)
    assert doc.files == {"registry/vessels.csv": "mmsi\n412345678\n"}
    assert doc.env is not None and "tok-123" not in json.dumps(doc.env)
    assert unseal(gw_key, doc.env, aad("gw-3", 12)) == b"HUB_INFLUX_TOKEN=tok-123\n"

    bundle = tmp_path / "hub.tar.gz"
    bundle.write_bytes(b"\x1f\x8b" + bytes(1000))
    upgrade = ["fleet", "sign-upgrade", str(bundle), "--url", "https://central/b.tar.gz"]
    assert main([*upgrade, "--key", key, "--version", "0.3.1", "--site", "gw-3"]) == 0
    envelope = capsys.readouterr().out.strip().splitlines()[-1].encode()
    manifest = parse_manifest(verify_envelope(envelope, trusted).payload)
    assert (manifest.version, manifest.size, manifest.sites) == ("0.3.1", 1002, ["gw-3"])
    assert not manifest.allow_downgrade


def test_sign_config_without_hub_toml_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["fleet", "keygen", "--dir", str(tmp_path), "--name", "k"])
    code = main(["fleet", "sign-config", str(tmp_path / "empty"), "--key", str(tmp_path / "k.key"),
                 "--site", "s", "--version", "1"])  # fmt: skip
    assert code == 1
    assert "hub.toml: missing" in capsys.readouterr().err
