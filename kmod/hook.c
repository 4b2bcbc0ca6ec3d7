// SPDX-License-Identifier: GPL-2.0
/*
 * The hook: a trampoline that ftrace calls directly from the first
 * instruction of submit_bio_noacct() (a "direct call", as BPF trampolines are
 * called; no ftrace_ops callback and no ftrace_regs).
 *
 * It runs for every bio in the system while it is registered, so its common
 * path is a bucket test in assembly: it looks the bio's device up in a small
 * hash of attached and lower devices.  For an interposed device the slow path
 * takes a reference on its gate and sends the bio to interposer_hook_submit()
 * instead.  That function may sleep; it calls submit_bio_noacct() again for
 * the bios it passes on, and the hook lets those through because their device
 * is not interposed (a clone aimed at the interposer) or because they carry
 * BIO_REMAPPED (bios the lower device remapped to the real device, and the
 * remainders the block layer splits off them).  Bios aimed at a lower device
 * are remapped to the real device right in the hook (no sleeping, no
 * allocation), which saves them a pass through the lower disk.
 *
 * The hook is registered with the first lower device and unregistered
 * hook_linger_ms after the last, not at every attach and detach: registering
 * rewrites the first instructions of submit_bio_noacct() while other CPUs
 * run through them, and under qemu TCG a CPU has executed a stale int3 there
 * (an oops) in races of hundreds of attach/detach or create/remove calls
 * under I/O.  Patching rarely keeps that rare and the switch itself free of
 * code patching.  Some seconds after the last lower device is gone the hook
 * is not registered at all.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/hash.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#include <linux/srcu.h>
#include <asm/ibt.h>
#include <asm/linkage.h>

#include "internal.h"

/*
 * The block_devices the hook acts on, hashed by pointer: attached devices
 * (by the block_device we opened: a disk that was unplugged while attached
 * can come back with the same dev_t, but only our block_device is ours) and
 * lower devices.  Every bio in the system is looked up here; for any other
 * device the trampoline finds an empty bucket, which costs a multiply, a load
 * and a test.  An xarray keyed by dev_t walked five levels deep instead
 * (about 180 instructions per bio, measured with `cargo xtask bench
 * --profile`).  Writers hold interposer_mutex; readers use RCU.
 */
#define INTERPOSER_ACTIVE_BITS 6
static struct hlist_head interposer_active[1 << INTERPOSER_ACTIVE_BITS];

/*
 * The hash, (pointer * GOLDEN_RATIO_64) >> (64 - bits), spelled out rather
 * than hash_ptr() because the trampoline computes it too, in assembly, from
 * these same two constants: the two cannot drift apart, and a bio of an
 * attached device can never miss its bucket and pass untouched.  An "i"
 * operand cannot carry a 64-bit constant, so the multiplier is a literal.
 */
#define INTERPOSER_GOLDEN 0x61C8864680B583EB
#define INTERPOSER_SHIFT (64 - INTERPOSER_ACTIVE_BITS)

static __always_inline struct hlist_head *interposer_bucket(struct block_device *bdev)
{
	return &interposer_active[((u64)(uintptr_t)bdev * INTERPOSER_GOLDEN) >>
				  INTERPOSER_SHIFT];
}

/* The attached device @bdev is, or NULL; under RCU (any flavour). */
static __always_inline struct interposer_dev *interposer_lookup(struct block_device *bdev)
{
	struct interposer_hnode *hn;

	hlist_for_each_entry_rcu(hn, interposer_bucket(bdev), node)
		if (hn->bdev == bdev)
			return hn->ipd;
	return NULL;
}

/* @ipd NULL: @bdev is a lower device, which the hook remaps. */
void interposer_hash_add(struct interposer_hnode *hn, struct block_device *bdev,
			 struct interposer_dev *ipd)
{
	lockdep_assert_held(&interposer_mutex);
	hn->bdev = bdev;
	hn->ipd = ipd;
	hlist_add_head_rcu(&hn->node, interposer_bucket(bdev));
}

/* Readers may still see @hn until an RCU grace period has passed. */
void interposer_hash_del(struct interposer_hnode *hn)
{
	lockdep_assert_held(&interposer_mutex);
	hlist_del_rcu(&hn->node);
}

/*
 * Make @ipd visible to the hook.  A reader may still be walking its node from
 * an earlier publication: interposer_published_wait() let those finish.
 */
void interposer_publish(struct interposer_dev *ipd)
{
	interposer_hash_add(&ipd->active, ipd->orig.bdev, ipd);
}

void interposer_unpublish(struct interposer_dev *ipd)
{
	interposer_hash_del(&ipd->active);
	ipd->unpublished = get_state_synchronize_rcu();
}

/*
 * Before an attach publishes @ipd again: readers that found it in its last
 * publication may still follow its old link, which publishing rewrites.
 * Usually a grace period has long passed and this returns at once.
 */
void interposer_published_wait(struct interposer_dev *ipd)
{
	lockdep_assert_held(&interposer_mutex);
	if (!ipd->target.bdev && ipd->attaches)
		cond_synchronize_rcu(ipd->unpublished);
}

/*
 * Every task inside a function the trampoline diverts a bio to.  Those call
 * submit_bio_noacct(), which may sleep (a request tag, writeback throttling),
 * and interposer_hook_submit() sleeps at a closed gate: such a task runs
 * module code again when it wakes, however late (a CPU-throttled cgroup), so
 * module exit waits for them all (interposer_hook_exit()).
 */
DEFINE_STATIC_SRCU(interposer_hook_srcu);

static void interposer_redirect_endio(struct bio *clone)
{
	struct interposer_clone *ic = container_of(clone, struct interposer_clone, bio);
	struct interposer_dev *ipd = ic->ipd;
	struct bio *bio = clone->bi_private;

	bio->bi_status = clone->bi_status;
	bio_put(clone);
	bio_endio(bio);
	percpu_ref_put(&ipd->gate);	/* taken on the way in */
}

/* Submit a bio remapped to a dm interposer; give the gate back once dm has it. */
static void interposer_submit_put(struct bio *bio, struct interposer_dev *ipd)
{
	int idx = srcu_read_lock(&interposer_hook_srcu);

	submit_bio_noacct(bio);
	percpu_ref_put(&ipd->gate);
	srcu_read_unlock(&interposer_hook_srcu, idx);
}

/*
 * At the top level submit_bio_noacct() hands the bio to dm before it returns,
 * and from then on dm counts it for the switch that drains it: a remap does,
 * no clone needed.  Under RCU, holding a gate reference; false: clone it.
 */
static __always_inline bool interposer_remap_to_dm(struct interposer_dev *ipd,
						   struct bio *bio)
{
	struct block_device *target;

	if (current->bio_list)
		return false;
	smp_rmb();	/* read the target after the gate let us in */
	target = READ_ONCE(ipd->target.bdev);
	if (!target || !READ_ONCE(ipd->target_md))
		return false;
	/* The clone path turns its EOPNOTSUPP into the EAGAIN promised. */
	if (unlikely(bio->bi_opf & REQ_NOWAIT) && !bdev_nowait(target))
		return false;
	this_cpu_inc(ipd->stats->redirected);
	interposer_set_dev_rcu(bio, target);
	return true;
}

/*
 * Called with a gate reference.  A clone carries it until it completes; a
 * bio remapped to a dm interposer gives it back once dm has it.
 */
static void interposer_redirect(struct interposer_dev *ipd, struct bio *bio)
{
	bool nowait = bio->bi_opf & REQ_NOWAIT;
	struct block_device *target;
	struct bio *clone;
	bool remapped;

	rcu_read_lock();
	remapped = interposer_remap_to_dm(ipd, bio);
	rcu_read_unlock();
	if (remapped) {
		interposer_submit_put(bio, ipd);
		return;
	}
	smp_rmb();	/* read @target after the gate let us in */
	target = READ_ONCE(ipd->target.bdev);
	if (!target) {
		/* Detached while we entered: the device takes it directly. */
		percpu_ref_put(&ipd->gate);
		submit_bio_noacct(bio);
		return;
	}
	/*
	 * The device took REQ_NOWAIT, a target without it (dm-era, snapshots,
	 * cache, thin) would fail it with EOPNOTSUPP: EAGAIN tells the caller
	 * to retry without it (io_uring does so by itself).
	 */
	if (nowait && !bdev_nowait(target)) {
		percpu_ref_put(&ipd->gate);
		bio_wouldblock_error(bio);
		return;
	}
	this_cpu_inc(ipd->stats->redirected);
	clone = bio_alloc_clone(target, bio, nowait ? GFP_NOWAIT : GFP_NOIO,
				&ipd->redirect_bs);
	if (!clone) {
		percpu_ref_put(&ipd->gate);
		if (nowait)
			bio_wouldblock_error(bio);
		else
			bio_io_error(bio);
		return;
	}
	container_of(clone, struct interposer_clone, bio)->ipd = ipd;
	clone->bi_private = bio;
	clone->bi_end_io = interposer_redirect_endio;
	submit_bio_noacct(clone);
}

/* Park a bio of a nested submitter until the switch ends; false if it ended. */
static bool interposer_defer(struct interposer_dev *ipd, struct bio *bio)
{
	unsigned long flags;
	bool parked;

	spin_lock_irqsave(&ipd->defer_lock, flags);
	parked = ipd->switching;
	if (parked) {
		bio_list_add(&ipd->deferred, bio);
		this_cpu_inc(ipd->stats->deferred);
	}
	spin_unlock_irqrestore(&ipd->defer_lock, flags);
	return parked;
}

/*
 * Where the hook sends the bios of interposed devices.  @held is the
 * device when the hook's slow path already passed its gate for us,
 * else NULL.  A switch (attach or detach) closes the gate: REQ_NOWAIT bios
 * then fail with EAGAIN, a top-level submitter sleeps until it reopens, and a
 * nested submitter (a stacked driver such as dm above the device, with
 * current->bio_list set) parks the bio for a worker instead of sleeping,
 * because the switch may be waiting for bios that sit on that submitter's
 * list.
 */
static void __interposer_hook_submit(struct bio *bio, struct interposer_dev *held)
{
	struct interposer_dev *ipd;

	if (held) {
		interposer_redirect(held, bio);
		return;
	}
again:
	rcu_read_lock();
	ipd = interposer_lookup(bio->bi_bdev);
	if (ipd && percpu_ref_tryget_live_rcu(&ipd->gate)) {
		rcu_read_unlock();
		interposer_redirect(ipd, bio);
		return;
	}
	if (!ipd || !refcount_inc_not_zero(&ipd->users)) {
		rcu_read_unlock();
		submit_bio_noacct(bio);	/* not interposed (any more) */
		return;
	}
	rcu_read_unlock();

	if (bio->bi_opf & REQ_NOWAIT) {
		bio_wouldblock_error(bio);
	} else if (current->bio_list) {
		if (!interposer_defer(ipd, bio)) {
			interposer_unhold(ipd);
			goto again;
		}
	} else {
		wait_event(ipd->wait, !READ_ONCE(ipd->switching));
		interposer_unhold(ipd);
		goto again;
	}
	interposer_unhold(ipd);
}

void interposer_hook_submit(struct bio *bio, struct interposer_dev *held)
{
	int idx = srcu_read_lock(&interposer_hook_srcu);

	__interposer_hook_submit(bio, held);
	srcu_read_unlock(&interposer_hook_srcu, idx);
}

void interposer_resubmit_work(struct work_struct *work)
{
	struct interposer_dev *ipd = container_of(work, struct interposer_dev, resubmit);
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&ipd->defer_lock);
	bios = ipd->deferred;
	bio_list_init(&ipd->deferred);
	spin_unlock_irq(&ipd->defer_lock);

	while ((bio = bio_list_pop(&bios)))
		interposer_hook_submit(bio, NULL);
}

/*
 * A polled bio (io_uring IOPOLL) is polled on the queue it was submitted to,
 * which no longer completes it: dm targets, and the lower device beneath
 * them, poll nothing, and 6.12 fails a polled bio to such a queue with
 * EOPNOTSUPP.  The hook clears REQ_POLLED; completed by interrupt, the bio
 * still ends the caller's poll, as on any device that does not poll.  The
 * block layer also marks polled bios REQ_NOWAIT (a poller must not sleep for
 * a tag of the poll queue it polls itself): toward a target without nowait
 * support the hook's EAGAIN would come back at every retry (io_uring retries
 * polled I/O on EAGAIN), so past the gate such a bio loses REQ_NOWAIT too.
 * Unpolled, it no longer waits on a poll queue.  Under the gate.
 */
static void interposer_unpoll_nowait(struct interposer_dev *ipd, struct bio *bio)
{
	struct block_device *target;

	smp_rmb();	/* read the target after the gate let us in */
	target = READ_ONCE(ipd->target.bdev);
	if (target && !bdev_nowait(target))
		bio->bi_opf &= ~REQ_NOWAIT;
}

/*
 * The hook's slow path: the trampoline found the bio's bucket in use (an
 * attached or a lower device, or a device that hashed alongside one).
 * Returns where the bio goes instead of submit_bio_noacct() and the second
 * argument it gets there, or ip 0 to let submit_bio_noacct() go on.
 */
struct interposer_divert {
	unsigned long ip;
	unsigned long arg;	/* in %rdx: the trampoline moves it to %rsi */
};

static struct interposer_divert __used notrace interposer_hook_slow(struct bio *bio)
{
	struct interposer_divert to = { };
	struct block_device *bdev = bio->bi_bdev;
	struct interposer_dev *ipd;
	bool polled;

	/*
	 * BIO_REMAPPED: the sector is already in the whole disk's range.  The
	 * lower device sends its bios down that way, and a remainder split off
	 * a bio that went to a partition before the attach must finish the way
	 * it started.
	 */
	if (bio_flagged(bio, BIO_REMAPPED))
		return to;
	rcu_read_lock();
	if (interposer_is_lower_disk(bdev->bd_disk)) {
		/* Remapped here, it skips a pass through the lower disk. */
		interposer_lower_remap(bio);
		goto out;
	}
	ipd = interposer_lookup(bdev);
	if (ipd) {
		polled = bio->bi_opf & REQ_POLLED;
		if (polled)
			bio_clear_polled(bio);
		/*
		 * Pass the gate here, under the RCU that found @ipd, and hand
		 * the reference on as the second argument; NULL sends the bio
		 * the slow way (the gate is closed).
		 */
		if (!percpu_ref_tryget_live_rcu(&ipd->gate))
			ipd = NULL;
		if (ipd && polled)
			interposer_unpoll_nowait(ipd, bio);
		if (ipd && interposer_remap_to_dm(ipd, bio))
			to.ip = (unsigned long)interposer_submit_put;
		else
			to.ip = (unsigned long)interposer_hook_submit;
		to.arg = (unsigned long)ipd;
	}
out:
	rcu_read_unlock();
	return to;
}

/*
 * The hook's entry, which ftrace calls directly from the first instruction
 * of submit_bio_noacct() (a "direct call", as BPF trampolines are called).
 * Most bios find their bucket empty and cost about ten instructions; ftrace's
 * generic trampoline and a callback cost 45 (`cargo xtask bench --profile`).
 * The bucket test is interposer_bucket() by hand, with its constants.
 * Only %rdi (the bio) must survive: submit_bio_noacct() has one argument and
 * the other caller-saved registers are dead at its first instruction.  To
 * divert a bio, the trampoline overwrites its own return address with the
 * new function, whose caller is then submit_bio_noacct()'s caller, as an
 * IPMODIFY callback would.
 */
void interposer_hook_tramp(void);

asm ("	.pushsection .text, \"ax\", @progbits\n"
"	.type interposer_hook_tramp, @function\n"
"interposer_hook_tramp:\n"
	ASM_ENDBR
	CALL_DEPTH_ACCOUNT "\n"
"	movq interposer_bio_bdev(%rdi), %rax\n"
"	movabsq $" __stringify(INTERPOSER_GOLDEN) ", %r11\n"
"	imulq %r11, %rax\n"
"	shrq $interposer_shift, %rax\n"
"	leaq interposer_active(%rip), %r11\n"
"	cmpq $0, (%r11, %rax, 8)\n"
"	jne 1f\n"
	ASM_RET
"1:	pushq %rbp\n"
"	movq %rsp, %rbp\n"
"	pushq %rdi\n"
"	call interposer_hook_slow\n"
"	popq %rdi\n"
"	popq %rbp\n"
"	testq %rax, %rax\n"
"	jz 2f\n"
"	movq %rdx, %rsi\n"
"	movq %rax, (%rsp)\n"
"2:\n"
	ASM_RET
"	.size interposer_hook_tramp, . - interposer_hook_tramp\n"
"	.popsection\n"
);

/* Never called: it hands C's constants to the trampoline's assembler. */
static void __used notrace interposer_hook_tramp_consts(void)
{
	/* A multiplier with the golden ratio's spread of bits. */
	BUILD_BUG_ON(INTERPOSER_GOLDEN != GOLDEN_RATIO_64);
	asm volatile (".set interposer_bio_bdev, %c0\n"
		      ".set interposer_shift, %c1\n"
		      : : "i" (offsetof(struct bio, bi_bdev)),
			  "i" (INTERPOSER_SHIFT));
}

static struct ftrace_ops interposer_ftrace_ops;

/*
 * The guard: `sysctl kernel.ftrace_enabled=0` turns every ftrace call site
 * into a NOP, ours included, and the bios of an attached device would go
 * straight to the disk with nothing anywhere saying so (no copy-on-write for
 * a snapshot, no record in dm-era).  ftrace refuses the sysctl with EBUSY
 * while an ops with FTRACE_OPS_FL_PERMANENT is registered, and refuses to
 * register one while ftrace is off; the direct-call API overwrites its ops'
 * flags (6.1), so a second ops carries the flag.  It traces a function that
 * is never called and is registered exactly while the hook is.
 */
static noinline void interposer_guard_anchor(void)
{
	barrier();
}

static void notrace interposer_guard_func(unsigned long ip,
					  unsigned long parent_ip,
					  struct ftrace_ops *op,
					  struct ftrace_regs *fregs)
{
}

static struct ftrace_ops interposer_guard_ops = {
	.func	= interposer_guard_func,
	.flags	= FTRACE_OPS_FL_PERMANENT,
};

static int interposer_guard_register(void)
{
	unsigned long ip = (unsigned long)interposer_guard_anchor;
	int ret;

	ret = ftrace_set_filter_ip(&interposer_guard_ops, ip, 0, 0);
	if (ret)
		return ret;
	ret = register_ftrace_function(&interposer_guard_ops);
	if (ret) {
		ftrace_set_filter_ip(&interposer_guard_ops, ip, 1, 0);
		/* EBUSY here means ftrace is off; keep it apart from a busy hook. */
		if (ret == -EBUSY) {
			pr_err("function tracing is off (sysctl kernel.ftrace_enabled=0): the hook cannot work\n");
			ret = -EOPNOTSUPP;
		}
	}
	return ret;
}

static void interposer_guard_unregister(void)
{
	unregister_ftrace_function(&interposer_guard_ops);
	ftrace_set_filter_ip(&interposer_guard_ops,
			     (unsigned long)interposer_guard_anchor, 1, 0);
}

/*
 * Unregistering rewrites submit_bio_noacct() while other CPUs run through it
 * (see the top of this file), so the hook outlives the last lower device by
 * this long: a tool that removes and recreates interposers in a loop patches
 * kernel text once, not twice per round.
 */
static unsigned int hook_linger_ms = 10000;
module_param(hook_linger_ms, uint, 0644);
MODULE_PARM_DESC(hook_linger_ms,
		 "keep the bio hook registered this long after the last lower device is removed");

static unsigned int interposer_hook_users;	/* under interposer_mutex */
static bool interposer_hook_registered;		/* under interposer_mutex */
static bool interposer_hook_pinned;		/* under interposer_mutex */

static void interposer_hook_unregister(void)
{
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (!interposer_hook_registered)
		return;
	ret = interposer_unregister_direct(&interposer_ftrace_ops,
					   (unsigned long)interposer_hook_tramp);
	if (ret) {
		/*
		 * submit_bio_noacct() may still call the trampoline: the module
		 * text must never go away.  Stay registered, guard included.
		 */
		if (!interposer_hook_pinned) {
			__module_get(THIS_MODULE);
			interposer_hook_pinned = true;
		}
		pr_crit("cannot unhook submit_bio_noacct (%d): the module stays loaded until reboot\n",
			ret);
		return;
	}
	ftrace_set_filter_ip(&interposer_ftrace_ops,
			     (unsigned long)submit_bio_noacct, 1, 0);
	interposer_guard_unregister();
	interposer_hook_registered = false;
}

static void interposer_hook_idle(struct work_struct *work)
{
	mutex_lock(&interposer_mutex);
	if (!interposer_hook_users)
		interposer_hook_unregister();
	mutex_unlock(&interposer_mutex);
}

static DECLARE_DELAYED_WORK(interposer_hook_idle_work, interposer_hook_idle);

/* Register the hook for the first lower device (unless it is still there). */
int interposer_hook_get(void)
{
	unsigned long ip = (unsigned long)submit_bio_noacct;
	int ret;

	lockdep_assert_held(&interposer_mutex);
	if (interposer_hook_users++)
		return 0;
	/* A pending idle work finds a user under the mutex and does nothing. */
	cancel_delayed_work(&interposer_hook_idle_work);
	if (interposer_hook_registered)
		return 0;
	ret = interposer_guard_register();
	if (!ret) {
		ret = ftrace_set_filter_ip(&interposer_ftrace_ops, ip, 0, 0);
		if (!ret) {
			ret = interposer_register_direct(&interposer_ftrace_ops,
							 (unsigned long)interposer_hook_tramp);
			if (ret)
				ftrace_set_filter_ip(&interposer_ftrace_ops,
						     ip, 1, 0);
		}
		if (ret)
			interposer_guard_unregister();
	}
	if (ret) {
		pr_err("cannot hook submit_bio_noacct: %d\n", ret);
		interposer_hook_users--;
		return ret;
	}
	interposer_hook_registered = true;
	return 0;
}

/* Unregister it some time after the last one. */
void interposer_hook_put(void)
{
	lockdep_assert_held(&interposer_mutex);
	if (--interposer_hook_users)
		return;
	/* Not system_wq: 6.17 deprecated it, and 7.2 warns when it is used. */
	queue_delayed_work(interposer_release_wq, &interposer_hook_idle_work,
			   msecs_to_jiffies(hook_linger_ms));
}

/*
 * Module exit: nothing uses the hook any more.  A task may still be inside a
 * diverted function, asleep or about to run again: after the unregister, an
 * RCU-tasks grace period sees every task that entered the trampoline either
 * out of it or past srcu_read_lock() (only a preempted task can be between
 * the two), and the SRCU grace period waits for those inside.  The caller's
 * last RCU-tasks grace period covers the instructions after
 * srcu_read_unlock().
 */
void interposer_hook_exit(void)
{
	cancel_delayed_work_sync(&interposer_hook_idle_work);
	mutex_lock(&interposer_mutex);
	interposer_hook_unregister();
	mutex_unlock(&interposer_mutex);
	synchronize_rcu_tasks();
	synchronize_srcu(&interposer_hook_srcu);
}
