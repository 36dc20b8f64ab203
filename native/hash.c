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
 * Holes are not read: a data run is found with SEEK_DATA/SEEK_HOLE and a
 * hole is filled with zeros, so a sparse file of a terabyte costs what
 * its data costs (the lseeks move only our own description's offset, put
 * back after: fanotify opens the file anew for us, and a caller's fd is
 * left as it was). And no read goes past a caller's limit.
 *
 * libcrypto rather than our own SHA-256: OpenSSL picks SHA-NI / AVX2 code
 * at run time, which is what Python's hashlib uses too, so we match it on
 * every CPU without carrying assembly of our own.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
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

/* Where the data runs of a file are, as far as we have looked. */
struct runs {
	int fd;
	uint64_t size;		/* st_size when we started: holes end there */
	uint64_t data, hole;	/* the data run [data, hole) at or after
				 * the last offset looked up */
};

/* Find the data run at or after @off; no SEEK_DATA: all is data. */
static int runs_seek(struct runs *r, uint64_t off)
{
	off_t d, h;

	d = lseek(r->fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno == ENXIO) {	/* only a hole up to EOF */
		r->data = r->hole = UINT64_MAX;
		return 0;
	}
	if (d < 0 && errno != EINVAL && errno != EOPNOTSUPP)
		return -errno;
	if (d < 0) {
		r->data = off;
		r->hole = UINT64_MAX;
		return 0;
	}
	h = lseek(r->fd, d, SEEK_HOLE);
	r->data = (uint64_t)d;
	r->hole = h < 0 ? UINT64_MAX : (uint64_t)h;
	return 0;
}

/*
 * Up to @room bytes at @off into @dst: zeros for a hole, pread for
 * data. Returns the count (0 at EOF) or -errno.
 */
static ssize_t runs_read(struct runs *r, unsigned char *dst, size_t room,
			 uint64_t off)
{
	ssize_t n;
	int ret;

	if (off >= r->hole) {
		ret = runs_seek(r, off);
		if (ret)
			return ret;
	}
	if (off < r->data) {	/* a hole: up to the next data or EOF */
		uint64_t end = r->data < r->size ? r->data : r->size;

		if (off >= end)
			return 0;
		if (end - off < room)
			room = (size_t)(end - off);
		memset(dst, 0, room);
		return (ssize_t)room;
	}
	if (r->hole - off < room)
		room = (size_t)(r->hole - off);
	do
		n = pread(r->fd, dst, room, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* Start looking at the runs of @fd; its offset is kept in @pos. */
static int runs_start(struct runs *r, int fd, off_t *pos)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	*pos = lseek(fd, 0, SEEK_CUR);
	r->fd = fd;
	r->size = (uint64_t)st.st_size;
	r->data = 0;
	r->hole = 0;	/* look up at the first read */
	return 0;
}

/* Put @fd's offset back where runs_start found it. */
static void runs_end(const struct runs *r, off_t pos)
{
	if (pos >= 0)
		lseek(r->fd, pos, SEEK_SET);
}

/*
 * Read [@off, @off + @len) of @fd into @dst, holes as zeros, never past
 * that range. Returns the bytes read (fewer at EOF) or -errno.
 */
int64_t vg_read_span(int fd, uint8_t *dst, uint64_t off, uint64_t len)
{
	struct runs r;
	uint64_t got = 0;
	ssize_t n = 1;
	off_t pos = -1;
	int ret = runs_start(&r, fd, &pos);

	if (ret)
		return ret;
	while (got < len && n > 0) {
		uint64_t left = len - got;

		n = runs_read(&r, dst + got,
			      left < READ_CHUNK ? (size_t)left : READ_CHUNK,
			      off + got);
		if (n > 0)
			got += (uint64_t)n;
	}
	runs_end(&r, pos);
	return n < 0 ? n : (int64_t)got;
}

/*
 * Feed the file from offset 0 to EOF, keeping its first @keep_len bytes
 * in @keep (may be NULL), reading no more than @limit bytes. Returns the
 * bytes read, -EFBIG when the file goes on past @limit, or -errno.
 */
static int64_t feed_fd(struct runs *r, unsigned char *keep, uint64_t keep_len,
		       uint64_t limit, EVP_MD_CTX *sha, EVP_MD_CTX *md5)
{
	unsigned char chunk[READ_CHUNK], probe, *dst;
	uint64_t off = 0;
	size_t room;
	ssize_t n;

	for (;;) {
		dst = dest_at(keep, keep_len, chunk, off, &room);
		if (limit - off < room)
			room = (size_t)(limit - off);
		if (!room)	/* at the limit: is there more? */
			return runs_read(r, &probe, 1, off) ? -EFBIG : (int64_t)off;
		n = runs_read(r, dst, room, off);
		if (n < 0)
			return n;
		if (n == 0)
			return (int64_t)off;
		if (!EVP_DigestUpdate(sha, dst, (size_t)n))
			return -EIO;
		if (md5 && !EVP_DigestUpdate(md5, dst, (size_t)n))
			return -EIO;
		off += (uint64_t)n;
	}
}

/* Start a SHA-256 context, and an MD5 one when @want_md5; -ENOSYS. */
static int start_ctxs(int want_md5, EVP_MD_CTX **sha, EVP_MD_CTX **md5)
{
	pthread_once(&md_once, fetch_digests);
	*md5 = NULL;
	*sha = start_ctx(md_sha256);
	if (*sha && want_md5 && !(*md5 = start_ctx(md_md5))) {
		EVP_MD_CTX_free(*sha);
		*sha = NULL;
	}
	return *sha ? 0 : -ENOSYS;
}

/*
 * Hash @fd from offset 0 to EOF into @sha256 (32 bytes) and, when @md5 is
 * not NULL, into @md5 (16 bytes); keep the first @keep_len bytes in @keep
 * when it is not NULL; read no more than @limit bytes. Stores the byte
 * count in @nbytes. Returns 0, -EFBIG when the file is longer than
 * @limit (nothing past it was read), or -errno (-ENOSYS: libcrypto lacks
 * a digest).
 */
int vg_hash_fd_limit(int fd, uint8_t *keep, uint64_t keep_len, uint64_t limit,
		     uint8_t *sha256, uint8_t *md5, uint64_t *nbytes)
{
	EVP_MD_CTX *sha_ctx, *md5_ctx;
	struct runs r;
	int64_t got;
	off_t pos = -1;
	int ret = start_ctxs(md5 != NULL, &sha_ctx, &md5_ctx);

	if (ret)
		return ret;
	ret = runs_start(&r, fd, &pos);
	if (ret)
		goto out;
	got = feed_fd(&r, keep, keep_len, limit, sha_ctx, md5_ctx);
	runs_end(&r, pos);
	ret = got < 0 ? (int)got : -EIO;
	if (got < 0 || !EVP_DigestFinal_ex(sha_ctx, sha256, NULL))
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

/* vg_hash_fd_limit with no limit. */
int vg_hash_fd_keep(int fd, uint8_t *keep, uint64_t keep_len, uint8_t *sha256,
		    uint8_t *md5, uint64_t *nbytes)
{
	return vg_hash_fd_limit(fd, keep, keep_len, UINT64_MAX, sha256, md5,
				nbytes);
}

/* vg_hash_fd_keep without keeping any bytes. */
int vg_hash_fd(int fd, uint8_t *sha256, uint8_t *md5, uint64_t *nbytes)
{
	return vg_hash_fd_keep(fd, NULL, 0, sha256, md5, nbytes);
}
