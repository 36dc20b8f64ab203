/*
 * hashwrite.c - the hash database file, written in one stream.
 *
 * Owns one write: two passes over the merged runs of hashsort.c (the
 * first counts what is kept, bucket by bucket, and collects the sizes;
 * the second writes the entries), the names copied from hashnames.c,
 * and a file that appears whole: written beside @path, fsync'd, renamed.
 * Must not hold the entries: memory is the bucket counts, one u64 per
 * distinct size, and the buffers; the layout is hashdb_format.h's.
 *
 * Duplicate keys keep their first name: the runs hand the entries of
 * one hash back in input order, whatever their sizes, and a later entry
 * whose key an entry kept before has is dropped. A SHA-256 key is its
 * hash; an MD5 or SHA-1 key is its hash and size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hashdb_format.h"
#include "vigild.h"

#define COPY_BUF (1 << 20)

/* The file being written: a buffer in front of it and the CRC so far. */
struct dbout {
	int fd;
	int err;
	uint32_t crc;
	uint64_t at;		/* bytes handed to put(), buffered or not */
	size_t used;
	unsigned char buf[1 << 16];
};

/* What the first pass found in one table. */
struct tally {
	uint8_t raw_bits;	/* the bits counts[] was kept at */
	uint32_t *counts;	/* entries kept per bucket */
	uint64_t *sizes;	/* sizes of its entries, then sorted, distinct */
	uint64_t n_sizes, cap;
};

/* Everything the header and the sections before the entries need. */
struct plan {
	struct db_header h;
	struct tally t[N_TABLES];
	uint64_t at[N_TABLES];	/* merging the tables' sizes: cursors */
};

/* Write out what is buffered; the first error sticks in @o->err. */
static void flush_out(struct dbout *o)
{
	o->crc = vg_crc32c(o->crc, o->buf, o->used);
	if (!o->err)
		o->err = vg_write_all(o->fd, o->buf, o->used);
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

/* The entries kept so far of the hash being merged: its key, and their sizes. */
struct kept {
	struct vg_hashrec last;	/* the last kept; n == 0: none yet */
	uint64_t *sizes;	/* sizes kept of last's hash (MD5, SHA-1) */
	uint64_t n, cap;
	int err;		/* -ENOMEM, sticky */
};

/* 1 when @r's key is one a kept entry already has: @r is dropped. */
static int repeats(struct kept *k, const struct vg_hashrec *r)
{
	int t = VG_REC_TABLE(r);

	if (!k->n || VG_REC_TABLE(&k->last) != t ||
	    memcmp(k->last.hash, r->hash, HASH_LEN[t])) {
		k->n = 0;	/* a new hash */
	} else if (t == T_SHA256) {
		return 1;
	} else {
		for (uint64_t i = 0; i < k->n; i++)
			if (k->sizes[i] == r->size)
				return 1;
	}
	if (k->n == k->cap) {
		uint64_t cap = k->cap ? k->cap * 2 : 16;
		uint64_t *p = realloc(k->sizes, (size_t)cap * 8);

		if (!p) {
			k->err = -ENOMEM;
			return 1;
		}
		k->sizes = p;
		k->cap = cap;
	}
	k->sizes[k->n++] = r->size;
	k->last = *r;
	return 0;
}

/* Note a kept record's size (or its table's any-size flag). 0 or -ENOMEM. */
static int tally_size(struct plan *p, int t, uint64_t size)
{
	struct tally *ty = &p->t[t];

	if (size == VG_SIZE_ANY) {
		p->h.flags |= 1u << t;
		return 0;
	}
	if (ty->n_sizes == ty->cap) {
		uint64_t cap = ty->cap ? ty->cap * 2 : 1024;
		uint64_t *s = realloc(ty->sizes, (size_t)cap * 8);

		if (!s)
			return -ENOMEM;
		ty->sizes = s;
		ty->cap = cap;
	}
	ty->sizes[ty->n_sizes++] = size;
	return 0;
}

/* First pass: count the kept entries of each table and bucket, note sizes. */
static int count_pass(struct vg_runs *runs, struct plan *p)
{
	struct kept k = { .n = 0 };
	struct vg_hashrec r;
	uint32_t kept[N_TABLES] = { 0 };
	int ret;

	ret = vg_runs_rewind(runs);
	while (!ret && (ret = vg_runs_next(runs, &r)) == 1) {
		int t = VG_REC_TABLE(&r);

		ret = 0;
		if (repeats(&k, &r))
			continue;
		kept[t]++;
		p->t[t].counts[bucket_of(r.hash, p->t[t].raw_bits)]++;
		ret = tally_size(p, t, r.size);
	}
	free(k.sizes);
	p->h.n_sha256 = kept[T_SHA256];
	p->h.n_md5 = kept[T_MD5];
	p->h.n_sha1 = kept[T_SHA1];
	return ret ? ret : k.err;
}

/* Sort @n values in place by their bytes from @shift down (MSD radix). */
static void sort_u64(uint64_t *a, uint64_t n, int shift)
{
	uint64_t end[256] = { 0 }, next[256], at = 0;

	if (n < 32) {
		for (uint64_t i = 1; i < n; i++)
			for (uint64_t j = i; j && a[j - 1] > a[j]; j--) {
				uint64_t t = a[j];

				a[j] = a[j - 1];
				a[j - 1] = t;
			}
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		end[a[i] >> shift & 255]++;
	if (end[a[0] >> shift & 255] == n) {	/* one bucket: next byte */
		if (shift)
			sort_u64(a, n, shift - 8);
		return;
	}
	for (int b = 0; b < 256; b++) {
		next[b] = at;
		at += end[b];
		end[b] = at;
	}
	for (int b = 0; b < 256; b++) {
		while (next[b] < end[b]) {
			uint64_t v = a[next[b]];

			while ((int)(v >> shift & 255) != b) {
				uint64_t u = a[next[v >> shift & 255]];

				a[next[v >> shift & 255]++] = v;
				v = u;
			}
			a[next[b]++] = v;
		}
	}
	for (int b = 0; shift && b < 256; b++) {
		uint64_t lo = b ? end[b - 1] : 0;

		sort_u64(a + lo, end[b] - lo, shift - 8);
	}
}

/* Sort each table's sizes and keep each once. */
static void distinct_sizes(struct plan *p)
{
	for (int t = 0; t < N_TABLES; t++) {
		struct tally *ty = &p->t[t];
		uint64_t out = 0;

		sort_u64(ty->sizes, ty->n_sizes, 56);
		for (uint64_t i = 0; i < ty->n_sizes; i++)
			if (!out || ty->sizes[out - 1] != ty->sizes[i])
				ty->sizes[out++] = ty->sizes[i];
		ty->n_sizes = out;
	}
}

/* Restart the merge of the tables' distinct sizes. */
static void sizes_rewind(struct plan *p)
{
	memset(p->at, 0, sizeof(p->at));
}

/* The next size of all tables, and which tables carry it: 1, or 0 at the end. */
static int next_size(struct plan *p, uint64_t *size, uint8_t *tabs)
{
	int any = 0;

	for (int t = 0; t < N_TABLES; t++) {
		if (p->at[t] == p->t[t].n_sizes)
			continue;
		if (!any || p->t[t].sizes[p->at[t]] < *size)
			*size = p->t[t].sizes[p->at[t]];
		any = 1;
	}
	*tabs = 0;
	for (int t = 0; any && t < N_TABLES; t++) {
		if (p->at[t] < p->t[t].n_sizes &&
		    p->t[t].sizes[p->at[t]] == *size) {
			*tabs |= (uint8_t)(1u << t);
			p->at[t]++;
		}
	}
	return any;
}

/* Fold each table's counts down to the bits its kept entries call for. */
static void fold_buckets(struct plan *p)
{
	uint8_t *bits[N_TABLES] = { &p->h.sha_bits, &p->h.md5_bits,
				    &p->h.sha1_bits };

	for (int t = 0; t < N_TABLES; t++) {
		struct tally *ty = &p->t[t];
		uint8_t b = bits_for(count_of(&p->h, t));
		uint32_t d;

		if (b > ty->raw_bits)
			b = ty->raw_bits;	/* more kept than promised: never */
		d = ty->raw_bits - b;

		for (uint32_t j = 0; j < (uint32_t)1 << b; j++) {
			uint32_t sum = 0;

			for (uint32_t i = j << d; i < (j + 1) << d; i++)
				sum += ty->counts[i];
			ty->counts[j] = sum;
		}
		*bits[t] = b;
	}
}

/* Header (crc zero), the sizes and which tables carry each. */
static void put_head(struct dbout *o, struct plan *p)
{
	uint64_t size;
	uint8_t tabs;

	p->h.file_size = layout_of(&p->h).end;
	put(o, &p->h, sizeof(p->h));
	sizes_rewind(p);
	while (next_size(p, &size, &tabs))
		put(o, &size, 8);
	sizes_rewind(p);
	while (next_size(p, &size, &tabs))
		put(o, &tabs, 1);
}

/* End table @t's entries (-1: the sizes) and start table @t + 1's. */
static void next_table(struct dbout *o, const struct plan *p, int t)
{
	const struct db_layout l = layout_of(&p->h);
	uint32_t start = 0;

	if (t + 1 >= N_TABLES) {
		pad_to(o, l.names);
		return;
	}
	pad_to(o, l.buckets[t + 1]);
	for (uint32_t b = 0; b < (uint32_t)1 << bits_of(&p->h, t + 1); b++) {
		put(o, &start, 4);
		start += p->t[t + 1].counts[b];
	}
	put(o, &start, 4);
	pad_to(o, l.ents[t + 1]);
}

/* Second pass: each table's buckets and kept entries, in file order. */
static int entry_pass(struct dbout *o, struct vg_runs *runs,
		      const struct plan *p)
{
	struct kept k = { .n = 0 };
	struct vg_hashrec r;
	int t = -1, ret;

	ret = vg_runs_rewind(runs);
	while (!ret && (ret = vg_runs_next(runs, &r)) == 1) {
		int rt = VG_REC_TABLE(&r);

		ret = 0;
		if (repeats(&k, &r))
			continue;
		for (; t < rt; t++)
			next_table(o, p, t);
		put(o, r.hash, HASH_LEN[rt]);
		if (rt != T_SHA256)
			put(o, &r.size, 8);
		put(o, &r.name, 4);
	}
	for (; t < N_TABLES; t++)
		next_table(o, p, t);
	free(k.sizes);
	return ret ? ret : k.err;
}

/* Copy the names after the entries. 0 or -errno. */
static int put_names(struct dbout *o, struct vg_names *names)
{
	char *buf = malloc(COPY_BUF);
	uint64_t off = 0;
	int64_t n = 0;

	if (!buf)
		return -ENOMEM;
	while ((n = vg_names_read(names, off, buf, COPY_BUF)) > 0) {
		put(o, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return (int)n;
}

/* Stream the whole image to @o->fd, then store the CRC in the header. */
static int put_image(struct dbout *o, struct plan *p, struct vg_runs *runs,
		     struct vg_names *names)
{
	int ret;

	put_head(o, p);
	ret = entry_pass(o, runs, p);
	if (!ret)
		ret = put_names(o, names);
	flush_out(o);
	if (ret || o->err)
		return ret ? ret : o->err;
	if (o->at != p->h.file_size)
		return -EIO;	/* cannot happen: the passes disagree */
	p->h.crc = o->crc;
	if (pwrite(o->fd, &p->h, sizeof(p->h), 0) != sizeof(p->h))
		return errno ? -errno : -EIO;
	return 0;
}

/* Write the image into a temporary file beside @path, then rename it. */
static int write_atomic(const char *path, struct plan *p, struct vg_runs *runs,
			struct vg_names *names)
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
	ret = put_image(o, p, runs, names);
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

/* Free what the plan holds. */
static void free_plan(struct plan *p)
{
	for (int t = 0; t < N_TABLES; t++) {
		free(p->t[t].counts);
		free(p->t[t].sizes);
	}
}

/*
 * Write the database of the records in @runs (at most @n_raw[t] of
 * table t) and the @names they point into at @path. Returns 0 or -errno.
 */
int vg_hashdb_stream(const char *path, struct vg_runs *runs,
		     struct vg_names *names, const uint32_t n_raw[3])
{
	struct plan p = { .h = { .magic = DB_MAGIC, .version = DB_VERSION,
				 .header_len = sizeof(p.h) } };
	int ret = 0;

	for (int t = 0; t < N_TABLES && !ret; t++) {
		p.t[t].raw_bits = bits_for(n_raw[t]);
		p.t[t].counts = calloc(((size_t)1 << p.t[t].raw_bits), 4);
		ret = p.t[t].counts ? 0 : -ENOMEM;
	}
	if (!ret)
		ret = count_pass(runs, &p);
	if (!ret) {
		distinct_sizes(&p);
		for (sizes_rewind(&p); next_size(&p, &(uint64_t){ 0 },
						 &(uint8_t){ 0 });)
			p.h.n_sizes++;
		fold_buckets(&p);
		p.h.names_len = vg_names_len(names);
		ret = write_atomic(path, &p, runs, names);
	}
	free_plan(&p);
	return ret;
}

/* Push @n packed records of @hlen-byte hashes; -EINVAL on a bad name offset. */
static int push_packed(struct vg_runs *runs, int t, const uint8_t *recs,
		       uint32_t n, uint64_t names_len)
{
	size_t hlen = HASH_LEN[t], rlen = hlen + 12;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *r = recs + (size_t)i * rlen;
		unsigned char hash[32] = { 0 };
		uint64_t size;
		uint32_t name;
		int ret;

		memcpy(hash, r, hlen);
		memcpy(&size, r + hlen, 8);
		memcpy(&name, r + hlen + 8, 4);
		if (name >= names_len)
			return -EINVAL;
		ret = vg_runs_push(runs, t, hash, size, name);
		if (ret)
			return ret;
	}
	return 0;
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
	const uint32_t n[N_TABLES] = { n_sha, n_md5, n_sha1 };
	struct vg_runs *runs = NULL;
	struct vg_names *blob = NULL;
	int ret = vg_runs_new(&runs, NULL, 0);

	if (!ret)
		ret = vg_names_new(&blob, NULL, 0);
	if (!ret)
		ret = vg_names_adopt(blob, names, names_len);
	for (int t = 0; t < N_TABLES && !ret; t++)
		ret = push_packed(runs, t, recs[t], n[t], names_len);
	if (!ret)
		ret = vg_hashdb_stream(path, runs, blob, n);
	vg_names_free(blob);
	vg_runs_free(runs);
	return ret;
}
