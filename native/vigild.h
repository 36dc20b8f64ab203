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

/*
 * Hash database record layouts that the caller hands to vg_hashdb_write,
 * little-endian, packed:
 *   sha256 record: hash[32] size:u64 name_offset:u32   (44 bytes)
 *   md5 record:    hash[16] size:u64 name_offset:u32   (28 bytes)
 * size VG_SIZE_ANY means "any size" (ClamAV's '*').
 */
#define VG_SHA256_REC_LEN 44
#define VG_MD5_REC_LEN 28
#define VG_SIZE_ANY 0xffffffffffffffff

/* hash.c: content hashes read through the caller's fd (never a path). */
int vg_hash_fd(int fd, uint8_t *sha256, uint8_t *md5_or_null,
	       uint64_t *nbytes);
int vg_hash_fd_keep(int fd, uint8_t *keep, uint64_t keep_len, uint8_t *sha256,
		    uint8_t *md5_or_null, uint64_t *nbytes);

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
};

int vg_hashdb_write(const char *path, const uint8_t *sha_recs, uint32_t n_sha,
		    const uint8_t *md5_recs, uint32_t n_md5,
		    const char *names, uint64_t names_len);
int vg_hashdb_open(const char *path, struct vg_hashdb **out);
void vg_hashdb_close(struct vg_hashdb *db);
void vg_hashdb_info(const struct vg_hashdb *db, struct vg_hashdb_info *out);
int vg_hashdb_size_listed(const struct vg_hashdb *db, uint64_t size);
int vg_hashdb_find_sha256(const struct vg_hashdb *db, const uint8_t *sha256,
			  const char **name);
int vg_hashdb_find_md5(const struct vg_hashdb *db, const uint8_t *md5,
		       uint64_t size, const char **name);

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
void vg_cache_stats(struct vg_cache *cache, struct vg_cache_stats *out);
void vg_cache_clear(struct vg_cache *cache);

/* prefilter.c: hash an fd once, then known-bad and clean-content look-ups. */
#define VG_PRE_UNKNOWN 0
#define VG_PRE_KNOWN_BAD 1
#define VG_PRE_CLEAN_CACHED 2

struct vg_prefilter_result {
	uint64_t size;
	uint8_t sha256[32];
	uint8_t md5[16];
	int32_t has_md5;
	int32_t verdict;
	const char *name;
};

int vg_prefilter_fd(const struct vg_hashdb *db, struct vg_cache *clean,
		    uint64_t generation, int fd, uint8_t *keep,
		    uint64_t keep_len, struct vg_prefilter_result *out);
void vg_clean_put(struct vg_cache *clean, const uint8_t *sha256,
		  uint64_t generation);

/* CDEF-END */

/* Internal helpers shared between C files; not part of the cdef. */
uint32_t vg_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* VIGILD_H */
