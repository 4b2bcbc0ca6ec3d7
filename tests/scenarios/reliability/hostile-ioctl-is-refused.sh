#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Malformed, hostile and racing calls on /dev/blk-interposer are refused
# with the right errno and leave the module consistent.
#
# hostile-ioctl (crates/vm-tools) makes over 100 single calls, each with one
# expected errno, and prints a table `call | expected | got`: wrong ioctl
# magic, unknown command numbers, header sizes and directions that are not
# _IOWR(struct blk_interposer_ioctl), major versions 0/2/MAX, data_size
# smaller than the header, data_start before the payload or beyond
# data_size, NULL, kernel, non-canonical and unmapped pointers, headers that
# run into an unmapped page or sit in a read-only one, 4 GiB data_size
# with the payload in an unmapped page, device numbers out of MKDEV's
# range, devices that do not exist, every command before the lower device
# exists, STATUS with a short payload, LIST into buffers too small
# (BUFFER_FULL and the right count), ATTACH onto the device itself, its
# lower device, a smaller device, a loop through another interposed
# device, LOWER_REMOVE while attached or while a dm table holds it, a
# caller without CAP_SYS_ADMIN.  Then three races, each thread on its own
# fd: ATTACH vs DETACH (300 each) while a thread writes and reads back
# vdc with O_DIRECT; LOWER_CREATE vs LOWER_REMOVE vs STATUS/LIST vs open()
# of the lower device node; ATTACH vs the creation and removal of the dm
# device it names.  Every outcome must be one its state allows, the
# counters must match the calls that succeeded, and the list must end
# empty.  Afterwards: no dm device is left, and rmmod works, so no
# attachment or module reference leaked.
#
# TIMEOUT: 900
DESCRIPTION="over 100 malformed or hostile control calls get the right errno; attach/detach/create/remove races stay consistent"

. /tests/common/rc

_have_program hostile-ioctl
_load_module

timeout 600 hostile-ioctl --dev /dev/vdc --small /dev/vdd --spare /dev/vdd --iterations 300 ||
	_fail "hostile-ioctl: a call was not refused as expected, or a race left an inconsistent state (exit $?)"
[ -z "$(dmsetup ls | grep -v 'No devices found')" ] || _fail "dm devices left: $(dmsetup ls)"
[ -z "$(ls /dev/interposer 2>/dev/null)" ] || _fail "lower devices left: $(ls /dev/interposer)"
interposer ls
[ -z "$(interposer --json ls | grep '"dev"')" ] || _fail "interposer ls still lists devices"
# The device still works directly, and its data path is intact.
dd if=/dev/urandom of=/tmp/blk bs=64k count=4 2>/dev/null
dd if=/tmp/blk of=/dev/vdc bs=64k seek=100 oflag=direct conv=notrunc 2>/dev/null || _fail "write to vdc"
dd if=/dev/vdc of=/tmp/blk.back bs=64k skip=100 count=4 iflag=direct 2>/dev/null || _fail "read vdc"
cmp /tmp/blk /tmp/blk.back || _fail "vdc does not read back what was written after the races"
_dmesg_check
rmmod blk_interposer || _fail "rmmod failed: a reference leaked"
echo "Test complete"
