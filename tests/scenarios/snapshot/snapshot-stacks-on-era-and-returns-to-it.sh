#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/snapshot-stacks-on-era-and-returns-to-it: a snapshot of a device
# that dm-era already interposes stacks on top of the era device: era keeps
# seeing every write while the snapshot lives, the image matches the point
# in time, and `snapshot remove` puts the device back on the era device.
#
# How: ext4 on /dev/vde (the 32 MiB whole disk) under fio; `era /dev/vdd [interpose]/dev/vde 128` is
# created live and checkpointed.  `snapshot create --cow /dev/vdc /dev/vde`
# must build `snapshot-origin <era>` and `snapshot <era> ...` and SWITCH the
# device from era straight to the origin (`ls` says "on vde-era").  Files
# written after the snapshot must be absent from it, present on the origin,
# and era_invalidate must list every block written since the checkpoint
# (they went origin -> era): with the filesystem frozen, the snapshot's image
# with only the blocks era_invalidate lists since the checkpoint copied
# from the device must equal the device (sha256), so era missed no write
# made while the snapshot was on top.  After `snapshot remove` the device is on vde-era
# again with its lower device, then `interposer remove vde-era`; fio
# verifies, fsck is clean on the snapshot and the device.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="a snapshot stacks on an existing era interposer and remove returns the device to it"

. /tests/common/rc
set -e

_have_program fio era_invalidate
_have_module dm_snapshot dm_era
_load_module

_log "Running snapshot/snapshot-stacks-on-era-and-returns-to-it: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vde)
_mkfs_ext4 /dev/vde
_mount /dev/vde /mnt
_fio_verify_start live /mnt 8M
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
echo "0 $SZ era /dev/vdd [interpose]/dev/vde 128" | interposer create vde-era >/dev/null
dmsetup message vde-era 0 checkpoint
ERA=$(dmsetup status vde-era | awk '{print $6}')
_log "era checkpoint: current era $ERA"
sleep 1

interposer snapshot create --name st --cow /dev/vdc /dev/vde
interposer snapshot ls
ERA_DEV=$(dmsetup info -c --noheadings -o major,minor --separator : vde-era | tr -d ' ')
dmsetup table st-vde-origin | grep -q "snapshot-origin $ERA_DEV\$" ||
	_fail "the origin is not on the era device $ERA_DEV: $(dmsetup table st-vde-origin)"
[ "$(_snap_field st /dev/vde stacked_on)" = vde-era ] || _fail "ls does not say the snapshot is on vde-era"
[ "$(_snap_field st /dev/vde attached)" = true ] || _fail "/dev/vde is not on its origin"
interposer info /dev/vde | grep -q st-vde-origin || _fail "/dev/vde is not attached to st-vde-origin"

# _fio_signal SIG: send SIG to every fio process (there is no pkill here).
_fio_signal() {
	_n=0
	for _p in /proc/[0-9]*; do
		[ "$(cat "$_p/comm" 2>/dev/null)" = fio ] || continue
		kill -"$1" "${_p#/proc/}" 2>/dev/null && _n=$((_n + 1))
	done
	[ "$_n" -gt 0 ] || _fail "no fio process to send SIG$1"
}

_fill_files /mnt/after 8
sleep 2
# Hold the filesystem still: every block that differs between the snapshot and the device
# now was written after the snapshot, so after the checkpoint, and went origin -> era.
# The snapshot's image with only the blocks era_invalidate lists copied from the device
# must then equal the device, byte for byte.
# fio is stopped (SIGSTOP) for that while, so that no writer sleeps on the frozen
# filesystem long enough for the hung-task watchdog (30 s here).
SNAP=/dev/mapper/st-vde-snap
_fio_signal STOP
fsfreeze --freeze /mnt || _fail "fsfreeze --freeze /mnt failed"
dmsetup message vde-era 0 take_metadata_snap
era_invalidate --written-since "$ERA" --metadata-snapshot /dev/vdd >/tmp/inv.xml
dmsetup message vde-era 0 drop_metadata_snap
dd if="$SNAP" of=/tmp/snap.img bs=1M iflag=direct 2>/dev/null || _fail "copying the snapshot failed"
awk -F'"' '/<block /{print $2, $2 + 1} /<range /{print $2, $4}' /tmp/inv.xml >/tmp/inv.ranges
_blocks=0
while read -r _b _e; do
	dd if=/dev/vde of=/tmp/snap.img bs=64k skip="$_b" seek="$_b" count=$((_e - _b)) \
		conv=notrunc iflag=direct 2>/dev/null || _fail "copying blocks $_b-$_e failed"
	_blocks=$((_blocks + _e - _b))
done </tmp/inv.ranges
_log "era_invalidate lists $_blocks blocks of 64 KiB written since era $ERA"
[ "$(sha256sum </tmp/snap.img)" = "$(dd if=/dev/vde bs=1M iflag=direct 2>/dev/null | sha256sum)" ] ||
	_fail "the snapshot plus the $_blocks blocks era listed is not the device: era missed writes made while the snapshot was on top of it"
fsfreeze --unfreeze /mnt
_fio_signal CONT
rm -f /tmp/snap.img
_log "the snapshot plus the blocks era listed == the device (sha256)"

_fsck_ext4 "$SNAP"
_mount "$SNAP" /snap ro,noload
_manifest_check /tmp/before.sums /snap/before
[ ! -e /snap/after ] || _fail "the snapshot has /after, written after the point in time"
umount /snap
[ "$(_snap_field st /dev/vde state)" = valid ] || _fail "the snapshot is not valid"

interposer snapshot remove st
dmsetup ls | grep -q '^st-' && _fail "dm devices of the snapshot are left"
interposer info /dev/vde | grep -q vde-era || _fail "/dev/vde is not back on vde-era"
[ -b /dev/interposer/vde ] || _fail "the era device's lower device was removed"
_fio_stop live
interposer remove vde-era >/dev/null
_snap_gone st
umount /mnt
_mount /dev/vde /mnt
[ "$(find /mnt/after -type f | wc -l)" -eq 8 ] || _fail "the origin lost files written after"
umount /mnt
_fsck_ext4 /dev/vde
_dmesg_check
_log "Test complete"
