/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The only place that knows kernel versions.  Supported: Debian's 6.1
 * (bookworm) and 6.12 (bookworm-backports).  6.9 replaced the bdev open API
 * with files and freeze_bdev() with bdev_freeze(); 6.11 moved queue limits
 * and features into blk_alloc_disk(); 6.5 changed the ->open() arguments.
 */
#ifndef INTERPOSER_COMPAT_H
#define INTERPOSER_COMPAT_H

#include <linux/version.h>
#include <linux/blkdev.h>
#include <linux/ftrace.h>
#include <linux/fs.h>

#define INTERPOSER_FILE_API	(KERNEL_VERSION(6, 9, 0) <= LINUX_VERSION_CODE)
#define INTERPOSER_LIMITS_API	(KERNEL_VERSION(6, 11, 0) <= LINUX_VERSION_CODE)

/* A block device we opened without an exclusive claim. */
struct interposer_bdev {
	struct block_device *bdev;
#if INTERPOSER_FILE_API
	struct file *file;
#else
	fmode_t mode;
#endif
};

static inline int interposer_bdev_open(struct interposer_bdev *h, dev_t dev,
				       bool write)
{
#if INTERPOSER_FILE_API
	blk_mode_t mode = BLK_OPEN_READ | (write ? BLK_OPEN_WRITE : 0);
	struct file *f = bdev_file_open_by_dev(dev, mode, NULL, NULL);

	if (IS_ERR(f))
		return PTR_ERR(f);
	h->file = f;
	h->bdev = file_bdev(f);
#else
	fmode_t mode = FMODE_READ | (write ? FMODE_WRITE : 0);
	struct block_device *b = blkdev_get_by_dev(dev, mode, NULL);

	if (IS_ERR(b))
		return PTR_ERR(b);
	h->mode = mode;
	h->bdev = b;
#endif
	return 0;
}

static inline void interposer_bdev_close(struct interposer_bdev *h)
{
	if (!h->bdev)
		return;
#if INTERPOSER_FILE_API
	fput(h->file);
	h->file = NULL;
#else
	blkdev_put(h->bdev, h->mode);
#endif
	h->bdev = NULL;
}

static inline int interposer_freeze(struct block_device *bdev)
{
#if INTERPOSER_FILE_API
	return bdev_freeze(bdev);
#else
	return freeze_bdev(bdev);
#endif
}

static inline int interposer_thaw(struct block_device *bdev)
{
#if INTERPOSER_FILE_API
	return bdev_thaw(bdev);
#else
	return thaw_bdev(bdev);
#endif
}

/*
 * A bio-based disk whose limits and cache flags mirror @bdev (a partition or
 * a whole disk).  Without the write-cache/FUA flags the block layer would
 * silently strip FLUSH and FUA from the bios that pass through it.
 */
static inline struct gendisk *interposer_alloc_disk(struct block_device *bdev)
{
	struct gendisk *disk;
#if INTERPOSER_LIMITS_API
	struct queue_limits lim;

	blk_set_stacking_limits(&lim);
	queue_limits_stack_bdev(&lim, bdev, 0, "blk_interposer");
	lim.features |= BLK_FEAT_NOWAIT;
	disk = blk_alloc_disk(&lim, NUMA_NO_NODE);
	if (IS_ERR(disk))
		return disk;
#else
	struct request_queue *q = bdev_get_queue(bdev);

	disk = blk_alloc_disk(NUMA_NO_NODE);
	if (!disk)
		return ERR_PTR(-ENOMEM);
	blk_set_stacking_limits(&disk->queue->limits);
	disk_stack_limits(disk, bdev, 0);
	blk_queue_write_cache(disk->queue,
			      test_bit(QUEUE_FLAG_WC, &q->queue_flags),
			      test_bit(QUEUE_FLAG_FUA, &q->queue_flags));
	blk_queue_flag_set(QUEUE_FLAG_NOWAIT, disk->queue);
#endif
	return disk;
}

/* Arguments of block_device_operations.open and the disk they name. */
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
#define INTERPOSER_OPEN_ARGS	struct gendisk *disk, blk_mode_t mode
#define INTERPOSER_OPEN_DISK	(disk)
#else
#define INTERPOSER_OPEN_ARGS	struct block_device *bdev, fmode_t mode
#define INTERPOSER_OPEN_DISK	(bdev->bd_disk)
#endif

/*
 * The hook reads the first argument and moves the instruction pointer from
 * struct ftrace_regs without FTRACE_OPS_FL_SAVE_REGS (as livepatch does on
 * x86-64), so ftrace calls it from its lighter trampoline.
 */
/*
 * Exported by dm.c (EXPORT_SYMBOL_GPL, for dm targets) but declared only in
 * drivers/md/dm.h: block a dm device's new bios and wait for those in
 * flight, then let it go on.  A switch uses them to drain bios it handed
 * to a dm interposer without a clone of its own.
 */
struct mapped_device;
void dm_internal_suspend_fast(struct mapped_device *md);
void dm_internal_resume_fast(struct mapped_device *md);

#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
#error "the hook needs ftrace with arguments and IP modification (x86-64, as livepatch)"
#endif
#ifdef ftrace_regs_set_instruction_pointer
#define interposer_set_ip(fregs, ip) ftrace_regs_set_instruction_pointer(fregs, ip)
#else
#define interposer_set_ip(fregs, ip) ftrace_instruction_pointer_set(fregs, ip)
#endif
/*
 * The hooked function's arguments, as the trampoline saved them; it restores
 * them before it jumps to the instruction pointer (so a callback can hand the
 * function it redirects to a second argument).  x86-64 only, like the hook.
 */
#ifdef arch_ftrace_regs
#define interposer_arg_regs(fregs) (&arch_ftrace_regs(fregs)->regs)
#else
/* Without arch_ftrace_regs() (6.1): struct ftrace_regs wraps pt_regs. */
#define interposer_arg_regs(fregs) (&(fregs)->regs)
#endif
#define interposer_first_arg(fregs) (interposer_arg_regs(fregs)->di)
#define interposer_set_second_arg(fregs, v) (interposer_arg_regs(fregs)->si = (v))

#endif /* INTERPOSER_COMPAT_H */
