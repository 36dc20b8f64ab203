/*
 * hashdb.c - the known-bad hash database: one file, memory-mapped.
 *
 * Owns the mapping of one database file per handle; a handle is
 * read-only after vg_hashdb_open and safe to share between threads.
 * Reading hash lists is hashlist.c's job; this file only turns records
 * into the on-disk layout (sorted in place, streamed to the file) and
 * looks them up.
 *
 * Layout (little-endian), every section starting on an 8-byte boundary:
 *
 *   header        64 bytes, see struct db_header
 *   sizes         n_sizes x u64, sorted, distinct (entries with a size)
 *   size tables   n_sizes x u8: which tables carry that size (1 << table)
 *   sha buckets   (1 << sha_bits) + 1 x u32: start index of each prefix
 *   sha entries   n_sha256 x { hash[32], name:u32 }            36 bytes
 *   md5 buckets   (1 << md5_bits) + 1 x u32
 *   md5 entries   n_md5 x { hash[16], size:u64, name:u32 }     28 bytes
 *   sha1 buckets  (1 << sha1_bits) + 1 x u32
 *   sha1 entries  n_sha1 x { hash[20], size:u64, name:u32 }    32 bytes
 *   names         NUL-terminated strings, deduplicated by the caller
 *
 * Version 2 added the size tables and the SHA-1 table; a version 1 file
 * is refused (-EPROTONOSUPPORT), and compiling its lists again fixes it.
 * The size tables let the prefilter compute an MD5 or a SHA-1 only for a
 * size that table names, not for every size any table names.
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

#include "vigild.h"

#define DB_MAGIC "VIGHASH\0"
#define DB_VERSION VG_HASHDB_VERSION
/* Tables, in file order; the flag of an any-size entry in table t is 1 << t. */
#define T_SHA256 0
#define T_MD5 1
#define T_SHA1 2
#define N_TABLES 3
#define FLAG_ANY_SHA256 1u
#define FLAG_ANY_MD5 2u
#define FLAG_ANY_SHA1 4u
#define SHA_ENT 36
#define MAX_BITS 24
/* Files above this are refused before any arithmetic on their counts, so
 * that the section offsets below cannot wrap around 2^64. */
#define MAX_FILE ((uint64_t)1 << 48)

struct db_header {
	char magic[8];
	uint32_t version;
	uint32_t header_len;
	uint64_t file_size;
	uint32_t crc;
	uint32_t flags;
	uint32_t n_sha256;
	uint32_t n_md5;
	uint32_t n_sizes;
	uint8_t sha_bits;
	uint8_t md5_bits;
	uint16_t pad;
	uint64_t names_len;
	uint32_t n_sha1;
	uint8_t sha1_bits;
	uint8_t pad2[3];
};

_Static_assert(sizeof(struct db_header) == 64, "header is 64 bytes");

/* Hash and entry length of each table (a SHA-256 entry has no size). */
static const size_t HASH_LEN[N_TABLES] = { 32, 16, 20 };
static const size_t ENT_LEN[N_TABLES] = { SHA_ENT, 28, 32 };

/* Section offsets, derived from the header's counts. */
struct db_layout {
	uint64_t sizes, size_tabs, buckets[N_TABLES], ents[N_TABLES], names, end;
};

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

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* Entries in table @t. */
static uint32_t count_of(const struct db_header *h, int t)
{
	return t == T_SHA256 ? h->n_sha256 : t == T_MD5 ? h->n_md5 : h->n_sha1;
}

/* Bucket bits of table @t. */
static uint8_t bits_of(const struct db_header *h, int t)
{
	return t == T_SHA256 ? h->sha_bits : t == T_MD5 ? h->md5_bits :
			       h->sha1_bits;
}

/* Offsets of every section for the counts in @h. */
static struct db_layout layout_of(const struct db_header *h)
{
	struct db_layout l;
	uint64_t at;

	l.sizes = sizeof(*h);
	l.size_tabs = l.sizes + (uint64_t)h->n_sizes * 8;
	at = align8(l.size_tabs + h->n_sizes);
	for (int t = 0; t < N_TABLES; t++) {
		l.buckets[t] = at;
		l.ents[t] = align8(at + (((uint64_t)1 << bits_of(h, t)) + 1) * 4);
		at = align8(l.ents[t] + (uint64_t)count_of(h, t) * ENT_LEN[t]);
	}
	l.names = at;
	l.end = l.names + h->names_len;
	return l;
}

/* Bucket bits for @n entries: about two to four entries per bucket. */
static uint8_t bits_for(uint32_t n)
{
	uint8_t bits = 0;

	while (bits < MAX_BITS && ((uint64_t)4 << bits) <= n)
		bits++;
	return bits;
}

/* Bucket of a hash: its first @bits bits. */
static uint32_t bucket_of(const unsigned char *hash, uint8_t bits)
{
	uint32_t prefix = (uint32_t)hash[0] << 24 | (uint32_t)hash[1] << 16 |
			  (uint32_t)hash[2] << 8 | hash[3];

	return bits ? prefix >> (32 - bits) : 0;
}

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

/* ---- writing ---- */

/*
 * Order by hash, then input order: within one hash the entry listed first
 * comes first, whatever its size, so the first name wins (the admin's own
 * lists are read before feed content) both when duplicates are dropped
 * and when a look-up takes the first entry of a hash that fits the size.
 * MD5 and SHA-1 hashes are zero-padded to 32 bytes: one comparison serves all.
 */
static int cmp_rec(const void *a, const void *b)
{
	const struct vg_hashrec *x = a, *y = b;
	int c = memcmp(x->hash, y->hash, sizeof(x->hash));

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Unpack @n records of @hlen-byte hashes; -EINVAL on a bad name offset. */
static int unpack(const uint8_t *recs, uint32_t n, size_t hlen,
		  uint64_t names_len, struct vg_hashrec *out)
{
	size_t rlen = hlen + 12;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *r = recs + (size_t)i * rlen;

		memset(out[i].hash, 0, sizeof(out[i].hash));
		memcpy(out[i].hash, r, hlen);
		memcpy(&out[i].size, r + hlen, 8);
		memcpy(&out[i].name, r + hlen + 8, 4);
		out[i].order = i;
		if (out[i].name >= names_len)
			return -EINVAL;
	}
	return 0;
}

/*
 * Sort in place without glibc qsort's n-sized merge buffer: move each
 * record to the bucket of its first byte (American flag sort), then
 * qsort each bucket, whose merge buffer is 1/256 of the whole.
 */
static void sort_recs(struct vg_hashrec *r, uint32_t n)
{
	uint32_t end[256] = { 0 }, next[256];
	struct vg_hashrec t;

	if (!n)
		return;
	for (uint32_t i = 0; i < n; i++)
		end[r[i].hash[0]]++;
	for (uint32_t b = 0, at = 0; b < 256; b++) {
		next[b] = at;
		at += end[b];
		end[b] = at;
	}
	for (uint32_t b = 0; b < 256; b++) {
		while (next[b] < end[b]) {
			t = r[next[b]];
			while (t.hash[0] != b) {
				struct vg_hashrec u = r[next[t.hash[0]]];

				r[next[t.hash[0]]++] = t;
				t = u;
			}
			r[next[b]++] = t;
		}
	}
	for (uint32_t b = 0, at = 0; b < 256; at = end[b++])
		qsort(r + at, end[b] - at, sizeof(*r), cmp_rec);
}

/* Whether a kept entry of @r[i]'s hash (the ones just before @out) has its key. */
static int kept_before(const struct vg_hashrec *r, uint32_t out, uint32_t i,
		       size_t hlen, int keyed_by_size)
{
	for (uint32_t j = out; j > 0 && !memcmp(r[j - 1].hash, r[i].hash, hlen); j--)
		if (!keyed_by_size || r[j - 1].size == r[i].size)
			return 1;
	return 0;
}

/* Sort and drop repeated keys (the later ones); SHA-256 keys ignore the size. */
static uint32_t sort_dedup(struct vg_hashrec *r, uint32_t n, size_t hlen,
			   int keyed_by_size)
{
	uint32_t out = 0;

	sort_recs(r, n);
	for (uint32_t i = 0; i < n; i++) {
		if (kept_before(r, out, i, hlen, keyed_by_size))
			continue;
		r[out++] = r[i];
	}
	return out;
}

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

/* Distinct known sizes of all tables, sorted; sets the ANY flags. */
static uint32_t collect_sizes(const struct vg_hashrecs *t, uint64_t *sizes,
			      uint32_t *flags)
{
	uint32_t n = 0, out = 0;

	for (int k = 0; k < N_TABLES; k++) {
		for (uint32_t i = 0; i < t->n[k]; i++) {
			if (t->r[k][i].size == VG_SIZE_ANY)
				*flags |= 1u << k;
			else
				sizes[n++] = t->r[k][i].size;
		}
	}
	qsort(sizes, n, sizeof(*sizes), cmp_u64);
	for (uint32_t i = 0; i < n; i++)
		if (!out || sizes[out - 1] != sizes[i])
			sizes[out++] = sizes[i];
	return out;
}

/* Which tables carry each of the @n sizes, as 1 << table bits. */
static void mark_sizes(const struct vg_hashrecs *t, const uint64_t *sizes,
		       uint32_t n, uint8_t *tabs)
{
	for (int k = 0; k < N_TABLES; k++) {
		for (uint32_t i = 0; i < t->n[k]; i++) {
			uint32_t at = size_index(sizes, n, t->r[k][i].size);

			if (at < n)
				tabs[at] |= (uint8_t)(1u << k);
		}
	}
}

/* The file being written: a buffer in front of it and the CRC so far. */
struct dbout {
	int fd;
	int err;
	uint32_t crc;
	uint64_t at;		/* bytes handed to put(), buffered or not */
	size_t used;
	unsigned char buf[1 << 16];
};

/* Write out what is buffered; the first error sticks in @o->err. */
static void flush_out(struct dbout *o)
{
	size_t done = 0;

	o->crc = vg_crc32c(o->crc, o->buf, o->used);
	while (done < o->used && !o->err) {
		ssize_t n = write(o->fd, o->buf + done, o->used - done);

		if (n < 0 && errno != EINTR)
			o->err = -errno;
		else if (n > 0)
			done += (size_t)n;
	}
	o->used = 0;
}

/* Append @len bytes (zeros when @p is NULL) to the file. */
static void put(struct dbout *o, const void *p, size_t len)
{
	while (len) {
		size_t n = sizeof(o->buf) - o->used;

		if (n > len)
			n = len;
		if (p) {
			memcpy(o->buf + o->used, p, n);
			p = (const unsigned char *)p + n;
		} else {
			memset(o->buf + o->used, 0, n);
		}
		o->used += n;
		o->at += n;
		len -= n;
		if (o->used == sizeof(o->buf))
			flush_out(o);
	}
}

/* Zero-fill up to offset @off (the next section's start). */
static void pad_to(struct dbout *o, uint64_t off)
{
	put(o, NULL, (size_t)(off - o->at));
}

/* Write the bucket index and entries of one table at the current offset. */
static void put_table(struct dbout *o, const struct vg_hashrec *r, uint32_t n,
		      size_t hlen, uint8_t bits, int with_size)
{
	uint32_t nb = (uint32_t)1 << bits, i = 0;

	for (uint32_t b = 0; b <= nb; b++) {
		while (i < n && bucket_of(r[i].hash, bits) < b)
			i++;
		put(o, &i, 4);
	}
	pad_to(o, align8(o->at));
	for (i = 0; i < n; i++) {
		put(o, r[i].hash, hlen);
		if (with_size)
			put(o, &r[i].size, 8);
		put(o, &r[i].name, 4);
	}
	pad_to(o, align8(o->at));
}

/* The sorted distinct sizes, and which tables carry each. */
struct sizes {
	uint64_t *size;
	uint8_t *tabs;
};

/* Stream header (crc zero) and sections; then store the CRC in the header. */
static int put_image(struct dbout *o, struct db_header *h,
		     const struct sizes *sz, const struct vg_hashrecs *t,
		     const char *names)
{
	struct db_layout l = layout_of(h);

	h->file_size = l.end;
	put(o, h, sizeof(*h));
	put(o, sz->size, (size_t)h->n_sizes * 8);
	put(o, sz->tabs, h->n_sizes);
	for (int k = 0; k < N_TABLES; k++) {
		pad_to(o, l.buckets[k]);
		put_table(o, t->r[k], count_of(h, k), HASH_LEN[k],
			  bits_of(h, k), k != T_SHA256);
	}
	put(o, names, h->names_len);
	flush_out(o);
	h->crc = o->crc;
	if (!o->err && pwrite(o->fd, h, sizeof(*h), 0) != sizeof(*h))
		o->err = errno ? -errno : -EIO;
	return o->err;
}

/* Write the database into a temporary file, then rename it to @path. */
static int write_atomic(const char *path, struct db_header *h,
			const struct sizes *sz, const struct vg_hashrecs *t,
			const char *names)
{
	char tmp[4096];
	struct dbout *o;
	int ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o->fd < 0) {
		ret = -errno;
		free(o);
		return ret;
	}
	ret = put_image(o, h, sz, t, names);
	if (!ret && fsync(o->fd))
		ret = -errno;
	if (close(o->fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	free(o);
	return ret;
}

/*
 * Build a database at @path from the tables of @t, sorting them in place
 * (their order fields must number each table's input) and setting their
 * counts to the entries kept. Duplicate keys keep their first name.
 * Returns 0 or -errno.
 */
int vg_hashdb_write_recs(const char *path, struct vg_hashrecs *t,
			 const char *names, uint64_t names_len)
{
	struct db_header h = { .magic = DB_MAGIC, .version = DB_VERSION,
			       .header_len = sizeof(h) };
	struct sizes sz = { NULL, NULL };
	int ret = -ENOMEM;

	if (names_len && names[names_len - 1] != '\0')
		return -EINVAL;
	for (int k = 0; k < N_TABLES; k++)
		t->n[k] = sort_dedup(t->r[k], t->n[k], HASH_LEN[k],
				     k != T_SHA256);
	sz.size = calloc((size_t)t->n[0] + t->n[1] + t->n[2] + 1, 8);
	if (!sz.size)
		goto out;
	h.n_sizes = collect_sizes(t, sz.size, &h.flags);
	sz.tabs = calloc((size_t)h.n_sizes + 1, 1);
	if (!sz.tabs)
		goto out;
	mark_sizes(t, sz.size, h.n_sizes, sz.tabs);
	h.n_sha256 = t->n[T_SHA256];
	h.n_md5 = t->n[T_MD5];
	h.n_sha1 = t->n[T_SHA1];
	h.sha_bits = bits_for(h.n_sha256);
	h.md5_bits = bits_for(h.n_md5);
	h.sha1_bits = bits_for(h.n_sha1);
	h.names_len = names_len;
	ret = write_atomic(path, &h, &sz, t, names);
out:
	free(sz.tabs);
	free(sz.size);
	return ret;
}

/*
 * Build a database at @path from packed records (see vigild.h) and a
 * names blob whose last byte is NUL. Duplicate keys keep their first
 * name. The file appears atomically. Returns 0 or -errno (-EINVAL for a
 * name offset outside @names or a names blob not ending in NUL).
 */
int vg_hashdb_write(const char *path, const uint8_t *sha_recs, uint32_t n_sha,
		    const uint8_t *md5_recs, uint32_t n_md5,
		    const uint8_t *sha1_recs, uint32_t n_sha1,
		    const char *names, uint64_t names_len)
{
	const uint8_t *recs[N_TABLES] = { sha_recs, md5_recs, sha1_recs };
	struct vg_hashrecs t = { .n = { n_sha, n_md5, n_sha1 } };
	int ret = 0;

	if (names_len && names[names_len - 1] != '\0')
		return -EINVAL;
	for (int k = 0; k < N_TABLES && !ret; k++) {
		t.r[k] = calloc((size_t)t.n[k] + 1, sizeof(*t.r[k]));
		ret = t.r[k] ? unpack(recs[k], t.n[k], HASH_LEN[k], names_len,
				      t.r[k]) : -ENOMEM;
	}
	if (!ret)
		ret = vg_hashdb_write_recs(path, &t, names, names_len);
	for (int k = 0; k < N_TABLES; k++)
		free(t.r[k]);
	return ret;
}

/* ---- loading ---- */

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
