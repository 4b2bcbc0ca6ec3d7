// SPDX-License-Identifier: GPL-2.0
/*
 * The lower device: /dev/interposer/<name>, a bio-based disk that forwards
 * every bio to the interposed device beneath the hook.  A dm table reaches
 * the live device through it ("[interpose]/dev/vdb" in our tables), without
 * fighting the mounted filesystem's exclusive claim and without a write open
 * of the mounted device.  It forwards by remapping, as the block layer does
 * for a partition: the bio moves to the real device (the partition itself,
 * so that its /proc/diskstats line and blktrace go on counting), its sector
 * is shifted into the whole disk's range, and it carries BIO_REMAPPED, which
 * tells the block layer the shift is done, tells the hook never to redirect
 * it again, and stays on the remainders the block layer splits off.  Nothing
 * is allocated and nothing of ours runs when the bio completes.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>

#include "internal.h"

/*
 * Move a bio of the lower device to the real device beneath the hook, under
 * the caller's RCU read section; false if it ends beyond the device (which
 * may have shrunk since the lower device was sized).  The hook calls this for
 * bios aimed at a lower device as they are submitted, which saves them a pass
 * through the lower disk; the lower disk's own submit_bio is the fallback.
 */
bool interposer_lower_remap(struct bio *bio)
{
	struct interposer_dev *ipd = bio->bi_bdev->bd_disk->private_data;
	struct block_device *orig = ipd->orig.bdev;

	if (unlikely(bio_end_sector(bio) > bdev_nr_sectors(orig)))
		return false;
	interposer_set_dev_rcu(bio, orig);
	if (bio_sectors(bio))
		bio->bi_iter.bi_sector += orig->bd_start_sect;
	bio_set_flag(bio, BIO_REMAPPED);	/* set after the move clears it */
	this_cpu_inc(ipd->stats->lower_bios);
	return true;
}

static void interposer_lower_submit(struct bio *bio)
{
	bool remapped;

	rcu_read_lock();
	remapped = interposer_lower_remap(bio);
	rcu_read_unlock();
	if (remapped)
		submit_bio_noacct(bio);
	else
		bio_io_error(bio);
}

/*
 * interposer_lower_remove() closes the door under the disk's open_mutex.
 *
 * The lower device is a second name for a live device, beneath the hook:
 * what is written through it bypasses the interposer (a snapshot's copy on
 * write, dm-era's record) and lands under the mounted filesystem.  Only an
 * exclusive opener may write: a dm table, which claims its devices, and
 * which then keeps out every other exclusive opener (mkfs, wipefs and
 * blkdiscard open with O_EXCL).  A plain write open (dd of=) is refused.
 */
static int interposer_lower_open(INTERPOSER_OPEN_ARGS)
{
	struct interposer_dev *ipd = INTERPOSER_OPEN_DISK->private_data;

	if (READ_ONCE(ipd->removing))
		return -ENXIO;
	if (INTERPOSER_OPEN_SHARED_WRITE)
		return -EBUSY;
	return 0;
}

const struct block_device_operations interposer_lower_fops = {
	.owner = THIS_MODULE,
	.submit_bio = interposer_lower_submit,
	.open = interposer_lower_open,
};

int interposer_lower_create(struct interposer_dev *ipd)
{
	struct block_device *orig = ipd->orig.bdev;
	struct gendisk *disk;
	int ret;

	disk = interposer_alloc_disk(orig);
	if (IS_ERR(disk))
		return PTR_ERR(disk);
	/* major 0 and no minors: a dynamic dev_t in the extended range */
	disk->fops = &interposer_lower_fops;
	disk->private_data = ipd;
	disk->flags |= GENHD_FL_NO_PART;
	/* '!' becomes '/' in the device node: /dev/interposer/<name> */
	snprintf(disk->disk_name, DISK_NAME_LEN, "%s!%pg",
		 BLK_INTERPOSER_LOWER_DIR, orig);
	set_capacity(disk, bdev_nr_sectors(orig));
	ret = add_disk(disk);
	if (ret) {
		put_disk(disk);
		return ret;
	}
	ipd->lower = disk;
	/* From now on the hook remaps bios aimed at it as they are submitted. */
	interposer_hash_add(&ipd->lower_active, disk->part0, NULL);
	return 0;
}

/* Refuses while anyone (a dm table) has the lower device open. */
int interposer_lower_remove(struct interposer_dev *ipd)
{
	struct gendisk *disk = ipd->lower;

	mutex_lock(&disk->open_mutex);
	if (atomic_read(&disk->part0->bd_openers)) {
		mutex_unlock(&disk->open_mutex);
		return -EBUSY;
	}
	WRITE_ONCE(ipd->removing, true);
	mutex_unlock(&disk->open_mutex);

	/* The registry waits for an RCU grace period before it frees @ipd. */
	interposer_hash_del(&ipd->lower_active);
	del_gendisk(disk);
	put_disk(disk);
	ipd->lower = NULL;
	return 0;
}
