"""A gateway image booted in qemu, and its HGCONFIG partition reached with mtools.

Shared by the amd64 boot test (tests/integration/test_image.py) and the arm64 one
(deploy/image/arm64/test_boot_arm64.py); each supplies its qemu machine arguments.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.util import free_port, wait_for_sync


def mtools(disk: Path, fat_offset: int, *args: str) -> str:
    """Run one mtools command (mcopy, mtype, ...) on the FAT partition at byte fat_offset."""
    cmd, *rest = args
    return subprocess.run(
        [cmd, "-i", f"{disk}@@{fat_offset}", *rest],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout


def write_config(disk: Path, fat_offset: int, files: dict[str, str]) -> None:
    """Put files into harbourgrid/ on the FAT partition, as a technician's laptop would."""
    stage = disk.parent / f"hgconfig-{secrets.token_hex(4)}"
    for name, content in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        # CRLF, as a technician's Windows editor writes it.
        (stage / name).write_bytes(content.replace("\n", "\r\n").encode())
    top = [line.rstrip("/") for line in mtools(disk, fat_offset, "mdir", "-b", "::/").split()]
    if "::/harbourgrid" not in top:
        mtools(disk, fat_offset, "mmd", "::/harbourgrid")
    for item in sorted(stage.iterdir()):
        mtools(disk, fat_offset, "mcopy", "-o", "-s", str(item), "::/harbourgrid/")


class GatewayVM:
    """One qemu boot; the hub's 8080 and sshd's 22 forwarded to loopback ports.

    `machine` is called with the VM (its ports are chosen) and returns the qemu command up to,
    not including, networking and console."""

    def __init__(
        self,
        *,
        disk: Path,
        key: Path,
        timeout_s: float,
        ssh_timeout_s: float,
        machine: Callable[[GatewayVM], list[str]],
    ) -> None:
        self.disk, self.key = disk, key
        self.timeout, self.ssh_timeout = timeout_s, ssh_timeout_s
        self.http = free_port()
        self.ssh_port = free_port()
        self.console = disk.with_suffix(f".console-{self.http}.log")
        self.cmd = [
            *machine(self),
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

    def _ssh(self, command: str, **options: str) -> subprocess.CompletedProcess[str]:
        extra = [arg for name, value in options.items() for arg in ("-o", f"{name}={value}")]
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             *extra, "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
            capture_output=True, text=True, timeout=self.ssh_timeout, check=False,
        )  # fmt: skip

    def ssh(self, command: str) -> str:
        connect = str(max(10, int(self.ssh_timeout // 6)))
        result = self._ssh(command, ConnectTimeout=connect)
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
        self._ssh("systemctl poweroff")
        try:
            self.proc.wait(timeout=self.timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def hub_toml(influx_port: int, db: str, site: str) -> str:
    """A gateway's hub.toml: simulated meters into the host's InfluxDB (10.0.2.2 in qemu)."""
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
