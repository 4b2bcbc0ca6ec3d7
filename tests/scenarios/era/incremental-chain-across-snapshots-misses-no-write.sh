#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# era/incremental-chain-across-snapshots-misses-no-write: a chain of
# incremental backups, each made of only the ranges `interposer era changed`
# lists, equals every snapshot of the chain byte for byte, while a raw
# O_DIRECT writer runs the whole time: through each snapshot's life, its
# removal and the next one's creation.  On a partition and on a whole disk.
#
# How: `interposer era attach` (64 KiB era blocks) on the device (a 32 MiB
# GPT partition of vdb, then the whole 32 MiB disk vde), under
# stamp-writer (every write carries a new sequence number, so no rewrite
# can look unchanged).  Checkpoint C0, snapshot S0, full copy of S0.  Each
# round k: remove S(k-1), let the writer run, checkpoint Ck, snapshot Sk;
# copy the ranges `era changed --since C(k-1)` lists from Sk onto the copy
# (4 KiB I/O, offsets and lengths checked to be 4 KiB multiples); the copy
# must then equal Sk (sha256), and Sk must differ from S(k-1) (the round
# proved something).  A mismatch prints the 4 KiB blocks that differ.  At
# the end `era changed` is compared with era_invalidate on a metadata
# snapshot, and stamp-writer verifies that the device holds every write.
# Last, dm-era is detached, block 300 written, dm-era attached again: a
# checkpoint from before the detach must be refused as a gap.
#
# Reported: on 6.1, 30-155 blocks differed per run after `era attach` on a
# partition plus a snapshot (the report suspected era left the path); and a
# detach, a write and an attach gave a list without the write, exit 0.
#
# TIMEOUT: 1500

DESCRIPTION="a chain of incrementals from era changed equals each snapshot, under raw writes"

. /tests/common/rc
set -e

_have_program sgdisk sha256sum stamp-writer era_invalidate
_have_module dm_snapshot dm_era
_load_module

_log "Running era/incremental-chain-across-snapshots-misses-no-write: $DESCRIPTION"

ROUNDS_PART=${ROUNDS_PART:-6}
ROUNDS_DISK=${ROUNDS_DISK:-3}

# _same_or_diag COPY SNAP SIZE WHAT SNAPSUM: the first SIZE bytes of COPY
# hash like SNAP (SNAPSUM, its sha256sum), or fail listing the 4 KiB blocks
# that differ.
_same_or_diag() {
	_a=$(head -c "$3" "$1" | sha256sum)
	[ "$_a" = "$5" ] && return 0
	cmp -l "$1" "$2" 2>/dev/null | awk '{ print int(($1 - 1) / 4096) }' | uniq >/tmp/diff.blocks || true
	_log "$(wc -l </tmp/diff.blocks) 4 KiB blocks differ, the first: $(head -20 /tmp/diff.blocks | tr '\n' ' ')"
	_fail "$4: the copy differs from the snapshot"
}

# _apply SNAP COPY RANGES: copy each "OFFSET LENGTH" range of RANGES from SNAP to COPY.
_apply() {
	_bytes=0
	while read -r _off _len; do
		[ $((_off % 4096)) -eq 0 ] && [ $((_len % 4096)) -eq 0 ] ||
			_fail "range $_off+$_len is not in 4 KiB units"
		dd if="$1" of="$2" bs=4096 skip=$((_off / 4096)) seek=$((_off / 4096)) \
			count=$((_len / 4096)) conv=notrunc iflag=direct oflag=direct 2>/dev/null ||
			_fail "copying $_len bytes at $_off failed"
		_bytes=$((_bytes + _len))
	done <"$3"
	sync
}

# _chain DEV KNAME COPY ROUNDS: the whole chain on DEV (kernel name KNAME),
# dm-era's metadata on /dev/vdb3, the COW store on /dev/vdc.
_chain() {
	_dev=$1
	_k=$2
	_copy=$3
	_sz=$(blockdev --getsize64 "$_dev")
	_sectors=$((_sz / 512))
	dd if=/dev/zero of=/dev/vdb3 bs=4k count=1 conv=fsync 2>/dev/null
	stamp-writer init --dev "$_dev" --sectors "$_sectors" --map "/tmp/$_k.map" >/dev/null ||
		_fail "stamp-writer init on $_dev failed"
	interposer era attach "$_dev" --metadata /dev/vdb3 --block-size 64k >/dev/null ||
		_fail "era attach $_dev failed"
	rm -f /tmp/stop-writer
	stamp-writer run --dev "$_dev" --map "/tmp/$_k.map" --stop /tmp/stop-writer \
		--threads 1 --max-sectors 128 --pause-ms 100 >"/tmp/$_k.writer" 2>&1 &
	_wpid=$!
	sleep 1

	_c=$(interposer era checkpoint "$_k")
	interposer snapshot create --name c0 --cow /dev/vdc "$_dev" >/dev/null ||
		_fail "snapshot create c0 failed"
	dd if="/dev/mapper/c0-$_k-snap" of="$_copy" bs=1M iflag=direct oflag=direct 2>/dev/null ||
		_fail "the full copy failed"
	_prev=c0
	_prevsum=$(sha256sum <"/dev/mapper/c0-$_k-snap")
	_same_or_diag "$_copy" "/dev/mapper/c0-$_k-snap" "$_sz" "$_dev full copy" "$_prevsum"
	_total=0
	_r=1
	while [ "$_r" -le "$4" ]; do
		interposer snapshot remove "$_prev" >/dev/null || _fail "snapshot remove $_prev failed"
		sleep 1
		_cn=$(interposer era checkpoint "$_k")
		interposer snapshot create --name "c$_r" --cow /dev/vdc "$_dev" >/dev/null ||
			_fail "snapshot create c$_r failed"
		_snap=/dev/mapper/c$_r-$_k-snap
		interposer era changed "$_k" --since "$_c" >/tmp/ranges 2>/dev/null ||
			_fail "era changed --since $_c failed"
		_apply "$_snap" "$_copy" /tmp/ranges
		_sum=$(sha256sum <"$_snap")
		[ "$_sum" != "$_prevsum" ] || _fail "round $_r: nothing changed between two snapshots"
		_same_or_diag "$_copy" "$_snap" "$_sz" "$_dev round $_r (since era $_c)" "$_sum"
		_total=$((_total + _bytes))
		_log "$_dev round $_r: $(wc -l </tmp/ranges) ranges, $_bytes bytes since era $_c: copy == snapshot"
		_prev=c$_r
		_prevsum=$_sum
		_c=$_cn
		_r=$((_r + 1))
	done

	# Our answer against dm-era's own tool, on one metadata snapshot.
	_ename=$_k-era
	dmsetup message "$_ename" 0 take_metadata_snap
	era_invalidate --written-since "${_c%@*}" --metadata-snapshot /dev/vdb3 >/tmp/inv.xml
	dmsetup message "$_ename" 0 drop_metadata_snap
	interposer era changed "$_k" --since "$_c" --json >/tmp/ours.json
	_inv_blocks=$(awk -F'"' '/<block /{n++} /<range /{n += $4 - $2} END {print n + 0}' /tmp/inv.xml)
	_our_blocks=$(sed -n 's/.*"changed_blocks": *\([0-9]*\).*/\1/p' /tmp/ours.json | head -1)
	_log "$_dev since era $_c: era_invalidate $_inv_blocks blocks, era changed $_our_blocks"
	# era changed takes a later metadata snapshot: it may only list more.
	[ "$_our_blocks" -ge "$_inv_blocks" ] || _fail "era changed lists fewer blocks than era_invalidate"

	touch /tmp/stop-writer
	_wait_gone "$_wpid" 60 "stamp-writer on $_dev"
	wait "$_wpid" || { cat "/tmp/$_k.writer"; _fail "stamp-writer on $_dev failed"; }
	tail -1 "/tmp/$_k.writer"
	interposer snapshot remove "$_prev" >/dev/null || _fail "snapshot remove $_prev failed"
	stamp-writer verify --dev "$_dev" --map "/tmp/$_k.map" || _fail "$_dev lost a write"
	_log "$_dev: $4 incrementals, $_total bytes in all, each equal to its snapshot"

	# A write while nothing tracks: after the next attach, a checkpoint from
	# before the detach is refused, never answered without that block.
	_e=$(interposer era checkpoint "$_k")
	interposer era detach "$_k" >/dev/null || _fail "era detach $_k failed"
	dd if=/dev/urandom of="$_dev" bs=64k seek=300 count=1 oflag=direct 2>/dev/null ||
		_fail "the write at block 300 failed"
	interposer era attach "$_dev" --metadata /dev/vdb3 --block-size 64k >/dev/null ||
		_fail "era attach $_dev again failed"
	_expect_exit "$_dev: changed since a checkpoint before detach, write, attach" 6 \
		"tracking began again at era [0-9]+ \(after .era detach. at era [0-9]+\).*take a full backup" \
		interposer era changed "$_k" --since "$_e"
	interposer era detach "$_k" >/dev/null || _fail "era detach $_k failed"
}

# vdb1: the partition tracked; vdb2: the copy; vdb3: dm-era's metadata.
sgdisk -o -n 1:1MiB:+32MiB -n 2:0:+64MiB -n 3:0:+16MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb1 ] && [ -b /dev/vdb2 ] && [ -b /dev/vdb3 ] || _fail "partitions of vdb did not appear"

_chain /dev/vdb1 vdb1 /dev/vdb2 "$ROUNDS_PART"
_chain /dev/vde vde /dev/vdb2 "$ROUNDS_DISK"

dmsetup ls | grep -v '^No devices' && _fail "dm devices are left"
_dmesg_check
_log "Test complete"
