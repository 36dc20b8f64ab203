/*
 * hash.c - SHA-256 (and, on request, MD5) of a file read through an fd.
 *
 * Owns no state beyond the digest algorithms fetched once per process.
 * Reads only with pread(2) on the fd it is given: it never opens a path,
 * so it hashes exactly the bytes the opener will see, and never moves the
 * fd's file offset, which the opener may share.
 *
 * The caller may pass a buffer: the first bytes of the file are then read
 * straight into it and hashed from there, so the scanner later looks at
 * exactly the bytes that were hashed (a file rewritten between a hash
 * pass and a scan pass could otherwise poison the clean-content cache),
 * and nothing is ever mmapped (a concurrent truncate would raise SIGBUS).
 *
 * libcrypto rather than our own SHA-256: OpenSSL picks SHA-NI / AVX2 code
 * at run time, which is what Python's hashlib uses too, so we match it on
 * every CPU without carrying assembly of our own.
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vigild.h"

/* 64 KiB: amortises the syscall, stays in L2 (0.96x of hashing in memory). */
#define READ_CHUNK (64 * 1024)

static EVP_MD *md_sha256;
static EVP_MD *md_md5;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

/* Fetch the algorithms once; implicit fetches cost a lookup per call. */
static void fetch_digests(void)
{
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
}

/* Start a digest context for @md; NULL when @md is unavailable. */
static EVP_MD_CTX *start_ctx(const EVP_MD *md)
{
	EVP_MD_CTX *ctx;

	if (!md)
		return NULL;
	ctx = EVP_MD_CTX_new();
	if (ctx && !EVP_DigestInit_ex2(ctx, md, NULL)) {
		EVP_MD_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Where the bytes at @off go: into @keep while it has room, else @chunk. */
static unsigned char *dest_at(unsigned char *keep, uint64_t keep_len,
			      unsigned char *chunk, uint64_t off, size_t *room)
{
	if (keep && off < keep_len) {
		uint64_t left = keep_len - off;

		*room = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
		return keep + off;
	}
	*room = READ_CHUNK;
	return chunk;
}

/*
 * Feed the whole file from offset 0 to EOF, keeping its first @keep_len
 * bytes in @keep (may be NULL). Returns bytes read or -errno.
 */
static int64_t feed_fd(int fd, unsigned char *keep, uint64_t keep_len,
		       EVP_MD_CTX *sha, EVP_MD_CTX *md5)
{
	unsigned char chunk[READ_CHUNK], *dst;
	uint64_t off = 0;
	size_t room;
	ssize_t n;

	for (;;) {
		dst = dest_at(keep, keep_len, chunk, off, &room);
		n = pread(fd, dst, room, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return (int64_t)off;
		if (!EVP_DigestUpdate(sha, dst, (size_t)n))
			return -EIO;
		if (md5 && !EVP_DigestUpdate(md5, dst, (size_t)n))
			return -EIO;
		off += (uint64_t)n;
	}
}

/*
 * Hash @fd from offset 0 to EOF into @sha256 (32 bytes) and, when @md5 is
 * not NULL, into @md5 (16 bytes); keep the first @keep_len bytes in @keep
 * when it is not NULL. Stores the byte count in @nbytes (it may exceed
 * @keep_len). Returns 0 or -errno (-ENOSYS: libcrypto lacks a digest).
 */
int vg_hash_fd_keep(int fd, uint8_t *keep, uint64_t keep_len, uint8_t *sha256,
		    uint8_t *md5, uint64_t *nbytes)
{
	EVP_MD_CTX *sha_ctx, *md5_ctx = NULL;
	int64_t got;
	int ret = -ENOSYS;

	pthread_once(&md_once, fetch_digests);
	sha_ctx = start_ctx(md_sha256);
	if (!sha_ctx)
		return -ENOSYS;
	if (md5) {
		md5_ctx = start_ctx(md_md5);
		if (!md5_ctx)
			goto out;
	}
	got = feed_fd(fd, keep, keep_len, sha_ctx, md5_ctx);
	if (got < 0) {
		ret = (int)got;
		goto out;
	}
	ret = -EIO;
	if (!EVP_DigestFinal_ex(sha_ctx, sha256, NULL))
		goto out;
	if (md5_ctx && !EVP_DigestFinal_ex(md5_ctx, md5, NULL))
		goto out;
	*nbytes = (uint64_t)got;
	ret = 0;
out:
	EVP_MD_CTX_free(md5_ctx);
	EVP_MD_CTX_free(sha_ctx);
	return ret;
}

/* vg_hash_fd_keep without keeping any bytes. */
int vg_hash_fd(int fd, uint8_t *sha256, uint8_t *md5, uint64_t *nbytes)
{
	return vg_hash_fd_keep(fd, NULL, 0, sha256, md5, nbytes);
}
