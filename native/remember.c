/*
 * remember.c - what vigild remembers about files between opens: the
 * verdict cache, the write epochs and the kernel ignore marks.
 *
 * Owns, under cache_lock: the contents of the verdict cache and of the
 * set of inodes found malicious, the write epochs, and every decision to add or drop an ignore mark; also the swap
 * of the settings pointer (settings_lock held inside cache_lock), so that
 * code under cache_lock always sees the settings in force. Must not touch
 * the job slots or q_lock, and never answers an event: the caller answers
 * (jobs.c, reader.c). Calls only respond.c (marks), settings.c and lru.c.
 *
 * Kernel ignore marks: a file found clean gets an evictable inode mark
 * whose ignored mask holds our permission events, so the next open of
 * the unchanged file raises no event at all. The kernel clears that mask
 * on write() and truncate, but not on a write through a shared mmap:
 * every close-write therefore drops the mark (remember_invalidate), and a
 * rules change flushes all of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>

#include "fan.h"

/*
 * In a cached clean verdict: the file is on a filesystem whose shared
 * mappings are not write-notified (and only root can write it), so it
 * holds only while nobody has the file open for writing
 * (remember_clean_value). Never sent to the kernel.
 */
#define CHECK_WRITERS 0x80

/* The verdict cache key of a file's state under rules @generation. */
static void file_key(uint8_t *key, const struct stat *st, uint64_t generation)
{
	uint64_t v[6] = { st->st_dev, st->st_ino, (uint64_t)st->st_ctim.tv_sec,
			  (uint64_t)st->st_ctim.tv_nsec, (uint64_t)st->st_size,
			  generation };

	_Static_assert(sizeof(v) == VG_KEY_LEN, "key is six words");
	memcpy(key, v, sizeof(v));
}

/* Which write-epoch counter tracks the inode of @st. */
static uint32_t epoch_slot(const struct stat *st)
{
	uint64_t h = (st->st_dev * 0x9e3779b97f4a7c15ull) ^ st->st_ino;

	h *= 0xff51afd7ed558ccdull;
	return (uint32_t)(h >> 40) % EPOCHS;
}

/*
 * The write epoch of @st's inode now. Only readers call this and bump
 * epochs (under cache_lock); a file's events all come from one group, so
 * from one reader, and the others only share counters by hash: an atomic
 * read is enough, no lock.
 */
uint32_t remember_epoch(struct vg_fan *fan, const struct stat *st)
{
	return __atomic_load_n(&fan->epochs[epoch_slot(st)], __ATOMIC_RELAXED);
}

/* Bump the write epoch at @i; caller holds cache_lock. */
static void epoch_bump(struct vg_fan *fan, uint32_t i)
{
	__atomic_add_fetch(&fan->epochs[i], 1, __ATOMIC_RELAXED);
}

/* Look @st (open at @fd) up under @set's generation; 1 and @response on
 * a hit. A clean verdict that holds only without writers is a miss while
 * anyone has the file open for writing: the file is scanned as it is. */
int remember_lookup(struct vg_fan *fan, const struct settings *set, int fd,
		    const struct stat *st, int *response)
{
	uint8_t key[VG_KEY_LEN], value;

	file_key(key, st, set->generation);
	if (!vg_cache_get(fan->verdicts, key, &value))
		return 0;
	if ((value & CHECK_WRITERS) && !remember_no_writers(fd))
		return 0;
	*response = value & ~CHECK_WRITERS;
	return 1;
}

/*
 * A file was closed after writing: whatever we cached about it no longer
 * holds. Bump its write epoch (so a scan now in flight does not cache its
 * result), drop its verdict and its ignore mark. The settings in force are
 * read under cache_lock, not from the event's snapshot: a mark made under
 * newer settings is dropped too.
 */
void remember_invalidate(struct vg_fan *fan, uint32_t group, int fd,
			 const struct stat *st)
{
	uint8_t key[VG_KEY_LEN];

	pthread_mutex_lock(&fan->cache_lock);
	epoch_bump(fan, epoch_slot(st));
	file_key(key, st, fan->settings->generation);
	vg_cache_del(fan->verdicts, key);
	if (fan->settings->ignore_marks)
		respond_ignore(fan, group, fd, 0);
	pthread_mutex_unlock(&fan->cache_lock);
	fan_count(&fan->stats.invalidations);
}

/* The detected-set key of @st's inode: device and inode number only. Its
 * ctime changes when a name of it is unlinked (a quarantine), so the set
 * must not key on it; the entry only makes the next open be scanned. */
static void inode_key(uint8_t *key, const struct stat *st)
{
	uint64_t v[6] = { st->st_dev, st->st_ino, 0, 0, 0, 0 };

	memcpy(key, v, sizeof(v));
}

/*
 * 1 when @st's inode was found malicious and has not been found clean
 * since: its open is scanned whatever the name, the watched paths
 * notwithstanding (a hard link outside them, or the name left after a
 * quarantine, serves the same bytes). The set never answers by itself.
 */
int remember_detected(struct vg_fan *fan, const struct stat *st)
{
	uint8_t key[VG_KEY_LEN], value;

	inode_key(key, st);
	return vg_cache_get(fan->detected, key, &value);
}

/* The kernel dropped events: nothing cached can be trusted any more. */
void remember_forget_all(struct vg_fan *fan)
{
	pthread_mutex_lock(&fan->cache_lock);
	for (uint32_t i = 0; i < EPOCHS; i++)
		epoch_bump(fan, i);
	vg_cache_clear(fan->verdicts);
	respond_flush_marks(fan);
	pthread_mutex_unlock(&fan->cache_lock);
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

/*
 * Put @s in force, returning the old settings in @old (the caller drops
 * that reference). A new generation makes cached verdicts and ignore
 * marks stop counting at once: the cache key carries the generation, and
 * every inode mark is flushed under cache_lock, so no mark made with the
 * old rules can be added after the flush. 0, or a failed flush's -errno
 * (the settings are swapped all the same).
 */
int remember_switch(struct vg_fan *fan, struct settings *s,
		    struct settings **old)
{
	int ret = 0;

	pthread_mutex_lock(&fan->cache_lock);
	*old = fan->settings;
	if (marks_stale(*old, s)) {
		if (!*old || (*old)->generation != s->generation)
			vg_cache_clear(fan->verdicts);
		ret = respond_flush_marks(fan);
	}
	pthread_rwlock_wrlock(&fan->settings_lock);
	fan->settings = s;
	pthread_rwlock_unlock(&fan->settings_lock);
	pthread_mutex_unlock(&fan->cache_lock);
	return ret;
}

/*
 * 1 when the file behind @s's fd still has the state it was queued with;
 * its current stat in @st.
 */
static int unchanged(const struct slot *s, struct stat *st)
{
	return !fstat(s->job.fd, st) && (uint64_t)st->st_size == s->job.size &&
	       st->st_ctim.tv_sec == s->job.ctime_sec &&
	       st->st_ctim.tv_nsec == s->job.ctime_nsec;
}

/*
 * 1 when the file of @st had last changed more than @fresh_ns before
 * @since_rt_ns (CLOCK_REALTIME): for a job, its queueing, that is before
 * its bytes were read. On kernels before multigrain timestamps (6.13) a
 * rewrite within the same clock tick can keep its ctime; one a window
 * after it cannot. A filesystem that keeps whole seconds only (ext2/3,
 * ext4 with 128-byte inodes) keeps the ctime for the rest of the second,
 * whatever the kernel: its ctime ends in .000000000, and the window counts
 * from the end of that second (fan_ctime_end_ns). (A deny is cached
 * anyway: stale, it only over-blocks.)
 */
static int settled(uint64_t since_rt_ns, uint64_t fresh_ns,
		   const struct stat *st)
{
	return since_rt_ns >= fan_ctime_end_ns(st->st_ctim.tv_sec,
					       st->st_ctim.tv_nsec) + fresh_ns;
}

/*
 * 1 when nobody has the file open for writing, writable shared mappings
 * included: a read lease is refused (EAGAIN) while anyone does. Such a
 * writer could change bytes already read without a new ctime (a page
 * dirtied before the scan is rewritten without a fault), so a clean
 * verdict is not cached then. Needs CAP_LEASE for others' files; any
 * failure (a filesystem without leases) also means "not proven".
 *
 * Asked twice for a verdict that is cached: when a worker takes the job,
 * before it reads a byte (jobs.c: slot.writers_clear), and again when the
 * verdict is stored. The second alone proves nothing about the read: a
 * writer holding a mapping it dirtied before can rewrite what was read
 * with no new ctime and close before the store, unseen where its
 * close-write is not (a mount mark, a writer in another mount). With no
 * writer before the read, any writer since had to open the file again and
 * write to it, or fault a page of a new mapping, which sets a new ctime.
 */
int remember_no_writers(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK))
		return 0;
	fcntl(fd, F_SETLEASE, F_UNLCK);
	return 1;
}

/*
 * tmpfs, ramfs and hugetlbfs map a page writable at its first fault, read
 * or write, and mark nothing later (no write notification: no
 * page_mkwrite, no file_update_time): a writer can change cached bytes
 * under the ctime that keys them, for as long as it holds the file. An
 * overlay shows its upper file's ctime (tmpfs's, say), and that file can
 * be mapped and written through its own path, which a lease on the
 * overlay's file does not see. Unknown: nothing.
 */
int vg_ctime_proof(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs))
		return -errno;
	if (sfs.f_type == OVERLAYFS_SUPER_MAGIC)
		return VG_CTIME_NOTHING;
	if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC ||
	    sfs.f_type == HUGETLBFS_MAGIC)
		return VG_CTIME_WITHOUT_WRITERS;
	return VG_CTIME_PROVES;
}

/*
 * The verdict cache value of a clean verdict on the file open at @fd (its
 * stat @st), read by group @group; -1 when none may be kept (found by
 * review). Where mapped writes set no ctime the bytes can change under a
 * kept ctime: through a mapping read-faulted in, and with no writer open
 * at all through a page a user pinned for io_uring (a fixed buffer) and
 * writes from the kernel later. So there only a file only root can write
 * is remembered, and only while nobody has it open for writing, checked
 * at each hit (a writer's close-write drops it); and not even that where
 * the close-write may go unseen: with a mount mark (a writer through
 * another mount), and before Linux 6.5, where a write through an overlay
 * raised no event on its upper file (fan.c backing_close_seen).
 */
int remember_clean_value(struct vg_fan *fan, uint32_t group, int fd,
			 const struct stat *st)
{
	switch (vg_ctime_proof(fd)) {
	case VG_CTIME_PROVES:
		return VG_ALLOW;
	case VG_CTIME_WITHOUT_WRITERS:
		if (fan_root_only(st) && fan->backing_close_seen &&
		    !__atomic_load_n(&fan->groups[group].mount_marked,
				     __ATOMIC_RELAXED))
			return VG_ALLOW | CHECK_WRITERS;
		return -1;
	default:
		return -1;
	}
}

/*
 * 1 when a clean file may get a kernel ignore mark. The mark hides every
 * later open, the open of a writer included, and a write through a shared
 * mmap does not clear it: so only files that only root can write, on a
 * local filesystem of a type listed in mark_fs (a remote writer never
 * clears a mark either).
 */
static int markable(const struct settings *set, int fd, const struct stat *st)
{
	return fan_root_only(st) && settings_local_fs(set, fd);
}

/* The freshness window of clean verdicts in the settings in force. */
static uint64_t fresh_window(struct vg_fan *fan)
{
	struct settings *set = settings_get(fan);
	uint64_t ns = set->fresh_ns;

	settings_put(set);
	return ns;
}

/* Give the clean file of @s an ignore mark, unless a write raced it.
 * Caller holds cache_lock. */
static void mark_clean(struct vg_fan *fan, const struct slot *s)
{
	struct stat now;

	respond_ignore(fan, s->group, s->job.fd, 1);
	if (!unchanged(s, &now))
		respond_ignore(fan, s->group, s->job.fd, 0);
}

/*
 * Put @response for the file of @st in the verdict cache if the rules are
 * still @generation and its inode's write epoch still @epoch; an allow
 * also forgets that the inode was found malicious, a deny records it.
 * 1 when put. Caller holds cache_lock.
 */
static int put_locked(struct vg_fan *fan, const struct stat *st,
		      uint32_t epoch, uint64_t generation, int response)
{
	uint8_t key[VG_KEY_LEN];

	if (generation != fan->settings->generation ||
	    remember_epoch(fan, st) != epoch)
		return 0;
	file_key(key, st, generation);
	vg_cache_put(fan->verdicts, key, (uint8_t)response);
	inode_key(key, st);
	if ((response & ~CHECK_WRITERS) == VG_ALLOW)
		vg_cache_del(fan->detected, key);
	else
		vg_cache_put(fan->detected, key, 1);
	return 1;
}

/* Store @s's verdict (put_locked) and, with @mark, give a clean file its
 * ignore mark if markable(). 1 when stored. */
static int store(struct vg_fan *fan, const struct slot *s,
		 const struct stat *st, uint64_t generation, int mark)
{
	struct settings *set;
	int stored, value = s->response;

	if (value == VG_ALLOW) {
		value = remember_clean_value(fan, s->group, s->job.fd, st);
		if (value < 0)
			return 0;
	}
	pthread_mutex_lock(&fan->cache_lock);
	set = fan->settings;
	stored = put_locked(fan, st, s->epoch, generation, value);
	if (stored && s->response == VG_ALLOW && mark && set->ignore_marks &&
	    markable(set, s->job.fd, st))
		mark_clean(fan, s);
	pthread_mutex_unlock(&fan->cache_lock);
	return stored;
}

/*
 * Cache @s's verdict (s->response) under @generation, and give a clean
 * file its ignore mark if @cache allows and markable(); nothing if the
 * rules or the file changed since the job was queued (the write epoch
 * catches a close-write already handled by the reader), nor, for a clean
 * verdict, while anyone holds the file open for writing. 1 when cached,
 * 0 when not, -EAGAIN for a clean verdict on a file that changed within
 * the freshness window before it was queued (settle.c may store it later).
 */
int remember_verdict(struct vg_fan *fan, const struct slot *s, int cache,
		     uint64_t generation)
{
	int allow = s->response == VG_ALLOW;
	struct stat st;

	if (!unchanged(s, &st) || (allow && !remember_no_writers(s->job.fd)))
		return 0;
	if (allow && !settled(s->queued_rt_ns, fresh_window(fan), &st))
		return -EAGAIN;
	if (allow && !s->writers_clear)
		return 0;	/* maybe rewritten during the read, ctime kept */
	return store(fan, s, &st, generation, cache & VG_CACHE_MARK);
}

/* 1 when the bytes behind @fd, read again from the start, have SHA-256
 * @sha256 and are @size long. */
static int same_bytes(int fd, uint64_t size, const uint8_t *sha256)
{
	uint8_t now[VG_SHA256_LEN];
	uint64_t n = 0;

	return !vg_hash_fd(fd, now, NULL, &n) && n == size &&
	       !memcmp(now, sha256, sizeof(now));
}

/*
 * 1 when the clean verdict of settling entry @e holds for the file as it
 * is now (settle.c says why this order of checks is enough): the time
 * first, then the file's stat (into @st) and its write epoch (into
 * @epoch), its freshness window passed by that time, no writer, and its
 * bytes, read again, those that were scanned (their SHA-256, and their
 * size). The ctime may differ from the scan's: a rename or a chmod since
 * sets a new one, and the bytes are compared anyway. Takes no lock, not
 * even the settings' (the window is the one the entry was kept under).
 */
int remember_verify(struct vg_fan *fan, const struct settling *e,
		    struct stat *st, uint32_t *epoch)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (fstat(e->fd, st))
		return 0;
	*epoch = remember_epoch(fan, st);
	return (uint64_t)st->st_size == e->size &&
	       settled((uint64_t)now.tv_sec * 1000000000ull +
			       (uint64_t)now.tv_nsec,
		       e->fresh_ns, st) &&
	       remember_no_writers(e->fd) && same_bytes(e->fd, e->size, e->sha256);
}

/* Store a verified clean verdict (remember_verify) for the file of @st,
 * as @value (remember_clean_value), if the rules and its write epoch are
 * still @generation and @epoch. Verdict cache only: never an ignore mark.
 * 1 when stored. */
int remember_store_settled(struct vg_fan *fan, const struct stat *st,
			   uint32_t epoch, uint64_t generation, int value)
{
	int stored;

	pthread_mutex_lock(&fan->cache_lock);
	stored = put_locked(fan, st, epoch, generation, value);
	pthread_mutex_unlock(&fan->cache_lock);
	return stored;
}
