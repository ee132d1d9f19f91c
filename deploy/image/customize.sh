#!/usr/bin/env bash
# mmdebstrap customize hook (build.sh): turns the bootstrapped Debian root into a gateway.
#   customize.sh ROOTFS PAYLOAD BUNDLE_DIR
# Runs on the build host as root; commands that belong to the target run with `chroot`, so the
# hub's venv is made by the image's own python3 and its paths are /opt/harbourgrid/... inside.
set -euo pipefail
R="$1" PAYLOAD="$2" BUNDLE_DIR="$3"

cp -a "$PAYLOAD/overlay/." "$R/"
echo harbourgrid > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tharbourgrid\n::1\tlocalhost ip6-localhost\n' > "$R/etc/hosts"

# A placeholder config that validates, so install.sh can check it; the real one comes from
# HGCONFIG at first boot (the hub does not start before: see harbourgrid-hub.service.d).
install -d -m 0750 "$R/etc/harbourgrid"
install -m 0640 "$PAYLOAD/hub.toml" "$R/etc/harbourgrid/hub.toml"
install -m 0640 /dev/null "$R/etc/harbourgrid/hub.env"

rm -rf "$R/tmp/hgbundle"
cp -a "$BUNDLE_DIR" "$R/tmp/hgbundle"
# No systemd runs in the chroot: reloads are moot, enabling is done on the files (--root).
cat > "$R/tmp/hg-systemctl" <<'SH'
#!/bin/sh
case "$1" in
    daemon-reload|start|restart|stop) exit 0 ;;
    *) exec systemctl --root=/ "$@" ;;
esac
SH
chmod 0755 "$R/tmp/hg-systemctl"
# PYTHON may name the build host's python (make image): the venv is made by the image's own.
chroot "$R" env -u PYTHON SYSTEMCTL=/tmp/hg-systemctl /bin/bash /tmp/hgbundle/install.sh \
    --offline /tmp/hgbundle --no-start
rm -rf "$R/tmp/hgbundle" "$R/tmp/hg-systemctl"
chroot "$R" chown -R root:harbourgrid /etc/harbourgrid
chroot "$R" chmod -R g-w,o-rwx /etc/harbourgrid

install -D -m 0755 "$PAYLOAD/harbourgrid-provision" "$R/usr/lib/harbourgrid/harbourgrid-provision"
install -m 0644 "$PAYLOAD/harbourgrid-provision.service" "$R/etc/systemd/system/"
chroot "$R" systemctl --root=/ enable harbourgrid-provision.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service ssh.service harbourgrid-hub.service

# Per-gateway identity is made at first boot, never shared by every flashed card.
rm -f "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"
