"""Signed envelopes and the documents inside them."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hub.errors import HubError
from hub.fleet.documents import (
    DocumentRejected,
    build_config_payload,
    parse_config_document,
    version_tuple,
)
from hub.fleet.signing import (
    SignatureRejected,
    generate_keypair,
    load_private_key,
    load_trusted_keys,
    sign_envelope,
    verify_envelope,
)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    generate_keypair(tmp_path / "platform", "ops")
    generate_keypair(tmp_path / "other", "mallory")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "ops.pub").write_bytes((tmp_path / "platform" / "ops.pub").read_bytes())
    return tmp_path / "platform" / "ops.key", trusted


def test_good_signature_gives_the_exact_payload(keys: tuple[Path, Path]) -> None:
    key, trusted = keys
    payload = b'{"a": 1,   "b": "\xc3\xa9"}'  # odd spacing survives: bytes, not re-serialised JSON
    verified = verify_envelope(
        sign_envelope(load_private_key(key), payload), load_trusted_keys(trusted)
    )
    assert verified.payload == payload


def test_tampered_payload_is_rejected(keys: tuple[Path, Path]) -> None:
    key, trusted = keys
    envelope = json.loads(sign_envelope(load_private_key(key), b'{"version": 1}'))
    envelope["payload"] = base64.b64encode(b'{"version": 2}').decode()
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify_envelope(json.dumps(envelope).encode(), load_trusted_keys(trusted))


def test_untrusted_key_is_rejected(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, trusted = keys
    mallory = load_private_key(tmp_path / "other" / "mallory.key")
    with pytest.raises(SignatureRejected, match="not trusted"):
        verify_envelope(sign_envelope(mallory, b"{}"), load_trusted_keys(trusted))


def test_key_id_swapped_to_a_trusted_one_still_fails(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    key, trusted = keys
    good = json.loads(sign_envelope(load_private_key(key), b"{}"))
    forged = json.loads(sign_envelope(load_private_key(tmp_path / "other" / "mallory.key"), b"{}"))
    forged["key_id"] = good["key_id"]
    with pytest.raises(SignatureRejected, match="bad signature"):
        verify_envelope(json.dumps(forged).encode(), load_trusted_keys(trusted))


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"schema": "other"}', b"x" * (9 << 20)])
def test_garbage_is_rejected_clearly(data: bytes, keys: tuple[Path, Path]) -> None:
    with pytest.raises(SignatureRejected):
        verify_envelope(data, load_trusted_keys(keys[1]))


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "k")
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(HubError, match="refusing"):
        generate_keypair(tmp_path, "k")
    assert (tmp_path / "k.key").read_bytes() == before
    assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0


def test_config_payload_carries_toml_and_registry(tmp_path: Path) -> None:
    (tmp_path / "hub.toml").write_text('[hub]\nsite = "s1"\n')
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "households.csv").write_text("household_id\nH1\n")
    doc = parse_config_document(build_config_payload(tmp_path, "s1", 7))
    assert doc.version == 7 and doc.site == "s1"
    assert doc.files == {"registry/households.csv": "household_id\nH1\n"}


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "a/../../b", "hub.toml", "a b"])
def test_config_document_refuses_paths_outside_the_config_dir(name: str) -> None:
    doc = {"schema": "harbourgrid.config/1", "site": "s1", "version": 1, "config_toml": ""}
    doc["files"] = {name: "x"}
    with pytest.raises(DocumentRejected):
        parse_config_document(json.dumps(doc).encode())


def test_version_order() -> None:
    assert version_tuple("0.10.0") > version_tuple("0.9.9")
    assert version_tuple("1.0") == version_tuple("1.0.0")
