#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# experiments/dmsetup-reload-loop-on-unmounted-device: what happens when an
# interposer attached to a device nobody holds exclusively (not mounted) is
# reloaded by hand with a table that names the live device itself (issue 13,
# point 11)?  Expected from the code: dm loads it (it can claim the device),
# and after the resume a bio to the device goes hook -> interposer -> the
# device -> hook ... without end.  Prints what it sees; the kernel log shows
# the rest (a hung task is a kernel error: the run FAILs, which here is the
# finding, not a defect of the experiment).
#   cargo xtask vm --kernel 6.12 --scenario experiments/dmsetup-reload-loop-on-unmounted-device.sh
#
# TIMEOUT: 300
DESCRIPTION="a hand-made reload that names the live, unmounted device"

. /tests/common/rc

_load_module
_log "Running experiments/dmsetup-reload-loop-on-unmounted-device: $DESCRIPTION"
SZ=$(blockdev --getsz /dev/vdc)
echo "0 $SZ linear [interpose]/dev/vdc 0" | interposer create vdc-lin >/dev/null ||
	_fail "interposer create failed"
_log "attached: $(dmsetup table vdc-lin)"
if dmsetup reload vdc-lin --table "0 $SZ linear /dev/vdc 0"; then
	_log "RESULT: dm loaded the table that names /dev/vdc itself"
else
	_log "RESULT: dm refused the table that names /dev/vdc itself"
	exit 0
fi
dmsetup resume vdc-lin || _log "RESULT: resume failed"
_log "resumed: $(dmsetup table vdc-lin); now one 4 KiB O_DIRECT read of /dev/vdc, in the background"
dd if=/dev/vdc of=/dev/null bs=4k count=1 iflag=direct &
DD=$!
sleep 20
if kill -0 $DD 2>/dev/null; then
	_log "RESULT: after 20 s the read has not completed: $(cat /proc/$DD/stat 2>/dev/null | cut -d' ' -f3) state"
	cat /proc/$DD/stack 2>/dev/null | head -20
	grep -E "^(MemFree|Slab|SUnreclaim)" /proc/meminfo
else
	wait $DD && _log "RESULT: the read completed" || _log "RESULT: the read failed"
fi
sleep 40
_log "Experiment complete"
