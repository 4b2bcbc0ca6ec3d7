#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The hook is an ftrace direct call on submit_bio_noacct().  When another
# ftrace user traces the same function, ftrace calls both through its generic
# trampoline and then jumps to ours; when it stops, the site calls ours again.
# ext4 on /dev/vdb is written and verified by fio throughout, while the
# function tracer is turned on before the interposer exists, off and on again
# while it is attached; the hook is unregistered and registered again while
# it traces; it is turned off after the last interposer is gone.  Each phase must show bios
# redirected through dm-linear (and, with the tracer on, submit_bio_noacct in
# the trace); files from every phase match their checksums after a remount,
# fio verifies every block, e2fsck is clean, the kernel log has no warning.
#
# TIMEOUT: 600
DESCRIPTION="the function tracer on submit_bio_noacct and the hook work together, on and off, losing nothing"

. /tests/common/rc

T=/sys/kernel/tracing
[ -e $T/available_tracers ] || mount -t tracefs nodev $T 2>/dev/null ||
	_skip "tracefs cannot be mounted in this kernel"
grep -qw function $T/available_tracers || _skip "the kernel has no function tracer"
grep -qx submit_bio_noacct $T/available_filter_functions ||
	_skip "submit_bio_noacct is not traceable in this kernel"

# _tracer on|off: the function tracer on submit_bio_noacct alone, or nop.
_tracer() {
	if [ "$1" = on ]; then
		echo submit_bio_noacct >$T/set_ftrace_filter || _fail "cannot set the ftrace filter"
		echo function >$T/current_tracer || _fail "cannot start the function tracer"
		echo >$T/trace
	else
		echo nop >$T/current_tracer || _fail "cannot stop the function tracer"
		echo >$T/set_ftrace_filter
	fi
	_log "function tracer $1"
}

# _phase NAME: write files for NAME and prove that bios went through dm-linear.
_phase() {
	_b=$(_counter /dev/vdb redirected)
	_fill_files /mnt/$1 8
	_manifest_make /mnt/$1 /tmp/$1.sums
	_a=$(_counter /dev/vdb redirected)
	[ "$_a" -gt "$_b" ] || _fail "$1: no bio went through the interposer ($_b -> $_a)"
	_log "$1: redirected $_b -> $_a"
}

# _traced NAME: the tracer saw submit_bio_noacct during NAME.
_traced() {
	grep -q 'submit_bio_noacct' $T/trace ||
		_fail "$1: the function tracer recorded no submit_bio_noacct call"
}

_load_module
echo 200 >/sys/module/blk_interposer/parameters/hook_linger_ms ||
	_fail "cannot shorten hook_linger_ms"
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start live /mnt 16M
sleep 2

_tracer on
SZ=$(blockdev --getsz /dev/vdb)
echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin ||
	_fail "interposer create failed while the function tracer traces submit_bio_noacct"
_phase traced-create
_traced traced-create

_tracer off
_phase untraced
_tracer on
_phase traced-again
_traced traced-again

interposer remove vdb-lin || _fail "interposer remove failed while traced"
# The hook lingers hook_linger_ms (set to 200 above): it is unregistered now,
# with the tracer on, and registered again by the next create.
sleep 1
_fill_files /mnt/after 8
_manifest_make /mnt/after /tmp/after.sums
_traced after-remove
echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin ||
	_fail "interposer create failed after the hook was unregistered under the tracer"
_phase recreated
_traced recreated
interposer remove vdb-lin || _fail "the second interposer remove failed"
_tracer off
sleep 1
_fio_stop live

umount /mnt || _fail "umount failed"
_mount /dev/vdb /mnt
for _m in traced-create untraced traced-again after recreated; do
	_manifest_check /tmp/$_m.sums /mnt/$_m
done
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
echo "Test complete"
