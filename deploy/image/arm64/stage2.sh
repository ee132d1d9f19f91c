#!/bin/sh
# Stage 2 of the arm64 image build, run by stage2-init inside qemu-system-aarch64 (chrooted into
# the image's root): finishes the Debian bootstrap that the host could only unpack
# (debootstrap --second-stage runs the arm64 maintainer scripts), then turns the root into a
# gateway with the same customize.sh as the amd64 image (hub from the aarch64 offline bundle).
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
S=/hgstage2
t0=$(date +%s)
/debootstrap/debootstrap --second-stage
echo "HG-STAGE2: debootstrap --second-stage done in $(( $(date +%s) - t0 ))s"
[ -e /proc/self ] || mount -t proc proc /proc  # debootstrap unmounts what it found mounted
t1=$(date +%s)
/bin/bash "$S/customize.sh" / "$S/payload" "$S/payload/bundle"
echo "HG-STAGE2: customize.sh (hub from the aarch64 bundle) done in $(( $(date +%s) - t1 ))s"
apt-get clean
# What the amd64 build leaves out with dpkg path-exclude (stage 1 unpacked it before that rule).
find /usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
rm -rf /usr/share/man/* /usr/share/locale/* /var/lib/apt/lists/*_Packages "$S" \
    /etc/dpkg/dpkg.cfg.d/00harbourgrid-build
