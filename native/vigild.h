/*
 * vigild.h - the whole C surface of vigild's native part.
 *
 * The text between CDEF-BEGIN and CDEF-END is read verbatim by
 * build_native.py as the cffi cdef, so Python and C cannot drift apart.
 * Inside that region: declarations and plain integer #defines only.
 *
 * Conventions for every function here: return 0 (or a count) on success
 * and -errno on failure; never log; never call back into Python; keep all
 * state in a handle that the caller owns and frees.
 */
#ifndef VIGILD_H
#define VIGILD_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */

#define VG_SHA256_LEN 32
#define VG_MD5_LEN 16
#define VG_SHA1_LEN 20

/* Format version of the hash database; another version is refused. */
#define VG_HASHDB_VERSION 2

/*
 * Hash database record layouts that the caller hands to vg_hashdb_write,
 * little-endian, packed:
 *   sha256 record: hash[32] size:u64 name_offset:u32   (44 bytes)
 *   md5 record:    hash[16] size:u64 name_offset:u32   (28 bytes)
 *   sha1 record:   hash[20] size:u64 name_offset:u32   (32 bytes)
 * size VG_SIZE_ANY means "any size" (ClamAV's '*').
 */
#define VG_SHA256_REC_LEN 44
#define VG_MD5_REC_LEN 28
#define VG_SHA1_REC_LEN 32
#define VG_SIZE_ANY 0xffffffffffffffff

/* hash.c: content hashes read through the caller's fd (never a path). */
int vg_hash_fd(int fd, uint8_t *sha256, uint8_t *md5_or_null,
	       uint64_t *nbytes);
int vg_hash_fd_keep(int fd, uint8_t *keep, uint64_t keep_len, uint8_t *sha256,
		    uint8_t *md5_or_null, uint64_t *nbytes);
int vg_hash_fd_limit(int fd, uint8_t *keep, uint64_t keep_len, uint64_t limit,
		     uint8_t *sha256, uint8_t *md5_or_null, uint64_t *nbytes);
int vg_hash_fd_all(int fd, uint8_t *keep, uint64_t keep_len, uint64_t limit,
		   uint8_t *sha256, uint8_t *md5_or_null, uint8_t *sha1_or_null,
		   uint64_t *nbytes);
int64_t vg_read_span(int fd, uint8_t *dst, uint64_t off, uint64_t len);

/* hashdb.c: the memory-mapped known-bad hash database. */
struct vg_hashdb;

struct vg_hashdb_info {
	uint32_t version;
	uint32_t n_sha256;
	uint32_t n_md5;
	uint32_t n_sizes;
	uint64_t names_len;
	uint64_t file_size;
	uint32_t any_size;
	uint32_t crc;		/* of the whole file: names this database's content */
	uint32_t n_sha1;
};

/* vg_hashdb_digests_for: the digests beside SHA-256 a file could match by. */
#define VG_DIGEST_MD5 1
#define VG_DIGEST_SHA1 2

int vg_hashdb_write(const char *path, const uint8_t *sha_recs, uint32_t n_sha,
		    const uint8_t *md5_recs, uint32_t n_md5,
		    const uint8_t *sha1_recs, uint32_t n_sha1,
		    const char *names, uint64_t names_len);
int vg_hashdb_open(const char *path, struct vg_hashdb **out);
void vg_hashdb_close(struct vg_hashdb *db);
void vg_hashdb_info(const struct vg_hashdb *db, struct vg_hashdb_info *out);
int vg_hashdb_size_listed(const struct vg_hashdb *db, uint64_t size);
int vg_hashdb_size_carried(const struct vg_hashdb *db, uint64_t size);
int vg_hashdb_find_sha256(const struct vg_hashdb *db, const uint8_t *sha256,
			  const char **name);
int vg_hashdb_find_md5(const struct vg_hashdb *db, const uint8_t *md5,
		       uint64_t size, const char **name);
int vg_hashdb_find_sha1(const struct vg_hashdb *db, const uint8_t *sha1,
			uint64_t size, const char **name);
int vg_hashdb_digests_for(const struct vg_hashdb *db, uint64_t size);

/*
 * hashlist.c: hash lists read in C into a builder, then written as one
 * database. A line it does not read is named in the result (-EILSEQ).
 */
struct vg_hashlist;

struct vg_hashlist_result {
	uint64_t lines;		/* lines read */
	uint64_t entries;	/* entries added */
	uint64_t sha1;		/* SHA-1 entries among them */
	uint64_t bad_line;	/* on -EILSEQ: the line, from 1 */
	uint64_t bad_offset;	/* ... its file offset */
	uint64_t bad_length;	/* ... its length, terminator aside */
};

int vg_hashlist_new(struct vg_hashlist **out);
int vg_hashlist_spill(struct vg_hashlist *l, const char *dir,
		      uint64_t run_bytes, uint64_t names_bytes);
void vg_hashlist_free(struct vg_hashlist *l);
int vg_hashlist_parse(struct vg_hashlist *l, int fd, const char *stem,
		      struct vg_hashlist_result *out);
int vg_hashlist_add(struct vg_hashlist *l, const uint8_t *hash,
		    uint32_t hash_len, uint64_t size, const char *name,
		    uint64_t name_len);
void vg_hashlist_counts(const struct vg_hashlist *l, uint32_t *n_sha256,
			uint32_t *n_md5, uint32_t *n_sha1);
int vg_hashlist_write(struct vg_hashlist *l, const char *path);

/* lru.c: a bounded, thread-safe, set-associative cache of 48-byte keys. */
#define VG_KEY_LEN 48

struct vg_cache;

struct vg_cache_stats {
	uint64_t capacity;
	uint64_t entries;
	uint64_t hits;
	uint64_t misses;
	uint64_t inserts;
	uint64_t evictions;
};

int vg_cache_new(uint32_t capacity, struct vg_cache **out);
void vg_cache_free(struct vg_cache *cache);
int vg_cache_get(struct vg_cache *cache, const uint8_t *key, uint8_t *value);
void vg_cache_put(struct vg_cache *cache, const uint8_t *key, uint8_t value);
int vg_cache_del(struct vg_cache *cache, const uint8_t *key);
void vg_cache_stats(struct vg_cache *cache, struct vg_cache_stats *out);
void vg_cache_clear(struct vg_cache *cache);
uint32_t vg_cache_export(struct vg_cache *cache, uint8_t *keys, uint32_t max);
void vg_cache_import(struct vg_cache *cache, const uint8_t *keys, uint32_t n,
		     uint8_t value);

/* prefilter.c: hash an fd once, then known-bad and clean-content look-ups. */
#define VG_PRE_UNKNOWN 0
#define VG_PRE_KNOWN_BAD 1
#define VG_PRE_CLEAN_CACHED 2

struct vg_prefilter_result {
	uint64_t size;		/* bytes hashed; st_size when over the limit */
	int32_t oversize;	/* over the limit: the head (and tail) kept */
	int32_t hashed;		/* sha256 (and the look-ups) are valid */
	uint64_t head_len;	/* bytes kept at keep[0..] */
	uint64_t tail_off;	/* file offset of the bytes at keep[limit..] */
	uint64_t tail_len;
	uint8_t sha256[32];
	uint8_t md5[16];
	int32_t has_md5;
	uint8_t sha1[20];
	int32_t has_sha1;
	int32_t verdict;
	const char *name;
};

int vg_prefilter_fd(const struct vg_hashdb *db, struct vg_cache *clean,
		    uint64_t generation, int fd, uint64_t limit, uint8_t *keep,
		    uint64_t tail_len, struct vg_prefilter_result *out);
void vg_clean_put(struct vg_cache *clean, const uint8_t *sha256,
		  uint64_t generation);

/*
 * fan.c, reader.c, jobs.c, filters.c: on-access blocking with fanotify.
 * A C reader thread per fanotify group (one group per marked filesystem)
 * answers what it can at once and queues the rest; workers take jobs with vg_fan_next (blocking in C), answer (and cache)
 * with vg_fan_answer, then release the job with vg_fan_done.
 */
#define VG_EV_OPEN 1
#define VG_EV_EXEC 2
#define VG_EV_CLOSE_WRITE 4

#define VG_ALLOW 1
#define VG_DENY 2

#define VG_MARK_FILESYSTEM 1
#define VG_MARK_MOUNT 2

/* vg_fan_answer's @cache: remember the verdict by inode state; and (for a
 * clean file) add a kernel ignore mark, which survives a rename. */
#define VG_CACHE_VERDICT 1
#define VG_CACHE_MARK 2

/* vg_job's @flags: its opener runs a program not yet known to be an
 * interpreter or not (vg_fan_classify tells); the file lies outside the
 * watched paths (allowed unless the opener is an interpreter). */
#define VG_JOB_CLASSIFY 1
#define VG_JOB_OUTSIDE 2

#define VG_PATH_MAX 4096
#define VG_LATENCY_BUCKETS 24

/* fanotify groups in one handle: one per marked filesystem (fan.h says why) */
#define VG_MAX_GROUPS 32

/* Fixed for the life of a group. */
struct vg_fan_config {
	uint32_t events;	/* VG_EV_* to act on */
	uint32_t queue_size;	/* events waiting or being scanned */
	uint32_t cache_entries;	/* verdict cache */
	uint32_t settle_entries;	/* fresh clean verdicts that may wait
					 * for their window (settle.c), an fd
					 * each; 0: none wait */
};

#define VG_MAX_MARK_FS 16

/* Everything the C side keeps from the config that a reload may change:
 * applied whole by vg_fan_configure, at start and at every reload. */
struct vg_fan_settings {
	uint64_t generation;	/* rules generation of new verdicts */
	uint32_t deadline_ms;	/* answer by policy after this long */
	int32_t on_queue_full_open;	/* VG_ALLOW / VG_DENY, open events */
	int32_t on_queue_full_exec;	/* ... exec events */
	int32_t on_deadline_open;
	int32_t on_deadline_exec;
	int32_t ignore_marks;	/* kernel ignore marks for clean files */
	uint32_t n_mark_fs;	/* statfs f_type values where marks may go */
	uint64_t mark_fs[16];
	uint32_t fresh_ms;	/* changed this recently: not cached clean */
	uint32_t close_write_share;	/* percent of slots close-writes may hold */
	int32_t exec_anywhere;	/* execs scanned outside the watch too */
	int32_t empty_clean;	/* an empty file is clean under these rules,
				 * whatever its name: answered by the reader */
	uint64_t large_bytes;	/* a job for a file over this is large */
	uint32_t large_lanes;	/* workers large jobs may hold; 0: no limit */
	const char *const *watch;	/* path prefixes scanned; none = all */
	uint32_t n_watch;
	const char *const *exclude;	/* path prefixes never scanned */
	uint32_t n_exclude;
	const char *const *exes;	/* executables never scanned */
	uint32_t n_exes;
	const uint32_t *uids;	/* users never scanned */
	uint32_t n_uids;
	/* interpreters and the loader: an open by one is checked like an
	 * exec (interp.c). Their files, as (dev, ino) pairs, and the SHA-256
	 * of their contents (a copy elsewhere is recognised by it) */
	const uint64_t *interp_ids;	/* 2 * n_interp_ids words */
	uint32_t n_interp_ids;
	const uint8_t *interp_sha256;	/* 32 * n_interp_sha256 bytes */
	uint32_t n_interp_sha256;
};

struct vg_job {
	uint64_t id;
	int32_t fd;		/* the event's fd; valid until vg_fan_done */
	int32_t pid;		/* the opener */
	uint32_t kind;		/* one VG_EV_* */
	uint32_t uid;		/* file owner */
	uint32_t flags;		/* VG_JOB_* */
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t ctime_sec;
	int64_t ctime_nsec;
	uint64_t queued_ns;	/* CLOCK_MONOTONIC */
	uint64_t generation;	/* rules generation when queued */
	char path[4096];
};

struct vg_fan_stats {
	uint64_t events;	/* records read from the group */
	uint64_t perm_events;
	uint64_t notify_events;
	uint64_t self_allowed;	/* our own pid */
	uint64_t filtered;	/* not a regular file, or outside the watch */
	uint64_t excluded;	/* excluded path, executable or user */
	uint64_t cache_allow;
	uint64_t cache_deny;
	uint64_t queued;
	uint64_t queue_full;	/* answered by policy: no room */
	uint64_t notify_dropped;	/* close-write scans dropped: no room */
	uint64_t deadline_passed;	/* answered by policy: too slow */
	uint64_t answered_allow;
	uint64_t answered_deny;
	uint64_t late_results;	/* scans finished after their deadline */
	uint64_t ignore_marks;
	uint64_t invalidations;	/* close-writes that dropped cached state */
	uint64_t overflows;	/* kernel queue overflows */
	uint64_t errors;
	uint64_t interp_opens;	/* opens by an interpreter: checked as execs */
	uint64_t exe_unknown;	/* queued to learn what the opener runs */
	uint64_t exe_learned;	/* programs hashed and remembered */
	uint64_t empty;		/* empty files answered at once (created, truncated) */
	uint64_t settled;	/* clean verdicts on just-written files checked
				 * once their window passed, stored by the
				 * readers at their next read (settle.c) */
	uint64_t unopened;	/* events whose file the kernel could not
				 * open for us (a write lease on it): an
				 * opener denied, a close-write not scanned */
	uint64_t queue_depth;	/* waiting now */
	uint64_t in_flight;	/* waiting or being scanned now */
	uint64_t reads;		/* read() calls that returned, all groups */
	uint64_t groups;	/* fanotify groups (one per marked filesystem) */
	uint64_t kernel_pending;	/* bytes of events not yet read, now */
	uint64_t reader_stuck_ms;	/* longest a reader with events pending
					 * in its group has not come back from
					 * poll() or read(); 0: nothing pending */
	uint64_t latency_us[24];	/* answers by time to answer, 2^i us */
};

struct vg_fan;

int vg_fan_open(const struct vg_fan_config *cfg, struct vg_fan **out);
int vg_fan_adopt(const struct vg_fan_config *cfg, int fd, struct vg_fan **out);
int vg_fan_adopt_group(struct vg_fan *fan, int fd);
int vg_fan_mark(struct vg_fan *fan, const char *path, int how);
int vg_fan_configure(struct vg_fan *fan, const struct vg_fan_settings *s);
int vg_fan_start(struct vg_fan *fan);
int vg_fan_next(struct vg_fan *fan, struct vg_job *job, int timeout_ms);
int vg_fan_answer(struct vg_fan *fan, uint64_t id, int response, int cache,
		  uint64_t generation, const uint8_t *sha256);
int vg_fan_done(struct vg_fan *fan, uint64_t id);
int vg_fan_classify(struct vg_fan *fan, uint64_t id, int exe_fd,
		    const uint8_t *sha256);
void vg_fan_stats(struct vg_fan *fan, struct vg_fan_stats *out);
int vg_fan_stop(struct vg_fan *fan);
void vg_fan_free(struct vg_fan *fan);

void vg_name_thread(const char *name);

/* How far the file open at @fd can be known unchanged by its ctime, by its
 * filesystem (remember.c): one of these, or -errno. */
#define VG_CTIME_PROVES 0
#define VG_CTIME_WITHOUT_WRITERS 1
#define VG_CTIME_NOTHING 2
int vg_ctime_proof(int fd);
/* 1 when kernel @release ("6.12.48+deb13-amd64") is at least @major.@minor. */
int vg_kernel_at_least(const char *release, unsigned int major,
		       unsigned int minor);

/* CDEF-END */

/* Internal helpers shared between C files; not part of the cdef. */
uint32_t vg_crc32c(uint32_t crc, const void *buf, size_t len);

/* One hash entry on its way into a database (hashlist.c -> hashwrite.c). */
struct vg_hashrec {
	unsigned char hash[32];	/* an MD5 or SHA-1 zero-padded */
	uint64_t size;		/* VG_SIZE_ANY: any size */
	uint32_t name;		/* offset in the names */
	uint32_t order;		/* table << 30 | input position (VG_SEQ_MAX) */
};

#define VG_SEQ_MAX (1u << 30)	/* entries a builder takes, all tables */
#define VG_REC_TABLE(r) ((int)((r)->order >> 30))

/* hashsort.c: records sorted in bounded runs (spilled to a file), merged. */
struct vg_runs;
int vg_runs_new(struct vg_runs **out, const char *dir, uint64_t run_bytes);
void vg_runs_free(struct vg_runs *r);
int vg_runs_push(struct vg_runs *r, int table, const unsigned char *hash,
		 uint64_t size, uint32_t name);
uint32_t vg_runs_seq(const struct vg_runs *r);
int vg_runs_drop_from(struct vg_runs *r, uint32_t seq);
int vg_runs_rewind(struct vg_runs *r);
int vg_runs_next(struct vg_runs *r, struct vg_hashrec *out);
int vg_tmpfile(const char *dir);
int vg_pread_all(int fd, void *buf, size_t len, uint64_t off);
int vg_write_all(int fd, const void *buf, size_t len);

/* hashnames.c: entry names, each stored once, spilled to a file past a budget. */
struct vg_names;
int vg_names_new(struct vg_names **out, const char *dir, uint64_t resident);
void vg_names_free(struct vg_names *n);
int64_t vg_names_add(struct vg_names *n, const unsigned char *p, size_t len);
void vg_names_prefetch(const struct vg_names *n, const unsigned char *p,
		       size_t len);
int vg_names_adopt(struct vg_names *n, const char *blob, uint64_t len);
uint64_t vg_names_len(const struct vg_names *n);
int vg_names_truncate(struct vg_names *n, uint64_t len);
void vg_names_drop_index(struct vg_names *n);
int64_t vg_names_read(struct vg_names *n, uint64_t off, void *buf, size_t len);

/* hashwrite.c: the database file, streamed from merged runs and names. */
int vg_hashdb_stream(const char *path, struct vg_runs *runs,
		     struct vg_names *names, const uint32_t n_raw[3]);

#endif /* VIGILD_H */
