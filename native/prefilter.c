/*
 * prefilter.c - answer what hashes alone can answer, in one C call.
 *
 * Owns no state: the hash database and the clean-content cache belong to
 * the caller, who keeps both alive for the duration of the call. Reads
 * the file once, through the caller's fd, into the caller's scan buffer
 * (so a scan that follows sees the bytes that were hashed), and computes
 * MD5 beside SHA-256 only when the database lists MD5 entries for a file
 * of this size.
 *
 * A file over the caller's limit (scan.max_file_size) costs no more than
 * the limit: it is not hashed, so neither the clean cache nor an
 * any-size hash entry can see it; only its head (and tail), holes
 * skipped, go to the buffer for the scanner. The one exception: when
 * the database has an entry carrying exactly this file's size, the file
 * is hashed whole (holes as zeros) and looked up, a cost bounded by the
 * sizes the admin listed, not by the attacker.
 *
 * Order: known-bad first (a listed hash wins over an earlier clean scan
 * with the same rules), then the clean-content cache.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "vigild.h"

/* The clean-content cache key: SHA-256 then rules generation. */
static void content_key(uint8_t *key, const uint8_t *sha256,
			uint64_t generation)
{
	memset(key, 0, VG_KEY_LEN);
	memcpy(key, sha256, VG_SHA256_LEN);
	memcpy(key + VG_SHA256_LEN, &generation, sizeof(generation));
}

/* Look the hashes in @r up in @db; fills verdict and name on a hit. */
static void check_known_bad(const struct vg_hashdb *db,
			    struct vg_prefilter_result *r)
{
	if (vg_hashdb_find_sha256(db, r->sha256, &r->name) ||
	    (r->has_md5 && vg_hashdb_find_md5(db, r->md5, r->size, &r->name)))
		r->verdict = VG_PRE_KNOWN_BAD;
}

/* Hash @fd (no more than @limit bytes), keeping its head in @keep. */
static int hash_into(const struct vg_hashdb *db, int fd, uint64_t size,
		     uint8_t *keep, uint64_t keep_len, uint64_t limit,
		     struct vg_prefilter_result *out)
{
	struct vg_hashdb_info info = { 0 };
	uint64_t n;
	int ret;

	if (db)
		vg_hashdb_info(db, &info);
	out->has_md5 = info.n_md5 && vg_hashdb_size_listed(db, size);
	ret = vg_hash_fd_limit(fd, keep, keep_len, limit, out->sha256,
			       out->has_md5 ? out->md5 : NULL, &n);
	if (ret)
		return ret;
	out->hashed = 1;
	out->size = n;
	out->head_len = keep ? (n < keep_len ? n : keep_len) : 0;
	return 0;
}

/*
 * A file of @size > @limit: hashed only if an entry carries its size;
 * its head and last @tail_len bytes (past the head) into @keep.
 */
static int over_limit(const struct vg_hashdb *db, int fd, uint64_t size,
		      uint64_t limit, uint8_t *keep, uint64_t tail_len,
		      struct vg_prefilter_result *out)
{
	int64_t n;
	int ret;

	out->oversize = 1;
	if (db && vg_hashdb_size_carried(db, size)) {
		ret = hash_into(db, fd, size, keep, keep ? limit : 0,
				UINT64_MAX, out);
		if (ret)
			return ret;
		check_known_bad(db, out);
	} else if (keep) {
		n = vg_read_span(fd, keep, 0, limit);
		if (n < 0)
			return (int)n;
		out->head_len = (uint64_t)n;
	}
	out->size = size;
	if (!keep || !tail_len)
		return 0;
	out->tail_off = size - tail_len > limit ? size - tail_len : limit;
	n = vg_read_span(fd, keep + limit, out->tail_off, size - out->tail_off);
	if (n < 0)
		return (int)n;
	out->tail_len = (uint64_t)n;
	return 0;
}

/*
 * Hash @fd and classify it: VG_PRE_KNOWN_BAD (with @out->name),
 * VG_PRE_CLEAN_CACHED, or VG_PRE_UNKNOWN (the scanner must look at the
 * @out->head_len bytes left in @keep, and @out->tail_len more at
 * @keep + @limit). @keep holds @limit + @tail_len bytes, or is NULL (a
 * file over @limit is then not read at all). @db, @clean may be NULL.
 * Returns 0 or -errno.
 */
int vg_prefilter_fd(const struct vg_hashdb *db, struct vg_cache *clean,
		    uint64_t generation, int fd, uint64_t limit, uint8_t *keep,
		    uint64_t tail_len, struct vg_prefilter_result *out)
{
	uint8_t key[VG_KEY_LEN], unused;
	struct stat st;
	uint64_t size;
	int ret;

	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st))
		return -errno;
	size = (uint64_t)st.st_size;
	ret = size > limit ? -EFBIG :
			     hash_into(db, fd, size, keep, limit, limit, out);
	if (ret == -EFBIG) {	/* over the limit, or grew past it */
		memset(out, 0, sizeof(*out));
		return over_limit(db, fd, size > limit ? size : limit + 1,
				  limit, keep, tail_len, out);
	}
	if (ret)
		return ret;
	if (db)
		check_known_bad(db, out);
	if (out->verdict == VG_PRE_UNKNOWN && clean) {
		content_key(key, out->sha256, generation);
		if (vg_cache_get(clean, key, &unused))
			out->verdict = VG_PRE_CLEAN_CACHED;
	}
	return 0;
}

/* Remember that @sha256 scanned clean under rules @generation. */
void vg_clean_put(struct vg_cache *clean, const uint8_t *sha256,
		  uint64_t generation)
{
	uint8_t key[VG_KEY_LEN];

	content_key(key, sha256, generation);
	vg_cache_put(clean, key, 1);
}
