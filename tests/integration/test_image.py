"""The flashable gateway image boots, provisions itself from HGCONFIG and delivers readings.

Builds the amd64 image with deploy/image/build.sh (as `make image` does; .debs and an image whose
inputs are unchanged are cached under HARBOURGRID_IMAGE_CACHE, default
~/.cache/harbourgrid-image), writes a config folder onto a copy's FAT partition with mtools,
boots it with qemu-system-x86_64 (KVM when /dev/kvm is usable, else TCG) on user-mode networking
(the host is 10.0.2.2 from the guest) and checks what a technician would: /healthz through the
forwarded port, simulated meter readings in an InfluxDB 1.6 on the host, and, read back from the
image file after shutdown, provisioned.txt and the secrets gone. A second boot re-provisions
with a broken config: the report says what is wrong and the gateway keeps the working one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.services import InfluxDB
from tests.util import free_port, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("HARBOURGRID_IMAGE_CACHE", Path.home() / ".cache" / "harbourgrid-image")
)
FAT = "@@1048576"  # the HGCONFIG partition starts at 1 MiB (build.sh)
TOOLS = ("mmdebstrap", "qemu-system-x86_64", "mcopy", "mkfs.vfat", "mke2fs", "sfdisk", "ssh")

missing = [t for t in TOOLS if not shutil.which(t, path=os.environ["PATH"] + ":/usr/sbin:/sbin")]


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


@functools.cache
def accelerator(kernel: Path) -> str:
    """kvm when it really runs a guest: the kernel alone must panic (no root) and qemu exit.
    /dev/kvm can open and still hang every guest (nested virtualisation on some hosts)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return "tcg"
    cmd = ["qemu-system-x86_64", "-accel", "kvm", "-machine", "q35", "-m", "256", "-nodefaults",
           "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-display", "none",
           "-serial", "stdio", "-no-reboot"]  # fmt: skip
    try:
        probe = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        return "tcg"
    return "kvm" if "Kernel panic" in probe.stdout else "tcg"


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
    """One qemu boot of the disk image; the hub's 8080 and sshd's 22 forwarded to loopback."""

    def __init__(self, out: Path, disk: Path, key: Path) -> None:
        self.disk, self.key = disk, key
        self.http = free_port()
        self.ssh_port = free_port()
        self.console = disk.with_suffix(f".console-{self.http}.log")
        accel = accelerator(out / "vmlinuz-amd64")
        self.cmd = [
            # numpy (shapely) needs x86-64-v2: TCG's default qemu64 CPU lacks SSE4.2/POPCNT.
            "qemu-system-x86_64", "-accel", accel, "-cpu", "max",
            "-machine", "q35", "-m", "1024", "-smp", "1",
            "-kernel", str(out / "vmlinuz-amd64"), "-initrd", str(out / "initrd-amd64"),
            "-append", "root=LABEL=hgroot ro console=ttyS0 panic=-1",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.http}-:8080,"
                    f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-display", "none", "-serial", f"file:{self.console}", "-no-reboot",
        ]  # fmt: skip
        self.timeout = 300.0 if accel == "kvm" else 1200.0  # TCG on a loaded 2-core host
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)

    def healthz(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"qemu exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=3) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def ssh(self, command: str) -> str:
        result = subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"ssh {command!r}: {result.stderr}"
        return result.stdout.strip()

    def log_tail(self) -> str:
        return self.console.read_text(errors="replace")[-3000:] if self.console.exists() else ""

    def wait_up(self) -> float:
        try:
            wait_for_sync(self.healthz, timeout=self.timeout, message="/healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console:\n{self.log_tail()}") from None
        return time.monotonic() - self.started

    def poweroff(self) -> None:
        """A clean shutdown (the FAT partition must be consistent when read back)."""
        subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "root@127.0.0.1", "systemctl poweroff"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        try:
            self.proc.wait(timeout=self.timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def gateways(image: Path, tmp_path: Path) -> Iterator[list[Gateway]]:
    booted: list[Gateway] = []
    yield booted
    for gw in booted:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


def write_config(disk: Path, files: dict[str, str]) -> None:
    stage = disk.parent / f"hgconfig-{secrets.token_hex(4)}"
    for name, content in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        # CRLF, as a technician's Windows editor writes it.
        (stage / name).write_bytes(content.replace("\n", "\r\n").encode())
    top = [line.rstrip("/") for line in mtools(disk, "mdir", "-b", "::/").split()]
    if "::/harbourgrid" not in top:
        mtools(disk, "mmd", "::/harbourgrid")
    for item in sorted(stage.iterdir()):
        mtools(disk, "mcopy", "-o", "-s", str(item), "::/harbourgrid/")


def hub_toml(influx_port: int, db: str, site: str) -> str:
    return f"""[hub]
site = "{site}"
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


@needs_vm
@pytest.mark.timeout(3600)
def test_image_boots_provisions_and_delivers_readings(
    image: Path, gateways: list[Gateway], influxdb: InfluxDB, tmp_path: Path
) -> None:
    db = influxdb.create_database("image_boot")
    disk = tmp_path / "gateway.img"
    subprocess.run(
        ["cp", "--sparse=always", str(image / "harbourgrid-gateway-amd64.img"), str(disk)],
        check=True,
    )
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    token = secrets.token_urlsafe(24)
    write_config(
        disk,
        {
            "hub.toml": hub_toml(influxdb.port, db.db, "image-test"),
            "hub.env": f"# secrets\nHUB_HTTP_TOKEN={token}\n",
            "registry/meters.csv": (ROOT / "deploy/registry/meters.example.csv").read_text(),
            "hostname": "hg-test-gw\n",
            "authorized_keys": key.with_suffix(".pub").read_text(),
        },
    )

    gw = Gateway(image, disk, key)
    gateways.append(gw)
    print(f"boot to /healthz ({gw.cmd[2]}): {gw.wait_up():.0f}s")
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
    gw.poweroff()

    report = mtools(disk, "mtype", "::/provisioned.txt")
    assert report.splitlines()[0] == "Harbourgrid gateway provisioning: OK", report
    assert "hub.env" in report and token not in report
    listing = mtools(disk, "mdir", "-b", "::/harbourgrid")
    assert "hub.toml" in listing and "hub.env" not in listing

    # Re-provisioning with a config that names a secret nobody set: refused, old config kept.
    write_config(
        disk,
        {"hub.toml": hub_toml(influxdb.port, db.db, "image-test").replace(
            '[mqtt]\nenabled = false', '[mqtt]\nenabled = true\npassword_env = "HUB_MQTT_PASSWORD"'
        )},
    )  # fmt: skip
    gw2 = Gateway(image, disk, key)
    gateways.append(gw2)
    print(f"second boot to /healthz: {gw2.wait_up():.0f}s")
    gw2.poweroff()
    report = mtools(disk, "mtype", "::/provisioned.txt")
    assert report.splitlines()[0] == "Harbourgrid gateway provisioning: FAILED", report
    assert "HUB_MQTT_PASSWORD" in report
    assert "keeps its previous configuration" in report


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
