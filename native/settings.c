/*
 * settings.c - the reloadable settings of one handle, as immutable
 * snapshots.
 *
 * Owns struct settings objects: built whole and checked here from a
 * struct vg_fan_settings (copying every string, so the caller's buffers
 * may go), then only read. fan.c swaps the pointer under settings_lock;
 * readers take a reference and drop it when done, the last one frees.
 * Must not touch the group fd, the caches or the job queue.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>

#include "fan.h"

#define MAX_DEADLINE_MS (24u * 3600 * 1000)
#define MAX_FRESH_MS 60000u

/* Index of the per-kind policy answers for an event of @kind. */
int policy_of(uint32_t kind)
{
	return kind == VG_EV_EXEC;
}

/* 1 when @r is a response the kernel understands from us. */
static int response_ok(int32_t r)
{
	return r == VG_ALLOW || r == VG_DENY;
}

/* Check @in; -EINVAL when a value is out of range. */
static int settings_ok(const struct vg_fan_settings *in)
{
	if (!response_ok(in->on_queue_full_open) ||
	    !response_ok(in->on_queue_full_exec) ||
	    !response_ok(in->on_deadline_open) ||
	    !response_ok(in->on_deadline_exec))
		return -EINVAL;
	if (!in->deadline_ms || in->deadline_ms > MAX_DEADLINE_MS ||
	    in->fresh_ms > MAX_FRESH_MS || in->close_write_share > 100 ||
	    in->n_mark_fs > VG_MAX_MARK_FS)
		return -EINVAL;
	if ((in->n_watch && !in->watch) || (in->n_exclude && !in->exclude) ||
	    (in->n_exes && !in->exes) || (in->n_uids && !in->uids) ||
	    (in->n_interp_ids && !in->interp_ids) ||
	    (in->n_interp_sha256 && !in->interp_sha256))
		return -EINVAL;
	return 0;
}

/* A new snapshot from @in, holding one reference; -EINVAL or -ENOMEM. */
int settings_new(const struct vg_fan_settings *in, struct settings **out)
{
	struct settings *s;
	int ret = settings_ok(in);

	if (ret)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->filters = filters_new(in->watch, in->n_watch, in->exclude,
				 in->n_exclude, in->exes, in->n_exes, in->uids,
				 in->n_uids);
	s->interp = interp_new(in->interp_ids, in->n_interp_ids,
			       in->interp_sha256, in->n_interp_sha256);
	if (!s->filters || !s->interp) {
		filters_free(s->filters);
		interp_free(s->interp);
		free(s);
		return -ENOMEM;
	}
	s->refs = 1;
	s->generation = in->generation;
	s->deadline_ns = in->deadline_ms * 1000000ull;
	s->on_queue_full[0] = in->on_queue_full_open;
	s->on_queue_full[1] = in->on_queue_full_exec;
	s->on_deadline[0] = in->on_deadline_open;
	s->on_deadline[1] = in->on_deadline_exec;
	s->ignore_marks = !!in->ignore_marks;
	s->n_mark_fs = in->n_mark_fs;
	memcpy(s->mark_fs, in->mark_fs, sizeof(s->mark_fs));
	s->fresh_ns = in->fresh_ms * 1000000ull;
	s->close_write_share = in->close_write_share;
	s->exec_anywhere = !!in->exec_anywhere;
	s->empty_clean = !!in->empty_clean;
	s->large_bytes = in->large_bytes;
	s->large_lanes = in->large_lanes;
	*out = s;
	return 0;
}

/* A reference to the settings in force; the caller must have configured. */
struct settings *settings_get(struct vg_fan *fan)
{
	struct settings *s;

	pthread_rwlock_rdlock(&fan->settings_lock);
	s = fan->settings;
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&fan->settings_lock);
	return s;
}

/*
 * 1 when the file open at @fd lies on a filesystem of a type listed in
 * @set's mark_fs: a local filesystem whose writes reach us and whose sizes
 * are the truth (what ignore marks and the empty-file answer rely on).
 */
int settings_local_fs(const struct settings *set, int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs))
		return 0;
	for (uint32_t i = 0; i < set->n_mark_fs; i++)
		if (set->mark_fs[i] == (uint64_t)(unsigned long)sfs.f_type)
			return 1;
	return 0;
}

/* Drop a reference; the last one frees the snapshot. NULL is fine. */
void settings_put(struct settings *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL))
		return;
	filters_free(s->filters);
	interp_free(s->interp);
	free(s);
}
