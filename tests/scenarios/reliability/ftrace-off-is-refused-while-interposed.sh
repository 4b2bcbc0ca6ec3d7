#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# reliability/ftrace-off-is-refused-while-interposed: `sysctl
# kernel.ftrace_enabled=0` would turn the hook's call site into a NOP and
# send an attached device's bios straight to the disk, silently (no COW for
# a snapshot, nothing for dm-era).  The module keeps it from happening: the
# sysctl is refused while the hook is registered, and a create while
# function tracing is off fails with an error that says so.
#
# How: ext4 on /dev/vdb.  With ftrace_enabled=0, `interposer create` must
# fail naming the sysctl and leave nothing behind.  With it back at 1, a
# linear interposer is created; writing 0 to the sysctl must fail and leave
# it at 1; 64 O_DIRECT writes must each show in the interposer's counter
# (not one bypasses it).  After `remove` the hook lingers
# (hook_linger_ms=300) and the sysctl stays refused until it is gone, then
# it may be switched off and on again.  fsck is clean.  Kernels that
# deprecated the sysctl (7.3: "no longer disables ftrace") refuse the write
# themselves: there only the attached part runs, and the value stays 1.
#
# TIMEOUT: 300
# KERNELS: all

DESCRIPTION="function tracing cannot be switched off under an interposer, and create refuses while it is off"

. /tests/common/rc
set -e

_load_module

_log "Running reliability/ftrace-off-is-refused-while-interposed: $DESCRIPTION"

F=/proc/sys/kernel/ftrace_enabled
[ -w "$F" ] || _skip "no $F in this kernel"
echo 300 >/sys/module/blk_interposer/parameters/hook_linger_ms ||
	_fail "cannot shorten hook_linger_ms"
SZ=$(blockdev --getsz /dev/vdb)
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 8
_manifest_make /mnt/before /tmp/before.sums

# 1. Off: nothing may be interposed.  Newer kernels (7.3 here; 7.2 not yet)
# refuse the write themselves and log that the sysctl no longer disables ftrace:
# there the bypass cannot happen, which parts 2 and 3 still check.
DEPRECATED=
if ! echo 0 >"$F" 2>/tmp/off.err; then
	dmesg | grep -q "ftrace_enabled file is deprecated and no longer disables ftrace" ||
		_fail "cannot switch function tracing off with nothing interposed: $(cat /tmp/off.err)"
	[ "$(cat "$F")" = 1 ] || _fail "the refused write left ftrace_enabled at $(cat "$F")"
	DEPRECATED=1
	_log "this kernel refuses ftrace_enabled=0 by itself ($(cat /tmp/off.err)): the sysctl cannot switch the hook off"
fi
if [ -z "$DEPRECATED" ]; then
	_expect_fail "create while function tracing is off" \
		"function tracing is switched off \(sysctl kernel.ftrace_enabled is 0\).*sysctl kernel.ftrace_enabled=1" \
		interposer create vdb-lin --table "0 $SZ linear [interpose]/dev/vdb 0"
	[ -z "$(dmsetup ls | grep -v 'No devices')" ] || _fail "the refused create left a dm device: $(dmsetup ls)"
	[ ! -e /dev/interposer/vdb ] || _fail "the refused create left the lower device"
	dmesg | grep -q "function tracing is off" || _fail "the kernel log does not say why"
	echo 1 >"$F"
fi

# 2. On, attached: the sysctl is refused and the bios keep coming.
interposer create vdb-lin --table "0 $SZ linear [interpose]/dev/vdb 0" >/dev/null ||
	_fail "create failed"
if echo 0 >"$F" 2>/tmp/sysctl.err; then
	_fail "ftrace_enabled=0 was accepted while /dev/vdb is interposed"
fi
_log "ftrace_enabled=0 refused: $(cat /tmp/sysctl.err)"
[ "$(cat "$F")" = 1 ] || _fail "ftrace_enabled reads $(cat "$F") after the refusal"
_before=$(_counter /dev/vdb redirected)
_i=0
while [ "$_i" -lt 64 ]; do
	dd if=/dev/urandom of=/mnt/direct bs=4k count=1 seek="$_i" oflag=direct conv=notrunc 2>/dev/null ||
		_fail "direct write $_i failed"
	_i=$((_i + 1))
done
_after=$(_counter /dev/vdb redirected)
_log "64 direct writes: the interposer's counter went $_before -> $_after"
[ $((_after - _before)) -ge 64 ] || _fail "only $((_after - _before)) of 64 direct writes went through the interposer"
sha256sum /mnt/direct >/tmp/direct.sum

# 3. Removed: refused while the hook lingers, allowed once it is gone.
interposer remove vdb-lin >/dev/null || _fail "remove failed"
if echo 0 >"$F" 2>/dev/null; then
	echo 1 >"$F"
	_fail "ftrace_enabled=0 was accepted while the hook lingers"
fi
sleep 2
if [ -z "$DEPRECATED" ]; then
	echo 0 >"$F" || _fail "ftrace_enabled=0 still refused after the hook is gone"
	echo 1 >"$F" || _fail "cannot switch function tracing on again"
fi
[ "$(cat "$F")" = 1 ] || _fail "ftrace_enabled reads $(cat "$F") at the end"

umount /mnt
_fsck_ext4 /dev/vdb
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
sha256sum -c /tmp/direct.sum >/dev/null || _fail "/mnt/direct does not hold what was written"
umount /mnt
_dmesg_check
_log "Test complete"
