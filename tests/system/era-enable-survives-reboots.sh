#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# era-enable-survives-reboots: with `interposer era enable`, a clean reboot is no gap in
# changed-block tracking, and a crash is one. Five backups across three reboots: the first
# full, the two after clean reboots incremental, the one after a reset under writes full
# for a gap, and the one after a `systemctl stop` of the unit while mounted full too. Each
# restored version equals the snapshot it was copied from, byte for byte; writes made early
# in each boot (by a unit, before this test runs) are in them.
#
# How: ext4 on /dev/vdd (64 MiB), mounted from /etc/fstab by UUID; dm-era metadata on
# /dev/vdb. `era enable` attaches now and enables interposer-era@<vdd's by-path link>.service.
# A unit of the test (era-early-writer.service, after the mount, before multi-user.target)
# writes 1 MiB into a file named after the boot id at every boot. Round 1: files, backup 1
# (full, "first") into /root/bk with --keep-snapshot, restored to a file and compared with
# the snapshot (sha256); more files; `era status` saved; `systemctl reboot`. Rounds 2 and 3:
# the unit is active and its log says tracking went on from the clean shutdown; `tracked
# since` is round 1's; the early file of this boot is there; files; backup N must be
# incremental, and restored equal its snapshot. Round 3 then resets the guest (sysrq b)
# while a writer writes. Round 4: the unit is active, its log says the last epoch did not
# end with a clean shutdown, `tracked since` moved on, backup 4 is full for a gap and
# restores equal to its snapshot. Then `systemctl stop` of the unit with the filesystem
# mounted must log a gap, files are written, the unit started again: backup 5 is full for a
# gap. `era disable` leaves the unit disabled and inactive and no dm device; the manifests
# of every round's files match and e2fsck -fn is clean.
#
# ORDER: 85
# REBOOT: yes
# TIMEOUT: 1500

DESCRIPTION="era enable: incremental backups across clean reboots, a full one after a reset; each restore == its snapshot"

. /tests/system/rc
set -e

DEV=/dev/vdd
META=/dev/vdb
MNT=/srv/era
BK=/root/bk
COW=/var/tmp/era-cow.img
SNAP=/dev/mapper/backup-vdd-vdd-snap
MOUNT_UNIT=$(systemd-escape --path --suffix=mount "$MNT")

# _backup N KIND [WHY]: back up $DEV into $BK keeping the snapshot; the report (the last
# JSON line) must say version N, KIND and, for a full one, the reason WHY.
_backup() {
	interposer --json backup "$DEV" --to "$BK" --cow-file "$COW" --cow-size 32M --keep-snapshot \
		>/root/backup.out 2>/root/backup.err ||
		{ cat /root/backup.out /root/backup.err; _fail "backup $1 failed"; }
	tail -n 1 /root/backup.out >/root/report.json
	grep -qE "\"version\":$1[,}]" /root/report.json || _fail "backup $1: not version $1: $(cat /root/report.json)"
	grep -q "\"kind\":\"$2\"" /root/report.json || _fail "backup $1: not $2: $(cat /root/report.json)"
	[ -z "$3" ] || grep -q "\"why\":\"$3\"" /root/report.json ||
		_fail "backup $1: full, but not for \"$3\": $(cat /root/report.json)"
	[ -b "$SNAP" ] || _fail "backup $1: the kept snapshot $SNAP is missing: $(dmsetup ls)"
	_copied=$(sed -n 's/.*"copied_bytes":\([0-9]*\).*/\1/p' /root/report.json)
	_log "backup $1: $2, $_copied of $(blockdev --getsize64 "$DEV") bytes copied"
}

# _restore_equals N: restore version N to a file; it must hash like the kept snapshot,
# which then goes.
_restore_equals() {
	rm -f /root/restored.img
	interposer backup restore "$BK" --to /root/restored.img --version "$1" -q >/root/restore.out 2>&1 ||
		{ cat /root/restore.out; _fail "restore of version $1 failed"; }
	_sz=$(blockdev --getsize64 "$SNAP")
	[ "$(head -c "$_sz" /root/restored.img | sha256sum)" = "$(sha256sum <"$SNAP")" ] ||
		_fail "version $1, restored, differs from its snapshot"
	rm -f /root/restored.img
	interposer snapshot remove backup-vdd >/dev/null || _fail "snapshot remove after backup $1 failed"
	_log "version $1 restored == its snapshot (sha256)"
}

# _files NAME: 8 files in $MNT/NAME, synced, with a manifest.
_files() {
	_fill_files "$MNT/$1" 8
	_manifest_make "$MNT/$1" "/root/era-$1.sums"
	sync
}

# _since: the checkpoint `era status` says tracking covers.
_since() {
	interposer era status "$DEV" | sed -n 's/^tracked since: *\([^ ]*\).*/\1/p'
}

# _booted N WORDS: round N's unit is active, its log of this boot has WORDS, and the early
# writer wrote in this boot.
_booted() {
	UNIT=$(cat /root/era.unit)
	_sys_wait_active "$MOUNT_UNIT"
	journalctl -b -u "$UNIT" --no-pager >/root/unit.log 2>&1 || true
	[ "$(systemctl is-active "$UNIT")" = active ] || {
		tail -20 /root/unit.log
		_fail "$UNIT is $(systemctl is-active "$UNIT") after the boot"
	}
	grep -q "$2" /root/unit.log || {
		tail -20 /root/unit.log
		_fail "round $1: the log of $UNIT has no \"$2\""
	}
	_log "round $1: $UNIT active; its log: $(grep -o "$2.*" /root/unit.log | head -1)"
	[ -s "$MNT/early-$(cat /proc/sys/kernel/random/boot_id)" ] ||
		_fail "the early writer left no file in this boot"
}

if ! _sys_rebooted; then
	_log "Running era-enable-survives-reboots: $DESCRIPTION"
	_sys_install
	dd if=/dev/zero of="$META" bs=4k count=1 oflag=direct 2>/dev/null
	_sys_fstab_mount "$DEV" "$MNT"
	rm -rf "$BK" "$COW"
	interposer era enable "$DEV" --metadata "$META" >/root/enable.out 2>&1 ||
		{ cat /root/enable.out; _fail "era enable failed"; }
	cat /root/enable.out
	UNIT=$(sed -n 's/.*\(interposer-era@[^ ]*\.service\) is enabled and started.*/\1/p' /root/enable.out)
	[ -n "$UNIT" ] || _fail "era enable names no unit"
	echo "$UNIT" >/root/era.unit
	[ "$(systemctl is-enabled "$UNIT")" = enabled ] || _fail "$UNIT is $(systemctl is-enabled "$UNIT")"
	[ "$(systemctl is-active "$UNIT")" = active ] || _fail "$UNIT is $(systemctl is-active "$UNIT")"
	case "$UNIT" in
	*by\\x2dpath* | *by\\x2did*) ;;
	*) _fail "$UNIT does not name $DEV by a stable link" ;;
	esac
	cat >/etc/systemd/system/era-early-writer.service <<-EOF
		[Unit]
		Description=a write early in the boot, on the tracked filesystem
		RequiresMountsFor=$MNT
		Before=multi-user.target
		[Service]
		Type=oneshot
		ExecStart=/bin/sh -c 'dd if=/dev/urandom of=$MNT/early-\$\$(cat /proc/sys/kernel/random/boot_id) bs=64k count=16 conv=fsync status=none'
		[Install]
		WantedBy=multi-user.target
	EOF
	systemctl daemon-reload
	systemctl enable era-early-writer.service 2>/dev/null
	_files round1
	_backup 1 full first
	_restore_equals 1
	_files round1-after
	_since >/root/era.since
	[ -s /root/era.since ] || _fail "era status shows no checkpoint: $(interposer era status "$DEV")"
	echo 1 >/root/era.round
	_log "tracked since $(cat /root/era.since); rebooting"
	_sys_reboot
fi

N=$(($(cat /root/era.round) + 1))
echo "$N" >/root/era.round
_log "era-enable-survives-reboots, round $N (boot $XTASK_BOOT)"
if [ "$N" -le 3 ]; then
	# After a clean reboot: tracking went on, backup N is incremental.
	_booted "$N" "goes on from the clean shutdown"
	[ "$(_since)" = "$(cat /root/era.since)" ] ||
		_fail "tracked since $(_since) after the reboot, not $(cat /root/era.since)"
	_files "round$N"
	_backup "$N" incremental
	_restore_equals "$N"
	[ "$N" -eq 3 ] || _sys_reboot
	# A reset while a writer writes: no clean end.
	(
		_i=0
		while :; do
			_i=$((_i + 1))
			dd if=/dev/urandom of="$MNT/reset-$_i" bs=64k count=4 conv=fsync 2>/dev/null
		done
	) &
	sleep 3
	_sys_reboot --reset
fi

# Round 4, after the reset: a new epoch, backup 4 full for the gap.
_booted 4 "the last epoch did not end with a clean shutdown"
[ "$(_since)" != "$(cat /root/era.since)" ] || _fail "tracked since $(_since) still after a reset"
_files round4
_backup 4 full gap
_restore_equals 4

# A stop while the filesystem is mounted is no clean end: backup 5 is full.
systemctl stop "$UNIT" || _fail "systemctl stop $UNIT failed"
journalctl -b -u "$UNIT" --no-pager | grep -q "tracking ended as with .era detach. (the device is still in use" ||
	_fail "stopping $UNIT with the filesystem mounted did not say it is a gap"
_files stopped
systemctl start "$UNIT" || _fail "systemctl start $UNIT failed"
_backup 5 full gap
_restore_equals 5

interposer era disable "$DEV" >/root/disable.out 2>&1 || { cat /root/disable.out; _fail "era disable failed"; }
cat /root/disable.out
[ "$(systemctl is-enabled "$UNIT" 2>/dev/null || true)" = disabled ] || _fail "$UNIT is still enabled"
[ "$(systemctl is-active "$UNIT" 2>/dev/null || true)" = inactive ] || _fail "$UNIT is still active"
[ -z "$(dmsetup ls | grep -v 'No devices found' || true)" ] || _fail "dm devices are left: $(dmsetup ls)"
systemctl disable era-early-writer.service 2>/dev/null
rm -f /etc/systemd/system/era-early-writer.service
systemctl daemon-reload
for _r in round1 round1-after round2 round3 round4 stopped; do
	_manifest_check "/root/era-$_r.sums" "$MNT/$_r"
done
_sys_fstab_drop "$MNT"
_fsck_ext4 "$DEV"
rm -rf "$BK" "$COW"
_dmesg_check
_log "Test complete"
