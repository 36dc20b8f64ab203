/*
 * hashlist.c - known-bad hash lists read in C, line by line.
 *
 * Owns one builder per compile: what each table has taken, and the
 * entries and names handed on as they are read, entries to hashsort.c
 * (sorted runs, spilled beside the output when the builder has a
 * directory) and names to hashnames.c (each stored once); hashwrite.c
 * writes the file. Reads a list through the caller's fd in 1 MiB chunks
 * (never mapped, so a 500 MB list costs no 500 MB of RSS);
 * must not decide what a line the parser does not accept means: it stops
 * there and names the line, and hashes.py says what is wrong with it (or,
 * for a line only Python reads the same way, reads that file itself).
 *
 * The line shapes and their meaning are those of daemon/vigild/hashes.py:
 * lines end at \n, \r or \r\n; a line is stripped of what Python's
 * str.strip() strips (Unicode spaces too), its tabs read as spaces; then
 * "HASH;comment" (LOKI), "HASH:SIZE:NAME[:...]" (ClamAV) or "HASH [name]",
 * where HASH is a SHA-256, an MD5 or a SHA-1, each kept in its own table.
 * Names keep their bytes; a name that is not valid UTF-8 or holds a NUL
 * is left to Python, which replaces what it cannot decode.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigild.h"

#define CHUNK (1 << 20)
#define T_SHA256 0
#define T_MD5 1
#define T_SHA1 2
#define BAD 1			/* a line for Python to judge */
#define BATCH 32		/* entries parsed before their names are added */

struct vg_hashlist {
	struct vg_runs *runs;
	struct vg_names *names;
	uint32_t n[3];		/* entries per table, repeats included */
	unsigned char *scratch;	/* a name with its tabs made spaces */
	uint64_t scratch_cap;
};

/* A piece of the line being read. */
struct span {
	const unsigned char *p;
	size_t n;
};

/* One line's entry, as the line shapes give it. */
struct entry {
	unsigned char hash[32];
	int kind;		/* T_SHA256, T_MD5 or T_SHA1 */
	uint64_t size;
	struct span name;	/* n == 0: the list's own name */
};

/* Start an empty builder that keeps everything in memory. */
int vg_hashlist_new(struct vg_hashlist **out)
{
	struct vg_hashlist *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	ret = vg_runs_new(&l->runs, NULL, 0);
	if (!ret)
		ret = vg_names_new(&l->names, NULL, 0);
	if (ret) {
		vg_hashlist_free(l);
		return ret;
	}
	*out = l;
	return 0;
}

/*
 * Keep the builder's memory bounded: entries sorted in runs of
 * @run_bytes (0: 32 MiB) and names past @names_bytes (0: 16 MiB) go to
 * unnamed files in @dir. Only before anything is added (-EBUSY after).
 * 0 or -errno.
 */
int vg_hashlist_spill(struct vg_hashlist *l, const char *dir,
		      uint64_t run_bytes, uint64_t names_bytes)
{
	struct vg_runs *runs;
	struct vg_names *names;
	int ret;

	if (vg_runs_seq(l->runs) || vg_names_len(l->names))
		return -EBUSY;
	ret = vg_runs_new(&runs, dir, run_bytes);
	if (ret)
		return ret;
	ret = vg_names_new(&names, dir, names_bytes);
	if (ret) {
		vg_runs_free(runs);
		return ret;
	}
	vg_runs_free(l->runs);
	vg_names_free(l->names);
	l->runs = runs;
	l->names = names;
	return 0;
}

/* Free a builder and all it holds; NULL is fine. */
void vg_hashlist_free(struct vg_hashlist *l)
{
	if (!l)
		return;
	vg_runs_free(l->runs);
	vg_names_free(l->names);
	free(l->scratch);
	free(l);
}

/* Length of the whitespace character str.strip() strips at @p, or 0. */
static size_t space_at(const unsigned char *p, const unsigned char *end)
{
	size_t left = (size_t)(end - p);

	if (*p == ' ' || (*p >= '\t' && *p <= '\r') || (*p >= 0x1c && *p <= 0x1f))
		return 1;
	if (left >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
		return 2;
	if (left < 3)
		return 0;
	if ((p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) ||
	    (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) ||
	    (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f))
		return 3;
	if (p[0] == 0xe2 && p[1] == 0x80 &&
	    (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf) &&
	    p[2] >= 0x80)
		return 3;
	return 0;
}

/* Length of the whitespace character that ends just before @end, or 0. */
static size_t space_before(const unsigned char *start, const unsigned char *end)
{
	for (size_t k = 1; k <= 3 && k <= (size_t)(end - start); k++)
		if (space_at(end - k, end) == k)
			return k;
	return 0;
}

/* @s without the whitespace str.strip() removes from both ends. */
static struct span strip(struct span s)
{
	size_t k;

	while (s.n && (k = space_at(s.p, s.p + s.n))) {
		s.p += k;
		s.n -= k;
	}
	while (s.n && (k = space_before(s.p, s.p + s.n)))
		s.n -= k;
	return s;
}

/* Offset of the first @c in @s (a tab counts as a space), or @s.n. */
static size_t find(struct span s, unsigned char c)
{
	for (size_t i = 0; i < s.n; i++)
		if (s.p[i] == c || (c == ' ' && s.p[i] == '\t'))
			return i;
	return s.n;
}

/* The part of @s from @from (clamped) on. */
static struct span after(struct span s, size_t from)
{
	if (from > s.n)
		from = s.n;
	return (struct span){ s.p + from, s.n - from };
}

/* One more than the value of each hex digit; 0 for every other byte. */
static const unsigned char hex1[256] = {
	['0'] = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	['a'] = 11, 12, 13, 14, 15, 16,
	['A'] = 11, 12, 13, 14, 15, 16,
};

/* Decode a 64, 40 or 32 hex digit hash into @e; BAD otherwise. */
static int parse_hash(struct span s, struct entry *e)
{
	memset(e->hash, 0, sizeof(e->hash));
	if (s.n == 64)
		e->kind = T_SHA256;
	else if (s.n == 32)
		e->kind = T_MD5;
	else if (s.n == 40)
		e->kind = T_SHA1;
	else
		return BAD;
	for (size_t i = 0; i < s.n; i += 2) {
		unsigned char hi = hex1[s.p[i]], lo = hex1[s.p[i + 1]];

		if (!hi || !lo)
			return BAD;
		e->hash[i / 2] = (unsigned char)((hi - 1) << 4 | (lo - 1));
	}
	return 0;
}

/* ClamAV's size: 1 to 20 ASCII digits below VG_SIZE_ANY, or '*'. */
static int parse_size(struct span s, uint64_t *size)
{
	uint64_t v = 0;

	if (s.n == 1 && s.p[0] == '*') {
		*size = VG_SIZE_ANY;
		return 0;
	}
	if (!s.n || s.n > 20)
		return BAD;
	for (size_t i = 0; i < s.n; i++) {
		if (s.p[i] < '0' || s.p[i] > '9' ||
		    __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s.p[i] - '0'), &v))
			return BAD;
	}
	if (v == VG_SIZE_ANY)
		return BAD;
	*size = v;
	return 0;
}

/* "HASH:SIZE:NAME[:...]": the name is the third field, stripped. */
static int parse_colon(struct span line, struct entry *e)
{
	size_t c1 = find(line, ':');
	struct span rest = after(line, c1 + 1);
	size_t c2 = find(rest, ':');
	struct span name = after(rest, c2 + 1);

	if (c1 == line.n || c2 == rest.n)
		return BAD;
	name.n = find(name, ':');
	if (parse_hash((struct span){ line.p, c1 }, e) ||
	    parse_size((struct span){ rest.p, c2 }, &e->size))
		return BAD;
	e->name = strip(name);
	return 0;
}

/* "HASH [name]": no MD5 (it needs a size); " #" ends the name. */
static int parse_plain(struct span line, struct entry *e)
{
	size_t sp = find(line, ' ');
	struct span name = after(line, sp + 1);

	if (parse_hash((struct span){ line.p, sp }, e) || e->kind == T_MD5)
		return BAD;
	for (size_t i = 0; i + 1 < name.n; i++) {
		if ((name.p[i] == ' ' || name.p[i] == '\t') &&
		    name.p[i + 1] == '#') {
			name.n = i;
			break;
		}
	}
	name = strip(name);
	while (name.n && name.p[0] == '*') {
		name.p++;
		name.n--;
	}
	e->size = VG_SIZE_ANY;
	e->name = name;
	return 0;
}

/* LOKI's "HASH;comment": any hash, any size. */
static int parse_loki(struct span line, struct entry *e)
{
	size_t semi = find(line, ';');

	if (parse_hash(strip((struct span){ line.p, semi }), e))
		return BAD;
	e->size = VG_SIZE_ANY;
	e->name = strip(after(line, semi + 1));
	return 0;
}

/* Length of the valid UTF-8 character at @p (as Python decodes), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	size_t n = *p < 0x80 ? 1 : *p < 0xc2 ? 0 : *p < 0xe0 ? 2 :
		   *p < 0xf0 ? 3 : *p < 0xf5 ? 4 : 0;
	unsigned char lo = 0x80, hi = 0xbf;

	if (!n || (size_t)(end - p) < n)
		return 0;
	if (*p == 0xe0)
		lo = 0xa0;
	else if (*p == 0xed)
		hi = 0x9f;
	else if (*p == 0xf0)
		lo = 0x90;
	else if (*p == 0xf4)
		hi = 0x8f;
	if (n > 1 && (p[1] < lo || p[1] > hi))
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* 0 when @s is a name stored as it is: valid UTF-8, no NUL. */
static int name_ok(struct span s)
{
	size_t k;

	for (size_t i = 0; i < s.n; i += k) {
		if (!s.p[i])
			return BAD;
		k = s.p[i] < 0x80 ? 1 : utf8_len(s.p + i, s.p + s.n);
		if (!k)
			return BAD;
	}
	return 0;
}

/* Read one stripped, non-empty line into @e; BAD when Python must judge. */
static int parse_line(struct span line, struct entry *e)
{
	size_t sp = find(line, ' ');
	struct span head = { line.p, sp };
	size_t colon = find(head, ':'), semi = find(head, ';');
	int ret;

	if (semi < sp && (colon == sp || semi < colon))
		ret = parse_loki(line, e);
	else if (colon < sp)
		ret = parse_colon(line, e);
	else
		ret = parse_plain(line, e);
	return ret ? ret : name_ok(e->name);
}

/* Grow @buf (of @cap elements of @size) to hold at least @need. */
static int grow(void **buf, uint64_t *cap, uint64_t need, size_t size)
{
	uint64_t n = *cap ? *cap : 4096;
	void *p;

	while (n < need)
		n *= 2;
	if (n == *cap)
		return 0;
	p = realloc(*buf, (size_t)(n * size));
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* Append one entry to its table; @name is the entry's name. */
static int push(struct vg_hashlist *l, int kind, const unsigned char *hash,
		uint64_t size, const unsigned char *name, size_t name_len)
{
	int64_t off = vg_names_add(l->names, name, name_len);
	int ret;

	if (off < 0)
		return (int)off;
	ret = vg_runs_push(l->runs, kind, hash, size, (uint32_t)off);
	if (!ret)
		l->n[kind]++;
	return ret;
}

/* Add a parsed line's entry: its name (tabs read as spaces) or @stem. */
static int add_entry(struct vg_hashlist *l, const struct entry *e,
		     const char *stem)
{
	struct span name = e->name;

	if (!name.n)
		return push(l, e->kind, e->hash, e->size,
			    (const unsigned char *)stem, strlen(stem));
	if (memchr(name.p, '\t', name.n)) {
		if (grow((void **)&l->scratch, &l->scratch_cap, name.n, 1))
			return -ENOMEM;
		for (size_t i = 0; i < name.n; i++)
			l->scratch[i] = name.p[i] == '\t' ? ' ' : name.p[i];
		name.p = l->scratch;
	}
	return push(l, e->kind, e->hash, e->size, name.p, name.n);
}

/* Read one raw line (no terminator) into @e: 1 for an entry, 0 for none
 * (blank or comment), -EILSEQ when Python must judge it. */
static int take_line(struct span raw, struct entry *e,
		     struct vg_hashlist_result *r)
{
	struct span line = strip(raw);

	if (!line.n || line.p[0] == '#')
		return 0;
	if (parse_line(line, e))
		return -EILSEQ;
	r->sha1 += e->kind == T_SHA1;
	r->entries++;
	return 1;
}

/* The list as it is read: a window of the file, grown for a long line. */
struct reader {
	int fd;
	int eof;
	unsigned char *buf;
	uint64_t cap, len, pos;
	uint64_t file_off;	/* file offset of buf[0] */
};

/* Keep the unread tail, read more behind it. Returns 0 or -errno. */
static int fill(struct reader *rd)
{
	ssize_t n;

	memmove(rd->buf, rd->buf + rd->pos, (size_t)(rd->len - rd->pos));
	rd->file_off += rd->pos;
	rd->len -= rd->pos;
	rd->pos = 0;
	if (rd->len == rd->cap &&
	    grow((void **)&rd->buf, &rd->cap, rd->cap + 1, 1))
		return -ENOMEM;
	do {
		n = read(rd->fd, rd->buf + rd->len, (size_t)(rd->cap - rd->len));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	rd->eof = n == 0;
	rd->len += (uint64_t)n;
	if (rd->file_off == 0 && rd->len >= 3 && !rd->pos &&
	    !memcmp(rd->buf, "\xef\xbb\xbf", 3))
		rd->pos = 3;	/* utf-8-sig: a BOM only at the start */
	return 0;
}

/* End of the line at @rd->pos (its terminator's offset), or -1 if not all read. */
static int64_t line_end(const struct reader *rd, uint64_t *term)
{
	for (uint64_t i = rd->pos; i < rd->len; i++) {
		if (rd->buf[i] != '\n' && rd->buf[i] != '\r')
			continue;
		if (rd->buf[i] == '\r' && i + 1 == rd->len && !rd->eof)
			return -1;	/* may be the \r of a \r\n */
		*term = rd->buf[i] == '\r' && i + 1 < rd->len &&
			rd->buf[i + 1] == '\n' ? 2 : 1;
		return (int64_t)i;
	}
	if (!rd->eof || rd->pos == rd->len)
		return -1;
	*term = 0;
	return (int64_t)rd->len;
}

/*
 * Parse up to BATCH entries from the complete lines in the window into
 * @batch; their names point into it. Returns the count; *@end is 1 when
 * the window has no complete line left, -EILSEQ when a line is left for
 * Python (@r names it and the window stops there).
 */
static int parse_batch(struct reader *rd, struct entry *batch,
		       struct vg_hashlist_result *r, int *end)
{
	uint64_t term;
	int64_t at;
	int n = 0, ret;

	*end = 0;
	while (n < BATCH) {
		struct span raw;

		if ((at = line_end(rd, &term)) < 0) {
			*end = 1;
			break;
		}
		raw = (struct span){ rd->buf + rd->pos,
				     (size_t)((uint64_t)at - rd->pos) };
		r->lines++;
		ret = take_line(raw, &batch[n], r);
		if (ret < 0) {
			r->bad_line = r->lines;
			r->bad_offset = rd->file_off + rd->pos;
			r->bad_length = raw.n;
			*end = ret;
			break;
		}
		n += ret;
		rd->pos = (uint64_t)at + term;
	}
	return n;
}

/*
 * Read every complete line in the window; on -EILSEQ @r names the line.
 * Lines go in batches: every name's slot is asked for (prefetched)
 * before the first is added, so the index's cache misses overlap.
 */
static int take_lines(struct vg_hashlist *l, struct reader *rd,
		      const char *stem, struct vg_hashlist_result *r)
{
	struct entry batch[BATCH];
	int end = 0, ret;

	while (!end) {
		int n = parse_batch(rd, batch, r, &end);

		for (int i = 0; i < n; i++)
			vg_names_prefetch(l->names, batch[i].name.p,
					  batch[i].name.n);
		for (int i = 0; i < n; i++)
			if ((ret = add_entry(l, &batch[i], stem)))
				return ret;
	}
	return end < 0 ? end : 0;
}

/* What a builder held before a list: taken back when the list is not read. */
struct mark {
	uint32_t n[3], seq;
	uint64_t names_len;
};

/* Forget what one list added after @m (it is Python's now). */
static int roll_back(struct vg_hashlist *l, const struct mark *m)
{
	int ret = vg_runs_drop_from(l->runs, m->seq);

	memcpy(l->n, m->n, sizeof(l->n));
	return ret ? ret : vg_names_truncate(l->names, m->names_len);
}

/*
 * Read the list behind @fd (from its current offset) into @l; entries
 * without a name take @stem. Returns 0; -EILSEQ when a line is not read
 * here (@out names it: line number, file offset and length; nothing of
 * this list is kept); or another -errno.
 */
int vg_hashlist_parse(struct vg_hashlist *l, int fd, const char *stem,
		      struct vg_hashlist_result *out)
{
	struct reader rd = { .fd = fd };
	struct mark m = { .seq = vg_runs_seq(l->runs),
			  .names_len = vg_names_len(l->names) };
	int ret;

	memcpy(m.n, l->n, sizeof(m.n));

	memset(out, 0, sizeof(*out));
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	ret = grow((void **)&rd.buf, &rd.cap, CHUNK, 1);
	while (!ret) {
		ret = fill(&rd);
		if (!ret)
			ret = take_lines(l, &rd, stem, out);
		if (rd.eof)
			break;
	}
	free(rd.buf);
	if (ret == -EILSEQ && (ret = roll_back(l, &m)) == 0)
		ret = -EILSEQ;
	return ret;
}

/* Add one entry read elsewhere: a 32-byte SHA-256, 16-byte MD5 or 20-byte SHA-1. */
int vg_hashlist_add(struct vg_hashlist *l, const uint8_t *hash,
		    uint32_t hash_len, uint64_t size, const char *name,
		    uint64_t name_len)
{
	unsigned char h[32] = { 0 };
	int kind = hash_len == 32 ? T_SHA256 : hash_len == 16 ? T_MD5 :
		   hash_len == 20 ? T_SHA1 : -1;

	if (kind < 0 || memchr(name, '\0', (size_t)name_len))
		return -EINVAL;
	memcpy(h, hash, hash_len);
	return push(l, kind, h, size, (const unsigned char *)name,
		    (size_t)name_len);
}

/* Counts of the entries added so far (repeats included). */
void vg_hashlist_counts(const struct vg_hashlist *l, uint32_t *n_sha256,
			uint32_t *n_md5, uint32_t *n_sha1)
{
	*n_sha256 = l->n[T_SHA256];
	*n_md5 = l->n[T_MD5];
	*n_sha1 = l->n[T_SHA1];
}

/*
 * Write the database of everything added to @path (atomically; see
 * hashwrite.c). Frees the name index first (its memory goes to the
 * merge): add nothing after this.
 */
int vg_hashlist_write(struct vg_hashlist *l, const char *path)
{
	vg_names_drop_index(l->names);
	return vg_hashdb_stream(path, l->runs, l->names, l->n);
}
