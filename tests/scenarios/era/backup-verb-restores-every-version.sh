#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# era/backup-verb-restores-every-version: `interposer backup` makes a full
# version, then incrementals from what dm-era lists, while a raw O_DIRECT
# writer runs the whole time; `backup restore` of every version equals the
# snapshot that version was copied from, byte for byte.  `backup verify`
# names a version whose delta lost a bit, and a detach, a write and an
# attach make the next backup a full one that says why.
#
# How: a 32 MiB GPT partition vdb1 under stamp-writer (each write carries a
# new sequence number: no rewrite looks unchanged), dm-era (64 KiB blocks)
# with its metadata on vdb3.  Backup 1 (into /tmp/bk, a tmpfs) with
# --keep-snapshot must be full ("first"); it is restored to the partition
# vdb2 and compared with the kept snapshot (sha256), which is then removed.
# Backups 2..4 must be incremental (--json, last line), each restored (to a
# file, the last to vdb2) and compared with its own kept snapshot, which
# must differ from the one before (the round proved something).  Then
# `backup verify` passes; a byte of 000003.delta is changed and verify must
# fail naming version 3, while `verify --version 2` still passes; put back,
# verify passes again.  stamp-writer verifies the device kept every write.
# Last, dm-era is detached, block 300 written, dm-era attached again: the
# next backup must be full for a gap in tracking, and the one after it
# incremental again.  Then two group backups of vdb1 and vde (32 MiB, not
# tracked) at one point in time into /tmp/bkg/{vdb1,vde}: the first full for
# both, the second incremental for vdb1 and full for vde; each manifest names
# the group, and each device's restore equals its snapshot of the group.
#
# TIMEOUT: 600

DESCRIPTION="interposer backup: full then incrementals under raw writes; restore of each version == its snapshot"

. /tests/common/rc
set -e

_have_program sgdisk sha256sum stamp-writer od
_have_module dm_snapshot dm_era
_load_module

_log "Running era/backup-verb-restores-every-version: $DESCRIPTION"

BK=/tmp/bk
DEV=/dev/vdb1
SNAP=/dev/mapper/backup-vdb1-vdb1-snap

# _backup N KIND [WHY]: back up $DEV into $BK keeping the snapshot; the
# report (the last JSON line) must say version N, KIND and, for a full
# one, the reason WHY.
_backup() {
	interposer --json backup "$DEV" --to "$BK" --cow /dev/vdc --keep-snapshot >/tmp/backup.out ||
		{ cat /tmp/backup.out; _fail "backup $1 failed"; }
	tail -n 1 /tmp/backup.out >/tmp/report.json
	grep -q '"event":"done"' /tmp/report.json || _fail "backup $1: no report line: $(tail -n 3 /tmp/backup.out)"
	grep -qE "\"version\":$1[,}]" /tmp/report.json || _fail "backup $1: not version $1: $(cat /tmp/report.json)"
	grep -q "\"kind\":\"$2\"" /tmp/report.json || _fail "backup $1: not $2: $(cat /tmp/report.json)"
	[ -z "$3" ] || grep -q "\"why\":\"$3\"" /tmp/report.json ||
		_fail "backup $1: full, but not for \"$3\": $(cat /tmp/report.json)"
	grep -q '"event":"progress"' /tmp/backup.out || _fail "backup $1: no progress events"
	[ -b "$SNAP" ] || _fail "backup $1: the kept snapshot $SNAP is missing: $(dmsetup ls)"
	_copied=$(sed -n 's/.*"copied_bytes":\([0-9]*\).*/\1/p' /tmp/report.json)
	_log "backup $1: $2, $_copied of $SZ bytes copied"
}

# _restore_equals N TARGET: restore version N to TARGET; its first $SZ
# bytes must hash like the kept snapshot; then the snapshot goes.
_restore_equals() {
	interposer backup restore "$BK" --to "$2" --version "$1" -q >/tmp/restore.out 2>&1 ||
		{ cat /tmp/restore.out; _fail "restore of version $1 to $2 failed"; }
	SNAPSUM=$(sha256sum <"$SNAP")
	[ "$(head -c "$SZ" "$2" | sha256sum)" = "$SNAPSUM" ] ||
		_fail "version $1 restored to $2 differs from its snapshot"
	[ "$SNAPSUM" != "$PREVSUM" ] || _fail "version $1: nothing changed since the version before"
	PREVSUM=$SNAPSUM
	interposer snapshot remove backup-vdb1 >/dev/null || _fail "snapshot remove after backup $1 failed"
	_log "version $1 restored to $2 == its snapshot"
}

# vdb1: backed up; vdb2: a restore target; vdb3: dm-era's metadata.
sgdisk -o -n 1:1MiB:+32MiB -n 2:0:+64MiB -n 3:0:+16MiB /dev/vdb >/dev/null || _fail "sgdisk failed"
blockdev --rereadpt /dev/vdb
[ -b /dev/vdb1 ] && [ -b /dev/vdb2 ] && [ -b /dev/vdb3 ] || _fail "partitions of vdb did not appear"
SZ=$(blockdev --getsize64 "$DEV")
PREVSUM=none
dd if=/dev/zero of=/dev/vdb3 bs=4k count=1 conv=fsync 2>/dev/null
stamp-writer init --dev "$DEV" --sectors $((SZ / 512)) --map /tmp/vdb1.map >/dev/null ||
	_fail "stamp-writer init failed"
interposer era attach "$DEV" --metadata /dev/vdb3 --block-size 64k >/dev/null ||
	_fail "era attach failed"
rm -f /tmp/stop-writer
stamp-writer run --dev "$DEV" --map /tmp/vdb1.map --stop /tmp/stop-writer \
	--threads 1 --max-sectors 128 --pause-ms 100 >/tmp/writer.out 2>&1 &
WPID=$!
sleep 1

_backup 1 full first
_restore_equals 1 /dev/vdb2
for _v in 2 3 4; do
	sleep 1
	_backup "$_v" incremental
	if [ "$_v" -lt 4 ]; then
		_restore_equals "$_v" /tmp/restored.img
	else
		_restore_equals "$_v" /dev/vdb2
	fi
done
rm -f /tmp/restored.img
ls -ls "$BK"

interposer backup verify "$BK" || _fail "backup verify of a good directory failed"
# One byte of version 3's delta, changed and put back.
_at=100
_old=$(dd if="$BK/000003.delta" bs=1 skip="$_at" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
_new=$(((_old + 1) % 256))
printf "\\$(printf %o "$_new")" | dd of="$BK/000003.delta" bs=1 seek="$_at" conv=notrunc 2>/dev/null
_expect_fail "verify with a changed byte in version 3" "backup version 3 in $BK is damaged" \
	interposer backup verify "$BK" -q
interposer backup verify "$BK" --version 2 -q >/dev/null || _fail "verify --version 2 read version 3"
printf "\\$(printf %o "$_old")" | dd of="$BK/000003.delta" bs=1 seek="$_at" conv=notrunc 2>/dev/null
interposer backup verify "$BK" -q >/dev/null || _fail "verify after the byte was put back failed"

touch /tmp/stop-writer
_wait_gone "$WPID" 60 "stamp-writer"
wait "$WPID" || { cat /tmp/writer.out; _fail "stamp-writer failed"; }
tail -1 /tmp/writer.out
stamp-writer verify --dev "$DEV" --map /tmp/vdb1.map || _fail "$DEV lost a write"

# A write while nothing tracks: the next backup must not be incremental.
interposer era detach vdb1 >/dev/null || _fail "era detach failed"
dd if=/dev/urandom of="$DEV" bs=64k seek=300 count=1 oflag=direct 2>/dev/null ||
	_fail "the write at block 300 failed"
interposer era attach "$DEV" --metadata /dev/vdb3 --block-size 64k >/dev/null ||
	_fail "era attach again failed"
_backup 5 full gap
grep -q 'tracking began again at era' /tmp/report.json || _fail "the gap is not explained: $(cat /tmp/report.json)"
_restore_equals 5 /dev/vdb2
dd if=/dev/urandom of="$DEV" bs=4k seek=17 count=3 oflag=direct 2>/dev/null
_backup 6 incremental
_restore_equals 6 /dev/vdb2

# Two devices at one point in time: vdb1 (tracked) and vde (not), one COW store split in
# two, into /tmp/bkg/vdb1 and /tmp/bkg/vde.
_group() {
	interposer --json backup "$DEV" /dev/vde --to /tmp/bkg --cow /dev/vdc --keep-snapshot \
		>/tmp/group.out || { cat /tmp/group.out; _fail "group backup $1 failed"; }
	tail -n 1 /tmp/group.out | grep -q '"event":"done","report":\[' ||
		_fail "group backup $1: no report list: $(tail -n 1 /tmp/group.out)"
	for _d in vdb1:"$2" vde:"$3"; do
		_m=/tmp/bkg/${_d%%:*}/$(printf %06d "$1").json
		tr -d ' \n' <"$_m" >/tmp/m.json || _fail "group backup $1: no $_m"
		grep -q "\"kind\":\"${_d#*:}\"" /tmp/m.json || _fail "group backup $1: $_m is not ${_d#*:}"
		grep -q '"group":\["/dev/vdb1","/dev/vde"\]' /tmp/m.json || _fail "group backup $1: $_m names no group"
		interposer backup restore "/tmp/bkg/${_d%%:*}" --to /tmp/restored.img -q >/dev/null 2>&1 ||
			_fail "restore of /tmp/bkg/${_d%%:*} failed"
		_snap=/dev/mapper/backup-vdb1-vde-${_d%%:*}-snap
		[ "$(head -c "$(blockdev --getsize64 "$_snap")" /tmp/restored.img | sha256sum)" = "$(sha256sum <"$_snap")" ] ||
			_fail "group version $1 of ${_d%%:*}, restored, differs from its snapshot"
	done
	rm -f /tmp/restored.img
	interposer snapshot remove backup-vdb1-vde >/dev/null || _fail "snapshot remove backup-vdb1-vde failed"
	_log "group backup $1: vdb1 $2, vde $3, each restored == its snapshot of the one group"
}
dd if=/dev/urandom of=/dev/vde bs=64k count=64 oflag=direct 2>/dev/null
_group 1 full full
dd if=/dev/urandom of="$DEV" bs=4k seek=1000 count=5 oflag=direct 2>/dev/null
dd if=/dev/urandom of=/dev/vde bs=4k seek=77 count=2 oflag=direct 2>/dev/null
_group 2 incremental full
rm -rf /tmp/bkg
interposer era detach vdb1 >/dev/null || _fail "era detach failed"

dmsetup ls | grep -v '^No devices' && _fail "dm devices are left"
_dmesg_check
_log "Test complete"
