#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# reboot-is-clean: `systemctl reboot` with an interposer attached to a filesystem mounted
# from /etc/fstab shuts down without a hang or a kernel error, and the next boot mounts the
# filesystem from the real device, with every file intact.
#
# How: ext4 on /dev/vdb in fstab by UUID, files with a manifest, a dm-linear interposer
# attached live and files written through it (synced). `systemctl reboot` (the guest
# reboots inside the same qemu; tests/system/init runs this again). After the boot:
# systemd mounted the filesystem at boot (mount unit active) from /dev/vdb itself, nothing
# is interposed (the module is not even loaded), by-uuid resolves to /dev/vdb after a
# settle, both manifests match, and e2fsck -fn is clean after the umount.
#
# ORDER: 80
# REBOOT: yes
# TIMEOUT: 900

DESCRIPTION="a reboot with an interposer attached is clean and the next boot mounts from the real device"

. /tests/system/rc
set -e

DEV=/dev/vdb
MNT=/srv/boot-data
UNIT=$(systemd-escape --path --suffix=mount "$MNT")

if ! _sys_rebooted; then
	_log "Running reboot-is-clean: $DESCRIPTION"
	_sys_install
	modprobe blk_interposer || _fail "modprobe blk_interposer failed"
	_sys_fstab_mount "$DEV" "$MNT"
	echo "$SYS_UUID" >/root/reboot.uuid
	_fill_files "$MNT/before" 16
	_manifest_make "$MNT/before" /root/reboot-before.sums
	SZ=$(blockdev --getsz "$DEV")
	echo "0 $SZ linear [interpose]$DEV 0" | interposer create vdb-boot ||
		_fail "interposer create vdb-boot failed"
	interposer ls
	_fill_files "$MNT/during" 16
	_manifest_make "$MNT/during" /root/reboot-during.sums
	sync
	_sys_reboot
fi

_log "reboot-is-clean after the reboot (boot $XTASK_BOOT)"
UUID=$(cat /root/reboot.uuid)
# nofail: local-fs.target (and so multi-user.target) does not wait for the mount; wait for
# systemd to finish it (fsck first).
_sys_wait_active "$UNIT"
_log "$UNIT: active (mounted at boot)"
[ "$(findmnt -n -o SOURCE "$MNT")" = "$DEV" ] ||
	_fail "$MNT is mounted from '$(findmnt -n -o SOURCE "$MNT")' after the boot, not $DEV"
grep -q '^blk_interposer ' /proc/modules && _fail "blk_interposer was loaded at boot"
[ -z "$(dmsetup ls | grep -v 'No devices found' || true)" ] || _fail "dm devices exist after the boot: $(dmsetup ls)"
_sys_by_uuid_is "$UUID" "$DEV" "after the reboot"
_manifest_check /root/reboot-before.sums "$MNT/before"
_manifest_check /root/reboot-during.sums "$MNT/during"
umount "$MNT"
_fsck_ext4 "$DEV"
_sys_fstab_drop "$MNT"
# The previous boot's shutdown, from the persistent journal: no kernel error in it.
if journalctl --list-boots >/dev/null 2>&1 && [ "$(journalctl --list-boots | wc -l)" -ge 2 ]; then
	if journalctl -k -b -1 | grep -E "$_DMESG_ERRORS" >/root/prev-boot.bad; then
		head -20 /root/prev-boot.bad
		_fail "the kernel log of the boot before the reboot has errors"
	fi
	_log "journalctl -k -b -1: the kernel log up to the reboot has no error"
else
	_log "note: no persistent journal of the previous boot to check"
fi
_dmesg_check
_log "Test complete"
