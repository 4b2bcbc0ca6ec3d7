// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/blk-interposer: copy the header in, check the version, dispatch under
 * interposer_mutex, copy the header back.  The ABI and the meaning of each
 * command are in include/uapi/blk_interposer.h.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/uaccess.h>
#include <linux/capability.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "internal.h"

static struct blk_interposer_devno interposer_devno(dev_t dev)
{
	return (struct blk_interposer_devno){ MAJOR(dev), MINOR(dev) };
}

static dev_t interposer_ctl_dev(const struct blk_interposer_devno *d)
{
	/* MKDEV() would silently truncate out-of-range numbers */
	if (d->major >= (1U << (32 - MINORBITS)) || d->minor > MINORMASK)
		return 0;
	return MKDEV(d->major, d->minor);
}

static void interposer_fill_status(struct interposer_dev *ipd,
				   struct blk_interposer_status *st)
{
	int cpu;

	memset(st, 0, sizeof(*st));
	st->dev = interposer_devno(ipd->dev);
	st->lower = interposer_devno(disk_devt(ipd->lower));
	if (ipd->target.bdev) {
		st->interposer = interposer_devno(ipd->target.bdev->bd_dev);
		st->state |= BLK_INTERPOSER_ST_ATTACHED;
	}
	if (test_bit(GD_DEAD, &ipd->orig.bdev->bd_disk->state))
		st->state |= BLK_INTERPOSER_ST_GONE;
	st->sectors = bdev_nr_sectors(ipd->orig.bdev);
	for_each_possible_cpu(cpu) {
		struct interposer_stats *s = per_cpu_ptr(ipd->stats, cpu);

		st->redirected += READ_ONCE(s->redirected);
		st->lower_bios += READ_ONCE(s->lower_bios);
		st->deferred += READ_ONCE(s->deferred);
	}
	st->attaches = ipd->attaches;
	snprintf(st->lower_name, sizeof(st->lower_name), "%s/%pg",
		 BLK_INTERPOSER_LOWER_DIR, ipd->orig.bdev);
}

static int interposer_ctl_list(struct blk_interposer_ioctl *hdr, void __user *payload)
{
	u32 room = (hdr->data_size - hdr->data_start) /
		   sizeof(struct blk_interposer_status);
	struct blk_interposer_status st;
	struct interposer_dev *ipd;
	u32 n = 0;

	list_for_each_entry(ipd, &interposer_devs, node) {
		if (n < room) {
			interposer_fill_status(ipd, &st);
			if (copy_to_user(payload + n * sizeof(st), &st, sizeof(st)))
				return -EFAULT;
		}
		n++;
	}
	hdr->count = n;
	if (n > room)
		hdr->flags |= BLK_INTERPOSER_BUFFER_FULL;
	return 0;
}

/*
 * SWITCH: @hdr->count entries at @payload.  On error @hdr->dev and
 * @hdr->interposer name the entry that failed.
 */
static int interposer_ctl_switch(struct blk_interposer_ioctl *hdr,
				 void __user *payload)
{
	struct blk_interposer_switch *sw;
	struct interposer_move *mv;
	unsigned int i, j, n = hdr->count, failed = 0;
	int ret = 0;

	if (!n || n > BLK_INTERPOSER_SWITCH_MAX ||
	    hdr->data_size - hdr->data_start < n * sizeof(*sw))
		return -EINVAL;
	sw = memdup_user(payload, n * sizeof(*sw));
	if (IS_ERR(sw))
		return PTR_ERR(sw);
	mv = kcalloc(n, sizeof(*mv), GFP_KERNEL);
	if (!mv) {
		kfree(sw);
		return -ENOMEM;
	}
	for (i = 0; i < n && !ret; i++) {
		dev_t dev = interposer_ctl_dev(&sw[i].dev);

		failed = i;
		mv[i].ipd = dev ? interposer_find(dev) : NULL;
		if (!mv[i].ipd) {
			ret = dev ? -ENOENT : -ENODEV;
		} else if (sw[i].interposer.major || sw[i].interposer.minor) {
			mv[i].to = interposer_ctl_dev(&sw[i].interposer);
			if (!mv[i].to)
				ret = -ENODEV;
		}
		for (j = 0; j < i && !ret; j++)
			if (mv[j].ipd == mv[i].ipd)
				ret = -EINVAL;	/* one device, two places */
	}
	if (!ret)
		ret = interposer_switch(mv, n, &failed);
	if (ret) {
		hdr->dev = sw[failed].dev;
		hdr->interposer = sw[failed].interposer;
	}
	kfree(mv);
	kfree(sw);
	return ret;
}

static int interposer_ctl_dispatch(unsigned int nr, struct blk_interposer_ioctl *hdr,
				   void __user *payload)
{
	struct blk_interposer_status st;
	struct interposer_dev *ipd;
	dev_t dev;

	if (nr == BLK_INTERPOSER_VERSION_CMD)
		return 0;
	if (nr == BLK_INTERPOSER_LIST_CMD)
		return interposer_ctl_list(hdr, payload);
	if (nr == BLK_INTERPOSER_SWITCH_CMD)
		return interposer_ctl_switch(hdr, payload);

	dev = interposer_ctl_dev(&hdr->dev);
	if (!dev)
		return -ENODEV;
	if (nr == BLK_INTERPOSER_LOWER_CREATE_CMD) {
		ipd = interposer_dev_create(dev);
		if (IS_ERR(ipd))
			return PTR_ERR(ipd);
		hdr->lower = interposer_devno(disk_devt(ipd->lower));
		snprintf(hdr->lower_name, sizeof(hdr->lower_name), "%s/%pg",
			 BLK_INTERPOSER_LOWER_DIR, ipd->orig.bdev);
		return 0;
	}

	ipd = interposer_find(dev);
	if (!ipd)
		return -ENOENT;
	switch (nr) {
	case BLK_INTERPOSER_LOWER_REMOVE_CMD:
		return interposer_dev_destroy(ipd);
	case BLK_INTERPOSER_ATTACH_CMD:
		dev = interposer_ctl_dev(&hdr->interposer);
		return dev ? interposer_attach(ipd, dev) : -ENODEV;
	case BLK_INTERPOSER_DETACH_CMD:
		return interposer_detach(ipd);
	case BLK_INTERPOSER_STATUS_CMD:
		if (hdr->data_size - hdr->data_start < sizeof(st))
			return -EINVAL;
		interposer_fill_status(ipd, &st);
		return copy_to_user(payload, &st, sizeof(st)) ? -EFAULT : 0;
	}
	return -ENOTTY;
}

static long interposer_ctl_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	unsigned int nr = _IOC_NR(cmd);
	struct blk_interposer_ioctl hdr;
	LIST_HEAD(released);
	long ret;

	if (_IOC_TYPE(cmd) != BLK_INTERPOSER_IOCTL || nr > BLK_INTERPOSER_SWITCH_CMD)
		return -ENOTTY;
	if (cmd != _IOWR(BLK_INTERPOSER_IOCTL, nr, struct blk_interposer_ioctl))
		return -EINVAL;	/* a header of another size: another ABI */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&hdr, uarg, sizeof(hdr)))
		return -EFAULT;

	if (hdr.version[0] != BLK_INTERPOSER_VERSION_MAJOR ||
	    hdr.data_size < sizeof(hdr) || hdr.data_start < sizeof(hdr) ||
	    hdr.data_start > hdr.data_size) {
		ret = -EINVAL;
	} else {
		hdr.flags &= ~BLK_INTERPOSER_BUFFER_FULL;
		if (nr != BLK_INTERPOSER_SWITCH_CMD)
			hdr.count = 0;	/* In only for SWITCH */
		mutex_lock(&interposer_mutex);
		ret = interposer_ctl_dispatch(nr, &hdr, uarg + hdr.data_start);
		interposer_release_take(&released);
		mutex_unlock(&interposer_mutex);
		/* The old interposers of a switch drain without the mutex. */
		interposer_release_wait(&released);
	}

	/* The kernel's version goes back for every recognised command. */
	hdr.version[0] = BLK_INTERPOSER_VERSION_MAJOR;
	hdr.version[1] = BLK_INTERPOSER_VERSION_MINOR;
	hdr.version[2] = BLK_INTERPOSER_VERSION_PATCH;
	if (copy_to_user(uarg, &hdr, sizeof(hdr)))
		return -EFAULT;
	return ret;
}

static const struct file_operations interposer_ctl_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = interposer_ctl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice interposer_ctl_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = BLK_INTERPOSER_CTL_NAME,
	.nodename = BLK_INTERPOSER_CTL_NAME,
	.mode = 0600,
	.fops = &interposer_ctl_fops,
};

int interposer_ctl_init(void)
{
	return misc_register(&interposer_ctl_misc);
}

void interposer_ctl_exit(void)
{
	misc_deregister(&interposer_ctl_misc);
}
