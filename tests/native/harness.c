/*
 * harness.c - drives the native code under AddressSanitizer and UBSan.
 *
 * Built and run by test_sanitizers.py. Forges hash databases with valid
 * CRCs but mutated bytes (what a checksum cannot catch), opens them and,
 * when one opens, looks up hashes in it: any out-of-bounds read aborts
 * under ASan. Then hammers one cache from several threads. Prints "ok".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigild.h"

#define CRC_AT 24

static unsigned long long rng = 88172645463325252ull;

static unsigned long long next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)next();
}

/* Write a small database of @n_sha and @n_md5 random entries to @path. */
static void build(const char *path, uint32_t n_sha, uint32_t n_md5)
{
	static const char names[] = "a\0bb\0ccc\0";
	uint8_t *sha = calloc(n_sha + 1, VG_SHA256_REC_LEN);
	uint8_t *md5 = calloc(n_md5 + 1, VG_MD5_REC_LEN);

	for (uint32_t i = 0; i < n_sha; i++) {
		uint8_t *r = sha + (size_t)i * VG_SHA256_REC_LEN;
		uint64_t size = next() % 4 ? next() % 100000 : VG_SIZE_ANY;
		uint32_t name = (uint32_t)(next() % 3) * 2;

		fill(r, 32);
		memcpy(r + 32, &size, 8);
		memcpy(r + 40, &name, 4);
	}
	for (uint32_t i = 0; i < n_md5; i++) {
		uint8_t *r = md5 + (size_t)i * VG_MD5_REC_LEN;
		uint64_t size = next() % 1000;
		uint32_t name = 0;

		fill(r, 16);
		memcpy(r + 16, &size, 8);
		memcpy(r + 24, &name, 4);
	}
	if (vg_hashdb_write(path, sha, n_sha, md5, n_md5, names, sizeof(names)))
		abort();
	free(sha);
	free(md5);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;

	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(*len + 1);
	if (fread(buf, 1, *len, f) != *len)
		abort();
	fclose(f);
	return buf;
}

/* Store @buf with its CRC recomputed, so only structure checks remain. */
static void forge(const char *path, uint8_t *buf, size_t len)
{
	uint32_t crc;
	FILE *f;

	memset(buf + CRC_AT, 0, 4);
	crc = vg_crc32c(0, buf, len);
	memcpy(buf + CRC_AT, &crc, 4);
	f = fopen(path, "wb");
	fwrite(buf, 1, len, f);
	fclose(f);
}

/* Look up random and stored hashes; results do not matter, bounds do. */
static void probe(struct vg_hashdb *db, const uint8_t *img, size_t len)
{
	const char *name;
	uint8_t h[32];

	for (int i = 0; i < 200; i++) {
		fill(h, 32);
		if (i % 2 && len > 64 + 32)
			memcpy(h, img + 64 + next() % (len - 64 - 32), 32);
		vg_hashdb_find_sha256(db, h, &name);
		vg_hashdb_find_md5(db, h, next() % 1000, &name);
		vg_hashdb_size_listed(db, next() % 100000);
	}
}

static int fuzz_db(const char *dir)
{
	char path[4096], bad[4096];
	int opened = 0;

	snprintf(path, sizeof(path), "%s/db", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	for (int round = 0; round < 400; round++) {
		size_t len;
		uint8_t *img;
		struct vg_hashdb *db;
		int flips = 1 + (int)(next() % 4);

		build(path, (uint32_t)(next() % 300), (uint32_t)(next() % 40));
		img = slurp(path, &len);
		for (int k = 0; k < flips; k++)
			img[next() % len] ^= (uint8_t)(1 + next() % 255);
		if (round % 5 == 0)
			len = next() % len;
		forge(bad, img, len);
		if (vg_hashdb_open(bad, &db) == 0) {
			opened++;
			probe(db, img, len);
			vg_hashdb_close(db);
		}
		free(img);
	}
	return opened;
}

static uint64_t a8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/*
 * A CRC-valid file whose entry count and names length are chosen so that
 * the end of the layout wraps around 2^64 to the file's real length: the
 * loader must refuse it before it reads 2^24 bucket starts off the map.
 */
static void wrapped_counts(const char *dir)
{
	char path[4096];
	struct vg_hashdb *db;
	size_t len;
	uint8_t *img;
	uint32_t n_sha = 1u << 28, n_md5, n_sizes;
	uint8_t sha_bits = 24, md5_bits;
	uint64_t names_at, names_len;

	snprintf(path, sizeof(path), "%s/wrap", dir);
	build(path, 40, 10);
	img = slurp(path, &len);
	memcpy(&n_md5, img + 36, 4);
	memcpy(&n_sizes, img + 40, 4);
	md5_bits = img[45];
	names_at = a8(64 + (uint64_t)n_sizes * 8);
	names_at = a8(names_at + (((uint64_t)1 << sha_bits) + 1) * 4);
	names_at = a8(names_at + (uint64_t)n_sha * 36);
	names_at = a8(names_at + (((uint64_t)1 << md5_bits) + 1) * 4);
	names_at = a8(names_at + (uint64_t)n_md5 * 28);
	names_len = (uint64_t)len - names_at;	/* wraps: names_at > len */
	memcpy(img + 32, &n_sha, 4);
	img[44] = sha_bits;
	memcpy(img + 48, &names_len, 8);
	forge(path, img, len);
	if (vg_hashdb_open(path, &db) != -EBADMSG)
		abort();
	free(img);
}

static void *cache_worker(void *arg)
{
	struct vg_cache *c = arg;
	uint8_t key[VG_KEY_LEN] = { 0 }, v;

	for (int i = 0; i < 200000; i++) {
		uint32_t k = (uint32_t)rand();

		memcpy(key, &k, 4);
		if (i % 3)
			vg_cache_put(c, key, (uint8_t)k);
		else
			vg_cache_get(c, key, &v);
		if (i % 50000 == 0)
			vg_cache_clear(c);
	}
	return NULL;
}

static void hammer_cache(void)
{
	struct vg_cache *c;
	pthread_t t[4];

	if (vg_cache_new(4096, &c))
		abort();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, cache_worker, c);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	vg_cache_free(c);
}

int main(int argc, char **argv)
{
	int opened;

	if (argc != 2)
		return 2;
	wrapped_counts(argv[1]);
	opened = fuzz_db(argv[1]);
	hammer_cache();
	printf("ok: %d forged databases passed the structure checks and were probed\n",
	       opened);
	return 0;
}
