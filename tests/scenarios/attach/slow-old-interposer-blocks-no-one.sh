#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# attach/slow-old-interposer-blocks-no-one: after a detach (or any switch)
# the module waits for the bios still in flight through the old dm
# interposer before it lets go of it.  Over a slow path that wait is long;
# it must not hold the module's lock (every other `interposer` command would
# hang behind it, in D state) and the waiting command must stay killable.
#
# How: /dev/vdc is interposed by dm-delay with 20 s of delay on every bio.
# A 4 KiB O_DIRECT write of random data is in flight through it when
# `interposer detach /dev/vdc` starts.  While that detach waits:
#   - `interposer ls` and a full create and remove of a dm-linear
#     interposer on /dev/vdd must complete, and the detach must still be
#     waiting when they have (else the test would prove nothing);
# Then, attached again with a second write in flight, a detach is killed
# with SIGKILL: it must be gone within 10 s, /dev/vdc must be detached, the
# old interposer must become removable once its I/O has drained, and both
# writes must read back exactly from /dev/vdc.
#
# TIMEOUT: 300
DESCRIPTION="a detach waiting 20 s for a dm-delay interposer's I/O holds no lock over other commands and dies on SIGKILL; the writes land"

. /tests/common/rc

_load_module
DEV=/dev/vdc
SZ=$(blockdev --getsz $DEV)
SZD=$(blockdev --getsz /dev/vdd)
dd if=/dev/urandom of=/tmp/w1 bs=4k count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/w2 bs=4k count=1 2>/dev/null

echo "0 $SZ delay [interpose]$DEV 0 20000" | interposer create vdc-delay >/dev/null ||
	_fail "interposer create vdc-delay failed"

# _slow_write FILE BLOCK: FILE to 4 KiB block BLOCK of $DEV, through the delay.
_slow_write() {
	dd if="$1" of=$DEV bs=4k seek="$2" count=1 oflag=direct conv=notrunc 2>/dev/null &
	_WRITER=$!
	sleep 2
	kill -0 $_WRITER 2>/dev/null || _fail "the write to block $2 ended at once: it did not go through dm-delay"
}

_slow_write /tmp/w1 100
interposer detach $DEV >/tmp/detach1.out 2>&1 &
DETACH=$!
sleep 2
kill -0 $DETACH 2>/dev/null || { cat /tmp/detach1.out; _fail "the detach ended before the old interposer's write did"; }
timeout 60 interposer ls >/tmp/ls.out 2>&1 || { cat /tmp/ls.out; _fail "interposer ls failed or hung during the drain"; }
echo "0 $SZD linear [interpose]/dev/vdd 0" | timeout 60 interposer create vdd-lin >/dev/null ||
	_fail "interposer create vdd-lin failed or hung during the drain"
timeout 60 interposer remove vdd-lin >/dev/null ||
	_fail "interposer remove vdd-lin failed or hung during the drain"
kill -0 $DETACH 2>/dev/null ||
	_fail "the detach had ended before the other commands did: they waited for it (or its drain was too short to tell)"
_log "interposer ls, create and remove of vdd-lin completed while the detach waited"
wait $DETACH || { cat /tmp/detach1.out; _fail "interposer detach failed"; }
wait $_WRITER || _fail "the first write failed"

timeout 60 interposer attach $DEV /dev/mapper/vdc-delay >/dev/null || _fail "attach again failed"
_slow_write /tmp/w2 200
interposer detach $DEV >/tmp/detach2.out 2>&1 &
DETACH=$!
sleep 2
kill -0 $DETACH 2>/dev/null || _fail "the second detach ended before the write did"
kill -9 $DETACH
_i=0
while kill -0 $DETACH 2>/dev/null; do
	_i=$((_i + 1))
	[ $_i -le 100 ] || _fail "the detach did not die within 10 s of SIGKILL"
	sleep 0.1
done
_log "the waiting detach died on SIGKILL"
wait $_WRITER || _fail "the second write failed"
# The killed detach's worker still holds vdc-delay until its write drains.
_i=0
until timeout 60 interposer remove vdc-delay >/tmp/remove.out 2>&1; do
	_i=$((_i + 1))
	[ $_i -le 60 ] || { cat /tmp/remove.out; _fail "vdc-delay could not be removed 60 s after its write ended"; }
	sleep 1
done
grep -q "was not attached" /tmp/remove.out || { cat /tmp/remove.out; _fail "remove found vdc-delay attached: the killed detach did not take effect"; }

for _b in 1:100 2:200; do
	dd if=$DEV of=/tmp/r bs=4k skip="${_b#*:}" count=1 iflag=direct 2>/dev/null
	cmp -s /tmp/r "/tmp/w${_b%%:*}" || _fail "write ${_b%%:*} at block ${_b#*:} does not read back"
done
_log "both writes read back from $DEV"
_dmesg_check
rmmod blk_interposer || _fail "rmmod failed"
echo "Test complete"
