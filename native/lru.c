/*
 * lru.c - a bounded, thread-safe cache from 48-byte keys to one byte.
 *
 * Owns one table per handle, allocated once: memory never grows, so a
 * flood of distinct files costs evictions, not RAM. The table is
 * set-associative (16 ways a set, one cache line an entry), and each key
 * may live in either of two sets chosen by two hashes: an insert takes a
 * free way in either, and only when both are full replaces the less
 * recently used of their two oldest ways. With one set a key, sets
 * overflow long before the table is full (8 ways, one set a key: keys
 * were evicted at half full); with 16 ways and two choices a table
 * filled to 85 % keeps every key (tests/native/test_cache.py), so a
 * second pass over as many files as the cache holds rescans none. A set
 * is guarded by one of 64 striped locks, taken in index order when a
 * key's two sets need two; no operation scans more than 32 entries.
 *
 * Keys are built by the callers (content hash + rules generation, or
 * device, inode, ctime, size + generation); this file only compares bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vigild.h"

#define WAYS 16
#define NLOCKS 64
#define MAX_CAPACITY (1u << 28)

struct entry {
	uint8_t key[VG_KEY_LEN];
	uint64_t stamp;		/* last use; 0 = empty */
	uint8_t value;
	uint8_t pad[7];
};

struct vg_cache {
	struct entry *table;
	uint32_t set_mask;
	uint64_t clock;		/* atomic; source of stamps */
	uint64_t entries, hits, misses, inserts, evictions;	/* atomic */
	pthread_mutex_t locks[NLOCKS];
};

/* MurmurHash3's 64-bit finalizer: every input bit moves every output bit. */
static uint64_t fmix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

/* The key's two candidate sets: two independent mixes of its six words. */
static void sets_of(const struct vg_cache *c, const uint8_t *key, uint32_t *s)
{
	uint64_t h = 0x243f6a8885a308d3ull, w;

	for (int i = 0; i < VG_KEY_LEN; i += 8) {
		memcpy(&w, key + i, 8);
		h = fmix(h ^ w);
	}
	s[0] = (uint32_t)fmix(h) & c->set_mask;
	s[1] = (uint32_t)fmix(h ^ 0x9e3779b97f4a7c15ull) & c->set_mask;
}

/* Lock the stripes of both sets in @s, lower index first, once each. */
static void lock_sets(struct vg_cache *c, const uint32_t *s)
{
	uint32_t a = s[0] % NLOCKS, b = s[1] % NLOCKS;

	pthread_mutex_lock(&c->locks[a < b ? a : b]);
	if (a != b)
		pthread_mutex_lock(&c->locks[a < b ? b : a]);
}

/* Undo lock_sets. */
static void unlock_sets(struct vg_cache *c, const uint32_t *s)
{
	uint32_t a = s[0] % NLOCKS, b = s[1] % NLOCKS;

	pthread_mutex_unlock(&c->locks[a]);
	if (a != b)
		pthread_mutex_unlock(&c->locks[b]);
}

static uint64_t bump(uint64_t *counter)
{
	return __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* A cache of at least @capacity entries (rounded up to a power of two). */
int vg_cache_new(uint32_t capacity, struct vg_cache **out)
{
	struct vg_cache *c;
	uint32_t sets = 1;

	if (!capacity || capacity > MAX_CAPACITY)
		return -EINVAL;
	while ((uint64_t)sets * WAYS < capacity)
		sets <<= 1;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->table = calloc((size_t)sets * WAYS, sizeof(*c->table));
	if (!c->table) {
		free(c);
		return -ENOMEM;
	}
	c->set_mask = sets - 1;
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	*out = c;
	return 0;
}

/* Free the table; NULL is fine. */
void vg_cache_free(struct vg_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->table);
	free(c);
}

/* The way holding @key in either set of @s, or NULL. Caller holds both
 * sets' locks. */
static struct entry *find(struct vg_cache *c, const uint32_t *s,
			  const uint8_t *key)
{
	for (int k = 0; k < 2; k++) {
		struct entry *e = &c->table[(size_t)s[k] * WAYS];

		for (int i = 0; i < WAYS; i++)
			if (e[i].stamp && !memcmp(e[i].key, key, VG_KEY_LEN))
				return &e[i];
	}
	return NULL;
}

/* 1 and the value in @value when @key is cached, else 0. */
int vg_cache_get(struct vg_cache *c, const uint8_t *key, uint8_t *value)
{
	uint32_t s[2];
	struct entry *e;

	sets_of(c, key, s);
	lock_sets(c, s);
	e = find(c, s, key);
	if (e) {
		e->stamp = bump(&c->clock);
		*value = e->value;
	}
	unlock_sets(c, s);
	bump(e ? &c->hits : &c->misses);
	return e != NULL;
}

/*
 * The way to overwrite for a key of sets @s: an empty way of the emptier
 * set (the choice that keeps sets even), else the least recently used
 * way of both.
 */
static struct entry *victim(struct vg_cache *c, const uint32_t *s)
{
	struct entry *free_way[2] = { NULL, NULL }, *v = NULL;
	int used[2] = { 0, 0 };

	for (int k = 0; k < 2; k++) {
		struct entry *e = &c->table[(size_t)s[k] * WAYS];

		for (int i = 0; i < WAYS; i++) {
			if (!e[i].stamp) {
				free_way[k] = &e[i];
				continue;
			}
			used[k]++;
			if (!v || e[i].stamp < v->stamp)
				v = &e[i];
		}
	}
	if (free_way[0] || free_way[1])
		return free_way[used[1] < used[0] && free_way[1] ? 1 : !free_way[0]];
	return v;
}

/* Insert or update @key with @value, evicting the LRU way of its two sets
 * if both are full. */
void vg_cache_put(struct vg_cache *c, const uint8_t *key, uint8_t value)
{
	uint32_t s[2];
	struct entry *e;

	sets_of(c, key, s);
	lock_sets(c, s);
	e = find(c, s, key);
	if (!e) {
		e = victim(c, s);
		bump(e->stamp ? &c->evictions : &c->entries);
		memcpy(e->key, key, VG_KEY_LEN);
		bump(&c->inserts);
	}
	e->value = value;
	e->stamp = bump(&c->clock);
	unlock_sets(c, s);
}

/* Drop @key if cached; 1 if it was, else 0. */
int vg_cache_del(struct vg_cache *c, const uint8_t *key)
{
	uint32_t s[2];
	struct entry *e;

	sets_of(c, key, s);
	lock_sets(c, s);
	e = find(c, s, key);
	if (e) {
		memset(e, 0, sizeof(*e));
		__atomic_sub_fetch(&c->entries, 1, __ATOMIC_RELAXED);
	}
	unlock_sets(c, s);
	return e != NULL;
}

/* Drop every entry; counters other than entries are kept. */
void vg_cache_clear(struct vg_cache *c)
{
	for (uint32_t s = 0; s <= c->set_mask; s++) {
		pthread_mutex_t *lock = &c->locks[s % NLOCKS];

		pthread_mutex_lock(lock);
		memset(&c->table[(size_t)s * WAYS], 0, WAYS * sizeof(struct entry));
		pthread_mutex_unlock(lock);
	}
	__atomic_store_n(&c->entries, 0, __ATOMIC_RELAXED);
}

/* Copy up to @max cached keys, most recent last per set; returns how many. */
uint32_t vg_cache_export(struct vg_cache *c, uint8_t *keys, uint32_t max)
{
	uint32_t n = 0;

	for (uint32_t s = 0; s <= c->set_mask && n < max; s++) {
		pthread_mutex_t *lock = &c->locks[s % NLOCKS];
		struct entry *e = &c->table[(size_t)s * WAYS];

		pthread_mutex_lock(lock);
		for (int i = 0; i < WAYS && n < max; i++)
			if (e[i].stamp)
				memcpy(keys + (size_t)n++ * VG_KEY_LEN, e[i].key,
				       VG_KEY_LEN);
		pthread_mutex_unlock(lock);
	}
	return n;
}

/* Insert @n keys (48 bytes each) with @value. */
void vg_cache_import(struct vg_cache *c, const uint8_t *keys, uint32_t n,
		     uint8_t value)
{
	for (uint32_t i = 0; i < n; i++)
		vg_cache_put(c, keys + (size_t)i * VG_KEY_LEN, value);
}

/* A snapshot of the counters (each read atomically, not all at once). */
void vg_cache_stats(struct vg_cache *c, struct vg_cache_stats *out)
{
	out->capacity = ((uint64_t)c->set_mask + 1) * WAYS;
	out->entries = __atomic_load_n(&c->entries, __ATOMIC_RELAXED);
	out->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
	out->inserts = __atomic_load_n(&c->inserts, __ATOMIC_RELAXED);
	out->evictions = __atomic_load_n(&c->evictions, __ATOMIC_RELAXED);
}
