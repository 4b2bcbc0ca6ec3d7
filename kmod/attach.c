// SPDX-License-Identifier: GPL-2.0
/*
 * Attach and detach: the control-path side of the hook, like a dm target's
 * suspend/resume.  Both run under interposer_mutex and follow one order:
 *
 *   freeze the filesystem   its own sync I/O still passes the open gate
 *   close the gate          new bios wait (or park, or get EAGAIN)
 *   drain                   redirected bios in flight to the old target end
 *   switch                  publish or withdraw the device and its target
 *   open the gate           waiting and parked bios go to the new place
 *   thaw
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

/* Close the gate and wait until no redirected bio is in flight. */
static int interposer_gate_close(struct interposer_dev *ipd)
{
	interposer_set_switching(ipd, true);
	reinit_completion(&ipd->drained);
	percpu_ref_kill(&ipd->gate);
	if (!wait_for_completion_timeout(&ipd->drained,
					 msecs_to_jiffies(switch_timeout_ms)))
		return -ETIMEDOUT;
	return 0;
}

static void interposer_gate_open(struct interposer_dev *ipd)
{
	smp_wmb();	/* @target before the bios that the gate admits */
	percpu_ref_resurrect(&ipd->gate);
	interposer_set_switching(ipd, false);
	wake_up_all(&ipd->wait);
	queue_work(system_wq, &ipd->resubmit);
}

static void interposer_thaw_logged(struct interposer_dev *ipd)
{
	int ret = interposer_thaw(ipd->orig.bdev);

	if (ret)
		pr_err("%pg: thaw failed: %d\n", ipd->orig.bdev, ret);
}

/*
 * The interposer must be another disk that does not lead back to @ipd:
 * not the device, not a partition of its disk, not a lower device, not a
 * device whose own chain of attachments comes back here.
 */
static int interposer_check_target(struct interposer_dev *ipd,
				   struct block_device *target)
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
	if (bdev_read_only(target) && !bdev_read_only(orig)) {
		pr_err("%pg: interposer %pg is read-only\n", orig, target);
		return -EROFS;
	}
	for (depth = 0; depth < 16; depth++) {
		struct interposer_dev *n = interposer_find(next->bd_dev);

		if (!n || !n->target.bdev)
			return 0;
		if (n == ipd || n->target.bdev->bd_disk == orig->bd_disk) {
			pr_err("%pg: interposer %pg leads back to it\n", orig, target);
			return -ELOOP;
		}
		next = n->target.bdev;
	}
	return -ELOOP;
}

int interposer_attach(struct interposer_dev *ipd, dev_t target_dev)
{
	struct request_queue *q = bdev_get_queue(ipd->orig.bdev);
	struct interposer_bdev target = {};
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (ipd->target.bdev)
		return -EEXIST;
	if (test_bit(GD_DEAD, &ipd->orig.bdev->bd_disk->state))
		return -ENODEV;
	ret = interposer_bdev_open(&target, target_dev, true);
	if (ret)
		return ret;
	ret = interposer_check_target(ipd, target.bdev);
	if (ret)
		goto out_close;
	ret = interposer_freeze(ipd->orig.bdev);
	if (ret) {
		pr_err("%pg: cannot freeze: %d\n", ipd->orig.bdev, ret);
		goto out_close;
	}
	ret = interposer_gate_close(ipd);
	if (!ret)
		ret = xa_insert(&interposer_active, ipd->dev, ipd, GFP_KERNEL);
	if (ret) {
		interposer_gate_open(ipd);
		interposer_thaw_logged(ipd);
		goto out_close;
	}
	/* Requests issued straight to the device before the switch end first. */
	blk_mq_freeze_queue(q);
	blk_mq_unfreeze_queue(q);

	ipd->target = target;
	ipd->attaches++;
	__module_get(THIS_MODULE);	/* dropped by detach */
	interposer_gate_open(ipd);
	interposer_thaw_logged(ipd);
	pr_info("%pg: attached to %pg\n", ipd->orig.bdev, target.bdev);
	return 0;

out_close:
	interposer_bdev_close(&target);
	return ret;
}

int interposer_detach(struct interposer_dev *ipd)
{
	/* An unplugged device has no filesystem left to freeze. */
	bool freeze = !test_bit(GD_DEAD, &ipd->orig.bdev->bd_disk->state);
	struct interposer_bdev old;
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (!ipd->target.bdev)
		return -ENOENT;
	if (freeze) {
		ret = interposer_freeze(ipd->orig.bdev);
		if (ret) {
			pr_err("%pg: cannot freeze: %d\n", ipd->orig.bdev, ret);
			return ret;
		}
	}
	ret = interposer_gate_close(ipd);
	if (ret) {
		pr_err("%pg: in-flight I/O to %pg did not drain; is it suspended?\n",
		       ipd->orig.bdev, ipd->target.bdev);
		interposer_gate_open(ipd);
		if (freeze)
			interposer_thaw_logged(ipd);
		return ret;
	}
	xa_erase(&interposer_active, ipd->dev);
	old = ipd->target;
	ipd->target = (struct interposer_bdev){};
	interposer_gate_open(ipd);
	if (freeze)
		interposer_thaw_logged(ipd);

	pr_info("%pg: detached from %pg\n", ipd->orig.bdev, old.bdev);
	interposer_bdev_close(&old);
	module_put(THIS_MODULE);
	return 0;
}
