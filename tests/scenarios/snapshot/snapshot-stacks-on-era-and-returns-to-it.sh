#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/snapshot-stacks-on-era-and-returns-to-it: a snapshot of a device
# that dm-era already interposes stacks on top of the era device: era keeps
# seeing every write while the snapshot lives, the image matches the point
# in time, and `snapshot remove` puts the device back on the era device.
#
# How: ext4 on /dev/vdb under fio; `era /dev/vdd [interpose]/dev/vdb 128` is
# created live and checkpointed.  `snapshot create --cow /dev/vdc /dev/vdb`
# must build `snapshot-origin <era>` and `snapshot <era> ...` and SWITCH the
# device from era straight to the origin (`ls` says "on vdb-era").  Files
# written after the snapshot must be absent from it, present on the origin,
# and era_invalidate must list blocks written since the checkpoint (they
# went origin -> era).  After `snapshot remove` the device is on vdb-era
# again with its lower device, then `interposer remove vdb-era`; fio
# verifies, fsck is clean on the snapshot and the device.
#
# TIMEOUT: 600
DESCRIPTION="a snapshot stacks on an existing era interposer and remove returns the device to it"

. /tests/common/rc
set -e

_have_program fio era_invalidate
_have_module dm_snapshot dm_era
_load_module

_log "Running snapshot/snapshot-stacks-on-era-and-returns-to-it: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vdb)
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start live /mnt 16M
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
echo "0 $SZ era /dev/vdd [interpose]/dev/vdb 128" | interposer create vdb-era >/dev/null
dmsetup message vdb-era 0 checkpoint
ERA=$(dmsetup status vdb-era | awk '{print $6}')
_log "era checkpoint: current era $ERA"
sleep 1

interposer snapshot create --name st --cow /dev/vdc /dev/vdb
interposer snapshot ls
ERA_DEV=$(dmsetup info -c --noheadings -o major,minor --separator : vdb-era | tr -d ' ')
dmsetup table st-vdb-origin | grep -q "snapshot-origin $ERA_DEV\$" ||
	_fail "the origin is not on the era device $ERA_DEV: $(dmsetup table st-vdb-origin)"
[ "$(_snap_field st /dev/vdb stacked_on)" = vdb-era ] || _fail "ls does not say the snapshot is on vdb-era"
[ "$(_snap_field st /dev/vdb attached)" = true ] || _fail "/dev/vdb is not on its origin"
interposer info /dev/vdb | grep -q st-vdb-origin || _fail "/dev/vdb is not attached to st-vdb-origin"

_fill_files /mnt/after 8
sleep 2
dmsetup message vdb-era 0 take_metadata_snap
era_invalidate --written-since "$ERA" --metadata-snapshot /dev/vdd >/tmp/inv.xml
dmsetup message vdb-era 0 drop_metadata_snap
_blocks=$(grep -c '<block\|<range' /tmp/inv.xml || true)
_log "era_invalidate lists $_blocks entries written since era $ERA"
[ "$_blocks" -gt 0 ] || _fail "era saw no write while the snapshot was on top of it"

SNAP=/dev/mapper/st-vdb-snap
_fsck_ext4 "$SNAP"
_mount "$SNAP" /snap ro,noload
_manifest_check /tmp/before.sums /snap/before
[ ! -e /snap/after ] || _fail "the snapshot has /after, written after the point in time"
umount /snap
[ "$(_snap_field st /dev/vdb state)" = valid ] || _fail "the snapshot is not valid"

interposer snapshot remove st
dmsetup ls | grep -q '^st-' && _fail "dm devices of the snapshot are left"
interposer info /dev/vdb | grep -q vdb-era || _fail "/dev/vdb is not back on vdb-era"
[ -b /dev/interposer/vdb ] || _fail "the era device's lower device was removed"
_fio_stop live
interposer remove vdb-era >/dev/null
_snap_gone st
umount /mnt
_mount /dev/vdb /mnt
[ "$(find /mnt/after -type f | wc -l)" -eq 8 ] || _fail "the origin lost files written after"
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_log "Test complete"
