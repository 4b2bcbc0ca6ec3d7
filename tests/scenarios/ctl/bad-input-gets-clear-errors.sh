#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Every kind of bad request is refused with an error that names the problem,
# leaves nothing half-made behind (no dm device, no lower device), and
# neither disturbs the mounted, busy filesystem on /dev/vdb nor makes the
# kernel log a warning.  The kernel's own checks are reached through the
# low-level `interposer attach`, so they are tested even where the library
# would have caught the mistake first.  Each refusal exits with the status of
# its kind (`interposer --help`: 3 not found, 4 busy, 7 refused, 1 other), and
# with --json prints the error object on stdout.  Paths are checked before the
# control device is opened, so a wrong path is not reported as a module that
# does not load (nor loads it).
#
# TIMEOUT: 600
DESCRIPTION="bad input gets a clear error, leaves nothing behind, harms nothing"

. /tests/common/rc

echo "not a disk" >/tmp/a-file
_unloaded() { ! grep -q '^blk_interposer ' /proc/modules; }
_unloaded && _was_unloaded=1 || _was_unloaded=
_expect_exit "info of a file" 7 "^interposer: error: cannot show /tmp/a-file: /tmp/a-file is not a block device$" \
	interposer info /tmp/a-file
_expect_exit "info of a missing path" 3 "^interposer: error: cannot show /nonexistent: /nonexistent does not exist$" \
	interposer info /nonexistent
_expect_json_error "--json detach of a file" 7 \
	"cannot detach /tmp/a-file: /tmp/a-file is not a block device" refused \
	interposer --json detach /tmp/a-file
_expect_json_error "--json info of a missing path" 3 \
	"cannot show /nonexistent: /nonexistent does not exist" not_found \
	interposer info --json /nonexistent
[ -z "$_was_unloaded" ] || _unloaded ||
	_fail "a command with a wrong path loaded the module: paths must be checked first"
_expect_exit "a bad size" 2 "512-byte sectors" \
	interposer snapshot create --cow /dev/vdc --chunk-size 1.3K /dev/vdb

_load_module
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 8
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start bad /mnt 8M
SZ=$(blockdev --getsz /dev/vdb)
SZC=$(blockdev --getsz /dev/vdc)

_expect_exit "a path that is not a block device" 7 "not a block device" \
	interposer create x --table "0 8 linear [interpose]/tmp/a-file 0"
_expect_exit "a missing device" 3 "/dev/nosuch does not exist" \
	interposer create x --table "0 8 linear [interpose]/dev/nosuch 0"
_expect_exit "a table without [interpose]" 7 "\[interpose\]" \
	interposer create x --table "0 $SZC linear /dev/vdc 0"
_expect_exit "a table that also names the device itself" 7 "itself|loop" \
	interposer create x --table "0 $SZC linear [interpose]/dev/vdc 0
$SZC $SZC linear /dev/vdc 0"
_expect_exit "an interposer smaller than the device" 7 "smaller" \
	interposer create x --table "0 $((SZC / 2)) linear [interpose]/dev/vdc 0"
_expect_exit "a device interposed onto itself" 7 "itself|same disk|loop" \
	interposer attach /dev/vdc /dev/vdc
# A zoned device: the lower device would not carry its zones.
modprobe null_blk nr_devices=1 zoned=1 zone_size=4 gb=1 && [ -b /dev/nullb0 ] ||
	_fail "cannot make a zoned null_blk device"
[ "$(cat /sys/block/nullb0/queue/zoned)" = host-managed ] || _fail "nullb0 is not zoned"
_expect_exit "a zoned device" 7 "a DAX-capable or a zoned device" \
	interposer create z --table "0 $(blockdev --getsz /dev/nullb0) linear [interpose]/dev/nullb0 0"
[ -e /dev/interposer/nullb0 ] && _fail "the refused zoned create left a lower device"
rmmod null_blk
[ -z "$(dmsetup ls | grep -v 'No devices found')" ] ||
	_fail "a refused create left a dm device behind: $(dmsetup ls)"
[ -e /dev/interposer/vdc ] && _fail "a refused request left /dev/interposer/vdc behind"

# The low-level verbs: detach leaves the dm device and the lower device, so
# the kernel can be asked to attach vdc onto its own lower device.
echo "0 $SZC linear [interpose]/dev/vdc 0" | interposer create vdc-lin ||
	_fail "create vdc-lin failed"
interposer detach /dev/vdc || _fail "detach /dev/vdc failed"
_expect_exit "a device interposed onto its own lower device" 7 "lower|loop" \
	interposer attach /dev/vdc /dev/interposer/vdc
interposer attach /dev/vdc /dev/mapper/vdc-lin || _fail "re-attach of vdc-lin failed"
interposer remove vdc-lin || _fail "remove vdc-lin failed"

echo "0 $SZ linear [interpose]/dev/vdb 0" | interposer create vdb-lin ||
	_fail "the valid create failed"
_expect_exit "interposing a device twice" 4 "already" \
	interposer create vdb-lin2 --table "0 $SZ linear [interpose]/dev/vdb 0"
dmsetup info vdb-lin2 >/dev/null 2>&1 && _fail "the second create left vdb-lin2 behind"
_expect_exit "remove of an unknown name" 3 "no device-mapper device named .nope." \
	interposer remove nope
_expect_exit "info of a name that is nothing" 3 "names no device" \
	interposer info nope
_expect_fail "dmsetup remove of an attached interposer" "busy" \
	dmsetup --noudevsync remove vdb-lin
_expect_fail "rmmod while attached" "in use|unavailable|busy" rmmod blk_interposer
[ "$(_counter /dev/vdb attaches)" -eq 1 ] || _fail "vdb is no longer attached"

# util-linux setpriv (busybox's cannot change the uid)
[ -x /usr/bin/setpriv ] || _fail "/usr/bin/setpriv (util-linux) is missing from the VM"
_as_user() { /usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
_expect_exit "a non-root caller (node mode 0600)" 1 "root|permission|CAP_SYS_ADMIN" \
	_as_user interposer ls
chmod 0666 /dev/blk-interposer
_expect_exit "a non-root caller (ioctl check)" 1 "root|permission|CAP_SYS_ADMIN" \
	_as_user interposer detach /dev/vdb
chmod 0600 /dev/blk-interposer

# A suspended interposer holds the bios it took; removing it would lose them.
dmsetup suspend --nolockfs vdb-lin || _fail "dmsetup suspend vdb-lin failed"
_expect_exit "remove of a suspended interposer" 4 "suspended.*dmsetup resume vdb-lin" \
	interposer remove vdb-lin
_expect_json_error "--json remove of a suspended interposer" 4 \
	"cannot remove interposer vdb-lin: interposer \`vdb-lin\` is suspended and holds the bios it took, which taking it off now would strand; resume it first with \`dmsetup resume vdb-lin\`" busy \
	interposer --json remove vdb-lin
_expect_exit "switch away from a suspended interposer" 4 "suspended" \
	interposer switch /dev/vdb=none
dmsetup resume vdb-lin || _fail "dmsetup resume vdb-lin failed"
[ "$(_counter /dev/vdb attaches)" -eq 1 ] || _fail "vdb is no longer attached"

interposer remove vdb-lin || _fail "remove failed"
_fio_stop bad
umount /mnt
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
rmmod blk_interposer || _fail "rmmod after remove failed"
echo "Test complete"
