#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# attach/larger-logical-blocks-are-refused: a device's users align their I/O
# to its logical block size, not to the interposer's.  ext4 with 1 KiB
# blocks on a 512-byte disk keeps sending 1 KiB I/O after a switch; an
# interposer whose table stacks a 4 KiB-sector device (a 4Kn disk, here a
# null_blk with bs=4096) has 4 KiB logical blocks and fails that I/O (tried:
# without the refusal the attach succeeds, and ext4 can no longer read its
# own superblock through it).  Refused at create, at the bare attach and at a
# switch, with both sizes in the message; nothing is left behind and the
# mounted filesystem under fio verify is untouched.  An interposer with the
# device's own block size is still accepted afterwards.
#
# TIMEOUT: 300

DESCRIPTION="an interposer with larger logical blocks than the device is refused, and the filesystem is untouched"

. /tests/common/rc
set -e

_load_module
_log "Running attach/larger-logical-blocks-are-refused: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vdb)
mkfs.ext4 -q -F -b 1024 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start live /mnt 8M

modprobe null_blk nr_devices=1 bs=4096 memory_backed=1 gb=1
[ -b /dev/nullb0 ] || _fail "no /dev/nullb0"
[ "$(blockdev --getss /dev/nullb0)" = 4096 ] || _fail "nullb0 does not have 4 KiB sectors"
[ "$(blockdev --getss /dev/vdb)" = 512 ] || _fail "vdb does not have 512-byte sectors"

# create: the table grows the device by 4 KiB onto the 4Kn device.
_expect_exit "create with a 4 KiB-sector device in the table" 7 \
	"interposer has 4096-byte logical blocks, the device 512-byte" \
	interposer create vdb-4k --table "0 $SZ linear [interpose]/dev/vdb 0
$SZ 8 linear /dev/nullb0 0"
[ -z "$(dmsetup ls | grep -v 'No devices found')" ] ||
	_fail "the refused create left a dm device: $(dmsetup ls)"
[ -e /dev/interposer/vdb ] && _fail "the refused create left /dev/interposer/vdb"

# The bare attach and a switch reach the kernel's own check.
interposer create vdb-lin --table "0 $SZ linear [interpose]/dev/vdb 0" >/dev/null ||
	_fail "create vdb-lin failed"
dmsetup create n4k --table "0 $SZ linear /dev/interposer/vdb 0
$SZ 8 linear /dev/nullb0 0"
dmsetup mknodes n4k
[ "$(blockdev --getss /dev/mapper/n4k)" = 4096 ] || _fail "n4k does not have 4 KiB blocks"
_expect_exit "switch to a 4 KiB interposer" 7 "4096-byte logical blocks, the device 512-byte" \
	interposer switch /dev/vdb=/dev/mapper/n4k
[ "$(interposer info /dev/vdb | grep -c vdb-lin)" -ge 1 ] || _fail "vdb left vdb-lin"
interposer detach /dev/vdb >/dev/null || _fail "detach failed"
_expect_exit "attach to a 4 KiB interposer" 7 "4096-byte logical blocks, the device 512-byte" \
	interposer attach /dev/vdb /dev/mapper/n4k
interposer attach /dev/vdb /dev/mapper/vdb-lin >/dev/null || _fail "re-attach to vdb-lin failed"
[ "$(_counter /dev/vdb attaches)" -ge 2 ] || _fail "vdb-lin is not attached again"
dmsetup remove n4k
rmmod null_blk
sleep 2

_fio_stop live
interposer remove vdb-lin >/dev/null || _fail "remove failed"
umount /mnt
_fsck_ext4 /dev/vdb
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
umount /mnt
_dmesg_check
_log "Test complete"
