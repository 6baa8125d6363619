/*
 * crc32c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * The SSE4.2 crc32 instruction computes exactly this polynomial, 8 bytes per instruction, so
 * on x86-64 (three chains in parallel, see crc32c_hw) the spool's checksum costs far less than
 * the copy that precedes it. Other CPUs (and x86 without SSE4.2) use slicing-by-8: eight
 * 256-entry tables, one 8-byte load per step.
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

/*
 * One crc32 instruction has a latency of 3 cycles but a throughput of 1, so a single chain
 * runs at a third of the unit's speed. Three independent chains over three adjacent blocks
 * keep it busy; their CRCs are then joined: crc(A B) = shift(crc(A), |B|) ^ crc(B) with a zero
 * initial value for B, where shift applies |B| zero bytes, a linear map over GF(2) that is
 * tabulated once per block size (the method of Mark Adler's crc32c.c).
 */
#define CRC32C_LONG 4096
#define CRC32C_SHORT 256

static uint32_t crc32c_long[4][256], crc32c_short[4][256];
static pthread_once_t crc32c_shift_once = PTHREAD_ONCE_INIT;

/* mat (32 columns) times vec over GF(2) */
static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec != 0; vec >>= 1, mat++)
		if (vec & 1u)
			sum ^= *mat;
	return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* Tables that advance a CRC register over len zero bytes (len a power of two, >= 1). */
static void
crc32c_zeros_table(uint32_t zeros[4][256], size_t len)
{
	uint32_t op[32], sq[32];

	op[0] = CRC32C_POLY; /* the operator for one zero bit */
	for (int n = 1; n < 32; n++)
		op[n] = 1u << (n - 1);
	for (size_t bits = 1; bits < len * 8; bits *= 2) {
		gf2_square(sq, op);
		memcpy(op, sq, sizeof(op));
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 0; k < 4; k++)
			zeros[k][n] = gf2_times(op, n << (8 * k));
}

static void
crc32c_shift_init(void)
{
	crc32c_zeros_table(crc32c_long, CRC32C_LONG);
	crc32c_zeros_table(crc32c_short, CRC32C_SHORT);
}

static inline uint32_t
crc32c_shift(uint32_t zeros[4][256], uint32_t crc)
{
	return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
	       zeros[3][crc >> 24];
}

static inline uint64_t
load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v)); /* unaligned load; x86 is little-endian like the CRC */
	return v;
}

/* Three chains over three adjacent blocks of `block` bytes each, joined. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc32c_hw_3way(uint64_t c0, const unsigned char *p, size_t block, uint32_t zeros[4][256])
{
	uint64_t c1 = 0, c2 = 0;

	for (const unsigned char *end = p + block; p < end; p += 8) {
		c0 = _mm_crc32_u64(c0, load64(p));
		c1 = _mm_crc32_u64(c1, load64(p + block));
		c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
	}
	c0 = crc32c_shift(zeros, (uint32_t)c0) ^ c1;
	return crc32c_shift(zeros, (uint32_t)c0) ^ c2;
}

__attribute__((target("sse4.2"))) uint32_t
crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc;

	ASSERT(p != NULL || len == 0);
	ASSERT(crc32c_hw_available());
	if (len >= 3 * CRC32C_SHORT)
		pthread_once(&crc32c_shift_once, crc32c_shift_init);
	for (; len >= 3 * CRC32C_LONG; p += 3 * CRC32C_LONG, len -= 3 * CRC32C_LONG)
		c = crc32c_hw_3way(c, p, CRC32C_LONG, crc32c_long);
	for (; len >= 3 * CRC32C_SHORT; p += 3 * CRC32C_SHORT, len -= 3 * CRC32C_SHORT)
		c = crc32c_hw_3way(c, p, CRC32C_SHORT, crc32c_short);
	for (; len >= 8; p += 8, len -= 8)
		c = _mm_crc32_u64(c, load64(p));
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
