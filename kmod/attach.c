// SPDX-License-Identifier: GPL-2.0
/*
 * The switch: attach, detach and SWITCH, the control-path side of the hook,
 * like a dm target's suspend/resume.  All run under interposer_mutex as one
 * switch of one or more devices, each step done for every device before the
 * next step starts, so that several devices share one point in time:
 *
 *   open and check targets  nothing has changed yet if one is wrong
 *   refs to atomic mode     the grace period a kill needs starts now
 *   freeze the filesystems  their own sync I/O still passes the open gates
 *   close the gates         new bios wait (or park, or get EAGAIN)
 *   drain                   redirected bios in flight to old targets end
 *   freeze the queues       of devices attached for the first time: the
 *                           requests issued to them directly end first
 *   switch                  publish, replace or withdraw each target
 *   open gates and queues   waiting and parked bios go to the new place
 *   thaw
 *
 * A device attached for the first time is not published yet, so no bio holds
 * its gate: it needs only its queue frozen, which keeps the bios that reach
 * it from the new interposer waiting until the direct ones have ended.  Each
 * percpu_ref kill (a gate, a queue) needs an RCU grace period; the switch
 * starts it before the filesystems freeze, so that their writers do not wait
 * it out on top of the freeze.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/blk-mq.h>

#include "internal.h"

/* How long a switch waits for in-flight I/O before it gives up. */
static unsigned int switch_timeout_ms = 60000;
module_param(switch_timeout_ms, uint, 0644);
MODULE_PARM_DESC(switch_timeout_ms,
		 "give up an attach/detach whose in-flight I/O does not drain in this time");

static void interposer_gate_release(struct percpu_ref *ref)
{
	complete(&container_of(ref, struct interposer_dev, gate)->drained);
}

int interposer_gate_init(struct interposer_dev *ipd)
{
	init_completion(&ipd->drained);
	init_waitqueue_head(&ipd->wait);
	spin_lock_init(&ipd->defer_lock);
	bio_list_init(&ipd->deferred);
	INIT_WORK(&ipd->resubmit, interposer_resubmit_work);
	return percpu_ref_init(&ipd->gate, interposer_gate_release,
			       PERCPU_REF_ALLOW_REINIT, GFP_KERNEL);
}

/* Only for an idle device: nothing is redirected, nothing is parked. */
void interposer_gate_exit(struct interposer_dev *ipd)
{
	reinit_completion(&ipd->drained);
	percpu_ref_kill(&ipd->gate);
	wait_for_completion(&ipd->drained);	/* stragglers of a detach */
	flush_work(&ipd->resubmit);
	percpu_ref_exit(&ipd->gate);
}

static void interposer_set_switching(struct interposer_dev *ipd, bool on)
{
	spin_lock_irq(&ipd->defer_lock);
	ipd->switching = on;
	spin_unlock_irq(&ipd->defer_lock);
}

/* Close the gate: new bios of @ipd wait from now on. */
static void interposer_gate_kill(struct interposer_dev *ipd)
{
	interposer_set_switching(ipd, true);
	reinit_completion(&ipd->drained);
	percpu_ref_kill(&ipd->gate);
}

/* Wait until no bio redirected before the gate closed is in flight. */
static int interposer_gate_wait(struct interposer_dev *ipd, unsigned long deadline)
{
	long left = max_t(long, (long)(deadline - jiffies), 1);

	return wait_for_completion_timeout(&ipd->drained, left) ? 0 : -ETIMEDOUT;
}

static void interposer_gate_open(struct interposer_dev *ipd)
{
	smp_wmb();	/* @target before the bios that the gate admits */
	percpu_ref_resurrect(&ipd->gate);
	interposer_set_switching(ipd, false);
	wake_up_all(&ipd->wait);
	queue_work(interposer_wq, &ipd->resubmit);
}

static void interposer_thaw_logged(struct interposer_dev *ipd)
{
	int ret = interposer_thaw(ipd->orig.bdev);

	if (ret)
		pr_err("%pg: thaw failed: %d\n", ipd->orig.bdev, ret);
}

/* Where the bios of @dev go once the switch of @mv is done; NULL: to @dev. */
static struct block_device *interposer_next(dev_t dev, struct interposer_move *mv,
					    unsigned int n)
{
	struct interposer_dev *ipd;
	unsigned int i;

	for (i = 0; i < n; i++)
		if (mv[i].ipd->dev == dev)
			return mv[i].target.bdev;
	ipd = interposer_find(dev);
	return ipd ? ipd->target.bdev : NULL;
}

/*
 * The interposer must be another disk that does not lead back to @ipd once
 * the whole switch is done: not the device, not a partition of its disk, not
 * a lower device, not a device whose chain of attachments comes back here.
 */
static int interposer_check_target(struct interposer_dev *ipd,
				   struct block_device *target,
				   struct interposer_move *mv, unsigned int n)
{
	struct block_device *orig = ipd->orig.bdev;
	struct block_device *next = target;
	int depth;

	if (target->bd_disk == orig->bd_disk) {
		pr_err("%pg: interposer %pg is on the same disk\n", orig, target);
		return -ELOOP;
	}
	if (interposer_is_lower_disk(target->bd_disk)) {
		pr_err("%pg: interposer %pg is a lower device\n", orig, target);
		return -ELOOP;
	}
	if (bdev_nr_sectors(target) < bdev_nr_sectors(orig)) {
		pr_err("%pg: interposer %pg is smaller (%llu < %llu sectors)\n",
		       orig, target, (u64)bdev_nr_sectors(target),
		       (u64)bdev_nr_sectors(orig));
		return -ENOSPC;
	}
	/*
	 * The device's users align their I/O to its logical block size (a
	 * filesystem's block, O_DIRECT), not to the interposer's: an interposer
	 * with larger logical blocks would fail or mangle what they send.
	 */
	if (bdev_logical_block_size(target) > bdev_logical_block_size(orig)) {
		pr_err("%pg: interposer %pg has %u-byte logical blocks, the device %u\n",
		       orig, target, bdev_logical_block_size(target),
		       bdev_logical_block_size(orig));
		return -EMEDIUMTYPE;
	}
	if (bdev_read_only(target) && !bdev_read_only(orig)) {
		pr_err("%pg: interposer %pg is read-only\n", orig, target);
		return -EROFS;
	}
	for (depth = 0; depth < 16; depth++) {
		struct block_device *t = interposer_next(next->bd_dev, mv, n);

		if (!t)
			return 0;
		if (next->bd_dev == ipd->dev || t->bd_disk == orig->bd_disk) {
			pr_err("%pg: interposer %pg leads back to it\n", orig, target);
			return -ELOOP;
		}
		next = t;
	}
	return -ELOOP;
}

/* Open and check the new targets; on error *@failed is the entry's index. */
static int interposer_switch_prepare(struct interposer_move *mv, unsigned int n,
				     unsigned int *failed)
{
	unsigned int i;
	int ret;

	for (i = 0; i < n; i++) {
		struct interposer_dev *ipd = mv[i].ipd;
		bool attached = ipd->target.bdev;

		*failed = i;
		if (!mv[i].to && !attached)
			return -ENOENT;
		mv[i].attach = !attached;
		if (mv[i].to && test_bit(GD_DEAD, &ipd->orig.bdev->bd_disk->state))
			return -ENODEV;
		if (!mv[i].to)
			continue;
		/* Before the open: a lower device refuses a plain writer. */
		if (interposer_find_lower(mv[i].to)) {
			pr_err("%pg: interposer %u:%u is a lower device\n",
			       ipd->orig.bdev, MAJOR(mv[i].to), MINOR(mv[i].to));
			return -ELOOP;
		}
		ret = interposer_bdev_open(&mv[i].target, mv[i].to, true);
		if (ret)
			return ret;
		/* Request-based dm counts bios only once they are requests. */
		if (mv[i].target.bdev->bd_disk->fops->submit_bio)
			mv[i].target_md = dm_get_md(mv[i].to);
	}
	for (i = 0; i < n; i++) {
		*failed = i;
		if (!mv[i].to)
			continue;
		ret = interposer_check_target(mv[i].ipd, mv[i].target.bdev, mv, n);
		if (ret)
			return ret;
		interposer_published_wait(mv[i].ipd);
	}
	return 0;
}

/* Undo what prepare and the freezes did, for a switch that did not happen. */
static void interposer_switch_abandon(struct interposer_move *mv, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (mv[i].frozen)
			interposer_thaw_logged(mv[i].ipd);
		if (mv[i].target_md)
			dm_put(mv[i].target_md);
		interposer_bdev_close(&mv[i].target);
	}
}

/* Publish the new target of one device; the gates are closed and drained. */
static void interposer_switch_one(struct interposer_move *mv)
{
	struct interposer_dev *ipd = mv->ipd;
	bool attached = ipd->target.bdev;

	mv->old = ipd->target;
	mv->old_md = ipd->target_md;
	ipd->target = mv->target;
	ipd->target_md = mv->target_md;
	mv->target = (struct interposer_bdev){};
	mv->target_md = NULL;
	if (!ipd->target.bdev) {
		interposer_unpublish(ipd);
		return;
	}
	ipd->attaches++;
	if (attached)
		return;
	interposer_publish(ipd);
	__module_get(THIS_MODULE);	/* dropped by the detach */
}

/*
 * Wait for the bios that the hook remapped to dm device @md (no clone holds
 * the gate for them) to end, then drop our hold on it.  The gates are open
 * by now: a bio on its way through @md never waits for them.
 */
static void interposer_drain_dm(struct mapped_device *md)
{
	dm_internal_suspend_fast(md);
	dm_internal_resume_fast(md);
	dm_put(md);
}

/*
 * The release of an old dm interposer, after a switch: drain it, close it,
 * and for a detach drop the attachment's module reference.  The drain waits
 * for every bio in flight through it, however slow its path (dm-delay), and
 * dm waits uninterruptibly: a worker does it, outside interposer_mutex, while
 * the command that switched waits killably (interposer_release_wait()).  A
 * command killed meanwhile leaves the rest to the worker.
 */
struct interposer_release {
	struct work_struct work;
	struct completion drained;
	struct mapped_device *md;
	struct interposer_bdev old;
	bool module_ref;
	bool orphan;		/* its command is gone; under release_lock */
	/* Drained; under release_lock.  Not completion_done(): a wait uses it up. */
	bool done;
	struct list_head node;	/* interposer_releases, then the waiter's */
};

static DEFINE_SPINLOCK(interposer_release_lock);
/* Started by this command's switch; under interposer_mutex. */
static LIST_HEAD(interposer_releases);
/* Unbound: these releases, and the hook's unregistration after its linger. */
struct workqueue_struct *interposer_release_wq;

static void interposer_release_free(struct interposer_release *rel)
{
	interposer_bdev_close(&rel->old);
	if (rel->module_ref)
		module_put(THIS_MODULE);	/* module exit flushes the worker */
	kfree(rel);
}

static void interposer_release_work(struct work_struct *work)
{
	struct interposer_release *rel =
		container_of(work, struct interposer_release, work);
	bool orphan;

	interposer_drain_dm(rel->md);
	spin_lock(&interposer_release_lock);
	rel->done = true;
	orphan = rel->orphan;
	if (!orphan)
		complete(&rel->drained);
	spin_unlock(&interposer_release_lock);
	if (orphan)
		interposer_release_free(rel);
}

/* Before the command lets interposer_mutex go: the releases its switch left. */
void interposer_release_take(struct list_head *mine)
{
	lockdep_assert_held(&interposer_mutex);
	list_splice_init(&interposer_releases, mine);
}

/*
 * After interposer_mutex is released: wait for the old interposers that this
 * command's switch left, killably.  Other commands go on meanwhile.
 */
void interposer_release_wait(struct list_head *mine)
{
	struct interposer_release *rel, *tmp;
	bool killed = false;

	list_for_each_entry_safe(rel, tmp, mine, node) {
		list_del(&rel->node);
		if (!killed && wait_for_completion_killable(&rel->drained))
			killed = true;
		spin_lock(&interposer_release_lock);
		rel->orphan = !rel->done;
		spin_unlock(&interposer_release_lock);
		if (!rel->orphan)
			interposer_release_free(rel);
	}
}

/* Release what the switch took from one device. */
static void interposer_switch_done(struct interposer_move *mv)
{
	struct interposer_dev *ipd = mv->ipd;
	bool module_ref = mv->old.bdev && !ipd->target.bdev;
	struct interposer_release *rel = NULL;

	if (ipd->target.bdev)
		pr_info("%pg: attached to %pg\n", ipd->orig.bdev, ipd->target.bdev);
	else
		pr_info("%pg: detached from %pg\n", ipd->orig.bdev, mv->old.bdev);
	if (mv->old_md)
		rel = kzalloc(sizeof(*rel), GFP_KERNEL);
	if (rel) {
		INIT_WORK(&rel->work, interposer_release_work);
		init_completion(&rel->drained);
		rel->md = mv->old_md;
		rel->old = mv->old;
		rel->module_ref = module_ref;
		mv->old = (struct interposer_bdev){};
		list_add_tail(&rel->node, &interposer_releases);
		queue_work(interposer_release_wq, &rel->work);
		return;
	}
	if (mv->old_md)
		interposer_drain_dm(mv->old_md);	/* no memory: here */
	if (module_ref)
		module_put(THIS_MODULE);
	interposer_bdev_close(&mv->old);
}

static struct request_queue *interposer_queue(struct interposer_move *mv)
{
	return bdev_get_queue(mv->ipd->orig.bdev);
}

static int interposer_queue_wait(struct interposer_move *mv, unsigned long deadline)
{
	long left = max_t(long, (long)(deadline - jiffies), 1);

	return blk_mq_freeze_queue_wait_timeout(interposer_queue(mv), left) > 0 ?
	       0 : -ETIMEDOUT;
}

/* The percpu_ref that the switch of @mv kills: its gate, or its queue's. */
static struct percpu_ref *interposer_switch_ref(struct interposer_move *mv)
{
	return mv->attach ? &interposer_queue(mv)->q_usage_counter : &mv->ipd->gate;
}

/*
 * Killing a percpu_ref switches it to atomic mode, which waits for an RCU
 * grace period.  Started before the filesystems freeze, that wait passes
 * while they do, instead of after, when their writers would wait it out
 * too.  The refs work in atomic mode meanwhile (one shared counter).
 */
static void interposer_switch_atomic(struct interposer_move *mv, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		percpu_ref_switch_to_atomic(interposer_switch_ref(&mv[i]), NULL);
		mv[i].atomic = true;
	}
}

/* Back to per-cpu mode once killed refs are alive again (or never died). */
static void interposer_switch_percpu(struct interposer_move *mv, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (mv[i].atomic)
			percpu_ref_switch_to_percpu(interposer_switch_ref(&mv[i]));
		mv[i].atomic = false;
	}
}

/* Open what the switch closed: the gates it killed, the queues it froze. */
static void interposer_switch_open(struct interposer_move *mv, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (!mv[i].attach)
			interposer_gate_open(mv[i].ipd);
		else if (mv[i].queue_frozen)
			interposer_unfreeze_queue(interposer_queue(&mv[i]));
	}
}

/*
 * Switch the devices of @mv (distinct, each with a lower device) to their
 * targets @mv[i].to (0: detach), all at one point in time, or change none.
 * On error *@failed is the index of the entry that failed.
 */
int interposer_switch(struct interposer_move *mv, unsigned int n, unsigned int *failed)
{
	ktime_t t_start = ktime_get(), t_prepared, t_freeze, t_drain, t_open, t_thaw;
	unsigned long deadline;
	unsigned int i;
	int ret;

	lockdep_assert_held(&interposer_mutex);
	ret = interposer_switch_prepare(mv, n, failed);
	if (ret)
		goto abandon;
	t_prepared = ktime_get();

	interposer_switch_atomic(mv, n);
	for (i = 0; i < n; i++) {
		/* An unplugged device has no filesystem left to freeze. */
		if (test_bit(GD_DEAD, &mv[i].ipd->orig.bdev->bd_disk->state))
			continue;
		*failed = i;
		ret = interposer_freeze(mv[i].ipd->orig.bdev);
		if (ret) {
			pr_err("%pg: cannot freeze: %d\n", mv[i].ipd->orig.bdev, ret);
			goto abandon;
		}
		mv[i].frozen = true;
	}

	t_freeze = ktime_get();
	for (i = 0; i < n; i++)
		if (!mv[i].attach)
			interposer_gate_kill(mv[i].ipd);
	deadline = jiffies + msecs_to_jiffies(switch_timeout_ms);
	for (i = 0; i < n && !ret; i++) {
		*failed = i;
		if (!mv[i].attach)
			ret = interposer_gate_wait(mv[i].ipd, deadline);
	}
	if (ret) {
		pr_err("%pg: in-flight I/O to %pg did not drain; is it suspended?\n",
		       mv[*failed].ipd->orig.bdev, mv[*failed].ipd->target.bdev);
		goto open;
	}
	/* After the drains: an old interposer may sit on a device frozen here. */
	for (i = 0; i < n; i++) {
		if (mv[i].attach) {
			blk_freeze_queue_start(interposer_queue(&mv[i]));
			mv[i].queue_frozen = true;
		}
	}
	for (i = 0; i < n && !ret; i++) {
		*failed = i;
		if (mv[i].attach)
			ret = interposer_queue_wait(&mv[i], deadline);
	}
	if (ret) {
		pr_err("%pg: requests in flight did not end; is it suspended?\n",
		       mv[*failed].ipd->orig.bdev);
		goto open;
	}
	t_drain = ktime_get();

	for (i = 0; i < n; i++)
		interposer_switch_one(&mv[i]);
	interposer_switch_open(mv, n);
	interposer_switch_percpu(mv, n);
	t_open = ktime_get();
	for (i = 0; i < n; i++)
		if (mv[i].frozen)
			interposer_thaw_logged(mv[i].ipd);
	t_thaw = ktime_get();
	for (i = 0; i < n; i++)
		interposer_switch_done(&mv[i]);
	pr_debug("switch of %u: prepare %lld us, freeze fs %lld us, drain %lld us, switch %lld us, thaw %lld us, release %lld us\n",
		 n, ktime_us_delta(t_prepared, t_start),
		 ktime_us_delta(t_freeze, t_prepared),
		 ktime_us_delta(t_drain, t_freeze),
		 ktime_us_delta(t_open, t_drain),
		 ktime_us_delta(t_thaw, t_open),
		 ktime_us_delta(ktime_get(), t_thaw));
	return 0;

open:
	interposer_switch_open(mv, n);
abandon:
	interposer_switch_percpu(mv, n);
	interposer_switch_abandon(mv, n);
	return ret;
}

int interposer_attach(struct interposer_dev *ipd, dev_t target)
{
	struct interposer_move mv = { .ipd = ipd, .to = target };
	unsigned int failed;

	if (ipd->target.bdev)
		return -EEXIST;
	return interposer_switch(&mv, 1, &failed);
}

int interposer_detach(struct interposer_dev *ipd)
{
	struct interposer_move mv = { .ipd = ipd };
	unsigned int failed;

	return interposer_switch(&mv, 1, &failed);
}
