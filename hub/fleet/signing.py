"""Ed25519 keys and signed envelopes; the signature covers the exact payload bytes.

An envelope is JSON: {"schema": "harbourgrid.signed/1", "key_id": "…", "payload": base64,
"signature": base64}. The payload travels base64-encoded so that what is verified is byte for
byte what was signed: no JSON canonicalisation on either side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.errors import HubError

ENVELOPE_SCHEMA = "harbourgrid.signed/1"
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


class SignatureRejected(HubError):
    """A signed document that is malformed, from an unknown key, or whose signature is wrong."""


@dataclass(slots=True, frozen=True)
class Verified:
    key_id: str
    payload: bytes


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (PKCS#8 PEM, mode 0600, never overwritten) and NAME.pub (PEM)."""
    private = Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise HubError(f"{key_path} exists; refusing to overwrite a signing key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise HubError(f"{path}: cannot load private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise HubError(f"{path}: not an Ed25519 private key")
    return key


def load_trusted_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """Every *.pub (PEM Ed25519) in the directory, by key id; unreadable files are an error."""
    keys: dict[str, Ed25519PublicKey] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob("*.pub")):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise HubError(f"{path}: cannot load public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise HubError(f"{path}: not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def sign_envelope(private: Ed25519PrivateKey, payload: bytes) -> bytes:
    envelope = {
        "schema": ENVELOPE_SCHEMA,
        "key_id": key_id(private.public_key()),
        "payload": base64.b64encode(payload).decode(),
        "signature": base64.b64encode(private.sign(payload)).decode(),
    }
    return json.dumps(envelope).encode()


def verify_envelope(data: bytes, trusted: dict[str, Ed25519PublicKey]) -> Verified:
    """The payload bytes of a correctly signed envelope; SignatureRejected otherwise."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise SignatureRejected(f"envelope of {len(data)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        doc: Any = json.loads(data)
    except ValueError as exc:
        raise SignatureRejected("envelope is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("schema") != ENVELOPE_SCHEMA:
        raise SignatureRejected(f"envelope schema must be {ENVELOPE_SCHEMA}")
    kid = doc.get("key_id")
    public = trusted.get(kid) if isinstance(kid, str) else None
    if public is None:
        raise SignatureRejected(f"key {kid!r} is not trusted")
    try:
        payload = base64.b64decode(str(doc.get("payload", "")), validate=True)
        signature = base64.b64decode(str(doc.get("signature", "")), validate=True)
        public.verify(signature, payload)
    except (binascii.Error, InvalidSignature) as exc:
        raise SignatureRejected("bad signature") from exc
    return Verified(key_id=str(kid), payload=payload)
