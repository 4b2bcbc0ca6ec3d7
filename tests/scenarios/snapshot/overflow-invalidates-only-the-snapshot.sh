#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/overflow-invalidates-only-the-snapshot: a COW store far too small
# for the writes invalidates the snapshot and nothing else: `snapshot ls`
# says invalid with the reason, the origin loses no write, `snapshot remove`
# cleans up (loop device and COW file too), fsck is clean, the kernel log
# has no error.
#
# How: ext4 on /dev/vdb under fio (random 4 KiB O_DIRECT writes over 24 MiB,
# verified) and a file writer; `snapshot create --cow-file` with a 4 MiB
# file, about 1000 chunks of 4 KiB: the first pass of fio alone needs 6000.
# Wait for dm-snapshot to drop the snapshot ("Invalid" status), keep writing,
# then stop and verify everything on the origin.
#
# TIMEOUT: 600
DESCRIPTION="COW overflow invalidates only the snapshot; the origin loses nothing and remove cleans up"

. /tests/common/rc
set -e

_have_program fio losetup
_have_module dm_snapshot loop
_load_module

_log "Running snapshot/overflow-invalidates-only-the-snapshot: $DESCRIPTION"

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start heavy /mnt 24M
_file_writer_start /mnt/files
sleep 2

interposer snapshot create --name ovf --cow-file /tmp/ovf.cow --cow-size 4M /dev/vdb
_i=0
while [ "$(_snap_field ovf /dev/vdb state)" != invalid ]; do
	_i=$((_i + 1))
	[ "$_i" -lt 240 ] || _fail "the snapshot is still $(_snap_field ovf /dev/vdb state) after 120 s of writes"
	sleep 0.5
done
_log "the snapshot is invalid after about $((_i / 2)) s"
interposer snapshot ls
_reason=$(_snap_field ovf /dev/vdb reason)
echo "$_reason" | grep -q "COW store full (overflow)" || _fail "ls --json gives the reason '$_reason'"
[ "$(_snap_field ovf /dev/vdb attached)" = true ] || _fail "/dev/vdb is no longer on its origin"
dmesg | grep -i "snapshot" | tail -3
sleep 3

_file_writer_stop
_fio_stop heavy
interposer snapshot remove ovf
_snap_gone ovf
[ ! -e /tmp/ovf.cow ] || _fail "the COW file is left behind"
losetup -a | grep -q ovf.cow && _fail "the loop device is left behind"
umount /mnt
_mount /dev/vdb /mnt
_file_batches_check /mnt/files
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_log "Test complete"
