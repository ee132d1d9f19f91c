"""Signed upgrade: download (with resume) from a real local HTTP server, verify, install, refuse.

The HTTP server is aiohttp's static file handler (it honours Range requests like nginx would);
the installer is a small shell script standing in for deploy/install.sh, which the lead's own
tests cover."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from hub.fleet.documents import build_manifest_payload
from hub.fleet.reports import Reporter
from hub.fleet.settings import FleetSection
from hub.fleet.signing import generate_keypair, load_private_key, load_trusted_keys, sign_envelope
from hub.fleet.upgrade import UpgradeFailed, Upgrader, run_install_request

pytestmark = pytest.mark.integration


def make_bundle(path: Path, size_kb: int = 300) -> Path:
    """A tar.gz holding a 'wheel' of incompressible bytes, like `make bundle` output."""
    with tarfile.open(path, "w:gz") as tar:
        data = os.urandom(size_kb * 1024)
        info = tarfile.TarInfo("bundle/harbourgrid_hub-0.2.0-py3-none-any.whl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ranges: list[str] = []
        self.url = ""

    async def start(self) -> web.AppRunner:
        @web.middleware
        async def record(request: web.Request, handler: web.Handler) -> web.StreamResponse:
            self.ranges.append(request.headers.get("Range", ""))
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.router.add_static("/", self.root)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return runner


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    runner = await srv.start()
    yield srv
    await runner.cleanup()


class Gateway:
    def __init__(self, root: Path, version: str = "0.1.0", **settings: object) -> None:
        generate_keypair(root / "keys", "ops")
        self.key = load_private_key(root / "keys" / "ops.key")
        (root / "trusted").mkdir()
        (root / "trusted" / "ops.pub").write_bytes((root / "keys" / "ops.pub").read_bytes())
        self.log = root / "installer.log"
        installer = root / "install.sh"
        installer.write_text(f'#!/bin/sh\necho "$@" >> {self.log}\nls "$2" >> {self.log}\n')
        installer.chmod(0o755)
        cmd = [str(installer), "--offline", "{bundle_dir}", "{version}"]
        self.settings = FleetSection.model_validate({"install_command": cmd, **settings})
        self.reporter = Reporter("s1")
        self.state = root / "state"
        self.upgrader = Upgrader(
            self.settings, self.state, "s1", version, load_trusted_keys(root / "trusted"),
            self.reporter,
        )  # fmt: skip

    def manifest(self, bundle: Path, url: str, version: str = "0.2.0", **kw: object) -> bytes:
        return sign_envelope(self.key, build_manifest_payload(bundle, url, version, **kw))  # type: ignore[arg-type]

    def outcomes(self) -> list[object]:
        return [r["outcome"] for r in self.reporter.history]


async def test_upgrade_downloads_verifies_and_hands_over(tmp_path: Path, server: Server) -> None:
    bundle = make_bundle(server.root / "hub-0.2.0.tar.gz")
    gw = Gateway(tmp_path)
    await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/hub-0.2.0.tar.gz"))
    assert gw.outcomes() == ["accepted", "downloaded", "verified", "installing", "installed"]
    args, listing = gw.log.read_text().splitlines()
    assert args.startswith("--offline ") and args.endswith("/bundle 0.2.0")
    assert listing == "harbourgrid_hub-0.2.0-py3-none-any.whl"
    # After the restart into the new version, the marker turns into one final report.
    Upgrader(gw.settings, gw.state, "s1", "0.2.0", {}, gw.reporter).report_after_restart()
    assert gw.outcomes()[-1] == "upgraded"


async def test_interrupted_download_resumes_with_range(tmp_path: Path, server: Server) -> None:
    bundle = make_bundle(server.root / "b.tar.gz")
    gw = Gateway(tmp_path)
    part = gw.state / "upgrade" / "bundle-0.2.0.part"
    part.parent.mkdir(parents=True)
    half = bundle.stat().st_size // 2
    part.write_bytes(bundle.read_bytes()[:half])  # what a dropped connection leaves behind
    stale = part.parent / "bundle-0.1.5.part"  # an older attempt's leftovers
    stale.write_bytes(b"x" * 1000)
    await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/b.tar.gz"))
    assert server.ranges == [f"bytes={half}-"]
    assert not stale.exists()
    assert gw.outcomes()[-1] == "installed"


async def test_tampered_bundle_fails_the_hash_and_is_not_installed(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(server.root / "b.tar.gz")
    gw = Gateway(tmp_path)
    envelope = gw.manifest(bundle, f"{server.url}/b.tar.gz")
    data = bytearray(bundle.read_bytes())
    data[100] ^= 0xFF  # the file on the server changed after signing
    bundle.write_bytes(bytes(data))
    with pytest.raises(UpgradeFailed, match="sha256"):
        await gw.upgrader.handle(envelope)
    assert not gw.log.exists()
    assert gw.reporter.history[-1]["reason"] == "sha256 of the bundle does not match"


async def test_server_sending_more_than_the_manifest_size_is_cut_off(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(tmp_path / "small.tar.gz", size_kb=10)
    make_bundle(server.root / "big.tar.gz", size_kb=400)
    gw = Gateway(tmp_path)
    with pytest.raises(UpgradeFailed, match="more than the manifest"):
        await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/big.tar.gz"))
    assert not (gw.state / "upgrade" / "bundle-0.2.0.part").exists()
    assert not gw.log.exists()


async def test_refusals(tmp_path: Path, server: Server) -> None:
    bundle = make_bundle(server.root / "b.tar.gz", size_kb=4)
    url = f"{server.url}/b.tar.gz"
    gw = Gateway(tmp_path, version="0.3.0", upgrade_max_bytes=2048)
    cases = [
        (gw.manifest(bundle, url, "0.2.0"), "downgrade from 0.3.0 not allowed"),
        (gw.manifest(bundle, url, "0.3.0"), "already running 0.3.0"),
        (gw.manifest(bundle, url, "0.4.0", sites=["other"]), "not addressed to site s1"),
        (gw.manifest(bundle, url, "0.4.0"), "exceeds 2048"),
        (gw.manifest(bundle, url, "0.4.0").replace(b'"signature": "', b'"signature": "AA'), "bad signature"),
    ]  # fmt: skip
    for envelope, reason in cases:
        with pytest.raises(UpgradeFailed, match=reason):
            await gw.upgrader.handle(envelope)
    assert server.ranges == []  # nothing was downloaded for any refused manifest
    assert gw.outcomes() == ["rejected"] * len(cases)


async def test_signed_downgrade_is_allowed_when_the_manifest_says_so(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(server.root / "b.tar.gz", size_kb=4)
    gw = Gateway(tmp_path, version="0.3.0")
    await gw.upgrader.handle(
        gw.manifest(bundle, f"{server.url}/b.tar.gz", "0.2.0", allow_downgrade=True)
    )
    assert gw.outcomes()[-1] == "installed"


async def test_failing_installer_is_reported_with_its_output(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(server.root / "b.tar.gz", size_kb=4)
    gw = Gateway(tmp_path)
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'health check failed, rolled back to venv-0.1.0'\nexit 3\n")
    failing.chmod(0o755)
    gw.upgrader.settings = gw.settings.model_copy(update={"install_command": [str(failing)]})
    with pytest.raises(UpgradeFailed, match="installer exited 3"):
        await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/b.tar.gz"))
    last = gw.reporter.history[-1]
    assert last["outcome"] == "failed" and "rolled back to venv-0.1.0" in str(last["output"])


async def test_missing_bundle_on_the_server_is_a_clear_failure(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(tmp_path / "b.tar.gz", size_kb=4)
    gw = Gateway(tmp_path)
    with pytest.raises(UpgradeFailed, match="HTTP 404"):
        await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/nope.tar.gz"))
    assert json.loads(json.dumps(gw.reporter.history[-1]))["outcome"] == "failed"


async def test_install_that_did_not_take_reports_rolled_back_after_restart(
    tmp_path: Path, server: Server
) -> None:
    bundle = make_bundle(server.root / "b.tar.gz", size_kb=4)
    gw = Gateway(tmp_path)
    await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/b.tar.gz"))
    # install.sh's health check failed and it switched back: we restart still on 0.1.0.
    again = Upgrader(gw.settings, gw.state, "s1", "0.1.0", {}, gw.reporter)
    again.report_after_restart()
    again.report_after_restart()  # reported once only
    assert gw.outcomes()[-2:] == ["installed", "rolled_back"]
    assert gw.reporter.history[-1]["reason"] == "running 0.1.0 after the install"


def bundle_with_installer(path: Path) -> Path:
    """A bundle shaped like `make bundle`: a top directory with install.sh and wheels."""
    script = b'#!/bin/sh\necho "$@" > "$(dirname "$0")/ran.txt"\nexit 0\n'
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (
            ("harbourgrid-hub-0.2.0/install.sh", script),
            (
                "harbourgrid-hub-0.2.0/wheels/harbourgrid_hub-0.2.0-py3-none-any.whl",
                os.urandom(4096),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


async def test_default_hands_over_to_the_root_installer_which_verifies_again(
    tmp_path: Path, server: Server
) -> None:
    bundle = bundle_with_installer(server.root / "b.tar.gz")
    gw = Gateway(tmp_path, install_command=[])
    await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/b.tar.gz"))
    assert gw.outcomes()[-1] == "installing"
    request = gw.state / "upgrade" / "install-request.json"
    code = run_install_request(request, load_trusted_keys(tmp_path / "trusted"))
    assert code == 0 and not request.exists()
    ran = next((gw.state / "upgrade").rglob("ran.txt")).read_text().split()
    assert ran[0] == "--offline" and ran[1].endswith("install-0.2.0/harbourgrid-hub-0.2.0")


async def test_root_installer_refuses_a_bundle_swapped_after_hand_over(
    tmp_path: Path, server: Server
) -> None:
    bundle = bundle_with_installer(server.root / "b.tar.gz")
    gw = Gateway(tmp_path, install_command=[])
    await gw.upgrader.handle(gw.manifest(bundle, f"{server.url}/b.tar.gz"))
    request = gw.state / "upgrade" / "install-request.json"
    handed = json.loads(request.read_text())["bundle"]
    bundle_with_installer(gw.state / "upgrade" / handed)  # same shape, different bytes
    with pytest.raises(UpgradeFailed, match="sha256 does not match"):
        run_install_request(request, load_trusted_keys(tmp_path / "trusted"))
    assert not list((gw.state / "upgrade").rglob("ran.txt"))
