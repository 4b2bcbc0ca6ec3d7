#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# 50 create/remove cycles of a dm-linear interposer on a mounted ext4 while
# fio writes and verifies, and a buffered writer adds files.  No command may
# fail, fio must verify every block, every file must match its checksum after
# a remount, and e2fsck must be clean.
#
# TIMEOUT: 1200
# KERNELS: all
DESCRIPTION="50 live create/remove cycles under verified load lose nothing"

. /tests/common/rc

CYCLES=${CYCLES:-50}
_load_module
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start cycles /mnt 16M
_file_writer_start /mnt/files
sleep 2

SZ=$(blockdev --getsz /dev/vdb)
_c=0
while [ $_c -lt "$CYCLES" ]; do
	_c=$((_c + 1))
	echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin >/dev/null ||
		_fail "create failed in cycle $_c"
	[ $((_c % 10)) -eq 0 ] && interposer ls
	interposer remove vdb-lin >/dev/null || _fail "remove failed in cycle $_c"
done
_log "$CYCLES cycles done"
_file_writer_stop
_fio_stop cycles
umount /mnt
_mount /dev/vdb /mnt
_file_batches_check /mnt/files
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
echo "Test complete"
