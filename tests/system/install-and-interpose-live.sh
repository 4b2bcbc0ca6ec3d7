#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# install-and-interpose-live: on a Debian 12 host with systemd and udev, `apt install` of
# our two packages builds the module with DKMS for the running kernel, and a dm-linear
# interposer put on a filesystem that is mounted from /etc/fstab by UUID and written by
# fio, then removed, confuses neither udev nor systemd nor the data.
#
# How: ext4 on /dev/vdb, mounted on /srv/data from an fstab line `UUID=...`. The packages
# are installed (modinfo and dkms status must name DKMS's /updates/dkms build for
# `uname -r`), then fio writes and verifies from before the create to after the remove (not
# during the install: in a TCG guest it took half the CPU the DKMS build needs). `interposer create` and
# `interposer remove` a linear interposer live; before, during and after, `udevadm settle
# --timeout=60` returns 0 and /dev/disk/by-uuid/UUID resolves to /dev/vdb exactly (the dm
# device and our lower device show the same filesystem: a udev rule that missed them would
# move the link). During, `interposer ls` lists it and its counter grows. At the end fio
# verifies every block, the files of before/during/after match their checksums after a
# remount from fstab, e2fsck -fn is clean, and systemd shows the mount active, not failed.
#
# ORDER: 10
# TIMEOUT: 1200

DESCRIPTION="apt install builds the module with DKMS; interposing a mounted fstab filesystem live keeps by-uuid, udev and the data intact"

. /tests/system/rc
set -e

_log "Running install-and-interpose-live: $DESCRIPTION"
DEV=/dev/vdb
MNT=/srv/data
_sys_fstab_mount "$DEV" "$MNT"
UUID=$SYS_UUID
UNIT=$(systemd-escape --path --suffix=mount "$MNT")
_sys_by_uuid_is "$UUID" "$DEV" "before install"
_fill_files "$MNT/before" 16
_manifest_make "$MNT/before" /root/before.sums

_sys_install
_sys_module_from_dkms
modprobe blk_interposer || _fail "modprobe blk_interposer failed after the install"
[ -c /dev/blk-interposer ] || _fail "/dev/blk-interposer did not appear"
_sys_by_uuid_is "$UUID" "$DEV" "after install"

_fio_verify_start live "$MNT" 16M
SZ=$(blockdev --getsz "$DEV")
_log "interposer create vdb-lin on the mounted $DEV"
echo "0 $SZ linear [interpose]$DEV 0" | interposer create vdb-lin ||
	_fail "interposer create vdb-lin failed"
interposer ls | tee /root/ls.out
grep -q "^$DEV .*vdb-lin .*attached" /root/ls.out || _fail "interposer ls does not show $DEV attached to vdb-lin"
_fill_files "$MNT/during" 16
_manifest_make "$MNT/during" /root/during.sums
_before=$(_counter "$DEV" redirected)
sync
_after=$(_counter "$DEV" redirected)
[ "$_after" -gt "$_before" ] || _fail "no bio went through vdb-lin (redirected $_before -> $_after)"
_log "bios redirected through vdb-lin: $_after"
_sys_by_uuid_is "$UUID" "$DEV" "while interposed"
# udev re-reads every block device, as on a `udevadm trigger` after a rules change.
udevadm trigger --action=change --subsystem-match=block
_sys_by_uuid_is "$UUID" "$DEV" "while interposed, after udevadm trigger"
[ "$(findmnt -n -o SOURCE "$MNT")" = "$DEV" ] || _fail "$MNT moved to $(findmnt -n -o SOURCE "$MNT")"

_log "interposer remove vdb-lin"
interposer remove vdb-lin || _fail "interposer remove vdb-lin failed"
dmsetup info vdb-lin >/dev/null 2>&1 && _fail "vdb-lin is still a dm device"
interposer ls | grep -q vdb-lin && _fail "interposer ls still lists vdb-lin"
_sys_by_uuid_is "$UUID" "$DEV" "after remove"
_fill_files "$MNT/after" 16
_manifest_make "$MNT/after" /root/after.sums
_fio_stop live

systemctl is-active -q "$UNIT" || _fail "$UNIT is $(systemctl is-active "$UNIT"), not active"
umount "$MNT" || _fail "umount $MNT failed"
_fsck_ext4 "$DEV"
mount "$MNT" || _fail "mount $MNT (from fstab) failed"
for _m in before during after; do
	_manifest_check /root/$_m.sums "$MNT/$_m"
done
_sys_by_uuid_is "$UUID" "$DEV" "after the remount"
_sys_fstab_drop "$MNT"
_dmesg_check
_log "Test complete"
