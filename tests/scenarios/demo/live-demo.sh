#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The live demo (`cargo xtask demo`): a mounted ext4 that an application keeps
# writing to gets a dm-linear interposer and loses it again, live.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="the README's live demo"

. /tests/common/rc

_say() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
_run() { printf '$ %s\n' "$*"; sh -c "$*"; }

_load_module
_say "ext4 on /dev/vdb, mounted on /mnt, and an application writing to it"
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fio_verify_start app /mnt 16M
_fill_files /mnt/before 8
_manifest_make /mnt/before /tmp/before.sums
sleep 2

_say "Put dm-linear on top of it, live: [interpose]/dev/vdb is the disk beneath the hook"
_run 'echo "0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0" | interposer create vdb-lin'
_run 'dmsetup table vdb-lin'
sleep 3
_say "The application's bios now go through dm-linear"
_run 'interposer ls'
sleep 3
_run 'interposer ls'

_say "Take it away again, still mounted"
_run 'interposer remove vdb-lin'
_run 'interposer ls'
sleep 2

_say "Check: fio verifies every block it wrote, files match, e2fsck is clean"
_fio_stop app
umount /mnt
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
umount /mnt
_fsck_ext4 /dev/vdb
_dmesg_check
_say "Nothing unmounted during the switch, nothing lost."
