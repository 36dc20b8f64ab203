/*
 * hashdb.c - the known-bad hash database: one file, memory-mapped.
 *
 * Owns the mapping of one database file per handle; a handle is
 * read-only after vg_hashdb_open and safe to share between threads.
 * Reading hash lists is hashlist.c's job and writing the file
 * hashwrite.c's; this file only checks a file and looks hashes up.
 *
 * The layout is in hashdb_format.h; hashwrite.c writes it.
 *
 * A SHA-256 entry keeps no size: equal SHA-256 means equal bytes. The
 * bucket index turns a look-up into a binary search over ~4 entries.
 * Loading checks magic, version, every length and a CRC-32C of the whole
 * file, so a truncated, corrupted or foreign file is refused, not trusted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashdb_format.h"
#include "vigild.h"

/* Files above this are refused before any arithmetic on their counts, so
 * that the section offsets below cannot wrap around 2^64. */
#define MAX_FILE ((uint64_t)1 << 48)

struct vg_hashdb {
	const unsigned char *base;
	size_t len;
	struct db_header hdr;
	const uint64_t *sizes;
	const uint8_t *size_tabs;
	const uint32_t *buckets[N_TABLES];
	const unsigned char *ents[N_TABLES];
	const char *names;
};

/* CRC of the whole file with the header's crc field taken as zero. */
static uint32_t file_crc(const unsigned char *base, size_t len)
{
	static const unsigned char zero[4];
	size_t at = offsetof(struct db_header, crc);
	uint32_t crc;

	crc = vg_crc32c(0, base, at);
	crc = vg_crc32c(crc, zero, sizeof(zero));
	return vg_crc32c(crc, base + at + 4, len - at - 4);
}

/* ---- loading ---- */

/* Index of @size in the sorted @sizes, or @n when it is not there. */
static uint32_t size_index(const uint64_t *sizes, uint32_t n, uint64_t size)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint64_t v;

		memcpy(&v, &sizes[mid], 8);
		if (v == size)
			return mid;
		if (v < size)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

/* Bucket starts must rise and end at @n, or a search could leave bounds. */
static int buckets_ok(const uint32_t *b, uint8_t bits, uint32_t n)
{
	uint32_t nb = (uint32_t)1 << bits;

	for (uint32_t i = 0; i < nb; i++)
		if (b[i] > b[i + 1])
			return 0;
	return b[0] == 0 && b[nb] == n;
}

/*
 * Check a mapped file; fill @db's section pointers. Returns 0, or
 * -ENOEXEC (not a vigild hash database), -EPROTONOSUPPORT (other format
 * version), -ENODATA (truncated) or -EBADMSG (corrupted).
 */
static int check_image(struct vg_hashdb *db)
{
	struct db_header *h = &db->hdr;
	struct db_layout l;

	if (db->len < 8 || memcmp(db->base, DB_MAGIC, 8))
		return -ENOEXEC;
	if (db->len < sizeof(*h))
		return -ENODATA;
	memcpy(h, db->base, sizeof(*h));
	if (h->version != DB_VERSION)
		return -EPROTONOSUPPORT;
	if (h->file_size > db->len)
		return -ENODATA;
	if (h->header_len != sizeof(*h) || h->file_size != db->len ||
	    db->len > MAX_FILE || h->names_len > db->len ||
	    (uint64_t)h->n_sizes * 9 > db->len)
		return -EBADMSG;
	for (int t = 0; t < N_TABLES; t++)
		if (bits_of(h, t) > MAX_BITS ||
		    (uint64_t)count_of(h, t) * ENT_LEN[t] > db->len)
			return -EBADMSG;	/* each part fits: no wrap */
	l = layout_of(h);
	if (l.end != db->len || file_crc(db->base, db->len) != h->crc)
		return -EBADMSG;
	db->sizes = (const uint64_t *)(db->base + l.sizes);
	db->size_tabs = db->base + l.size_tabs;
	db->names = (const char *)(db->base + l.names);
	for (int t = 0; t < N_TABLES; t++) {
		db->buckets[t] = (const uint32_t *)(db->base + l.buckets[t]);
		db->ents[t] = db->base + l.ents[t];
		if (!buckets_ok(db->buckets[t], bits_of(h, t), count_of(h, t)))
			return -EBADMSG;
	}
	if (h->names_len && db->names[h->names_len - 1] != '\0')
		return -EBADMSG;
	return 0;
}

/* Map the file at @path read-only, all pages at once. */
static int map_file(const char *path, struct vg_hashdb *db)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	db->len = (size_t)st.st_size;
	p = db->len ? mmap(NULL, db->len, PROT_READ,
			   MAP_PRIVATE | MAP_POPULATE, fd, 0) : NULL;
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	db->base = p;
	return 0;
}

/* Open and check the database at @path; see check_image for errors. */
int vg_hashdb_open(const char *path, struct vg_hashdb **out)
{
	struct vg_hashdb *db = calloc(1, sizeof(*db));
	int ret;

	if (!db)
		return -ENOMEM;
	ret = map_file(path, db);
	if (!ret)
		ret = check_image(db);
	if (ret) {
		vg_hashdb_close(db);
		return ret;
	}
	*out = db;
	return 0;
}

/* Unmap and free; NULL is fine. */
void vg_hashdb_close(struct vg_hashdb *db)
{
	if (!db)
		return;
	if (db->base)
		munmap((void *)db->base, db->len);
	free(db);
}

/* Counts and sizes from the header. */
void vg_hashdb_info(const struct vg_hashdb *db, struct vg_hashdb_info *out)
{
	out->version = db->hdr.version;
	out->n_sha256 = db->hdr.n_sha256;
	out->n_md5 = db->hdr.n_md5;
	out->n_sizes = db->hdr.n_sizes;
	out->names_len = db->hdr.names_len;
	out->file_size = db->hdr.file_size;
	out->any_size = db->hdr.flags &
			(FLAG_ANY_SHA256 | FLAG_ANY_MD5 | FLAG_ANY_SHA1);
	out->crc = db->hdr.crc;
	out->n_sha1 = db->hdr.n_sha1;
}

/* 1 when some entry could match a file of @size, else 0. */
int vg_hashdb_size_listed(const struct vg_hashdb *db, uint64_t size)
{
	if (db->hdr.flags & (FLAG_ANY_SHA256 | FLAG_ANY_MD5 | FLAG_ANY_SHA1))
		return 1;
	return vg_hashdb_size_carried(db, size);
}

/* 1 when some entry carries exactly @size (any-size entries aside). */
int vg_hashdb_size_carried(const struct vg_hashdb *db, uint64_t size)
{
	uint32_t n = db->hdr.n_sizes;

	return size_index(db->sizes, n, size) < n;
}

/*
 * The digests beside SHA-256 (VG_DIGEST_* bits) that an entry could
 * match a file of @size by: a table's any-size entry, or one carrying
 * exactly @size. 0 costs the caller nothing but the SHA-256.
 */
int vg_hashdb_digests_for(const struct vg_hashdb *db, uint64_t size)
{
	uint32_t n = db->hdr.n_sizes, at = size_index(db->sizes, n, size);
	uint32_t tabs = db->hdr.flags | (at < n ? db->size_tabs[at] : 0u);
	int out = 0;

	if (db->hdr.n_md5 && (tabs & FLAG_ANY_MD5))
		out |= VG_DIGEST_MD5;
	if (db->hdr.n_sha1 && (tabs & FLAG_ANY_SHA1))
		out |= VG_DIGEST_SHA1;
	return out;
}

/* First index in [lo, hi) whose hash is >= @hash, entries @elen apart. */
static uint32_t lower_bound(const unsigned char *ents, size_t elen,
			    size_t hlen, uint32_t lo, uint32_t hi,
			    const uint8_t *hash)
{
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (memcmp(ents + (size_t)mid * elen, hash, hlen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Name of the entry ending at @e (its last 4 bytes); "" if out of range. */
static const char *name_at(const struct vg_hashdb *db, const unsigned char *e)
{
	uint32_t off;

	memcpy(&off, e, 4);
	return off < db->hdr.names_len ? db->names + off : "";
}

/* 1 and the entry's name in @name when @sha256 is listed, else 0. */
int vg_hashdb_find_sha256(const struct vg_hashdb *db, const uint8_t *sha256,
			  const char **name)
{
	const uint32_t *bk = db->buckets[T_SHA256];
	uint32_t b = bucket_of(sha256, db->hdr.sha_bits);
	uint32_t hi = bk[b + 1];
	uint32_t i = lower_bound(db->ents[T_SHA256], SHA_ENT, 32, bk[b], hi,
				 sha256);
	const unsigned char *e = db->ents[T_SHA256] + (size_t)i * SHA_ENT;

	if (i >= hi || memcmp(e, sha256, 32))
		return 0;
	*name = name_at(db, e + 32);
	return 1;
}

/* 1 and the name when (@hash, @size) is in sized table @t (or any size). */
static int find_sized(const struct vg_hashdb *db, int t, const uint8_t *hash,
		      uint64_t size, const char **name)
{
	size_t hlen = HASH_LEN[t], elen = ENT_LEN[t];
	const uint32_t *bk = db->buckets[t];
	uint32_t b = bucket_of(hash, bits_of(&db->hdr, t)), hi = bk[b + 1];
	uint32_t i = lower_bound(db->ents[t], elen, hlen, bk[b], hi, hash);

	for (; i < hi; i++) {
		const unsigned char *e = db->ents[t] + (size_t)i * elen;
		uint64_t esize;

		if (memcmp(e, hash, hlen))
			return 0;
		memcpy(&esize, e + hlen, 8);
		if (esize == size || esize == VG_SIZE_ANY) {
			*name = name_at(db, e + hlen + 8);
			return 1;
		}
	}
	return 0;
}

/* 1 and the name when (@md5, @size) is listed (or listed for any size). */
int vg_hashdb_find_md5(const struct vg_hashdb *db, const uint8_t *md5,
		       uint64_t size, const char **name)
{
	return find_sized(db, T_MD5, md5, size, name);
}

/* 1 and the name when (@sha1, @size) is listed (or listed for any size). */
int vg_hashdb_find_sha1(const struct vg_hashdb *db, const uint8_t *sha1,
			uint64_t size, const char **name)
{
	return find_sized(db, T_SHA1, sha1, size, name);
}
