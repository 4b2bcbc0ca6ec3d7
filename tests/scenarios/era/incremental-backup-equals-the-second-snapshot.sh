#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# An incremental backup made of only the ranges `interposer era changed`
# lists, applied to a full copy of a first snapshot, equals a second snapshot
# byte for byte: changed-block tracking misses no write.
#
# How: ext4 on /dev/vdb1 is written by a file writer the whole time.  dm-era
# is attached live, a checkpoint gives era E1 (the boundary: every write after
# the first snapshot's point in time is in E1 or later), then `interposer
# snapshot create` stacks snapshot-origin over the era interposer and the
# snapshot is copied whole to /dev/vda.  After more writes a second snapshot
# is taken; only the byte ranges `era changed --since E1` lists are copied
# from it onto the full copy, which must then hash like the second snapshot
# (and not before: the writes changed something) and pass e2fsck.
#
# TIMEOUT: 900
#
# The VM runs this after a fresh boot with four empty disks: /dev/vda 128M,
# vdb 512M, vdc 256M, vdd 64M.

DESCRIPTION="full copy + the ranges era changed lists == the second snapshot"

. /tests/common/rc
set -e

_have_program sgdisk sha256sum
_load_module

_log "Running era/incremental-backup-equals-the-second-snapshot: $DESCRIPTION"

sgdisk -o -n 1:1MiB:+120MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb1 ] || _fail "partition vdb1 did not appear"
SZ=$(blockdev --getsize64 /dev/vdb1)
[ "$SZ" -le "$(blockdev --getsize64 /dev/vda)" ] || _fail "vda cannot hold a copy of vdb1"
_mkfs_ext4 /dev/vdb1 -b 4096
_mount /dev/vdb1 /n
_fill_files /n/before 16
_file_writer_start /n/w 0.2

interposer era attach /dev/vdb1 --metadata /dev/vdd --block-size 64k ||
	_fail "interposer era attach failed"
E1=$(interposer era checkpoint vdb1)
_log "boundary: era $E1"

interposer snapshot create --name full --cow /dev/vdc /dev/vdb1 ||
	_fail "interposer snapshot create (full) failed"
[ -b /dev/mapper/full-vdb1-snap ] || _fail "no /dev/mapper/full-vdb1-snap: $(dmsetup ls)"
dmsetup ls --tree
dd if=/dev/mapper/full-vdb1-snap of=/dev/vda bs=1M iflag=direct oflag=direct 2>/dev/null ||
	_fail "the full copy failed"
interposer snapshot remove full || _fail "interposer snapshot remove full failed"
_log "full copy: $SZ bytes"

# More writes: the file writer goes on; some files change, some are new.
_fill_files /n/after 24
dd if=/dev/urandom of=/n/before/f3 bs=4k count=7 conv=notrunc,fsync 2>/dev/null
sleep 2

E2=$(interposer era checkpoint vdb1)
interposer snapshot create --name incr --cow /dev/vdc /dev/vdb1 ||
	_fail "interposer snapshot create (incr) failed"
[ -b /dev/mapper/incr-vdb1-snap ] || _fail "no /dev/mapper/incr-vdb1-snap: $(dmsetup ls)"
_want=$(sha256sum </dev/mapper/incr-vdb1-snap)
[ "$(head -c "$SZ" /dev/vda | sha256sum)" != "$_want" ] ||
	_fail "the full copy already equals the second snapshot: the scenario proves nothing"

interposer era changed vdb1 --since "$E1" >/tmp/ranges 2>/tmp/summary ||
	_fail "interposer era changed failed"
cat /tmp/summary
_bytes=0
while read -r _off _len; do
	dd if=/dev/mapper/incr-vdb1-snap of=/dev/vda bs=64k conv=notrunc \
		skip=$((_off / 65536)) seek=$((_off / 65536)) count=$(((_len + 65535) / 65536)) \
		2>/dev/null || _fail "copying $_len bytes at $_off failed"
	_bytes=$((_bytes + _len))
done </tmp/ranges
sync
_log "incremental: $(wc -l </tmp/ranges) ranges, $_bytes of $SZ bytes copied (since era $E1; next time since $E2)"
[ "$(head -c "$SZ" /dev/vda | sha256sum)" = "$_want" ] ||
	_fail "full copy + incremental differs from the second snapshot"
_log "full copy + incremental == second snapshot (sha256)"
_expect_exit "era detach under the snapshot" 4 "is stacked on .vdb1-era.*snapshot remove" \
	interposer era detach vdb1
interposer snapshot remove incr || _fail "interposer snapshot remove incr failed"

_file_writer_stop
interposer era detach vdb1 || _fail "interposer era detach failed"
umount /n
_fsck_ext4 /dev/vdb1
e2fsck -fn /dev/vda >/tmp/fsck.copy 2>&1 || {
	cat /tmp/fsck.copy
	_fail "the restored copy does not pass e2fsck -fn"
}
_log "e2fsck -fn of the restored copy: clean"
_mount /dev/vdb1 /n
_file_batches_check /n/w
umount /n
_dmesg_check
_log "Test complete"
