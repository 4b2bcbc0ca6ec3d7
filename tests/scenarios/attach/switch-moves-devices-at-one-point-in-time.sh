#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# SWITCH, the kernel's move of several devices at one point in time, under
# fio verify on two mounted partitions:
# - an attached partition moves from one interposer straight to another and
#   back, while a second partition is attached and detached in the same call;
#   each interposer's own I/O counters show where the bios went;
# - a switch with one bad entry (an interposer on the same disk, a loop that
#   only exists after the switch, a device named twice) changes nothing, and
#   the error names the entry;
# then both filesystems are fsck clean and fio verifies every block.
#
# TIMEOUT: 600
DESCRIPTION="move two live devices between interposers in one call; a refused call changes nothing"

. /tests/common/rc

_load_module
sgdisk -o -n 1:1MiB:+200MiB -n 2:0:+200MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb2 ] || _fail "partition vdb2 did not appear"
for p in 1 2; do
	_mkfs_ext4 /dev/vdb$p
	_mount /dev/vdb$p /m$p
	_fio_verify_start w$p /m$p 24M
done
SZ=$(blockdev --getsz /dev/vdb1)
SZ2=$(blockdev --getsz /dev/vdb2)

# x1 is attached to vdb1; y1 is a second linear over vdb1's lower device.
echo "0 $SZ linear [interpose]/dev/vdb1 0" | interposer create x1 >/dev/null || _fail "create x1 failed"
dmsetup create y1 --table "0 $SZ linear /dev/interposer/vdb1 0" && dmsetup mknodes y1 ||
	_fail "dmsetup create y1 failed"
# z2 over vdb2's lower device, left idle by the low-level detach.
echo "0 $SZ2 linear [interpose]/dev/vdb2 0" | interposer create z2 >/dev/null || _fail "create z2 failed"
interposer detach /dev/vdb2 >/dev/null || _fail "detach vdb2 failed"

# _ios NAME: reads + writes completed by dm device NAME (its own disk stats).
_ios() {
	_mm=$(dmsetup info -c --noheadings -o major,minor "$1" | tr -d ' ')
	awk '{ print $1 + $5 }' "/sys/dev/block/$_mm/stat"
}

# _busy NAME: NAME must complete I/O within 2 s (fio writes all the time).
_busy() {
	_a=$(_ios "$1")
	sleep 2
	[ "$(_ios "$1")" -gt "$_a" ] || _fail "$2: no I/O reached $1"
}

# _idle NAME: NAME must complete no new I/O (after a second to let bios in flight end).
_idle() {
	sleep 1
	_a=$(_ios "$1")
	sleep 2
	[ "$(_ios "$1")" -eq "$_a" ] || _fail "$2: I/O still reaches $1"
}

_busy x1 "before any switch"
_i=0
while [ $_i -lt 4 ]; do
	_i=$((_i + 1))
	interposer switch /dev/vdb1=/dev/mapper/y1 /dev/vdb2=/dev/mapper/z2 >/dev/null ||
		_fail "switch #$_i to y1 + z2 failed"
	_busy y1 "switch #$_i"
	_busy z2 "switch #$_i"
	_idle x1 "switch #$_i"
	interposer switch /dev/vdb1=/dev/mapper/x1 /dev/vdb2=none >/dev/null ||
		_fail "switch #$_i back to x1 failed"
	_busy x1 "switch #$_i back"
	_idle y1 "switch #$_i back"
	_idle z2 "switch #$_i back"
done
_log "$_i round trips: vdb1 x1 -> y1 -> x1 and vdb2 attached and detached with it"

# _on DEV: the interposer DEV is attached to, as MAJ:MIN.
_on() {
	interposer --json info "$1" | sed -n 's/.*"interposer_dev": *"\([0-9:]*\)".*/\1/p'
}
_x1=$(_on /dev/vdb1)
[ -n "$_x1" ] || _fail "interposer info /dev/vdb1 shows no interposer"

_expect_fail "an interposer on the same disk" "vdb2.*(loop|itself)" \
	interposer switch /dev/vdb1=/dev/mapper/y1 /dev/vdb2=/dev/vdb1
_expect_fail "a loop that only the switch would make" "loop" \
	interposer switch /dev/vdb1=/dev/mapper/y1 /dev/mapper/y1=/dev/vdb2
_expect_fail "a device named twice" "appears twice" \
	interposer switch /dev/vdb1=none /dev/vdb1=/dev/mapper/y1
_expect_fail "detaching an idle device" "not attached" \
	interposer switch /dev/vdb1=/dev/mapper/y1 /dev/vdb2=none
[ "$(_on /dev/vdb1)" = "$_x1" ] || _fail "a refused switch moved vdb1"
_busy x1 "after the refused switches"
_idle y1 "after the refused switches"
_y1=$(basename "$(readlink -f "/sys/dev/block/$(dmsetup info -c --noheadings -o major,minor y1 | tr -d ' ')")")
[ ! -e "/sys/block/interposer!$_y1" ] ||
	_fail "the lower device of $_y1 that a refused switch created is still there"

interposer remove x1 >/dev/null || _fail "remove x1 failed"
dmsetup remove y1 || _fail "dmsetup remove y1 failed"
interposer remove z2 >/dev/null || _fail "remove z2 failed"
for p in 1 2; do
	_fio_stop w$p
	umount /m$p
	_fsck_ext4 /dev/vdb$p
done
_dmesg_check
echo "Test complete"
