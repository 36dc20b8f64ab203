/*
 * jobs.c - the bounded job queue between the reader and the workers, and
 * the deadline watcher.
 *
 * Owns, under q_lock: the job slots, the two FIFOs, the deadline list,
 * the in-flight counts and the stopping flag. Must not touch the verdict
 * cache, the epochs or the group fd itself: it asks remember.c to cache a
 * verdict and respond.c to write an answer, and neither calls back here.
 *
 * The slots: a fixed array of cfg.queue_size, allocated once, so
 * a flood of opens costs answers by policy, never memory. A slot is taken
 * from enqueue to vg_fan_done and holds the event fd all that time.
 * Permission jobs are handed out before close-write jobs, and close-write
 * jobs may hold at most close_write_share percent of the slots (half by
 * default): a burst of writes (tar, rsync)
 * drops scans after writes (the files are scanned at their next open:
 * their verdicts were invalidated) rather than leave no room for opens.
 *
 * Lanes: a job for a file over large_bytes is large, and at most
 * large_lanes large jobs are scanned at once (the daemon sets one less
 * than its workers). Big files therefore never hold every worker: an
 * opener of a small file is answered by a scan, not by the deadline,
 * however many big files an attacker opens. A large job waiting for its
 * lane still has its deadline.
 *
 * Exactly once: a permission job's event is answered by whoever sets
 * slot->answered under q_lock first, the worker (vg_fan_answer) or the
 * watcher at the deadline. Every unanswered permission job sits on the
 * deadline list in deadline order (enqueue order while the deadline
 * setting does not change), so the watcher only ever looks at the head.
 *
 * vg_fan_answer caches the verdict (remember.c: unless the file or the
 * rules changed meanwhile). A deny is cached before it is written, so
 * whatever the opener does next (bash opens a script whose exec was
 * denied, a hard link of the file elsewhere) already meets the cache and
 * the detected set. An allow is written first and cached after (its
 * fstat, lease, fstatfs and mark cost the opener nothing), but only while
 * the freshness window is on: remember.c then caches a clean verdict
 * only for a file whose ctime is older than the window at enqueue, so a
 * write the answered opener makes before the cache entry lands changes
 * the ctime the entry is keyed on, even on a kernel with coarse
 * timestamps. With the window off, an allow is cached first too.
 * After the answer a worker may still quarantine through the fd;
 * vg_fan_done then closes the fd and frees the slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fan.h"

/* Append @s to @q. */
static void fifo_push(struct fifo *q, struct slot *s)
{
	s->q_next = NULL;
	if (q->tail)
		q->tail->q_next = s;
	else
		q->head = s;
	q->tail = s;
	q->len++;
}

/* Take the oldest slot off @q; NULL when empty. */
static struct slot *fifo_pop(struct fifo *q)
{
	struct slot *s = q->head;

	if (s) {
		q->head = s->q_next;
		if (!q->head)
			q->tail = NULL;
		q->len--;
	}
	return s;
}

/* Insert @s by deadline, from the tail: at the tail unless the deadline
 * setting just shrank. */
static void dl_insert(struct vg_fan *fan, struct slot *s)
{
	struct slot *after = fan->dl_tail;

	while (after && after->deadline_ns > s->deadline_ns)
		after = after->dl_prev;
	s->dl_prev = after;
	s->dl_next = after ? after->dl_next : fan->dl_head;
	if (s->dl_next)
		s->dl_next->dl_prev = s;
	else
		fan->dl_tail = s;
	if (after)
		after->dl_next = s;
	else
		fan->dl_head = s;
}

/* Take @s off the deadline list, if it is on it. */
static void dl_remove(struct vg_fan *fan, struct slot *s)
{
	if (s->dl_prev)
		s->dl_prev->dl_next = s->dl_next;
	else if (fan->dl_head == s)
		fan->dl_head = s->dl_next;
	else
		return;		/* not on the list */
	if (s->dl_next)
		s->dl_next->dl_prev = s->dl_prev;
	else
		fan->dl_tail = s->dl_prev;
	s->dl_prev = s->dl_next = NULL;
}

/* Allocate the slots and chain them into the free list. */
int jobs_init(struct vg_fan *fan)
{
	uint32_t n = fan->cfg.queue_size;

	fan->slots = calloc(n, sizeof(*fan->slots));
	if (!fan->slots)
		return -ENOMEM;
	for (uint32_t i = n; i-- > 0;) {
		fan->slots[i].q_next = fan->free_list;
		fan->free_list = &fan->slots[i];
	}
	return 0;
}

/* Close the fds still held by queued jobs and free the slots. */
void jobs_free(struct vg_fan *fan)
{
	if (!fan->slots)
		return;
	for (uint32_t i = 0; i < fan->cfg.queue_size; i++)
		if (fan->slots[i].state != SLOT_FREE)
			close(fan->slots[i].job.fd);
	free(fan->slots);
	fan->slots = NULL;
}

/* 1 for a permission job (an opener waits for its answer). */
static int is_perm(const struct slot *s)
{
	return s->job.kind != VG_EV_CLOSE_WRITE;
}

/* CLOCK_REALTIME in nanoseconds (ctime is on that clock). */
static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The queue of @s: permission before close-write, small before large. */
static struct fifo *lane_of(struct vg_fan *fan, const struct slot *s)
{
	return &fan->queues[(is_perm(s) ? 0 : 2) + !!s->large];
}

/*
 * Take the next job a worker may scan now, or NULL: permission jobs
 * first, a large one only while a large lane is free. Caller holds q_lock.
 */
static struct slot *take(struct vg_fan *fan)
{
	struct settings *set = settings_get(fan);
	int lane_free = !set->large_lanes ||
			fan->large_taken < set->large_lanes;
	struct slot *s = NULL;

	settings_put(set);
	for (int i = 0; i < 4 && !s; i++)
		if (!(i & 1) || lane_free)
			s = fifo_pop(&fan->queues[i]);
	if (s && s->large)
		fan->large_taken++;
	return s;
}

/* 1 when a job of @kind finds no room; caller holds q_lock. */
static int no_room(struct vg_fan *fan, const struct settings *set,
		   uint32_t kind)
{
	uint64_t share = (uint64_t)fan->cfg.queue_size * set->close_write_share;

	return fan->stopping || !fan->free_list ||
	       (kind == VG_EV_CLOSE_WRITE &&
		fan->notify_in_flight >= share / 100);
}

/*
 * Queue @job, read from @group (the reader keeps nothing of it; every
 * answer goes to @group); -ENOSPC when full. The
 * deadline is taken from the settings in force under q_lock, the lock the
 * watcher reads its period under: vg_fan_configure wakes the watcher
 * after the swap, so no job can be due before the watcher wakes.
 */
int jobs_enqueue(struct vg_fan *fan, const struct vg_job *job, uint32_t group,
		 uint32_t epoch)
{
	struct settings *set;
	struct slot *s;

	pthread_mutex_lock(&fan->q_lock);
	set = settings_get(fan);
	if (no_room(fan, set, job->kind)) {
		pthread_mutex_unlock(&fan->q_lock);
		settings_put(set);
		return -ENOSPC;
	}
	s = fan->free_list;
	fan->free_list = s->q_next;
	s->job = *job;
	s->job.id = (uint64_t)(s - fan->slots) << 32 | s->seq;
	s->job.generation = set->generation;
	s->group = group;
	s->state = SLOT_QUEUED;
	s->answered = 0;
	s->expired = 0;
	s->response = VG_ALLOW;
	s->on_deadline = set->on_deadline[policy_of(job->kind)];
	s->large = set->large_lanes && job->size > set->large_bytes;
	s->epoch = epoch;
	s->writers_clear = 0;	/* vg_fan_next finds out */
	s->deadline_ns = job->queued_ns + set->deadline_ns;
	s->queued_rt_ns = realtime_ns();
	fan->in_flight++;
	if (!is_perm(s))
		fan->notify_in_flight++;
	fifo_push(lane_of(fan, s), s);
	if (is_perm(s))
		dl_insert(fan, s);
	/* no wake-up (see watcher_main), unless a shrunk deadline put this
	 * job before one the watcher is already sleeping for */
	if (is_perm(s) && fan->dl_head == s && s->dl_next)
		pthread_cond_signal(&fan->dl_cond);
	pthread_cond_signal(&fan->q_cond);
	pthread_mutex_unlock(&fan->q_lock);
	settings_put(set);
	fan_count(&fan->stats.queued);
	return 0;
}

/*
 * Wait up to @timeout_ms for a job and copy it to @job. Returns 1 with a
 * job, 0 on timeout, -ESHUTDOWN once stopping. Permission jobs first;
 * large ones only into a free lane (take).
 */
int vg_fan_next(struct vg_fan *fan, struct vg_job *job, int timeout_ms)
{
	struct timespec until = fan_after_ns((uint64_t)timeout_ms * 1000000ull);
	struct slot *s = NULL;
	int ret = 0;

	pthread_mutex_lock(&fan->q_lock);
	while (!fan->stopping && !(s = take(fan)) && !ret)
		ret = pthread_cond_timedwait(&fan->q_cond, &fan->q_lock, &until);
	if (fan->stopping) {
		if (s && s->large)	/* never handed out: back in the lane */
			fan->large_taken--;
		pthread_mutex_unlock(&fan->q_lock);
		return -ESHUTDOWN;
	}
	if (s) {
		s->state = SLOT_TAKEN;
		*job = s->job;
	}
	pthread_mutex_unlock(&fan->q_lock);
	/* before the worker reads a byte (remember.c); the slot is ours now */
	if (s)
		s->writers_clear = remember_no_writers(job->fd);
	return s != NULL;
}

/* The taken slot named by @id, or NULL. Caller holds q_lock. */
static struct slot *taken(struct vg_fan *fan, uint64_t id)
{
	uint64_t i = id >> 32;
	struct slot *s;

	if (i >= fan->cfg.queue_size)
		return NULL;
	s = &fan->slots[i];
	if (s->state != SLOT_TAKEN || s->seq != (uint32_t)id)
		return NULL;
	return s;
}

/* 1 when @response may be written before it is cached: an allow while
 * the freshness window is on. */
static int answer_first(struct vg_fan *fan, int response)
{
	struct settings *set;
	int yes;

	if (response != VG_ALLOW)
		return 0;
	set = settings_get(fan);
	yes = set->fresh_ns > 0;
	settings_put(set);
	return yes;
}

/* Write @response for the permission job @s (its event fd @fd); 0 when
 * its group had closed (a stop: the kernel allowed it), else 1. */
static int answer_job(struct vg_fan *fan, const struct slot *s, int fd,
		      int response)
{
	int closed = respond(fan, s->group, fd, response) == 0;

	respond_latency(fan, s->job.queued_ns);
	return !closed;
}

/*
 * Answer job @id with @response and cache it as @cache (VG_CACHE_* bits)
 * if the rules are still @generation: before the answer, or after it for
 * an allow while the freshness window is on (see the top of this file).
 * A clean verdict on a file changed within that window is kept for
 * settle.c when @sha256 (of all the bytes scanned, the whole file) is
 * given; NULL: not.
 * Returns 0 when this call answered (or, for a close-write job, recorded
 * the verdict), 1 when the deadline watcher had already answered by
 * policy (the result is late, also when stopping since), -ESHUTDOWN when
 * stopping otherwise (the kernel allowed it as the group closed), -ESTALE
 * for a bad id.
 */
int vg_fan_answer(struct vg_fan *fan, uint64_t id, int response, int cache,
		  uint64_t generation, const uint8_t *sha256)
{
	struct slot *s;
	int fd, late, write_now;

	pthread_mutex_lock(&fan->q_lock);
	s = taken(fan, id);
	if (!s || fan->stopping) {
		/* stopping: the deadline's answer if it gave one, else the
		 * kernel's allow when the group closed */
		late = s && s->expired;
		pthread_mutex_unlock(&fan->q_lock);
		return !s ? -ESTALE : late ? 1 : -ESHUTDOWN;
	}
	late = s->answered;
	s->answered = 1;
	s->response = response;	/* the verdict, also when the deadline answered */
	dl_remove(fan, s);
	fd = s->job.fd;
	pthread_mutex_unlock(&fan->q_lock);
	/* the slot stays taken (ours) until vg_fan_done */
	write_now = is_perm(s) && !late && answer_first(fan, response);
	if (write_now && !answer_job(fan, s, fd, response))
		return -ESHUTDOWN;	/* the group closed first: a stop */
	if ((cache & VG_CACHE_VERDICT) &&
	    !__atomic_load_n(&fan->stopping, __ATOMIC_RELAXED) &&
	    remember_verdict(fan, s, cache, generation) == -EAGAIN && sha256)
		settle_defer(fan, s, sha256, generation);
	if (late) {
		fan_count(&fan->stats.late_results);
		return s->expired ? 1 : -ESHUTDOWN;	/* not written: closed */
	}
	if (is_perm(s) && !write_now && !answer_job(fan, s, fd, response))
		return -ESHUTDOWN;
	return 0;
}

/*
 * Release job @id: close its fd, free its slot. A permission job not yet
 * answered is answered by the deadline policy first (a worker that
 * skipped vg_fan_answer must not leave an opener waiting).
 */
int vg_fan_done(struct vg_fan *fan, uint64_t id)
{
	struct slot *s;
	int unanswered;

	pthread_mutex_lock(&fan->q_lock);
	s = taken(fan, id);
	if (!s) {
		pthread_mutex_unlock(&fan->q_lock);
		return -ESTALE;
	}
	unanswered = is_perm(s) && !s->answered && !fan->stopping;
	pthread_mutex_unlock(&fan->q_lock);
	if (unanswered)
		vg_fan_answer(fan, id, s->on_deadline, 0, 0, NULL);
	close(s->job.fd);
	pthread_mutex_lock(&fan->q_lock);
	s->state = SLOT_FREE;
	s->seq++;
	s->q_next = fan->free_list;
	fan->free_list = s;
	fan->in_flight--;
	if (!is_perm(s))
		fan->notify_in_flight--;
	if (s->large) {	/* a lane is free: a waiting worker may take it */
		fan->large_taken--;
		pthread_cond_broadcast(&fan->q_cond);
	}
	pthread_mutex_unlock(&fan->q_lock);
	return 0;
}

/*
 * A worker's finding for job @id, queued to learn what its opener runs
 * (VG_JOB_CLASSIFY): @exe_fd is that program, which the worker opened
 * from /proc/PID/exe (our own open: answered at once), and @sha256 its
 * content hash. Remembers the program (interp.c) and, for an
 * interpreter, makes the job an exec: its deadline answer becomes the
 * exec one. 1 for an interpreter, 0 if not, -ESTALE for a bad id, or
 * fstat's -errno.
 */
int vg_fan_classify(struct vg_fan *fan, uint64_t id, int exe_fd,
		    const uint8_t *sha256)
{
	struct settings *set;
	struct slot *s;
	struct stat st;
	int yes;

	if (fstat(exe_fd, &st))
		return -errno;
	set = settings_get(fan);
	yes = interp_learn(fan, set->interp, &st, sha256);
	pthread_mutex_lock(&fan->q_lock);
	s = taken(fan, id);
	if (s && yes) {
		s->job.kind = VG_EV_EXEC;
		s->on_deadline = set->on_deadline[policy_of(VG_EV_EXEC)];
	}
	pthread_mutex_unlock(&fan->q_lock);
	settings_put(set);
	return s ? yes : -ESTALE;
}

/*
 * Answer the head of the deadline list by policy. Caller holds q_lock,
 * and keeps it while writing: released, the worker could answer late,
 * release the slot and close the fd, and the reader could receive a new
 * event on the same fd number before this response reached the kernel,
 * which matches responses by fd. Lock order q_lock -> respond_lock is the
 * only one that nests these two.
 */
static void expire_head(struct vg_fan *fan)
{
	struct slot *s = fan->dl_head;

	s->answered = 1;
	s->response = s->on_deadline;
	dl_remove(fan, s);
	/* the group closed first: the kernel's allow was the answer */
	s->expired = respond(fan, s->group, s->job.fd, s->on_deadline) != 0;
	respond_latency(fan, s->job.queued_ns);
	fan_count(&fan->stats.deadline_passed);
}

/*
 * The deadline watcher: sleeps until the oldest unanswered job is due.
 * With nothing pending it sleeps one whole deadline period without being
 * woken: a job queued meanwhile is due no earlier than a full period after
 * the watcher went to sleep, so it is never late, and enqueueing never
 * costs a wake-up (it would be one more thread hop on every open). A
 * new deadline setting wakes it (jobs_wake_watcher), and it re-reads the
 * period under q_lock, the lock jobs_enqueue reads the deadline under.
 */
void *watcher_main(void *arg)
{
	struct vg_fan *fan = arg;

	pthread_setname_np(pthread_self(), "vigild-deadline");
	pthread_mutex_lock(&fan->q_lock);
	while (!fan->stopping) {
		struct slot *head = fan->dl_head;
		uint64_t now = fan_now_ns();

		if (!head) {
			struct settings *set = settings_get(fan);
			struct timespec until = fan_after_ns(set->deadline_ns);

			settings_put(set);

			pthread_cond_timedwait(&fan->dl_cond, &fan->q_lock, &until);
		} else if (head->deadline_ns <= now) {
			expire_head(fan);
		} else {
			struct timespec until = fan_after_ns(head->deadline_ns - now);

			pthread_cond_timedwait(&fan->dl_cond, &fan->q_lock, &until);
		}
	}
	pthread_mutex_unlock(&fan->q_lock);
	return NULL;
}

/* Make the watcher re-read its period: the deadline setting changed. */
void jobs_wake_watcher(struct vg_fan *fan)
{
	pthread_mutex_lock(&fan->q_lock);
	pthread_cond_broadcast(&fan->dl_cond);
	pthread_mutex_unlock(&fan->q_lock);
}

/*
 * Stop handing out jobs; called once the group is closed, so the kernel
 * has answered every event: mark them all answered and wake everyone.
 */
void jobs_shutdown(struct vg_fan *fan)
{
	pthread_mutex_lock(&fan->q_lock);
	__atomic_store_n(&fan->stopping, 1, __ATOMIC_RELAXED);
	for (uint32_t i = 0; fan->slots && i < fan->cfg.queue_size; i++)
		fan->slots[i].answered = 1;
	fan->dl_head = fan->dl_tail = NULL;
	pthread_cond_broadcast(&fan->q_cond);
	pthread_cond_broadcast(&fan->dl_cond);
	pthread_mutex_unlock(&fan->q_lock);
}

/* Events waiting and events waiting or being scanned, now. */
void jobs_depth(struct vg_fan *fan, uint64_t *waiting, uint64_t *in_flight)
{
	pthread_mutex_lock(&fan->q_lock);
	*waiting = 0;
	for (int i = 0; i < 4; i++)
		*waiting += fan->queues[i].len;
	*in_flight = fan->in_flight;
	pthread_mutex_unlock(&fan->q_lock);
}
