#!/usr/bin/env bash
# Build the arm64 Harbourgrid gateway image on any host, without binfmt_misc — run as root:
#
#   deploy/image/arm64/build-arm64.sh [--out DIR] [--cache DIR] [--bundle BUNDLE-aarch64.tar.gz]
#
# The same image as the amd64 one (build.sh: MBR disk, partition 1 = FAT32 HGCONFIG, partition 2
# = ext4 hgroot, Debian 12 with the hub from the offline bundle), made in two stages because the
# host cannot run arm64 code and must not register binfmt handlers (a change to its kernel):
#   1. on the host: `debootstrap --foreign --arch=arm64` only downloads and unpacks the packages
#      (no foreign code runs); the tree becomes an ext4 image with mke2fs -d;
#   2. in qemu-system-aarch64 (TCG, no kernel change on the host): Debian's own arm64 kernel boots
#      with a tiny initramfs (static busybox + virtio/ext4 modules, initramfs.py), mounts that
#      image and runs stage2.sh in it: `debootstrap --second-stage` (the maintainer scripts),
#      then customize.sh, exactly as for amd64 (hub installed from the aarch64 bundle), then
#      powers off.
# Writes DIR/harbourgrid-gateway-arm64.img plus vmlinuz-arm64 and initrd-arm64 (qemu -kernel).
# Downloaded .debs are kept in CACHE/arm64/debs (CACHE: HARBOURGRID_IMAGE_CACHE, default
# ~/.cache/harbourgrid-image); an image whose inputs are unchanged is not rebuilt.
# Needs: debootstrap, mmdebstrap (static busybox), qemu-system-aarch64, mke2fs/e2fsck/resize2fs/
# debugfs (e2fsprogs), mkfs.vfat, mcopy, sfdisk, python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE_DIR="$(cd "$HERE/.." && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="$ROOT/dist"
CACHE="${HARBOURGRID_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbourgrid-image}"
BUNDLE=""
PYTHON="${PYTHON:-python3}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FAT_MIB=64
STAGE2_TIMEOUT_S="${STAGE2_TIMEOUT_S:-5400}"
PACKAGES=(
    linux-image-arm64 initramfs-tools systemd-sysv systemd-timesyncd systemd-resolved udev dbus
    openssh-server python3 python3-venv iproute2 ca-certificates kmod
)
STAGE2_MODULES=(virtio_pci virtio_blk ext4)

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:?}"; shift 2 ;;
        --cache) CACHE="${2:?}"; shift 2 ;;
        --bundle) BUNDLE="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-arm64.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { echo "build-arm64.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, file ownership in the image)"
export PATH="$PATH:/usr/sbin:/sbin"
for tool in debootstrap mmdebstrap qemu-system-aarch64 mke2fs e2fsck resize2fs debugfs \
    mkfs.vfat mcopy sfdisk dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing (make image ARCH=arm64 installs it:" \
        "debootstrap mmdebstrap qemu-system-arm e2fsprogs dosfstools mtools fdisk)"
done

CACHE="$CACHE/arm64"
NAME="harbourgrid-gateway-arm64"
IMAGE="$OUT/$NAME.img"
mkdir -p "$OUT" "$CACHE/debs"
OUT="$(cd "$OUT" && pwd)"
IMAGE="$OUT/$NAME.img"

inputs_hash() {
    (
        cd "$ROOT"
        find hub drivers sim deploy dashboards pyproject.toml -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
        printf '%s\n' arm64 "$MIRROR" "${PACKAGES[*]}" "$BUNDLE"
    ) | sha256sum | cut -c1-16
}
HASH="$(inputs_hash)"
if [ -f "$IMAGE" ] && [ "$(cat "$IMAGE.inputs" 2>/dev/null)" = "$HASH" ]; then
    say "$IMAGE is up to date (inputs $HASH)"
    exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hg-image-arm64.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
start=$(date +%s)

if [ -z "$BUNDLE" ]; then
    say "building the aarch64 offline bundle"
    "$PYTHON" "$ROOT/deploy/bundle.py" --platform aarch64 --out "$WORK/bundle"
    BUNDLE="$(ls "$WORK"/bundle/harbourgrid-hub-*-aarch64.tar.gz)"
fi
case "$BUNDLE" in *-aarch64.tar.gz) ;; *) die "$BUNDLE is not an aarch64 bundle" ;; esac

say "stage 1: debootstrap --foreign (arm64, unpack only) into $WORK/rootfs (.debs in $CACHE/debs)"
t=$(date +%s)
include="$(IFS=,; echo "${PACKAGES[*]}")"
debootstrap --foreign --arch=arm64 --variant=minbase --include="$include" \
    --cache-dir="$CACHE/debs" bookworm "$WORK/rootfs" "$MIRROR" > "$WORK/stage1.log" 2>&1 ||
    { tail -n 30 "$WORK/stage1.log" >&2; die "debootstrap --foreign failed"; }
stage1_s=$(( $(date +%s) - t ))
# The amd64 build's mmdebstrap --dpkgopt: no docs, man pages or translations on an SD card.
cat > "$WORK/rootfs/etc/dpkg/dpkg.cfg.d/99harbourgrid" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/locale/*
DPKG
# Only while building (stage2.sh removes it): no fsync per file, the VM's disk is a scratch file.
echo force-unsafe-io > "$WORK/rootfs/etc/dpkg/dpkg.cfg.d/00harbourgrid-build"

S="$WORK/rootfs/hgstage2"
mkdir -p "$S/payload/bundle"
tar -xzf "$BUNDLE" -C "$S/payload/bundle" --strip-components=1
cp -r "$IMAGE_DIR/rootfs" "$S/payload/overlay"
install -m 0755 "$IMAGE_DIR/harbourgrid-provision" "$S/payload/harbourgrid-provision"
install -m 0644 "$IMAGE_DIR/harbourgrid-provision.service" "$IMAGE_DIR/hub.toml" "$S/payload/"
install -m 0755 "$IMAGE_DIR/customize.sh" "$HERE/stage2.sh" "$S/"

say "stage-2 boot kit: Debian's arm64 kernel + static busybox initramfs"
kernel_deb="$(ls "$WORK"/rootfs/var/cache/apt/archives/linux-image-[0-9]*-arm64_*.deb | head -n1)"
dpkg-deb -x "$kernel_deb" "$WORK/kit"
KVER="$(basename "$(ls -d "$WORK"/kit/lib/modules/*)")"
if [ ! -x "$CACHE/busybox/bin/busybox" ]; then
    rm -rf "$CACHE/busybox"
    mmdebstrap --quiet --mode=root --variant=extract --arch=arm64 --skip=check/qemu \
        --include=busybox-static bookworm "$CACHE/busybox" "$MIRROR"
fi
"$PYTHON" "$HERE/initramfs.py" --modules-dir "$WORK/kit/lib/modules/$KVER" \
    --busybox "$CACHE/busybox/bin/busybox" --init "$HERE/stage2-init" \
    --out "$WORK/stage2-initramfs.gz" "${STAGE2_MODULES[@]}"

say "stage 2: qemu-system-aarch64 (TCG) runs debootstrap --second-stage and customize.sh"
mke2fs -q -t ext4 -L hgroot -d "$WORK/rootfs" -E root_owner=0:0 "$WORK/root.img" 4G
rm -rf "$WORK/rootfs"
t=$(date +%s)
timeout "$STAGE2_TIMEOUT_S" qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -smp 2 -m 2048 -nodefaults \
    -kernel "$WORK/kit/boot/vmlinuz-$KVER" -initrd "$WORK/stage2-initramfs.gz" \
    -append "console=ttyAMA0 panic=-1 rdinit=/init" \
    -drive "if=none,id=root,file=$WORK/root.img,format=raw,cache=unsafe" \
    -device virtio-blk-pci,drive=root -display none -serial "file:$WORK/stage2.log" \
    -no-reboot || true
stage2_s=$(( $(date +%s) - t ))
grep -a '^HG-STAGE2:' "$WORK/stage2.log" || true
if ! grep -aq '^HG-STAGE2: OK' "$WORK/stage2.log"; then
    tail -n 60 "$WORK/stage2.log" >&2
    die "stage 2 failed after ${stage2_s}s (console above; timeout ${STAGE2_TIMEOUT_S}s)"
fi

say "kernel and initrd for qemu -kernel"
e2fsck -fy "$WORK/root.img" >/dev/null || [ $? -le 1 ] || die "e2fsck found errors after stage 2"
debugfs -R "dump /boot/vmlinuz-$KVER $OUT/vmlinuz-arm64" "$WORK/root.img" 2>/dev/null
debugfs -R "dump /boot/initrd.img-$KVER $OUT/initrd-arm64" "$WORK/root.img" 2>/dev/null
[ -s "$OUT/vmlinuz-arm64" ] && [ -s "$OUT/initrd-arm64" ] || die "no kernel/initrd in the image"
chmod 0644 "$OUT/vmlinuz-arm64" "$OUT/initrd-arm64"

say "ext4 root filesystem (label hgroot), shrunk to its content plus room for an upgrade"
block_size=$(dumpe2fs -h "$WORK/root.img" 2>/dev/null | awk -F: '/^Block size/ {print $2 + 0}')
min_blocks=$(resize2fs -P "$WORK/root.img" 2>/dev/null | awk -F: '/minimum size/ {print $2 + 0}')
used_mib=$(( min_blocks * block_size / 1048576 ))
root_mib=$(( (used_mib * 13 / 10 + 256 + 63) / 64 * 64 ))  # as build.sh: a second venv fits
resize2fs -f "$WORK/root.img" "${root_mib}M" >/dev/null 2>&1
truncate -s "${root_mib}M" "$WORK/root.img"

say "FAT32 config partition (label HGCONFIG)"
mkfs.vfat -F 32 -n HGCONFIG -C "$WORK/fat.img" $(( FAT_MIB * 1024 )) >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/fat.img" -s "$IMAGE_DIR/hgconfig/README.txt" \
    "$IMAGE_DIR/hgconfig/harbourgrid.example" ::/

say "assembling $IMAGE"
fat_start=2048
fat_sectors=$(( FAT_MIB * 2048 ))
root_start=$(( fat_start + fat_sectors ))
root_sectors=$(( root_mib * 2048 ))
rm -f "$IMAGE.tmp"
truncate -s $(( (root_start + root_sectors) * 512 )) "$IMAGE.tmp"
sfdisk --quiet "$IMAGE.tmp" <<SFDISK
label: dos
start=$fat_start, size=$fat_sectors, type=c
start=$root_start, size=$root_sectors, type=83, bootable
SFDISK
dd if="$WORK/fat.img" of="$IMAGE.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$IMAGE.tmp" bs=1M seek=$(( 1 + FAT_MIB )) conv=notrunc,sparse status=none
mv "$IMAGE.tmp" "$IMAGE"
echo "$HASH" > "$IMAGE.inputs"
say "done in $(( $(date +%s) - start ))s (stage 1 ${stage1_s}s, stage 2 in qemu ${stage2_s}s):" \
    "$IMAGE ($(( (root_start + root_sectors) / 2048 )) MiB, $(du -m "$IMAGE" | cut -f1) MiB" \
    "allocated); FAT partition at byte offset $(( fat_start * 512 ))"
