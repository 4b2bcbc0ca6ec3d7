#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# A GPT partition at a non-zero offset is interposed while 1 MiB O_DIRECT
# writes run on it and the disk's max_sectors_kb is forced to 16, so that the
# block layer splits every write and resubmits the remainders, across each
# create and remove.  The neighbouring partition is left unmounted: its raw
# checksum must not change by a single byte.  A remainder redirected with the
# wrong offset (a bug this scenario found once) lands in the wrong place and
# fails fio's verify or the neighbour's checksum.
#
# TIMEOUT: 900
DESCRIPTION="interpose a partition under split 1 MiB direct writes; the neighbour stays bit-identical"

. /tests/common/rc

_load_module
sgdisk -o -n 1:1MiB:+96MiB -n 2:0:+320MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb2 ] || _fail "partition vdb2 did not appear"
_log "vdb2 starts at sector $(cat /sys/class/block/vdb2/start)"

_mkfs_ext4 /dev/vdb1
_mount /dev/vdb1 /n
_fill_files /n/files 24
_manifest_make /n/files /tmp/neighbour.sums
umount /n
_neighbour=$(sha256sum </dev/vdb1)

echo 16 >/sys/block/vdb/queue/max_sectors_kb || _fail "cannot set max_sectors_kb"
_mkfs_ext4 /dev/vdb2
_mount /dev/vdb2 /mnt
_fio_verify_start big /mnt 48M 1M
_fio_verify_start small /mnt 8M
sleep 2

SZ=$(blockdev --getsz /dev/vdb2)
# Each switch is a chance to catch a split remainder on its way: many short
# cycles catch a mishandled one far more often than a few long ones.
_i=0
while [ $_i -lt 20 ]; do
	_i=$((_i + 1))
	echo "0 $SZ linear [interpose]/dev/vdb2 0" | interposer create vdb2-lin >/dev/null ||
		_fail "create #$_i failed"
	sleep 1
	[ "$(_counter /dev/vdb2 redirected)" -gt 0 ] ||
		_fail "no bio went through vdb2-lin in cycle #$_i"
	interposer remove vdb2-lin >/dev/null || _fail "remove #$_i failed"
done
_log "20 create/remove cycles done"
_fio_stop big
_fio_stop small
umount /mnt
_fsck_ext4 /dev/vdb2

[ "$(sha256sum </dev/vdb1)" = "$_neighbour" ] ||
	_fail "the neighbouring partition vdb1 changed"
_log "neighbour vdb1 is bit-identical"
_fsck_ext4 /dev/vdb1
_mount /dev/vdb1 /n
_manifest_check /tmp/neighbour.sums /n/files
umount /n
_dmesg_check
echo "Test complete"
