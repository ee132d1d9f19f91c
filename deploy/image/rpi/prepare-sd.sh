#!/usr/bin/env bash
# Prepare a freshly flashed stock Raspberry Pi OS Lite (bookworm, 64-bit) or Debian arm64 card
# for the Harbourgrid hub, offline, from a laptop (Linux or macOS) with the card's FAT boot
# partition mounted:
#
#   deploy/image/rpi/prepare-sd.sh /media/$USER/bootfs dist/harbourgrid-hub-<version>-aarch64.tar.gz
#
# Copies the aarch64 bundle, the first-boot provisioning (harbourgrid-provision + its unit) and
# firstrun.sh to BOOT/harbourgrid-setup/, an example config folder to BOOT/harbourgrid.example/,
# and adds `systemd.run=.../firstrun.sh` to BOOT/cmdline.txt (as Raspberry Pi Imager does for its
# own first-run script). At the first boot firstrun.sh installs the hub from the bundle, enables
# the provisioning, removes itself from cmdline.txt and reboots; from then on the gateway reads
# BOOT/harbourgrid/ at every boot exactly as the amd64 image reads its HGCONFIG partition.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOOT="${1:?usage: prepare-sd.sh BOOT_PARTITION_MOUNT BUNDLE.tar.gz}"
BUNDLE="${2:?usage: prepare-sd.sh BOOT_PARTITION_MOUNT BUNDLE.tar.gz}"
[ -f "$BOOT/cmdline.txt" ] || { echo "prepare-sd.sh: no cmdline.txt in $BOOT: not a Raspberry Pi boot partition" >&2; exit 1; }
case "$(basename "$BUNDLE")" in
    *-aarch64.tar.gz) ;;
    *) echo "prepare-sd.sh: $BUNDLE is not an aarch64 bundle (make bundle PLATFORM=aarch64)" >&2; exit 1 ;;
esac
mkdir -p "$BOOT/harbourgrid-setup"
cp "$BUNDLE" "$BOOT/harbourgrid-setup/"
cp "$HERE/firstrun.sh" "$HERE/../harbourgrid-provision" "$HERE/../harbourgrid-provision.service" \
   "$HERE/../hub.toml" "$BOOT/harbourgrid-setup/"
mkdir -p "$BOOT/harbourgrid.example"
cp -R "$HERE/../hgconfig/harbourgrid.example/." "$BOOT/harbourgrid.example/"
cp "$HERE/../hgconfig/README.txt" "$BOOT/HARBOURGRID-README.txt"
cmdline="$(tr -d '\r\n' < "$BOOT/cmdline.txt")"
case "$cmdline" in
    *harbourgrid-setup/firstrun.sh*) ;;
    *) cmdline="$cmdline systemd.run=/boot/firmware/harbourgrid-setup/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target" ;;
esac
printf '%s\n' "$cmdline" > "$BOOT/cmdline.txt"
echo "ready: put your config in $BOOT/harbourgrid/ (see harbourgrid.example/), eject, boot the Pi"
