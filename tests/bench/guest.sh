#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The guest side of `cargo xtask bench` (xtask/src/bench/): not a scenario, `cargo xtask
# test` never runs it.  The VM boots it as scenario=../bench/guest.sh, with one vCPU under
# `-accel tcg,thread=single` and the instruction-counting plugin loaded.
#
# Parameters on the kernel command line: bench.rounds=N bench.ios=N (I/Os of one 4k job;
# 1M jobs do N/4) bench.calib=N (insn-marker loop length) bench.cow=MiB (snapshot writes per
# run) bench.stall=SECONDS (one writer run around an attach)
# bench.parts=calib,matrix,snap,stall[,cow] bench.profile=1 (hand over the kernel's symbols
# for the plugin's profile: `cargo xtask bench --profile`) bench.cowrounds=N (rounds of the
# snapshot-cost part) bench.cowconfigs=a,b,... (its snapshot configurations, `_cow_args`).
#
# Jobs do a fixed number of I/Os, not a fixed time: on a busy host qemu is sometimes
# descheduled for most of a second, and a time-based job then did a handful of I/Os whose
# instruction count was all fio's own bookkeeping (seen: 1 I/O in a 1 s job).
#
# Every measured fio run is bracketed by the marker instructions (fio's exec_prerun and
# exec_postrun run `insn-marker start|stop` in the job process right before its first and
# after its last I/O), and gets one line in $OUT/runs, in marker order:
#	SEQ calib N                                         insn-marker loop N (2N instructions)
#	SEQ fio PART DEVSET CONFIG WORKLOAD ROUND FILE      a marked fio job (the job named
#	                                                    WORKLOAD in the JSON in FILE)
#	- stall EVENT ROUND FILE                            an unmarked writer run
#	- cow CONFIG WORKLOAD ROUND SECTORS CHUNK           COW sectors in use after a run
#	                                                    of the cow part, and the chunk
# At the end everything in $OUT is written to /dev/vda as `=== NAME` sections ending with
# `=== END`, for the host to read from vda.img.

. /tests/common/rc
set -e

_arg() {
	sed -n "s/.*bench\.$1=\([^ ]*\).*/\1/p" /proc/cmdline
}
ROUNDS=$(_arg rounds)
IOS=$(_arg ios)
CALIB=$(_arg calib)
COW=$(_arg cow)
STALL=$(_arg stall)
PARTS=$(_arg parts)
PROFILE=$(_arg profile)
COWROUNDS=$(_arg cowrounds)
COWCONFIGS=$(_arg cowconfigs)
: "${ROUNDS:=3}" "${IOS:=2048}" "${CALIB:=20000000}" "${COW:=8}" "${STALL:=3}"
: "${PARTS:=calib,matrix,snap,stall}" "${COWROUNDS:=3}"
: "${COWCONFIGS:=none,default,4k-P,4k,8k,16k,32k,256k}"

_have_program fio insn-marker interposer dmsetup
# No transparent huge pages: whether fio's 1M buffers happened to get one decided the cost
# of a 1M write (pinning 256 pages or a few), which made 1M seqwrite bimodal, 63k or 80k
# instructions per I/O from round to round.
_thp=/sys/kernel/mm/transparent_hugepage/enabled
[ ! -w "$_thp" ] || echo never >"$_thp"
# ... and 1M writes from a hugetlb buffer: with 4k pages the cost of a 1M write still moved
# by +-15 % with how contiguous fio's buffer happened to be in physical memory (how many
# bvecs bio_iov_iter_get_pages() built, how often the bio was split: seen with --profile).
# fio's buffer is iodepth x bs = 16 MiB, eight 2 MiB pages.
_seqmem=
if echo 16 >/proc/sys/vm/nr_hugepages 2>/dev/null &&
	[ "$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)" -ge 9 ]; then
	_seqmem=--iomem=shmhuge
else
	_log "no huge pages: 1M writes from 4k pages, expect their counts to vary"
fi
OUT=/tmp/bench
mkdir -p "$OUT" /tmp/work
cd /tmp/work
SEQ=0

# _dm_node NAME: /dev/mapper/NAME, made by dmsetup if nothing else did (no udev here).
_dm_node() {
	[ -b "/dev/mapper/$1" ] || dmsetup mknodes "$1"
	[ -b "/dev/mapper/$1" ] || _fail "no /dev/mapper/$1"
}

# _ksyms: for a profile, the text symbols that attribute the addresses of the marked runs
# from here on: the kernel's once, the modules' after every interposer create (a module
# may load at another address each time, and the hook's ftrace trampoline, listed with
# them, is made when the first lower device is).
_ksyms() {
	[ "$PROFILE" = 1 ] || return 0
	[ -e "$OUT/ksyms" ] || grep ' [tT] ' /proc/kallsyms | grep -v '\[' >"$OUT/ksyms"
	grep ' [tT] .*\[' /proc/kallsyms >"$OUT/modsyms-$((SEQ + 1))"
}

_part() {
	case ",$PARTS," in *",$1,"*) return 0 ;; esac
	return 1
}

# _workload NAME: the fio arguments of a workload (runtime: only a safety cap).
_workload() {
	_n="--number_ios=$IOS --runtime=120"
	case $1 in
	randread) echo "--rw=randread --bs=4k $_n" ;;
	randwrite) echo "--rw=randwrite --bs=4k $_n" ;;
	seqwrite) echo "--rw=write --bs=1M --number_ios=$((IOS / 2)) --runtime=120 $_seqmem" ;;
	randrw) echo "--rw=randrw --rwmixread=70 --bs=4k $_n" ;;
	*) _fail "unknown workload $1" ;;
	esac
}
WORKLOADS="randread randwrite seqwrite randrw"

# _fio PART DEVSET CONFIG ROUND DEV "WORKLOAD ARGS" ...: one fio run of one job per
# workload, one after the other (stonewall); each job is bracketed by the markers (fio runs
# exec_prerun/exec_postrun in every job) and gets its own line in the index.  The first
# job, `tare`, does a single I/O.
_fio() {
	_file=$(printf '%04d' $((SEQ + 1))).json
	_head="$1 $2 $3"
	_round=$4
	_dev=$5
	shift 5
	_jobs=
	_lines=
	# the tare: one I/O, so that the host can subtract what the markers themselves cost
	# (a shell starting insn-marker, twice: some million instructions)
	for _job in "tare --rw=read --bs=4k --number_ios=1" "$@"; do
		SEQ=$((SEQ + 1))
		_jobs="$_jobs --name=$_job --stonewall"
		_lines="$_lines$SEQ fio $_head ${_job%% *} $_round $_file
"
	done
	# shellcheck disable=SC2086
	fio --filename="$_dev" --direct=1 --ioengine=libaio --iodepth=16 \
		--exec_prerun="insn-marker start" --exec_postrun="insn-marker stop" \
		--output-format=json --output="$OUT/$_file" $_jobs >>"$OUT/fio.err" 2>&1 || {
		tail -20 "$OUT/fio.err"
		ls -l "$_dev"
		_fail "fio failed: $_head $_round on $_dev"
	}
	printf '%s' "$_lines" >>"$OUT/runs"
}

# _timed PART DEVSET CONFIG ROUND DEV: every workload in one fio run.
_timed() {
	for _w in $WORKLOADS; do
		set -- "$@" "$_w $(_workload "$_w")"
	done
	_fio "$@"
}

# ---- calibration: a loop of known length between the markers ----
if _part calib; then
	for _i in 1 2 3; do
		SEQ=$((SEQ + 1))
		insn-marker loop "$CALIB"
		echo "$SEQ calib $CALIB" >>"$OUT/runs"
	done
	_log "calibration: 3 loops of $CALIB"
fi

# ---- the matrix: devices x configurations x workloads, round-robin ----

# _state_plain SET DEV1 DEV2 ROUND: module not loaded: no-module (DEV2), raw (DEV1), then
# a dm-linear stacked on DEV1 before use.
_state_plain() {
	! grep -q '^blk_interposer ' /proc/modules || _fail "blk_interposer is loaded in the plain state"
	_timed matrix "$1" no-module "$4" "$3"
	_timed matrix "$1" raw "$4" "$2"
	dmsetup create bench-lin --table "0 $(blockdev --getsz "$2") linear $2 0"
	_dm_node bench-lin
	_timed matrix "$1" dm-linear "$4" /dev/mapper/bench-lin
	dmsetup remove bench-lin
}

# _state_attached SET DEV1 DEV2 ROUND: DEV1 interposed live by a linear target; DEV2 is
# the bystander.
_state_attached() {
	modprobe blk_interposer
	echo "0 $(blockdev --getsz "$2") linear [interpose]$2 0" | interposer create bench-int >/dev/null
	_ksyms
	_timed matrix "$1" interposed "$4" "$2"
	_timed matrix "$1" bystander "$4" "$3"
	_r0=$(_counter "$2" redirected)
	[ "$_r0" -gt 0 ] || _fail "nothing was redirected through bench-int"
	interposer remove bench-int >/dev/null
	rmmod blk_interposer
}

if _part matrix; then
	modprobe null_blk nr_devices=2 || _fail "modprobe null_blk failed"
	for _r in $(seq 1 "$ROUNDS"); do
		for _set in null_blk virtio; do
			case $_set in
			null_blk) _d1=/dev/nullb0 _d2=/dev/nullb1 ;;
			virtio) _d1=/dev/vdb _d2=/dev/vdc ;;
			esac
			# alternate the order of the states from round to round
			if [ $((_r % 2)) -eq 1 ]; then
				_state_plain "$_set" "$_d1" "$_d2" "$_r"
				_state_attached "$_set" "$_d1" "$_d2" "$_r"
			else
				_state_attached "$_set" "$_d1" "$_d2" "$_r"
				_state_plain "$_set" "$_d1" "$_d2" "$_r"
			fi
		done
		_log "matrix: round $_r of $ROUNDS done"
	done
fi

# ---- snapshots: a live snapshot through the interposer against one stacked before use ----

# _snap_run CONFIG ROUND: build, measure (writes into fresh chunks, then reads of the
# snapshot), tear down.
_snap_run() {
	_sz=$(blockdev --getsz /dev/vdb)
	# a fresh persistent COW store every time
	dd if=/dev/zero of=/dev/vdd bs=4k count=16 conv=fsync 2>/dev/null
	case $1 in
	snap-stacked)
		dmsetup create bench-origin --table "0 $_sz snapshot-origin /dev/vdb"
		dmsetup create bench-snap --table "0 $_sz snapshot /dev/vdb /dev/vdd P 8"
		_dm_node bench-origin
		_target=/dev/mapper/bench-origin
		;;
	snap-interposed)
		echo "0 $_sz snapshot-origin [interpose]/dev/vdb" | interposer create bench-origin >/dev/null
		_ksyms
		dmsetup create bench-snap --table "0 $_sz snapshot /dev/interposer/vdb /dev/vdd P 8"
		_target=/dev/vdb
		;;
	esac
	# the origin learns about the snapshot (and its chunk size) when it resumes
	dmsetup suspend bench-origin
	dmsetup resume bench-origin
	_dm_node bench-snap
	# randwrite's random map writes each 4k block once: every write copies a fresh chunk
	_fio snap virtio "$1" "$2" "$_target" "cow-randwrite --rw=randwrite --bs=4k --io_size=${COW}m"
	_fio snap virtio "$1" "$2" /dev/mapper/bench-snap \
		"snap-randread $(_workload randread)"
	case $(dmsetup status bench-snap) in
	*Invalid* | *Overflow*) _fail "the snapshot became invalid: $(dmsetup status bench-snap)" ;;
	esac
	dmsetup remove bench-snap
	case $1 in
	snap-stacked) dmsetup remove bench-origin ;;
	snap-interposed) interposer remove bench-origin >/dev/null ;;
	esac
}

if _part snap; then
	modprobe dm_snapshot
	modprobe blk_interposer
	for _r in $(seq 1 "$ROUNDS"); do
		if [ $((_r % 2)) -eq 1 ]; then
			_snap_run snap-stacked "$_r"
			_snap_run snap-interposed "$_r"
		else
			_snap_run snap-interposed "$_r"
			_snap_run snap-stacked "$_r"
		fi
		_log "snapshot: round $_r of $ROUNDS done"
	done
	rmmod blk_interposer
fi

# ---- what a live snapshot costs the application: ext4 on vdf, COW store vdg ----
#
# The workloads of issue 15, through `interposer snapshot create` as a user runs it
# (the filesystem stays mounted; create freezes it for the switch):
#	dense	20 000 4k random direct writes (libaio QD16) into a 256 MiB file: fio's random
#		map writes each block once, so with 4k chunks every write copies a chunk
#	second	the same 20 000 writes again (same seed): every chunk is copied already
#	sparse	4 000 such writes over a 700 MiB file, on a fresh snapshot
#	snap-read	1M sequential reads of the first 256 MiB of the snapshot after `second`
#		(of vdf itself in `none`)
# The COW sectors in use after each write run go to the index.

DENSE="--rw=randwrite --bs=4k --size=256m --number_ios=20000 --runtime=600"
SPARSE="--rw=randwrite --bs=4k --size=700m --number_ios=4000 --runtime=600"

# _cow_args CONFIG: the `snapshot create` options of a configuration.
_cow_args() {
	case $1 in
	default) echo "" ;;
	*-P) echo "--chunk-size ${1%-P} --persistent" ;;
	*) echo "--chunk-size $1" ;;
	esac
}

# _cow_snap CONFIG: a snapshot of vdf with the configuration's options (none: nothing).
_cow_snap() {
	[ "$1" != none ] || return 0
	# shellcheck disable=SC2046
	interposer snapshot create --name bc --cow /dev/vdg -y $(_cow_args "$1") /dev/vdf \
		>"$OUT/create-$1.txt" 2>&1 || {
		cat "$OUT/create-$1.txt"
		_fail "snapshot create ($1) failed"
	}
	_ksyms
}

# _cow_used CONFIG WORKLOAD ROUND: record the COW sectors in use (data and metadata, also
# left in $_used), and the chunk in sectors; fail if the snapshot is no longer valid.
_cow_used() {
	_used=0 _chunk=0
	if [ "$1" != none ]; then
		_st=$(dmsetup status bc-vdf-snap)
		case $_st in
		*Invalid* | *Overflow*) _fail "the snapshot became invalid ($1 $2): $_st" ;;
		esac
		# 0 SECTORS snapshot USED/TOTAL METADATA
		_used=$(echo "$_st" | awk '{split($4, a, "/"); print a[1]}')
		_chunk=$(dmsetup table bc-vdf-snap | awk '{print $NF}')
	fi
	echo "- cow $1 $2 $3 $_used $_chunk" >>"$OUT/runs"
}

_cow_drop() {
	[ "$1" != none ] || return 0
	interposer snapshot remove bc >/dev/null || _fail "snapshot remove ($1) failed"
}

# _cow_run CONFIG ROUND
_cow_run() {
	_cow_snap "$1"
	_fio cow virtio "$1" "$2" /mnt/dense "dense $DENSE"
	_cow_used "$1" dense "$2"
	_u1=$_used
	_fio cow virtio "$1" "$2" /mnt/dense "second $DENSE"
	_cow_used "$1" second "$2"
	_u2=$_used
	# the second pass writes the blocks of the first (same seed), so it copies only what
	# ext4 writes besides (the journal, the inode's times): a few chunks.  Had fio picked
	# other blocks it would copy thousands, and the measurement would not be what it says.
	[ $((_u2 - _u1)) -le $((_u1 / 100)) ] ||
		_fail "the second pass copied more than 1 % anew ($1: $_u1 then $_u2 sectors)"
	if [ "$1" = none ]; then
		_src=/dev/vdf
	else
		_src=/dev/mapper/bc-vdf-snap
	fi
	_fio cow virtio "$1" "$2" "$_src" "snap-read --rw=read --bs=1M --size=256m --number_ios=256"
	_cow_drop "$1"
	_cow_snap "$1"
	_fio cow virtio "$1" "$2" /mnt/sparse "sparse $SPARSE"
	_cow_used "$1" sparse "$2"
	_cow_drop "$1"
}

if _part cow; then
	modprobe dm_snapshot
	modprobe blk_interposer
	_mkfs_ext4 /dev/vdf
	_mount /dev/vdf /mnt
	dd if=/dev/zero of=/mnt/dense bs=1M count=256 oflag=direct 2>/dev/null
	dd if=/dev/zero of=/mnt/sparse bs=1M count=700 oflag=direct 2>/dev/null
	_configs=$(echo "$COWCONFIGS" | tr , ' ')
	_rev=$(for _c in $_configs; do echo "$_c"; done | sed -n '1!G;h;$p')
	for _r in $(seq 1 "$COWROUNDS"); do
		# alternate the order from round to round
		if [ $((_r % 2)) -eq 1 ]; then _list=$_configs; else _list=$_rev; fi
		for _c in $_list; do
			_cow_run "$_c" "$_r"
		done
		_log "snapshot cost: round $_r of $COWROUNDS done"
	done
	for _c in $_configs; do
		[ ! -e "$OUT/create-$_c.txt" ] || _log "create $_c: $(head -c 600 "$OUT/create-$_c.txt")"
	done
	umount /mnt
	_fsck_ext4 /dev/vdf
	rmmod blk_interposer
fi

# ---- writer stalls: attach and detach against a bare fsfreeze ----

# _stall EVENT ROUND: a small synchronous writer on /mnt, EVENT one second into it.
_stall() {
	_file=stall-$1-$2.json
	fio --name=stall --filename=/mnt/stall.fio --size=16M --rw=write --bs=4k --sync=1 \
		--ioengine=psync --time_based --runtime="$STALL" --output-format=json \
		--output="$OUT/$_file" >>"$OUT/fio.err" 2>&1 &
	_pid=$!
	sleep 1
	case $1 in
	freeze) fsfreeze --freeze /mnt && fsfreeze --unfreeze /mnt ;;
	attach) echo "0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0" |
		interposer create bench-stall >/dev/null ;;
	detach) interposer remove bench-stall >/dev/null ;;
	esac
	wait "$_pid" || _fail "the stall writer failed ($1, round $2)"
	echo "- stall $1 $2 $_file" >>"$OUT/runs"
}

if _part stall; then
	modprobe blk_interposer
	_mkfs_ext4 /dev/vdb
	_mount /dev/vdb /mnt
	# lay the file out first: the measured runs overwrite allocated blocks
	fio --name=stall --filename=/mnt/stall.fio --size=16M --rw=write --bs=1M >/dev/null
	for _r in $(seq 1 "$ROUNDS"); do
		if [ $((_r % 2)) -eq 1 ]; then
			_stall freeze "$_r"
			_stall attach "$_r"
			_stall detach "$_r"
		else
			_stall attach "$_r"
			_stall detach "$_r"
			_stall freeze "$_r"
		fi
		_log "stalls: round $_r of $ROUNDS done"
	done
	umount /mnt
	_fsck_ext4 /dev/vdb
	rmmod blk_interposer
fi

_dmesg_check

# ---- hand the results to the host through /dev/vda ----
(
	for _f in "$OUT"/*; do
		echo "=== ${_f##*/}"
		cat "$_f"
		echo
	done
	echo "=== END"
) >/tmp/results.txt
_log "results: $(wc -c </tmp/results.txt) bytes, $SEQ marked runs"
dd if=/tmp/results.txt of=/dev/vda bs=1M conv=fsync 2>/dev/null
echo "BENCH-DONE"
