/*
 * fan.c - the on-access handle's life: open (or adopt), its groups and
 * their marks, configure, start, stop, free, and its counters.
 *
 * Owns the handle itself: its locks, the wake eventfd, the groups (one
 * per marked filesystem: fan.h says why) and which filesystem each one
 * marks, the threads, the verdict cache object (not its contents:
 * remember.c) and the fixed config. Must not answer events, touch job slots or cache entries: it
 * calls jobs.c, remember.c, respond.c and settings.c, and nothing calls
 * back into this file but through the public vg_fan_* entry points.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/utsname.h>
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
	    !cfg->cache_entries || cfg->settle_entries > MAX_QUEUE ||
	    !(cfg->events & (VG_EV_OPEN | VG_EV_EXEC | VG_EV_CLOSE_WRITE)))
		return -EINVAL;
	return 0;
}

/* Add @fd as the next group (its reader starts with vg_fan_start); its
 * index, -EBUSY once started or -EMFILE when all VG_MAX_GROUPS are in use. */
static int group_add(struct vg_fan *fan, int fd)
{
	uint32_t n = fan->n_groups;
	struct group *g = &fan->groups[n];

	if (fan->started)
		return -EBUSY;
	if (n >= VG_MAX_GROUPS)
		return -EMFILE;
	g->fd = fd;
	g->index = n;
	g->fan = fan;
	g->alive_ns = fan_now_ns();
	__atomic_store_n(&fan->n_groups, n + 1, __ATOMIC_RELEASE);
	return (int)n;
}

/* 1 when kernel @release starts with a version of at least @major.@minor. */
int vg_kernel_at_least(const char *release, unsigned int major,
		       unsigned int minor)
{
	unsigned int a = 0, b = 0;

	if (sscanf(release, "%u.%u", &a, &b) != 2)
		return 0;
	return a > major || (a == major && b >= minor);
}

/*
 * A new permission-class fanotify group; its fd or -errno. -EPERM without
 * CAP_SYS_ADMIN; -EINVAL when the kernel lacks permission events
 * (CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
 *
 * FAN_UNLIMITED_QUEUE: with a bounded queue, a permission event that
 * finds it full is silently allowed by the kernel. Permission events
 * hold their openers, so the queue cannot grow past the processes that
 * open; close-write notifications can, and are small.
 *
 * O_NONBLOCK for the event fds, which the kernel opens inside the reader's
 * read(): that open breaks leases like any other, and against a write
 * lease (any owner may put one on their own file) a blocking one waits
 * for the holder, up to fs.lease-break-time (45 s), with no event of the
 * group read meanwhile, every opener on the filesystem held. Non-blocking,
 * the open fails at once: the kernel denies that event if it holds an
 * opener, drops it otherwise, and read() says EAGAIN (reader.c counts it).
 */
static int group_open(void)
{
	int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK |
				       FAN_UNLIMITED_QUEUE,
			       O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NOATIME |
				       O_NONBLOCK);

	return fd < 0 ? -errno : fd;
}

/* Initialise the locks and everything but the threads, with @fd as the
 * first group. */
static int fan_init(struct vg_fan *fan, const struct vg_fan_config *cfg,
		    int fd)
{
	pthread_condattr_t ca;
	struct utsname u;
	int ret;

	group_add(fan, fd);
	fan->cfg = *cfg;
	fan->self = getpid();
	/* "ovl: enable fsnotify events on underlying real files" (6.5) */
	fan->backing_close_seen = !uname(&u) && vg_kernel_at_least(u.release, 6, 5);
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
	pthread_mutex_init(&fan->defer_lock, NULL);
	pthread_mutex_init(&fan->store_lock, NULL);
	fan->settle_wake = -1;
	pthread_condattr_destroy(&ca);
	fan->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fan->wake_fd < 0)
		return -errno;
	ret = vg_cache_new(cfg->cache_entries, &fan->verdicts);
	if (!ret)
		ret = vg_cache_new(DETECTED_ENTRIES, &fan->detected);
	if (!ret)
		ret = vg_cache_new(EXE_ENTRIES, &fan->exes);
	if (!ret)
		ret = jobs_init(fan);
	return ret ? ret : settle_init(fan);
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
		fan->groups[0].fd = -1;	/* the caller still owns @fd */
		vg_fan_free(fan);
		return ret;
	}
	*out = fan;
	return 0;
}

/*
 * A handle with one fanotify group, which the first mark will use; more
 * are created as marks name other filesystems. Needs CAP_SYS_ADMIN (the
 * errors of group_open), so a host without permission events is known at
 * once.
 */
int vg_fan_open(const struct vg_fan_config *cfg, struct vg_fan **out)
{
	int ret, fd = group_open();

	if (fd < 0)
		return fd;
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

/* One more group reading event records from @fd, before start (tests: a
 * second socketpair); its index, or -EBUSY / -EMFILE. */
int vg_fan_adopt_group(struct vg_fan *fan, int fd)
{
	return group_add(fan, fd);
}

/* The index of the group for the filesystem of @dev: the one that marks
 * it already, the unclaimed first one, or a new one; or -errno. */
static int group_for(struct vg_fan *fan, uint64_t dev)
{
	uint32_t n = fan->n_groups;
	int fd, i;

	for (uint32_t k = 0; k < n; k++)
		if (fan->groups[k].claimed && fan->groups[k].dev == dev)
			return (int)k;
	if (!fan->groups[0].claimed) {
		i = 0;
	} else {
		fd = fan->started ? -EBUSY : group_open();
		if (fd < 0)
			return fd;
		i = group_add(fan, fd);
		if (i < 0) {
			close(fd);
			return i;
		}
	}
	fan->groups[i].dev = dev;
	fan->groups[i].claimed = 1;
	return i;
}

/*
 * Watch the filesystem (or mount) holding @path for our events, in the
 * group of that filesystem (fan.h: a stacked filesystem and its layers
 * must not share a reader). New filesystems only before start (-EBUSY).
 */
int vg_fan_mark(struct vg_fan *fan, const char *path, int how)
{
	unsigned int flags = FAN_MARK_ADD;
	struct stat st;
	int g;

	if (how == VG_MARK_FILESYSTEM)
		flags |= FAN_MARK_FILESYSTEM;
	else if (how == VG_MARK_MOUNT)
		flags |= FAN_MARK_MOUNT;
	else
		return -EINVAL;
	if (stat(path, &st))
		return -errno;
	g = group_for(fan, st.st_dev);
	if (g < 0)
		return g;
	if (how == VG_MARK_MOUNT)	/* before any event: see remember.c */
		__atomic_store_n(&fan->groups[g].mount_marked, 1, __ATOMIC_RELAXED);
	/* close-write always: it is how a changed file loses its cached state */
	return respond_mark(fan, (uint32_t)g, flags,
			    fan->perm_mask | FAN_CLOSE_WRITE, AT_FDCWD, path);
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

/* Wake every reader and join those started; each closes its own group
 * as it leaves (reader_main), which is what frees a reader blocked in
 * read() on the group of a lower layer. */
static void readers_stop(struct vg_fan *fan)
{
	uint64_t one = 1;
	uint32_t n = fan_groups(fan);

	if (write(fan->wake_fd, &one, sizeof(one)) < 0)
		fan_count(&fan->stats.errors);
	for (uint32_t i = 0; i < n; i++) {
		if (fan->groups[i].running)
			pthread_join(fan->groups[i].reader, NULL);
		fan->groups[i].running = 0;
	}
}

/* Start the deadline watcher and one reader per group. */
int vg_fan_start(struct vg_fan *fan)
{
	uint32_t n = fan_groups(fan);
	int ret;

	if (fan->started)
		return -EALREADY;
	if (!fan->settings)
		return -EINVAL;	/* vg_fan_configure first */
	ret = -pthread_create(&fan->watcher, NULL, watcher_main, fan);
	if (ret)
		return ret;
	ret = -pthread_create(&fan->settler, NULL, settle_main, fan);
	if (ret) {
		jobs_shutdown(fan);
		pthread_join(fan->watcher, NULL);
		return ret;
	}
	fan->started = 1;
	for (uint32_t i = 0; i < n && !ret; i++) {
		struct group *g = &fan->groups[i];

		__atomic_store_n(&g->alive_ns, fan_now_ns(), __ATOMIC_RELAXED);
		ret = -pthread_create(&g->reader, NULL, reader_main, g);
		g->running = !ret;
	}
	if (ret)
		vg_fan_stop(fan);
	return ret;
}

/*
 * Stop: wake the readers, each closing its group as it leaves (the
 * kernel then allows every event the group holds, read or not), close
 * the groups no reader read, wake the workers (their vg_fan_next returns
 * -ESHUTDOWN) and join the watcher. Idempotent.
 */
int vg_fan_stop(struct vg_fan *fan)
{
	uint32_t n = fan_groups(fan);

	if (fan->started)
		readers_stop(fan);
	for (uint32_t i = 0; i < n; i++)
		respond_close(fan, i);
	jobs_shutdown(fan);
	settle_stop(fan);
	if (fan->started) {
		pthread_join(fan->watcher, NULL);
		pthread_join(fan->settler, NULL);
	}
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
	settle_free(fan);
	vg_cache_free(fan->verdicts);
	vg_cache_free(fan->detected);
	vg_cache_free(fan->exes);
	settings_put(fan->settings);
	if (fan->wake_fd >= 0)
		close(fan->wake_fd);
	pthread_cond_destroy(&fan->q_cond);
	pthread_cond_destroy(&fan->dl_cond);
	pthread_mutex_destroy(&fan->defer_lock);
	pthread_mutex_destroy(&fan->store_lock);
	pthread_mutex_destroy(&fan->q_lock);
	pthread_mutex_destroy(&fan->cache_lock);
	pthread_mutex_destroy(&fan->respond_lock);
	pthread_rwlock_destroy(&fan->settings_lock);
	free(fan);
}

/*
 * The kernel side of the readers, now: bytes pending in every group, and
 * the longest a reader whose group has events pending has not come back
 * from poll() or read(). A reader idle in poll comes back twice a
 * second; one blocked in read() (or not started) does not.
 */
static void readers_state(struct vg_fan *fan, struct vg_fan_stats *out)
{
	uint32_t n = fan_groups(fan);
	uint64_t now = fan_now_ns();

	out->groups = n;
	out->kernel_pending = out->reader_stuck_ms = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pending = respond_pending(fan, i), since, ms;

		if (!pending)
			continue;
		out->kernel_pending += pending;
		since = __atomic_load_n(&fan->groups[i].alive_ns,
					__ATOMIC_RELAXED);
		ms = now > since ? (now - since) / 1000000 : 0;
		if (ms > out->reader_stuck_ms)
			out->reader_stuck_ms = ms;
	}
}

/* A snapshot of the counters. */
void vg_fan_stats(struct vg_fan *fan, struct vg_fan_stats *out)
{
	const uint64_t *src = (const uint64_t *)&fan->stats;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	jobs_depth(fan, &out->queue_depth, &out->in_flight);
	readers_state(fan, out);
}
