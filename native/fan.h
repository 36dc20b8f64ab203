/*
 * fan.h - the on-access handle shared by the on-access C files.
 *
 * Not part of the cdef: Python sees only the opaque struct vg_fan and
 * the functions in vigild.h.
 *
 * Who answers an event (each permission event is answered exactly once):
 *
 *   kernel group 0 --read--> reader 0 --+
 *   kernel group 1 --read--> reader 1 --+--enqueue--> job slot --next--> worker
 *   ...  (one group per marked fs)      |   (slot->group)  |               |
 *                                       |                  |               |
 *     each reader answers at once:      |  deadline watcher   vg_fan_answer
 *     own pid, filtered, cached,        |  answers by policy  (unless the
 *     queue full, any error             |  when time is up    watcher did)
 *
 * Every answer goes to the group the event was read from (the slot keeps
 * its index). Before a job is enqueued only its reader may answer the
 * event; after, only whoever flips slot->answered from 0 to 1 under
 * q_lock.
 *
 * Why one group per marked filesystem: the kernel opens an event's fd
 * inside read(). For a file on a stacked filesystem (overlayfs) that open
 * opens the backing file, and since 6.14 the backing open raises its own
 * permission event (FMODE_NONOTIFY no longer reaches it through the open
 * flags). With one group marking both filesystems that event would wait
 * for the very reader that is blocked in read(): every opener on both
 * would wait forever. In the layers' own group it is read by another
 * reader, which answers our own pid at once; opening the fd of a file on
 * a non-stacked filesystem raises nothing further, and stacks have no
 * cycles, so every chain of readers ends.
 *
 * At stop each reader, once woken, closes its own group as it leaves
 * (the kernel then allows every event that group still holds, which also
 * frees a reader of an upper layer blocked in read() on it); the fd
 * number is never reused under a live reader, and no later write can
 * reach a reused number (respond_lock).
 *
 * Who owns what, and which file may call which (calls go down only; a
 * test, tests/native/test_layout.py, fails on a cycle):
 *
 *   fan.c       handle lifecycle: open/adopt, groups and marks, configure,
 *    |          start, stop, free, stats
 *    |   reader.c   one reader thread per group: each event until
 *    |    |         answered or queued
 *   jobs.c   |  q_lock: slots, FIFOs, deadline list, watcher, next/answer/done
 *    |    |  |
 *   settle.c    fresh clean verdicts waiting for their window (rings); the
 *    |          settle thread that checks them (readers store them)
 *   remember.c  cache_lock: verdict cache contents, write epochs, ignore
 *    |          marks, the settings swap
 *   respond.c   respond_lock: every write to a group fd, its close and
 *               FIONREAD; answer counters and latency
 *   settings.c  immutable settings snapshots (refcounted)
 *   filters.c   path / process filters inside a snapshot
 *   interp.c    interpreter sets inside a snapshot; the program cache
 *               (what each opener's program is), which never opens a file
 *
 *   fan.c -> reader.c, jobs.c, settle.c, remember.c, respond.c, settings.c
 *   reader.c -> jobs.c, settle.c, remember.c, respond.c, settings.c,
 *               filters.c, interp.c
 *   jobs.c -> settle.c, remember.c, respond.c, settings.c, interp.c
 *   settle.c -> remember.c, settings.c
 *   remember.c -> respond.c, settings.c, hash.c
 *   settings.c -> filters.c, interp.c
 *
 * Lock order: q_lock -> respond_lock; cache_lock -> respond_lock;
 * cache_lock -> settings_lock (write, the swap); q_lock -> settings_lock
 * (read, briefly). q_lock and cache_lock are never held together, and
 * respond_lock is innermost. store_lock -> cache_lock (a reader storing
 * checked verdicts); defer_lock -> settings_lock (read, briefly). The
 * settle thread takes no lock. One respond_lock covers every group.
 */
#ifndef VIGILD_FAN_H
#define VIGILD_FAN_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "vigild.h"

#define EPOCHS 4096		/* write-epoch counters, by (dev, ino) hash */
#define DETECTED_ENTRIES 65536	/* inodes found malicious, kept apart from verdicts */
#define SETTLE_MAX_BYTES (64ull << 20)	/* bigger files are not read again to settle */
#define SETTLE_MARGIN_NS 1000000ull	/* past the window before the check */
#define SETTLE_BATCH_NS 10000000ull	/* the settle thread wakes at most this often */
#define SETTLE_NICE 10		/* the settle thread's nice: a tenth of a CPU's share */
#define SETTLE_MAX_WAIT_NS 2100000000ull	/* a second, the longest window, margin */
#define EXE_ENTRIES 4096	/* programs known to be interpreters, or not */

struct filters {
	char **watch;		/* path prefixes scanned; none = everything */
	uint32_t n_watch;
	char **exclude;		/* path prefixes never scanned */
	uint32_t n_exclude;
	char **exes;		/* executables whose opens are never scanned */
	uint32_t n_exes;
	uint32_t *uids;		/* users whose opens are never scanned */
	uint32_t n_uids;
};

/* The interpreters and the loader (interp.c): immutable, in a snapshot. */
struct interp {
	uint64_t *ids;		/* (dev, ino) pairs of their files */
	uint32_t n_ids;
	uint8_t *sha;		/* SHA-256 of their contents, sorted */
	uint32_t n_sha;
	uint64_t print;		/* names this set in the program cache */
};

/* interp_of(): what the opener runs */
enum { INTERP_NO, INTERP_YES, INTERP_UNKNOWN };

/*
 * The settings in force: immutable once built (settings.c), swapped whole
 * by vg_fan_configure under settings_lock. A user holds a reference
 * (settings_get/settings_put), so a swap never waits for a slow reader
 * and never frees a snapshot still in use.
 */
struct settings {
	uint32_t refs;		/* atomic */
	uint64_t generation;
	uint64_t deadline_ns;
	int on_queue_full[2];	/* by policy_of(): [0] open, [1] exec */
	int on_deadline[2];
	int ignore_marks;
	uint32_t n_mark_fs;
	uint64_t mark_fs[VG_MAX_MARK_FS];
	uint64_t fresh_ns;
	uint32_t close_write_share;	/* percent */
	int exec_anywhere;
	int empty_clean;
	uint64_t large_bytes;
	uint32_t large_lanes;
	struct filters *filters;
	struct interp *interp;
};

enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_TAKEN };

struct slot {
	struct vg_job job;
	uint32_t group;		/* index of the group the event came from */
	enum slot_state state;
	int answered;		/* 1 once the kernel has its answer */
	int expired;		/* that answer was the deadline policy's */
	int response;		/* the answer given (VG_ALLOW / VG_DENY) */
	int on_deadline;	/* the policy answer, from the settings at enqueue */
	int large;		/* in a large lane (jobs.c) */
	uint32_t seq;		/* bumped on reuse: stale ids are refused */
	uint32_t epoch;		/* write epoch of the inode at enqueue */
	int writers_clear;	/* no writer when a worker took it (remember.c) */
	uint64_t deadline_ns;
	uint64_t queued_rt_ns;	/* CLOCK_REALTIME at enqueue, for ctime checks */
	struct slot *q_next;	/* FIFO link while queued */
	struct slot *dl_prev, *dl_next;	/* deadline list while unanswered */
};

/* A clean verdict checked by the settle thread, for a reader to store. */
struct verified {
	struct stat st;
	uint32_t epoch;
	int value;		/* to cache: remember_clean_value */
	uint64_t generation;
};

/* A fresh clean verdict waiting for its window to pass (settle.c). */
struct settling {
	int fd;			/* our dup of the job's event fd */
	uint32_t group;		/* the job's */
	uint64_t size;		/* of the bytes scanned */
	uint64_t fresh_ns;	/* the freshness window when it was kept */
	uint64_t due_ns;	/* CLOCK_MONOTONIC */
	uint64_t generation;
	uint8_t sha256[32];	/* of the bytes the rules found clean */
};

struct fifo {
	struct slot *head, *tail;
	uint32_t len;
};

/*
 * One fanotify group and its reader. Set up before start (fan.c) and
 * then fixed but for fd, which only respond.c writes, under respond_lock.
 */
struct group {
	int fd;			/* fanotify group; -1 once closed */
	uint32_t index;		/* in fan->groups */
	uint64_t dev;		/* st_dev of the marked filesystem */
	int claimed;		/* dev is set: a mark chose this group */
	int mount_marked;	/* some mark is a mount's: other mounts' writes
				 * (and their close-writes) go unseen */
	int running;		/* its reader thread was started */
	uint64_t alive_ns;	/* atomic: the reader last came back from
				 * poll() or read() (or was started) */
	pthread_t reader;
	struct vg_fan *fan;
};

struct vg_fan {
	struct group groups[VG_MAX_GROUPS];
	uint32_t n_groups;	/* atomic: grows before start only */
	int wake_fd;		/* eventfd: stops every reader's poll */
	int adopted;		/* fd came from vg_fan_adopt (tests) */
	pid_t self;
	struct vg_fan_config cfg;
	uint64_t perm_mask;	/* kernel bits answered by us */
	int backing_close_seen;	/* Linux >= 6.5: a write through an overlay
				 * raises close-write on its upper file */

	pthread_mutex_t respond_lock;	/* guards group fds against close */

	/* the settings in force: NULL until the first configure; written
	 * under both cache_lock and settings_lock, so read under either */
	pthread_rwlock_t settings_lock;
	struct settings *settings;

	pthread_mutex_t cache_lock;	/* verdict insert vs invalidation */
	struct vg_cache *verdicts;
	struct vg_cache *detected;	/* inodes found malicious: scanned under any name */
	struct vg_cache *exes;		/* what programs are (interp.c); own locks */
	uint32_t epochs[EPOCHS];

	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;		/* workers wait for jobs */
	pthread_cond_t dl_cond;		/* watcher waits for deadlines */
	struct slot *slots;
	struct slot *free_list;
	struct fifo queues[4];		/* by lane_of(): perm, perm large,
					 * notify, notify large */
	uint32_t large_taken;		/* large jobs being scanned */
	struct slot *dl_head, *dl_tail;
	uint32_t in_flight;
	uint32_t notify_in_flight;	/* close-write jobs: close_write_share */
	int stopping;

	pthread_t watcher;
	int started;

	/* settle.c: two rings of cfg.settle_entries. incoming: workers add
	 * (serialized by defer_lock), the settle thread takes; checked: the
	 * settle thread adds, a reader takes (store_lock, try-locked). Heads
	 * and tails are atomic; no lock is shared with the settle thread. */
	pthread_mutex_t defer_lock;
	pthread_mutex_t store_lock;
	struct settling *incoming;
	uint64_t in_head, in_tail;	/* counts, never wrap: slot = count % n */
	struct verified *checked;
	uint64_t out_head, out_tail;
	int settle_wake;		/* eventfd: wakes the settle thread */
	int settle_stopping;		/* atomic */
	pthread_t settler;

	struct vg_fan_stats stats;	/* counters updated atomically */
};

/* Add one to a counter shared between threads. */
static inline void fan_count(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* The number of groups set up so far. */
static inline uint32_t fan_groups(struct vg_fan *fan)
{
	return __atomic_load_n(&fan->n_groups, __ATOMIC_ACQUIRE);
}

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t fan_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * When a file's ctime (@sec, @nsec) stops being reusable by a rewrite,
 * CLOCK_REALTIME ns, freshness window aside: the ctime itself, or for a
 * filesystem that keeps whole seconds only (the ctime ends in .000000000;
 * a fine one does so once in 10^9 changes, and only waits longer) the end
 * of that second (remember.c).
 */
static inline uint64_t fan_ctime_end_ns(int64_t sec, int64_t nsec)
{
	uint64_t ns = (uint64_t)sec * 1000000000ull + (uint64_t)nsec;

	return nsec ? ns : ns + 1000000000ull;
}

/* 1 when only root can write the file of @st (its owner, no group or
 * other write bit; an ACL granting a user write shows as group write). */
static inline int fan_root_only(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

/* An absolute CLOCK_MONOTONIC time @ns from now (for timed waits). */
static inline struct timespec fan_after_ns(uint64_t ns)
{
	uint64_t at = fan_now_ns() + ns;
	struct timespec ts = { .tv_sec = (time_t)(at / 1000000000ull),
			       .tv_nsec = (long)(at % 1000000000ull) };

	return ts;
}

/* respond.c */
int respond(struct vg_fan *fan, uint32_t group, int fd, int response);
void respond_latency(struct vg_fan *fan, uint64_t since_ns);
int respond_mark(struct vg_fan *fan, uint32_t group, unsigned int flags,
		 uint64_t mask, int dirfd, const char *path);
void respond_ignore(struct vg_fan *fan, uint32_t group, int fd, int add);
int respond_flush_marks(struct vg_fan *fan);
void respond_close(struct vg_fan *fan, uint32_t group);
uint64_t respond_pending(struct vg_fan *fan, uint32_t group);

/* remember.c */
uint32_t remember_epoch(struct vg_fan *fan, const struct stat *st);
int remember_lookup(struct vg_fan *fan, const struct settings *set, int fd,
		    const struct stat *st, int *response);
void remember_invalidate(struct vg_fan *fan, uint32_t group, int fd,
			 const struct stat *st);
void remember_forget_all(struct vg_fan *fan);
int remember_detected(struct vg_fan *fan, const struct stat *st);
int remember_switch(struct vg_fan *fan, struct settings *s,
		    struct settings **old);
int remember_no_writers(int fd);
int remember_clean_value(struct vg_fan *fan, uint32_t group, int fd,
			 const struct stat *st);
int remember_verdict(struct vg_fan *fan, const struct slot *s, int cache,
		     uint64_t generation);
int remember_verify(struct vg_fan *fan, const struct settling *e,
		    struct stat *st, uint32_t *epoch);
int remember_store_settled(struct vg_fan *fan, const struct stat *st,
			   uint32_t epoch, uint64_t generation, int value);

/* settle.c */
int settle_init(struct vg_fan *fan);
void settle_defer(struct vg_fan *fan, const struct slot *s,
		  const uint8_t *sha256, uint64_t generation);
void *settle_main(void *arg);	/* @arg: the struct vg_fan */
void settle_store(struct vg_fan *fan);
void settle_stop(struct vg_fan *fan);
void settle_free(struct vg_fan *fan);

/* reader.c */
void *reader_main(void *arg);	/* @arg: its struct group */

/* jobs.c */
void jobs_wake_watcher(struct vg_fan *fan);
int jobs_init(struct vg_fan *fan);
void jobs_free(struct vg_fan *fan);
int jobs_enqueue(struct vg_fan *fan, const struct vg_job *job, uint32_t group,
		 uint32_t epoch);
void jobs_shutdown(struct vg_fan *fan);
void jobs_depth(struct vg_fan *fan, uint64_t *waiting, uint64_t *in_flight);
void *watcher_main(void *arg);

/* settings.c */
int settings_new(const struct vg_fan_settings *in, struct settings **out);
struct settings *settings_get(struct vg_fan *fan);
void settings_put(struct settings *s);
int settings_local_fs(const struct settings *set, int fd);
int policy_of(uint32_t kind);

/* filters.c */
struct filters *filters_new(const char *const *watch, uint32_t n_watch,
			    const char *const *exclude, uint32_t n_exclude,
			    const char *const *exes, uint32_t n_exes,
			    const uint32_t *uids, uint32_t n_uids);
void filters_free(struct filters *f);
int filters_path_scanned(const struct filters *f, const char *path,
			 int anywhere);
int filters_process_excluded(const struct filters *f, pid_t pid);

/* interp.c */
struct interp *interp_new(const uint64_t *ids, uint32_t n_ids,
			  const uint8_t *sha, uint32_t n_sha);
void interp_free(struct interp *ip);
int interp_on(const struct interp *ip);
int interp_of(struct vg_fan *fan, const struct interp *ip, pid_t pid);
int interp_learn(struct vg_fan *fan, const struct interp *ip,
		 const struct stat *st, const uint8_t *sha256);

#endif /* VIGILD_FAN_H */
