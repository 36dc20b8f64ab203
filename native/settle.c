/*
 * settle.c - clean verdicts on files changed within the freshness window,
 * remembered once the window has passed and the bytes are proven the same.
 *
 * A file scanned right after it was written (the scan after a close-write,
 * or an open just after one) cannot be cached clean at once: before Linux
 * 6.13 a rewrite within the same clock tick can keep its ctime
 * (remember.c). Such a verdict waits here, with a duplicate of the job's
 * fd and the SHA-256 of the bytes the rules saw, until ctime + window.
 * The settle thread then checks, in this order: the file's stat now, and
 * its window passed since the ctime it has now (a rename or chmod since
 * the scan gave it a new one: fine, the bytes are compared); nobody holds
 * it open for writing (a read lease is granted); its bytes, read again
 * through the fd, have the scanned size and SHA-256. A reader then stores it, in the verdict cache, never as an
 * ignore mark, if the rules are the same and no close-write of it came
 * since the check (its write epoch).
 *
 * Why nothing but the scanned bytes can be answered by it (no kernel
 * event needs to have been seen, so writers this group never hears of,
 * through another mount, an overlay or lost events, are covered too):
 * every byte written before the lease check was written by a writer that
 * has closed (else the lease fails), so it is in the file when it is read
 * again, and the hash compares it; a write after the stat comes a whole
 * window after the ctime it read, so it gets a new ctime and the key (from
 * that stat) no longer matches; a shared writable mapping counts as a writer, and a new one
 * faults on its first write, which sets the ctime, except on tmpfs, ramfs
 * and hugetlbfs, where only a file only root can write is remembered, and
 * only while nobody writes it (remember_clean_value). Only local filesystems
 * of the types listed for ignore marks (a remote server's ctime is not on
 * our clock), and files up to SETTLE_MAX_BYTES.
 *
 * Who does what: the settle thread checks (it reads files, which must
 * never delay a reader or the deadline watcher) at nice SETTLE_NICE, so a
 * burst of writes pays for it mostly with CPU time nobody wants. It takes
 * none of our locks (not even the settings': the window travels with the
 * entry), so a starved low-priority thread never holds one that another
 * waits on: the workers hand it entries through one ring, it hands what
 * passed to the readers through another, and a reader stores them at its
 * next read, before handling those events (a check that passed stays true
 * until the store: a later write gets a new ctime). Not SCHED_IDLE: it
 * would starve for as long as any task is runnable.
 *
 * Owns both rings and the fds of the waiting entries. Calls only
 * remember.c and settings.c. At most cfg.settle_entries wait (the daemon
 * gives it the fds its limit has room for, up to 4096): a burst beyond
 * that is scanned again at its next open, as without this file; so is
 * everything while the CPUs are never idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fan.h"

/* CLOCK_REALTIME in nanoseconds (ctime is on that clock). */
static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Allocate both rings (cfg.settle_entries each) and the wake-up fd. */
int settle_init(struct vg_fan *fan)
{
	uint32_t n = fan->cfg.settle_entries;

	fan->settle_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fan->settle_wake < 0)
		return -errno;
	if (!n)
		return 0;
	fan->incoming = calloc(n, sizeof(*fan->incoming));
	fan->checked = calloc(n, sizeof(*fan->checked));
	return fan->incoming && fan->checked ? 0 : -ENOMEM;
}

/* Wake the settle thread (from its poll). */
static void wake(struct vg_fan *fan)
{
	uint64_t one = 1;

	if (write(fan->settle_wake, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full, it is awake anyway */
	}
}

/* Fill @e from job @s: our dup of its fd, its state, and when it is due. */
static int fill(struct vg_fan *fan, struct settling *e, const struct slot *s,
		const uint8_t *sha256, uint64_t generation)
{
	struct settings *set = settings_get(fan);
	uint64_t fresh_ns = set->fresh_ns;
	uint64_t due = fan_ctime_end_ns(s->job.ctime_sec, s->job.ctime_nsec) +
		       fresh_ns + SETTLE_MARGIN_NS;
	uint64_t now = wall_ns(), mono = fan_now_ns();
	int local = settings_local_fs(set, s->job.fd);

	settings_put(set);
	if (!local || s->job.size > SETTLE_MAX_BYTES)
		return -EINVAL;
	e->fd = fcntl(s->job.fd, F_DUPFD_CLOEXEC, 0);
	if (e->fd < 0)
		return -errno;
	e->size = s->job.size;
	e->group = s->group;
	e->fresh_ns = fresh_ns;
	/* at most a second and a window away: a ctime in the future (the
	 * clock stepped back) fails the check then */
	e->due_ns = mono + (due > now ? due - now : 0);
	if (e->due_ns > mono + SETTLE_MAX_WAIT_NS)
		e->due_ns = mono + SETTLE_MAX_WAIT_NS;
	e->generation = generation;
	memcpy(e->sha256, sha256, sizeof(e->sha256));
	return 0;
}

/*
 * Keep the clean verdict of job @s, whose bytes hashed to @sha256, to be
 * checked at ctime + the freshness window under @generation. Nothing is
 * kept for a file too big, on a filesystem not listed, or with the ring
 * full; the file is then scanned again at its next open. defer_lock is
 * only ever held here, by workers.
 */
void settle_defer(struct vg_fan *fan, const struct slot *s,
		  const uint8_t *sha256, uint64_t generation)
{
	uint64_t n = fan->cfg.settle_entries, head, tail;

	if (!n || __atomic_load_n(&fan->settle_stopping, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&fan->defer_lock);
	head = __atomic_load_n(&fan->in_head, __ATOMIC_ACQUIRE);
	tail = fan->in_tail;
	if (tail - head < n &&
	    !fill(fan, &fan->incoming[tail % n], s, sha256, generation)) {
		/* wake the thread if it may have seen the ring empty: it
		 * stores in_head, then loads in_tail, both seq_cst; so either
		 * it sees this entry or this load sees its head (the head read
		 * above is too old: it may have emptied the ring since) */
		__atomic_store_n(&fan->in_tail, tail + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&fan->in_head, __ATOMIC_SEQ_CST) == tail)
			wake(fan);
	}
	pthread_mutex_unlock(&fan->defer_lock);
}

/*
 * Check entry @e and hand it to the readers if it holds; closes its fd.
 * The write epoch the store compares is the one the check read, not the
 * job's: the check proves the bytes whatever was written since (epochs
 * are shared by hash, and a whole window of other files' close-writes
 * would make false misses); a close-write from then until the store
 * still stops it.
 */
static void settle_one(struct vg_fan *fan, const struct settling *e)
{
	uint64_t n = fan->cfg.settle_entries, tail = fan->out_tail;
	uint32_t epoch;
	struct stat st;
	int value = -1;

	if (remember_verify(fan, e, &st, &epoch) &&
	    (value = remember_clean_value(fan, e->group, e->fd, &st)) >= 0 &&
	    tail - __atomic_load_n(&fan->out_head, __ATOMIC_ACQUIRE) < n) {
		struct verified *v = &fan->checked[tail % n];

		v->st = st;
		v->epoch = epoch;
		v->value = value;
		v->generation = e->generation;
		__atomic_store_n(&fan->out_tail, tail + 1, __ATOMIC_RELEASE);
		fan_count(&fan->stats.settled);
	}
	close(e->fd);
}

/*
 * How long the settle thread may sleep, in ms for poll: until the oldest
 * entry is due, but at least SETTLE_BATCH_NS (a burst of writes must not
 * cost a thread wake-up per file); -1 with nothing waiting. Entries are
 * checked in the order they came, which is near the order they are due.
 */
static int sleep_ms(struct vg_fan *fan, uint64_t now)
{
	uint64_t head = fan->in_head, wait;

	if (head == __atomic_load_n(&fan->in_tail, __ATOMIC_SEQ_CST))
		return -1;
	wait = fan->incoming[head % fan->cfg.settle_entries].due_ns;
	wait = wait > now ? wait - now : 0;
	if (wait < SETTLE_BATCH_NS)
		wait = SETTLE_BATCH_NS;
	return (int)(wait / 1000000ull);
}

/* Check every entry due by now, oldest first; 1 if any was. */
static int check_due(struct vg_fan *fan)
{
	uint64_t n = fan->cfg.settle_entries, head = fan->in_head;
	uint64_t now = fan_now_ns();
	int any = 0;

	while (head != __atomic_load_n(&fan->in_tail, __ATOMIC_ACQUIRE) &&
	       fan->incoming[head % n].due_ns <= now &&
	       !__atomic_load_n(&fan->settle_stopping, __ATOMIC_RELAXED)) {
		settle_one(fan, &fan->incoming[head % n]);
		__atomic_store_n(&fan->in_head, ++head, __ATOMIC_SEQ_CST);
		any = 1;
	}
	return any;
}

/*
 * The settle thread: checks what is due, then sleeps in poll on its
 * eventfd until the oldest entry is due or a worker adds to an empty
 * ring. At nice SETTLE_NICE (see the top of this file).
 */
void *settle_main(void *arg)
{
	struct vg_fan *fan = arg;
	struct pollfd pfd = { .fd = fan->settle_wake, .events = POLLIN };
	uint64_t drained;

	pthread_setname_np(pthread_self(), "vigild-settle");
	setpriority(PRIO_PROCESS, (id_t)gettid(), SETTLE_NICE);
	while (!__atomic_load_n(&fan->settle_stopping, __ATOMIC_RELAXED)) {
		if (fan->cfg.settle_entries && check_due(fan))
			continue;
		if (poll(&pfd, 1, fan->cfg.settle_entries ?
				     sleep_ms(fan, fan_now_ns()) : -1) > 0 &&
		    read(fan->settle_wake, &drained, sizeof(drained)) < 0) {
			/* EAGAIN: another wake-up took it */
		}
	}
	return NULL;
}

/*
 * In a reader, before it handles what it read: store every verdict the
 * settle thread checked (at most cfg.settle_entries, a fraction of a
 * microsecond each), so that the opens just read find them. Never waits:
 * with another reader storing, next time.
 */
void settle_store(struct vg_fan *fan)
{
	uint64_t n = fan->cfg.settle_entries, head, tail;

	if (!n || __atomic_load_n(&fan->out_head, __ATOMIC_RELAXED) ==
			  __atomic_load_n(&fan->out_tail, __ATOMIC_ACQUIRE) ||
	    pthread_mutex_trylock(&fan->store_lock))
		return;
	head = fan->out_head;
	tail = __atomic_load_n(&fan->out_tail, __ATOMIC_ACQUIRE);
	for (; head != tail; head++) {
		const struct verified *v = &fan->checked[head % n];

		remember_store_settled(fan, &v->st, v->epoch, v->generation,
				       v->value);
	}
	__atomic_store_n(&fan->out_head, head, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fan->store_lock);
}

/* Stop the settle thread (it finishes the entry in hand); idempotent. */
void settle_stop(struct vg_fan *fan)
{
	__atomic_store_n(&fan->settle_stopping, 1, __ATOMIC_RELAXED);
	if (fan->settle_wake >= 0)
		wake(fan);
}

/* Close the fds of the entries still waiting and free the rings (after
 * the thread was joined). */
void settle_free(struct vg_fan *fan)
{
	uint64_t n = fan->cfg.settle_entries;

	for (uint64_t i = fan->in_head; fan->incoming && i != fan->in_tail; i++)
		close(fan->incoming[i % n].fd);
	fan->in_head = fan->in_tail = 0;
	free(fan->incoming);
	free(fan->checked);
	fan->incoming = NULL;
	fan->checked = NULL;
	if (fan->settle_wake >= 0)
		close(fan->settle_wake);
	fan->settle_wake = -1;
}
