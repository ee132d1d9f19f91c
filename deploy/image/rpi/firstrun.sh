#!/bin/bash
# Runs once on a stock Raspberry Pi OS / Debian arm64 at the first boot (systemd.run= in
# cmdline.txt, put there by prepare-sd.sh): installs the hub from the aarch64 bundle on the boot
# partition, enables first-boot provisioning from /boot/firmware/harbourgrid/, removes itself
# from cmdline.txt. systemd reboots afterwards (systemd.run_success_action=reboot).
# What it did, or why it stopped, is in /boot/firmware/provisioned.txt.
set -uo pipefail
BOOT=/boot/firmware
[ -f "$BOOT/cmdline.txt" ] || BOOT=/boot
SETUP="$BOOT/harbourgrid-setup"
REPORT="$BOOT/provisioned.txt"
report() { printf '%s\r\n' "Harbourgrid gateway setup: $1" "${@:2}" > "$REPORT"; sync; }
unhook() {  # never run again, whatever happened
    sed -i 's| systemd.run=[^ ]*harbourgrid-setup/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target||' "$BOOT/cmdline.txt"
    sync
}
trap unhook EXIT
mount -o remount,rw / 2>/dev/null || true

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    report FAILED "python3-venv is not installed on this OS image and cannot be installed offline." \
        "Connect the gateway to a network once and run: sudo apt-get install python3-venv," \
        "then: sudo bash $SETUP/firstrun.sh"
    exit 1
fi
bundle="$(ls "$SETUP"/harbourgrid-hub-*-aarch64.tar.gz 2>/dev/null | sort -V | tail -n1)"
[ -n "$bundle" ] || { report FAILED "no harbourgrid-hub-*-aarch64.tar.gz in $SETUP"; exit 1; }
work="$(mktemp -d)"
tar -xzf "$bundle" -C "$work"
dir="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
install -d -m 0750 /etc/harbourgrid
[ -e /etc/harbourgrid/hub.toml ] || install -m 0640 "$SETUP/hub.toml" /etc/harbourgrid/hub.toml
[ -e /etc/harbourgrid/hub.env ] || install -m 0640 /dev/null /etc/harbourgrid/hub.env
if ! out="$(bash "$dir/install.sh" --offline "$dir" --no-start 2>&1)"; then
    report FAILED "install.sh from $(basename "$bundle") failed:" "$out"
    exit 1
fi
chown -R root:harbourgrid /etc/harbourgrid && chmod -R g-w,o-rwx /etc/harbourgrid
install -D -m 0755 "$SETUP/harbourgrid-provision" /usr/lib/harbourgrid/harbourgrid-provision
sed -e "s|^Wants=dev-disk.*|Wants=network-pre.target|" \
    -e "s|^After=local-fs.target.*|After=local-fs.target|" \
    -e "s|^\[Service\]|[Service]\nEnvironment=HGCONFIG_DIR=$BOOT|" \
    "$SETUP/harbourgrid-provision.service" > /etc/systemd/system/harbourgrid-provision.service
mkdir -p /etc/systemd/system/harbourgrid-provision.service.d /etc/systemd/system/harbourgrid-hub.service.d
printf '[Unit]\nRequiresMountsFor=%s\n' "$BOOT" > /etc/systemd/system/harbourgrid-provision.service.d/boot.conf
printf '[Unit]\nAfter=harbourgrid-provision.service\nConditionPathExists=/etc/harbourgrid/.provisioned\n' \
    > /etc/systemd/system/harbourgrid-hub.service.d/gateway.conf
systemctl enable harbourgrid-provision.service harbourgrid-hub.service
rm -rf "$work"
report "hub installed from $(basename "$bundle")" \
    "The gateway reboots now and reads $BOOT/harbourgrid/ (see harbourgrid.example/);" \
    "this file is then replaced by the provisioning report."
exit 0
