"""The optional sealed `env` part of a config document: new secret values, readable only by the
gateway they are sealed to (X25519 key agreement, HKDF-SHA256, ChaCha20-Poly1305).

The associated data binds the ciphertext to the document's site and version, so a sealed part
cannot be lifted into another document. Values live decrypted only in the process environment
and in data_dir/fleet/env (mode 0600), never in logs or state reports.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.errors import HubError

INFO = b"harbourgrid.env/1"
MAX_VARS = 64
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


class SealedRejected(HubError):
    """A sealed env part that cannot be opened or does not hold NAME=VALUE lines."""


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def gateway_key(state_dir: Path) -> X25519PrivateKey:
    """This gateway's own X25519 key, made once (state_dir/env_key, mode 0600)."""
    path = state_dir / "env_key"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(X25519PrivateKey.generate().private_bytes_raw())
    return X25519PrivateKey.from_private_bytes(path.read_bytes())


def public_b64(key: X25519PrivateKey) -> str:
    return base64.b64encode(_raw(key.public_key())).decode()


def _aead(shared: bytes, ephemeral: bytes, recipient: bytes) -> ChaCha20Poly1305:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=INFO)
    return ChaCha20Poly1305(hkdf.derive(shared))


def aad(site: str, version: int) -> bytes:
    return f"{site}\0{version}".encode()


def seal(recipient_b64: str, plaintext: bytes, associated: bytes) -> dict[str, str]:
    try:
        recipient = X25519PublicKey.from_public_bytes(base64.b64decode(recipient_b64))
    except (binascii.Error, ValueError) as exc:
        raise HubError(f"not a gateway env key (base64 X25519): {exc}") from exc
    ephemeral = X25519PrivateKey.generate()
    eph_raw, rcp_raw = _raw(ephemeral.public_key()), _raw(recipient)
    nonce = os.urandom(12)
    box = _aead(ephemeral.exchange(recipient), eph_raw, rcp_raw)
    return {
        "ephemeral": base64.b64encode(eph_raw).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(box.encrypt(nonce, plaintext, associated)).decode(),
    }


def unseal(key: X25519PrivateKey, sealed: dict[str, str], associated: bytes) -> bytes:
    try:
        eph_raw = base64.b64decode(sealed["ephemeral"], validate=True)
        nonce = base64.b64decode(sealed["nonce"], validate=True)
        ciphertext = base64.b64decode(sealed["ciphertext"], validate=True)
        ephemeral = X25519PublicKey.from_public_bytes(eph_raw)
        box = _aead(key.exchange(ephemeral), eph_raw, _raw(key.public_key()))
        return box.decrypt(nonce, ciphertext, associated)
    except (KeyError, binascii.Error, ValueError, InvalidTag) as exc:
        raise SealedRejected("sealed env cannot be opened with this gateway's key") from exc


def parse_env(text: str) -> dict[str, str]:
    """NAME=VALUE lines (blank lines and # comments skipped); errors never quote a value."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.match(name.strip()) or not value:
            raise SealedRejected(
                f"sealed env line {lineno}: want NAME=VALUE with a non-empty value"
            )
        values[name.strip()] = value
    if len(values) > MAX_VARS:
        raise SealedRejected(f"sealed env holds more than {MAX_VARS} variables")
    return values
