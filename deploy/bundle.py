"""Build a self-contained offline bundle of the hub for one gateway platform.

    python deploy/bundle.py --platform x86_64|aarch64|armv7l [--out dist] [--python-version 3.11]

The tarball `harbourgrid-hub-<version>-<platform>.tar.gz` holds `wheels/` (the hub wheel and a
wheel of every dependency for that platform and CPython, from `pip download --only-binary=:all:`),
`install.sh`, the systemd unit, the example config and secrets file, registry examples,
`dashboards/`, `BUNDLE` (version, platform, python) and `SHA256SUMS` over all of it.
Target: Debian 12 / Raspberry Pi OS bookworm (glibc 2.36, CPython 3.11). Standard library only.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# manylinux tags a glibc-2.36 system accepts, newest first; `linux_*` for pure builds of a platform.
GLIBC_MINORS = (36, 35, 34, 33, 32, 31, 28, 27, 26, 24, 17)
PLATFORMS = ("x86_64", "aarch64", "armv7l")
DEPLOY_FILES = (
    "install.sh",
    "harbourgrid-hub.service",
    "hub.example.toml",
    "harbourgrid-hub.env.example",
    "harbourgrid-upgrade.path",  # fleet: root-side hand-over of signed upgrades
    "harbourgrid-upgrade.service",
    "harbourgrid-hub-fleet.conf",  # fleet: drop-in letting remote config write /etc/harbourgrid
    "mosquitto-bridge.conf",
)


class BundleError(Exception):
    """The bundle cannot be built; the message says why."""


def platform_tags(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
    if arch in ("x86_64", "aarch64"):
        tags.append(f"manylinux2014_{arch}")
    return [*tags, f"linux_{arch}"]


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def build_hub_wheel(dest: Path) -> Path:
    say("building the hub wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest), str(ROOT)],
        check=True,
    )
    (wheel,) = dest.glob("harbourgrid_hub-*.whl")
    return wheel


def requirements(wheel: Path) -> list[str]:
    """The hub's runtime requirements, as its wheel's METADATA declares them (no extras)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(name).decode())
    return [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]


def pip_download(reqs: list[str], arch: str, python: str, dest: Path, quiet: bool) -> bool:
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(dest)]
    for tag in platform_tags(arch):
        cmd += ["--platform", tag]
    cmd += ["--python-version", python, "--implementation", "cp"]
    cmd += ["--abi", f"cp{python.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    if quiet:
        cmd.append("--quiet")
    result = subprocess.run([*cmd, *reqs], capture_output=quiet, check=False)
    return result.returncode == 0


def download_dependencies(reqs: list[str], arch: str, python: str, dest: Path) -> None:
    say(f"downloading wheels of {len(reqs)} requirements for {arch}, CPython {python}")
    if pip_download(reqs, arch, python, dest, quiet=False):
        return
    missing = []
    with tempfile.TemporaryDirectory() as scratch:
        for req in reqs:  # which requirement (or a dependency of it) has no wheel?
            if not pip_download([req], arch, python, Path(scratch), quiet=True):
                missing.append(req)
    raise BundleError(
        f"no wheel for {arch} / CPython {python}: {', '.join(missing) or 'see pip output above'}"
    )


def copy_payload(stage: Path) -> None:
    for name in DEPLOY_FILES:
        shutil.copy2(ROOT / "deploy" / name, stage / name)
    shutil.copytree(ROOT / "deploy" / "registry", stage / "registry")
    shutil.copytree(ROOT / "dashboards", stage / "dashboards")


def write_checksums(stage: Path) -> None:
    lines = []
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(stage).as_posix()}\n")
    (stage / "SHA256SUMS").write_text("".join(lines))


def build(arch: str, python: str, out: Path) -> Path:
    if arch not in PLATFORMS:
        raise BundleError(f"unknown platform {arch!r}; one of {', '.join(PLATFORMS)}")
    with tempfile.TemporaryDirectory(prefix="hub-bundle-") as tmp:
        wheels = Path(tmp) / "wheels"
        hub_wheel = build_hub_wheel(wheels)
        version = hub_wheel.name.split("-")[1]
        name = f"harbourgrid-hub-{version}-{arch}"
        stage = Path(tmp) / name
        stage.mkdir()
        download_dependencies(requirements(hub_wheel), arch, python, wheels)
        shutil.move(wheels, stage / "wheels")
        copy_payload(stage)
        (stage / "BUNDLE").write_text(f"version={version}\nplatform={arch}\npython={python}\n")
        write_checksums(stage)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{name}.tar.gz"
        say(f"writing {target}")
        with tarfile.open(target, "w:gz") as tar:
            tar.add(stage, arcname=name)
    size_mb = target.stat().st_size / 1e6
    say(f"done: {target} ({size_mb:.1f} MB, {len(list((Path(out)).glob('*.tar.gz')))} in {out})")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", default="x86_64", choices=PLATFORMS)
    parser.add_argument("--python-version", default="3.11")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    try:
        build(args.platform, args.python_version, args.out)
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
