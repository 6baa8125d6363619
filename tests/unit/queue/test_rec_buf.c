/*
 * Unit tests of the per-thread record buffer cache: reuse last in, first out; what it refuses
 * to keep (grown buffers, foreign sizes, past REC_BUF_KEEP); trimming what sat unused; large
 * requests bypassing it. Each test runs on its own thread, so it starts with an empty cache and
 * the thread's exit frees what is left (under make check-asan a leak here fails the build).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "queue/rec_buf.h"

static void
run_on_thread(void *(*fn)(void *))
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, fn, NULL), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
}

static void *
reuse_lifo(void *arg)
{
	(void)arg;
	size_t cap = 0;
	char *a = rec_buf_get(17000, &cap);
	cr_assert_not_null(a);
	cr_assert_eq(cap, REC_BUF_SIZE);
	memset(a, 'x', cap); /* the whole capacity is usable */
	char *b = rec_buf_get(100, &cap);
	cr_assert_not_null(b);
	cr_assert_eq(rec_buf_cached(), 0);
	rec_buf_put(a);
	rec_buf_put(b);
	cr_assert_eq(rec_buf_cached(), 2);
	/* the last one given back is the first one out */
	cr_assert_eq(rec_buf_get(REC_BUF_SIZE, &cap), b);
	cr_assert_eq(rec_buf_get(1, &cap), a);
	cr_assert_eq(rec_buf_cached(), 0);
	rec_buf_put(a);
	rec_buf_put(b);
	rec_buf_put(NULL); /* a no-op */
	cr_assert_eq(rec_buf_cached(), 2);
	return NULL;
}

Test(rec_buf, reuses_the_last_buffer_given_back)
{
	run_on_thread(reuse_lifo);
}

static void *
refuses_other_sizes(void *arg)
{
	(void)arg;
	size_t cap = 0;
	char *huge = rec_buf_get(4u << 20, &cap); /* past the largest class: plain malloc */
	cr_assert_not_null(huge);
	cr_assert_eq(cap, 4u << 20);
	rec_buf_put(huge);
	cr_assert_eq(rec_buf_cached(), 0);

	char *odd = rec_buf_get(10, &cap);
	odd = realloc(odd, 3 * REC_BUF_SIZE); /* between two classes */
	cr_assert_not_null(odd);
	rec_buf_put(odd);
	cr_assert_eq(rec_buf_cached(), 0);

	rec_buf_put(malloc(100)); /* never one of ours */
	cr_assert_eq(rec_buf_cached(), 0);
	return NULL;
}

static void *
classes(void *arg)
{
	(void)arg;
	size_t cap = 0;
	char *small = rec_buf_get(REC_BUF_SIZE, &cap);
	cr_assert_eq(cap, REC_BUF_SIZE);
	char *mid = rec_buf_get(REC_BUF_SIZE + 1, &cap);
	cr_assert_eq(cap, 2 * REC_BUF_SIZE);
	memset(mid, 'm', cap);
	char *top = rec_buf_get(1u << 20, &cap);
	cr_assert_eq(cap, 1u << 20);
	rec_buf_put(top);
	rec_buf_put(small);
	rec_buf_put(mid);
	cr_assert_eq(rec_buf_cached(), 3);
	/* each request is served from its own class, whatever was put back last */
	cr_assert_eq(rec_buf_get(40000, &cap), mid);
	cr_assert_eq(cap, 2 * REC_BUF_SIZE);
	cr_assert_eq(rec_buf_get(1, &cap), small);
	cr_assert_eq(rec_buf_get(600000, &cap), top);
	cr_assert_eq(cap, 1u << 20);
	rec_buf_put(mid);
	rec_buf_put(small);
	rec_buf_put(top);
	return NULL;
}

Test(rec_buf, serves_each_size_class_from_its_own_cache)
{
	run_on_thread(classes);
}

Test(rec_buf, frees_buffers_of_other_sizes)
{
	run_on_thread(refuses_other_sizes);
}

static void *
bounded(void *arg)
{
	(void)arg;
	static char *v[REC_BUF_KEEP + 10];
	size_t cap;
	for (unsigned i = 0; i < REC_BUF_KEEP + 10; i++) {
		v[i] = rec_buf_get(1, &cap);
		cr_assert_not_null(v[i]);
	}
	for (unsigned i = 0; i < REC_BUF_KEEP + 10; i++)
		rec_buf_put(v[i]);
	cr_assert_eq(rec_buf_cached(), REC_BUF_KEEP);
	return NULL;
}

Test(rec_buf, keeps_at_most_rec_buf_keep)
{
	run_on_thread(bounded);
}

static void *
bounded_bytes(void *arg)
{
	(void)arg;
	enum { N = 300 }; /* 300 MiB of 1 MiB buffers (address space; never written) */
	static char *v[N];
	size_t cap;
	for (unsigned i = 0; i < N; i++) {
		v[i] = rec_buf_get(1u << 20, &cap);
		cr_assert_not_null(v[i]);
	}
	for (unsigned i = 0; i < N; i++)
		rec_buf_put(v[i]);
	cr_assert_eq(rec_buf_cached(), REC_BUF_MAX_BYTES >> 20);
	return NULL;
}

Test(rec_buf, keeps_at_most_rec_buf_max_bytes)
{
	run_on_thread(bounded_bytes);
}

static void *
trims_idle(void *arg)
{
	(void)arg;
	char *v[8];
	size_t cap;
	for (int i = 0; i < 8; i++)
		v[i] = rec_buf_get(1, &cap);
	for (int i = 0; i < 8; i++)
		rec_buf_put(v[i]);
	cr_assert_eq(rec_buf_cached(), 8);
	rec_buf_trim(); /* the first trim after filling only sets the mark (it started at 0) */
	unsigned after_first = rec_buf_cached();
	cr_assert_eq(after_first, 8);
	/* a period in which at most 3 were needed at once: 5 sat unused and go */
	char *a = rec_buf_get(1, &cap), *b = rec_buf_get(1, &cap), *c = rec_buf_get(1, &cap);
	rec_buf_put(c);
	rec_buf_put(b);
	rec_buf_put(a);
	rec_buf_trim();
	cr_assert_eq(rec_buf_cached(), 3);
	/* the ones kept are the ones just used; a period needing one keeps one */
	cr_assert_eq(rec_buf_get(1, &cap), a);
	rec_buf_put(a);
	rec_buf_trim();
	cr_assert_eq(rec_buf_cached(), 1);
	/* a period with no use at all empties it */
	rec_buf_trim();
	cr_assert_eq(rec_buf_cached(), 0);
	return NULL;
}

Test(rec_buf, trim_frees_what_sat_unused)
{
	run_on_thread(trims_idle);
}
