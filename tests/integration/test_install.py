"""Offline bundles per platform, and install / upgrade / rollback with deploy/install.sh.

The installs go into a throwaway root (`--prefix`). systemd cannot run here, so `systemctl` is a
fake on PATH that records its calls and, for `restart`, really starts the installed
`/opt/harbourgrid/venv/bin/hub run` with the secrets of hub.env, as the unit would: the health
check after an upgrade talks to the hub that was installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.util import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import bundle  # noqa: E402

FAKE_SYSTEMCTL = r"""#!/usr/bin/env bash
# Records every call; `restart` (re)starts the installed hub like the unit would.
echo "$*" >> "$FAKE_ROOT/systemctl.calls"
pidfile="$FAKE_ROOT/hub.pid"
stop_hub() {
    if [ -f "$pidfile" ]; then
        kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
        while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.1; done
        rm -f "$pidfile"
    fi
}
case "$1" in
    restart)
        stop_hub
        (
            set -a; . "$FAKE_ROOT/etc/harbourgrid/hub.env"; set +a
            exec "$FAKE_ROOT/opt/harbourgrid/venv/bin/hub" run \
                --config "$FAKE_ROOT/etc/harbourgrid/hub.toml" >>"$FAKE_ROOT/hub.log" 2>&1
        ) &
        echo $! > "$pidfile"
        ;;
    stop) stop_hub ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def bundle_x86(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles")
    return bundle.build("x86_64", "3.11", out)


def _extract(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    (top,) = dest.iterdir()
    return top


def _wheel_tags_fit(wheel: str, arch: str) -> bool:
    _, _, _, tags = parse_wheel_filename(wheel)
    return any(
        t.platform == "any" or t.platform.endswith(f"_{arch}") or t.platform == f"linux_{arch}"
        for t in tags
    ) and any(t.interpreter in ("py3", "cp311", "py2.py3") or t.abi == "abi3" for t in tags)


def _check_closure(stage: Path, arch: str) -> None:
    """Every wheel is for `arch`/CPython 3.11 and every requirement of every wheel (markers
    evaluated for a Linux `arch` CPython 3.11) has a wheel in the bundle."""
    env = {**default_environment(), "platform_machine": arch, "python_version": "3.11"}
    env.update(python_full_version="3.11.2", sys_platform="linux", platform_system="Linux")
    wheels = {}
    for path in (stage / "wheels").glob("*.whl"):
        assert _wheel_tags_fit(path.name, arch), path.name
        wheels[parse_wheel_filename(path.name)[0]] = path
    for name, path in wheels.items():
        with zipfile.ZipFile(path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(meta).decode()
        extras = {"async"} if name == "influxdb-client" else set()
        for line in re.findall(r"^Requires-Dist: (.+)$", text, re.M):
            req = Requirement(line)
            if req.marker and not any(
                req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})
            ):
                continue
            assert canonicalize_name(req.name) in wheels, f"{name} needs {req} for {arch}"


def test_x86_64_bundle_is_self_contained(bundle_x86: Path, tmp_path: Path) -> None:
    stage = _extract(bundle_x86, tmp_path)
    for name in ("install.sh", "harbourgrid-hub.service", "hub.example.toml", "BUNDLE"):
        assert (stage / name).is_file(), name
    assert sorted(p.name for p in (stage / "dashboards").glob("*.json"))
    assert (stage / "registry" / "households.example.csv").is_file()
    sums = (stage / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == sum(1 for p in stage.rglob("*") if p.is_file()) - 1
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((stage / name).read_bytes()).hexdigest() == digest
    _check_closure(stage, "x86_64")


def test_aarch64_bundle_resolves_every_requirement_to_a_wheel(tmp_path: Path) -> None:
    tarball = bundle.build("aarch64", "3.11", tmp_path / "out")
    assert tarball.name.endswith("-aarch64.tar.gz")
    _check_closure(_extract(tarball, tmp_path / "x"), "aarch64")


def _variant(stage: Path, dest: Path, version: str, broken: bool) -> Path:
    """The bundle with its hub wheel rebuilt as `version` (and, if `broken`, a hub whose `run`
    exits at once, as a bad release would)."""
    src = dest / "src"
    for name in ("hub", "drivers", "sim", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name)  # type: ignore[operator]
    if broken:
        cli = src / "hub" / "cli.py"
        text = cli.read_text()
        cli.write_text(
            text.replace(
                "    cfg = load_config(args.config)\n    _setup_logs(cfg, args.log_level)\n",
                "    return 1  # a broken release\n",
                1,
            )
        )
    variant = dest / f"bundle-{version}"
    shutil.copytree(stage, variant)
    for old in (variant / "wheels").glob("harbourgrid_hub-*.whl"):
        old.unlink()
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION": version}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(variant / "wheels"),
            str(src),
        ],
        check=True,
        env=env,
    )
    (variant / "SHA256SUMS").unlink()
    bundle.write_checksums(variant)
    return variant


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A throwaway root with a config and secrets a technician already put in place."""
    fake_root = tmp_path / "root"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    etc = fake_root / "etc" / "harbourgrid"
    etc.mkdir(parents=True)
    (etc / "hub.toml").write_text(
        f"""
[hub]
site = "install-test"
data_dir = "{fake_root}/var/lib/harbourgrid"
[http]
port = {free_port()}
token_env = "HUB_HTTP_TOKEN"
[influxdb]
api = "local"
[[sources]]
type = "simulated_meters"
name = "sim"
interval_s = 0.5
"""
    )
    (etc / "hub.env").write_text("HUB_HTTP_TOKEN=only-in-hub-env-123\n")
    yield fake_root
    pid = fake_root / "hub.pid"
    if pid.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid.read_text()), signal.SIGTERM)


def _install(root: Path, source: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FAKE_ROOT": str(root),
        "PATH": f"{root.parent / 'bin'}:{os.environ['PATH']}",
    }
    env.pop("HUB_HTTP_TOKEN", None)
    env["PIP_NO_COMPILE"] = "1"  # bytecode compilation is half of each install's time here
    return subprocess.run(
        [
            "bash",
            str(source / "install.sh"),
            "--prefix",
            str(root),
            "--offline",
            str(source),
            "--health-timeout",
            "60",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _live(root: Path) -> str:
    return os.readlink(root / "opt" / "harbourgrid" / "venv")


@pytest.mark.timeout(900)
def test_install_upgrade_and_rollback(bundle_x86: Path, root: Path, tmp_path: Path) -> None:
    stage = _extract(bundle_x86, tmp_path / "x")
    current = stage.name.split("-")[2]
    older = _variant(stage, tmp_path / "old", "0.0.1", broken=False)
    broken = _variant(stage, tmp_path / "bad", "99.0.0", broken=True)
    config_before = (root / "etc" / "harbourgrid" / "hub.toml").read_bytes()

    first = _install(root, older)  # the secret is only in hub.env: check-config must load it
    assert first.returncode == 0, first.stdout + first.stderr
    assert _live(root) == "venv-0.0.1"
    calls = (root / "systemctl.calls").read_text().splitlines()
    assert calls == [
        "daemon-reload",
        "enable harbourgrid-hub.service harbourgrid-upgrade.path",
        "restart harbourgrid-hub.service",
    ]
    units = root / "etc" / "systemd" / "system"
    assert (units / "harbourgrid-upgrade.path").is_file()  # signed upgrades' root hand-over
    assert not (units / "harbourgrid-hub.service.d").exists()  # remote config only when asked
    outbox = list((root / "var" / "lib" / "harbourgrid").glob("*.sqlite*"))
    assert outbox, "the installed hub ran and made its outbox"

    upgrade = _install(root, stage)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert _live(root) == f"venv-{current}"
    venv = root / "opt" / "harbourgrid" / "venv"
    version = subprocess.run(
        [str(venv / "bin" / "hub"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == f"hub {current}"
    assert (root / "opt" / "harbourgrid" / "venv-0.0.1").is_dir()  # kept for rollback
    assert (root / "etc" / "harbourgrid" / "hub.toml").read_bytes() == config_before
    assert all(p.exists() for p in outbox)
    dashboards = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from hub.grafana import default_dir; print(default_dir())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the checkout: `python -c` would import its hub/ first
    )
    assert Path(dashboards.stdout.strip()) == root / "opt" / "harbourgrid" / "dashboards"
    assert list(Path(dashboards.stdout.strip()).glob("*.json"))

    bad = _install(root, broken)
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert "rolling back" in bad.stderr
    assert _live(root) == f"venv-{current}"
    assert (root / "systemctl.calls").read_text().count("restart") == 4
    port = re.search(r"port = (\d+)", (root / "etc/harbourgrid/hub.toml").read_text())
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/healthz", timeout=10) as resp:
        assert resp.status == 200  # the previous version runs again


def test_config_that_fails_with_hub_env_is_refused_and_nothing_switches(
    bundle_x86: Path, root: Path, tmp_path: Path
) -> None:
    stage = _extract(bundle_x86, tmp_path / "x")
    (root / "etc" / "harbourgrid" / "hub.env").write_text("# the token was forgotten\n")
    result = _install(root, stage)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "HUB_HTTP_TOKEN" in result.stderr
    assert not (root / "opt" / "harbourgrid" / "venv").exists()
    assert not (root / "systemctl.calls").exists()
