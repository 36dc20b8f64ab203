/*
 * crc32c.c - CRC-32C (Castagnoli), the hash database's checksum.
 *
 * Owns one lookup table, built once. Uses the SSE4.2 crc32 instruction
 * when the CPU has it (about 8 GB/s here, so checking a million-entry
 * database costs a few milliseconds at load) and a table otherwise, so
 * the same file checks the same on every architecture.
 */
#include <pthread.h>
#include <string.h>

#include "vigild.h"

#define CRC32C_POLY 0x82f63b78u	/* reflected Castagnoli polynomial */

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* Fill the byte-at-a-time table for the reflected polynomial. */
static void build_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		table[i] = c;
	}
}

/* Portable path: one table step per byte. */
static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t len)
{
	pthread_once(&table_once, build_table);
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* SSE4.2 path: eight bytes per instruction, then the tail bytewise. */
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;

	while (len >= 8) {
		uint64_t word;

		memcpy(&word, p, 8);
		c = _mm_crc32_u64(c, word);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}

static int have_hw(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	return crc_soft(crc, p, len);
}

static int have_hw(void)
{
	return 0;
}
#endif

/* Continue a CRC-32C over @buf; start with @crc = 0. */
uint32_t vg_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	crc = have_hw() ? crc_hw(crc, p, len) : crc_soft(crc, p, len);
	return ~crc;
}
