"""The arm64 gateway image boots in qemu-system-aarch64, provisions itself and delivers readings.

Run by `make image-test ARCH=arm64` (not part of `make test`: emulating arm64 with TCG takes far
longer than the suite's budget). Builds the image with build-arm64.sh (cached like the amd64 one
under HARBOURGRID_IMAGE_CACHE), writes a config folder onto a copy's HGCONFIG partition with
mtools, boots it on the `virt` machine (TCG, -cpu max) with user-mode networking and checks what
a technician would: /healthz through the forwarded port, simulated meter readings in an InfluxDB
1.6 on the host, an aarch64 userland, and, read back from the image after a clean shutdown,
provisioned.txt OK and the secrets gone.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests import gateway_vm  # noqa: E402
from tests.gateway_vm import GatewayVM  # noqa: E402
from tests.services import InfluxDB  # noqa: E402
from tests.util import wait_for_sync  # noqa: E402

CACHE = Path(
    os.environ.get("HARBOURGRID_IMAGE_CACHE", Path.home() / ".cache" / "harbourgrid-image")
)
FAT_OFFSET = 1048576  # the HGCONFIG partition starts at 1 MiB (build-arm64.sh, as build.sh)
TIMEOUT = 3600.0  # TCG arm64 on a loaded 2-core host


@pytest.fixture(scope="module")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    service = InfluxDB(tmp_path_factory.mktemp("influxdb"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def image() -> Path:
    assert os.geteuid() == 0, "the image build needs root (debootstrap)"
    out = CACHE / "out"
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "deploy/image/arm64/build-arm64.sh"), "--out", str(out)],
        check=True,
        timeout=3 * 3600,
    )
    print(f"arm64 image build (or cache check): {time.monotonic() - started:.0f}s")
    return out


def mtools(disk: Path, *args: str) -> str:
    return gateway_vm.mtools(disk, FAT_OFFSET, *args)


def write_config(disk: Path, files: dict[str, str]) -> None:
    gateway_vm.write_config(disk, FAT_OFFSET, files)


class Gateway(GatewayVM):
    """One qemu-system-aarch64 boot of the image with its kernel and initrd."""

    def __init__(self, out: Path, disk: Path, key: Path) -> None:
        def machine(vm: GatewayVM) -> list[str]:
            return [
                "qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2",
                "-m", "1024", "-kernel", str(out / "vmlinuz-arm64"),
                "-initrd", str(out / "initrd-arm64"),
                "-append", "root=LABEL=hgroot ro console=ttyAMA0 panic=-1",
                "-drive", f"if=none,id=disk,file={disk},format=raw",
                "-device", "virtio-blk-pci,drive=disk", "-device", "virtio-rng-pci",
            ]  # fmt: skip

        super().__init__(
            disk=disk, key=key, timeout_s=TIMEOUT, ssh_timeout_s=300.0, machine=machine
        )


@pytest.fixture
def booted() -> Iterator[list[Gateway]]:
    gateways: list[Gateway] = []
    yield gateways
    for gw in gateways:
        gw.kill()


@pytest.mark.timeout(4 * 3600)
def test_arm64_image_boots_provisions_and_delivers_readings(
    image: Path, booted: list[Gateway], influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database("image_arm64")
    disk = tmp_path / "gateway-arm64.img"
    src = image / "harbourgrid-gateway-arm64.img"
    subprocess.run(["cp", "--sparse=always", str(src), str(disk)], check=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    token = secrets.token_urlsafe(24)
    write_config(
        disk,
        {
            "hub.toml": gateway_vm.hub_toml(influxdb.port, db.db, "arm64-test"),
            "hub.env": f"HUB_HTTP_TOKEN={token}\n",
            "registry/meters.csv": (ROOT / "deploy/registry/meters.example.csv").read_text(),
            "hostname": "hg-arm64-gw\n",
            "authorized_keys": key.with_suffix(".pub").read_text(),
        },
    )

    gw = Gateway(image, disk, key)
    booted.append(gw)
    print(f"arm64 boot to /healthz (TCG): {gw.wait_up():.0f}s")
    wait_for_sync(
        lambda: (
            {r["meter_id"] for r in db.query("SELECT * FROM water_meter")}
            == {"SIM-001", "SIM-002", "SIM-003"}
        ),
        timeout=TIMEOUT,
        message="readings of the 3 simulated meters in the host's InfluxDB",
    )
    assert {row["site"] for row in db.query("SELECT * FROM water_meter")} == {"arm64-test"}
    assert gw.ssh("uname -m") == "aarch64"
    machine = "import platform; print(platform.machine())"
    assert gw.ssh(f"/opt/harbourgrid/venv/bin/python -c '{machine}'") == "aarch64"
    assert gw.ssh("hostname") == "hg-arm64-gw"
    assert gw.ssh("stat -c '%U:%G %a' /etc/harbourgrid/hub.env") == "root:harbourgrid 640"
    assert gw.ssh("findmnt -no OPTIONS /").split(",").count("noatime") == 1
    gw.poweroff()

    report = mtools(disk, "mtype", "::/provisioned.txt")
    assert report.splitlines()[0] == "Harbourgrid gateway provisioning: OK", report
    assert token not in report
    listing = mtools(disk, "mdir", "-b", "::/harbourgrid")
    assert "hub.toml" in listing and "hub.env" not in listing
