#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# A raw-device writer (no filesystem, O_DIRECT) keeps the last write of every
# sector across live switches.
#
# stamp-writer runs 8 threads of overlapping writes of 1..256 sectors over
# the first 32 MiB of /dev/vdc; each write stamps every sector it covers with
# its sequence number and the sector's number.  Overlapping writes are never
# in flight together, so for every sector the last completed write is known
# exactly (the map in the VM's tmpfs).  vdc's max_sectors_kb is 16, so the
# larger writes are split into several bios on their way down.  While it
# writes, vdc is switched 40 times per phase: `interposer create`/`remove`
# of dm-linear and low-level `detach`/`attach`.  The writer is stopped
# three times and the whole region is read back with O_DIRECT and compared
# with the map: while detached, while attached (the reads go through the
# interposer and the lower device), and at the end after the final remove.
# A lost write shows an older sequence number, a misdirected one another
# sector's number, a torn one wrong fill bytes.  A negative control copies
# one sector over another behind the writer's back and the verifier must
# report it as misdirected.
#
# TIMEOUT: 900
DESCRIPTION="overlapping sequence-stamped O_DIRECT writes on a raw device keep the last write of every sector across 80 switches"

. /tests/common/rc

_have_program stamp-writer
_load_module

SZ=$(blockdev --getsz /dev/vdc)
REGION=65536 # sectors: 32 MiB, small enough that writes overlap all the time
MAP=/tmp/raw.map
STOP=/tmp/raw.stop
TABLE="0 $SZ linear [interpose]/dev/vdc 0"
echo 16 >/sys/block/vdc/queue/max_sectors_kb || _fail "cannot set max_sectors_kb"
stamp-writer init --dev /dev/vdc --sectors "$REGION" --map "$MAP" || _fail "init failed"

# _phase N ATTACHED_AT_START: writer in the background, 40 switches, stop it.
_phase() {
	rm -f "$STOP"
	stamp-writer run --dev /dev/vdc --map "$MAP" --stop "$STOP" --threads 8 \
		--max-sectors 256 --seed "$1" >/tmp/raw-$1.out 2>&1 &
	_w=$!
	sleep 2
	_i=0
	while [ "$_i" -lt 40 ]; do
		_i=$((_i + 1))
		if [ $((_i % 4)) -eq 0 ]; then
			timeout 120 interposer remove vdc-lin || _fail "phase $1 cycle $_i: remove"
			echo "$TABLE" | timeout 120 interposer create vdc-lin ||
				_fail "phase $1 cycle $_i: create"
		else
			timeout 120 interposer detach /dev/vdc || _fail "phase $1 cycle $_i: detach"
			timeout 120 interposer attach /dev/vdc /dev/mapper/vdc-lin ||
				_fail "phase $1 cycle $_i: attach"
		fi
		kill -0 "$_w" 2>/dev/null || { cat /tmp/raw-$1.out; _fail "phase $1: the writer stopped"; }
	done
	touch "$STOP"
	_wait_gone "$_w" 120 "phase $1: stamp-writer after the stop request"
	_rc=0
	wait "$_w" || _rc=$?
	cat /tmp/raw-$1.out
	[ "$_rc" -eq 0 ] || _fail "phase $1: a write failed (exit $_rc)"
	_ok=$(tail -1 /tmp/raw-$1.out | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
	[ "${_ok:-0}" -gt 200 ] || _fail "phase $1: only ${_ok:-0} writes completed"
}

echo "$TABLE" | interposer create vdc-lin || _fail "create vdc-lin failed"
_phase 1
interposer detach /dev/vdc || _fail "detach before the check"
_log "verify while detached"
stamp-writer verify --dev /dev/vdc --map "$MAP" || _fail "phase 1: a sector lost its last write"
interposer attach /dev/vdc /dev/mapper/vdc-lin || _fail "re-attach"

_phase 2
# The counters belong to the lower device, which each remove/create renews.
_red=$(_counter /dev/vdc redirected)
[ "$_red" -gt 0 ] || _fail "no bio was redirected since the last create of phase 2"
_log "verify while attached (reads through vdc-lin); $_red bios redirected since the last create"
stamp-writer verify --dev /dev/vdc --map "$MAP" || _fail "phase 2: a sector lost its last write"
_red2=$(_counter /dev/vdc redirected)
[ "$_red2" -gt "$_red" ] || _fail "the verify reads did not go through vdc-lin ($_red -> $_red2)"

_phase 3
interposer remove vdc-lin || _fail "final remove failed"
[ -e /dev/interposer/vdc ] && _fail "the lower device was left behind"
_log "verify after the final remove"
stamp-writer verify --dev /dev/vdc --map "$MAP" || _fail "phase 3: a sector lost its last write"

# Negative control: sector A copied over sector B must be reported as misdirected.
_a=$(($(_rand) % REGION))
_b=$(((_a + 1 + $(_rand) % (REGION - 1)) % REGION))
dd if=/dev/vdc of=/tmp/sector bs=512 skip="$_a" count=1 iflag=direct 2>/dev/null &&
	dd if=/tmp/sector of=/dev/vdc bs=512 seek="$_b" count=1 oflag=direct conv=notrunc 2>/dev/null ||
	_fail "negative control: dd failed"
if stamp-writer verify --dev /dev/vdc --map "$MAP" >/tmp/neg.out 2>&1; then
	cat /tmp/neg.out
	_fail "negative control: verify accepted sector $_a's content in sector $_b"
fi
grep -q "sector $_b: holds sector $_a's stamp" /tmp/neg.out ||
	{ cat /tmp/neg.out; _fail "negative control: the misdirected sector $_b was not reported"; }
_log "negative control: sector $_a copied to $_b is reported as misdirected"

_dmesg_check
rmmod blk_interposer || _fail "rmmod failed"
echo "Test complete"
