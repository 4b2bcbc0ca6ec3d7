#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The guest of the full-system tier: a Debian 12 root filesystem built with debootstrap,
# packed into an ext4 image with `mke2fs -d` (the image is never mounted on the host).
# Run by xtask/src/system/image.rs as
#	build-image.sh OUTDIR MIRROR SECURITY_MIRROR RELEASE...
# where each RELEASE is a host kernel (`uname -r` form) whose linux-image and linux-headers
# go into the guest. Writes OUTDIR/rootfs.img and OUTDIR/boot/initrd.img-RELEASE.
#
# Why the guest has its own linux-image packages although qemu boots the host's
# /boot/vmlinuz-RELEASE with -kernel: a real host has /lib/modules/RELEASE/kernel (dm-mod,
# dm-snapshot, virtio_blk, ...), the DKMS module goes to /lib/modules/RELEASE/updates/dkms
# beside them, and its initrd is made by its own initramfs-tools when linux-image is
# installed. qemu boots that initrd, copied out here, with the host's vmlinuz, which is the
# same file as the guest's (the same package version: the releases are the host's).
set -euo pipefail

OUT=$1
MIRROR=$2
SECURITY=$3
shift 3
RELEASES=("$@")

ROOT=$OUT/rootfs
SUITE=bookworm
# Also in the image: the admin's usual tools. Everything the tests and our packages need
# must be here: the guest has no network.
PACKAGES=(
	systemd systemd-sysv udev dbus kmod procps util-linux e2fsprogs fio lvm2 dmsetup
	dkms openssl initramfs-tools zstd apt less
)

stamp() { echo "build-image: $(date -u +%T) $*"; }

rm -rf "$ROOT"
mkdir -p "$ROOT" "$OUT/boot"

stamp "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 || {
	tail -30 "$OUT/debootstrap.log"
	[ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -30 "$ROOT/debootstrap/debootstrap.log"
	exit 1
}

cat >"$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
deb $MIRROR $SUITE-backports main
SOURCES
# No recommends, like the host's setup; no documentation stripping: man pages are tested.
printf 'APT::Install-Recommends "false";\n' >"$ROOT/etc/apt/apt.conf.d/90xtask"
echo xtask-system >"$ROOT/etc/hostname"
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"

# The image name of a kernel's packages: linux-image-RELEASE, from backports for 6.12.
kernel_packages=()
for r in "${RELEASES[@]}"; do
	kernel_packages+=("linux-image-$r" "linux-headers-$r")
done

# apt in the chroot, in a private mount namespace: /proc, /sys and /dev exist for the
# package scripts (update-initramfs, dkms) and vanish with the namespace, whatever happens.
in_root() {
	unshare --mount --propagation private -- sh -ec '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount -t sysfs sys "$root/sys"
		mount --rbind /dev "$root/dev"
		exec chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
	' in_root "$ROOT" "$@"
}

stamp "apt-get install ${PACKAGES[*]} ${kernel_packages[*]}"
in_root apt-get update -q >"$OUT/apt.log" 2>&1 || { tail -30 "$OUT/apt.log"; exit 1; }
# initramfs-tools first, so each linux-image's postinst makes that kernel's initrd.
if ! in_root apt-get install -y -q "${PACKAGES[@]}" >>"$OUT/apt.log" 2>&1 ||
	! in_root apt-get install -y -q -t "$SUITE-backports" "${kernel_packages[@]}" >>"$OUT/apt.log" 2>&1; then
	tail -40 "$OUT/apt.log"
	exit 1
fi
in_root apt-get clean

stamp "configuring the guest"
# The console is the test channel: no login prompt on it, no getty elsewhere.
in_root systemctl mask serial-getty@ttyS0.service getty@tty1.service >/dev/null
# Timers that would start work in the middle of a scenario.
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer; do
	in_root systemctl mask "$t" >/dev/null 2>&1 || true
done
# The scenario runner: tests/system/init on the payload disk (LABEL=xtask-payload),
# mounted at /xtask; /tests points into it, as in the busybox tier.
mkdir -p "$ROOT/xtask"
ln -sfn /xtask/tests "$ROOT/tests"
cat >"$ROOT/usr/local/sbin/xtask-guest" <<'RUNNER'
#!/bin/sh
# Mount the payload disk and hand over to its runner (tests/system/init).
i=0
while [ ! -e /dev/disk/by-label/xtask-payload ] && [ "$i" -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
mountpoint -q /xtask || mount -o ro /dev/disk/by-label/xtask-payload /xtask || {
	echo "xtask-guest: no payload disk (LABEL=xtask-payload)"
	systemctl --no-block poweroff
	exit 1
}
exec /bin/sh /xtask/tests/system/init
RUNNER
chmod 755 "$ROOT/usr/local/sbin/xtask-guest"
cat >"$ROOT/etc/systemd/system/xtask-guest.service" <<'UNIT'
[Unit]
Description=Run the xtask system-tier scenarios named on the kernel command line
After=multi-user.target
ConditionKernelCommandLine=xtask.run

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/xtask-guest
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
in_root systemctl enable xtask-guest.service >/dev/null 2>&1

stamp "copying out the initrds"
for r in "${RELEASES[@]}"; do
	cmp "$ROOT/boot/vmlinuz-$r" "/boot/vmlinuz-$r" || {
		echo "build-image: the guest's vmlinuz-$r differs from the host's: run cargo xtask setup"
		exit 1
	}
	cp "$ROOT/boot/initrd.img-$r" "$OUT/boot/"
done

# 6 GiB, sparse: room for the DKMS builds and a few hundred MiB of scenario files.
stamp "mke2fs -d ($(du -sh "$ROOT" | cut -f1) of files)"
rm -f "$OUT/rootfs.img"
mke2fs -q -F -t ext4 -L xtask-root -d "$ROOT" "$OUT/rootfs.img" 6G
rm -rf "$ROOT"
stamp "done"
