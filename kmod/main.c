// SPDX-License-Identifier: GPL-2.0
/*
 * blk_interposer: put a device-mapper target on top of a block device that
 * is already in use, and take it away again, live.
 *
 *   hook.c    redirect bios of attached devices (ftrace on submit_bio_noacct)
 *   lower.c   /dev/interposer/<name>: the real device beneath the hook
 *   attach.c  freeze, gate, drain, switch, thaw
 *   ctl.c     /dev/blk-interposer ioctls
 *
 * This file keeps the registry of devices and the module's init and exit.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>
#include <linux/wait_bit.h>

#include "internal.h"

/* Serialises every control command: the registry and all switches. */
DEFINE_MUTEX(interposer_mutex);
LIST_HEAD(interposer_devs);	/* every device with a lower device */

struct interposer_dev *interposer_find(dev_t dev)
{
	struct interposer_dev *ipd;

	lockdep_assert_held(&interposer_mutex);
	list_for_each_entry(ipd, &interposer_devs, node)
		if (ipd->dev == dev)
			return ipd;
	return NULL;
}

struct interposer_dev *interposer_find_lower(dev_t lower)
{
	struct interposer_dev *ipd;

	lockdep_assert_held(&interposer_mutex);
	list_for_each_entry(ipd, &interposer_devs, node)
		if (disk_devt(ipd->lower) == lower)
			return ipd;
	return NULL;
}

/* Frees what interposer_dev_create() set up; each member may be missing. */
static void interposer_dev_free(struct interposer_dev *ipd)
{
	bioset_exit(&ipd->redirect_bs);
	free_percpu(ipd->stats);
	interposer_bdev_close(&ipd->orig);
	kfree(ipd);
}

/*
 * A sleeper of the hook lets go of @ipd.  It never frees it: that is the
 * control path's work (interposer_dev_destroy()), in a task that is not in a
 * throttled cgroup and runs no code the module's exit could take away.
 */
void interposer_unhold(struct interposer_dev *ipd)
{
	if (refcount_dec_and_test(&ipd->users)) {
		smp_mb();	/* @users 0 before wake_up_var() looks for the waiter */
		wake_up_var(&ipd->users);	/* @ipd may be freed: only its address */
	}
}

static struct interposer_dev *interposer_dev_alloc(dev_t dev)
{
	struct interposer_dev *ipd = kzalloc(sizeof(*ipd), GFP_KERNEL);
	int ret;

	if (!ipd)
		return ERR_PTR(-ENOMEM);
	ipd->dev = dev;
	refcount_set(&ipd->users, 1);
	ret = interposer_bdev_open(&ipd->orig, dev, false);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	ipd->stats = alloc_percpu(struct interposer_stats);
	if (!ipd->stats)
		goto fail;
	/* A rescuer: redirect clones may be allocated under a nested submit. */
	ret = bioset_init(&ipd->redirect_bs, BIO_POOL_SIZE,
			  offsetof(struct interposer_clone, bio),
			  BIOSET_NEED_RESCUER);
	if (ret)
		goto fail;
	return ipd;
fail:
	interposer_dev_free(ipd);
	return ERR_PTR(ret);
}

/* LOWER_CREATE: a new registry entry with its lower device. */
struct interposer_dev *interposer_dev_create(dev_t dev)
{
	struct interposer_dev *ipd;
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (interposer_find(dev))
		return ERR_PTR(-EEXIST);
	ipd = interposer_dev_alloc(dev);
	if (IS_ERR(ipd))
		return ipd;
	if (interposer_is_lower_disk(ipd->orig.bdev->bd_disk)) {
		ret = -EINVAL;	/* a lower device is never interposed */
		goto fail;
	}
	/*
	 * Refused, with EMEDIUMTYPE: a DAX-capable device, whose filesystem
	 * (mounted -o dax) reads and writes memory without any bio the hook
	 * could see; and a zoned one, whose zones the lower device does not
	 * carry and whose zone appends would lose their written sector.
	 */
	if (blk_queue_dax(bdev_get_queue(ipd->orig.bdev)) ||
	    bdev_is_zoned(ipd->orig.bdev)) {
		ret = -EMEDIUMTYPE;
		goto fail;
	}
	ret = interposer_gate_init(ipd);
	if (ret)
		goto fail;
	ret = interposer_hook_get();
	if (ret) {
		percpu_ref_exit(&ipd->gate);
		goto fail;
	}
	ret = interposer_lower_create(ipd);
	if (ret) {
		interposer_hook_put();
		percpu_ref_exit(&ipd->gate);
		goto fail;
	}
	list_add_tail(&ipd->node, &interposer_devs);
	return ipd;
fail:
	interposer_dev_free(ipd);
	return ERR_PTR(ret);
}

/* LOWER_REMOVE: only for a device that is not attached. */
int interposer_dev_destroy(struct interposer_dev *ipd)
{
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (ipd->target.bdev)
		return -EBUSY;
	ret = interposer_lower_remove(ipd);
	if (ret)
		return ret;
	list_del(&ipd->node);
	synchronize_rcu();	/* hook lookups that found it are done */
	interposer_gate_exit(ipd);
	interposer_hook_put();
	/*
	 * Sleepers that found @ipd at a closed gate were woken when the switch
	 * ended; each lets go of it once it runs again.  None can take it now.
	 */
	if (!refcount_dec_and_test(&ipd->users))
		wait_var_event(&ipd->users, !refcount_read(&ipd->users));
	interposer_dev_free(ipd);
	return 0;
}

struct workqueue_struct *interposer_wq;

static int __init interposer_init(void)
{
	int ret;

	interposer_wq = alloc_workqueue("blk_interposer",
					WQ_MEM_RECLAIM | INTERPOSER_WQ_PERCPU, 0);
	if (!interposer_wq)
		return -ENOMEM;
	interposer_release_wq = alloc_workqueue("blk_interposer_release", WQ_UNBOUND, 0);
	if (!interposer_release_wq) {
		destroy_workqueue(interposer_wq);
		return -ENOMEM;
	}
	ret = interposer_ctl_init();
	if (ret) {
		destroy_workqueue(interposer_release_wq);
		destroy_workqueue(interposer_wq);
		return ret;
	}
	pr_info("version %d.%d.%d loaded\n", BLK_INTERPOSER_VERSION_MAJOR,
		BLK_INTERPOSER_VERSION_MINOR, BLK_INTERPOSER_VERSION_PATCH);
	return 0;
}

static void __exit interposer_exit(void)
{
	struct interposer_dev *ipd, *tmp;
	bool busy;

	interposer_ctl_exit();
	/*
	 * Each attachment, and each open of a lower device, holds a module
	 * reference: only `rmmod -f` gets here with one of them left.  Going on
	 * would let the bios of attached devices bypass their interposers (a
	 * snapshot no longer copies, dm-era no longer records) and leave the
	 * lower devices' dm tables calling into freed module text.  Nothing can
	 * take them away now (the control device is gone, and a module that is
	 * going cannot be opened), so stay: everything keeps working until the
	 * next reboot, and only the forced rmmod waits.
	 */
	mutex_lock(&interposer_mutex);
	list_for_each_entry_safe(ipd, tmp, &interposer_devs, node)
		interposer_dev_destroy(ipd);
	busy = !list_empty(&interposer_devs);
	mutex_unlock(&interposer_mutex);
	if (busy) {
		pr_crit("forced unload while devices are interposed or lower devices open: refusing to go, the module stays until reboot\n");
		for (;;)
			schedule_timeout_idle(MAX_SCHEDULE_TIMEOUT);
	}
	interposer_hook_exit();
	/* Tasks preempted in the hook's trampoline, or on their way out of it. */
	synchronize_rcu_tasks();
	destroy_workqueue(interposer_wq);
	destroy_workqueue(interposer_release_wq);
}

module_init(interposer_init);
module_exit(interposer_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("blk-interposer developers");
MODULE_DESCRIPTION("Redirect the bios of a live block device to a device-mapper target");
MODULE_VERSION(BLK_INTERPOSER_PKG_VERSION);
