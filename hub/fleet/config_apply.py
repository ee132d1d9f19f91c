"""Signed remote configuration: verify, check, write atomically, and roll back when unhealthy.

Files under data_dir/fleet/: `config_version` (highest version ever accepted: older or equal
versions are replays), `last_good/` (the files as they were before the pending apply) and
`pending.json` (an apply whose health is not yet confirmed). A pending marker found when the
process starts means the previous process died while trying the new config: it is rolled back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.config import HubConfig, load_config
from hub.errors import HubError
from hub.fleet.documents import (
    CONFIG_FILE,
    ConfigDocument,
    DocumentRejected,
    parse_config_document,
)
from hub.fleet.reports import Reporter
from hub.fleet.sealed import aad, gateway_key, parse_env, unseal
from hub.fleet.signing import verify_envelope
from hub.logs import register_secret

Checker = Callable[[Path], HubConfig]


class ConfigRejected(HubError):
    """A config document that will not be applied; the message is the published reason."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: the file is either old or new, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_config_dir(directory: Path) -> HubConfig:
    """What `hub check-config` does, on a staged copy: parse, secrets present, sources build."""
    from hub.app import read_secrets
    from hub.clock import SystemClock
    from hub.doctor import registry_checks
    from hub.source import SourceContext

    cfg = load_config(directory / CONFIG_FILE)
    read_secrets(cfg)
    ctx = SourceContext(site=cfg.hub.site, clock=SystemClock(), data_dir=directory / "var")
    for source in cfg.sources:
        source.build(ctx)
    failed = [c for c in registry_checks(cfg) if not c.ok and "invalid rows" not in c.detail]
    if failed:
        raise HubError(f"{failed[0].what}: {failed[0].detail}")
    return cfg


def check_reachable(cfg: HubConfig, site: str) -> None:
    """A remote config must leave the platform able to reach this gateway again."""
    if cfg.hub.site != site:
        raise HubError(f"hub.site {cfg.hub.site!r} differs from the document's site {site!r}")
    if not (cfg.mqtt.enabled and cfg.fleet.remote_control):
        raise HubError(
            "it would cut the gateway off (mqtt.enabled and fleet.remote_control must stay true)"
        )


class ConfigApplier:
    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        site: str,
        trusted: dict[str, Ed25519PublicKey],
        reporter: Reporter,
        checker: Checker = check_config_dir,
    ) -> None:
        self.config_path = config_path
        self.base = config_path.parent
        self.state_dir = state_dir
        self.site = site
        self.trusted = trusted
        self.reporter = reporter
        self.checker = checker

    # --- versions and markers -------------------------------------------------------------------

    @property
    def highest_version(self) -> int:
        try:
            return int((self.state_dir / "config_version").read_text())
        except (OSError, ValueError):
            return 0

    @property
    def pending(self) -> dict[str, object] | None:
        try:
            doc = json.loads((self.state_dir / "pending.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @property
    def applied_version(self) -> int:
        try:
            return int((self.state_dir / "applied_version").read_text())
        except (OSError, ValueError):
            return 0

    # --- receiving ------------------------------------------------------------------------------

    def receive(self, envelope: bytes) -> ConfigDocument:
        """Verify, check and write a config; the caller restarts the hub. ConfigRejected otherwise."""
        try:
            doc = parse_config_document(verify_envelope(envelope, self.trusted).payload)
        except HubError as exc:  # SignatureRejected, DocumentRejected
            self._reject(None, str(exc))
        if doc.site != self.site:
            self._reject(doc.version, f"document is for site {doc.site!r}, not {self.site!r}")
        if doc.version <= self.highest_version:
            self._reject(
                doc.version, f"version {doc.version} is not newer than {self.highest_version}"
            )
        if self.pending is not None:
            self._reject(doc.version, "another config is being applied")
        # The version is burnt once the signature is good: replaying it later is refused.
        write_atomic(self.state_dir / "config_version", str(doc.version).encode())
        try:
            env = self._open_env(doc)
        except HubError as exc:
            self._reject(doc.version, str(exc))
        try:
            with _overlay(env):
                self._check_staged(doc)
        except HubError as exc:
            self._reject(doc.version, f"check-config failed: {exc}")
        self._backup(doc)
        marker = {"version": doc.version, "previous": self.applied_version, "env": sorted(env)}
        write_atomic(self.state_dir / "pending.json", json.dumps(marker).encode())
        for name, text in doc.files.items():
            write_atomic(self.base / name, text.encode())
        write_atomic(self.config_path, doc.config_toml.encode())
        if env:
            write_env_file(self.state_dir, {**read_env_file(self.state_dir), **env})
            load_env(self.state_dir)
        self.reporter.report("config", "restarting", doc.version)
        return doc

    def _reject(self, version: int | None, reason: str) -> NoReturn:
        self.reporter.report("config", "rejected", version, reason)
        raise ConfigRejected(reason)

    def _open_env(self, doc: ConfigDocument) -> dict[str, str]:
        if doc.env is None:
            return {}
        plain = unseal(gateway_key(self.state_dir), doc.env, aad(doc.site, doc.version))
        env = parse_env(plain.decode("utf-8", errors="replace"))
        for value in env.values():
            register_secret(value)
        return env

    def _check_staged(self, doc: ConfigDocument) -> None:
        staging = self.state_dir / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        # Relative paths in the config resolve against its directory: stage a mirror of it made
        # of symlinks (nothing copied, so no secrets file is duplicated) plus the new files.
        _mirror(self.base, staging, {CONFIG_FILE, *doc.files})
        try:
            for name, text in doc.files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_text(text, encoding="utf-8")
            (staging / CONFIG_FILE).write_text(doc.config_toml, encoding="utf-8")
            check_reachable(self.checker(staging), doc.site)
        except HubError as exc:  # name files as the platform sent them, not our staging path
            raise HubError(str(exc).replace(f"{staging}/", "")) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _backup(self, doc: ConfigDocument) -> None:
        backup = self.state_dir / "last_good"
        shutil.rmtree(backup, ignore_errors=True)
        backup.mkdir(parents=True)
        existed = {}
        for name in [CONFIG_FILE, *doc.files]:
            source = self.config_path if name == CONFIG_FILE else self.base / name
            existed[name] = source.exists()
            if source.exists():
                (backup / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, backup / name)
        write_atomic(backup / "manifest.json", json.dumps(existed).encode())
        env_file = self.state_dir / ENV_FILE
        if env_file.exists():
            shutil.copy2(env_file, backup / ENV_FILE)

    # --- after the restart ----------------------------------------------------------------------

    def commit(self) -> None:
        pending = self.pending
        if pending is None:
            return
        write_atomic(self.state_dir / "applied_version", str(pending["version"]).encode())
        (self.state_dir / "pending.json").unlink()
        self.reporter.report("config", "applied", _int(pending["version"]))

    def rollback(self, reason: str) -> None:
        """Put back the files saved before the pending apply and forget the pending marker."""
        pending = self.pending
        if pending is None:
            return
        backup = self.state_dir / "last_good"
        existed = json.loads((backup / "manifest.json").read_text())
        for name, was_there in existed.items():
            target = self.config_path if name == CONFIG_FILE else self.base / name
            if was_there:
                write_atomic(target, (backup / name).read_bytes())
            else:
                target.unlink(missing_ok=True)
        self._restore_env(backup, pending)
        (self.state_dir / "pending.json").unlink()
        self.reporter.report("config", "rolled_back", _int(pending["version"]), reason)

    def _restore_env(self, backup: Path, pending: dict[str, object]) -> None:
        new_names = pending.get("env")
        if not isinstance(new_names, list) or not new_names:
            return
        saved = backup / ENV_FILE
        if saved.exists():
            write_atomic(self.state_dir / ENV_FILE, saved.read_bytes())
        else:
            (self.state_dir / ENV_FILE).unlink(missing_ok=True)
        old = read_env_file(self.state_dir)
        for name in new_names:
            if str(name) not in old:
                os.environ.pop(str(name), None)
        load_env(self.state_dir)


ENV_FILE = "env"


def read_env_file(state_dir: Path) -> dict[str, str]:
    try:
        return parse_env((state_dir / ENV_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def write_env_file(state_dir: Path, env: dict[str, str]) -> None:
    text = "".join(f"{name}={value}\n" for name, value in sorted(env.items()))
    write_atomic(state_dir / ENV_FILE, text.encode())
    (state_dir / ENV_FILE).chmod(0o600)


def load_env(state_dir: Path) -> None:
    """Values delivered sealed override the environment systemd gave us (hub.env)."""
    for name, value in read_env_file(state_dir).items():
        register_secret(value)
        os.environ[name] = value


@contextlib.contextmanager
def _overlay(env: dict[str, str]) -> Iterator[None]:
    """The new values visible to check-config only; the previous environment afterwards."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _mirror(source: Path, target: Path, replaced: set[str], prefix: str = "") -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        name = f"{prefix}{entry.name}"
        if name in replaced:
            continue
        if entry.is_dir() and any(r.startswith(f"{name}/") for r in replaced):
            _mirror(entry, target / entry.name, replaced, f"{name}/")
        else:
            (target / entry.name).symlink_to(entry.resolve())


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise DocumentRejected(f"corrupt pending marker: {value!r}")
