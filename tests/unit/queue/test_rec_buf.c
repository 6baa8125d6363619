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
	char *big = rec_buf_get(REC_BUF_SIZE + 1, &cap);
	cr_assert_not_null(big);
	cr_assert_eq(cap, REC_BUF_SIZE + 1);
	rec_buf_put(big); /* 1 byte over is still within a quarter: the allocator's rounding */
	cr_assert_leq(rec_buf_cached(), 1);
	while (rec_buf_cached() > 0)
		free(rec_buf_get(1, &cap));

	char *grown = rec_buf_get(10, &cap);
	grown = realloc(grown, 4 * REC_BUF_SIZE); /* a message that outgrew the buffer */
	cr_assert_not_null(grown);
	rec_buf_put(grown);
	cr_assert_eq(rec_buf_cached(), 0);

	rec_buf_put(malloc(100)); /* never one of ours */
	cr_assert_eq(rec_buf_cached(), 0);
	return NULL;
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
