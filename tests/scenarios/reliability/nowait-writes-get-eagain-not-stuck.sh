#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# REQ_NOWAIT writers on an interposed raw device across many switches.
#
# While the gate is closed for a switch, a REQ_NOWAIT bio must fail with
# EAGAIN instead of sleeping (and never with EIO).  Two kinds of NOWAIT
# writers run on /dev/vdc (no filesystem) the whole time:
#   - stamp-writer --nowait: 6 threads of O_DIRECT pwritev2(RWF_NOWAIT),
#     overlapping sequence-stamped writes of 1..64 sectors in the first
#     128 MiB; an EAGAIN is counted and the same write retried; any other
#     error fails it;
#   - fio, io_uring with RWF_NOWAIT (nowait=1), iodepth 32, random 4k-64k
#     writes in the second 128 MiB; EAGAIN is tolerated and counted, any
#     other error (EIO) stops fio with an error.
# Meanwhile vdc is switched 48 times: `interposer detach`/`attach` of a
# dm-linear interposer, and every 8th cycle a full `interposer remove` and
# `create`.  Every control command and the writers' stop run under a time
# limit, so a hang fails the scenario instead of blocking it.  At the end
# both writers must have stopped cleanly with only successes and EAGAINs,
# (a last phase: through dm-era, which has no REQ_NOWAIT support, io_uring
# RWF_NOWAIT writes end in EAGAIN, never EOPNOTSUPP, and plain io_uring
# writes verify),
# stamp-writer must read back every sector holding the last completed write
# aimed at it, and a negative control (one sector overwritten behind the
# writer's back) proves the verifier notices a bad sector.
#
# TIMEOUT: 900
# KERNELS: all
DESCRIPTION="NOWAIT (RWF_NOWAIT, io_uring) writes during 48 switches get success or EAGAIN, never EIO or a hang; data verifies"

. /tests/common/rc

_have_program stamp-writer fio
_load_module

SZ=$(blockdev --getsz /dev/vdc)
HALF=$((SZ / 2))
MAP=/tmp/nowait.map
STOP=/tmp/nowait.stop
rm -f "$STOP"
stamp-writer init --dev /dev/vdc --sectors "$HALF" --map "$MAP" || _fail "stamp-writer init failed"

TABLE="0 $SZ linear [interpose]/dev/vdc 0"
echo "$TABLE" | interposer create vdc-lin || _fail "create vdc-lin failed"

stamp-writer run --dev /dev/vdc --map "$MAP" --stop "$STOP" --threads 6 \
	--max-sectors 64 --nowait >/tmp/stamp.out 2>&1 &
STAMP=$!
fio --name=nowait --filename=/dev/vdc --offset=$((HALF * 512)) --size=$((HALF * 512)) \
	--ioengine=io_uring --nowait=1 --direct=1 --rw=randwrite --bsrange=4k-64k \
	--iodepth=32 --time_based --runtime=3600 --continue_on_error=write \
	--ignore_error=EAGAIN,EAGAIN --eta=never >/tmp/fio-nowait.out 2>&1 &
FIO=$!
sleep 3
kill -0 "$STAMP" 2>/dev/null || { cat /tmp/stamp.out; _fail "stamp-writer died at the start"; }
kill -0 "$FIO" 2>/dev/null || { cat /tmp/fio-nowait.out; _fail "fio died at the start"; }

_i=0
while [ "$_i" -lt 48 ]; do
	_i=$((_i + 1))
	if [ $((_i % 8)) -eq 0 ]; then
		timeout 120 interposer remove vdc-lin || _fail "cycle $_i: remove failed or hung"
		echo "$TABLE" | timeout 120 interposer create vdc-lin ||
			_fail "cycle $_i: create failed or hung"
	else
		timeout 120 interposer detach /dev/vdc || _fail "cycle $_i: detach failed or hung"
		timeout 120 interposer attach /dev/vdc /dev/mapper/vdc-lin ||
			_fail "cycle $_i: attach failed or hung"
	fi
	kill -0 "$STAMP" 2>/dev/null || { cat /tmp/stamp.out; _fail "cycle $_i: stamp-writer stopped"; }
	kill -0 "$FIO" 2>/dev/null || { cat /tmp/fio-nowait.out; _fail "cycle $_i: fio stopped (an error?)"; }
done
_log "48 switches done; attaches counter $(_counter /dev/vdc attaches), redirected $(_counter /dev/vdc redirected), deferred $(_counter /dev/vdc deferred)"
[ "$(_counter /dev/vdc redirected)" -gt 0 ] || _fail "no bio was redirected: the writers never went through vdc-lin"

touch "$STOP"
kill -INT "$FIO"
_wait_gone "$STAMP" 120 "stamp-writer after the stop request"
_wait_gone "$FIO" 120 "fio after SIGINT"
_rc=0
wait "$STAMP" || _rc=$?
cat /tmp/stamp.out
[ "$_rc" -eq 0 ] || _fail "stamp-writer saw an error other than EAGAIN (exit $_rc)"
_sum=$(tail -1 /tmp/stamp.out)
echo "$_sum" | grep -q ' eio=0 other=0 ' || _fail "stamp-writer: $_sum"
_ok=$(echo "$_sum" | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
[ "${_ok:-0}" -gt 100 ] || _fail "stamp-writer completed only ${_ok:-0} writes"
wait "$FIO" || true
grep -E 'errors|err=|error' /tmp/fio-nowait.out | head -5
if grep -qiE 'Input/output error|error=5|first_error=5/' /tmp/fio-nowait.out; then
	cat /tmp/fio-nowait.out
	_fail "fio io_uring NOWAIT writes got EIO"
fi
# With continue_on_error fio reports the first (ignored) error as the job's err=.
grep -qE '\(groupid=0, jobs=1\): err=( 0|11 )' /tmp/fio-nowait.out ||
	{ cat /tmp/fio-nowait.out; _fail "fio ended with an error other than EAGAIN"; }
grep -qE 'errors *: total=[0-9]+, first_error=(0|11)/' /tmp/fio-nowait.out ||
	{ cat /tmp/fio-nowait.out; _fail "fio's first error is not EAGAIN"; }
_fio_writes=$(sed -n 's/.*issued rwts: total=[0-9]*,\([0-9]*\),.*/\1/p' /tmp/fio-nowait.out | head -1)
_fio_eagain=$(sed -n 's/.*errors *: total=\([0-9]*\),.*/\1/p' /tmp/fio-nowait.out | head -1)
_log "fio io_uring NOWAIT: ${_fio_writes:-?} writes issued, ${_fio_eagain:-0} ended in EAGAIN, none in another error"
[ "${_fio_writes:-0}" -gt 100 ] || _fail "fio issued only ${_fio_writes:-0} writes"
_log "stamp-writer RWF_NOWAIT: $_sum"

interposer remove vdc-lin || _fail "final remove failed"
stamp-writer verify --dev /dev/vdc --map "$MAP" || _fail "a sector does not hold its last completed write"

# Negative control: a sector overwritten behind the writer's back must be found.
_s=$(($(_rand) % HALF))
dd if=/dev/zero of=/dev/vdc bs=512 seek="$_s" count=1 oflag=direct conv=notrunc 2>/dev/null ||
	_fail "negative control: dd failed"
if stamp-writer verify --dev /dev/vdc --map "$MAP" >/tmp/neg.out 2>&1; then
	cat /tmp/neg.out
	_fail "negative control: verify accepted a zeroed sector $_s"
fi
grep -q "sector $_s: no stamp" /tmp/neg.out || { cat /tmp/neg.out; _fail "negative control: sector $_s not reported"; }
_log "negative control: the zeroed sector $_s is reported"

# A target without REQ_NOWAIT support (dm-era): the device took NOWAIT
# bios, so they get EAGAIN (retry without it), never EOPNOTSUPP.
echo "0 $SZ era /dev/vdd [interpose]/dev/vdc 128" | interposer create vdc-era >/dev/null ||
	_fail "create vdc-era failed"
fio --name=nowait-era --filename=/dev/vdc --offset=$((HALF * 512)) --size=$((HALF * 512)) \
	--ioengine=io_uring --nowait=1 --direct=1 --rw=randwrite --bs=4k --iodepth=8 \
	--number_ios=400 --continue_on_error=write --ignore_error=EAGAIN,EAGAIN \
	--eta=never >/tmp/fio-era.out 2>&1 || true
grep -qE 'errors *: total=[0-9]+, first_error=11/' /tmp/fio-era.out ||
	{ cat /tmp/fio-era.out; _fail "NOWAIT writes through dm-era did not end in EAGAIN"; }
grep -qiE 'error=95|Operation not supported' /tmp/fio-era.out &&
	{ cat /tmp/fio-era.out; _fail "NOWAIT writes through dm-era got EOPNOTSUPP"; }
_log "fio io_uring NOWAIT through dm-era: $(sed -n 's/.*errors *: \(total=[0-9]*, first_error=[0-9]*\).*/\1/p' /tmp/fio-era.out | head -1)"
fio --name=blocking-era --filename=/dev/vdc --offset=$((HALF * 512)) --size=$((HALF * 512)) \
	--ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=8 --number_ios=400 \
	--verify=crc32c --eta=never >/tmp/fio-era2.out 2>&1 ||
	{ cat /tmp/fio-era2.out; _fail "io_uring writes (no RWF_NOWAIT) through dm-era failed"; }
interposer remove vdc-era >/dev/null || _fail "remove vdc-era failed"

_dmesg_check
rmmod blk_interposer || _fail "rmmod failed"
echo "Test complete"
