#!/usr/bin/env bash
# Build a flashable Harbourgrid gateway image (raw disk, Debian 12) — run as root:
#
#   deploy/image/build.sh [--arch amd64] [--out DIR] [--cache DIR] [--bundle BUNDLE.tar.gz]
#
# Layout: a GPT disk with partition 1 = FAT32 labelled HGCONFIG (64 MiB, the technician's
# config folder, readable on any laptop; first, because older Windows show only a removable
# disk's first partition), partition 2 = the EFI System Partition (FAT32, 64 MiB, never mounted
# by the running gateway) and partition 3 = ext4 labelled hgroot, last so that it can grow
# (Debian 12 bookworm: kernel, systemd, systemd-networkd/-resolved/-timesyncd, openssh-server,
# python3 and the hub installed from the offline bundle, /opt/harbourgrid/venv-<version>).
# The first-boot unit grows partition 3 and its ext4 to the end of the card/disk (growpart).
#
# Boot: UEFI, x86-64. The ESP holds Debian's signed shim as EFI/BOOT/BOOTX64.EFI (the removable-
# media fallback path: no NVRAM boot entry is needed, so a dd'd disk boots on any UEFI box) and
# Debian's signed GRUB beside it, so it also boots with Secure Boot on (Microsoft keys, as shipped
# on most x86 boxes). GRUB's only config on the ESP finds the ext4 root by UUID and sources
# /boot/harbourgrid/grub.cfg there, which boots the /vmlinuz and /initrd.img symlinks that the
# kernel packages keep current (/vmlinuz.old as a second menu entry): a kernel upgrade inside
# the image needs no hook and never writes the FAT ESP, which a power cut could otherwise leave
# half-written. Chosen over systemd-boot, which would need every kernel and initrd copied onto
# the ESP by a hook, and over a self-built grub-mkstandalone image, which Secure Boot refuses.
# shim/GRUB themselves are updated only by a new image (they are on the ESP, not in /boot).
# Legacy BIOS boot is not supported.
#
# Writes DIR/harbourgrid-gateway-<arch>.img. Downloaded .debs are kept in
# CACHE/debs (default ~/.cache/harbourgrid-image), so a rebuild downloads nothing new; an image
# whose inputs (hub sources, deploy/) are unchanged is not rebuilt at all (CACHE/... stamp).
#
# Needs: mmdebstrap, mkfs.vfat (dosfstools), mcopy/mmd (mtools), mke2fs (e2fsprogs), sfdisk.
# arm64: deploy/image/arm64/build-arm64.sh (`make image ARCH=arm64`) builds the same image
# without binfmt_misc (maintainer scripts run in qemu-system-aarch64); deploy/image/rpi/ for a
# stock Raspberry Pi OS card.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ARCH=amd64
OUT="$ROOT/dist"
CACHE="${HARBOURGRID_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/harbourgrid-image}"
BUNDLE=""
PYTHON="${PYTHON:-python3}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FAT_MIB=64
ESP_MIB=64
PACKAGES=(
    linux-image-amd64 initramfs-tools systemd-sysv systemd-timesyncd systemd-resolved udev dbus
    openssh-server python3 python3-venv iproute2 ca-certificates kmod
    shim-signed grub-efi-amd64-signed cloud-guest-utils
)

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH="${2:?}"; shift 2 ;;
        --out) OUT="${2:?}"; shift 2 ;;
        --cache) CACHE="${2:?}"; shift 2 ;;
        --bundle) BUNDLE="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

case "$ARCH" in
    amd64) BUNDLE_PLATFORM=x86_64 ;;
    arm64)
        die "arm64: a foreign root filesystem cannot run its maintainer scripts here" \
            "without registering binfmt_misc handlers (a change to the host kernel). Build it" \
            "with deploy/image/arm64/build-arm64.sh (make image ARCH=arm64: they run in" \
            "qemu-system-aarch64), or use the aarch64 bundle with deploy/image/rpi/ on a stock" \
            "Raspberry Pi OS card (README, \"Installing a gateway\")." ;;
    *) die "unknown --arch $ARCH (amd64)" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, file ownership in the image)"
for tool in mmdebstrap mkfs.vfat mcopy mmd mke2fs sfdisk; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] ||
        die "$tool is missing (make image installs it: mmdebstrap dosfstools mtools e2fsprogs fdisk)"
done
export PATH="$PATH:/usr/sbin:/sbin"

NAME="harbourgrid-gateway-$ARCH"
IMAGE="$OUT/$NAME.img"
mkdir -p "$OUT" "$CACHE/debs"

# Everything that ends up in the image; an unchanged image is not rebuilt.
inputs_hash() {
    (
        cd "$ROOT"
        find hub drivers sim deploy dashboards pyproject.toml -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
        printf '%s\n' "$ARCH" "$MIRROR" "${PACKAGES[*]}" "$BUNDLE"
    ) | sha256sum | cut -c1-16
}
HASH="$(inputs_hash)"
if [ -f "$IMAGE" ] && [ "$(cat "$IMAGE.inputs" 2>/dev/null)" = "$HASH" ]; then
    say "$IMAGE is up to date (inputs $HASH)"
    exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hg-image.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
start=$(date +%s)

if [ -z "$BUNDLE" ]; then
    say "building the $BUNDLE_PLATFORM offline bundle"
    "$PYTHON" "$ROOT/deploy/bundle.py" --platform "$BUNDLE_PLATFORM" --out "$WORK/bundle"
    BUNDLE="$(ls "$WORK"/bundle/harbourgrid-hub-*-"$BUNDLE_PLATFORM".tar.gz)"
fi
mkdir -p "$WORK/payload"
tar -xzf "$BUNDLE" -C "$WORK/payload"
BUNDLE_DIR="$(find "$WORK/payload" -mindepth 1 -maxdepth 1 -type d | head -n1)"
cp -r "$HERE/rootfs" "$WORK/payload/overlay"
install -m 0755 "$HERE/harbourgrid-provision" "$WORK/payload/harbourgrid-provision"
install -m 0644 "$HERE/harbourgrid-provision.service" "$HERE/hub.toml" "$WORK/payload/"

say "debootstrapping Debian 12 ($ARCH) into $WORK/rootfs (.debs cached in $CACHE/debs)"
include="$(IFS=,; echo "${PACKAGES[*]}")"
mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --include="$include" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in '$CACHE/debs' /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives '$CACHE/debs'" \
    --customize-hook="'$HERE/customize.sh' \"\$1\" '$WORK/payload' '$BUNDLE_DIR'" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    bookworm "$WORK/rootfs" "$MIRROR"

# Identities the boot chain refers to: the root partition (kernel root=PARTUUID=) and its ext4
# (GRUB's search --fs-uuid). Every card flashed from one image shares them.
ROOT_PARTUUID="$(cat /proc/sys/kernel/random/uuid)"
ROOT_FSUUID="$(cat /proc/sys/kernel/random/uuid)"

say "boot menu /boot/harbourgrid/grub.cfg (root PARTUUID $ROOT_PARTUUID)"
install -d "$WORK/rootfs/boot/harbourgrid"
sed -e "s/@ROOT_PARTUUID@/$ROOT_PARTUUID/g" -e "s/@ROOT_FSUUID@/$ROOT_FSUUID/g" \
    "$HERE/grub.cfg" > "$WORK/rootfs/boot/harbourgrid/grub.cfg"
[ -e "$WORK/rootfs/vmlinuz" ] && [ -e "$WORK/rootfs/initrd.img" ] ||
    die "the root has no /vmlinuz or /initrd.img symlink for GRUB to boot"

say "ext4 root filesystem (label hgroot)"
used_mib=$(( $(du -sm "$WORK/rootfs" | cut -f1) ))
root_mib=$(( (used_mib * 13 / 10 + 256 + 63) / 64 * 64 ))  # room for an upgrade's second venv
# Bookworm's GRUB 2.06 reads this ext4: no metadata_csum_seed/orphan_file (e2fsprogs 1.47 can).
mke2fs -q -t ext4 -L hgroot -U "$ROOT_FSUUID" -O ^metadata_csum_seed,^orphan_file \
    -d "$WORK/rootfs" -E root_owner=0:0 "$WORK/root.img" "${root_mib}M"

say "EFI System Partition: shim (EFI/BOOT/BOOTX64.EFI) and GRUB, both signed by Debian"
mkfs.vfat -F 32 -n HGBOOT -C "$WORK/esp.img" $(( ESP_MIB * 1024 )) >/dev/null
printf '%s\n' "# Harbourgrid gateway: the boot menu lives on the root filesystem (kernel upgrades)." \
    "search --no-floppy --fs-uuid --set=root $ROOT_FSUUID" \
    "source (\$root)/boot/harbourgrid/grub.cfg" > "$WORK/esp-grub.cfg"
efi() { MTOOLS_SKIP_CHECK=1 "$@"; }
efi mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/debian
efi mcopy -i "$WORK/esp.img" "$WORK/rootfs/usr/lib/shim/shimx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
efi mcopy -i "$WORK/esp.img" "$WORK/rootfs/usr/lib/shim/mmx64.efi.signed" ::/EFI/BOOT/mmx64.efi
efi mcopy -i "$WORK/esp.img" "$WORK/rootfs/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" \
    ::/EFI/BOOT/grubx64.efi
# The signed GRUB reads $prefix/grub.cfg (prefix /EFI/debian), else grub.cfg beside itself.
efi mcopy -i "$WORK/esp.img" "$WORK/esp-grub.cfg" ::/EFI/debian/grub.cfg
efi mcopy -i "$WORK/esp.img" "$WORK/esp-grub.cfg" ::/EFI/BOOT/grub.cfg

say "FAT32 config partition (label HGCONFIG)"
mkfs.vfat -F 32 -n HGCONFIG -C "$WORK/fat.img" $(( FAT_MIB * 1024 )) >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/fat.img" -s "$HERE/hgconfig/README.txt" "$HERE/hgconfig/harbourgrid.example" ::/

say "assembling $IMAGE (GPT)"
fat_start=2048
fat_sectors=$(( FAT_MIB * 2048 ))
esp_start=$(( fat_start + fat_sectors ))
esp_sectors=$(( ESP_MIB * 2048 ))
root_start=$(( esp_start + esp_sectors ))
root_sectors=$(( root_mib * 2048 ))
rm -f "$IMAGE.tmp"
# + 1 MiB at the end for GPT's backup header.
truncate -s $(( (root_start + root_sectors + 2048) * 512 )) "$IMAGE.tmp"
sfdisk --quiet "$IMAGE.tmp" <<SFDISK
label: gpt
start=$fat_start, size=$fat_sectors, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=HGCONFIG
start=$esp_start, size=$esp_sectors, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI
start=$root_start, size=$root_sectors, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$ROOT_PARTUUID, name=hgroot
SFDISK
dd if="$WORK/fat.img" of="$IMAGE.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/esp.img" of="$IMAGE.tmp" bs=1M seek=$(( 1 + FAT_MIB )) conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$IMAGE.tmp" bs=1M seek=$(( 1 + FAT_MIB + ESP_MIB )) conv=notrunc,sparse \
    status=none
mv "$IMAGE.tmp" "$IMAGE"
echo "$HASH" > "$IMAGE.inputs"
say "done in $(( $(date +%s) - start ))s: $IMAGE ($(( (root_start + root_sectors + 2048) / 2048 )) MiB," \
    "$(du -m "$IMAGE" | cut -f1) MiB allocated); FAT partition at byte offset $(( fat_start * 512 ))"
