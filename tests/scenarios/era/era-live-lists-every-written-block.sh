#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# The seed's example, `era META [interpose]DEV BLK`, created live on a raw
# device that a writer is writing to.  After a checkpoint the scenario writes
# 4 KiB blocks at random offsets it records, checkpoints again, takes a
# metadata snapshot and asks era_invalidate which era blocks were written
# since the first checkpoint: the answer must be exactly the blocks the
# scenario wrote, no more and no fewer.  The data written (40 distinct 4 KiB
# blocks) reads back intact after the interposer is removed.
#
# TIMEOUT: 600
# KERNELS: all
DESCRIPTION="dm-era attached live reports exactly the blocks written after a checkpoint"

. /tests/common/rc

_load_module
_have_program era_invalidate
DEV=/dev/vdc
META=/dev/vdd
BLK=128	# sectors: 64 KiB era blocks
SZ=$(blockdev --getsz $DEV)

# A live writer: 64 KiB O_DIRECT writes at random places, until told to stop.
(
	trap - EXIT
	dd if=/dev/urandom of=/tmp/w64k bs=64k count=1 2>/dev/null
	while [ ! -e /tmp/stop-writer ]; do
		dd if=/tmp/w64k of=$DEV bs=64k seek=$(($(_rand) % (SZ / 128))) count=1 \
			oflag=direct conv=notrunc 2>/dev/null || exit 1
	done
) &
_writer=$!
sleep 1

_log "create dm-era live"
echo "0 $SZ era $META [interpose]$DEV $BLK" | interposer create dm-era ||
	_fail "interposer create dm-era failed"
dmsetup table dm-era
sleep 2
touch /tmp/stop-writer
wait $_writer || _fail "the live writer saw an I/O error"
[ "$(_counter $DEV redirected)" -gt 0 ] || _fail "no bio went through dm-era"

dmsetup message dm-era 0 checkpoint || _fail "checkpoint failed"
ERA=$(dmsetup status dm-era | awk '{print $6}')
_log "checkpoint: current era $ERA ($(dmsetup status dm-era))"

# Known writes after the checkpoint; remember their era blocks and contents.
: >/tmp/expected
: >/tmp/written
_i=0
while [ $_i -lt 40 ]; do
	_i=$((_i + 1))
	_off=$(($(_rand) % (SZ / 8)))	# in 4 KiB blocks
	# two neighbouring era blocks, so that the answer holds a <range>
	[ $_i -le 2 ] && _off=$((BLK / 8 * (99 + _i)))
	# Distinct blocks: a second write to one would make the first one's
	# read-back check fail without anything being lost.
	while grep -qx "[0-9]* $_off" /tmp/written 2>/dev/null; do
		_off=$(($(_rand) % (SZ / 8)))
	done
	dd if=/dev/urandom of=/tmp/blk$_i bs=4k count=1 2>/dev/null
	dd if=/tmp/blk$_i of=$DEV bs=4k seek=$_off count=1 oflag=direct conv=notrunc \
		2>/dev/null || _fail "write at 4k block $_off failed"
	echo "$_i $_off" >>/tmp/written
	echo $((_off * 8 / BLK)) >>/tmp/expected
done
sort -un /tmp/expected >/tmp/expected.sorted

dmsetup message dm-era 0 checkpoint || _fail "second checkpoint failed"
dmsetup message dm-era 0 take_metadata_snap || _fail "take_metadata_snap failed"
era_invalidate --written-since "$ERA" --metadata-snapshot $META >/tmp/inv.xml ||
	_fail "era_invalidate failed"
dmsetup message dm-era 0 drop_metadata_snap || _fail "drop_metadata_snap failed"
head -5 /tmp/inv.xml

# <block block="N"/> and <range begin="A" end = "B"/> (B exclusive; the
# tool prints the spaces around the second '=').  Any other line is an error.
if grep -vE '^ *(</?blocks>|<block block="[0-9]+"/>|<range begin="[0-9]+" end *= *"[0-9]+"/>)$' \
	/tmp/inv.xml; then
	_fail "era_invalidate printed lines this scenario does not understand (above)"
fi
: >/tmp/listed
sed -n 's/.*<block block="\([0-9]*\)".*/\1/p' /tmp/inv.xml >>/tmp/listed
sed -n 's/.*<range begin="\([0-9]*\)" end *= *"\([0-9]*\)".*/\1 \2/p' /tmp/inv.xml |
	while read -r _b _e; do
		while [ "$_b" -lt "$_e" ]; do echo "$_b"; _b=$((_b + 1)); done
	done >>/tmp/listed
sort -un /tmp/listed >/tmp/listed.sorted
_log "blocks written: $(wc -l </tmp/expected.sorted), listed by era_invalidate: $(wc -l </tmp/listed.sorted)"
if ! cmp -s /tmp/expected.sorted /tmp/listed.sorted; then
	diff /tmp/expected.sorted /tmp/listed.sorted | head -20
	_fail "era_invalidate does not list exactly the blocks written since era $ERA"
fi

interposer remove dm-era || _fail "interposer remove dm-era failed"
while read -r _i _off; do
	dd if=$DEV of=/tmp/back bs=4k skip="$_off" count=1 iflag=direct 2>/dev/null
	cmp -s /tmp/back /tmp/blk$_i || _fail "4k block $_off does not hold what was written"
done </tmp/written
_log "all 40 blocks read back intact"
_dmesg_check
echo "Test complete"
