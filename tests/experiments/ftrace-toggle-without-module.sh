#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# experiments/ftrace-toggle-without-module: does a TCG guest execute a stale
# int3 in submit_bio_noacct when the kernel's own function tracer patches that
# function on and off under I/O, with blk_interposer never loaded?  (Issue 13,
# point 14: the `Oops: int3` at submit_bio_noacct+0x5.)
#
# How: O_DIRECT reads and writes on vdb and vdc in loops (every one a
# submit_bio_noacct call, on both vCPUs), while the function tracer, filtered
# to submit_bio_noacct, is switched on and off for SECONDS.  Each switch
# rewrites the function's first instruction through an int3 (text_poke_bp),
# as registering our hook does.  It prints the number of switches; an Oops
# is in the kernel log (and makes the run FAIL).  Compare the TCG modes and
# vCPU counts, one VM at a time:
#   cargo xtask vm --kernel 6.12 --scenario experiments/ftrace-toggle-without-module.sh \
#       [--accel tcg,thread=multi | --accel tcg,thread=single] [--smp 1]
#
# TIMEOUT: 900
DESCRIPTION="the function tracer toggled on submit_bio_noacct under I/O, no module loaded"
SECONDS_TO_RUN=240

. /tests/common/rc

_log "Running experiments/ftrace-toggle-without-module: $DESCRIPTION"
T=/sys/kernel/tracing
[ -e $T/available_tracers ] || mount -t tracefs nodev $T 2>/dev/null ||
	_skip "tracefs cannot be mounted in this kernel"
grep -qx submit_bio_noacct $T/available_filter_functions ||
	_skip "submit_bio_noacct is not traceable in this kernel"
grep -q blk_interposer /proc/modules && _fail "blk_interposer is loaded: the experiment needs it absent"

_io() {
	while :; do
		dd if=/dev/vdb of=/dev/null bs=4k count=256 iflag=direct 2>/dev/null
		dd if=/dev/zero of=/dev/vdc bs=4k count=256 oflag=direct 2>/dev/null
	done
}
_io & IO1=$!
_io & IO2=$!

echo submit_bio_noacct >$T/set_ftrace_filter || _fail "cannot set the ftrace filter"
end=$(($(cut -d. -f1 /proc/uptime) + SECONDS_TO_RUN))
n=0
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
	echo function >$T/current_tracer || _fail "cannot start the function tracer (after $n switches)"
	echo nop >$T/current_tracer || _fail "cannot stop the function tracer (after $n switches)"
	n=$((n + 2))
done
kill $IO1 $IO2
wait 2>/dev/null || true
grep -q blk_interposer /proc/modules && _fail "blk_interposer was loaded meanwhile"
_log "RESULT: $n text patches of submit_bio_noacct in $SECONDS_TO_RUN s, $(nproc) vCPU(s), I/O running; Oopses: see the kernel log"
_dmesg_check
_log "Experiment complete"
