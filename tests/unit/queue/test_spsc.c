/*
 * Unit tests of the single-producer single-consumer ring: capacity, FIFO order, wrap-around
 * (of the slots and of the 32-bit indices), and two threads handing over a million pointers.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <criterion/criterion.h>

#include "queue/spsc.h"

/* Sequence numbers as pointers; 0 would read as "empty", so they start at 1. */
#define P(n) ((void *)(uintptr_t)(n))
#define N(p) ((uintptr_t)(p))

Test(spsc, capacity_must_be_a_power_of_two_of_at_least_two)
{
	static const uint32_t bad[] = {0, 1, 3, 6, 100, 4097, 0x80000001u};
	static const uint32_t good[] = {2, 4, 64, 4096};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_null(spsc_new(bad[i]), "capacity %u", bad[i]);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct spsc *q = spsc_new(good[i]);

		cr_assert_not_null(q, "capacity %u", good[i]);
		cr_assert_eq((uintptr_t)q % SPSC_LINE, 0);
		cr_assert_null(spsc_pop(q));
		spsc_free(q);
	}
}

Test(spsc, push_until_full_then_pop_in_fifo_order)
{
	struct spsc *q = spsc_new(8);

	cr_assert_not_null(q);
	cr_assert_null(spsc_pop(q), "a new ring is empty");
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert(spsc_push(q, P(i)), "push %zu", (size_t)i);
	cr_assert_not(spsc_push(q, P(9)), "a full ring takes one more");
	cr_assert_not(spsc_push(q, P(9)));
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert_eq(N(spsc_pop(q)), i);
	cr_assert_null(spsc_pop(q));
	/* Full again after draining: a popped slot is free at once. */
	cr_assert(spsc_push(q, P(10)));
	cr_assert_eq(N(spsc_pop(q)), 10);
	spsc_free(q);
}

Test(spsc, one_pop_makes_room_for_one_push)
{
	struct spsc *q = spsc_new(4);

	for (uintptr_t i = 1; i <= 4; i++)
		cr_assert(spsc_push(q, P(i)));
	cr_assert_eq(N(spsc_pop(q)), 1);
	cr_assert(spsc_push(q, P(5)));
	cr_assert_not(spsc_push(q, P(6)));
	for (uintptr_t i = 2; i <= 5; i++)
		cr_assert_eq(N(spsc_pop(q)), i);
	cr_assert_null(spsc_pop(q));
	spsc_free(q);
}

/* Pushes and pops with a fill level that keeps changing, checking order and capacity. */
static void
churn(struct spsc *q, uint32_t cap, uintptr_t *next_in, uintptr_t *next_out, int rounds)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	for (int r = 0; r < rounds; r++) {
		uint32_t k;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		k = (uint32_t)(rng % (cap + 2));
		for (uint32_t i = 0; i < k; i++) {
			bool ok = spsc_push(q, P(*next_in));

			cr_assert_eq(ok, *next_in - *next_out < cap, "round %d", r);
			if (ok)
				(*next_in)++;
		}
		k = (uint32_t)((rng >> 32) % (cap + 2));
		for (uint32_t i = 0; i < k; i++) {
			void *p = spsc_pop(q);

			if (*next_out == *next_in) {
				cr_assert_null(p, "round %d", r);
				continue;
			}
			cr_assert_eq(N(p), *next_out, "round %d", r);
			(*next_out)++;
		}
	}
	while (*next_out < *next_in) {
		cr_assert_eq(N(spsc_pop(q)), *next_out);
		(*next_out)++;
	}
	cr_assert_null(spsc_pop(q));
}

Test(spsc, the_slots_wrap_around_many_times)
{
	struct spsc *q = spsc_new(4);
	uintptr_t in = 1, out = 1;

	churn(q, 4, &in, &out, 100000);
	cr_assert_gt(in, 4 * 10000, "the ring went round only %zu times", (size_t)(in / 4));
	spsc_free(q);
}

Test(spsc, the_32_bit_indices_wrap_around)
{
	struct spsc *q = spsc_new(8);
	uintptr_t in = 1, out = 1;

	/* Start just before the indices overflow, as after 2^32 messages. */
	atomic_store(&q->head, UINT32_MAX - 20);
	atomic_store(&q->tail, UINT32_MAX - 20);
	q->head_cache = q->tail_cache = UINT32_MAX - 20;
	churn(q, 8, &in, &out, 1000);
	cr_assert_lt(atomic_load(&q->tail), UINT32_MAX - 20, "the indices did not wrap");
	cr_assert_gt(in, 100);
	/* Full across the wrap as well. */
	atomic_store(&q->head, UINT32_MAX - 3);
	atomic_store(&q->tail, UINT32_MAX - 3);
	q->head_cache = q->tail_cache = UINT32_MAX - 3;
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert(spsc_push(q, P(i)));
	cr_assert_not(spsc_push(q, P(9)));
	for (uintptr_t i = 1; i <= 8; i++)
		cr_assert_eq(N(spsc_pop(q)), i);
	cr_assert_null(spsc_pop(q));
	spsc_free(q);
}

#define STRESS_N 1000000u

struct stress {
	struct spsc *q;
	uint64_t full_spins;
};

static void *
producer(void *arg)
{
	struct stress *s = arg;

	for (uintptr_t i = 1; i <= STRESS_N; i++) {
		while (!spsc_push(s->q, P(i))) {
			/* Full: let the consumer run, whatever the machine's core count. */
			s->full_spins++;
			sched_yield();
		}
	}
	return NULL;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(spsc, two_threads_hand_over_a_million_pointers_in_order, .timeout = 30)
{
	struct stress s = {.q = spsc_new(256)};
	pthread_t t;
	uintptr_t want = 1;
	uint64_t empty_spins = 0;
	double t0 = now_s(), dt;

	cr_assert_not_null(s.q);
	cr_assert_eq(pthread_create(&t, NULL, producer, &s), 0);
	while (want <= STRESS_N) {
		void *p = spsc_pop(s.q);

		if (p == NULL) {
			empty_spins++;
			sched_yield();
			continue;
		}
		/* A check per item, not an assert per item: the Criterion assert is costly. */
		if (N(p) != want)
			cr_assert_fail("got %zu, want %zu", (size_t)N(p), (size_t)want);
		want++;
	}
	cr_assert_eq(pthread_join(t, NULL), 0);
	dt = now_s() - t0;
	cr_assert_null(spsc_pop(s.q), "more than was pushed came out");
	cr_log_info("spsc: %u items in %.3f s (%llu full, %llu empty spins)", STRESS_N, dt,
		    (unsigned long long)s.full_spins, (unsigned long long)empty_spins);
	/* Well under a second on an idle machine; a loose bound so that a busy one passes. */
	cr_assert_lt(dt, 10.0, "%u items took %.3f s", STRESS_N, dt);
	spsc_free(s.q);
}
