"""The signed payloads: a config document and an upgrade manifest, validated once here."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import HubError

CONFIG_SCHEMA = "harbourgrid.config/1"
UPGRADE_SCHEMA = "harbourgrid.upgrade/1"
CONFIG_FILE = "hub.toml"
MAX_FILES = 64


class DocumentRejected(HubError):
    """A correctly signed payload that is not a valid document for this gateway."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigDocument(_Doc):
    schema_: Literal["harbourgrid.config/1"] = Field(alias="schema")
    site: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    version: int = Field(ge=1)
    issued_at: str = ""
    config_toml: str
    # Registry files, keyed by a path relative to the config file's directory.
    files: dict[str, str] = {}
    # New secret values sealed to this gateway (hub/fleet/sealed.py): NAME=VALUE lines.
    env: dict[str, str] | None = None

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, files: dict[str, str]) -> dict[str, str]:
        if len(files) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files")
        for name in files:
            check_relative(name)
        return files


class UpgradeManifest(_Doc):
    schema_: Literal["harbourgrid.upgrade/1"] = Field(alias="schema")
    version: str = Field(pattern=r"^\d+(\.\d+){0,3}$")
    url: str = Field(pattern=r"^https?://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    allow_downgrade: bool = False
    # Empty: every gateway that receives it.
    sites: list[str] = []
    issued_at: str = ""


def check_relative(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name != path.as_posix():
        raise ValueError(f"file path {name!r} must be relative, normalised, without '..'")
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", name) or name == CONFIG_FILE:
        raise ValueError(f"file path {name!r} has unsafe characters or names the config itself")
    return name


def parse_config_document(payload: bytes) -> ConfigDocument:
    try:
        return ConfigDocument.model_validate_json(payload)
    except ValidationError as exc:
        raise DocumentRejected(f"invalid config document: {_first(exc)}") from exc


def parse_manifest(payload: bytes) -> UpgradeManifest:
    try:
        return UpgradeManifest.model_validate_json(payload)
    except ValidationError as exc:
        raise DocumentRejected(f"invalid upgrade manifest: {_first(exc)}") from exc


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_config_payload(
    directory: Path, site: str, version: int, env: dict[str, str] | None = None
) -> bytes:
    """A config document from DIR/hub.toml plus every other file under DIR (the registry)."""
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise HubError(f"{config_path}: missing; sign-config wants DIR/{CONFIG_FILE}")
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p != config_path):
        name = path.relative_to(directory).as_posix()
        if name.startswith(".") or "/." in name:
            continue
        files[check_relative(name)] = path.read_text(encoding="utf-8")
    doc = {
        "schema": CONFIG_SCHEMA,
        "site": site,
        "version": version,
        "issued_at": now_iso(),
        "config_toml": config_path.read_text(encoding="utf-8"),
        "files": files,
    }
    if env is not None:
        doc["env"] = env
    payload = json.dumps(doc, ensure_ascii=False).encode()
    parse_config_document(payload)  # what we sign must be what a gateway accepts
    return payload


def build_manifest_payload(
    bundle: Path,
    url: str,
    version: str,
    *,
    allow_downgrade: bool = False,
    sites: list[str] | None = None,
) -> bytes:
    digest = hashlib.sha256()
    with bundle.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    doc = {
        "schema": UPGRADE_SCHEMA,
        "version": version,
        "url": url,
        "sha256": digest.hexdigest(),
        "size": bundle.stat().st_size,
        "allow_downgrade": allow_downgrade,
        "sites": sites or [],
        "issued_at": now_iso(),
    }
    payload = json.dumps(doc).encode()
    parse_manifest(payload)
    return payload


def version_tuple(version: str) -> tuple[int, ...]:
    """'0.10.2' -> (0, 10, 2); ignores a local/pre-release suffix after the numbers."""
    match = re.match(r"^(\d+(?:\.\d+)*)", version)
    if not match:
        raise HubError(f"not a version: {version!r}")
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
