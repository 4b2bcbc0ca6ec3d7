#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# LVM stacked on an interposed device, and an interposer on an LV: attach and
# detach under load neither deadlock nor lose a write.
#
# How: a volume group on /dev/vdb (the PV), an LV with ext4 mounted, fio
# writing and verifying in it and a second writer adding checksummed files.
# Phase 1 cycles a dm-linear interposer on the PV: the LV's dm device submits
# its bios to vdb from inside its own submission (current->bio_list set), so
# while a switch holds the gate these nested bios take the module's "park the
# bio for a worker" path instead of sleeping; the `deferred` counter must show
# that it was taken.  A dm device holding the PV's lower device open keeps
# the lower device (and so its counters) across the cycles.  Phase 2 cycles an
# interposer on the LV itself (/dev/mapper/vgt-lv, a dm device whose
# filesystem the attach freezes).  Phase 3 has both at once: LV interposed
# above, PV interposed below, each cycled in turn.  Every command runs under
# `timeout`, so a deadlock fails the scenario (and the kernel's hung-task
# report fails it too).  After: fio verifies every block, the VG is
# deactivated and activated again, every file matches its checksum after the
# remount, and e2fsck is clean.
#
# LVM runs without udev: an lvm.conf that accepts only /dev/vdb and never waits
# for udev; LVM makes the /dev/mapper nodes itself.
DESCRIPTION="LVM on an interposed PV, and an interposed LV: live switches neither deadlock nor lose data"

. /tests/common/rc

CYCLES=${CYCLES:-8}
_have_program fio lvm
_load_module

mkdir -p /etc/lvm
cat >/etc/lvm/lvm.conf <<'CONF'
devices {
	filter = [ "a|^/dev/vdb$|", "r|.*|" ]
	obtain_device_list_from_udev = 0
	use_devicesfile = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
backup {
	backup = 0
	archive = 0
}
CONF

_lvm() {
	timeout 60 lvm "$@" || _fail "lvm $* failed"
}

# _cycle NAME DEV: one live create/remove of a dm-linear interposer on DEV.
_cycle() {
	_sz=$(blockdev --getsz "$2")
	echo "0 $_sz linear [interpose]$2 0" | timeout 60 interposer create "$1" >/dev/null ||
		_fail "create $1 on $2 failed (or hung)"
	sleep 0.5
	timeout 60 interposer remove "$1" >/dev/null || _fail "remove $1 from $2 failed (or hung)"
}

_lvm pvcreate -q /dev/vdb
_lvm vgcreate -q vgt /dev/vdb
_lvm lvcreate -q -y -Wn -Zn -n lv -L 256M vgt
[ -b /dev/mapper/vgt-lv ] || dmsetup mknodes
[ -b /dev/mapper/vgt-lv ] || _fail "no /dev/mapper/vgt-lv after lvcreate"
LV=/dev/mapper/vgt-lv
dmsetup table vgt-lv
_mkfs_ext4 $LV
_mount $LV /mnt
_fio_verify_start lvm /mnt 16M
_file_writer_start /mnt/files
sleep 2

_log "phase 1: $CYCLES switches on the PV /dev/vdb below the LV"
# Keep the PV's lower device across the cycles: a dm device that has it open.
echo "0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0" | interposer create vdb-lin >/dev/null ||
	_fail "create vdb-lin failed"
dmsetup create hold-vdb --table "0 8 linear /dev/interposer/vdb 0" ||
	_fail "dmsetup create hold-vdb failed"
timeout 60 interposer remove vdb-lin >/dev/null || _fail "remove vdb-lin failed"
_c=1
while [ $_c -lt "$CYCLES" ]; do
	_c=$((_c + 1))
	_cycle vdb-lin /dev/vdb
done
interposer info /dev/vdb
PV_DEFERRED=$(_counter /dev/vdb deferred)
PV_REDIRECTED=$(_counter /dev/vdb redirected)
PV_ATTACHES=$(_counter /dev/vdb attaches)
[ "$PV_ATTACHES" -eq "$CYCLES" ] || _fail "vdb: $PV_ATTACHES attaches counted, $CYCLES made"
[ "$PV_REDIRECTED" -gt 0 ] || _fail "no bio of the LV went through the PV's interposer"
_log "PV: $PV_ATTACHES attaches, $PV_REDIRECTED bios redirected, $PV_DEFERRED parked by nested submitters"

_log "phase 2: $CYCLES switches on the LV $LV itself"
_c=0
while [ $_c -lt "$CYCLES" ]; do
	_c=$((_c + 1))
	_cycle lv-lin $LV
done

_log "phase 3: LV and PV interposed at once, each switched in turn"
LVSZ=$(blockdev --getsz $LV)
echo "0 $LVSZ linear [interpose]$LV 0" | timeout 60 interposer create lv-lin >/dev/null ||
	_fail "create lv-lin failed"
_c=0
while [ $_c -lt $((CYCLES / 2)) ]; do
	_c=$((_c + 1))
	_cycle vdb-lin /dev/vdb
	echo "0 $LVSZ linear [interpose]$LV 0" | timeout 60 interposer create lv-lin2 >/dev/null 2>&1 &&
		_fail "a second interposer on the LV was accepted"
	timeout 60 interposer remove lv-lin >/dev/null || _fail "remove lv-lin failed (phase 3)"
	echo "0 $LVSZ linear [interpose]$LV 0" | timeout 60 interposer create lv-lin >/dev/null ||
		_fail "create lv-lin failed (phase 3)"
done
# End with both attached while writes go on, then take them off top-down.
echo "0 $(blockdev --getsz /dev/vdb) linear [interpose]/dev/vdb 0" |
	timeout 60 interposer create vdb-lin >/dev/null || _fail "create vdb-lin failed"
interposer ls
sleep 2
timeout 60 interposer remove lv-lin >/dev/null || _fail "remove lv-lin failed"
PV_DEFERRED=$(_counter /dev/vdb deferred)
timeout 60 interposer remove vdb-lin >/dev/null || _fail "remove vdb-lin failed"
_log "PV after all phases: $(_counter /dev/vdb attaches) attaches, $(_counter /dev/vdb redirected) bios redirected, deferred (parked by a nested submitter): $PV_DEFERRED"

_file_writer_stop
_fio_stop lvm
umount /mnt
dmsetup remove hold-vdb || _fail "dmsetup remove hold-vdb failed"
interposer ls
_lvm vgchange -q -an vgt
_lvm vgchange -q -ay vgt
[ -b $LV ] || dmsetup mknodes
_mount $LV /mnt
_file_batches_check /mnt/files
_fio_verify_only lvm || _fail "fio: the file does not verify after the remount"
umount /mnt
_fsck_ext4 $LV
_lvm vgchange -q -an vgt
_dmesg_check
echo "deferred=$PV_DEFERRED"
_log "Test complete"
