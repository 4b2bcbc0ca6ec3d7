#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Polled I/O (io_uring with IORING_SETUP_IOPOLL, fio --hipri) on an
# interposed device.  A polled bio is polled on the queue it was submitted
# to; once the hook sends it to a dm target, nothing there polls it, and 6.12
# fails a polled bio to a queue without polling with EOPNOTSUPP.  The hook
# clears REQ_POLLED on the bios it redirects: they complete by interrupt,
# which ends the caller's poll as on any queue that does not poll.  6.1 also
# marks every polled bio REQ_NOWAIT, and io_uring retries polled I/O on
# EAGAIN without end: toward dm-era (no nowait support) the hook's EAGAIN made
# the old hook livelock there, so an unpolled bio past the gate loses
# REQ_NOWAIT toward such a target.
#
# How: virtio_blk is reloaded with one poll queue (the disks are unused at
# this point), so /dev/vdc really polls.  The same fio job (4 KiB random
# writes, then a read-back verify with crc32c, all polled, iodepth 8) runs
# on the raw device, then through a dm-era and a dm-linear interposer, each
# on its own 16 MiB region; each must finish without an error and verify,
# and the interposer's redirected counter must grow by exactly the job's
# 8192 bios (4096 writes, 4096 verify reads).  Each fio run has 120 s.  After the interposers are
# removed, every region is verified again on the bare device.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="io_uring polled (IOPOLL) writes and reads work and verify through dm-era and dm-linear interposers"

. /tests/common/rc

_have_program fio
DEV=/dev/vdc
META=/dev/vdd

rmmod virtio_blk || _fail "cannot unload virtio_blk to give it a poll queue"
modprobe virtio_blk poll_queues=1 || _fail "modprobe virtio_blk poll_queues=1 failed"
_i=0
while [ ! -b $DEV ] || [ ! -b $META ]; do
	_i=$((_i + 1))
	[ $_i -le 100 ] || _fail "$DEV and $META did not come back after reloading virtio_blk"
	sleep 0.1
done
[ "$(cat /sys/block/vdc/queue/io_poll)" = 1 ] ||
	_fail "vdc has no poll queue (io_poll $(cat /sys/block/vdc/queue/io_poll)): the test would prove nothing"
_load_module
SZ=$(blockdev --getsz $DEV)

# _polled OFFSET_MIB [fio options]: the job on $DEV's 16 MiB at OFFSET_MIB.
_polled() {
	_off=$1
	shift
	timeout -s KILL 120 fio --name=polled --filename=$DEV --offset=$((_off))M --size=16M \
		--ioengine=io_uring --hipri=1 --direct=1 --iodepth=8 --rw=randwrite --bs=4k \
		--randseed="$_off" --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--eta=never "$@" >/tmp/polled.out 2>&1
}

# _through NAME OFFSET_MIB: the job through the interposer NAME, counted.
_through() {
	_before=$(_counter $DEV redirected)
	_polled "$2" || { cat /tmp/polled.out; _fail "polled I/O through $1 failed"; }
	_n=$(($(_counter $DEV redirected) - _before))
	[ "$_n" -eq 8192 ] ||
		_fail "through $1: $_n bios redirected, not the job's 8192 (4096 writes, 4096 reads)"
	_log "through $1: polled writes and verify reads OK, 8192 bios redirected"
}

_polled 0 || { cat /tmp/polled.out; _fail "polled I/O on the bare device failed"; }
_log "bare $DEV: polled writes and verify reads OK"

echo "0 $SZ era $META [interpose]$DEV 128" | interposer create vdc-era ||
	_fail "interposer create vdc-era failed"
_through dm-era 16
interposer remove vdc-era || _fail "interposer remove vdc-era failed"

echo "0 $SZ linear [interpose]$DEV 0" | interposer create vdc-lin ||
	_fail "interposer create vdc-lin failed"
_through dm-linear 32
# By the device this time: remove finds the interposer attached to it.
interposer remove $DEV >/tmp/remove.out || _fail "interposer remove $DEV failed"
grep -q "^vdc-lin removed" /tmp/remove.out || { cat /tmp/remove.out; _fail "remove $DEV did not remove vdc-lin"; }

for _off in 0 16 32; do
	_polled $_off --verify_only || { cat /tmp/polled.out; _fail "region at ${_off} MiB does not verify on the bare device"; }
done
_log "all three regions verify on the bare device after the interposers left"
_dmesg_check
rmmod blk_interposer || _fail "rmmod failed"
echo "Test complete"
