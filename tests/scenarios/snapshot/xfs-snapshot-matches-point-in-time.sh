#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/xfs-snapshot-matches-point-in-time: the same as the ext4 scenario on
# XFS: a snapshot of a mounted, busy XFS is `xfs_repair -n` clean, mounts
# `ro,nouuid,norecovery`, matches the point in time and has none of the later
# changes; the origin loses nothing.
#
# How: as snapshot/ext4-snapshot-matches-point-in-time.  The image is read
# as it is first: mounted `ro,nouuid,norecovery` (`nouuid`: the origin with
# the same UUID is mounted), it must match the manifest and the marker, which
# shows that the freeze wrote everything back in place.  A frozen XFS's log
# is covered, not clean (since Linux 5.12, "xfs: cover the log on freeze
# instead of cleaning it"; before, freeze cleaned it and dirtied it again at
# once), so `xfs_repair -n` reports "valuable metadata changes in a log" and
# stale lazy superblock counters on any frozen image, LVM's too.  So the
# image then gets the log recovery a crash would do: a read-write `nouuid`
# mount of the snapshot (its writes land in the COW store, never on the
# origin), and after that `xfs_repair -n` must find nothing.
# Here the COW store is a 64 MiB file on a loop device (--cow-file), removed
# with the snapshot.
#
# TIMEOUT: 600
DESCRIPTION="a live XFS snapshot is xfs_repair-clean and matches the point in time, the origin loses nothing"

. /tests/common/rc
set -e

_have_program fio mkfs.xfs xfs_repair losetup
_have_module xfs dm_snapshot loop
_load_module

_log "Running snapshot/xfs-snapshot-matches-point-in-time: $DESCRIPTION"

# _xfs_repair_n DEV: read-only check; fail with its output on any problem.
_xfs_repair_n() {
	if ! xfs_repair -n "$1" >/tmp/repair.out 2>&1; then
		cat /tmp/repair.out
		_fail "xfs_repair -n $1 found problems"
	fi
	_log "xfs_repair -n $1: clean"
}

mkfs.xfs -q -f /dev/vdb || _fail "mkfs.xfs failed"
_mount /dev/vdb /mnt
_fio_verify_start live /mnt 16M
_fill_files /mnt/before 24
_manifest_make /mnt/before /tmp/before.sums
sleep 2
echo "written just before the point in time" >/mnt/marker

interposer snapshot create --name bkx --cow-file /tmp/bkx.cow --cow-size 64M /dev/vdb
[ "$(_snap_field bkx /dev/vdb state)" = valid ] || _fail "the snapshot is not valid right after create"
losetup -a | grep -q /tmp/bkx.cow || _fail "no loop device on the COW file"

_origin_moves_on /mnt

SNAP=/dev/mapper/bkx-vdb-snap
interposer snapshot ls
_log "COW in use: $(_snap_field bkx /dev/vdb cow_used) sectors ($(_snap_field bkx /dev/vdb cow_used_percent) %)"
_mount "$SNAP" /snap ro,nouuid,norecovery
_manifest_check /tmp/before.sums /snap/before
[ "$(cat /snap/marker)" = "written just before the point in time" ] ||
	_fail "the snapshot's marker is '$(cat /snap/marker)', not the one from the point in time"
[ ! -e /snap/after ] || _fail "the snapshot has /after, written after the point in time"
umount /snap
# Log recovery, as after a crash, then the check.
_mount "$SNAP" /snap nouuid
_manifest_check /tmp/before.sums /snap/before
umount /snap
_xfs_repair_n "$SNAP"
[ "$(_snap_field bkx /dev/vdb state)" = valid ] || _fail "the snapshot became invalid"

_fio_stop live
interposer snapshot remove bkx
_snap_gone bkx
[ ! -e /tmp/bkx.cow ] || _fail "the COW file is left behind"
losetup -a | grep -q bkx.cow && _fail "the loop device is left behind"
umount /mnt
_mount /dev/vdb /mnt
[ "$(cat /mnt/marker)" = "written after the point in time" ] || _fail "the origin lost the new marker"
[ "$(find /mnt/after -type f | wc -l)" -eq 8 ] || _fail "the origin lost files written after"
umount /mnt
_xfs_repair_n /dev/vdb
_dmesg_check
_log "Test complete"
