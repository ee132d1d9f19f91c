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
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests.services import InfluxDB  # noqa: E402
from tests.util import free_port, wait_for_sync  # noqa: E402

CACHE = Path(
    os.environ.get("HARBOURGRID_IMAGE_CACHE", Path.home() / ".cache" / "harbourgrid-image")
)
FAT = "@@1048576"  # the HGCONFIG partition starts at 1 MiB (build-arm64.sh, as build.sh)
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
    cmd, *rest = args
    return subprocess.run(
        [cmd, "-i", f"{disk}{FAT}", *rest],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout


class Gateway:
    """One qemu-system-aarch64 boot; the hub's 8080 and sshd's 22 forwarded to loopback."""

    def __init__(self, out: Path, disk: Path, key: Path) -> None:
        self.key = key
        self.http, self.ssh_port = free_port(), free_port()
        self.console = disk.with_suffix(".console.log")
        self.cmd = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on", "-smp", "2",
            "-m", "1024", "-kernel", str(out / "vmlinuz-arm64"),
            "-initrd", str(out / "initrd-arm64"),
            "-append", "root=LABEL=hgroot ro console=ttyAMA0 panic=-1",
            "-drive", f"if=none,id=disk,file={disk},format=raw",
            "-device", "virtio-blk-pci,drive=disk", "-device", "virtio-rng-pci",
            "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.http}-:8080,"
                    f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-display", "none", "-serial", f"file:{self.console}", "-no-reboot",
        ]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)

    def healthz(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"qemu exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def ssh(self, command: str) -> str:
        result = subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"ssh {command!r}: {result.stderr}"
        return result.stdout.strip()

    def log_tail(self) -> str:
        return self.console.read_text(errors="replace")[-3000:] if self.console.exists() else ""

    def wait_up(self) -> float:
        try:
            wait_for_sync(self.healthz, timeout=TIMEOUT, message="/healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console:\n{self.log_tail()}") from None
        return time.monotonic() - self.started

    def poweroff(self) -> None:
        subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "root@127.0.0.1", "systemctl poweroff"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def booted() -> Iterator[list[Gateway]]:
    gateways: list[Gateway] = []
    yield gateways
    for gw in gateways:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


def write_config(disk: Path, files: dict[str, str]) -> None:
    stage = disk.parent / "hgconfig"
    for name, content in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_bytes(content.replace("\n", "\r\n").encode())  # a Windows editor
    mtools(disk, "mmd", "::/harbourgrid")
    for item in sorted(stage.iterdir()):
        mtools(disk, "mcopy", "-o", "-s", str(item), "::/harbourgrid/")


def hub_toml(influx_port: int, db: str) -> str:
    return f"""[hub]
site = "arm64-test"
data_dir = "/var/lib/harbourgrid"

[http]
host = "0.0.0.0"
port = 8080
token_env = "HUB_HTTP_TOKEN"

[influxdb]
api = "v1"
url = "http://10.0.2.2:{influx_port}"
database = "{db}"
flush_interval_s = 0.5

[mqtt]
enabled = false

[webhook]
enabled = false

[registry.community]
meters_csv = "registry/meters.csv"

[[sources]]
type = "simulated_meters"
name = "simulated"
meters = 3
interval_s = 2
"""


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
            "hub.toml": hub_toml(influxdb.port, db.db),
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
