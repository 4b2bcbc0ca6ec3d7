#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# `interposer era changed --since E` lists exactly the era blocks that
# era_invalidate --written-since E lists, and covers every block of the files
# written after `interposer era checkpoint` returned E.
#
# How: ext4 on /dev/vdb1 is mounted and written by a file writer while
# `interposer era attach` puts dm-era on it live.  After the checkpoint the
# scenario writes known files, freezes the filesystem (no write may land
# between the two answers), asks `interposer era changed --json` (it takes and
# drops its own metadata snapshot, reading dm-era's metadata in Rust), then
# takes a metadata snapshot with dmsetup and asks era_invalidate, the
# independent oracle.  The two block lists must be equal; debugfs names the
# file blocks, each must be listed.  Bad input is refused with errors that
# name the fix; detach under writes, re-attach onto the same metadata (the
# eras go on, but a checkpoint from before the detach is refused as a gap,
# one taken after it is answered), fsck and the writer's checksums close it.
#
# TIMEOUT: 600
#
# The VM runs this after a fresh boot with four empty disks: /dev/vda 128M,
# vdb 512M, vdc 256M, vdd 64M.

DESCRIPTION="era changed lists exactly what era_invalidate lists, under live ext4 writes"

. /tests/common/rc
set -e

_have_program era_invalidate sgdisk debugfs fsfreeze
_load_module

_log "Running era/changed-matches-era-invalidate-under-ext4-writes: $DESCRIPTION"

sgdisk -o -n 1:1MiB:+400MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb1 ] || _fail "partition vdb1 did not appear"
_mkfs_ext4 /dev/vdb1 -b 4096	# debugfs below counts in these blocks
_mount /dev/vdb1 /n
_file_writer_start /n/w 0.2

# Bad input first: each refused, nothing created.
_expect_exit "a block size that is not a multiple of 4 KiB" 7 "multiple of 4 KiB" \
	interposer era attach /dev/vdb1 --metadata /dev/vdd --block-size 6k
_mkfs_ext4 /dev/vdc
_expect_exit "metadata on a device holding ext4" 7 "not dm-era metadata.*dd if=/dev/zero of=/dev/vdc" \
	interposer era attach /dev/vdb1 --metadata /dev/vdc
_expect_exit "metadata on the tracked device itself" 7 "the device it tracks" \
	interposer era attach /dev/vdb1 --metadata /dev/vdb1
_expect_exit "checkpoint without an era interposer" 3 "has no dm-era interposer; attach one" \
	interposer era checkpoint vdb1
[ -z "$(dmsetup ls | grep -v 'No devices')" ] || _fail "a refused attach left a dm device: $(dmsetup ls)"

_log "era attach, live under the file writer"
interposer era attach /dev/vdb1 --metadata /dev/vdd --block-size 64k ||
	_fail "interposer era attach failed"
dmsetup table vdb1-era
interposer era status vdb1
_expect_exit "a second dm-era on the same metadata device" 4 "metadata device /dev/vdd is in use" \
	interposer era attach /dev/vdc --metadata /dev/vdd
dmsetup info vdc-era >/dev/null 2>&1 && _fail "the refused attach left vdc-era behind"
sleep 1
[ "$(_counter /dev/vdb1 redirected)" -gt 0 ] || _fail "no bio went through dm-era"

E=$(interposer era checkpoint vdb1)
ERA=${E%@*}	# the checkpoint is ERA@GENERATION; era_invalidate takes the era
_log "checkpoint: $E"
echo "$E" | grep -qE '^[0-9]+@[0-9a-f]{16}$' || _fail "checkpoint printed '$E', not ERA@GENERATION"
[ "$ERA" -ge 2 ] || _fail "checkpoint printed '$E', not a new era"

# Known files after the checkpoint (the writer goes on meanwhile).
mkdir -p /n/known
_i=0
while [ $_i -lt 12 ]; do
	_i=$((_i + 1))
	dd if=/dev/urandom of=/n/known/k$_i bs=4k count=$((_i * 5)) conv=fsync 2>/dev/null
done
_file_writer_stop
sync
fsfreeze --freeze /n

# The file blocks (4 KiB each) as era blocks (64 KiB: 16 fs blocks each).
: >/tmp/files.blocks
_i=0
while [ $_i -lt 12 ]; do
	_i=$((_i + 1))
	debugfs -R "blocks /known/k$_i" /dev/vdb1 2>/dev/null | tr ' ' '\n' | grep . |
		while read -r _b; do echo $((_b / 16)); done >>/tmp/files.blocks
done
sort -un /tmp/files.blocks >/tmp/files.sorted

[ -s /tmp/files.sorted ] || _fail "debugfs named no block of the known files"

interposer --json era changed vdb1 --since "$E" >/tmp/changed.json ||
	_fail "interposer era changed failed"
interposer era changed vdb1 --since "$E" >/tmp/changed.txt 2>/tmp/changed.summary
cat /tmp/changed.summary
# "begin": A, then "end": B (exclusive) per range.
sed -n 's/.*"begin": \([0-9]*\).*/\1/p' /tmp/changed.json >/tmp/b
sed -n 's/.*"end": \([0-9]*\).*/\1/p' /tmp/changed.json >/tmp/e
[ "$(wc -l </tmp/b)" -eq "$(wc -l </tmp/e)" ] || _fail "the JSON ranges do not parse"
[ "$(wc -l </tmp/b)" -eq "$(wc -l </tmp/changed.txt)" ] ||
	_fail "text and JSON give different numbers of ranges"
paste -d' ' /tmp/b /tmp/e | while read -r _b _e; do
	while [ "$_b" -lt "$_e" ]; do echo "$_b"; _b=$((_b + 1)); done
done | sort -un >/tmp/ours.sorted
grep -q '"name": "vdb1-era"' /tmp/changed.json || _fail "changed --json does not name vdb1-era"
dmsetup status vdb1-era | awk '{ if ($7 != "-") exit 1 }' ||
	_fail "interposer era changed left its metadata snapshot held: $(dmsetup status vdb1-era)"

# The oracle, on a snapshot of the same state (the filesystem is frozen).
dmsetup message vdb1-era 0 take_metadata_snap
era_invalidate --written-since "$ERA" --metadata-snapshot /dev/vdd >/tmp/inv.xml ||
	_fail "era_invalidate failed"
_expect_exit "changed while a metadata snapshot is held" 4 "already holds a metadata snapshot.*drop_metadata_snap" \
	interposer era changed vdb1 --since "$E"
dmsetup message vdb1-era 0 drop_metadata_snap
fsfreeze --unfreeze /n
if grep -vE '^ *(</?blocks>|<block block="[0-9]+"/>|<range begin="[0-9]+" end *= *"[0-9]+"/>)$' \
	/tmp/inv.xml; then
	_fail "era_invalidate printed lines this scenario does not understand (above)"
fi
{
	sed -n 's/.*<block block="\([0-9]*\)".*/\1/p' /tmp/inv.xml
	sed -n 's/.*<range begin="\([0-9]*\)" end *= *"\([0-9]*\)".*/\1 \2/p' /tmp/inv.xml |
		while read -r _b _e; do
			while [ "$_b" -lt "$_e" ]; do echo "$_b"; _b=$((_b + 1)); done
		done
} | sort -un >/tmp/oracle.sorted
_log "era blocks listed: ours $(wc -l </tmp/ours.sorted) in $(wc -l </tmp/b) ranges," \
	"era_invalidate $(wc -l </tmp/oracle.sorted); known file blocks $(wc -l </tmp/files.sorted)"
if ! cmp -s /tmp/ours.sorted /tmp/oracle.sorted; then
	diff /tmp/ours.sorted /tmp/oracle.sorted | head -20
	_fail "interposer era changed and era_invalidate disagree"
fi
_missing=$(comm -23 /tmp/files.sorted /tmp/ours.sorted | wc -l)
[ "$_missing" -eq 0 ] || _fail "$_missing era blocks of the known files are not listed"
[ "$(wc -l </tmp/ours.sorted)" -lt "$(grep -c . /tmp/files.sorted)" ] &&
	_fail "fewer blocks listed than the known files hold"

# Detach under writes, then attach again onto the same metadata: the eras
# go on, but the writes made while detached are in no era, so a checkpoint
# from before the detach is refused (a gap), never answered short.
mkdir -p /tmp/sums1
mv /tmp/files.*.sums /tmp/sums1/	# the next writer starts its own
_file_writer_start /n/w2 0.2
interposer era detach vdb1 || _fail "interposer era detach failed"
_expect_exit "changed while detached" 3 "has no dm-era interposer" \
	interposer era changed vdb1 --since "$E"
sleep 1
interposer era attach /dev/vdb1 -m /dev/vdd || _fail "re-attach onto the same metadata failed"
_E2=$(interposer --json era status vdb1-era | sed -n 's/.*"era": \([0-9]*\).*/\1/p')
_log "re-attached: era $_E2"
[ "$_E2" -gt "$ERA" ] || _fail "the eras started again ($_E2 <= $ERA) instead of going on"
_expect_exit "changed since a checkpoint from before the detach" 6 \
	"since era $E: tracking began again at era [0-9]+ \(after .era detach. at era [0-9]+\).*take a full backup" \
	interposer era changed vdb1 --since "$E"
E3=$(interposer era checkpoint vdb1)
sleep 1
interposer era changed vdb1 --since "$E3" >/dev/null 2>&1 ||
	_fail "changed since a checkpoint after the re-attach failed"
interposer era detach vdb1-era || _fail "interposer era detach by dm name failed"
# Free again (a held metadata device is refused first, see above).
_expect_exit "re-attach with another block size" 7 "blocks of 128 sectors, not 8" \
	interposer era attach /dev/vdb1 -m /dev/vdd --block-size 4k --name other
[ -z "$(dmsetup ls | grep -v 'No devices')" ] || _fail "detach left a dm device: $(dmsetup ls)"
_file_writer_stop

umount /n
_fsck_ext4 /dev/vdb1
_mount /dev/vdb1 /n
_file_batches_check /n/w2
rm /tmp/files.*.sums
mv /tmp/sums1/* /tmp/
_file_batches_check /n/w
umount /n
_dmesg_check
_log "Test complete"
