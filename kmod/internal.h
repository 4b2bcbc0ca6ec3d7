/* SPDX-License-Identifier: GPL-2.0 */
/*
 * blk_interposer private structures.
 *
 * One struct interposer_dev exists for each device that has a lower device
 * (LOWER_CREATE .. LOWER_REMOVE).  While it is attached it is also published
 * in the hook's hash of active devices, which is all the bio hook looks at.
 */
#ifndef INTERPOSER_INTERNAL_H
#define INTERPOSER_INTERNAL_H

#include <linux/bio.h>
#include <linux/blk-cgroup.h>
#include <linux/blkdev.h>
#include <linux/completion.h>
#include <linux/device-mapper.h>
#include <linux/percpu-refcount.h>
#include <linux/refcount.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <uapi/blk_interposer.h>
#include "compat.h"

struct interposer_stats {
	u64 redirected;
	u64 lower_bios;
	u64 deferred;
};

/* An entry of the hook's hash (hook.c). */
struct interposer_hnode {
	struct hlist_node node;
	struct block_device *bdev;
	struct interposer_dev *ipd;	/* NULL: @bdev is a lower device */
};

struct interposer_dev {
	dev_t dev;			/* the interposed (original) device */
	struct interposer_bdev orig;	/* opened by us, never claimed */
	struct gendisk *lower;		/* forwards to @orig, beneath the hook */
	struct bio_set redirect_bs;	/* clones sent to @target */

	/*
	 * The gate: every redirected bio holds a reference from the hook until
	 * its clone completes.  A switch kills it, waits for @drained (no bio
	 * in flight to the old target), changes @target and resurrects it.
	 */
	struct percpu_ref gate;
	struct completion drained;
	bool switching;			/* gate closed; protected by @defer_lock */
	wait_queue_head_t wait;		/* top-level submitters wait here */
	spinlock_t defer_lock;
	struct bio_list deferred;	/* nested submitters park bios here */
	struct work_struct resubmit;

	struct interposer_bdev target;	/* the interposer; bdev NULL if idle */
	/*
	 * @target's dm device when it is a bio-based dm device, else NULL.
	 * Top-level bios are then remapped to it instead of cloned: dm counts
	 * them from the moment submit_bio_noacct() returns, and a switch
	 * waits for dm's count (interposer_drain_dm()) before it lets go.
	 */
	struct mapped_device *target_md;
	bool removing;			/* lower device refuses new opens */
	u64 attaches;
	struct interposer_stats __percpu *stats;
	refcount_t users;		/* registry + sleepers in the hook */
	struct interposer_hnode active;	/* in the hook's hash while attached */
	struct interposer_hnode lower_active;	/* @lower's, while it exists */
	unsigned long unpublished;	/* RCU state when it last left it */
	struct list_head node;		/* interposer_devs, under interposer_mutex */
};

/* Front pad of the clones sent to the interposer: their endio needs @ipd. */
struct interposer_clone {
	struct interposer_dev *ipd;
	struct bio bio;
};

/* main.c: registry, under interposer_mutex */
extern struct mutex interposer_mutex;
/*
 * Resubmits the bios parked during a switch: writeback and swap I/O may be
 * among them, so it has a rescuer and needs no new kworker under memory
 * pressure.
 */
extern struct workqueue_struct *interposer_wq;
extern struct list_head interposer_devs;
struct interposer_dev *interposer_find(dev_t dev);
struct interposer_dev *interposer_find_lower(dev_t lower);
void interposer_unhold(struct interposer_dev *ipd);
struct interposer_dev *interposer_dev_create(dev_t dev);
int interposer_dev_destroy(struct interposer_dev *ipd);

/* hook.c: the ftrace redirect of submit_bio_noacct() */
void interposer_hash_add(struct interposer_hnode *hn, struct block_device *bdev,
			 struct interposer_dev *ipd);
void interposer_hash_del(struct interposer_hnode *hn);
void interposer_publish(struct interposer_dev *ipd);
void interposer_unpublish(struct interposer_dev *ipd);
void interposer_published_wait(struct interposer_dev *ipd);
int interposer_hook_get(void);
void interposer_hook_put(void);
void interposer_hook_exit(void);
void interposer_hook_submit(struct bio *bio, struct interposer_dev *held);
void interposer_resubmit_work(struct work_struct *work);

/*
 * bio_set_dev() for a caller inside an RCU read section: bio_associate_blkg()
 * would open one more around the same work (RCU keeps the old blkg's css
 * alive while bio_associate_blkg_from_css() drops the blkg).  The hook calls
 * this twice per interposed bio, so the saved section counts.
 */
static inline void interposer_set_dev_rcu(struct bio *bio, struct block_device *bdev)
{
	RCU_LOCKDEP_WARN(!rcu_read_lock_held(), "blkg moved outside RCU");
#ifdef CONFIG_BLK_CGROUP
	bio_clear_flag(bio, BIO_REMAPPED);
	if (bio->bi_bdev != bdev)
		bio_clear_flag(bio, BIO_BPS_THROTTLED);
	bio->bi_bdev = bdev;
	if (bio->bi_blkg)
		bio_associate_blkg_from_css(bio, bio_blkcg_css(bio));
	else
		bio_associate_blkg(bio);	/* the submitter's cgroup */
#else
	bio_set_dev(bio, bdev);
#endif
}

/* lower.c: the device beneath the interposer */
int interposer_lower_create(struct interposer_dev *ipd);
int interposer_lower_remove(struct interposer_dev *ipd);
bool interposer_lower_remap(struct bio *bio);	/* under RCU */
extern const struct block_device_operations interposer_lower_fops;

static inline bool interposer_is_lower_disk(struct gendisk *disk)
{
	return disk->fops == &interposer_lower_fops;
}

/* attach.c: the switch */
struct interposer_move {
	struct interposer_dev *ipd;
	dev_t to;			/* the new target; 0: detach */
	struct interposer_bdev target;	/* @to, opened by the switch */
	struct mapped_device *target_md;	/* @to's, if remapped to */
	struct interposer_bdev old;	/* the target it replaced */
	struct mapped_device *old_md;
	bool attach;			/* first attach: not published before */
	bool frozen;			/* its filesystem */
	bool queue_frozen;		/* its request queue (first attach) */
	bool atomic;			/* the ref it kills, switched early */
};

int interposer_switch(struct interposer_move *mv, unsigned int n, unsigned int *failed);
extern struct workqueue_struct *interposer_release_wq;
void interposer_release_take(struct list_head *mine);
void interposer_release_wait(struct list_head *mine);
int interposer_attach(struct interposer_dev *ipd, dev_t target);
int interposer_detach(struct interposer_dev *ipd);
int interposer_gate_init(struct interposer_dev *ipd);
void interposer_gate_exit(struct interposer_dev *ipd);

/* ctl.c: /dev/blk-interposer */
int interposer_ctl_init(void);
void interposer_ctl_exit(void);

#endif /* INTERPOSER_INTERNAL_H */
