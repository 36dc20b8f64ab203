/*
 * harness.c - drives the native code under AddressSanitizer and UBSan,
 * and (mode "threads") under ThreadSanitizer.
 *
 * Built and run by test_sanitizers.py. Forges hash databases with valid
 * CRCs but mutated bytes (what a checksum cannot catch), opens them and,
 * when one opens, looks up hashes in it: any out-of-bounds read aborts
 * under ASan. Then hammers one cache from several threads, and races the
 * on-access core (reader, queue, watcher) through vg_fan_adopt on a
 * socketpair per group (two groups, as for an overlay and its layers):
 * workers answering, skipping the answer, answering around the deadline;
 * configure at runtime; stop with jobs in flight. Every permission event
 * must get exactly one response, on the socket of its own group. Also
 * reads mutated hash lists (vg_hashlist_parse), and a list with a line
 * longer than the reader's window. Prints "ok".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
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

/* Random sized records (MD5 or SHA-1) of @hlen-byte hashes, some any-size. */
static uint8_t *sized_recs(uint32_t n, size_t hlen)
{
	size_t rlen = hlen + 12;
	uint8_t *recs = calloc(n + 1, rlen);

	for (uint32_t i = 0; i < n; i++) {
		uint8_t *r = recs + (size_t)i * rlen;
		uint64_t size = next() % 5 ? next() % 1000 : VG_SIZE_ANY;
		uint32_t name = 0;

		fill(r, hlen);
		memcpy(r + hlen, &size, 8);
		memcpy(r + hlen + 8, &name, 4);
	}
	return recs;
}

/* Write a small database of random entries (each table) to @path. */
static void build(const char *path, uint32_t n_sha, uint32_t n_md5,
		  uint32_t n_sha1)
{
	static const char names[] = "a\0bb\0ccc\0";
	uint8_t *sha = calloc(n_sha + 1, VG_SHA256_REC_LEN);
	uint8_t *md5 = sized_recs(n_md5, VG_MD5_LEN);
	uint8_t *sha1 = sized_recs(n_sha1, VG_SHA1_LEN);

	for (uint32_t i = 0; i < n_sha; i++) {
		uint8_t *r = sha + (size_t)i * VG_SHA256_REC_LEN;
		uint64_t size = next() % 4 ? next() % 100000 : VG_SIZE_ANY;
		uint32_t name = (uint32_t)(next() % 3) * 2;

		fill(r, 32);
		memcpy(r + 32, &size, 8);
		memcpy(r + 40, &name, 4);
	}
	if (vg_hashdb_write(path, sha, n_sha, md5, n_md5, sha1, n_sha1, names,
			    sizeof(names)))
		abort();
	free(sha);
	free(md5);
	free(sha1);
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
		vg_hashdb_find_sha1(db, h, next() % 1000, &name);
		vg_hashdb_size_listed(db, next() % 100000);
		vg_hashdb_digests_for(db, next() % 1000);
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

		build(path, (uint32_t)(next() % 300), (uint32_t)(next() % 40),
		      (uint32_t)(next() % 40));
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

/* Lines of every shape, each with a few of the bytes the reader minds. */
static size_t list_text(char *buf, size_t cap)
{
	static const char *shapes[] = {
		"%064llx:%llu:Name.%llu\r\n", "%032llx;comment %llu\xc2\xa0%llu\n",
		"%040llx  *file %llu # c%llu\r", "%064llx\t%llu\t%llu\n",
		"# %llx %llu %llu\n", "%032llx:*:\xe3\x80\x80N%llu\xe2\x80\x8a%llu\n",
		"%040llx:%llu:Sha1.%llu\n", "%040llx;loki %llu %llu\r\n",
	};
	size_t len = 0;

	for (int i = 0; i < 40 && len + 200 < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len,
					shapes[next() % 8], next(), next() % 99,
					next() % 7);
	return len;
}

/* Write @len bytes of @buf to @path and read it as a hash list. */
static int read_list(const char *dir, const char *buf, size_t len)
{
	char path[4096], db_path[4096];
	struct vg_hashlist_result r;
	struct vg_hashlist *l;
	struct vg_hashdb *db;
	FILE *f;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/list", dir);
	snprintf(db_path, sizeof(db_path), "%s/list.vhdb", dir);
	f = fopen(path, "wb");
	fwrite(buf, 1, len, f);
	fclose(f);
	if (vg_hashlist_new(&l))
		abort();
	if (next() % 2 && vg_hashlist_spill(l, dir, 7 * sizeof(struct vg_hashrec),
					     64))
		abort();	/* tiny runs and names budget: the spill paths */
	fd = open(path, O_RDONLY);
	ret = vg_hashlist_parse(l, fd, "stem", &r);
	close(fd);
	if (ret && ret != -EILSEQ)
		abort();
	if (ret && (!r.bad_line || r.bad_offset + r.bad_length > len))
		abort();
	if (vg_hashlist_write(l, db_path) || vg_hashdb_open(db_path, &db))
		abort();
	vg_hashdb_close(db);
	vg_hashlist_free(l);
	return ret == 0;
}

/* Hash lists with mutated bytes, and one line longer than the window. */
static int fuzz_lists(const char *dir)
{
	size_t cap = 3 << 20, len;
	char *buf = malloc(cap);
	int read = 0;

	for (int round = 0; round < 300; round++) {
		len = list_text(buf, 16384);
		for (int k = 1 + (int)(next() % 3); k > 0 && len; k--)
			buf[next() % len] = (char)(next() % 256);
		if (round % 7 == 0 && len)
			len = next() % len;
		read += read_list(dir, buf, len);
	}
	memset(buf, 'N', cap);
	memcpy(buf, "0123456789abcdef0123456789abcdef;", 33);
	len = (2 << 20) + 1;
	buf[len - 1] = '\r';
	while (len + 100 < cap)
		len += (size_t)snprintf(buf + len, cap - len, "%064llx:%llu:N\r\n",
					next(), next() % 99);
	if (!read_list(dir, buf, len))
		abort();
	free(buf);
	return read;
}

static uint64_t a8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* Header offsets of each table's count and bucket bits, and entry length. */
static const size_t COUNT_AT[3] = { 32, 36, 56 }, BITS_AT[3] = { 44, 45, 60 };
static const uint64_t ENT[3] = { 36, 28, 32 };

/* Where the names start for the counts and bits in the header @img. */
static uint64_t names_start(const uint8_t *img)
{
	uint32_t n_sizes, n;
	uint64_t at;

	memcpy(&n_sizes, img + 40, 4);
	at = a8(64 + (uint64_t)n_sizes * 9);
	for (int t = 0; t < 3; t++) {
		memcpy(&n, img + COUNT_AT[t], 4);
		at = a8(at + (((uint64_t)1 << img[BITS_AT[t]]) + 1) * 4);
		at = a8(at + (uint64_t)n * ENT[t]);
	}
	return at;
}

/*
 * A CRC-valid file whose entry count in table @t and names length are
 * chosen so that the end of the layout wraps around 2^64 to the file's
 * real length: the loader must refuse it before it reads 2^24 bucket
 * starts off the map.
 */
static void wrapped_counts(const char *dir, int t)
{
	char path[4096];
	struct vg_hashdb *db;
	size_t len;
	uint8_t *img;
	uint32_t n = 1u << 28;
	uint64_t names_len;

	snprintf(path, sizeof(path), "%s/wrap", dir);
	build(path, 40, 10, 10);
	img = slurp(path, &len);
	memcpy(img + COUNT_AT[t], &n, 4);
	img[BITS_AT[t]] = 24;
	names_len = (uint64_t)len - names_start(img);	/* wraps */
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

/* The on-access races: one handle on a socketpair, fed synthetic events. */
#define FAN_OPEN_PERM_ 0x10000
#define FAN_OPEN_EXEC_PERM_ 0x40000
#define FAN_CLOSE_WRITE_ 0x8

struct event_rec {		/* struct fanotify_event_metadata */
	uint32_t event_len;
	uint8_t vers, reserved;
	uint16_t metadata_len;
	uint64_t mask __attribute__((aligned(8)));
	int32_t fd, pid;
};

struct race {
	struct vg_fan *fan;
	int peers[2];		/* our ends, one per group: events out,
				 * responses in */
	int file;		/* the scanned file; each event gets a dup */
	int n_events;
	int perm_sent;		/* atomic */
	int responses;		/* atomic */
	int hold;		/* workers keep jobs (for stop in flight) */
};

struct peer_reader {
	struct race *race;
	int group;
};

/* Read one group's responses until the handle closes its end; count
 * them. Events of group g carry odd fds for g = 1, even for g = 0. */
static void *responses_main(void *arg)
{
	struct peer_reader *p = arg;
	struct race *r = p->race;
	int32_t rec[2];

	while (read(r->peers[p->group], rec, sizeof(rec)) == sizeof(rec)) {
		if (rec[1] != VG_ALLOW && rec[1] != VG_DENY)
			abort();
		if ((rec[0] & 1) != p->group)
			abort();	/* answered to another group */
		__atomic_add_fetch(&r->responses, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

/* A dup of @fd whose number is even (group 0) or odd (group 1); other
 * threads close fds meanwhile, so try until one fits. */
static int dup_parity(int fd, int group)
{
	int wrong[64], n = 0, d;

	while ((d = dup(fd)) >= 0 && (d & 1) != group && n < 64)
		wrong[n++] = d;
	while (n > 0)
		close(wrong[--n]);
	if (d < 0 || (d & 1) != group)
		abort();
	return d;
}

/* Write n_events events, alternating groups: opens, execs and some
 * close-writes. The parity of each event's fd names its group (a response
 * is always written before its fd is closed). */
static void *feeder_main(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < r->n_events; i++) {
		uint64_t mask = i % 7 == 0 ? FAN_CLOSE_WRITE_ :
				i % 5 == 0 ? FAN_OPEN_EXEC_PERM_ : FAN_OPEN_PERM_;
		int group = i % 2;
		struct event_rec e = { sizeof(e), 3, 0, sizeof(e), mask,
				       dup_parity(r->file, group), 1 };

		if (mask != FAN_CLOSE_WRITE_)
			__atomic_add_fetch(&r->perm_sent, 1, __ATOMIC_SEQ_CST);
		if (write(r->peers[group], &e, sizeof(e)) != sizeof(e))
			abort();
		if (i % 4 == 0)
			usleep(300);	/* mostly room in the queue of 32 */
	}
	return NULL;
}

/* Sleep up to @max_us, at random. */
static void nap(unsigned int *seed, int max_us)
{
	usleep((useconds_t)(rand_r(seed) % max_us));
}

/* A worker: answer, skip the answer, or answer around the deadline. */
static void *race_worker(void *arg)
{
	struct race *r = arg;
	unsigned int seed = (unsigned int)(uintptr_t)&seed;
	static const uint8_t digest[VG_SHA256_LEN];	/* settle.c: a mismatch */
	struct vg_job job;
	int ret;

	while ((ret = vg_fan_next(r->fan, &job, 20)) >= 0) {
		int how = rand_r(&seed) % 4;

		if (!ret)
			continue;
		if (r->hold)
			nap(&seed, 20000);
		if (how == 1)
			nap(&seed, 4000);	/* around the 2 ms deadline */
		if (how != 2)
			vg_fan_answer(r->fan, job.id, how ? VG_ALLOW : VG_DENY,
				      how == 3 ? VG_CACHE_VERDICT : 0, 0,
				      how == 3 ? digest : NULL);
		vg_fan_done(r->fan, job.id);
	}
	if (ret != -ESHUTDOWN)
		abort();
	return NULL;
}

/* Reconfigure while events flow: deadline, generation, share, answers. */
static void *configurer_main(void *arg)
{
	struct race *r = arg;
	static const char *const watch[] = { "/" };

	for (int i = 0; i < 50; i++) {
		struct vg_fan_settings s = {
			.generation = (uint64_t)(i % 3), .deadline_ms = 1 + i % 4,
			.on_queue_full_open = VG_ALLOW, .on_queue_full_exec = VG_DENY,
			.on_deadline_open = VG_ALLOW, .on_deadline_exec = VG_DENY,
			.ignore_marks = 1, .n_mark_fs = 1, .mark_fs = { 0xef53 },
			.fresh_ms = 20, .close_write_share = (uint32_t)(i * 7 % 101),
			.exec_anywhere = i % 2, .watch = watch, .n_watch = 1,
		};

		if (vg_fan_configure(r->fan, &s))
			abort();
		usleep(1000);
	}
	return NULL;
}

/* One round: @n events, 4 workers; stop once every event was answered,
 * or (@hold) in the middle, with jobs in flight. */
static int race_round(const char *dir, int n, int hold)
{
	struct vg_fan_config cfg = { VG_EV_OPEN | VG_EV_EXEC | VG_EV_CLOSE_WRITE,
				     32, 256, 8 };
	struct race r = { .n_events = n, .hold = hold };
	struct peer_reader pr[2] = { { &r, 0 }, { &r, 1 } };
	pthread_t workers[4], resp[2], feeder, conf;
	struct vg_fan_stats st;
	char path[4096];
	int sv[2], sv2[2];

	snprintf(path, sizeof(path), "%s/scanned", dir);
	close(open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644));
	r.file = open(path, O_RDONLY);
	if (r.file < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv2))
		abort();
	r.peers[0] = sv[1];
	r.peers[1] = sv2[1];
	if (vg_fan_adopt(&cfg, sv[0], &r.fan) ||
	    vg_fan_adopt_group(r.fan, sv2[0]) != 1)
		abort();
	configurer_main(&(struct race){ .fan = r.fan, .n_events = 0 });
	if (vg_fan_start(r.fan))
		abort();
	for (int i = 0; i < 2; i++)
		pthread_create(&resp[i], NULL, responses_main, &pr[i]);
	for (int i = 0; i < 4; i++)
		pthread_create(&workers[i], NULL, race_worker, &r);
	pthread_create(&conf, NULL, configurer_main, &r);
	pthread_create(&feeder, NULL, feeder_main, &r);
	pthread_join(feeder, NULL);
	for (int i = 0; !hold && i < 5000 &&
	     __atomic_load_n(&r.responses, __ATOMIC_SEQ_CST) < r.perm_sent; i++)
		usleep(1000);
	vg_fan_stop(r.fan);
	for (int i = 0; i < 4; i++)
		pthread_join(workers[i], NULL);
	pthread_join(conf, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(resp[i], NULL);	/* stop closed the handle's ends */
	if (hold ? r.responses > r.perm_sent : r.responses != r.perm_sent) {
		fprintf(stderr, "%d responses for %d permission events\n",
			r.responses, r.perm_sent);
		abort();
	}
	vg_fan_stats(r.fan, &st);
	if (st.groups != 2 || st.kernel_pending || !st.reads)
		abort();
	vg_fan_free(r.fan);
	close(r.peers[0]);
	close(r.peers[1]);
	close(r.file);
	fprintf(stderr, "round %d: %d responses, %d perm events, %llu by deadline, %llu queue full, %llu late\n",
		hold, r.responses, r.perm_sent,
		(unsigned long long)st.deadline_passed,
		(unsigned long long)st.queue_full,
		(unsigned long long)st.late_results);
	return r.responses;
}

/* The on-access core's races: run to completion, then stop in flight. */
static int race_fan(const char *dir)
{
	return race_round(dir, 3000, 0) + race_round(dir, 1000, 1);
}

int main(int argc, char **argv)
{
	int opened = 0, lists = 0, answered;

	if (argc < 2)
		return 2;
	if (argc < 3 || strcmp(argv[2], "threads")) {
		for (int t = 0; t < 3; t++)
			wrapped_counts(argv[1], t);
		opened = fuzz_db(argv[1]);
		lists = fuzz_lists(argv[1]);
	}
	hammer_cache();
	answered = race_fan(argv[1]);
	printf("ok: %d forged databases passed the structure checks and were probed; %d mutated hash lists read whole; %d permission events answered once\n",
	       opened, lists, answered);
	return 0;
}
