"""The flashable gateway image boots, provisions itself from HGCONFIG and delivers readings.

Builds the amd64 image with deploy/image/build.sh (as `make image` does; .debs and an image whose
inputs are unchanged are cached under HARBOURGRID_IMAGE_CACHE, default
~/.cache/harbourgrid-image), writes a config folder onto a copy's FAT partition with mtools,
enlarges the copy by 512 MiB (a bigger card than the image), and boots it from the disk alone as
a gateway would: qemu-system-x86_64 with UEFI firmware (OVMF with Secure Boot on and Microsoft's
keys enrolled, as most x86 boxes ship), no -kernel/-initrd, KVM when it really runs a guest, else
TCG; user-mode networking (the host is 10.0.2.2 from the guest). It checks what a technician
would: /healthz through the forwarded port, simulated meter readings in an InfluxDB 1.6 on the
host, and, read back from the image file after shutdown, provisioned.txt, the secrets gone and
the root partition and its ext4 grown to the end of the disk. A second boot re-provisions with a
broken config: the report says what is wrong and the gateway keeps the working one.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests import gateway_vm
from tests.gateway_vm import GatewayVM
from tests.services import InfluxDB
from tests.util import wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("HARBOURGRID_IMAGE_CACHE", Path.home() / ".cache" / "harbourgrid-image")
)
TOOLS = ("mmdebstrap", "qemu-system-x86_64", "mcopy", "mkfs.vfat", "mke2fs", "sfdisk", "ssh",
         "dumpe2fs")  # fmt: skip
OVMF = Path("/usr/share/OVMF")
# Secure Boot firmware (needs SMM) with Microsoft's keys enrolled: shim must be accepted.
FIRMWARE, VARS = OVMF / "OVMF_CODE_4M.secboot.fd", OVMF / "OVMF_VARS_4M.ms.fd"
GROWTH = 512 * 2**20  # the test's "card" is this much bigger than the image
HGCONFIG, ESP, ROOTFS = 0, 1, 2  # partition indexes (build.sh)

missing = [t for t in TOOLS if not shutil.which(t, path=os.environ["PATH"] + ":/usr/sbin:/sbin")]
missing += [str(f) for f in (FIRMWARE, VARS) if not f.exists()]  # package ovmf


def needs_vm(test: Any) -> Any:
    """The boot test fails, never skips, without root or the image tools `make test` installs."""

    @functools.wraps(test)
    def checked(*args: Any, **kwargs: Any) -> Any:
        assert os.geteuid() == 0, "the image build needs root (mmdebstrap --mode=root)"
        assert not missing, f"missing {missing}: run `make image-tools`"
        return test(*args, **kwargs)

    return checked


@pytest.fixture(scope="module")
def image() -> Path:
    out = CACHE / "out"
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "deploy/image/build.sh"), "--arch", "amd64", "--out", str(out)],
        check=True,
        timeout=3000,
    )
    print(f"image build (or cache check): {time.monotonic() - started:.0f}s")
    return out


def firmware_args(vars_copy: Path) -> list[str]:
    shutil.copyfile(VARS, vars_copy)  # the firmware's NVRAM, writable, one per machine
    return [
        "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={FIRMWARE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
    ]  # fmt: skip


@functools.cache
def accelerator() -> str:
    """kvm when it really runs a guest: the firmware alone (no disk) must reach its UEFI banner.
    /dev/kvm can open and still hang every guest (nested virtualisation on some hosts)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return "tcg"
    with tempfile.TemporaryDirectory(prefix="hg-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        cmd = ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults",
               *firmware_args(Path(tmp) / "vars.fd"), "-display", "none",
               "-serial", f"file:{console}", "-no-reboot"]  # fmt: skip
        probe = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        try:
            wait_for_sync(lambda: b"UEFI" in console.read_bytes(), timeout=60)
            return "kvm"
        except (AssertionError, FileNotFoundError):
            return "tcg"
        finally:
            probe.kill()
            probe.wait()


def partitions(disk: Path) -> list[dict[str, Any]]:
    """The GPT's partitions (start and size in 512-byte sectors), as sfdisk reads them."""
    table = subprocess.run(
        ["sfdisk", "--json", str(disk)], check=True, capture_output=True, text=True
    ).stdout
    parts: list[dict[str, Any]] = json.loads(table)["partitiontable"]["partitions"]
    return parts


def ext4_bytes(disk: Path) -> int:
    """The root ext4's size from its superblock, read from the image file."""
    offset = partitions(disk)[ROOTFS]["start"] * 512
    header = subprocess.run(
        ["dumpe2fs", "-h", f"{disk}?offset={offset}"], check=True, capture_output=True, text=True
    ).stdout
    field = dict(re.findall(r"^(Block count|Block size):\s+(\d+)$", header, re.MULTILINE))
    return int(field["Block count"]) * int(field["Block size"])


def mtools(disk: Path, *args: str) -> str:
    return gateway_vm.mtools(disk, partitions(disk)[HGCONFIG]["start"] * 512, *args)


def write_config(disk: Path, files: dict[str, str]) -> None:
    gateway_vm.write_config(disk, partitions(disk)[HGCONFIG]["start"] * 512, files)


class Gateway(GatewayVM):
    """One UEFI boot of the disk image alone."""

    def __init__(self, disk: Path, key: Path) -> None:
        accel = accelerator()

        def machine(vm: GatewayVM) -> list[str]:
            return [
                # numpy (shapely) needs x86-64-v2: TCG's default qemu64 CPU lacks SSE4.2/POPCNT.
                "qemu-system-x86_64", "-accel", accel, "-cpu", "max", "-m", "1024", "-smp", "1",
                *firmware_args(disk.with_suffix(f".vars-{vm.http}.fd")),
                "-drive", f"file={disk},format=raw,if=virtio",
            ]  # fmt: skip

        super().__init__(
            disk=disk,
            key=key,
            # TCG: 1135 s seen at load average 17
            timeout_s=300.0 if accel == "kvm" else 1800.0,
            ssh_timeout_s=60.0,
            machine=machine,
        )


@pytest.fixture
def gateways(image: Path, tmp_path: Path) -> Iterator[list[Gateway]]:
    booted: list[Gateway] = []
    yield booted
    for gw in booted:
        gw.kill()


@needs_vm
@pytest.mark.timeout(5400)
def test_image_boots_provisions_and_delivers_readings(
    image: Path, gateways: list[Gateway], influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database("image_boot")
    disk = tmp_path / "gateway.img"
    subprocess.run(
        ["cp", "--sparse=always", str(image / "harbourgrid-gateway-amd64.img"), str(disk)],
        check=True,
    )
    built_root = ext4_bytes(disk)
    os.truncate(disk, disk.stat().st_size + GROWTH)  # flashed onto a bigger card
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    token = secrets.token_urlsafe(24)
    write_config(
        disk,
        {
            "hub.toml": gateway_vm.hub_toml(influxdb.port, db.db, "image-test"),
            "hub.env": f"# secrets\nHUB_HTTP_TOKEN={token}\n",
            "registry/meters.csv": (ROOT / "deploy/registry/meters.example.csv").read_text(),
            "hostname": "hg-test-gw\n",
            "authorized_keys": key.with_suffix(".pub").read_text(),
        },
    )

    gw = Gateway(disk, key)
    gateways.append(gw)
    print(f"UEFI boot to /healthz ({gw.cmd[2]}): {gw.wait_up():.0f}s")
    meters = {"SIM-001", "SIM-002", "SIM-003"}
    wait_for_sync(
        lambda: {r["meter_id"] for r in db.query("SELECT * FROM water_meter")} == meters,
        timeout=gw.timeout,
        message="readings of the 3 simulated meters in the host's InfluxDB",
    )
    rows = db.query("SELECT * FROM water_meter")
    assert {row["site"] for row in rows} == {"image-test"}
    assert gw.ssh("hostname") == "hg-test-gw"
    assert gw.ssh("stat -c '%U:%G %a' /etc/harbourgrid/hub.env /etc/harbourgrid/hub.toml "
                  "/etc/harbourgrid/registry/meters.csv").split("\n") == ["root:harbourgrid 640"] * 3  # fmt: skip
    assert token not in gw.ssh("journalctl -b --no-pager")  # secrets are never logged
    assert gw.ssh("findmnt -no OPTIONS /").split(",").count("noatime") == 1
    # shim -> GRUB -> the kernel the /vmlinuz symlink names (kept current by kernel upgrades).
    assert gw.ssh("mokutil --sb-state") == "SecureBoot enabled"
    assert "BOOT_IMAGE=/vmlinuz " in gw.ssh("cat /proc/cmdline")
    assert int(gw.ssh("findmnt -bno SIZE /")) > built_root  # usable size < the raw size built
    gw.poweroff()

    report = mtools(disk, "mtype", "::/provisioned.txt")
    assert report.splitlines()[0] == "Harbourgrid gateway provisioning: OK", report
    assert "hub.env" in report and token not in report
    assert "root filesystem: grown from" in report, report
    listing = mtools(disk, "mdir", "-b", "::/harbourgrid")
    assert "hub.toml" in listing and "hub.env" not in listing
    # The root partition now ends where the disk does (at GPT's last usable sector, before the
    # 33-sector backup table at the end; 1 MiB alignment allowed), and its ext4 fills it.
    root = partitions(disk)[ROOTFS]
    last_usable = disk.stat().st_size // 512 - 34
    assert last_usable - 2048 <= root["start"] + root["size"] - 1 <= last_usable
    assert ext4_bytes(disk) > built_root + GROWTH * 9 // 10
    assert ext4_bytes(disk) <= root["size"] * 512

    # Re-provisioning with a config that names a secret nobody set: refused, old config kept.
    write_config(
        disk,
        {"hub.toml": gateway_vm.hub_toml(influxdb.port, db.db, "image-test").replace(
            '[mqtt]\nenabled = false', '[mqtt]\nenabled = true\npassword_env = "HUB_MQTT_PASSWORD"'
        )},
    )  # fmt: skip
    gw2 = Gateway(disk, key)
    gateways.append(gw2)
    print(f"second boot to /healthz: {gw2.wait_up():.0f}s")
    gw2.poweroff()
    report = mtools(disk, "mtype", "::/provisioned.txt")
    assert report.splitlines()[0] == "Harbourgrid gateway provisioning: FAILED", report
    assert "HUB_MQTT_PASSWORD" in report
    assert "keeps its previous configuration" in report
    assert "fills its disk" in report  # grown once, a no-op since


def test_arm64_build_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "deploy/image/build.sh"), "--arch", "arm64", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "binfmt" in result.stderr and "deploy/image/rpi" in result.stderr
    assert not list(tmp_path.iterdir())


def _provision_module() -> ModuleType:
    loader = SourceFileLoader(
        "harbourgrid_provision", str(ROOT / "deploy/image/harbourgrid-provision")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_provisioning_reads_windows_files_and_reports_without_values(tmp_path: Path) -> None:
    prov = _provision_module()
    env_file = tmp_path / "hub.env"
    env_file.write_bytes(b'\xef\xbb\xbf# c\r\nHUB_A=one\r\nexport HUB_B="two words"\r\n\r\n')
    assert prov.parse_env(prov.text(env_file)) == {"HUB_A": "one", "HUB_B": "two words"}
    with pytest.raises(prov.Problem) as bad:
        prov.parse_env("HUB_A=ok\nHUB_B two-secret-value\n")
    assert "line 2" in str(bad.value) and "two-secret-value" not in str(bad.value)
    net = prov.parse_network("ADDRESS=192.168.1.50/24\nGATEWAY=192.168.1.1\nDNS=1.1.1.1 9.9.9.9\n")
    unit = prov.network_unit(net)
    assert "Address=192.168.1.50/24" in unit and unit.count("DNS=") == 2
    for wrong, says in [
        ("ADDRESS=192.168.1.50\n", "prefix length"),
        ("ADDRESS=192.168.1.500/24\n", "192.168.1.500"),
        ("GATEWAY=192.168.1.1\n", "without ADDRESS"),
        ("ADRESS=192.168.1.5/24\n", "ADRESS"),
    ]:
        with pytest.raises(prov.Problem, match=says):
            prov.parse_network(wrong)
