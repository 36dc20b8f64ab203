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

/*
 * Hash @fd and classify it: VG_PRE_KNOWN_BAD (with @out->name),
 * VG_PRE_CLEAN_CACHED, or VG_PRE_UNKNOWN (the scanner must look at the
 * first min(size, @keep_len) bytes, left in @keep). @db, @clean and @keep
 * may each be NULL. Returns 0 or -errno.
 */
int vg_prefilter_fd(const struct vg_hashdb *db, struct vg_cache *clean,
		    uint64_t generation, int fd, uint8_t *keep,
		    uint64_t keep_len, struct vg_prefilter_result *out)
{
	struct vg_hashdb_info info = { 0 };
	uint8_t key[VG_KEY_LEN], unused;
	struct stat st;
	int ret;

	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st))
		return -errno;
	if (db)
		vg_hashdb_info(db, &info);
	out->has_md5 = info.n_md5 &&
		       vg_hashdb_size_listed(db, (uint64_t)st.st_size);
	ret = vg_hash_fd_keep(fd, keep, keep_len, out->sha256,
			      out->has_md5 ? out->md5 : NULL, &out->size);
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
