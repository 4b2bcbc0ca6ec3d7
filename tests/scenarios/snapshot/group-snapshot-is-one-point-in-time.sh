#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# snapshot/group-snapshot-is-one-point-in-time: one `snapshot create` of two
# mounted partitions captures both at one point in time: a writer that
# alternates between them shows, in the two snapshots, sequence numbers that
# no two separate snapshots could show.
#
# How: GPT on /dev/vdb, ext4 on vdb1 (A) and vdb2 (B), both mounted.  A
# writer loops N = 1, 2, ...: write N into A/seq, fsync, then write N into
# B/seq, fsync.  So A(N) is on disk before B(N) starts, and B(N) before
# A(N+1) starts.  `snapshot create --cow /dev/vdc /dev/vdb1 /dev/vdb2` runs in
# the middle (one COW device split into two slices).  Let a and b be the
# numbers in A's and B's snapshots.  The invariant checked is 0 <= a - b <= 1:
# the SWITCH freezes A and B (one after the other, in either order) and
# thaws neither before both are switched.  If A froze first at a, the writer
# can at most finish B(a) before it blocks on A: b is a or a-1.  If B froze
# first at b, it can at most finish A(b+1) before it blocks on B: a is b or
# b+1.  A freeze writes back everything written before it, so the images
# hold exactly those numbers.  Two separate snapshots let the writer run on
# between them and break the invariant (a - b < 0 by the writer's progress).
# The writer must also have gone on after the point in time (the origins
# have more than a), both snapshots are fsck-clean, and after `snapshot
# remove` both partitions are clean and their own again.
#
# TIMEOUT: 600
DESCRIPTION="one snapshot create of two partitions is one point in time for both"

. /tests/common/rc
set -e

_have_program sgdisk
_have_module dm_snapshot
_load_module

_log "Running snapshot/group-snapshot-is-one-point-in-time: $DESCRIPTION"

sgdisk -o -n 1:1MiB:+200MiB -n 2:0:+200MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb2 ] || _fail "partition vdb2 did not appear"
_mkfs_ext4 /dev/vdb1
_mkfs_ext4 /dev/vdb2
_mount /dev/vdb1 /a
_mount /dev/vdb2 /b

# _seq_write FILE N: N, zero-padded, in place at the start of FILE, fsync'd.
_seq_write() {
	printf '%010d\n' "$2" | dd of="$1" bs=11 count=1 conv=notrunc,fsync 2>/dev/null
}
_seq_write /a/seq 0
_seq_write /b/seq 0
sync
rm -f /tmp/stop-seq
(
	trap - EXIT
	_n=0
	while [ ! -e /tmp/stop-seq ]; do
		_n=$((_n + 1))
		_seq_write /a/seq "$_n" || exit 1
		_seq_write /b/seq "$_n" || exit 1
	done
) &
_WRITER=$!
_i=0
while [ "$(cat /b/seq)" -lt 20 ]; do
	_i=$((_i + 1))
	[ "$_i" -lt 600 ] || _fail "the writer did not get to 20 in 60 s"
	sleep 0.1
done
_log "writer at $(cat /a/seq) before the snapshot"

interposer snapshot create --name grp --cow /dev/vdc /dev/vdb1 /dev/vdb2
_after=$(cat /b/seq)
sleep 3
touch /tmp/stop-seq
wait "$_WRITER" || _fail "the writer failed"
interposer snapshot ls
for _d in /dev/vdb1 /dev/vdb2; do
	[ "$(_snap_field grp "$_d" state)" = valid ] || _fail "the snapshot of $_d is not valid"
done
# one half of /dev/vdc each, less the first MiB of each half that create keeps zeroed
_half=$(($(blockdev --getsz /dev/vdc) / 2 / 128 * 128))
_vdc=$(cat /sys/class/block/vdc/dev)
[ "$(dmsetup table grp-vdb1-cow)" = "0 $((_half - 2048)) linear $_vdc 2048" ] ||
	_fail "vdb1's COW slice is not the first half of /dev/vdc: $(dmsetup table grp-vdb1-cow)"
[ "$(dmsetup table grp-vdb2-cow)" = "0 $((_half - 2048)) linear $_vdc $((_half + 2048))" ] ||
	_fail "vdb2's COW slice is not the second half of /dev/vdc: $(dmsetup table grp-vdb2-cow)"

_fsck_ext4 /dev/mapper/grp-vdb1-snap
_fsck_ext4 /dev/mapper/grp-vdb2-snap
_mount /dev/mapper/grp-vdb1-snap /sa ro,noload
_mount /dev/mapper/grp-vdb2-snap /sb ro,noload
A=$(sed 's/^0*//' /sa/seq)
B=$(sed 's/^0*//' /sb/seq)
A=${A:-0}
B=${B:-0}
ORIGIN_A=$(sed 's/^0*//' /a/seq)
_log "snapshot A=$A B=$B; origin A=$ORIGIN_A; seq read right after create: $_after"
echo "SNAPSHOT-GROUP-FIGURES a=$A b=$B origin_a=$ORIGIN_A"
[ "$A" -ge 20 ] || _fail "snapshot A has $A, but the writer was at 20 or more before"
[ $((A - B)) -ge 0 ] && [ $((A - B)) -le 1 ] ||
	_fail "snapshots A=$A B=$B: not one point in time (A - B must be 0 or 1)"
[ "$ORIGIN_A" -gt "$A" ] || _fail "the writer did not go on after the point in time ($ORIGIN_A)"
umount /sa
umount /sb

interposer snapshot remove grp
_snap_gone grp
umount /a
umount /b
_fsck_ext4 /dev/vdb1
_fsck_ext4 /dev/vdb2
_dmesg_check
_log "Test complete"
