#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The interposed disk is pulled out of the VM while it is attached and under
# writes, and the kernel copes: the writers get I/O errors instead of hanging,
# the attachment reports the device gone, `interposer remove` cleans up, and
# the module unloads.
#
# How: ext4 on /dev/vdc is mounted and fio writes and verifies a file in it
# (O_DIRECT) while a second fio writes the raw /dev/vdd.  Both disks get a
# dm-linear interposer.  Then the scenario asks the host to hot-unplug vdc
# (qemu monitor `device_del vdc`, forwarded by xtask from the console line
# that _qemu_monitor prints) and waits for /sys/block/vdc to vanish.  Checks:
# the fio on vdc ends with an I/O error within 60 s (no D-state hang);
# `interposer ls` shows vdc `gone` (human and JSON) while vdd stays
# `attached` and its fio goes on verifying; `interposer remove` of the gone
# device succeeds with its (dead) filesystem still mounted and leaves no dm
# device, lower device or listing entry behind; after the unmount and the
# removal of vdd's interposer, `rmmod blk_interposer` succeeds.  vdd's fio
# verifies every block it wrote, so the surviving disk lost nothing.
DESCRIPTION="hot-unplug of an interposed disk under writes fails its I/O cleanly and cleans up"

. /tests/common/rc

_have_program fio
_load_module

# _dstate: every task in uninterruptible sleep, with its kernel stack.
_dstate() {
	for _s in /proc/[0-9]*/stat; do
		_d=${_s%/stat}
		read -r _pid _comm _state _rest <"$_s" 2>/dev/null || continue
		[ "$_state" = D ] || continue
		echo "D-state: $_pid $_comm"
		cat "$_d/stack" 2>/dev/null
	done
}

_mkfs_ext4 /dev/vdc
_mount /dev/vdc /mnt
_fio_verify_start pulled /mnt 16M
# The disk that stays: fio on the raw block device (_fio_verify_start writes
# DIR/NAME.fio, so give it vdd under that name).
ln -sf /dev/vdd /dev/kept.fio
_fio_verify_start kept /dev 8M
sleep 2

for _d in vdc vdd; do
	_sz=$(blockdev --getsz /dev/$_d)
	echo "0 $_sz linear [interpose]/dev/$_d 0" | interposer create $_d-lin ||
		_fail "interposer create $_d-lin failed"
done
interposer ls
sleep 3
_r=$(_counter /dev/vdc redirected)
[ "$_r" -gt 0 ] || _fail "no bio of vdc went through its interposer"
_log "vdc: $_r bios redirected before the unplug"

_vdc=$(cat /sys/block/vdc/dev)
_qemu_monitor device_del vdc
_wait_disk_gone vdc 60

# The writer on the pulled disk must fail, not hang.
_pid=$(cat "$_FIO_STATE_ROOT/pulled/pid")
_i=0
while kill -0 "$_pid" 2>/dev/null; do
	_i=$((_i + 1))
	if [ "$_i" -gt 600 ]; then
		_dstate
		_fail "the fio writer on the pulled disk still runs 60 s after the unplug"
	fi
	sleep 0.1
done
wait "$_pid" && _fail "fio on the pulled disk ended without an error"
rm -f "$_FIO_STATE_ROOT/pulled/pid"
grep -iE 'error|err=' "$_FIO_STATE_ROOT/pulled/failed" | head -3
grep -qiE 'Input/output error|err= *-?5|Read-only file system|err= *-?30' \
	"$_FIO_STATE_ROOT/pulled/failed" || {
	cat "$_FIO_STATE_ROOT/pulled/failed"
	_fail "fio on the pulled disk did not fail with EIO/EROFS"
}
_log "fio on the pulled disk ended with an I/O error after $((_i / 10)) s"

interposer ls | tee /tmp/ls.out
# The device node is gone, so the listing names it by number.
grep -qE "^(/dev/vdc|$_vdc) .* gone " /tmp/ls.out || _fail "interposer ls does not show vdc ($_vdc) gone"
grep -qE '^/dev/vdd .* attached ' /tmp/ls.out || _fail "interposer ls does not show vdd attached"
interposer --json ls | tr -d ' \n' >/tmp/ls.json
grep -q '"state":"gone"' /tmp/ls.json || _fail "interposer --json ls has no \"state\": \"gone\": $(cat /tmp/ls.json)"
_dmesg_check

# The filesystem of the gone disk is still mounted (shut down or erroring):
# the detach must not need to freeze it.
_log "remove the interposer of the gone disk, its filesystem still mounted"
timeout 120 interposer remove vdc-lin || {
	_dstate
	_fail "interposer remove vdc-lin failed with the gone filesystem still mounted"
}
dmsetup info vdc-lin >/dev/null 2>&1 && _fail "vdc-lin is still a dm device after remove"
[ -e /dev/interposer/vdc ] && _fail "the lower device of vdc was not removed"
[ "$(interposer --json ls | tr -d ' \n' | grep -o '"state"' | wc -l)" -eq 1 ] ||
	_fail "interposer ls still lists more than vdd: $(interposer ls)"
umount /mnt || _fail "umount of the pulled disk's filesystem failed"

_fio_stop kept
interposer remove vdd-lin || _fail "interposer remove vdd-lin failed"
interposer ls
_dmesg_check
rmmod blk_interposer || _fail "rmmod blk_interposer after the unplug failed"
lsmod | grep -q '^blk_interposer ' && _fail "blk_interposer is still loaded"
dmesg | grep -E 'blk_interposer|vdc' | tail -20
_log "Test complete"
