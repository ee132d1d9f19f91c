"""Signed remote upgrade: download with resume and a size cap, verify, hand over to install.sh.

The installer (deploy/install.sh: A/B venvs, health check, rollback) restarts the service, so
it must outlive this process: the default command runs it through `systemd-run`. Whether the
new version came up is known only after that restart: `upgrade.json` in the fleet state dir
says what was attempted, and the next start reports `upgraded` or `rolled_back`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import NoReturn

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.errors import HubError
from hub.fleet.config_apply import write_atomic
from hub.fleet.documents import UpgradeManifest, parse_manifest, version_tuple
from hub.fleet.reports import Reporter
from hub.fleet.settings import FleetSection
from hub.fleet.signing import verify_envelope

log = logging.getLogger("hub.fleet.upgrade")

CHUNK = 64 * 1024
MAX_ATTEMPTS = 5
OUTPUT_TAIL = 2000
REQUEST_FILE = "install-request.json"


class UpgradeFailed(HubError):
    """An upgrade that was refused or failed; the message is the published reason."""


class Upgrader:
    def __init__(
        self,
        settings: FleetSection,
        state_dir: Path,
        site: str,
        current_version: str,
        trusted: dict[str, Ed25519PublicKey],
        reporter: Reporter,
    ) -> None:
        self.settings = settings
        self.dir = state_dir / "upgrade"
        self.marker = state_dir / "upgrade.json"
        self.site = site
        self.current = current_version
        self.trusted = trusted
        self.reporter = reporter
        self._busy = False

    def accept(self, envelope: bytes) -> UpgradeManifest:
        """Signature, target and version checks; UpgradeFailed (reported) when refused."""
        try:
            manifest = parse_manifest(verify_envelope(envelope, self.trusted).payload)
        except HubError as exc:
            self._fail(None, "rejected", str(exc))
        if manifest.sites and self.site not in manifest.sites:
            self._fail(manifest.version, "rejected", f"not addressed to site {self.site}")
        new, cur = version_tuple(manifest.version), version_tuple(self.current)
        if new == cur:
            self._fail(manifest.version, "rejected", f"already running {self.current}")
        if new < cur and not manifest.allow_downgrade:
            self._fail(manifest.version, "rejected", f"downgrade from {self.current} not allowed")
        if manifest.size > self.settings.upgrade_max_bytes:
            self._fail(
                manifest.version,
                "rejected",
                f"bundle of {manifest.size} bytes exceeds {self.settings.upgrade_max_bytes}",
            )
        if self._busy:
            self._fail(manifest.version, "rejected", "another upgrade is in progress")
        self.reporter.report("upgrade", "accepted", manifest.version, url=manifest.url)
        return manifest

    async def handle(self, envelope: bytes) -> None:
        manifest = self.accept(envelope)
        self._busy = True
        try:
            bundle = await self.download(manifest)
            self.verify(manifest, bundle)
            if self.settings.install_command:
                await self.install(manifest, bundle)
            else:
                self.hand_over(manifest, bundle, envelope)
        finally:
            self._busy = False

    def _fail(self, version: str | None, outcome: str, reason: str, **extra: object) -> NoReturn:
        self.reporter.report("upgrade", outcome, version, reason, **extra)
        raise UpgradeFailed(reason)

    # --- download -------------------------------------------------------------------------------

    async def download(self, manifest: UpgradeManifest) -> Path:
        """Fetch the bundle into upgrade/<version>.part, resuming a partial file (HTTP Range)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _remove_other_versions(self.dir, manifest.version)  # disk stays bounded by one bundle
        part = self.dir / f"bundle-{manifest.version}.part"
        timeout = aiohttp.ClientTimeout(total=self.settings.download_timeout_s)
        last_error = ""
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    if await self._fetch(session, manifest, part):
                        break
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    last_error = f"{exc.__class__.__name__}: {exc}"
                    self.reporter.report(
                        "upgrade", "download_retry", manifest.version, last_error,
                        bytes=_size(part), attempt=attempt + 1,
                    )  # fmt: skip
                    await asyncio.sleep(min(2**attempt, 30))
            else:
                self._fail(manifest.version, "failed", f"download failed: {last_error}")
        self.reporter.report("upgrade", "downloaded", manifest.version, bytes=_size(part))
        return part

    async def _fetch(
        self, session: aiohttp.ClientSession, manifest: UpgradeManifest, part: Path
    ) -> bool:
        have = _size(part)
        if have > manifest.size:
            _discard(part)
            have = 0
        if have == manifest.size:
            return True
        headers = {"Range": f"bytes={have}-"} if have else {}
        async with session.get(manifest.url, headers=headers) as resp:
            if resp.status == 200:
                have = 0  # the server ignored the Range: start over
            elif resp.status != 206:
                self._fail(manifest.version, "failed", f"download: HTTP {resp.status}")
            with part.open("ab" if have else "wb") as f:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    have += len(chunk)
                    if have > manifest.size:
                        f.close()
                        _discard(part)
                        self._fail(
                            manifest.version,
                            "failed",
                            f"server sent more than the manifest's {manifest.size} bytes",
                        )
                    f.write(chunk)
        return have == manifest.size

    def verify(self, manifest: UpgradeManifest, bundle: Path) -> None:
        digest = hashlib.sha256()
        with bundle.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != manifest.sha256:
            bundle.unlink()
            self._fail(manifest.version, "failed", "sha256 of the bundle does not match")
        self.reporter.report("upgrade", "verified", manifest.version)

    # --- install --------------------------------------------------------------------------------

    async def install(self, manifest: UpgradeManifest, bundle: Path) -> None:
        bundle_dir = self._unpack(manifest, bundle)
        argv = [
            arg.format(bundle_dir=bundle_dir, bundle=bundle, version=manifest.version)
            for arg in self.settings.install_command
        ]
        write_atomic(
            self.marker, json.dumps({"version": manifest.version, "from": self.current}).encode()
        )
        self.reporter.report("upgrade", "installing", manifest.version, command=argv[0])
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
        except OSError as exc:
            self.marker.unlink(missing_ok=True)
            self._fail(manifest.version, "failed", f"cannot run installer: {exc.strerror}")
        output, _ = await proc.communicate()
        tail = output.decode(errors="replace")[-OUTPUT_TAIL:]
        if proc.returncode != 0:
            self.marker.unlink(missing_ok=True)
            self._fail(
                manifest.version, "failed", f"installer exited {proc.returncode}", output=tail
            )
        self.reporter.report("upgrade", "installed", manifest.version, output=tail)

    def hand_over(self, manifest: UpgradeManifest, bundle: Path, envelope: bytes) -> None:
        """Leave the bundle and its signed manifest for the root-side installer."""
        write_atomic(
            self.marker, json.dumps({"version": manifest.version, "from": self.current}).encode()
        )
        request = {"envelope": envelope.decode(), "bundle": bundle.name}
        write_atomic(self.dir / REQUEST_FILE, json.dumps(request).encode())
        self.reporter.report("upgrade", "installing", manifest.version, command="install-request")

    def _unpack(self, manifest: UpgradeManifest, bundle: Path) -> Path:
        """A tarball is extracted (no links out, no devices); the dir holding wheels is used."""
        target = self.dir / f"bundle-{manifest.version}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if not tarfile.is_tarfile(bundle):
            shutil.copy2(bundle, target / bundle.name.removesuffix(".part"))
            return target
        try:
            with tarfile.open(bundle) as tar:
                tar.extractall(target, filter="data")
        except (tarfile.TarError, OSError) as exc:
            self._fail(manifest.version, "failed", f"cannot unpack bundle: {exc}")
        wheels = sorted(target.rglob("*.whl"))
        return wheels[0].parent if wheels else target

    def report_after_restart(self) -> None:
        """At start: did the last attempted upgrade take? Reports once, then forgets it."""
        try:
            attempt = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return
        self.marker.unlink(missing_ok=True)
        target = str(attempt.get("version", ""))
        if version_tuple(target) == version_tuple(self.current):
            self.reporter.report("upgrade", "upgraded", target)
        else:
            self.reporter.report(
                "upgrade", "rolled_back", target, f"running {self.current} after the install"
            )


def run_install_request(request_path: Path, trusted: dict[str, Ed25519PublicKey]) -> int:
    """Root side: verify the handed-over bundle again, then run the bundle's own install.sh.

    The hub runs unprivileged; re-verifying here means a compromised hub user still cannot
    make root install anything the platform did not sign."""
    request = json.loads(request_path.read_text())
    request_path.unlink()
    manifest = parse_manifest(verify_envelope(request["envelope"].encode(), trusted).payload)
    bundle = request_path.parent / Path(str(request["bundle"])).name
    digest = hashlib.sha256()
    with bundle.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != manifest.sha256:
        raise UpgradeFailed(f"{bundle}: sha256 does not match the signed manifest")
    target = request_path.parent / f"install-{manifest.version}"
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(bundle) as tar:
        tar.extractall(target, filter="data")
    scripts = sorted(target.rglob("install.sh"), key=lambda p: len(p.parts))
    if not scripts:
        raise UpgradeFailed(f"{bundle}: no install.sh in the bundle")
    return subprocess.call(["bash", str(scripts[0]), "--offline", str(scripts[0].parent)])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove_other_versions(directory: Path, keep: str) -> None:
    kept = {f"bundle-{keep}.part", f"bundle-{keep}", f"install-{keep}"}
    for entry in directory.iterdir():
        if entry.name.startswith(("bundle-", "install-")) and entry.name not in kept:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
