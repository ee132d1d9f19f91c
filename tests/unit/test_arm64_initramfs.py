"""deploy/image/arm64/initramfs.py: modules in dependency order, and a newc archive.

The modules here are stand-ins carrying a `.modinfo` like the kernel's (NUL-separated
`key=value`); the real Debian arm64 modules and the kernel's unpacker are exercised by
`make image ARCH=arm64`, whose stage 2 boots from this archive.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy/image/arm64"))
import initramfs  # noqa: E402

# `depends=` of each, as in Debian 12's 6.1.0-50-arm64 kernel (ext4's crc32c is a soft dep).
DEPENDS = {
    "kernel/fs/ext4/ext4.ko": "jbd2,mbcache,crc16",
    "kernel/fs/jbd2/jbd2.ko": "",
    "kernel/fs/mbcache.ko": "",
    "kernel/lib/crc16.ko": "",
    "kernel/crypto/crc32c_generic.ko": "",
    "kernel/drivers/virtio/virtio_pci.ko": "virtio_pci_modern_dev,virtio_pci_legacy_dev",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko": "",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko": "",
    "kernel/drivers/block/virtio_blk.ko": "",
}


def modules(tmp_path: Path) -> Path:
    base = tmp_path / "lib/modules/6.1.0-arm64"
    for path, deps in DEPENDS.items():
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        name = Path(path).stem
        (base / path).write_bytes(
            b"\x7fELF junk\0license=GPL\0depends=%s\0name=%s\0" % (deps.encode(), name.encode())
        )
    return base


def newc_names(archive: bytes) -> list[str]:
    names, pos = [], 0
    while True:
        assert archive[pos : pos + 6] == b"070701", f"bad header at {pos}"
        namesize = int(archive[pos + 94 : pos + 102], 16)
        filesize = int(archive[pos + 54 : pos + 62], 16)
        name = archive[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        pos += filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return names
        names.append(name)


def test_dependencies_load_first(tmp_path: Path) -> None:
    index = initramfs.module_index(modules(tmp_path))
    order = initramfs.load_order(index, ["virtio_pci", "virtio_blk", "ext4"])
    for module, deps in [
        ("ext4", ["mbcache", "jbd2", "crc16", "crc32c_generic"]),
        ("virtio_pci", ["virtio_pci_modern_dev", "virtio_pci_legacy_dev"]),
    ]:
        assert all(order.index(dep) < order.index(module) for dep in deps), order
    assert sorted(order) == sorted(Path(p).stem for p in DEPENDS)


def test_a_missing_module_names_who_needs_it(tmp_path: Path) -> None:
    base = modules(tmp_path)
    (base / "kernel/fs/jbd2/jbd2.ko").unlink()
    with pytest.raises(SystemExit, match="no module jbd2 \\(needed by ext4\\)"):
        initramfs.load_order(initramfs.module_index(base), ["ext4"])


def test_archive_holds_init_busybox_and_ordered_modules(tmp_path: Path) -> None:
    (tmp_path / "busybox").write_bytes(b"\x7fELF busybox")
    (tmp_path / "init").write_text("#!/bin/busybox sh\n")
    out = tmp_path / "initramfs.gz"
    subprocess.run(
        [sys.executable, str(ROOT / "deploy/image/arm64/initramfs.py"),
         "--modules-dir", str(modules(tmp_path)), "--busybox", str(tmp_path / "busybox"),
         "--init", str(tmp_path / "init"), "--out", str(out), "virtio_blk", "ext4"],
        check=True, capture_output=True,
    )  # fmt: skip
    names = newc_names(gzip.decompress(out.read_bytes()))
    assert {"init", "bin/busybox", "modules/order", "modules/ext4.ko"} <= set(names)
    order = gzip.decompress(out.read_bytes()).split(b"modules/order\0")[1]
    listed = [x for x in order.lstrip(b"\0").split(b"\n") if x.endswith(b".ko")]
    assert listed[-1] == b"ext4.ko" and b"virtio_blk.ko" in listed
