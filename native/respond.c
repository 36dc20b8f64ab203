/*
 * respond.c - every write to a group fd: responses, mark changes, close.
 *
 * Owns the respond_lock discipline: a group fd is written to (responses,
 * ignore marks, flushes, marks), asked for its pending bytes and closed
 * only under respond_lock, so no thread can write a response into an fd
 * number the process has since reused. Every call names the group: a
 * response or an ignore mark only means something to the group the event
 * came from. Also owns the answer counters and the latency histogram.
 *
 * Must not touch the job slots, the verdict cache or the settings, and
 * calls no other file: respond_lock is the innermost lock (q_lock ->
 * respond_lock and cache_lock -> respond_lock are the only nestings).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fan.h"

/* Write @response for the event fd @fd to @group, unless it is closed:
 * 1 when written; 0 when the group had closed (the kernel gave the event
 * its own answer, an allow); -1 when the write failed otherwise (never in
 * normal operation: an event answered twice, a bug). */
int respond(struct vg_fan *fan, uint32_t group, int fd, int response)
{
	struct fanotify_response r = { .fd = fd, .response = (uint32_t)response };
	int gfd, ret;

	pthread_mutex_lock(&fan->respond_lock);
	gfd = fan->groups[group].fd;
	ret = gfd < 0 ? 0 : write(gfd, &r, sizeof(r)) == sizeof(r) ? 1 : -1;
	pthread_mutex_unlock(&fan->respond_lock);
	if (ret != 1)
		fan_count(&fan->stats.errors);
	else
		fan_count(response == VG_ALLOW ? &fan->stats.answered_allow
					       : &fan->stats.answered_deny);
	return ret;
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

/* fanotify_mark on @group unless it is closed; 0 or -errno. */
int respond_mark(struct vg_fan *fan, uint32_t group, unsigned int flags,
		 uint64_t mask, int dirfd, const char *path)
{
	int ret = -EBADF, gfd;

	pthread_mutex_lock(&fan->respond_lock);
	gfd = fan->groups[group].fd;
	if (gfd >= 0)
		ret = fanotify_mark(gfd, flags, mask, dirfd, path) ? -errno : 0;
	pthread_mutex_unlock(&fan->respond_lock);
	return ret;
}

/* Add (or drop) @group's ignore mark of the file open at @fd (no-op in
 * tests). */
void respond_ignore(struct vg_fan *fan, uint32_t group, int fd, int add)
{
	unsigned int flags = FAN_MARK_IGNORED_MASK;

	if (fan->adopted)
		return;
	flags |= add ? FAN_MARK_ADD | FAN_MARK_EVICTABLE : FAN_MARK_REMOVE;
	if (!respond_mark(fan, group, flags, fan->perm_mask, fd, NULL) && add)
		fan_count(&fan->stats.ignore_marks);
}

/* Drop every ignore mark (the only inode marks) of every group; 0 or the
 * first -errno. */
int respond_flush_marks(struct vg_fan *fan)
{
	uint32_t n = fan_groups(fan);
	int ret = 0;

	if (fan->adopted)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		int r = respond_mark(fan, i, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);

		if (r && r != -EBADF && !ret)
			ret = r;
	}
	return ret;
}

/* Close @group: the kernel allows every event it still holds. */
void respond_close(struct vg_fan *fan, uint32_t group)
{
	pthread_mutex_lock(&fan->respond_lock);
	if (fan->groups[group].fd >= 0)
		close(fan->groups[group].fd);
	fan->groups[group].fd = -1;
	pthread_mutex_unlock(&fan->respond_lock);
}

/* Bytes of events waiting in @group's kernel queue, not yet read (FIONREAD;
 * a test's socket answers it too); 0 once closed or on error. */
uint64_t respond_pending(struct vg_fan *fan, uint32_t group)
{
	int n = 0;

	pthread_mutex_lock(&fan->respond_lock);
	if (fan->groups[group].fd >= 0 &&
	    ioctl(fan->groups[group].fd, FIONREAD, &n))
		n = 0;
	pthread_mutex_unlock(&fan->respond_lock);
	return n > 0 ? (uint64_t)n : 0;
}
