/*
 * settle.c - clean verdicts on files changed within the freshness window,
 * remembered once the window has passed.
 *
 * A file scanned right after it was written (the scan after a close-write,
 * or an open just after one) cannot be cached clean at once: before Linux
 * 6.13 a rewrite within the same clock tick can keep its ctime
 * (remember.c). Such a verdict waits here, with a duplicate of the job's
 * fd, until ctime + fresh_window; the deadline watcher then puts it in the
 * verdict cache if, at that moment, the file still has the ctime and size
 * it was scanned with, nobody holds it open for writing, no close-write
 * of it was read since the job was queued and the rules are the same.
 *
 * Why that is enough (the argument is in docs/architecture.md): a write
 * after the check comes a whole window after the ctime, so it changes
 * the ctime; a writer still open fails the check; a writer closed before
 * it queued a close-write the reader handles before any later open, and
 * that invalidation deletes this very key when the ctime was kept. An
 * ignore mark would skip that ordering (the next open raises no event
 * while the close-write still waits), so a settled verdict never gets one.
 *
 * Owns the settling entries and their fds, under q_lock. Calls only
 * remember.c. At most SETTLE_MAX wait: a burst beyond that is scanned again
 * at its next open, as without this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "fan.h"

/* CLOCK_REALTIME in nanoseconds (ctime is on that clock). */
static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Keep the clean verdict of job @s (its window not passed yet) to be
 * remembered at ctime + @fresh_ns, under @generation. Caller holds q_lock.
 * 0 when kept; -ENOSPC when SETTLE_MAX wait already; -errno of the dup.
 */
int settle_defer(struct vg_fan *fan, const struct slot *s, uint64_t fresh_ns,
		 uint64_t generation)
{
	uint64_t ctime_ns = (uint64_t)s->job.ctime_sec * 1000000000ull +
			    (uint64_t)s->job.ctime_nsec;
	uint64_t now = wall_ns(), wait = 0;
	struct settling *e;
	int fd;

	if (fan->n_settling >= SETTLE_MAX)
		return -ENOSPC;
	fd = fcntl(s->job.fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ctime_ns + fresh_ns > now)
		wait = ctime_ns + fresh_ns - now;
	e = &fan->settling[fan->n_settling++];
	e->slot = *s;
	e->slot.job.fd = fd;
	e->due_ns = fan_now_ns() + wait + SETTLE_MARGIN_NS;
	e->generation = generation;
	return 0;
}

/* The monotonic time the next entry is due, or 0 with none. Caller holds
 * q_lock. */
uint64_t settle_due(const struct vg_fan *fan)
{
	uint64_t due = 0;

	for (uint32_t i = 0; i < fan->n_settling; i++)
		if (!due || fan->settling[i].due_ns < due)
			due = fan->settling[i].due_ns;
	return due;
}

/*
 * Remember every entry due by @now and close its fd. Caller holds q_lock,
 * which is let go around each remember (q_lock never nests cache_lock).
 */
void settle_run(struct vg_fan *fan, uint64_t now)
{
	uint32_t i = 0;

	while (i < fan->n_settling) {
		struct settling e = fan->settling[i];

		if (e.due_ns > now) {
			i++;
			continue;
		}
		fan->settling[i] = fan->settling[--fan->n_settling];
		pthread_mutex_unlock(&fan->q_lock);
		e.slot.queued_rt_ns = wall_ns();	/* the state is checked now */
		if (remember_verdict(fan, &e.slot, VG_CACHE_VERDICT,
				     e.generation) > 0)
			fan_count(&fan->stats.settled);
		close(e.slot.job.fd);
		pthread_mutex_lock(&fan->q_lock);
	}
}

/* Close every waiting entry's fd (at free). */
void settle_free(struct vg_fan *fan)
{
	while (fan->n_settling)
		close(fan->settling[--fan->n_settling].slot.job.fd);
}
