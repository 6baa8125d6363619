/*
 * crc32c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * The SSE4.2 crc32 instruction computes exactly this polynomial, 8 bytes per instruction, so
 * on x86-64 the spool's checksum costs far less than the copy that precedes it. Other CPUs
 * (and x86 without SSE4.2) use slicing-by-8: eight 256-entry tables, one 8-byte load per step.
 */
#include <pthread.h>
#include <string.h>

#include "queue/assert.h"
#include "queue/crc32c.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void
crc32c_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1u)));
		crc32c_table[0][i] = c;
	}
	/* Table k advances a byte that sits k positions before the end of an 8-byte block. */
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = crc32c_table[0][i];

		for (int k = 1; k < 8; k++) {
			c = (c >> 8) ^ crc32c_table[0][c & 0xff];
			crc32c_table[k][i] = c;
		}
	}
}

/* Byte loads, so that the software path gives the same answer on any endianness. */
static inline uint32_t
crc32c_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t
crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	const uint32_t *t0 = crc32c_table[0], *t1 = crc32c_table[1], *t2 = crc32c_table[2],
		       *t3 = crc32c_table[3], *t4 = crc32c_table[4], *t5 = crc32c_table[5],
		       *t6 = crc32c_table[6], *t7 = crc32c_table[7];

	ASSERT(p != NULL || len == 0);
	pthread_once(&crc32c_table_once, crc32c_table_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo = crc ^ crc32c_le32(p);
		uint32_t hi = crc32c_le32(p + 4);

		crc = t7[lo & 0xff] ^ t6[(lo >> 8) & 0xff] ^ t5[(lo >> 16) & 0xff] ^ t4[lo >> 24] ^
		      t3[hi & 0xff] ^ t2[(hi >> 8) & 0xff] ^ t1[(hi >> 16) & 0xff] ^ t0[hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ t0[(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc;

	ASSERT(p != NULL || len == 0);
	ASSERT(crc32c_hw_available());
	while (len >= 8) {
		uint64_t v;

		memcpy(&v, p, sizeof(v)); /* unaligned load; x86 is little-endian like the CRC */
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

bool
crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
/* No instruction to use: the "hardware" path is the table, so both still agree. */
uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}

bool
crc32c_hw_available(void)
{
	return false;
}
#endif

uint32_t
crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (crc32c_hw_available())
		return crc32c_hw(crc, buf, len);
	return crc32c_sw(crc, buf, len);
}
