/*
 * fan.c - the on-access handle's life: open (or adopt), mark, configure,
 * start, stop, free, and its counters.
 *
 * Owns the handle itself: its locks, the wake eventfd, the threads, the
 * verdict cache object (not its contents: remember.c) and the fixed
 * config. Must not answer events, touch job slots or cache entries: it
 * calls jobs.c, remember.c, respond.c and settings.c, and nothing calls
 * back into this file but through the public vg_fan_* entry points.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include "fan.h"

#define MAX_QUEUE (1u << 20)

/* Name the calling thread for ps and top. */
void vg_name_thread(const char *name)
{
	pthread_setname_np(pthread_self(), name);
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

	if (how == VG_MARK_FILESYSTEM)
		flags |= FAN_MARK_FILESYSTEM;
	else if (how == VG_MARK_MOUNT)
		flags |= FAN_MARK_MOUNT;
	else
		return -EINVAL;
	/* close-write always: it is how a changed file loses its cached state */
	return respond_mark(fan, flags, fan->perm_mask | FAN_CLOSE_WRITE,
			    AT_FDCWD, path);
}

/*
 * Apply @in whole: readers see the old settings or the new, never a mix.
 * A new generation drops cached verdicts and ignore marks at once
 * (remember_switch). A new deadline wakes the watcher, which may be
 * asleep for a whole old period.
 * -EINVAL on a bad value (nothing changes); a failed flush is returned
 * after the swap.
 */
int vg_fan_configure(struct vg_fan *fan, const struct vg_fan_settings *in)
{
	struct settings *s, *old;
	int ret = settings_new(in, &s), wake;

	if (ret)
		return ret;
	ret = remember_switch(fan, s, &old);
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
	respond_close(fan);
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
	jobs_depth(fan, &out->queue_depth, &out->in_flight);
}
