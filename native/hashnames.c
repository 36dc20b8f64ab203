/*
 * hashnames.c - the names of hash entries, each distinct name stored once.
 *
 * Owns the names section on its way into a database: the first
 * RESIDENT bytes in memory, the rest (with a directory given) in an
 * unnamed temporary file written through a small buffer, and a hash
 * table of offsets that finds a name again. A slot keeps the name's
 * 32-bit hash beside its offset, so growing the table reads no name and
 * a probe compares a name only when the hashes agree: a name in the file
 * is then read back with pread (the page cache, not this process's RSS).
 * Must not decide what a name is: its bytes arrive whole, without NUL.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigild.h"

#define RESIDENT ((uint64_t)16 << 20)	/* name bytes kept in memory */
#define WBUF (1 << 16)			/* file names buffered before a write */

/* A name's offset + 1 (0: empty) and its hash. */
struct slot {
	uint32_t off1, hash;
};

struct vg_names {
	char *mem;		/* names [0, mem_len) */
	uint64_t mem_len, mem_cap, mem_max;
	uint64_t len;		/* all names: [0, mem_len) then the file's */
	int fd;			/* names [mem_len, len), or -1 */
	char *dir;
	uint64_t flushed;	/* names [mem_len, flushed) are in the file */
	char wbuf[WBUF];	/* names [flushed, len) when the file is used */
	char *scratch;		/* a name read back from the file */
	size_t scratch_cap;
	struct slot *slots;
	uint32_t n_slots, n_names;
};

/* Start an empty store; @dir NULL keeps every name in memory, else the
 * first @resident bytes (0: RESIDENT) stay there. */
int vg_names_new(struct vg_names **out, const char *dir, uint64_t resident)
{
	struct vg_names *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	n->fd = -1;
	n->mem_max = !dir ? UINT64_MAX : resident ? resident : RESIDENT;
	if (dir && !(n->dir = strdup(dir))) {
		free(n);
		return -ENOMEM;
	}
	*out = n;
	return 0;
}

/* Free the store and its file; NULL is fine. */
void vg_names_free(struct vg_names *n)
{
	if (!n)
		return;
	if (n->fd >= 0)
		close(n->fd);
	free(n->mem);
	free(n->dir);
	free(n->scratch);
	free(n->slots);
	free(n);
}

/*
 * A name's hash: eight bytes at a time, each word multiplied in and
 * folded, then mixed (names like "Agent-1000001-0" differ only in a few
 * bits of one word, and every bit must reach the low bits the table uses).
 */
static uint32_t name_hash(const unsigned char *p, size_t len)
{
	uint64_t h = 14695981039346656037ull ^ len, w;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	w = 0;
	memcpy(&w, p, len);
	h = (h ^ w) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

/* Write out the buffered file names; 0 or -errno. */
static int flush_names(struct vg_names *n)
{
	int ret;

	if (n->fd < 0 || n->len == n->flushed)
		return 0;
	ret = vg_write_all(n->fd, n->wbuf, (size_t)(n->len - n->flushed));
	if (!ret)
		n->flushed = n->len;
	return ret;
}

/* Where the @len + 1 bytes of the name at @off are, read back if need be. */
static const char *name_at(struct vg_names *n, uint64_t off, size_t len)
{
	if (off < n->mem_len)
		return n->mem + off;
	if (off >= n->flushed)
		return n->wbuf + (off - n->flushed);
	if (n->scratch_cap < len + 1) {
		free(n->scratch);
		n->scratch = malloc(len + 1);
		n->scratch_cap = n->scratch ? len + 1 : 0;
		if (!n->scratch)
			return NULL;
	}
	if (vg_pread_all(n->fd, n->scratch, len + 1, off - n->mem_len))
		return NULL;
	return n->scratch;
}

/* 1 when the name at @off is the @len bytes at @p, 0 if not, -errno. */
static int same_name(struct vg_names *n, uint64_t off, const unsigned char *p,
		     size_t len)
{
	const char *s;

	if (off + len + 1 > n->len)
		return 0;
	s = name_at(n, off, len);
	if (!s)
		return -EIO;
	return !memcmp(s, p, len) && s[len] == '\0';
}

/* The slot of a name (hash @h), or the empty slot it would take. */
static struct slot *slot_of(struct vg_names *n, uint32_t h,
			    const unsigned char *p, size_t len, int *err)
{
	uint32_t mask = n->n_slots - 1;

	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		struct slot *s = &n->slots[i];
		int same;

		if (!s->off1)
			return s;
		if (s->hash != h || !p)
			continue;
		same = same_name(n, s->off1 - 1, p, len);
		if (same < 0)
			*err = same;
		if (same)
			return s;
	}
}

/* Index again, in @n_slots slots, the names below @limit. */
static int rehash(struct vg_names *n, uint32_t n_slots, uint64_t limit)
{
	struct slot *old = n->slots;
	uint32_t n_old = n->n_slots;
	int err = 0;

	n->slots = calloc(n_slots, sizeof(*n->slots));
	if (!n->slots) {
		n->slots = old;
		return -ENOMEM;
	}
	n->n_slots = n_slots;
	n->n_names = 0;
	for (uint32_t i = 0; i < n_old; i++) {
		if (i + 16 < n_old)	/* the slot a later name will take */
			__builtin_prefetch(&n->slots[old[i + 16].hash &
						     (n_slots - 1)], 1);
		if (!old[i].off1 || old[i].off1 - 1 >= limit)
			continue;
		*slot_of(n, old[i].hash, NULL, 0, &err) = old[i];
		n->n_names++;
	}
	free(old);
	return 0;
}

/* Keep @len bytes and a NUL in memory, under the budget. 0 or -ENOMEM. */
static int store_mem(struct vg_names *n, const unsigned char *p, size_t len)
{
	uint64_t need = n->mem_len + len + 1;

	if (need > n->mem_cap) {
		uint64_t cap = n->mem_cap ? n->mem_cap : 4096;
		char *m;

		while (cap < need)
			cap *= 2;
		m = realloc(n->mem, (size_t)cap);
		if (!m)
			return -ENOMEM;
		n->mem = m;
		n->mem_cap = cap;
	}
	memcpy(n->mem + n->mem_len, p, len);
	n->mem[n->mem_len + len] = '\0';
	n->mem_len += len + 1;
	n->len = n->mem_len;
	n->flushed = n->len;
	return 0;
}

/* Put @len bytes and a NUL behind the others in the file. 0 or -errno. */
static int store_file(struct vg_names *n, const unsigned char *p, size_t len)
{
	int ret;

	if (n->fd < 0 && (n->fd = vg_tmpfile(n->dir)) < 0) {
		ret = n->fd;
		n->fd = -1;
		return ret;
	}
	if (n->len - n->flushed + len + 1 > WBUF && (ret = flush_names(n)))
		return ret;
	if (len + 1 > WBUF) {	/* too long to buffer: straight to the file */
		ret = vg_write_all(n->fd, p, len);
		if (!ret)
			ret = vg_write_all(n->fd, "", 1);
		if (ret)
			return ret;
		n->len += len + 1;
		n->flushed = n->len;
		return 0;
	}
	memcpy(n->wbuf + (n->len - n->flushed), p, len);
	n->wbuf[n->len - n->flushed + len] = '\0';
	n->len += len + 1;
	return 0;
}

/* Bring the slot where the name @p (@len bytes) starts its probe into cache. */
void vg_names_prefetch(const struct vg_names *n, const unsigned char *p,
		       size_t len)
{
	if (n->n_slots && len)
		__builtin_prefetch(&n->slots[name_hash(p, len) &
					     (n->n_slots - 1)]);
}

/* Offset of the name @p (@len bytes, no NUL), stored if new; or -errno. */
int64_t vg_names_add(struct vg_names *n, const unsigned char *p, size_t len)
{
	uint32_t h = name_hash(p, len);
	uint64_t off = n->len;
	struct slot *s;
	int err = 0, ret;

	if ((uint64_t)(n->n_names + 1) * 4 > (uint64_t)n->n_slots * 3 &&
	    (ret = rehash(n, n->n_slots ? n->n_slots * 2 : 1024, UINT64_MAX)))
		return ret;
	s = slot_of(n, h, p, len, &err);
	if (err)
		return err;
	if (s->off1)
		return s->off1 - 1;
	if (off + len + 1 > UINT32_MAX)
		return -EOVERFLOW;
	if (n->fd < 0 && off + len + 1 <= n->mem_max)
		ret = store_mem(n, p, len);
	else
		ret = store_file(n, p, len);
	if (ret)
		return ret;
	*s = (struct slot){ (uint32_t)off + 1, h };
	n->n_names++;
	return (int64_t)off;
}

/* Take a names blob as it is (its offsets are the caller's); no index. */
int vg_names_adopt(struct vg_names *n, const char *blob, uint64_t len)
{
	if (n->len || (len && blob[len - 1] != '\0'))
		return -EINVAL;
	n->mem = malloc(len ? (size_t)len : 1);
	if (!n->mem)
		return -ENOMEM;
	memcpy(n->mem, blob, (size_t)len);
	n->mem_len = n->mem_cap = n->len = n->flushed = len;
	return 0;
}

/* Bytes of names stored so far. */
uint64_t vg_names_len(const struct vg_names *n)
{
	return n->len;
}

/* Forget every name from offset @len on (a list taken back). 0 or -errno. */
int vg_names_truncate(struct vg_names *n, uint64_t len)
{
	int ret = flush_names(n);

	if (ret || len >= n->len)
		return ret;
	if (len < n->mem_len)
		n->mem_len = len;	/* the file, if any, is emptied */
	if (n->fd >= 0 && (ftruncate(n->fd, (off_t)(len - n->mem_len)) ||
			   lseek(n->fd, 0, SEEK_END) < 0))
		return -errno;
	n->len = n->flushed = len;
	return n->n_slots ? rehash(n, n->n_slots, len) : 0;
}

/* Free the index: nothing is added after this (its memory goes elsewhere). */
void vg_names_drop_index(struct vg_names *n)
{
	free(n->slots);
	n->slots = NULL;
	n->n_slots = n->n_names = 0;
}

/* Copy up to @len bytes of the names from @off into @buf: the count, or -errno. */
int64_t vg_names_read(struct vg_names *n, uint64_t off, void *buf, size_t len)
{
	int ret = flush_names(n);

	if (ret)
		return ret;
	if (off >= n->len)
		return 0;
	if (len > n->len - off)
		len = (size_t)(n->len - off);
	if (off < n->mem_len) {
		if (len > n->mem_len - off)
			len = (size_t)(n->mem_len - off);
		memcpy(buf, n->mem + off, len);
		return (int64_t)len;
	}
	ret = vg_pread_all(n->fd, buf, len, off - n->mem_len);
	return ret ? ret : (int64_t)len;
}
