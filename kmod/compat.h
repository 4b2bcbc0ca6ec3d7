/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The only place that knows kernel versions.  Supported: Debian's 6.1
 * (bookworm) and 6.12 (bookworm-backports); builds also for 7.2 (sid) and
 * 7.3 (trixie-backports).  6.9 replaced the bdev open API
 * with files and freeze_bdev() with bdev_freeze(); 6.11 moved queue limits
 * and features into blk_alloc_disk(); 6.5 changed the ->open() arguments;
 * 6.14 gave blk_mq_unfreeze_queue() a memflags argument.
 */
#ifndef INTERPOSER_COMPAT_H
#define INTERPOSER_COMPAT_H

#include <linux/version.h>
#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/ftrace.h>
#include <linux/fs.h>
#include <asm/nospec-branch.h>

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
 * 6.17 added WQ_PERCPU, for a workqueue bound to the CPU that queues, which
 * was the default until then; newer kernels warn at alloc_workqueue() when a
 * queue names neither it nor WQ_UNBOUND.  It is an enum constant, hence the
 * version test.
 */
#if KERNEL_VERSION(6, 17, 0) <= LINUX_VERSION_CODE
#define INTERPOSER_WQ_PERCPU	WQ_PERCPU
#else
#define INTERPOSER_WQ_PERCPU	0
#endif

/*
 * End a freeze begun with blk_freeze_queue_start().  6.14 made
 * blk_mq_unfreeze_queue() restore the memalloc flags that
 * blk_mq_freeze_queue() saved; a freeze started by hand saved none.
 */
static inline void interposer_unfreeze_queue(struct request_queue *q)
{
#if KERNEL_VERSION(6, 14, 0) <= LINUX_VERSION_CODE
	blk_mq_unfreeze_queue_nomemrestore(q);
#else
	blk_mq_unfreeze_queue(q);
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

/*
 * Arguments of block_device_operations.open, the disk they name, and whether
 * the open is for writing without an exclusive claim (a holder).
 */
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
#define INTERPOSER_OPEN_ARGS	struct gendisk *disk, blk_mode_t mode
#define INTERPOSER_OPEN_DISK	(disk)
#define INTERPOSER_OPEN_SHARED_WRITE \
	((mode & (BLK_OPEN_WRITE | BLK_OPEN_EXCL)) == BLK_OPEN_WRITE)
#else
#define INTERPOSER_OPEN_ARGS	struct block_device *bdev, fmode_t mode
#define INTERPOSER_OPEN_DISK	(bdev->bd_disk)
#define INTERPOSER_OPEN_SHARED_WRITE \
	((mode & (FMODE_WRITE | FMODE_EXCL)) == FMODE_WRITE)
#endif

/*
 * Exported by dm.c (EXPORT_SYMBOL_GPL, for dm targets) but declared only in
 * drivers/md/dm.h: block a dm device's new bios and wait for those in
 * flight, then let it go on.  A switch uses them to drain bios it handed
 * to a dm interposer without a clone of its own.
 */
struct mapped_device;
void dm_internal_suspend_fast(struct mapped_device *md);
void dm_internal_resume_fast(struct mapped_device *md);

#if !defined(CONFIG_X86_64) || !defined(CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)
#error "the hook needs x86-64 and ftrace direct calls (DYNAMIC_FTRACE_WITH_DIRECT_CALLS)"
#endif
/* 6.5 renamed the ops-based direct-call API from *_multi to the plain names. */
static inline int interposer_register_direct(struct ftrace_ops *ops,
					     unsigned long addr)
{
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
	return register_ftrace_direct(ops, addr);
#else
	return register_ftrace_direct_multi(ops, addr);
#endif
}

/* Leaves @ops's filter, which the caller removes. */
static inline int interposer_unregister_direct(struct ftrace_ops *ops,
					       unsigned long addr)
{
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
	return unregister_ftrace_direct(ops, addr, false);
#else
	return unregister_ftrace_direct_multi(ops, addr);
#endif
}

/* Call-depth tracking (a retbleed mitigation) came in 6.2. */
#ifndef CALL_DEPTH_ACCOUNT
#define CALL_DEPTH_ACCOUNT ""
#endif

#endif /* INTERPOSER_COMPAT_H */
