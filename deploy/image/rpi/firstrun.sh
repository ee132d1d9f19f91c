#!/bin/bash
# Runs once on a stock Raspberry Pi OS / Debian arm64 at the first boot (systemd.run= in
# cmdline.txt, put there by prepare-sd.sh): installs the hub from the aarch64 bundle on the boot
# partition, enables first-boot provisioning from /boot/firmware/harbourgrid/ (the very same
# harbourgrid-provision as the gateway image, told where the partition is by HGCONFIG_DIR) and
# sshd (as the image does), removes itself from cmdline.txt. systemd reboots afterwards
# (systemd.run_success_action=reboot).
# What it did, or why it stopped, is in /boot/firmware/provisioned.txt.
# HARBOURGRID_FIRSTRUN_ROOT=DIR (tests) works on a throwaway root instead of /: install.sh gets
# --prefix DIR, nothing is chowned, SYSTEMCTL (default systemctl) gets --root=DIR.
set -uo pipefail
R="${HARBOURGRID_FIRSTRUN_ROOT:-}"
R="${R%/}"
SYSTEMCTL="${SYSTEMCTL:-systemctl}"
BOOT=/boot/firmware
[ -f "$R$BOOT/cmdline.txt" ] || BOOT=/boot
SETUP="$R$BOOT/harbourgrid-setup"
REPORT="$R$BOOT/provisioned.txt"
report() { printf '%s\r\n' "Harbourgrid gateway setup: $1" "${@:2}" > "$REPORT"; sync; }
unhook() {  # never run again, whatever happened
    sed -i 's| systemd.run=[^ ]*harbourgrid-setup/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target||' "$R$BOOT/cmdline.txt"
    sync
}
trap unhook EXIT
[ -n "$R" ] || mount -o remount,rw / 2>/dev/null || true

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    report FAILED "python3-venv is not installed on this OS image and cannot be installed offline." \
        "Connect the gateway to a network once and run: sudo apt-get install python3-venv," \
        "then: sudo bash $BOOT/harbourgrid-setup/firstrun.sh"
    exit 1
fi
bundle="$(ls "$SETUP"/harbourgrid-hub-*-aarch64.tar.gz 2>/dev/null | sort -V | tail -n1)"
[ -n "$bundle" ] || { report FAILED "no harbourgrid-hub-*-aarch64.tar.gz in $BOOT/harbourgrid-setup"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"; unhook' EXIT
tar -xzf "$bundle" -C "$work"
dir="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
ETC="$R/etc/harbourgrid"
install -d -m 0750 "$ETC"
[ -e "$ETC/hub.toml" ] || install -m 0640 "$SETUP/hub.toml" "$ETC/hub.toml"
[ -e "$ETC/hub.env" ] || install -m 0640 /dev/null "$ETC/hub.env"
if ! out="$(SYSTEMCTL="$SYSTEMCTL" bash "$dir/install.sh" --offline "$dir" --no-start ${R:+--prefix "$R"} 2>&1)"; then
    report FAILED "install.sh from $(basename "$bundle") failed:" "$out"
    exit 1
fi
if [ -z "$R" ]; then
    chown -R root:harbourgrid "$ETC" && chmod -R g-w,o-rwx "$ETC"
fi
install -D -m 0755 "$SETUP/harbourgrid-provision" "$R/usr/lib/harbourgrid/harbourgrid-provision"
UNITS="$R/etc/systemd/system"
mkdir -p "$UNITS/harbourgrid-provision.service.d" "$UNITS/harbourgrid-hub.service.d"
# The image's unit, minus its wait for a partition labelled HGCONFIG: here it is the boot
# partition, already mounted (RequiresMountsFor) and named by HGCONFIG_DIR.
sed -e "s|^Wants=dev-disk.*|Wants=network-pre.target|" \
    -e "s|^After=local-fs.target.*|After=local-fs.target|" \
    -e "s|^\[Service\]|[Service]\nEnvironment=HGCONFIG_DIR=$BOOT|" \
    "$SETUP/harbourgrid-provision.service" > "$UNITS/harbourgrid-provision.service"
printf '[Unit]\nRequiresMountsFor=%s\n' "$BOOT" > "$UNITS/harbourgrid-provision.service.d/boot.conf"
printf '[Unit]\nAfter=harbourgrid-provision.service\nConditionPathExists=/etc/harbourgrid/.provisioned\n' \
    > "$UNITS/harbourgrid-hub.service.d/gateway.conf"
if ! out="$("$SYSTEMCTL" ${R:+--root="$R"} enable harbourgrid-provision.service harbourgrid-hub.service ssh.service 2>&1)"; then
    report FAILED "systemctl enable failed:" "$out"
    exit 1
fi
report "hub installed from $(basename "$bundle")" \
    "The gateway reboots now and reads $BOOT/harbourgrid/ (see harbourgrid.example/);" \
    "this file is then replaced by the provisioning report."
exit 0
