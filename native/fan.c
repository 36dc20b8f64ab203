/*
 * fan.c - the fanotify group: init, marks, responses, lifecycle, counters.
 *
 * Owns the group fd, the verdict cache and the filter set of one handle.
 * The group fd is written to (responses, ignore marks) only under
 * respond_lock and closed only under it, so no thread can write a
 * response into an fd number the process has since reused.
 *
 * Kernel ignore marks: a file found clean gets an evictable inode mark
 * whose ignored mask holds our permission events, so the next open of
 * the unchanged file raises no event at all. The kernel clears that mask
 * on write() and truncate, but not on a write through a shared mmap:
 * every close-write therefore drops the mark (reader.c), and a rules
 * change flushes all of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <time.h>
#include <unistd.h>

#include "fan.h"

#define MAX_QUEUE (1u << 20)

/* Name the calling thread for ps and top. */
void vg_name_thread(const char *name)
{
	pthread_setname_np(pthread_self(), name);
}

/* Add one to a counter shared between threads. */
void fan_count(uint64_t *counter)
{
	__atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t fan_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Count one answer in the latency histogram (bucket i: < 2^(i+1) us). */
void fan_latency(struct vg_fan *fan, uint64_t since_ns)
{
	uint64_t us = (fan_now_ns() - since_ns) / 1000;
	int b = 0;

	while (us > 1 && b < VG_LATENCY_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	fan_count(&fan->stats.latency_us[b]);
}

/* Write @response for the event fd @fd, unless the group is closed. */
void fan_respond(struct vg_fan *fan, int fd, int response)
{
	struct fanotify_response r = { .fd = fd, .response = (uint32_t)response };
	int written;

	pthread_mutex_lock(&fan->respond_lock);
	written = fan->fd >= 0 && write(fan->fd, &r, sizeof(r)) == sizeof(r);
	pthread_mutex_unlock(&fan->respond_lock);
	if (!written)
		fan_count(&fan->stats.errors);
	else
		fan_count(response == VG_ALLOW ? &fan->stats.answered_allow
					       : &fan->stats.answered_deny);
}

/* The verdict cache key of a file's state under rules @generation. */
void fan_file_key(uint8_t *key, const struct stat *st, uint64_t generation)
{
	uint64_t v[6] = { st->st_dev, st->st_ino, (uint64_t)st->st_ctim.tv_sec,
			  (uint64_t)st->st_ctim.tv_nsec, (uint64_t)st->st_size,
			  generation };

	_Static_assert(sizeof(v) == VG_KEY_LEN, "key is six words");
	memcpy(key, v, sizeof(v));
}

/* Which write-epoch counter tracks the inode of @st. */
uint32_t fan_epoch_slot(const struct stat *st)
{
	uint64_t h = (st->st_dev * 0x9e3779b97f4a7c15ull) ^ st->st_ino;

	h *= 0xff51afd7ed558ccdull;
	return (uint32_t)(h >> 40) % EPOCHS;
}

/* Add (or drop) the ignore mark of the file open at @fd. */
void fan_ignore(struct vg_fan *fan, int fd, int add)
{
	unsigned int flags = FAN_MARK_IGNORED_MASK;

	flags |= add ? FAN_MARK_ADD | FAN_MARK_EVICTABLE : FAN_MARK_REMOVE;
	pthread_mutex_lock(&fan->respond_lock);
	if (fan->fd >= 0 && !fan->adopted &&
	    !fanotify_mark(fan->fd, flags, fan->perm_mask, fd, NULL) && add)
		fan_count(&fan->stats.ignore_marks);
	pthread_mutex_unlock(&fan->respond_lock);
}

/* Check a config; -EINVAL when a field is out of range. */
static int config_ok(const struct vg_fan_config *cfg)
{
	if (!cfg->queue_size || cfg->queue_size > MAX_QUEUE ||
	    !cfg->cache_entries ||
	    !(cfg->events & (VG_EV_OPEN | VG_EV_EXEC | VG_EV_CLOSE_WRITE)))
		return -EINVAL;
	return 0;
}

/* Initialise the locks and everything but the threads around @fd. */
static int fan_init(struct vg_fan *fan, const struct vg_fan_config *cfg,
		    int fd)
{
	pthread_condattr_t ca;
	int ret;

	fan->fd = fd;
	fan->cfg = *cfg;
	fan->self = getpid();
	if (cfg->events & VG_EV_OPEN)
		fan->perm_mask |= FAN_OPEN_PERM;
	if (cfg->events & VG_EV_EXEC)
		fan->perm_mask |= FAN_OPEN_EXEC_PERM;
	pthread_mutex_init(&fan->respond_lock, NULL);
	pthread_mutex_init(&fan->cache_lock, NULL);
	pthread_mutex_init(&fan->q_lock, NULL);
	pthread_rwlock_init(&fan->settings_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fan->q_cond, &ca);
	pthread_cond_init(&fan->dl_cond, &ca);
	pthread_condattr_destroy(&ca);
	fan->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fan->wake_fd < 0)
		return -errno;
	ret = vg_cache_new(cfg->cache_entries, &fan->verdicts);
	return ret ? ret : jobs_init(fan);
}

/* A handle around an already open group (or, in tests, a socket) @fd. */
static int fan_new(const struct vg_fan_config *cfg, int fd, int adopted,
		   struct vg_fan **out)
{
	struct vg_fan *fan;
	int ret = config_ok(cfg);

	if (ret)
		return ret;
	fan = calloc(1, sizeof(*fan));
	if (!fan)
		return -ENOMEM;
	fan->wake_fd = -1;
	fan->adopted = adopted;
	ret = fan_init(fan, cfg, fd);
	if (ret) {
		fan->fd = -1;	/* the caller still owns @fd */
		vg_fan_free(fan);
		return ret;
	}
	*out = fan;
	return 0;
}

/*
 * Create a permission-class fanotify group and a handle for it. Needs
 * CAP_SYS_ADMIN: -EPERM without it; -EINVAL when the kernel lacks
 * permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
 *
 * FAN_UNLIMITED_QUEUE: with a bounded queue, a permission event that
 * finds it full is silently allowed by the kernel. Permission events
 * hold their openers, so the queue cannot grow past the processes that
 * open; close-write notifications can, and are small.
 */
int vg_fan_open(const struct vg_fan_config *cfg, struct vg_fan **out)
{
	int ret, fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC |
					    FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
				    O_RDONLY | O_LARGEFILE | O_CLOEXEC |
					    O_NOATIME);

	if (fd < 0)
		return -errno;
	ret = fan_new(cfg, fd, 0, out);
	if (ret)
		close(fd);
	return ret;
}

/* A handle reading event records from @fd (tests: a socketpair end). */
int vg_fan_adopt(const struct vg_fan_config *cfg, int fd, struct vg_fan **out)
{
	return fan_new(cfg, fd, 1, out);
}

/* Watch the filesystem (or mount) holding @path for our events. */
int vg_fan_mark(struct vg_fan *fan, const char *path, int how)
{
	unsigned int flags = FAN_MARK_ADD;
	int ret = 0;

	if (how == VG_MARK_FILESYSTEM)
		flags |= FAN_MARK_FILESYSTEM;
	else if (how == VG_MARK_MOUNT)
		flags |= FAN_MARK_MOUNT;
	else
		return -EINVAL;
	/* close-write always: it is how a changed file loses its cached state */
	pthread_mutex_lock(&fan->respond_lock);
	if (fanotify_mark(fan->fd, flags, fan->perm_mask | FAN_CLOSE_WRITE,
			  AT_FDCWD, path))
		ret = -errno;
	pthread_mutex_unlock(&fan->respond_lock);
	return ret;
}

/* 1 when going from @old to @new may leave an ignore mark that @new
 * would not have made: new rules, or marks switched off or narrowed. */
static int marks_stale(const struct settings *old, const struct settings *new)
{
	return !old || old->generation != new->generation ||
	       (old->ignore_marks && !new->ignore_marks) ||
	       old->n_mark_fs != new->n_mark_fs ||
	       memcmp(old->mark_fs, new->mark_fs, sizeof(old->mark_fs));
}

/* Drop every ignore mark. Caller holds cache_lock. */
static int flush_marks(struct vg_fan *fan)
{
	int ret = 0;

	pthread_mutex_lock(&fan->respond_lock);
	if (fan->fd >= 0 && !fan->adopted &&
	    fanotify_mark(fan->fd, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL))
		ret = -errno;
	pthread_mutex_unlock(&fan->respond_lock);
	return ret;
}

/*
 * Apply @in whole: readers see the old settings or the new, never a mix.
 * A new generation makes cached verdicts and ignore marks stop counting at
 * once: the cache key carries the generation, and every inode mark (only
 * ignore marks are inode marks) is flushed under cache_lock, so no mark
 * made with the old rules can be added after the flush. A new deadline
 * wakes the watcher, which may be asleep for a whole old period.
 * -EINVAL on a bad value (nothing changes); a failed flush is returned
 * after the swap.
 */
int vg_fan_configure(struct vg_fan *fan, const struct vg_fan_settings *in)
{
	struct settings *s, *old;
	int ret = settings_new(in, &s), wake;

	if (ret)
		return ret;
	pthread_mutex_lock(&fan->cache_lock);
	old = fan->settings;
	if (marks_stale(old, s)) {
		if (!old || old->generation != s->generation)
			vg_cache_clear(fan->verdicts);
		ret = flush_marks(fan);
	}
	pthread_rwlock_wrlock(&fan->settings_lock);
	fan->settings = s;
	pthread_rwlock_unlock(&fan->settings_lock);
	pthread_mutex_unlock(&fan->cache_lock);
	wake = old && old->deadline_ns != s->deadline_ns;
	settings_put(old);
	if (wake)
		jobs_wake_watcher(fan);
	return ret;
}

/* Start the reader and the deadline watcher. */
int vg_fan_start(struct vg_fan *fan)
{
	int ret;

	if (fan->started)
		return -EALREADY;
	if (!fan->settings)
		return -EINVAL;	/* vg_fan_configure first */
	ret = -pthread_create(&fan->watcher, NULL, watcher_main, fan);
	if (ret)
		return ret;
	ret = -pthread_create(&fan->reader, NULL, reader_main, fan);
	if (ret) {
		jobs_shutdown(fan);
		pthread_join(fan->watcher, NULL);
		return ret;
	}
	fan->started = 1;
	return 0;
}

/*
 * Stop: wake and join the reader, close the group (the kernel then
 * allows every event it holds, read or not), wake the workers (their
 * vg_fan_next returns -ESHUTDOWN) and join the watcher. Idempotent.
 */
int vg_fan_stop(struct vg_fan *fan)
{
	uint64_t one = 1;

	if (fan->started && write(fan->wake_fd, &one, sizeof(one)) < 0)
		fan_count(&fan->stats.errors);
	if (fan->started)
		pthread_join(fan->reader, NULL);
	pthread_mutex_lock(&fan->respond_lock);
	if (fan->fd >= 0)
		close(fan->fd);
	fan->fd = -1;
	pthread_mutex_unlock(&fan->respond_lock);
	jobs_shutdown(fan);
	if (fan->started)
		pthread_join(fan->watcher, NULL);
	fan->started = 0;
	return 0;
}

/* Free everything; stops first if needed. Workers must have returned. */
void vg_fan_free(struct vg_fan *fan)
{
	if (!fan)
		return;
	vg_fan_stop(fan);
	jobs_free(fan);
	vg_cache_free(fan->verdicts);
	settings_put(fan->settings);
	if (fan->wake_fd >= 0)
		close(fan->wake_fd);
	pthread_cond_destroy(&fan->q_cond);
	pthread_cond_destroy(&fan->dl_cond);
	pthread_mutex_destroy(&fan->q_lock);
	pthread_mutex_destroy(&fan->cache_lock);
	pthread_mutex_destroy(&fan->respond_lock);
	pthread_rwlock_destroy(&fan->settings_lock);
	free(fan);
}

/* A snapshot of the counters. */
void vg_fan_stats(struct vg_fan *fan, struct vg_fan_stats *out)
{
	const uint64_t *src = (const uint64_t *)&fan->stats;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	pthread_mutex_lock(&fan->q_lock);
	out->queue_depth = fan->perm_q.len + fan->notify_q.len;
	out->in_flight = fan->in_flight;
	pthread_mutex_unlock(&fan->q_lock);
}
