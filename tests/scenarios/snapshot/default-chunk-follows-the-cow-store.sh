#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/default-chunk-follows-the-cow-store: `snapshot create` without
# --chunk-size takes 4 KiB chunks when the COW slice is smaller than the
# device (4 KiB copies the least for a filesystem's scattered writes, so the
# slice lasts longest) and 64 KiB when the slice holds every chunk of the
# device (nothing can overflow it, and fewer copies cost the application
# less); the metadata stays in memory (N); `create` says what it chose.
#
# How:
# 1. ext4 on /dev/vdb (512 MiB) with a 64 MiB file; the same fio job (2000
#    random 4 KiB O_DIRECT writes, fixed seed) under a snapshot with COW on
#    /dev/vdc (256 MiB) with 4K, 64K and no chunk option: the default's table
#    must say 4K and `N`, and 4K and the default must each use less COW than
#    64K.  (The default's use is not compared with 4K's to the sector: ext4's
#    own writes, journal commits every 5 s, differ by a few chunks from run
#    to run, e.g. 15128 against 15160 sectors.)
#    Under TCG 4K used about 15250 sectors and 64K about 112900 (7.4 times:
#    the writes hit about 880 of the 1024 64 KiB chunks).  After each run
#    `blkid -p /dev/vdc` must find nothing: ext4's unfreeze rewrites its
#    superblock, so the first copy is vdb's first chunk, and the COW store
#    must not show it as a second ext4 with vdb's UUID (create keeps the
#    first MiB of each slice zeroed and away from dm-snapshot).
# 2. /dev/vde (32 MiB) with COW on /dev/vdc: the default is 64K, `N`, and the
#    worst case is the device, 65536 sectors.  Then every sector of vde is
#    overwritten: the COW use must be exactly 65536 sectors, the snapshot
#    valid and equal to vde before (sha256), vde equal to what was written.
#
# TIMEOUT: 600
DESCRIPTION="the default chunk is 4 KiB for a COW slice smaller than the device, 64 KiB for one that holds it"

. /tests/common/rc
set -e

_have_program fio sha256sum blkid
_have_module dm_snapshot
_load_module

_log "Running snapshot/default-chunk-follows-the-cow-store: $DESCRIPTION"

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
dd if=/dev/zero of=/mnt/data bs=1M count=64 conv=fsync 2>/dev/null

for _chunk in 4K 64K default; do
	_opt="--chunk-size $_chunk"
	[ "$_chunk" != default ] || _opt=
	# shellcheck disable=SC2086
	interposer snapshot create --name ck $_opt --cow /dev/vdc /dev/vdb >/tmp/create.txt
	fio --name=scatter --filename=/mnt/data --size=64M --rw=randwrite --bs=4k --direct=1 \
		--ioengine=psync --number_ios=2000 --randseed=42 --norandommap --eta=never >/dev/null ||
		_fail "fio failed"
	_used=$(_snap_field ck /dev/vdb cow_used)
	[ "$(_snap_field ck /dev/vdb state)" = valid ] || _fail "the $_chunk snapshot is not valid"
	_rc=0
	_seen=$(blkid -p /dev/vdc 2>&1) || _rc=$?
	[ "$_rc" = 2 ] || _fail "blkid finds something on the COW store ($_chunk, rc $_rc): $_seen"
	[ "$(_snap_field ck /dev/vdb persistent)" = false ] || _fail "the $_chunk snapshot is not N"
	_log "chunk $_chunk: COW in use $_used sectors after 2000 random 4 KiB writes"
	echo "SNAPSHOT-CHUNK-FIGURES kernel=$(uname -r) chunk=$_chunk cow_used_sectors=$_used"
	eval "USED_$_chunk=\$_used"
	if [ "$_chunk" = default ]; then
		_c=$(_snap_field ck /dev/vdb chunk)
		[ "$_c" = 8 ] || _fail "the default chunk on a 256 MiB slice for 512 MiB is $_c sectors, not 8"
		grep -q "chunk 4.0 KiB (chosen: the COW slice is smaller than the device)" /tmp/create.txt ||
			_fail "create does not say the chunk it chose: $(cat /tmp/create.txt)"
	fi
	interposer snapshot remove ck >/dev/null
done
_snap_gone ck
[ "$USED_default" -lt "$USED_64K" ] || _fail "the default used $USED_default sectors, 64 KiB chunks $USED_64K"
[ "$USED_4K" -lt "$USED_64K" ] || _fail "4 KiB chunks used $USED_4K sectors, 64 KiB chunks $USED_64K"
_log "64 KiB chunks used $(echo "$USED_4K $USED_64K" | awk '{ printf "%.1f", $2 / $1 }') times the COW of 4 KiB chunks"
umount /mnt
_fsck_ext4 /dev/vdb

# 2. a slice that holds the whole device
dd if=/dev/urandom of=/dev/vde bs=1M count=32 conv=fsync 2>/dev/null
_before=$(sha256sum </dev/vde)
interposer snapshot create --name big --cow /dev/vdc /dev/vde >/tmp/create.txt
cat /tmp/create.txt
_c=$(_snap_field big /dev/vde chunk)
[ "$_c" = 128 ] || _fail "the default chunk on a 256 MiB slice for 32 MiB is $_c sectors, not 128"
[ "$(_snap_field big /dev/vde persistent)" = false ] || _fail "the default snapshot is not N"
[ "$(_snap_field big /dev/vde cow_worst)" = 65536 ] ||
	_fail "worst case $(_snap_field big /dev/vde cow_worst) sectors, not the device's 65536"
grep -q "chunk 64.0 KiB (chosen: the COW slice, .*, holds every chunk of the device), .*; worst case 32.0 MiB of COW, it cannot overflow" /tmp/create.txt ||
	_fail "create does not say the chunk it chose and why"
dd if=/dev/urandom of=/tmp/new bs=1M count=32 2>/dev/null
dd if=/tmp/new of=/dev/vde bs=1M oflag=direct 2>/dev/null
[ "$(_snap_field big /dev/vde state)" = valid ] || _fail "the snapshot is $(_snap_field big /dev/vde state)"
_used=$(_snap_field big /dev/vde cow_used)
[ "$_used" = 65536 ] || _fail "every chunk was written: COW use $_used sectors, not 65536"
[ "$(sha256sum </dev/mapper/big-vde-snap)" = "$_before" ] || _fail "the snapshot is not vde as it was"
[ "$(sha256sum </dev/vde)" = "$(sha256sum </tmp/new)" ] || _fail "vde is not what was written"
_log "64 KiB chunks: every chunk copied, $_used sectors, the snapshot equals vde before"
interposer snapshot remove big >/dev/null
_snap_gone big
_dmesg_check
_log "Test complete"
