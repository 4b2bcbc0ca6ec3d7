#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# ext4 on the whole of /dev/vdb is mounted and fio writes and verifies through
# it the whole time.  A dm-linear interposer is created live, the writes go
# on, and it is removed live.  Files written before, during and after are
# checked against their checksums after a remount (so they are read from the
# disk), fio verifies every block it wrote, e2fsck is clean, and the
# interposer's counter proves that bios really went through dm-linear.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="put dm-linear on a mounted, busy ext4 disk and take it away live, losing nothing"

. /tests/common/rc

_load_module
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start live /mnt 16M
sleep 2

SZ=$(blockdev --getsz /dev/vdb)
_log "create vdb-lin live"
echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin ||
	_fail "interposer create vdb-lin failed"
dmsetup table vdb-lin | grep -q "^0 $SZ linear 259:" ||
	_fail "dmsetup does not show vdb-lin over the lower device: $(dmsetup table vdb-lin)"
interposer ls
_fill_files /mnt/during 16
_manifest_make /mnt/during /tmp/during.sums
sleep 3
_before=$(_counter /dev/vdb redirected)
sync
_after=$(_counter /dev/vdb redirected)
[ "$_after" -gt 0 ] && [ "$_after" -gt "$_before" ] ||
	_fail "no bio went through the interposer (redirected $_before -> $_after)"
_log "bios redirected through vdb-lin so far: $_after"

_log "remove vdb-lin live"
interposer remove vdb-lin || _fail "interposer remove vdb-lin failed"
dmsetup info vdb-lin >/dev/null 2>&1 && _fail "vdb-lin is still a dm device after remove"
[ -e /dev/interposer/vdb ] && _fail "the unused lower device was not removed"
_fill_files /mnt/after 16
_manifest_make /mnt/after /tmp/after.sums
sleep 2
_fio_stop live

umount /mnt || _fail "umount failed"
_mount /dev/vdb /mnt
for _m in before during after; do
	_manifest_check /tmp/$_m.sums /mnt/$_m
done
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
rmmod blk_interposer || _fail "rmmod after remove failed"
echo "Test complete"
