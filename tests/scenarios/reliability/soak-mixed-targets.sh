#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# A soak: CYCLES (200) live create/remove cycles of interposers with different dm
# targets on a busy, mounted ext4 lose no write and leak no memory.
#
# How: ext4 on /dev/vdb is mounted, fio writes and verifies a file in it and a
# second writer adds checksummed files.  The cycles rotate through three
# targets: dm-linear; dm-era (`era META [interpose]/dev/vdb 128`, metadata on
# /dev/vdd, reused from cycle to cycle); and snapshot-origin on the device
# with a `snapshot` of it (COW on /dev/vdc, non-persistent) on the lower
# device, after which the origin is suspended and resumed (prototype/NOTES.md:
# the origin computes its chunk boundary at resume).  The snapshot must stay
# valid.  Afterwards fio verifies every block, all files match their
# checksums after a remount, and e2fsck is clean.
#
# Memory: the figures are taken twice with the writers stopped, synced and
# caches dropped: after a warm-up round of each target (so that the dm
# targets' own caches exist) and after the last cycle.  The active objects of
# the bio caches (bio-*, biovec-*) and of the dm caches (dm_*, kcopyd_job),
# and SUnreclaim, must not grow by more than a tolerance below one object per
# cycle: BIO_TOLERANCE objects, SLAB_TOLERANCE_KB of SUnreclaim.  Before each
# measurement every slab cache is shrunk (/sys/kernel/slab/*/shrink), which
# flushes the per-CPU slabs whose free objects slabinfo counts as active.
# The module's size (/proc/modules) and MemAvailable are printed as well.
#
# TIMEOUT: 1500
DESCRIPTION="live create/remove cycles of linear, era and snapshot interposers lose nothing and leak nothing"

. /tests/common/rc

# The issue asks for 200 cycles: 408 s on 6.12 under TCG with two VMs on two
# cores, which the suite can afford.  After the shrink the bio and dm caches
# came back exactly (0 objects of growth over 90 cycles on both kernels), so
# the tolerance stays below one object per cycle of one target.
CYCLES=${CYCLES:-200}
BIO_TOLERANCE=16
SLAB_TOLERANCE_KB=2048
_have_program fio
_have_module dm_era dm_snapshot
_load_module

SZ=$(blockdev --getsz /dev/vdb)

# _cycle N: create and remove interposer N's target (N mod 3: linear, era, snapshot).
_cycle() {
	case $(($1 % 3)) in
	0)
		echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create soak-lin >/dev/null ||
			_fail "cycle $1: create linear failed"
		interposer remove soak-lin >/dev/null || _fail "cycle $1: remove linear failed"
		;;
	1)
		echo "0 $SZ era /dev/vdd [interpose]/dev/vdb 128" | interposer create soak-era >/dev/null ||
			_fail "cycle $1: create era failed"
		dmsetup message soak-era 0 checkpoint >/dev/null || _fail "cycle $1: era checkpoint failed"
		interposer remove soak-era >/dev/null || _fail "cycle $1: remove era failed"
		;;
	2)
		echo "0 $SZ snapshot-origin [interpose]/dev/vdb" | interposer create soak-origin >/dev/null ||
			_fail "cycle $1: create snapshot-origin failed"
		dmsetup create soak-snap --table "0 $SZ snapshot /dev/interposer/vdb /dev/vdc N 8" ||
			_fail "cycle $1: create snapshot failed"
		dmsetup suspend soak-origin && dmsetup resume soak-origin ||
			_fail "cycle $1: suspend/resume of the origin failed"
		_st=$(dmsetup status soak-snap)
		case $_st in
		*Invalid* | *Overflow* | *Merge*failed*) _fail "cycle $1: the snapshot is $_st" ;;
		esac
		dmsetup remove soak-snap || _fail "cycle $1: remove snapshot failed"
		interposer remove soak-origin >/dev/null || _fail "cycle $1: remove snapshot-origin failed"
		;;
	esac
	[ -e /dev/interposer/vdb ] && _fail "cycle $1: the lower device was left behind"
	return 0
}

# _slab_quiesce: sync, drop the caches and shrink every slab cache, which also
# flushes the per-CPU slabs whose free objects /proc/slabinfo counts as active.
_slab_quiesce() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	for _f in /sys/kernel/slab/*/shrink; do
		echo 1 >"$_f" 2>/dev/null || true
	done
	sleep 1
}

# _slab_figures: "bio=N dm=N sunreclaim_kb=N available_kb=N module=N", quiescent;
# also keeps /proc/slabinfo in /tmp/slabinfo.$1.
_slab_figures() {
	_slab_quiesce
	cp /proc/slabinfo /tmp/slabinfo."$1"
	_bio=$(awk '$1 ~ /^(bio-|biovec-)/ { n += $2 } END { print n + 0 }' /proc/slabinfo)
	_dm=$(awk '$1 ~ /^(dm_|kcopyd_job)/ { n += $2 } END { print n + 0 }' /proc/slabinfo)
	_unr=$(awk '/^SUnreclaim:/ { print $2 }' /proc/meminfo)
	_avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
	_mod=$(awk '$1 == "blk_interposer" { print $2 }' /proc/modules)
	echo "bio=$_bio dm=$_dm sunreclaim_kb=$_unr available_kb=$_avail module=${_mod:-0}"
}

_slab_print() {
	awk '$1 ~ /^(bio-|biovec-|dm_|kcopyd_job|bio_)/ { printf "  %-24s %8d active %8d total\n", $1, $2, $3 }' /proc/slabinfo
}

# _slab_growth: the caches whose active objects grew most from start to end.
_slab_growth() {
	awk 'NR == FNR { if ($1 !~ /^#|^slabinfo/) a[$1] = $2; next }
		$1 !~ /^#|^slabinfo/ && $2 - a[$1] != 0 { printf "  %-24s %+8d objects (%d -> %d)\n", $1, $2 - a[$1], a[$1], $2 }' \
		/tmp/slabinfo.start /tmp/slabinfo.end | sort -k2 -n -r | head -8
}

_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
# Warm-up, no writers: one cycle of each target creates the dm targets' caches.
_cycle 0
_cycle 1
_cycle 2
START=$(_slab_figures start)
_log "memory at start: $START"
_slab_print

_fio_verify_start soak /mnt 16M
_file_writer_start /mnt/files 1
sleep 2

_t0=$(cut -d. -f1 /proc/uptime)
_c=0
while [ $_c -lt "$CYCLES" ]; do
	_c=$((_c + 1))
	_cycle $_c
	[ $((_c % 25)) -eq 0 ] && _log "$_c cycles"
done
_t1=$(cut -d. -f1 /proc/uptime)
_log "$CYCLES cycles in $((_t1 - _t0)) s"

_file_writer_stop
_fio_stop soak
interposer ls
[ -z "$(interposer ls | grep -v '^No interposed')" ] || _fail "interposer ls is not empty"

END=$(_slab_figures end)
_log "memory at start: $START"
_log "memory at end:   $END"
_slab_print
_log "caches that changed most (all caches, after shrinking):"
_slab_growth
_get() { echo "$1" | sed -n "s/.*$2=\([0-9]*\).*/\1/p"; }
_dbio=$(($(_get "$END" bio) - $(_get "$START" bio)))
_ddm=$(($(_get "$END" dm) - $(_get "$START" dm)))
_dunr=$(($(_get "$END" sunreclaim_kb) - $(_get "$START" sunreclaim_kb)))
_log "growth over $CYCLES cycles: bio caches $_dbio objects, dm caches $_ddm objects, SUnreclaim $_dunr KiB (tolerances: $BIO_TOLERANCE objects, $SLAB_TOLERANCE_KB KiB)"
echo "SLAB-FIGURES kernel=$(uname -r) cycles=$CYCLES start: $START end: $END"
[ "$_dbio" -le "$BIO_TOLERANCE" ] || _fail "bio caches grew by $_dbio objects over $CYCLES cycles"
[ "$_ddm" -le "$BIO_TOLERANCE" ] || _fail "dm caches grew by $_ddm objects over $CYCLES cycles"
[ "$_dunr" -le "$SLAB_TOLERANCE_KB" ] || _fail "SUnreclaim grew by $_dunr KiB over $CYCLES cycles"

umount /mnt
_mount /dev/vdb /mnt
_file_batches_check /mnt/files
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
rmmod blk_interposer || _fail "rmmod after the soak failed"
_log "Test complete"
