"""The Raspberry Pi path: prepare-sd.sh on a bookworm boot partition, then firstrun.sh on it.

The boot partition is a real FAT32 image (mkfs.vfat, read and written with mtools as a laptop
would) holding Raspberry Pi OS bookworm's own first-boot cmdline.txt and config.txt (pi-gen,
tests/data/rpi-bookworm-bootfs/). prepare-sd.sh runs on its files; what it wrote is read back
from the FAT image. firstrun.sh then runs on a throwaway root (HARBOURGRID_FIRSTRUN_ROOT) holding
that partition at /boot/firmware, with a fake systemctl that records its calls and a stand-in
aarch64 bundle whose install.sh records how it was called (the real install.sh and bundles are
tested in test_install.py; aarch64 wheels cannot be installed on this host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RPI = ROOT / "deploy/image/rpi"
SAMPLES = ROOT / "tests/data/rpi-bookworm-bootfs"
HOOK = (
    " systemd.run=/boot/firmware/harbourgrid-setup/firstrun.sh"
    " systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)
ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}

STUB_INSTALL = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
[ -z "${STUB_FAIL:-}" ] || { echo "install.sh: $STUB_FAIL" >&2; exit 1; }
"""
FAKE_SYSTEMCTL = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
"""


def bookworm_cmdline() -> str:
    """The first-boot cmdline.txt of Raspberry Pi OS bookworm: pi-gen's patch, ROOTDEV replaced
    by a PARTUUID as its export-image/04-set-partuuid does."""
    diff = (SAMPLES / "07-resize-init.diff").read_text()
    line = next(x for x in diff.splitlines() if x.startswith("+console="))
    return line[1:].replace("ROOTDEV", "PARTUUID=4e639091-02") + "\n"


def mtools(fat: Path, *args: str) -> str:
    cmd, *rest = args
    return subprocess.run(
        [cmd, "-i", str(fat), *rest], check=True, capture_output=True, text=True, env=ENV
    ).stdout


def mread(fat: Path, path: str) -> bytes:
    return subprocess.run(
        ["mtype", "-i", str(fat), f"::/{path}"], check=True, capture_output=True, env=ENV
    ).stdout


@pytest.fixture
def bootfs(tmp_path: Path) -> Path:
    """A FAT32 'bootfs' partition as Raspberry Pi Imager leaves it after flashing bookworm Lite."""
    for tool in ("mkfs.vfat", "mcopy"):
        assert shutil.which(tool, path=ENV["PATH"]), f"{tool} missing: run `make image-tools`"
    fat = tmp_path / "bootfs.img"
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-n", "bootfs", "-C", str(fat), str(128 * 1024)],
        check=True, capture_output=True, env=ENV,
    )  # fmt: skip
    (tmp_path / "cmdline.txt").write_text(bookworm_cmdline())
    mtools(fat, "mcopy", str(tmp_path / "cmdline.txt"), str(SAMPLES / "config.txt"), "::/")
    return fat


def stub_bundle(tmp_path: Path, version: str) -> Path:
    name = f"harbourgrid-hub-{version}-aarch64"
    src = tmp_path / "bundles" / name
    src.mkdir(parents=True)
    (src / "install.sh").write_text(STUB_INSTALL)
    (src / "install.sh").chmod(0o755)
    out = tmp_path / "bundles" / f"{name}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname=name)
    return out


def prepare_sd(fat: Path, bundle: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """prepare-sd.sh on the partition's files, copied out of and back into the FAT image."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    mtools(fat, "mcopy", "-s", "-n", "::/*", str(work))
    result = subprocess.run(
        [str(RPI / "prepare-sd.sh"), str(work), str(bundle)],
        capture_output=True, text=True, check=False, env=ENV,
    )  # fmt: skip
    if result.returncode == 0:
        mtools(fat, "mcopy", "-o", "-s", *(str(p) for p in sorted(work.iterdir())), "::/")
    return result


def firstrun(fat: Path, tmp_path: Path, **env: str) -> tuple[Path, list[str]]:
    """firstrun.sh on a throwaway root whose /boot/firmware is the FAT image's content; the
    partition is written back afterwards, as the Pi would leave it."""
    root = tmp_path / "root"
    shutil.rmtree(root, ignore_errors=True)
    boot = root / "boot/firmware"
    boot.mkdir(parents=True)
    mtools(fat, "mcopy", "-s", "-n", "::/*", str(boot))
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake / "systemctl").chmod(0o755)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    run_env = {
        **ENV, **env, "HARBOURGRID_FIRSTRUN_ROOT": str(root),
        "SYSTEMCTL": str(fake / "systemctl"), "STUB_LOG": str(log),
    }  # fmt: skip
    subprocess.run(["bash", str(boot / "harbourgrid-setup/firstrun.sh")], env=run_env, check=False)
    mtools(fat, "mcopy", "-o", str(boot / "cmdline.txt"), str(boot / "provisioned.txt"), "::/")
    return root, log.read_text().splitlines() if log.exists() else []


def test_prepare_sd_writes_the_boot_partition(bootfs: Path, tmp_path: Path) -> None:
    original_config = mread(bootfs, "config.txt")
    bundle = stub_bundle(tmp_path, "1.2.3")
    for _ in range(2):  # run twice: the hook is added once
        result = prepare_sd(bootfs, bundle, tmp_path / "sd")
        assert result.returncode == 0, result.stderr
    cmdline = mread(bootfs, "cmdline.txt").decode()
    assert cmdline == bookworm_cmdline().rstrip("\n") + HOOK + "\n"
    assert cmdline.count("\n") == 1  # the firmware reads one line
    assert mread(bootfs, "config.txt") == original_config
    setup = mtools(bootfs, "mdir", "-b", "::/harbourgrid-setup").split()
    assert sorted(p.rsplit("/", 1)[-1] for p in setup) == sorted(
        ["firstrun.sh", "harbourgrid-provision", "harbourgrid-provision.service", "hub.toml",
         bundle.name]
    )  # fmt: skip
    image = ROOT / "deploy/image"
    for name, src in [
        ("harbourgrid-provision", image / "harbourgrid-provision"),
        ("harbourgrid-provision.service", image / "harbourgrid-provision.service"),
        ("hub.toml", image / "hub.toml"),
        ("firstrun.sh", RPI / "firstrun.sh"),
        (bundle.name, bundle),
    ]:
        assert mread(bootfs, f"harbourgrid-setup/{name}") == src.read_bytes(), name
    example = mtools(bootfs, "mdir", "-b", "::/harbourgrid.example").split()
    assert {p.rsplit("/", 1)[-1] for p in example} == {
        p.name for p in (image / "hgconfig/harbourgrid.example").iterdir()
    }
    assert b"HGCONFIG" in mread(bootfs, "HARBOURGRID-README.txt")


def test_prepare_sd_refuses_what_is_not_a_pi_partition_or_an_arm64_bundle(
    bootfs: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "not-boot"
    empty.mkdir()
    result = subprocess.run(
        [str(RPI / "prepare-sd.sh"), str(empty), str(stub_bundle(tmp_path, "1.2.3"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "no cmdline.txt" in result.stderr
    assert not list(empty.iterdir())
    x86 = tmp_path / "harbourgrid-hub-1.2.3-x86_64.tar.gz"
    x86.write_bytes(stub_bundle(tmp_path / "x", "1.2.3").read_bytes())
    result = prepare_sd(bootfs, x86, tmp_path / "sd")
    assert result.returncode == 1 and "not an aarch64 bundle" in result.stderr
    assert mread(bootfs, "cmdline.txt").decode() == bookworm_cmdline()


def unit_lines(text: str) -> set[str]:
    return {x for x in text.splitlines() if x and not x.startswith("#")}


def test_firstrun_installs_the_bundle_and_the_image_provisioning(
    bootfs: Path, tmp_path: Path
) -> None:
    bundle = stub_bundle(tmp_path, "1.2.3")
    assert prepare_sd(bootfs, bundle, tmp_path / "sd").returncode == 0
    root, calls = firstrun(bootfs, tmp_path)

    report = mread(bootfs, "provisioned.txt").decode()
    assert report.startswith(f"Harbourgrid gateway setup: hub installed from {bundle.name}\r\n")
    assert mread(bootfs, "cmdline.txt").decode() == bookworm_cmdline()  # never runs again
    install, enable = calls
    assert install.startswith("--offline ") and install.endswith(f" --no-start --prefix {root}")
    assert enable == (
        f"--root={root} enable harbourgrid-provision.service harbourgrid-hub.service ssh.service"
    )
    # The very same provisioning program as the gateway image...
    image = ROOT / "deploy/image"
    installed = root / "usr/lib/harbourgrid/harbourgrid-provision"
    assert installed.read_bytes() == (image / "harbourgrid-provision").read_bytes()
    assert os.access(installed, os.X_OK)
    # ...run by the image's unit, told where the partition is instead of waiting for HGCONFIG.
    unit = (root / "etc/systemd/system/harbourgrid-provision.service").read_text()
    image_unit = (image / "harbourgrid-provision.service").read_text()
    assert unit_lines(image_unit) - unit_lines(unit) == {
        x for x in unit_lines(image_unit) if "HGCONFIG.device" in x
    }
    assert unit_lines(unit) - unit_lines(image_unit) == {
        "Wants=network-pre.target", "After=local-fs.target", "Environment=HGCONFIG_DIR=/boot/firmware",
    }  # fmt: skip
    assert "HGCONFIG_DIR" in (image / "harbourgrid-provision").read_text()
    dropins = root / "etc/systemd/system"
    assert (
        "RequiresMountsFor=/boot/firmware"
        in (dropins / "harbourgrid-provision.service.d/boot.conf").read_text()
    )
    hub = (dropins / "harbourgrid-hub.service.d/gateway.conf").read_text()
    image_hub = image / "rootfs/etc/systemd/system/harbourgrid-hub.service.d/gateway.conf"
    assert unit_lines(hub) == unit_lines(image_hub.read_text())
    placeholder = root / "etc/harbourgrid/hub.toml"
    assert placeholder.read_bytes() == (image / "hub.toml").read_bytes()
    assert placeholder.stat().st_mode & 0o777 == 0o640


def test_firstrun_reports_a_failed_install_and_unhooks(bootfs: Path, tmp_path: Path) -> None:
    assert prepare_sd(bootfs, stub_bundle(tmp_path, "1.2.3"), tmp_path / "sd").returncode == 0
    root, calls = firstrun(bootfs, tmp_path, STUB_FAIL="wheel hub-1.2.3 does not match SHA256SUMS")
    report = mread(bootfs, "provisioned.txt").decode().split("\r\n")
    assert report[0] == "Harbourgrid gateway setup: FAILED"
    assert "install.sh: wheel hub-1.2.3 does not match SHA256SUMS" in report
    assert mread(bootfs, "cmdline.txt").decode() == bookworm_cmdline()
    assert len(calls) == 1  # install.sh only: nothing was enabled
    assert not (root / "usr/lib/harbourgrid").exists()
