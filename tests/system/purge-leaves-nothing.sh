#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# purge-leaves-nothing: `apt purge` of both packages takes away everything they and DKMS
# put on the host, and the module, loaded and used before, unloads cleanly.
#
# How: install (if an earlier scenario did not), load the module, create and remove an
# interposer once. Record every file the packages own (`dpkg -L`). `apt-get purge` both;
# then none of those files exists any more, nor /usr/src/blk-interposer*,
# /var/lib/dkms/blk-interposer, a blk_interposer.ko* below /lib/modules, a udev rule or a
# man page of ours; dpkg knows neither package (not even as "rc"); `modinfo blk_interposer`
# fails. The module still loaded from before is unloaded by `rmmod` without error, after
# which `modprobe blk_interposer` fails: nothing can bring it back.
#
# ORDER: 90
# TIMEOUT: 900

DESCRIPTION="apt purge removes every file of ours and DKMS's; the module unloads cleanly"

. /tests/system/rc
set -e

_log "Running purge-leaves-nothing: $DESCRIPTION"
_sys_install
modprobe blk_interposer || _fail "modprobe blk_interposer failed"
SZ=$(blockdev --getsz /dev/vdc)
echo "0 $SZ linear [interpose]/dev/vdc 0" | interposer create vdc-lin ||
	_fail "interposer create vdc-lin failed"
interposer remove vdc-lin || _fail "interposer remove vdc-lin failed"
_sys_settle "after create and remove"

# Every file (not directory) the packages own.
for _p in $_SYS_PACKAGES; do
	dpkg -L "$_p"
done | sort -u | while read -r _f; do
	[ -d "$_f" ] || echo "$_f"
done >/root/owned.list
_log "the packages own $(wc -l </root/owned.list) files"
grep -q '^/usr/src/blk-interposer' /root/owned.list || _fail "blk-interposer-dkms owns nothing below /usr/src"

_log "apt-get purge $_SYS_PACKAGES"
DEBIAN_FRONTEND=noninteractive apt-get purge -y $_SYS_PACKAGES >/root/purge.log 2>&1 || {
	tail -30 /root/purge.log
	_fail "apt-get purge failed"
}
grep -iE 'dkms|error|warn' /root/purge.log | head -20 || true

_left=$(while read -r _f; do if [ -e "$_f" ] || [ -L "$_f" ]; then echo "$_f"; fi; done </root/owned.list)
[ -z "$_left" ] || _fail "files of the purged packages are left: $_left"
for _p in $_SYS_PACKAGES; do
	_st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$_p" 2>/dev/null || true)
	[ -z "$_st" ] || [ "$_st" = "un " ] || [ "$_st" = "pn " ] ||
		_fail "dpkg still knows $_p: status '$_st'"
done
ls -d /usr/src/blk-interposer* 2>/dev/null && _fail "/usr/src/blk-interposer* is left"
[ ! -e /var/lib/dkms/blk-interposer ] || _fail "/var/lib/dkms/blk-interposer is left"
_ko=$(find /lib/modules -name 'blk_interposer.ko*')
[ -z "$_ko" ] || _fail "module files are left: $_ko"
_rules=$(grep -rl interposer /etc/udev/rules.d /usr/lib/udev/rules.d /lib/udev/rules.d 2>/dev/null || true)
[ -z "$_rules" ] || _fail "udev rules of ours are left: $_rules"
_man=$(find /usr/share/man -name 'interposer*' 2>/dev/null)
[ -z "$_man" ] || _fail "man pages are left: $_man"
# (hash -r: the shell remembers where it found interposer before the purge)
hash -r
command -v interposer >/dev/null && _fail "interposer is still on PATH: $(command -v interposer)"
modinfo blk_interposer >/dev/null 2>&1 && _fail "modinfo still finds blk_interposer: $(modinfo -n blk_interposer)"
_log "no file of the packages, DKMS tree, module file, rule or man page is left"

if grep -q '^blk_interposer ' /proc/modules; then
	rmmod blk_interposer || _fail "rmmod blk_interposer failed after the purge"
	_log "rmmod blk_interposer: clean"
fi
grep -q '^blk_interposer ' /proc/modules && _fail "blk_interposer is still loaded"
modprobe blk_interposer 2>/dev/null && _fail "modprobe blk_interposer still works after the purge"
_sys_settle "after the purge"
_dmesg_check
_log "Test complete"
