/*
 * interp.c - which programs are interpreters (or the dynamic loader): an
 * open made by one is checked like an execution, since the file it opens
 * is code it is about to run (`sh x`, `python3 x`, `ld.so ./x`).
 *
 * Owns immutable interpreter sets (built whole as part of a settings
 * snapshot, settings.c) and the contents of the handle's program cache,
 * fan->exes: what each program seen opening a file turned out to be, by
 * (dev, ino, ctime, size) and the set it was judged against. Must not
 * touch the job slots, the verdict cache or a group fd, and must never
 * open a file: the reader calls this, and an open of ours on a marked
 * filesystem raises an event that this very reader would have to answer.
 *
 * Recognised by the file, not the name: the daemon lists the resolved
 * interpreters' inodes (the fast path) and the SHA-256 of their contents.
 * A program neither listed nor in the cache is unknown: a worker opens
 * /proc/PID/exe (its own open, answered at once), hashes it and tells
 * (vg_fan_classify, interp_learn), once per distinct program.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fan.h"

/* The program cache's value for an interpreter, and for anything else. */
#define IS_INTERP 1
#define NOT_INTERP 2

/* Compare two SHA-256 digests, for qsort and bsearch. */
static int sha_cmp(const void *a, const void *b)
{
	return memcmp(a, b, VG_SHA256_LEN);
}

/* FNV-1a of @len bytes at @p, continuing @h. */
static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* Free an interpreter set; NULL is fine. */
void interp_free(struct interp *ip)
{
	if (!ip)
		return;
	free(ip->ids);
	free(ip->sha);
	free(ip);
}

/*
 * A new set from @n_ids (dev, ino) pairs and @n_sha digests, copied (the
 * digests sorted); NULL without memory. Its print names its contents, so
 * a program judged against another set is judged again, and an equal set
 * after a reload keeps what was learned.
 */
struct interp *interp_new(const uint64_t *ids, uint32_t n_ids,
			  const uint8_t *sha, uint32_t n_sha)
{
	struct interp *ip = calloc(1, sizeof(*ip));

	if (!ip)
		return NULL;
	ip->ids = calloc(2 * (size_t)n_ids + 1, sizeof(*ip->ids));
	ip->sha = calloc((size_t)n_sha * VG_SHA256_LEN + 1, 1);
	if (!ip->ids || !ip->sha) {
		interp_free(ip);
		return NULL;
	}
	ip->n_ids = n_ids;
	ip->n_sha = n_sha;
	if (n_ids)		/* @ids may be NULL then: memcpy's UB */
		memcpy(ip->ids, ids, 2 * (size_t)n_ids * sizeof(*ids));
	if (n_sha)
		memcpy(ip->sha, sha, (size_t)n_sha * VG_SHA256_LEN);
	qsort(ip->sha, n_sha, VG_SHA256_LEN, sha_cmp);
	ip->print = fnv(0xcbf29ce484222325ull, ip->ids, 2 * (size_t)n_ids * 8);
	ip->print = fnv(ip->print, ip->sha, (size_t)n_sha * VG_SHA256_LEN);
	return ip;
}

/* 1 when @ip lists anything: opens by interpreters are to be checked. */
int interp_on(const struct interp *ip)
{
	return ip->n_ids || ip->n_sha;
}

/* 1 when the file of @st is one of @ip's listed inodes. */
static int listed(const struct interp *ip, const struct stat *st)
{
	for (uint32_t i = 0; i < ip->n_ids; i++)
		if (ip->ids[2 * i] == st->st_dev && ip->ids[2 * i + 1] == st->st_ino)
			return 1;
	return 0;
}

/* The program cache key of the program file of @st, judged against @ip. */
static void exe_key(uint8_t *key, const struct interp *ip, const struct stat *st)
{
	uint64_t v[6] = { st->st_dev, st->st_ino, (uint64_t)st->st_ctim.tv_sec,
			  (uint64_t)st->st_ctim.tv_nsec, (uint64_t)st->st_size,
			  ip->print };

	memcpy(key, v, sizeof(v));
}

/*
 * 1 when @pid is a live process that is no kernel thread. Its exe may be
 * unreadable while it runs: once its main thread has exited (the others
 * go on), /proc/PID/exe says ENOENT. Such an opener is asked about (and,
 * its program unreadable, taken for an interpreter), never let by.
 * Kernel threads (nfsd) have no exe at all: PF_KTHREAD in /proc/PID/stat.
 */
static int user_process(pid_t pid)
{
	char path[64], buf[512], *p;
	unsigned long flags = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');	/* after the command name, which may hold anything */
	/* ") S ppid pgrp session tty_nr tpgid flags" */
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) != 1)
		return 0;
	return !(flags & 0x00200000);	/* PF_KTHREAD */
}

/*
 * What @pid runs: INTERP_YES, INTERP_NO, or INTERP_UNKNOWN until a worker
 * has hashed it. By stat() of /proc/PID/exe alone, which opens nothing:
 * no event. A kernel thread (no program) or a process gone is INTERP_NO;
 * a live one whose program cannot be stat'ed is INTERP_UNKNOWN.
 */
int interp_of(struct vg_fan *fan, const struct interp *ip, pid_t pid)
{
	uint8_t key[VG_KEY_LEN], value;
	char link[64];
	struct stat st;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	if (stat(link, &st))	/* found by review */
		return user_process(pid) ? INTERP_UNKNOWN : INTERP_NO;
	if (listed(ip, &st))
		return INTERP_YES;
	exe_key(key, ip, &st);
	if (!vg_cache_get(fan->exes, key, &value))
		return INTERP_UNKNOWN;
	return value == IS_INTERP ? INTERP_YES : INTERP_NO;
}

/* Remember what the program file of @st, whose content hash is @sha256,
 * is under @ip; 1 for an interpreter (its hash is listed), else 0. */
int interp_learn(struct vg_fan *fan, const struct interp *ip,
		 const struct stat *st, const uint8_t *sha256)
{
	int yes = listed(ip, st) ||
		  bsearch(sha256, ip->sha, ip->n_sha, VG_SHA256_LEN, sha_cmp);
	uint8_t key[VG_KEY_LEN];

	exe_key(key, ip, st);
	vg_cache_put(fan->exes, key, yes ? IS_INTERP : NOT_INTERP);
	fan_count(&fan->stats.exe_learned);
	return yes;
}
