/*
 * Unit tests for bench/hist: percentiles against a sorted copy of the same samples (fixed
 * seeds, several distributions), merging, bucket edges, and empty histograms. The bound
 * checked is the one hist.h documents: |reported - exact| <= exact / 256, exact below 256.
 */
#include "bench/hist.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#define SAMPLES 200000

static const double percentiles[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

static uint64_t rng_state;

static uint64_t
rng_next(void)
{
	/* splitmix64: deterministic across libcs, unlike rand(). */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The exact value at percentile p: the same rank rule as hist_percentile(). */
static uint64_t
reference(const uint64_t *sorted, size_t n, double p)
{
	double r = p / 100.0 * (double)n - 1e-7;
	size_t rank = r < 1 ? 1 : (size_t)r;

	if ((double)rank < r)
		rank++;

	return sorted[(rank > n ? n : rank) - 1];
}

static void
assert_within_bound(uint64_t got, uint64_t want, double p)
{
	uint64_t diff = got > want ? got - want : want - got;

	cr_assert(diff <= want / 256, "p%g: histogram says %llu, sorted reference %llu", p,
		  (unsigned long long)got, (unsigned long long)want);
}

/* Records `n` samples from gen() and checks every percentile against the sorted copy. */
static void
check_distribution(uint64_t (*gen)(void), size_t n)
{
	uint64_t *v = malloc(n * sizeof(*v));
	struct hist *h = hist_new();

	cr_assert(v && h);
	for (size_t i = 0; i < n; i++) {
		v[i] = gen();
		hist_record(h, v[i]);
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	cr_assert_eq(hist_count(h), n);
	cr_assert_eq(hist_min(h), v[0]);
	cr_assert_eq(hist_max(h), v[n - 1]);
	for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++)
		assert_within_bound(hist_percentile(h, percentiles[i]),
				    reference(v, n, percentiles[i]), percentiles[i]);
	hist_free(h);
	free(v);
}

static uint64_t
gen_uniform_small(void)
{
	return rng_next() % 300; /* mostly in the exact range, a little above */
}

static uint64_t
gen_uniform_latency_ns(void)
{
	return 10000 + rng_next() % 5000000; /* 10 us .. 5 ms */
}

static uint64_t
gen_log_uniform(void)
{
	/* Spread over 1 .. 2^60, so every row of buckets gets samples. */
	unsigned bits = (unsigned)(rng_next() % 60) + 1;

	return rng_next() >> (64 - bits);
}

static uint64_t
gen_long_tail(void)
{
	/*
	 * Mostly 50..100 us with a heavy tail (the shape of real latencies): doubled once per
	 * trailing zero bit of a random word, so 2^k times larger with probability 2^-(k+1).
	 */
	unsigned doublings = (unsigned)__builtin_ctzll(rng_next() | (1ull << 20));

	return (50000 + rng_next() % 50000) << doublings;
}

Test(hist, percentiles_of_small_uniform_values_match_the_sorted_reference)
{
	rng_state = 1;
	check_distribution(gen_uniform_small, SAMPLES);
}

Test(hist, percentiles_of_uniform_latencies_match_the_sorted_reference)
{
	rng_state = 2;
	check_distribution(gen_uniform_latency_ns, SAMPLES);
}

Test(hist, percentiles_of_log_uniform_values_match_the_sorted_reference)
{
	rng_state = 3;
	check_distribution(gen_log_uniform, SAMPLES);
}

Test(hist, percentiles_of_a_long_tail_match_the_sorted_reference)
{
	rng_state = 4;
	check_distribution(gen_long_tail, SAMPLES);
}

Test(hist, percentiles_of_a_few_samples_match_the_sorted_reference)
{
	rng_state = 5;
	check_distribution(gen_log_uniform, 7);
}

Test(hist, values_below_256_are_exact)
{
	struct hist *h = hist_new();

	for (uint64_t v = 0; v < 256; v++)
		hist_record(h, v);
	/* 256 values 0..255: percentile p is the value at rank ceil(2.56 p), i.e. that rank - 1. */
	for (unsigned p = 1; p <= 100; p++)
		cr_assert_eq(hist_percentile(h, p), (p * 256 + 99) / 100 - 1, "p%u", p);
	hist_free(h);
}

Test(hist, a_single_value_at_every_power_of_two_edge_is_within_the_bound)
{
	struct hist *h = hist_new();

	for (unsigned k = 0; k < 64; k++) {
		uint64_t edge = (uint64_t)1 << k;
		uint64_t vals[] = {edge - 1, edge, edge + 1, edge + edge / 2};

		for (size_t i = 0; i < 4; i++) {
			hist_reset(h);
			hist_record(h, vals[i]);
			hist_record(h, vals[i]);
			/* min == max: the clamp makes it exact whatever the bucket. */
			cr_assert_eq(hist_percentile(h, 50), vals[i]);
		}
	}
	hist_free(h);
}

Test(hist, the_largest_value_neither_overflows_nor_loses_its_bucket)
{
	struct hist *h = hist_new();

	hist_record(h, UINT64_MAX);
	hist_record(h, UINT64_MAX - 1);
	hist_record(h, 1);
	cr_assert_eq(hist_max(h), UINT64_MAX);
	assert_within_bound(hist_percentile(h, 66), UINT64_MAX - 1, 66);
	cr_assert_eq(hist_percentile(h, 100), UINT64_MAX);
	cr_assert_eq(hist_percentile(h, 1), 1);
	hist_free(h);
}

Test(hist, merging_equals_recording_everything_in_one)
{
	struct hist *a = hist_new(), *b = hist_new(), *all = hist_new();

	rng_state = 6;
	for (unsigned i = 0; i < 50000; i++) {
		uint64_t v = gen_long_tail();

		hist_record(i % 3 ? a : b, v);
		hist_record(all, v);
	}
	hist_merge(a, b);
	cr_assert_eq(hist_count(a), hist_count(all));
	cr_assert_eq(hist_min(a), hist_min(all));
	cr_assert_eq(hist_max(a), hist_max(all));
	for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++)
		cr_assert_eq(hist_percentile(a, percentiles[i]),
			     hist_percentile(all, percentiles[i]));
	cr_assert_float_eq(hist_mean(a), hist_mean(all), 1e-6 * hist_mean(all));
	hist_free(a);
	hist_free(b);
	hist_free(all);
}

Test(hist, merging_an_empty_histogram_changes_nothing)
{
	struct hist *a = hist_new(), *empty = hist_new();

	hist_record(a, 1000);
	hist_merge(a, empty);
	cr_assert_eq(hist_count(a), 1);
	cr_assert_eq(hist_min(a), 1000);
	hist_merge(empty, a);
	cr_assert_eq(hist_min(empty), 1000);
	cr_assert_eq(hist_max(empty), 1000);
	hist_free(a);
	hist_free(empty);
}

Test(hist, an_empty_histogram_reports_zero)
{
	struct hist *h = hist_new();

	cr_assert_eq(hist_count(h), 0);
	cr_assert_eq(hist_min(h), 0);
	cr_assert_eq(hist_max(h), 0);
	cr_assert_eq(hist_percentile(h, 50), 0);
	cr_assert_eq(hist_percentile(h, 100), 0);
	cr_assert_float_eq(hist_mean(h), 0.0, 1e-12);
	hist_free(h);
}

Test(hist, the_mean_is_within_the_bucket_bound)
{
	struct hist *h = hist_new();
	double sum = 0;

	rng_state = 7;
	for (unsigned i = 0; i < 100000; i++) {
		uint64_t v = gen_uniform_latency_ns();

		hist_record(h, v);
		sum += (double)v;
	}
	double exact = sum / 100000;

	double diff = hist_mean(h) > exact ? hist_mean(h) - exact : exact - hist_mean(h);

	cr_assert(diff <= exact / 256, "mean %f vs %f", hist_mean(h), exact);
	hist_free(h);
}
