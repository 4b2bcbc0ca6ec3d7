#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# lvm-with-udev: an LV on an interposed PV, on a host with udev, lvm2's rules and event
# autoactivation on. The lower device /dev/interposer/vdc, the interposer and a snapshot
# of the PV all show vdc's PV UUID; with the README's one-line LVM filter in lvm.conf, LVM
# sees exactly one PV, warns of no duplicate, and the LV stays on /dev/vdc itself across
# `vgchange -an`/`-ay` while the PV is interposed.
#
# How: PV /dev/vdc, VG vgi, LV data (ext4, files with a manifest, fio verify while the
# interposer is created and udev and LVM look at the new devices). First
# without the filter, what `pvs` says while interposed is logged (LVM's own behaviour, not
# ours to assert). Then the filter of /usr/share/doc/interposer/examples/lvm-filter.conf is
# put in lvm.conf's devices section, as the README says. While a linear interposer is on
# /dev/vdc: after `udevadm trigger` and settle, `pvs` lists exactly "/dev/vdc vgi" and no
# line of any LVM command says duplicate or "Not using device"; the LV is unmounted,
# deactivated and activated again, and `dmsetup deps` shows it on vdc's MAJ:MIN, not on a
# dm device or our lower device; remounted, the manifest matches. The same with a snapshot
# of the PV (COW on /dev/vdd). Everything is taken down again and lvm.conf restored;
# fio verifies, e2fsck -fn is clean.
#
# ORDER: 25
# TIMEOUT: 900

DESCRIPTION="an LV on an interposed PV: with the documented LVM filter no duplicate PV, and the LV stays on the real PV across vgchange -an/-ay"

. /tests/system/rc
set -e

_log "Running lvm-with-udev: $DESCRIPTION"
_sys_install
modprobe blk_interposer || _fail "modprobe blk_interposer failed"
PV=/dev/vdc
PVNUM=$(stat -L -c '%Hr:%Lr' "$PV")
MNT=/srv/lvm
[ "$(lvmconfig --type current global/event_activation 2>/dev/null)" != "event_activation=0" ] ||
	_fail "event activation is off in this image"

# _lvm_clean WHEN: pvs lists exactly the one PV; no LVM command output says duplicate.
_lvm_clean() {
	pvs --noheadings -o pv_name,vg_name >/tmp/pvs.out 2>/tmp/pvs.err || {
		cat /tmp/pvs.out /tmp/pvs.err
		_fail "pvs failed ($1)"
	}
	_got=$(awk '{ print $1, $2 }' /tmp/pvs.out | grep -v '^ *$' | sort)
	if [ "$_got" != "$PV vgi" ] || grep -qiE 'duplicate|not using device' /tmp/pvs.out /tmp/pvs.err; then
		cat /tmp/pvs.out /tmp/pvs.err
		_fail "$1: pvs shows '$_got', expected exactly '$PV vgi' and no duplicate"
	fi
	_log "$1: pvs: $_got, no duplicate"
}

# _lvm_cycle WHEN: umount, vgchange -an/-ay, the LV's dm table must use vdc itself.
_lvm_cycle() {
	umount "$MNT"
	vgchange -an vgi >/tmp/vgchange.out 2>&1 || { cat /tmp/vgchange.out; _fail "vgchange -an failed ($1)"; }
	vgchange -ay vgi >>/tmp/vgchange.out 2>&1 || { cat /tmp/vgchange.out; _fail "vgchange -ay failed ($1)"; }
	! grep -qiE 'duplicate|not using device' /tmp/vgchange.out || {
		cat /tmp/vgchange.out
		_fail "$1: vgchange warns of a duplicate PV"
	}
	_sys_settle "$1"
	_deps=$(dmsetup deps -o devno vgi-data | sed 's/.*: *//; s/[() ]//g; s/,/:/')
	[ "$_deps" = "$PVNUM" ] || _fail "$1: vgi-data now sits on $_deps, not on $PV ($PVNUM)"
	mount /dev/vgi/data "$MNT" || _fail "mount of the LV failed ($1)"
	_manifest_check /root/lvm.sums "$MNT/before"
	_log "$1: the LV came back on $PV ($PVNUM) after vgchange -an/-ay"
}

pvcreate -q -y "$PV" >/dev/null
vgcreate -q vgi "$PV" >/dev/null
lvcreate -q -y -n data -L 160M vgi >/dev/null
_sys_settle "after lvcreate"
_mkfs_ext4 /dev/vgi/data
mkdir -p "$MNT"
mount /dev/vgi/data "$MNT"
_fill_files "$MNT/before" 16
_manifest_make "$MNT/before" /root/lvm.sums
_fio_verify_start lvm "$MNT" 16M
SZ=$(blockdev --getsz "$PV")

# Without the filter: what LVM itself makes of the second and third name of the PV.
cp /etc/lvm/lvm.conf /root/lvm.conf.orig
interposer create vdc-lin --table "0 $SZ linear [interpose]$PV 0" >/dev/null ||
	_fail "interposer create vdc-lin failed"
_sys_settle "interposed, no filter"
pvs >/tmp/pvs.nofilter 2>&1 || true
_log "without the filter, pvs says: $(tr '\n' '|' </tmp/pvs.nofilter)"

# With the filter, as the README tells the admin.
grep -q '^devices {' /etc/lvm/lvm.conf || _fail "lvm.conf has no 'devices {' line"
_filter=$(grep -o 'global_filter = .*' /usr/share/doc/interposer/examples/lvm-filter.conf)
[ -n "$_filter" ] || _fail "the packaged lvm-filter.conf example has no global_filter line"
awk -v f="	$_filter" '{ print } /^devices \{/ && !done { print f; done = 1 }' \
	/root/lvm.conf.orig >/etc/lvm/lvm.conf
_log "lvm.conf: $(lvmconfig devices/global_filter)"

udevadm trigger --action=change --subsystem-match=block
_lvm_clean "interposed, after udevadm trigger"
_fio_stop lvm
_lvm_cycle "interposed"
_lvm_clean "interposed, after vgchange -an/-ay"
interposer remove vdc-lin >/dev/null || _fail "interposer remove vdc-lin failed"
_lvm_clean "after interposer remove"

interposer snapshot create --name lvs --cow /dev/vdd --yes "$PV" >/dev/null ||
	_fail "snapshot create of the PV failed"
udevadm trigger --action=change --subsystem-match=block
_lvm_clean "with a snapshot of the PV"
_lvm_cycle "with a snapshot of the PV"
interposer snapshot remove lvs >/dev/null || _fail "snapshot remove failed"
_lvm_clean "after snapshot remove"

umount "$MNT"
_fsck_ext4 /dev/vgi/data
vgchange -q -an vgi >/dev/null
vgremove -q -y vgi >/dev/null
pvremove -q -y "$PV" >/dev/null
cp /root/lvm.conf.orig /etc/lvm/lvm.conf
wipefs -q -a /dev/vdd
_dmesg_check
_log "Test complete"
