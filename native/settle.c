/*
 * settle.c - clean verdicts on files changed within the freshness window,
 * remembered once the window has passed and the bytes are proven the same.
 *
 * A file scanned right after it was written (the scan after a close-write,
 * or an open just after one) cannot be cached clean at once: before Linux
 * 6.13 a rewrite within the same clock tick can keep its ctime
 * (remember.c). Such a verdict waits here, with a duplicate of the job's
 * fd and the SHA-256 of the bytes the rules saw, until ctime + window.
 * The settle thread then checks, in this order: the file still has the
 * ctime and size it was scanned with; nobody holds it open for writing (a
 * read lease is granted); its bytes, read again through the fd, have the
 * same SHA-256; the rules and the write epoch are the same. Only then is
 * the verdict stored, in the verdict cache, never as an ignore mark.
 *
 * Why nothing but the scanned bytes can be answered by it (no kernel
 * event needs to have been seen, so writers this group never hears of,
 * through another mount, an overlay or lost events, are covered too):
 * every byte written before the lease check was written by a writer that
 * has closed (else the lease fails), so it is in the file when it is read
 * again, and the hash compares it; a write after the check comes a whole
 * window after the ctime, so it gets a new ctime and the key no longer
 * matches; a shared writable mapping counts as a writer, and a new one
 * faults on its first write, which sets the ctime. Only local filesystems
 * of the types listed for ignore marks (a remote server's ctime is not on
 * our clock), and files up to SETTLE_MAX_BYTES.
 *
 * Who does what: the settle thread checks (it reads files, which must
 * never delay a reader or the deadline watcher) and runs as SCHED_IDLE,
 * so a burst of writes pays for it only with CPU time nobody wants; the
 * readers store what it checked, at their next read (before handling
 * those events), so no lock another thread waits on is ever held by an
 * idle-class thread: settle_lock is only ever try-locked by the workers
 * and readers, and cache_lock is taken by the readers alone here. A check
 * that passed stays true until the store: a later write gets a new ctime.
 *
 * Owns the waiting entries, their fds and the checked ones, under
 * settle_lock (held with no other lock). Calls only remember.c and
 * settings.c. At most SETTLE_MAX wait: a burst beyond that, or one that
 * meets the lock taken, is scanned again at its next open, as without
 * this file; so is everything while the CPUs are never idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
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
 * Keep the clean verdict of job @s, whose bytes hashed to @sha256, to be
 * stored at ctime + the freshness window under @generation. Nothing is
 * kept for a file too big, on a filesystem not listed, or beyond
 * SETTLE_MAX; the file is then scanned again at its next open.
 */
void settle_defer(struct vg_fan *fan, const struct slot *s,
		  const uint8_t *sha256, uint64_t generation)
{
	struct settings *set = settings_get(fan);
	uint64_t due = fan_ctime_end_ns(s->job.ctime_sec, s->job.ctime_nsec) +
		       set->fresh_ns + SETTLE_MARGIN_NS;
	int local = settings_local_fs(set, s->job.fd);
	uint64_t now = wall_ns();
	struct settling *e;
	int fd;

	settings_put(set);
	if (!local || s->job.size > SETTLE_MAX_BYTES ||
	    pthread_mutex_trylock(&fan->settle_lock))
		return;
	if (fan->settle_stopping || fan->n_settling >= SETTLE_MAX) {
		pthread_mutex_unlock(&fan->settle_lock);
		return;
	}
	fd = fcntl(s->job.fd, F_DUPFD_CLOEXEC, 0);
	if (fd >= 0) {
		e = &fan->settling[fan->n_settling++];
		e->slot = *s;
		e->slot.job.fd = fd;
		/* at most a second and a window away: a ctime in the
		 * future (the clock stepped back) fails the check then */
		e->due_ns = fan_now_ns() + (due > now ? due - now : 0);
		if (e->due_ns > fan_now_ns() + SETTLE_MAX_WAIT_NS)
			e->due_ns = fan_now_ns() + SETTLE_MAX_WAIT_NS;
		e->generation = generation;
		memcpy(e->sha256, sha256, sizeof(e->sha256));
		if (fan->n_settling == 1)
			pthread_cond_signal(&fan->settle_cond);
	}
	pthread_mutex_unlock(&fan->settle_lock);
}

/* The index of an entry due by @now, or -1; and the earliest due time in
 * @next (0: none waiting). Caller holds settle_lock. */
static int due_entry(const struct vg_fan *fan, uint64_t now, uint64_t *next)
{
	*next = 0;
	for (uint32_t i = 0; i < fan->n_settling; i++) {
		uint64_t due = fan->settling[i].due_ns;

		if (due <= now)
			return (int)i;
		if (!*next || due < *next)
			*next = due;
	}
	return -1;
}

/* Check one entry taken off the list and hand it to the readers if it
 * holds; closes its fd. */
static void settle_one(struct vg_fan *fan, struct settling *e)
{
	struct stat st;

	if (remember_verify(fan, &e->slot, e->sha256, &st)) {
		pthread_mutex_lock(&fan->settle_lock);
		if (fan->n_verified < SETTLE_MAX) {
			struct verified *v = &fan->verified[fan->n_verified];

			v->st = st;
			v->epoch = e->slot.epoch;
			v->generation = e->generation;
			__atomic_store_n(&fan->n_verified, fan->n_verified + 1,
					 __ATOMIC_RELEASE);
			fan_count(&fan->stats.settled);
		}
		pthread_mutex_unlock(&fan->settle_lock);
	}
	close(e->slot.job.fd);
}

/*
 * The settle thread: sleeps until the earliest entry is due (batching
 * wake-ups), then checks every due entry, outside the lock. SCHED_IDLE:
 * it runs only on a CPU nothing else wants (see the top of this file).
 */
void *settle_main(void *arg)
{
	static const struct sched_param idle = { .sched_priority = 0 };
	struct vg_fan *fan = arg;

	pthread_setname_np(pthread_self(), "vigild-settle");
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	pthread_mutex_lock(&fan->settle_lock);
	while (!fan->settle_stopping) {
		uint64_t now = fan_now_ns(), next;
		int i = due_entry(fan, now, &next);

		if (i >= 0) {
			struct settling e = fan->settling[i];

			fan->settling[i] = fan->settling[--fan->n_settling];
			pthread_mutex_unlock(&fan->settle_lock);
			settle_one(fan, &e);
			pthread_mutex_lock(&fan->settle_lock);
		} else if (next) {
			/* wake for a batch, not for each entry: a burst of
			 * writes must not cost a thread wake-up per file */
			uint64_t wait = next - now;
			struct timespec until = fan_after_ns(
				wait > SETTLE_BATCH_NS ? wait : SETTLE_BATCH_NS);

			pthread_cond_timedwait(&fan->settle_cond,
					       &fan->settle_lock, &until);
		} else {
			pthread_cond_wait(&fan->settle_cond, &fan->settle_lock);
		}
	}
	pthread_mutex_unlock(&fan->settle_lock);
	return NULL;
}

/*
 * In a reader, before it handles what it read: store the verdicts the
 * settle thread checked. Never waits: with the lock taken, next time.
 */
void settle_store(struct vg_fan *fan)
{
	struct verified got[SETTLE_MAX];
	uint32_t n;

	if (!__atomic_load_n(&fan->n_verified, __ATOMIC_ACQUIRE) ||
	    pthread_mutex_trylock(&fan->settle_lock))
		return;
	n = fan->n_verified;
	memcpy(got, fan->verified, n * sizeof(got[0]));
	__atomic_store_n(&fan->n_verified, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&fan->settle_lock);
	for (uint32_t i = 0; i < n; i++)
		remember_store_settled(fan, &got[i].st, got[i].epoch,
				       got[i].generation);
}

/* Stop the settle thread (it finishes the entry in hand); idempotent. */
void settle_stop(struct vg_fan *fan)
{
	pthread_mutex_lock(&fan->settle_lock);
	fan->settle_stopping = 1;
	pthread_cond_broadcast(&fan->settle_cond);
	pthread_mutex_unlock(&fan->settle_lock);
}

/* Close every waiting entry's fd (after the thread was joined). */
void settle_free(struct vg_fan *fan)
{
	while (fan->n_settling)
		close(fan->settling[--fan->n_settling].slot.job.fd);
}
