/*
 * hashdb_format.h - the on-disk layout of the hash database, shared by
 * hashdb.c (which loads it) and hashwrite.c (which writes it).
 *
 * Layout (little-endian), every section starting on an 8-byte boundary:
 *
 *   header        64 bytes, see struct db_header
 *   sizes         n_sizes x u64, sorted, distinct (entries with a size)
 *   size tables   n_sizes x u8: which tables carry that size (1 << table)
 *   sha buckets   (1 << sha_bits) + 1 x u32: start index of each prefix
 *   sha entries   n_sha256 x { hash[32], name:u32 }            36 bytes
 *   md5 buckets   (1 << md5_bits) + 1 x u32
 *   md5 entries   n_md5 x { hash[16], size:u64, name:u32 }     28 bytes
 *   sha1 buckets  (1 << sha1_bits) + 1 x u32
 *   sha1 entries  n_sha1 x { hash[20], size:u64, name:u32 }    32 bytes
 *   names         NUL-terminated strings
 *
 * Version 2 added the size tables and the SHA-1 table; a version 1 file
 * is refused (-EPROTONOSUPPORT), and compiling its lists again fixes it.
 * The CRC-32C covers the whole file with the header's crc field as zero.
 */
#ifndef VIGILD_HASHDB_FORMAT_H
#define VIGILD_HASHDB_FORMAT_H

#include <stdint.h>

#include "vigild.h"

#define DB_MAGIC "VIGHASH\0"
#define DB_VERSION VG_HASHDB_VERSION
/* Tables, in file order; the flag of an any-size entry in table t is 1 << t. */
#define T_SHA256 0
#define T_MD5 1
#define T_SHA1 2
#define N_TABLES 3
#define FLAG_ANY_SHA256 1u
#define FLAG_ANY_MD5 2u
#define FLAG_ANY_SHA1 4u
#define SHA_ENT 36
#define MAX_BITS 24

struct db_header {
	char magic[8];
	uint32_t version;
	uint32_t header_len;
	uint64_t file_size;
	uint32_t crc;
	uint32_t flags;
	uint32_t n_sha256;
	uint32_t n_md5;
	uint32_t n_sizes;
	uint8_t sha_bits;
	uint8_t md5_bits;
	uint16_t pad;
	uint64_t names_len;
	uint32_t n_sha1;
	uint8_t sha1_bits;
	uint8_t pad2[3];
};

_Static_assert(sizeof(struct db_header) == 64, "header is 64 bytes");

/* Hash and entry length of each table (a SHA-256 entry has no size). */
static const size_t HASH_LEN[N_TABLES] = { 32, 16, 20 };
static const size_t ENT_LEN[N_TABLES] = { SHA_ENT, 28, 32 };

/* Section offsets, derived from the header's counts. */
struct db_layout {
	uint64_t sizes, size_tabs, buckets[N_TABLES], ents[N_TABLES], names, end;
};

/* @x rounded up to a multiple of 8. */
static inline uint64_t align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

/* Entries in table @t. */
static inline uint32_t count_of(const struct db_header *h, int t)
{
	return t == T_SHA256 ? h->n_sha256 : t == T_MD5 ? h->n_md5 : h->n_sha1;
}

/* Bucket bits of table @t. */
static inline uint8_t bits_of(const struct db_header *h, int t)
{
	return t == T_SHA256 ? h->sha_bits : t == T_MD5 ? h->md5_bits :
			       h->sha1_bits;
}

/* Offsets of every section for the counts in @h. */
static inline struct db_layout layout_of(const struct db_header *h)
{
	struct db_layout l;
	uint64_t at;

	l.sizes = sizeof(*h);
	l.size_tabs = l.sizes + (uint64_t)h->n_sizes * 8;
	at = align8(l.size_tabs + h->n_sizes);
	for (int t = 0; t < N_TABLES; t++) {
		l.buckets[t] = at;
		l.ents[t] = align8(at + (((uint64_t)1 << bits_of(h, t)) + 1) * 4);
		at = align8(l.ents[t] + (uint64_t)count_of(h, t) * ENT_LEN[t]);
	}
	l.names = at;
	l.end = l.names + h->names_len;
	return l;
}

/* Bucket bits for @n entries: about two to four entries per bucket. */
static inline uint8_t bits_for(uint32_t n)
{
	uint8_t bits = 0;

	while (bits < MAX_BITS && ((uint64_t)4 << bits) <= n)
		bits++;
	return bits;
}

/* Bucket of a hash: its first @bits bits. */
static inline uint32_t bucket_of(const unsigned char *hash, uint8_t bits)
{
	uint32_t prefix = (uint32_t)hash[0] << 24 | (uint32_t)hash[1] << 16 |
			  (uint32_t)hash[2] << 8 | hash[3];

	return bits ? prefix >> (32 - bits) : 0;
}

#endif /* VIGILD_HASHDB_FORMAT_H */
