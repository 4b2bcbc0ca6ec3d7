#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot-under-udev: on a host with udev running, `interposer snapshot create` of a
# filesystem mounted from /etc/fstab by UUID, reading the snapshot, and `snapshot remove`
# never move /dev/disk/by-uuid away from the real device, although the snapshot, the
# origin and our lower device all carry the same filesystem UUID.
#
# How: ext4 on /dev/vdb mounted on /srv/snap from fstab, files with a sha256 manifest, a
# file writer going on. `snapshot create --cow /dev/vdc`, `udevadm settle`; the link must
# be /dev/vdb; `udevadm trigger` of every block device and settle again, same check. The
# snapshot is mounted ro,noload and must match the manifest exactly and pass e2fsck -fn;
# `blkid` of the snapshot shows the UUID (so udev did see it). After `snapshot remove` the
# link is still /dev/vdb, no dm device is left, and the filesystem is clean.
#
# ORDER: 20
# TIMEOUT: 900

DESCRIPTION="a live snapshot read while udev runs never moves /dev/disk/by-uuid off the real device"

. /tests/system/rc
set -e

_log "Running snapshot-under-udev: $DESCRIPTION"
_sys_install
modprobe blk_interposer || _fail "modprobe blk_interposer failed"
DEV=/dev/vdb
MNT=/srv/snap
_sys_fstab_mount "$DEV" "$MNT"
UUID=$SYS_UUID
_fill_files "$MNT/before" 24
_manifest_make "$MNT/before" /root/snap-before.sums
_file_writer_start "$MNT/writer" 0.2
_sys_by_uuid_is "$UUID" "$DEV" "before the snapshot"

_log "interposer snapshot create --name bk --cow /dev/vdc $DEV"
interposer snapshot create --name bk --cow /dev/vdc "$DEV" || _fail "snapshot create failed"
interposer snapshot ls
SNAP=/dev/mapper/bk-vdb-snap
[ -b "$SNAP" ] || _fail "$SNAP does not exist"
_sys_by_uuid_is "$UUID" "$DEV" "with the snapshot"
udevadm trigger --action=change --subsystem-match=block
_sys_by_uuid_is "$UUID" "$DEV" "with the snapshot, after udevadm trigger"
[ "$(blkid -s UUID -o value "$SNAP")" = "$UUID" ] ||
	_fail "blkid of $SNAP shows UUID '$(blkid -s UUID -o value "$SNAP")', not the origin's $UUID"

mkdir -p /mnt/snap
mount -o ro,noload "$SNAP" /mnt/snap || _fail "mounting the snapshot ro,noload failed"
_sys_by_uuid_is "$UUID" "$DEV" "while the snapshot is mounted"
_manifest_check /root/snap-before.sums /mnt/snap/before
umount /mnt/snap
_fsck_ext4 "$SNAP"
_sys_by_uuid_is "$UUID" "$DEV" "after reading the snapshot"

interposer snapshot remove bk || _fail "snapshot remove failed"
_snap_gone bk
_sys_by_uuid_is "$UUID" "$DEV" "after snapshot remove"
_file_writer_stop
umount "$MNT"
_fsck_ext4 "$DEV"
mount "$MNT" || _fail "mount $MNT (from fstab) failed"
_manifest_check /root/snap-before.sums "$MNT/before"
_file_batches_check "$MNT/writer"
_sys_fstab_drop "$MNT"
_dmesg_check
_log "Test complete"
