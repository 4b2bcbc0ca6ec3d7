#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# attach/dmsetup-reload-of-an-attached-interposer: what a raw `dmsetup
# reload` does to an interposer attached to a mounted filesystem (issue 13,
# point 11; the module checks tables at attach and switch only).
#
# How: ext4 on /dev/vdb, made 400 MiB of the 512 MiB disk, mounted, fio
# verify running; a dm-linear interposer is attached.
# 1. A table that names the live device itself (`linear /dev/vdb 0`, not
#    `[interpose]/dev/vdb`) would send the interposer's bios back into the
#    hook, a loop.  The kernel refuses to load it: dm opens its devices
#    exclusively and the mounted filesystem holds vdb (EBUSY).  The
#    interposer keeps its table, has no inactive one, and still redirects.
# 2. A table shorter than the device (8 sectors short) is accepted by dm:
#    after the resume, a read of vdb's last 4 KiB fails (EIO) while the
#    filesystem, which ends well before, goes on; the original table
#    reloaded and resumed, the read works again.
# Then fio verifies every block, the files match after a remount, fsck.
# An unmounted device has no exclusive holder: there the table of step 1
# loads and its I/O loops (README, Limits), so this scenario does not try.
#
# TIMEOUT: 600
DESCRIPTION="dmsetup reload of an attached interposer: a loop is refused by the kernel, a short table fails only beyond its end"

. /tests/common/rc
set -e

_have_program fio
_load_module

_log "Running attach/dmsetup-reload-of-an-attached-interposer: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vdb)
LAST=$((SZ / 8 - 1))	# vdb's last 4 KiB block, 112 MiB beyond the filesystem's end
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/vdb 400M ||
	_fail "mkfs.ext4 /dev/vdb 400M failed"
_mount /dev/vdb /mnt
_fill_files /mnt/before 8
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start live /mnt 32M
sleep 2
echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin >/dev/null ||
	_fail "interposer create failed"
TABLE=$(dmsetup table vdb-lin)
_log "attached: $TABLE"

_expect_fail "reload naming the live /dev/vdb directly" "busy" \
	dmsetup reload vdb-lin --table "0 $SZ linear /dev/vdb 0"
[ "$(dmsetup table vdb-lin)" = "$TABLE" ] || _fail "the live table changed: $(dmsetup table vdb-lin)"
[ -z "$(dmsetup table --inactive vdb-lin)" ] ||
	_fail "an inactive table was left: $(dmsetup table --inactive vdb-lin)"
_b=$(_counter /dev/vdb redirected)
_fill_files /mnt/during 4
_a=$(_counter /dev/vdb redirected)
[ "$_a" -gt "$_b" ] || _fail "no bio went through the interposer after the refused reload"
_log "the interposer keeps its table and redirects ($_b -> $_a)"

dd if=/dev/vdb of=/dev/null bs=4k skip=$LAST count=1 iflag=direct 2>/dev/null ||
	_fail "the last 4 KiB of vdb cannot be read with the full table"
SHORT=$(echo "$TABLE" | awk -v n=$((SZ - 8)) '{ $2 = n; print }')
dmsetup reload vdb-lin --table "$SHORT" || _fail "dm refused the shorter table: $SHORT"
dmsetup resume vdb-lin || _fail "resume with the shorter table failed"
_log "shorter table live: $(dmsetup table vdb-lin)"
if dd if=/dev/vdb of=/dev/null bs=4k skip=$LAST count=1 iflag=direct 2>/tmp/dd.err; then
	_fail "the last 4 KiB of vdb read beyond the shorter table's end"
fi
grep -qi "input/output error" /tmp/dd.err || {
	cat /tmp/dd.err
	_fail "the read beyond the table's end failed, but not with EIO"
}
_log "beyond the shorter table: $(head -1 /tmp/dd.err)"
_fill_files /mnt/short 4
dmsetup reload vdb-lin --table "$TABLE" || _fail "reloading the original table failed"
dmsetup resume vdb-lin || _fail "resume with the original table failed"
dd if=/dev/vdb of=/dev/null bs=4k skip=$LAST count=1 iflag=direct 2>/dev/null ||
	_fail "the last 4 KiB of vdb cannot be read with the original table back"
_log "original table back: the device's end reads again"

interposer remove vdb-lin >/dev/null || _fail "interposer remove failed"
_fio_stop live
_manifest_make /mnt/during /tmp/during.sums
_manifest_make /mnt/short /tmp/short.sums
umount /mnt
_fsck_ext4 /dev/vdb
_mount /dev/vdb /mnt
for m in before during short; do
	_manifest_check /tmp/$m.sums /mnt/$m
done
umount /mnt
_dmesg_check
_log "Test complete"
