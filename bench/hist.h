/*
 * hist — a log-linear (HDR-style) histogram of unsigned 64-bit values.
 *
 * Values below 256 have a bucket each. Above that, every power of two [2^k, 2^(k+1)) is cut
 * into 128 equal sub-buckets, so a bucket is never wider than 1/128 of its lower bound.
 * hist_record() is O(1) (one count-leading-zeros and an increment) and never allocates, so a
 * hot path can record every sample; hist_merge() adds one histogram into another, so each
 * thread keeps its own and they are combined at the end.
 *
 * Accuracy: hist_percentile() returns the midpoint of the bucket that holds the requested
 * rank, clamped to [min, max]. Against the exact value at that rank in a sorted copy of the
 * samples, the error is at most value/256 (exact below 256). Min, max and count are exact.
 *
 * Units are the caller's (ringmx-bench records nanoseconds). A histogram is about 58 KiB.
 *
 * Failure: hist_new() returns NULL when out of memory; nothing else fails.
 */
#ifndef RINGMX_HIST_H
#define RINGMX_HIST_H

#include <stdint.h>

struct hist;

struct hist *hist_new(void);
void hist_free(struct hist *h);
void hist_reset(struct hist *h);

void hist_record(struct hist *h, uint64_t value);
void hist_merge(struct hist *dst, const struct hist *src);

uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h); /* 0 when empty */
uint64_t hist_max(const struct hist *h); /* 0 when empty */
double hist_mean(const struct hist *h);	 /* from bucket midpoints; 0 when empty */

/*
 * The value at percentile p (0 < p <= 100): the smallest recorded value v such that at least
 * p% of the samples are <= v, within the bound above. 0 when the histogram is empty.
 */
uint64_t hist_percentile(const struct hist *h, double p);

#endif
