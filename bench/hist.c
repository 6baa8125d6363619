/*
 * hist — log-linear histogram; see hist.h for the bucket layout and its error bound.
 */
#include "bench/hist.h"

#include "server/assert.h"

#include <stdlib.h>
#include <string.h>

#define HIST_SUB_BITS 7u
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)  /* sub-buckets per power of two */
#define HIST_LINEAR_MAX (2u * HIST_SUB_COUNT) /* values below this have a bucket each */
/* Powers of two above the linear range: 2^8 .. 2^63, one row of HIST_SUB_COUNT each. */
#define HIST_ROWS (64u - (HIST_SUB_BITS + 1u))
#define HIST_BUCKETS (HIST_LINEAR_MAX + HIST_ROWS * HIST_SUB_COUNT)

_Static_assert(HIST_BUCKETS == 7424, "bucket layout changed: update hist.h");

struct hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t buckets[HIST_BUCKETS];
};

static inline unsigned
hist_index(uint64_t v)
{
	if (v < HIST_LINEAR_MAX)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - HIST_SUB_BITS; /* >= 1: v >> shift is in [128, 256) */
	unsigned sub = (unsigned)(v >> shift) - HIST_SUB_COUNT;

	return HIST_LINEAR_MAX + (shift - 1u) * HIST_SUB_COUNT + sub;
}

/* Lowest value of bucket i and its width, the inverse of hist_index(). */
static void
hist_bucket_range(unsigned i, uint64_t *lo, uint64_t *width)
{
	if (i < HIST_LINEAR_MAX) {
		*lo = i;
		*width = 1;
		return;
	}
	unsigned j = i - HIST_LINEAR_MAX;
	unsigned shift = j / HIST_SUB_COUNT + 1u;
	uint64_t sub = HIST_SUB_COUNT + j % HIST_SUB_COUNT;

	*lo = sub << shift;
	*width = (uint64_t)1 << shift;
}

/* Midpoint written so that the top bucket (which ends at UINT64_MAX) cannot overflow. */
static uint64_t
hist_bucket_mid(unsigned i)
{
	uint64_t lo, width;

	hist_bucket_range(i, &lo, &width);
	return lo + (width - 1) / 2;
}

struct hist *
hist_new(void)
{
	struct hist *h = malloc(sizeof(*h));

	if (h)
		hist_reset(h);
	return h;
}

void
hist_free(struct hist *h)
{
	free(h);
}

void
hist_reset(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void
hist_record(struct hist *h, uint64_t value)
{
	h->buckets[hist_index(value)]++;
	h->count++;
	if (value < h->min)
		h->min = value;
	if (value > h->max)
		h->max = value;
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t
hist_count(const struct hist *h)
{
	return h->count;
}

uint64_t
hist_min(const struct hist *h)
{
	return h->count ? h->min : 0;
}

uint64_t
hist_max(const struct hist *h)
{
	return h->max;
}

double
hist_mean(const struct hist *h)
{
	if (h->count == 0)
		return 0;
	double sum = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if (h->buckets[i])
			sum += (double)h->buckets[i] * (double)hist_bucket_mid(i);
	return sum / (double)h->count;
}

uint64_t
hist_percentile(const struct hist *h, double p)
{
	if (h->count == 0)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	/*
	 * Rank of the sample that p% of the samples do not exceed (1-based). The small slack keeps
	 * 99.9% of 1000 samples at rank 999 although 99.9 / 100 * 1000 is 999.0000000000001.
	 */
	double r = p / 100.0 * (double)h->count - 1e-7;
	uint64_t rank = r < 1 ? 1 : (uint64_t)r;
	uint64_t seen = 0;

	if ((double)rank < r)
		rank++; /* ceil() without libm: the Makefile links none */

	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_mid(i);

			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	ASSERT(seen == h->count); /* unreachable unless the buckets lost counts */
	return h->max;
}
