#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# lower-device-refuses-writers: on a Debian host with udev and our rule, the lower device
# of a filesystem mounted from /etc/fstab refuses Debian's own mkfs.ext4, wipefs,
# blkdiscard and dd (util-linux and e2fsprogs as installed, not the test VM's), while udev
# has seen it; the filesystem and its by-uuid link are untouched.
#
# How: ext4 on /dev/vdb mounted from fstab by UUID, files with a manifest, fio verify; a
# linear interposer created live; after `udevadm trigger` and settle, every writer of
# _lower_refuses_writers must fail "busy"/"in use" on /dev/interposer/vdb, udev must have
# made no by-* link to it, and by-uuid stays /dev/vdb; after remove, fio verifies, the
# manifest matches after a remount from fstab, e2fsck -fn is clean.
#
# ORDER: 15
# TIMEOUT: 900

DESCRIPTION="the lower device refuses mkfs, wipefs, blkdiscard and dd on a udev host"

. /tests/system/rc
set -e

_log "Running lower-device-refuses-writers: $DESCRIPTION"
_sys_install
modprobe blk_interposer || _fail "modprobe blk_interposer failed"
DEV=/dev/vdb
MNT=/srv/lower
_sys_fstab_mount "$DEV" "$MNT"
UUID=$SYS_UUID
_fill_files "$MNT/before" 16
_manifest_make "$MNT/before" /root/lower.sums
_fio_verify_start lower "$MNT" 16M
SZ=$(blockdev --getsz "$DEV")
interposer create vdb-lin --table "0 $SZ linear [interpose]$DEV 0" >/dev/null ||
	_fail "interposer create vdb-lin failed"
L=/dev/interposer/vdb
udevadm trigger --action=change --subsystem-match=block
_sys_by_uuid_is "$UUID" "$DEV" "interposed, after udevadm trigger"
_links=$(find /dev/disk -type l -lname '*interposer*' 2>/dev/null)
[ -z "$_links" ] || _fail "udev made /dev/disk links to our devices: $_links"

_lower_refuses_writers "$L"
_sys_by_uuid_is "$UUID" "$DEV" "after the refused writers"

_fio_stop lower
interposer remove vdb-lin >/dev/null || _fail "interposer remove vdb-lin failed"
umount "$MNT"
_fsck_ext4 "$DEV"
mount "$MNT" || _fail "mount $MNT (from fstab) failed"
_manifest_check /root/lower.sums "$MNT/before"
_sys_fstab_drop "$MNT"
_dmesg_check
_log "Test complete"
