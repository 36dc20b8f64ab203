/*
 * hashsort.c - hash records sorted in bounded runs, then merged.
 *
 * Owns the records of one builder: the current run in memory (in input
 * order until it is sorted), the sorted runs spilled to one unnamed
 * temporary file, and the input ranges a caller took back. A builder
 * without a directory never spills: its one run grows as needed. Must
 * not know the database layout: it hands records back in (table, hash,
 * input order) order and hashwrite.c decides what is kept.
 *
 * Memory: the run (run_bytes) while records come in; while merging, the
 * last run plus one MERGE_BUF window per spilled run. Spilled runs live
 * in the page cache behind read()/write(), not in this process's RSS.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigild.h"

#define DEFAULT_RUN_BYTES ((uint64_t)32 << 20)
#define MERGE_BUF (1 << 20)	/* bytes read from a spilled run at a time */

/* One spilled run: its records' file offset and count. */
struct run {
	uint64_t off, n;
};

/* A source of the merge: a spilled run's window, or the run in memory. */
struct source {
	struct vg_hashrec *buf;	/* the window (owned) or the memory run */
	uint64_t pos, len;	/* records in the window, read up to pos */
	uint64_t next, end;	/* file records not yet read: [next, end) */
	int fd;			/* -1: the memory run, all in buf */
};

struct vg_runs {
	struct vg_hashrec *r;	/* the current run */
	uint64_t n, cap, max;	/* max: records a run holds before it spills */
	uint32_t seq;		/* input position of the next record */
	uint32_t run_seq;	/* input position of r[0] */
	int sorted;		/* r is sorted: nothing came or went since */
	int fd;			/* spilled runs, or -1 */
	char *dir;		/* where they go; NULL: never spill */
	struct run *runs;
	uint32_t n_runs;
	uint32_t (*drops)[2];	/* input ranges [lo, hi) taken back */
	uint32_t n_drops;
	struct source *src;	/* the merge: n_src sources, heap ordered */
	uint32_t n_src;
};

/* A new, empty set of runs; @dir NULL never spills; @run_bytes 0: default. */
int vg_runs_new(struct vg_runs **out, const char *dir, uint64_t run_bytes)
{
	struct vg_runs *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->fd = -1;
	r->max = UINT64_MAX;
	if (dir) {
		r->dir = strdup(dir);
		r->max = (run_bytes ? run_bytes : DEFAULT_RUN_BYTES) /
			 sizeof(struct vg_hashrec);
		if (!r->dir) {
			free(r);
			return -ENOMEM;
		}
		if (!r->max)
			r->max = 1;
	}
	*out = r;
	return 0;
}

/* Free the merge's windows. */
static void free_sources(struct vg_runs *r)
{
	for (uint32_t i = 0; i < r->n_src; i++)
		if (r->src[i].fd >= 0)
			free(r->src[i].buf);
	free(r->src);
	r->src = NULL;
	r->n_src = 0;
}

/* Free the runs, their file and the merge; NULL is fine. */
void vg_runs_free(struct vg_runs *r)
{
	if (!r)
		return;
	free_sources(r);
	if (r->fd >= 0)
		close(r->fd);
	free(r->r);
	free(r->dir);
	free(r->runs);
	free(r->drops);
	free(r);
}

/*
 * An unnamed file in @dir for read and write (O_TMPFILE, else a named
 * one unlinked at once): nothing is left behind, whatever happens.
 */
int vg_tmpfile(const char *dir)
{
	char path[4096];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR &&
			errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	if (snprintf(path, sizeof(path), "%s/.vigild-sort.XXXXXX", dir) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* Write all @len bytes of @buf; 0 or -errno. */
int vg_write_all(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read all @len bytes at @off into @buf; 0, -ENODATA if short, or -errno. */
int vg_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* The first 8 bytes of @hash as a big-endian number: they order as memcmp. */
static uint64_t head_of(const unsigned char *hash)
{
	uint64_t v;

	memcpy(&v, hash, 8);
	return be64toh(v);
}

/*
 * Order by table, hash, then input order: within one hash the entry
 * listed first comes first, whatever its size, so the first name wins
 * (the admin's own lists are read before feed content).
 */
static int cmp_rec(const void *a, const void *b)
{
	const struct vg_hashrec *x = a, *y = b;
	uint64_t hx = head_of(x->hash), hy = head_of(y->hash);
	int c;

	if (x->order >> 30 != y->order >> 30)
		return x->order >> 30 < y->order >> 30 ? -1 : 1;
	if (hx != hy)	/* nearly always: a memcmp only for a near-repeat */
		return hx < hy ? -1 : 1;
	c = memcmp(x->hash + 8, y->hash + 8, sizeof(x->hash) - 8);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * Byte @level of a record's sort key, as cmp_rec orders: level 0 is its
 * table and its hash's first byte (768 values), then the hash's bytes
 * and the input position's, most significant first.
 */
static unsigned key_at(const struct vg_hashrec *r, unsigned level)
{
	if (!level)
		return (r->order >> 30) << 8 | r->hash[0];
	if (level < 32)
		return r->hash[level];
	return ((r->order & (VG_SEQ_MAX - 1)) >> (8 * (35 - level))) & 255;
}

/* Insertion sort, for the few records a radix bucket ends with. */
static void insertion_sort(struct vg_hashrec *r, uint64_t n)
{
	for (uint64_t i = 1; i < n; i++) {
		struct vg_hashrec t = r[i];
		uint64_t j = i;

		for (; j && cmp_rec(&r[j - 1], &t) > 0; j--)
			r[j] = r[j - 1];
		r[j] = t;
	}
}

/*
 * Sort in place, no buffer (American flag sort): move each record to
 * the bucket of its key byte at @level, then sort each bucket by the
 * next byte; a bucket of a few records is insertion sorted. The input
 * position ends every key, so level 36 is never reached.
 */
static void sort_recs_at(struct vg_hashrec *r, uint64_t n, unsigned level)
{
	unsigned nb = level ? 256 : 768;
	uint32_t end[768] = { 0 }, next[768], at = 0;
	struct vg_hashrec t;

	if (n <= 24 || level >= 36) {
		insertion_sort(r, n);
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		end[key_at(&r[i], level)]++;
	for (unsigned b = 0; b < nb; b++) {
		next[b] = at;
		at += end[b];
		end[b] = at;
	}
	for (unsigned b = 0; b < nb; b++) {
		while (next[b] < end[b]) {
			unsigned k;

			t = r[next[b]];
			while ((k = key_at(&t, level)) != b) {
				struct vg_hashrec u = r[next[k]];

				r[next[k]++] = t;
				t = u;
			}
			r[next[b]++] = t;
		}
	}
	for (unsigned b = 0; b < nb; b++) {
		uint32_t lo = b ? end[b - 1] : 0;

		sort_recs_at(r + lo, end[b] - lo, level + 1);
	}
}

/* Sort a run by cmp_rec's order. */
static void sort_recs(struct vg_hashrec *r, uint64_t n)
{
	sort_recs_at(r, n, 0);
}

/* Sort the current run and append it to the runs file. */
static int spill(struct vg_runs *r)
{
	struct run *runs;
	off_t off;
	int ret;

	if (r->fd < 0 && (r->fd = vg_tmpfile(r->dir)) < 0) {
		ret = r->fd;
		r->fd = -1;
		return ret;
	}
	runs = realloc(r->runs, (r->n_runs + 1) * sizeof(*runs));
	if (!runs)
		return -ENOMEM;
	r->runs = runs;
	sort_recs(r->r, r->n);
	off = lseek(r->fd, 0, SEEK_END);
	if (off < 0)
		return -errno;
	ret = vg_write_all(r->fd, r->r, r->n * sizeof(*r->r));
	if (ret)
		return ret;
	runs[r->n_runs++] = (struct run){ (uint64_t)off, r->n };
	r->n = 0;
	r->run_seq = r->seq;
	return 0;
}

/* Add one record of @table; it spills the run when the run is full. */
int vg_runs_push(struct vg_runs *r, int table, const unsigned char *hash,
		 uint64_t size, uint32_t name)
{
	struct vg_hashrec *rec;
	int ret;

	if (r->seq >= VG_SEQ_MAX - 1)
		return -EOVERFLOW;
	if (r->n == r->max && (ret = spill(r)))
		return ret;
	if (r->n == r->cap) {
		uint64_t cap = r->cap ? r->cap * 2 : 4096;
		void *p;

		if (cap > r->max)
			cap = r->max;
		p = realloc(r->r, (size_t)cap * sizeof(*r->r));
		if (!p)
			return -ENOMEM;
		r->r = p;
		r->cap = cap;
	}
	r->sorted = 0;
	rec = &r->r[r->n++];
	memcpy(rec->hash, hash, 32);
	rec->size = size;
	rec->name = name;
	rec->order = (uint32_t)table << 30 | r->seq++;
	return 0;
}

/* Input position of the next record pushed. */
uint32_t vg_runs_seq(const struct vg_runs *r)
{
	return r->seq;
}

/* Take back every record pushed from input position @seq on. */
int vg_runs_drop_from(struct vg_runs *r, uint32_t seq)
{
	uint32_t (*d)[2];

	r->sorted = 0;
	if (seq >= r->run_seq) {
		r->n = seq - r->run_seq;	/* all still in memory */
		r->seq = seq;
		return 0;
	}
	d = realloc(r->drops, (r->n_drops + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	r->drops = d;
	d[r->n_drops][0] = seq;
	d[r->n_drops++][1] = r->run_seq;
	r->n = 0;
	r->run_seq = r->seq;
	return 0;
}

/* Load the next window of a spilled run; 0 (none left is fine) or -errno. */
static int refill(struct source *s)
{
	uint64_t n = s->end - s->next, per = MERGE_BUF / sizeof(*s->buf);
	int ret;

	if (n > per)
		n = per;
	s->pos = 0;
	s->len = n;
	if (!n)
		return 0;
	ret = vg_pread_all(s->fd, s->buf, (size_t)n * sizeof(*s->buf),
			   s->next * sizeof(*s->buf));
	s->next += n;
	return ret;
}

/* 1 when source @a's next record sorts before @b's. */
static int before(const struct source *a, const struct source *b)
{
	return cmp_rec(&a->buf[a->pos], &b->buf[b->pos]) < 0;
}

/* Restore the heap order below position @i. */
static void sift_down(struct source *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t least = i, l = 2 * i + 1, rt = l + 1;
		struct source t;

		if (l < n && before(&h[l], &h[least]))
			least = l;
		if (rt < n && before(&h[rt], &h[least]))
			least = rt;
		if (least == i)
			return;
		t = h[i];
		h[i] = h[least];
		h[least] = t;
		i = least;
	}
}

/* One source per spilled run, with its first window read. */
static int open_spilled(struct vg_runs *r)
{
	for (uint32_t i = 0; i < r->n_runs; i++) {
		struct source *s = &r->src[r->n_src];
		uint64_t first = r->runs[i].off / sizeof(struct vg_hashrec);
		int ret;

		*s = (struct source){ .fd = r->fd, .next = first,
				      .end = first + r->runs[i].n };
		s->buf = malloc(MERGE_BUF);
		if (!s->buf)
			return -ENOMEM;
		r->n_src++;
		ret = refill(s);
		if (ret)
			return ret;
		if (!s->len) {
			free(s->buf);
			r->n_src--;
		}
	}
	return 0;
}

/*
 * Start (or start again) handing back every record in sorted order: the
 * run in memory is sorted, each spilled run gets a window. 0 or -errno.
 */
int vg_runs_rewind(struct vg_runs *r)
{
	int ret;

	free_sources(r);
	r->src = calloc(r->n_runs + 1, sizeof(*r->src));
	if (!r->src)
		return -ENOMEM;
	ret = open_spilled(r);
	if (ret)
		return ret;
	if (!r->sorted)
		sort_recs(r->r, r->n);
	r->sorted = 1;
	if (r->n)
		r->src[r->n_src++] = (struct source){ .buf = r->r, .len = r->n,
						      .fd = -1 };
	for (uint32_t i = r->n_src / 2; i-- > 0;)
		sift_down(r->src, r->n_src, i);
	return 0;
}

/* 1 when @rec's input position was taken back. */
static int dropped(const struct vg_runs *r, const struct vg_hashrec *rec)
{
	uint32_t seq = rec->order & (VG_SEQ_MAX - 1);

	for (uint32_t i = 0; i < r->n_drops; i++)
		if (seq >= r->drops[i][0] && seq < r->drops[i][1])
			return 1;
	return 0;
}

/* Step the heap's first source past its record. 0 or -errno. */
static int advance(struct vg_runs *r)
{
	struct source *s = &r->src[0];
	int ret;

	if (++s->pos == s->len && s->fd >= 0 && (ret = refill(s)))
		return ret;
	if (s->pos == s->len) {
		if (s->fd >= 0)
			free(s->buf);
		r->src[0] = r->src[--r->n_src];
	}
	sift_down(r->src, r->n_src, 0);
	return 0;
}

/* The next record in sorted order into @out: 1, 0 at the end, or -errno. */
int vg_runs_next(struct vg_runs *r, struct vg_hashrec *out)
{
	int ret;

	while (r->n_src) {
		*out = r->src[0].buf[r->src[0].pos];
		ret = advance(r);
		if (ret)
			return ret;
		if (!dropped(r, out))
			return 1;
	}
	return 0;
}
