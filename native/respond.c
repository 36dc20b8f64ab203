/*
 * respond.c - every write to the group fd: responses, mark changes, close.
 *
 * Owns the respond_lock discipline: the group fd is written to (responses,
 * ignore marks, flushes, marks) and closed only under respond_lock, so no
 * thread can write a response into an fd number the process has since
 * reused. Also owns the answer counters and the latency histogram.
 *
 * Must not touch the job slots, the verdict cache or the settings, and
 * calls no other file: respond_lock is the innermost lock (q_lock ->
 * respond_lock and cache_lock -> respond_lock are the only nestings).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include "fan.h"

/* Write @response for the event fd @fd, unless the group is closed. */
void respond(struct vg_fan *fan, int fd, int response)
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

/* Count one answer in the latency histogram (bucket i: < 2^(i+1) us). */
void respond_latency(struct vg_fan *fan, uint64_t since_ns)
{
	uint64_t us = (fan_now_ns() - since_ns) / 1000;
	int b = 0;

	while (us > 1 && b < VG_LATENCY_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	fan_count(&fan->stats.latency_us[b]);
}

/* fanotify_mark on the group unless it is closed; 0 or -errno. */
int respond_mark(struct vg_fan *fan, unsigned int flags, uint64_t mask,
		 int dirfd, const char *path)
{
	int ret = -EBADF;

	pthread_mutex_lock(&fan->respond_lock);
	if (fan->fd >= 0)
		ret = fanotify_mark(fan->fd, flags, mask, dirfd, path) ? -errno
								       : 0;
	pthread_mutex_unlock(&fan->respond_lock);
	return ret;
}

/* Add (or drop) the ignore mark of the file open at @fd (no-op in tests). */
void respond_ignore(struct vg_fan *fan, int fd, int add)
{
	unsigned int flags = FAN_MARK_IGNORED_MASK;

	if (fan->adopted)
		return;
	flags |= add ? FAN_MARK_ADD | FAN_MARK_EVICTABLE : FAN_MARK_REMOVE;
	if (!respond_mark(fan, flags, fan->perm_mask, fd, NULL) && add)
		fan_count(&fan->stats.ignore_marks);
}

/* Drop every ignore mark (the only inode marks); 0 or -errno. */
int respond_flush_marks(struct vg_fan *fan)
{
	int ret;

	if (fan->adopted)
		return 0;
	ret = respond_mark(fan, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);
	return ret == -EBADF ? 0 : ret;
}

/* Close the group: the kernel allows every event it still holds. */
void respond_close(struct vg_fan *fan)
{
	pthread_mutex_lock(&fan->respond_lock);
	if (fan->fd >= 0)
		close(fan->fd);
	fan->fd = -1;
	pthread_mutex_unlock(&fan->respond_lock);
}
