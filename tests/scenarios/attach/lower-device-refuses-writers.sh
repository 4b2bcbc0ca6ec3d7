#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# attach/lower-device-refuses-writers: /dev/interposer/<dev> is a second
# name for a mounted device, beneath the hook; whatever is written there
# bypasses the interposer and lands under the filesystem.  Only the dm table
# that uses it may write: mkfs, wipefs, blkdiscard (with and without
# --force) and dd on it are refused, and the filesystem is untouched.
# Reading it still works.
#
# How: ext4 on /dev/vdb under fio verify, a linear interposer created live.
# Each writer must fail "busy" or "in use" (the table's exclusive claim for the
# O_EXCL openers, the lower device's own refusal of a plain write open for
# the rest); blkid still finds ext4 on the lower device, fio verifies, the
# files match their checksums after remove and remount, e2fsck is clean.
#
# TIMEOUT: 300

DESCRIPTION="the lower device refuses mkfs, wipefs, blkdiscard and dd while a table uses it"

. /tests/common/rc
set -e

_have_program wipefs blkdiscard blkid
_load_module

_log "Running attach/lower-device-refuses-writers: $DESCRIPTION"

SZ=$(blockdev --getsz /dev/vdb)
_mkfs_ext4 /dev/vdb
_mount /dev/vdb /mnt
_fill_files /mnt/before 16
_manifest_make /mnt/before /tmp/before.sums
_fio_verify_start live /mnt 16M
interposer create vdb-lin --table "0 $SZ linear [interpose]/dev/vdb 0" >/dev/null ||
	_fail "create failed"
L=/dev/interposer/vdb
[ -b "$L" ] || _fail "no $L"

_lower_refuses_writers "$L"
dd if="$L" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null || _fail "reading $L failed"
[ "$(_counter /dev/vdb attaches)" -ge 1 ] || _fail "the interposer is not attached"

_fio_stop live
interposer remove vdb-lin >/dev/null || _fail "remove failed"
umount /mnt
_fsck_ext4 /dev/vdb
_mount /dev/vdb /mnt
_manifest_check /tmp/before.sums /mnt/before
umount /mnt
_dmesg_check
_log "Test complete"
