#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The interposed device fails beneath the interposer: errors reach the
# writer, nothing hangs, the interposer can still be removed, and after the
# device is healthy again new writes verify.
#
# /dev/mapper/base is dm-linear over /dev/vdc; ip-base (dm-linear over
# [interpose]/dev/mapper/base) is put on it, so every write to base goes
# base -> hook -> ip-base -> /dev/interposer/dm-N -> base's table -> vdc.
# Base's own table is then swapped live with dmsetup suspend/load/resume:
#   1. healthy: stamp-writer (O_DIRECT, overlapping sequence-stamped writes)
#      writes and verifies;
#   2. `error` while stamp-writer runs: its writes get EIO (counted, never
#      success: a run of 200 writes must end with ok=0 eio=200), dd reads
#      and writes get EIO, and `interposer remove` works with the device
#      failing and the writer still running;
#   3. `flakey ... error_writes`, re-interposed: writes fail with EIO, reads
#      work, and every sector written before the fault still reads back as
#      its last completed write; a detach/attach cycle works;
#   4. linear again while attached: every sector of unknown content is
#      rewritten, a run of writes without a single error, and the whole
#      region verifies, through the interposer and again after its removal.
# Control commands and stops run under time limits, so a hang fails.
#
# TIMEOUT: 900
DESCRIPTION="a failing device beneath the interposer: EIO reaches the writer, remove works, data after recovery verifies"

. /tests/common/rc

_have_program stamp-writer dmsetup
_have_module dm_flakey
_load_module

# _swap TABLE: replace base's live table, as an administrator would.
_swap() {
	timeout 60 dmsetup --noudevsync suspend base || _fail "suspend base failed or hung"
	timeout 60 dmsetup --noudevsync load base --table "$1" || _fail "load base: $1"
	timeout 60 dmsetup --noudevsync resume base || _fail "resume base failed or hung"
	_log "base is now: $(dmsetup table base)"
}

# _stamp_run ARGS...: a bounded stamp-writer run; its summary line in $_sum.
_stamp_run() {
	_rc=0
	timeout 300 stamp-writer run --dev /dev/mapper/base --map "$MAP" --stop /tmp/never \
		--threads 4 --max-sectors 128 "$@" >/tmp/stamp.out 2>&1 || _rc=$?
	cat /tmp/stamp.out
	_sum=$(tail -1 /tmp/stamp.out)
	[ "$_rc" -ne 124 ] || _fail "stamp-writer hung"
}

_field() {
	echo "$_sum" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"
}

SZ=$(blockdev --getsz /dev/vdc)
REGION=131072 # 64 MiB
MAP=/tmp/base.map
dmsetup --noudevsync create base --table "0 $SZ linear /dev/vdc 0" || _fail "dmsetup create base"
dmsetup mknodes base
[ -b /dev/mapper/base ] || _fail "/dev/mapper/base did not appear"
TABLE="0 $SZ linear [interpose]/dev/mapper/base 0"

_log "1. healthy"
stamp-writer init --dev /dev/mapper/base --sectors "$REGION" --map "$MAP" || _fail "init"
echo "$TABLE" | interposer create ip-base || _fail "create ip-base"
_stamp_run --max-writes 1500
[ "$(_field ok)" -eq 1500 ] || _fail "healthy: not every write succeeded: $_sum"
stamp-writer verify --dev /dev/mapper/base --map "$MAP" || _fail "healthy: verify failed"
_red=$(_counter /dev/mapper/base redirected)
[ "$_red" -gt 0 ] || _fail "nothing was redirected through ip-base"

_log "2. error target while a writer runs"
rm -f /tmp/stop
stamp-writer run --dev /dev/mapper/base --map "$MAP" --stop /tmp/stop --threads 4 \
	--max-sectors 128 --tolerate-eio >/tmp/bg.out 2>&1 &
_w=$!
sleep 2
_swap "0 $SZ error"
sleep 3
kill -0 "$_w" 2>/dev/null || { cat /tmp/bg.out; _fail "the writer died when the device failed"; }
_expect_fail "a dd write to the failed device" "Input/output error|I/O error" \
	dd if=/dev/zero of=/dev/mapper/base bs=4k count=1 seek=7 oflag=direct conv=notrunc
_expect_fail "a dd read from the failed device" "Input/output error|I/O error" \
	dd if=/dev/mapper/base of=/dev/null bs=4k count=1 skip=7 iflag=direct
_log "interposer remove with the device failing and the writer running"
timeout 120 interposer remove ip-base || _fail "remove ip-base failed or hung while base fails"
[ -z "$(ls /dev/interposer 2>/dev/null)" ] || _fail "a lower device was left behind: $(ls /dev/interposer)"
touch /tmp/stop
_wait_gone "$_w" 120 "the writer after the stop request"
_rc=0
wait "$_w" || _rc=$?
cat /tmp/bg.out
[ "$_rc" -eq 0 ] || _fail "the background writer failed with an error other than EIO"
_sum=$(tail -1 /tmp/bg.out)
[ "$(_field eio)" -gt 0 ] || _fail "no write saw EIO from the failed device: $_sum"
[ "$(_field other)" -eq 0 ] || _fail "errors other than EIO: $_sum"

echo "$TABLE" | timeout 120 interposer create ip-base || _fail "create ip-base on the failed device"
_stamp_run --max-writes 200 --tolerate-eio
[ "$(_field ok)" -eq 0 ] && [ "$(_field eio)" -eq 200 ] && [ "$(_field other)" -eq 0 ] ||
	_fail "through ip-base on the failed device every write must get EIO: $_sum"

_log "3. flakey: writes fail, reads work"
_swap "0 $SZ flakey /dev/vdc 0 0 1 1 error_writes"
_stamp_run --max-writes 200 --tolerate-eio
[ "$(_field ok)" -eq 0 ] && [ "$(_field eio)" -eq 200 ] && [ "$(_field other)" -eq 0 ] ||
	_fail "flakey error_writes: every write must get EIO: $_sum"
stamp-writer verify --dev /dev/mapper/base --map "$MAP" ||
	_fail "flakey: sectors written before the fault do not read back"
timeout 120 interposer detach /dev/mapper/base || _fail "detach with writes failing"
timeout 120 interposer attach /dev/mapper/base /dev/mapper/ip-base || _fail "attach with writes failing"

_log "4. healthy again, while attached"
_swap "0 $SZ linear /dev/vdc 0"
_red=$(_counter /dev/mapper/base redirected)
_stamp_run --max-writes 1500 --cover-unknown
[ "$(_field ok)" -eq 1500 ] && [ "$(_field unknown_sectors)" -eq 0 ] ||
	_fail "after recovery: $_sum"
[ "$(_counter /dev/mapper/base redirected)" -gt "$_red" ] || _fail "the writes after recovery were not redirected"
stamp-writer verify --dev /dev/mapper/base --map "$MAP" || _fail "after recovery: verify through ip-base failed"
timeout 120 interposer remove ip-base || _fail "final remove"
stamp-writer verify --dev /dev/mapper/base --map "$MAP" || _fail "after recovery: verify after remove failed"
dmsetup --noudevsync remove base || _fail "dmsetup remove base"

_dmesg_check
rmmod blk_interposer || _fail "rmmod failed"
echo "Test complete"
