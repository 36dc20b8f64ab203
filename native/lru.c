/*
 * lru.c - a bounded, thread-safe cache from 48-byte keys to one byte.
 *
 * Owns one table per handle, allocated once: memory never grows, so a
 * flood of distinct files costs evictions, not RAM. The table is
 * set-associative (8 ways a set, one cache line an entry); a set is
 * guarded by one of 64 striped locks, so readers of different sets never
 * contend and no operation scans more than 8 entries. The least recently
 * used way of a set is the one replaced.
 *
 * Keys are built by the callers (content hash + rules generation, or
 * device, inode, ctime, size + generation); this file only compares bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vigild.h"

#define WAYS 8
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

/* Mix the key's six words into a set index. */
static uint32_t set_of(const struct vg_cache *c, const uint8_t *key)
{
	uint64_t h = 0x243f6a8885a308d3ull, w;

	for (int i = 0; i < VG_KEY_LEN; i += 8) {
		memcpy(&w, key + i, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	return (uint32_t)(h >> 32) & c->set_mask;
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

/* The way holding @key in set @s, or NULL. Caller holds the set's lock. */
static struct entry *find(struct vg_cache *c, uint32_t s, const uint8_t *key)
{
	struct entry *e = &c->table[(size_t)s * WAYS];

	for (int i = 0; i < WAYS; i++)
		if (e[i].stamp && !memcmp(e[i].key, key, VG_KEY_LEN))
			return &e[i];
	return NULL;
}

/* 1 and the value in @value when @key is cached, else 0. */
int vg_cache_get(struct vg_cache *c, const uint8_t *key, uint8_t *value)
{
	uint32_t s = set_of(c, key);
	pthread_mutex_t *lock = &c->locks[s % NLOCKS];
	struct entry *e;

	pthread_mutex_lock(lock);
	e = find(c, s, key);
	if (e) {
		e->stamp = bump(&c->clock);
		*value = e->value;
	}
	pthread_mutex_unlock(lock);
	bump(e ? &c->hits : &c->misses);
	return e != NULL;
}

/* The way to overwrite in set @s: an empty one, else the least recent. */
static struct entry *victim(struct vg_cache *c, uint32_t s)
{
	struct entry *e = &c->table[(size_t)s * WAYS], *v = e;

	for (int i = 0; i < WAYS; i++) {
		if (!e[i].stamp)
			return &e[i];
		if (e[i].stamp < v->stamp)
			v = &e[i];
	}
	return v;
}

/* Insert or update @key with @value, evicting the set's LRU way if full. */
void vg_cache_put(struct vg_cache *c, const uint8_t *key, uint8_t value)
{
	uint32_t s = set_of(c, key);
	pthread_mutex_t *lock = &c->locks[s % NLOCKS];
	struct entry *e;

	pthread_mutex_lock(lock);
	e = find(c, s, key);
	if (!e) {
		e = victim(c, s);
		bump(e->stamp ? &c->evictions : &c->entries);
		memcpy(e->key, key, VG_KEY_LEN);
		bump(&c->inserts);
	}
	e->value = value;
	e->stamp = bump(&c->clock);
	pthread_mutex_unlock(lock);
}

/* Drop @key if cached; 1 if it was, else 0. */
int vg_cache_del(struct vg_cache *c, const uint8_t *key)
{
	uint32_t s = set_of(c, key);
	pthread_mutex_t *lock = &c->locks[s % NLOCKS];
	struct entry *e;

	pthread_mutex_lock(lock);
	e = find(c, s, key);
	if (e) {
		memset(e, 0, sizeof(*e));
		__atomic_sub_fetch(&c->entries, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(lock);
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
