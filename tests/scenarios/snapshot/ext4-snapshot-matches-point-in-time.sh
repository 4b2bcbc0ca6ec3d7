#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/ext4-snapshot-matches-point-in-time: `interposer snapshot create` on
# a mounted ext4 under write load gives an image that is exactly the point in
# time: it mounts, is fsck-clean, has every file as it was then and none of
# the changes made after; the origin loses nothing.
#
# How: ext4 on /dev/vdb is mounted and fio writes and verifies a file in it
# (O_DIRECT, so through the origin after the switch).  24 files are written
# and checksummed; a marker file is written without sync just before the
# snapshot, so only the kernel's freeze at the point in time can put it into
# the image.  After `snapshot create --cow /dev/vdc`, the origin changes: six
# of the files are rewritten, two deleted, a new directory written.  The
# snapshot must pass `e2fsck -fn`, mount `ro,noload` (no journal replay: the
# freeze left it clean), match the manifest and the marker, and have none of
# the later changes; `snapshot ls --json` says valid with some COW in use.
# After `snapshot remove` the device is on its own again (no dm device, no
# lower device), fio verifies every block and the origin is fsck-clean with
# the later changes in place.  First, /dev/vdc as the COW store is refused
# while it holds ext4 (without --yes) and while it is mounted (even with
# --yes), leaving nothing behind.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="a live ext4 snapshot is fsck-clean and matches the point in time, the origin loses nothing"

. /tests/common/rc
set -e

_have_program fio
_have_module dm_snapshot
_load_module

_log "Running snapshot/ext4-snapshot-matches-point-in-time: $DESCRIPTION"

# A COW device that holds a filesystem is not overwritten without --yes,
# and one that is mounted not even with it; nothing is created either way.
_mkfs_ext4 /dev/vdc
_expect_fail "a COW device holding ext4" "holds a filesystem \(ext4\).*--yes" \
	interposer snapshot create --name bk --cow /dev/vdc /dev/vdd
_mount /dev/vdc /cowfs
_expect_fail "a mounted COW device, with --yes" "is in use.*never taken" \
	interposer snapshot create --yes --name bk --cow /dev/vdc /dev/vdd
umount /cowfs
[ -z "$(dmsetup ls | grep -v 'No devices')" ] || _fail "a refused snapshot left dm devices: $(dmsetup ls)"
e2fsck -fn /dev/vdc >/dev/null 2>&1 || _fail "the refused COW device's ext4 was damaged"

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start live /mnt 16M
_fill_files /mnt/before 24
_manifest_make /mnt/before /tmp/before.sums
sleep 2
echo "written just before the point in time" >/mnt/marker

_t0=$(cut -d' ' -f1 /proc/uptime)
interposer snapshot create --yes --name bk --cow /dev/vdc /dev/vdb
_t1=$(cut -d' ' -f1 /proc/uptime)
_log "snapshot create took $(echo "$_t0 $_t1" | awk '{ printf "%.2f", $2 - $1 }') s"
[ "$(_snap_field bk /dev/vdb state)" = valid ] || _fail "the snapshot is not valid right after create"
[ "$(_snap_field bk /dev/vdb attached)" = true ] || _fail "/dev/vdb is not on its origin"

# The origin moves on.
_origin_moves_on /mnt

SNAP=/dev/mapper/bk-vdb-snap
interposer snapshot ls
_used=$(_snap_field bk /dev/vdb cow_used)
_log "COW in use: $_used sectors ($(_snap_field bk /dev/vdb cow_used_percent) %)"
[ "$_used" -gt 0 ] || _fail "no COW in use although the origin was written"
_fsck_ext4 "$SNAP"
_mount "$SNAP" /snap ro,noload
_manifest_check /tmp/before.sums /snap/before
[ "$(cat /snap/marker)" = "written just before the point in time" ] ||
	_fail "the snapshot's marker is '$(cat /snap/marker)', not the one from the point in time"
[ ! -e /snap/after ] || _fail "the snapshot has /after, written after the point in time"
umount /snap
_fsck_ext4 "$SNAP"
[ "$(_snap_field bk /dev/vdb state)" = valid ] || _fail "the snapshot became invalid"

_fio_stop live
interposer snapshot remove bk
_snap_gone bk
[ "$(cat /mnt/marker)" = "written after the point in time" ] || _fail "the origin lost the new marker"
_fio_verify_start live /mnt 16M
sleep 1
_fio_stop live
umount /mnt
_mount /dev/vdb /mnt
_file_count=$(find /mnt/after -type f | wc -l)
[ "$_file_count" -eq 8 ] || _fail "the origin has $_file_count of the 8 files written after"
[ ! -e /mnt/before/f7 ] || _fail "a file deleted on the origin came back"
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_log "Test complete"
