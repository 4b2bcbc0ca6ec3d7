#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# reliability/forced-rmmod-keeps-the-module-in-place: Debian's kernels allow
# `rmmod -f` (CONFIG_MODULE_FORCE_UNLOAD), which unloads a module whatever
# holds it.  Unloaded while a device is interposed, the module would let that
# device's bios bypass its interposer and leave dm tables calling into freed
# code.  Instead the module's exit refuses to go on: the forced rmmod waits
# (for ever, in an idle sleep that trips no hung-task warning), the kernel
# says why, and the interposed filesystem keeps working through its
# interposer until the reboot.
#
# How: ext4 on /dev/vdb under fio verify, a linear interposer created live.
# `rmmod -f blk_interposer` in the background must still be running 5 s
# later, the kernel log must carry the module's refusal, and the interposer's
# own write count (/sys/block/dm-N/stat) must grow with new writes (no
# bypass).  fio verifies, the files match, e2fsck is clean (read through the
# interposer), and the kernel log has no Oops, warning or hung task.
#
# TIMEOUT: 300

DESCRIPTION="rmmod -f while interposed: the module stays, nothing bypasses the interposer, the filesystem is intact"

. /tests/common/rc
set -e

_load_module
_log "Running reliability/forced-rmmod-keeps-the-module-in-place: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vdb)
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start live /mnt 8M
interposer create vdb-lin --table "0 $SZ linear [interpose]/dev/vdb 0" >/dev/null ||
	_fail "create failed"
DM=$(dmsetup info -c --noheadings -o blkdevname vdb-lin)
[ -e "/sys/block/$DM/stat" ] || _fail "no /sys/block/$DM/stat"

rmmod -f blk_interposer >/tmp/rmmod.out 2>&1 &
RPID=$!
sleep 5
kill -0 "$RPID" 2>/dev/null || {
	cat /tmp/rmmod.out
	_fail "rmmod -f returned: the module was unloaded under an interposed device"
}
dmesg | grep -q 'blk_interposer: forced unload while devices are interposed' ||
	_fail "the kernel log does not say why the module stays"
_log "rmmod -f is still waiting; the kernel says: $(dmesg | grep 'forced unload' | tail -1)"

# Writes still go through the interposer (field 5 of stat: writes completed).
_w0=$(awk '{ print $5 }' "/sys/block/$DM/stat")
_fill_files /mnt/after 16
_manifest_make /mnt/after /tmp/after.sums
sync
_w1=$(awk '{ print $5 }' "/sys/block/$DM/stat")
[ "$_w1" -gt "$_w0" ] || _fail "no write went through $DM after rmmod -f ($_w0 -> $_w1)"
_log "writes through $DM after rmmod -f: $_w0 -> $_w1"

_fio_stop live
umount /mnt
_fsck_ext4 /dev/vdb
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
_manifest_check /tmp/after.sums /mnt/after
umount /mnt
kill -0 "$RPID" 2>/dev/null || _fail "rmmod -f returned in the end"
_dmesg_check
_log "Test complete"
