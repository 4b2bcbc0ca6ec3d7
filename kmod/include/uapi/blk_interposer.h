/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * blk_interposer control ABI: the one source of truth.  The Rust mirror is
 * crates/blk-interposer/src/abi.rs; a test there compiles this header and
 * fails if the layouts drift.
 *
 * Every command is _IOWR(BLK_INTERPOSER_IOCTL, cmd, struct blk_interposer_ioctl)
 * on the misc device /dev/blk-interposer and needs CAP_SYS_ADMIN.
 *
 *   VERSION       Fill @version with the module's version.
 *   LOWER_CREATE  Create the lower device of @dev: a block device that
 *                 forwards to @dev *beneath* the interposer, so that a dm
 *                 table can reach the live device.  Out: @lower, @lower_name.
 *                 The first one places the hook: EBUSY if another direct
 *                 trampoline holds submit_bio_noacct(), EOPNOTSUPP while
 *                 sysctl kernel.ftrace_enabled is 0 (which the module then
 *                 refuses to set while any lower device exists).
 *                 EMEDIUMTYPE for a DAX-capable or zoned @dev.
 *   LOWER_REMOVE  Remove the lower device of @dev.  EBUSY while @dev is
 *                 attached or the lower device is open.
 *   ATTACH        Redirect every bio aimed at @dev to @interposer.  The
 *                 filesystem on @dev is frozen and new bios are held at the
 *                 hook across the switch.  Needs the lower device first.
 *                 EMEDIUMTYPE when @interposer's logical block size is
 *                 larger than @dev's (its users' I/O would not fit); the
 *                 same checks apply to each entry of SWITCH.
 *   DETACH        Stop redirecting @dev; waits for redirected bios still in
 *                 flight.  The lower device stays.
 *   STATUS        One struct blk_interposer_status for @dev at @data_start.
 *   LIST          An array of struct blk_interposer_status at @data_start,
 *                 one for each lower device; @count says how many.  If they
 *                 do not fit in @data_size, BLK_INTERPOSER_BUFFER_FULL is set
 *                 and @count says how many there are: retry larger.
 *   SWITCH        (1.1) Move @count devices at one point in time.  The
 *                 payload at @data_start is an array of @count struct
 *                 blk_interposer_switch.  Every filesystem involved is
 *                 frozen and every gate closed before any device switches;
 *                 then all switch, all gates open, all thaw.  An entry whose
 *                 @interposer is 0:0 detaches its device; an attached device
 *                 moves from its interposer straight to the new one, with
 *                 no moment in which its bios go to the device directly.
 *                 All or nothing: on error no device has changed.  Each
 *                 device needs a lower device and may appear once; at most
 *                 BLK_INTERPOSER_SWITCH_MAX entries.
 *
 * Versioning follows dm-ioctl: a different major is incompatible, a larger
 * minor adds backward-compatible features, patch is compatible both ways.
 * Userspace sends the version it was built with; the kernel refuses another
 * major with EINVAL and always writes its own version back.
 *
 * The command numbers are append-only.  When adding one, update
 * interposer_ctl_dispatch() in kmod/ctl.c and the Rust mirror.
 */
#ifndef _UAPI_BLK_INTERPOSER_V1_H
#define _UAPI_BLK_INTERPOSER_V1_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/const.h>

#define BLK_INTERPOSER_VERSION_MAJOR	1
#define BLK_INTERPOSER_VERSION_MINOR	1
#define BLK_INTERPOSER_VERSION_PATCH	0

#define BLK_INTERPOSER_CTL_NAME		"blk-interposer"
/* Lower devices appear as /dev/<BLK_INTERPOSER_LOWER_DIR>/<name of @dev> */
#define BLK_INTERPOSER_LOWER_DIR	"interposer"
#define BLK_INTERPOSER_NAME_LEN		32

/* A device number, split as the kernel's MAJOR()/MINOR() split it. */
struct blk_interposer_devno {
	__u32 major;
	__u32 minor;
};

/* Header of every command. */
struct blk_interposer_ioctl {
	__u32 version[3];	/* In/Out */
	__u32 data_size;	/* In: size of the whole buffer, header included */
	__u32 data_start;	/* In: offset of the payload from the header */
	__u32 flags;		/* In/Out: BLK_INTERPOSER_* flags below */
	__u32 count;		/* Out: LIST: entries there are; In: SWITCH: entries */
	__u32 padding;
	struct blk_interposer_devno dev;	/* In: the interposed device */
	struct blk_interposer_devno interposer;	/* In: ATTACH: takes its bios */
	struct blk_interposer_devno lower;	/* Out: LOWER_CREATE */
	char lower_name[BLK_INTERPOSER_NAME_LEN]; /* Out: LOWER_CREATE, "interposer/vdb" */
};

/* Out: the payload did not fit in data_size; @count says how many entries. */
#define BLK_INTERPOSER_BUFFER_FULL	_BITUL(0)

/* struct blk_interposer_status.state bits */
#define BLK_INTERPOSER_ST_ATTACHED	_BITUL(0)	/* bios are redirected */
#define BLK_INTERPOSER_ST_GONE		_BITUL(1)	/* @dev was deleted */

struct blk_interposer_status {
	struct blk_interposer_devno dev;	/* the interposed device */
	struct blk_interposer_devno lower;	/* its lower device */
	struct blk_interposer_devno interposer;	/* 0:0 when not attached */
	__u32 state;		/* BLK_INTERPOSER_ST_* */
	__u32 padding;
	__u64 sectors;		/* size of @dev in 512-byte sectors */
	__u64 redirected;	/* bios redirected to an interposer (total) */
	__u64 lower_bios;	/* bios passed down through the lower device */
	__u64 deferred;		/* bios that arrived during a switch and waited */
	__u64 attaches;		/* attach operations completed */
	char lower_name[BLK_INTERPOSER_NAME_LEN];	/* "interposer/vdb" */
};

/* One entry of SWITCH: send @dev's bios to @interposer (0:0: to @dev itself). */
struct blk_interposer_switch {
	struct blk_interposer_devno dev;
	struct blk_interposer_devno interposer;
};

#define BLK_INTERPOSER_SWITCH_MAX	64

#define BLK_INTERPOSER_IOCTL	0xB7

enum {
	BLK_INTERPOSER_VERSION_CMD = 0,
	BLK_INTERPOSER_LOWER_CREATE_CMD,
	BLK_INTERPOSER_LOWER_REMOVE_CMD,
	BLK_INTERPOSER_ATTACH_CMD,
	BLK_INTERPOSER_DETACH_CMD,
	BLK_INTERPOSER_STATUS_CMD,
	BLK_INTERPOSER_LIST_CMD,
	/* added later: append here */
	BLK_INTERPOSER_SWITCH_CMD,	/* 1.1 */
};

#define BLK_INTERPOSER_IOW(cmd) \
	_IOWR(BLK_INTERPOSER_IOCTL, BLK_INTERPOSER_##cmd##_CMD, struct blk_interposer_ioctl)
#define BLK_INTERPOSER_VERSION		BLK_INTERPOSER_IOW(VERSION)
#define BLK_INTERPOSER_LOWER_CREATE	BLK_INTERPOSER_IOW(LOWER_CREATE)
#define BLK_INTERPOSER_LOWER_REMOVE	BLK_INTERPOSER_IOW(LOWER_REMOVE)
#define BLK_INTERPOSER_ATTACH		BLK_INTERPOSER_IOW(ATTACH)
#define BLK_INTERPOSER_DETACH		BLK_INTERPOSER_IOW(DETACH)
#define BLK_INTERPOSER_STATUS		BLK_INTERPOSER_IOW(STATUS)
#define BLK_INTERPOSER_LIST		BLK_INTERPOSER_IOW(LIST)
#define BLK_INTERPOSER_SWITCH		BLK_INTERPOSER_IOW(SWITCH)

#endif /* _UAPI_BLK_INTERPOSER_V1_H */
