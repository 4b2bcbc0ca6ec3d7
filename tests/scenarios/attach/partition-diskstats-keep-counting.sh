#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# attach/partition-diskstats-keep-counting: while a partition is interposed,
# its own /proc/diskstats line counts the I/O aimed at it, exactly, as it
# does when nothing is attached (what iostat and monitoring read), and the
# bytes land where the partition puts them.
#
# How: GPT on /dev/vdb, vdb1 and vdb2, nothing mounted, nothing else doing
# I/O.  Three rounds of 1 MiB O_DIRECT writes and reads of random data at
# 8 MiB into vdb2 (2048 sectors each way): before the attach, with a
# dm-linear interposer attached, and after it is removed.  In every round
# the sectors read and written of vdb2 and of the whole disk vdb must grow
# by exactly 2048 and vdb1's not at all; while attached, the dm device's own
# counters must grow by exactly 2048 too (the I/O did go through it).  The
# module before this scenario moved the lower device's bios to the whole
# disk, so vdb2's line stood still while attached.  The data read back
# through the whole disk at vdb2's start + 8 MiB must be what was written
# (the partition offset applied once, not twice), and vdb1 must be
# bit-identical.
#
# TIMEOUT: 300
# KERNELS: all
DESCRIPTION="an interposed partition's /proc/diskstats line counts its I/O exactly"

. /tests/common/rc
set -e

_load_module

_log "Running attach/partition-diskstats-keep-counting: $DESCRIPTION"

sgdisk -o -n 1:1MiB:+64MiB -n 2:0:+64MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb2 ] || _fail "partition vdb2 did not appear"
START=$(cat /sys/class/block/vdb2/start)
_log "vdb2 starts at sector $START"
dd if=/dev/urandom of=/dev/vdb1 bs=1M count=4 oflag=direct 2>/dev/null
NEIGHBOUR=$(sha256sum </dev/vdb1)

# _sectors NAME: "sectors-read sectors-written" of NAME's /proc/diskstats line.
_sectors() {
	awk -v d="$1" '$3 == d { print $6, $10; found = 1 } END { if (!found) exit 1 }' \
		/proc/diskstats || _fail "$1 has no line in /proc/diskstats"
}

# _round WHAT DM: write and read 1 MiB at 8 MiB into vdb2 and check every
# counter's growth; DM is the interposer's dm disk name, or "" when detached.
_round() {
	dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null
	sync
	sleep 1
	_b2=$(_sectors vdb2)
	_b=$(_sectors vdb)
	_b1=$(_sectors vdb1)
	[ -z "$2" ] || _bd=$(_sectors "$2")
	dd if=/tmp/pattern of=/dev/vdb2 bs=1M seek=8 count=1 oflag=direct 2>/dev/null ||
		_fail "$1: the write to vdb2 failed"
	dd if=/dev/vdb2 of=/tmp/back bs=1M skip=8 count=1 iflag=direct 2>/dev/null ||
		_fail "$1: the read of vdb2 failed"
	_a2=$(_sectors vdb2)
	_a=$(_sectors vdb)
	_a1=$(_sectors vdb1)
	_check "$1" vdb2 "$_b2" "$_a2" 2048
	_check "$1" vdb "$_b" "$_a" 2048
	_check "$1" vdb1 "$_b1" "$_a1" 0
	if [ -n "$2" ]; then
		_ad=$(_sectors "$2")
		_check "$1" "$2 (the interposer)" "$_bd" "$_ad" 2048
	fi
	cmp -s /tmp/pattern /tmp/back || _fail "$1: vdb2 did not read back what was written"
	dd if=/dev/vdb of=/tmp/whole bs=512 skip=$((START + 16384)) count=2048 iflag=direct \
		2>/dev/null || _fail "$1: the read of the whole disk failed"
	cmp -s /tmp/pattern /tmp/whole ||
		_fail "$1: the whole disk does not hold the data at vdb2's start + 8 MiB"
	_log "$1: vdb2, vdb${2:+ and $2} counted exactly 2048 sectors read and written, vdb1 none; data in place"
}

# _check WHAT DEV BEFORE AFTER N: both the read and the written sectors grew by N.
_check() {
	set -- "$1" "$2" $3 $4 "$5"
	# $3 $4: read, written before; $5 $6: after; $7: N
	[ $(($5 - $3)) -eq "$7" ] && [ $(($6 - $4)) -eq "$7" ] ||
		_fail "$1: $2 counted $(($5 - $3)) sectors read and $(($6 - $4)) written, not $7 each"
}

_round "not attached" ""

SZ=$(blockdev --getsz /dev/vdb2)
echo "0 $SZ linear [interpose]/dev/vdb2 0" | interposer create vdb2-lin >/dev/null ||
	_fail "interposer create failed"
DM=$(dmsetup info -c --noheadings -o blkdevname vdb2-lin | tr -d ' ')
[ -n "$DM" ] || _fail "no dm disk for vdb2-lin"
_round "attached" "$DM"
interposer remove vdb2-lin >/dev/null || _fail "interposer remove failed"

_round "removed again" ""

[ "$(sha256sum </dev/vdb1)" = "$NEIGHBOUR" ] || _fail "the neighbouring partition vdb1 changed"
_log "vdb1 is bit-identical"
_dmesg_check
_log "Test complete"
