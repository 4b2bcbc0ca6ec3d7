#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# vm/boots-with-tools: the test VM has the disks, tools and kernel modules that the other
# scenarios rely on, and a filesystem round trip on /dev/vdb keeps every byte.
#
# How: check the five disks' sizes, that each tool runs and each dm target module loads;
# mkfs.ext4 on vdb, write files, checksum them, remount, compare, e2fsck -fn; a short fio
# verify run. Does not load blk_interposer: a failure here is the harness's, not the module's.
#
# TIMEOUT: 600
# KERNELS: all

DESCRIPTION="boot the VM and prove its disks and tools work"

. /tests/common/rc
set -e

_log "Running vm/boots-with-tools: $DESCRIPTION"

for d in vda:128 vdb:512 vdc:256 vdd:64 vde:32; do
	dev=/dev/${d%%:*}
	want=$((${d#*:} * 1024 * 1024))
	[ -b "$dev" ] || _fail "$dev is missing"
	got=$(blockdev --getsize64 "$dev")
	[ "$got" -eq "$want" ] || _fail "$dev has $got bytes, want $want"
done
_log "disks: vda 128M, vdb 512M, vdc 256M, vdd 64M, vde 32M"

for p in dmsetup mkfs.ext4 e2fsck tune2fs mkfs.xfs xfs_repair xfs_freeze fsfreeze fio \
	sgdisk blockdev wipefs blkdiscard losetup flock era_invalidate era_dump era_check thin_check sha256sum; do
	command -v "$p" >/dev/null || _fail "$p is not in the VM"
done
# Dynamic binaries fail here if a library is missing from the initramfs.
dmsetup version >/dev/null || _fail "dmsetup does not run"
fio --version >/dev/null || _fail "fio does not run"
era_invalidate --version >/dev/null || _fail "era_invalidate does not run"
mkfs.xfs -V >/dev/null || _fail "mkfs.xfs does not run"
sgdisk --version >/dev/null || _fail "sgdisk does not run"
_log "tools: all present and running"

for m in dm_era dm_snapshot dm_flakey dm_delay dm_log_writes dm_thin_pool loop xfs; do
	modprobe "$m" || _fail "modprobe $m failed"
done
_log "modules: dm targets, loop and xfs load"
dmsetup targets

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
mkdir -p /mnt/data
i=0
while [ "$i" -lt 20 ]; do
	dd if=/dev/urandom of="/mnt/data/f$i" bs=64k count=$((i + 1)) 2>/dev/null
	i=$((i + 1))
done
_manifest_make /mnt/data /tmp/manifest
umount /mnt
_mount /dev/vdb /mnt
_manifest_check /tmp/manifest /mnt/data

_fio_verify_start smoke /mnt/fio 8M
sleep 2
_fio_stop smoke

umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_log "Test complete"
