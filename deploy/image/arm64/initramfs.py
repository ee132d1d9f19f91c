"""Write the stage-2 initramfs of the arm64 image build (build-arm64.sh), on any host.

    python initramfs.py --modules-dir LIB/modules/VERSION --busybox BUSYBOX --init INIT \
        --out initramfs.gz MODULE...

A gzip'd newc cpio holding a static busybox, `INIT` as /init and the named kernel modules with
everything they depend on, in load order (/modules/order), because Debian's arm64 kernel has
virtio-pci, virtio-blk and ext4 as modules and busybox's insmod does not resolve dependencies.
Dependencies are read from each module's .modinfo section (`depends=`), so neither depmod nor
cpio is needed on the build host. Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

SOFTDEPS = {"ext4": ["crc32c_generic"]}  # ext4 asks the crypto API for crc32c (a soft dep)


def module_index(modules_dir: Path) -> dict[str, Path]:
    return {p.name.removesuffix(".ko").replace("-", "_"): p for p in modules_dir.rglob("*.ko")}


def depends(path: Path) -> list[str]:
    for field in path.read_bytes().split(b"\0"):
        if field.startswith(b"depends="):
            names = field.removeprefix(b"depends=").decode()
            return [n.replace("-", "_") for n in names.split(",") if n]
    return []


def load_order(index: dict[str, Path], wanted: list[str]) -> list[str]:
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name not in index:
            raise SystemExit(f"initramfs.py: no module {name} (needed by {' > '.join(chain)})")
        for dep in depends(index[name]) + SOFTDEPS.get(name, []):
            visit(dep, (*chain, name))
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


class Cpio:
    """The newc format the kernel unpacks (Documentation/driver-api/early-userspace)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"") -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self.buf.write(b"\0" * (-(110 + len(encoded)) % 4) + data + b"\0" * (-len(data) % 4))
        self.ino += 1

    def dir(self, name: str) -> None:
        self.add(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self.add(name, 0o100000 | perm, data)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules-dir", type=Path, required=True)
    parser.add_argument("--busybox", type=Path, required=True)
    parser.add_argument("--init", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("modules", nargs="+")
    args = parser.parse_args()

    index = module_index(args.modules_dir)
    order = load_order(index, args.modules)
    cpio = Cpio()
    for name in ("bin", "dev", "proc", "sys", "root", "modules"):
        cpio.dir(name)
    cpio.file("bin/busybox", args.busybox.read_bytes(), 0o755)
    cpio.file("init", args.init.read_bytes(), 0o755)
    for name in order:
        cpio.file(f"modules/{name}.ko", index[name].read_bytes())
    cpio.file("modules/order", "".join(f"{name}.ko\n" for name in order).encode())
    args.out.write_bytes(gzip.compress(cpio.finish(), compresslevel=6))
    print(f"initramfs: {args.out} ({args.out.stat().st_size // 1024} KiB): {' '.join(order)}")


if __name__ == "__main__":
    main()
