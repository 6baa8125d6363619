/*
 * spsc — a bounded single-producer single-consumer ring of pointers, between two shards.
 *
 * One thread pushes, one other thread pops; no locks. The producer's and the consumer's
 * indices sit on their own cache lines, and each side keeps a private copy of the other's
 * index so that it touches the shared line only when its copy says the ring looks full (or
 * empty). A push publishes everything written before it (release); a pop sees it (acquire),
 * so a pointer handed over carries the object it points to.
 *
 * Usage:
 *   struct spsc *q = spsc_new(4096);          // capacity: a power of two
 *   producer: if (!spsc_push(q, p)) keep p for later (the ring is full)
 *   consumer: while ((p = spsc_pop(q))) handle(p);
 *
 * Failure: spsc_new returns NULL when out of memory or capacity is not a power of two.
 */
#ifndef RINGMX_SPSC_H
#define RINGMX_SPSC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define SPSC_LINE 64

struct spsc {
	_Alignas(SPSC_LINE) _Atomic uint32_t head; /* next slot to pop: written by the consumer */
	uint32_t tail_cache;                        /* consumer's copy of tail */
	_Alignas(SPSC_LINE) _Atomic uint32_t tail;  /* next slot to push: written by the producer */
	uint32_t head_cache;                        /* producer's copy of head */
	_Alignas(SPSC_LINE) uint32_t mask;
	void *slot[];
};

static inline struct spsc *
spsc_new(uint32_t capacity)
{
	if (capacity < 2 || (capacity & (capacity - 1)) != 0)
		return NULL;
	struct spsc *q = aligned_alloc(SPSC_LINE, (sizeof *q + capacity * sizeof(void *) +
						   SPSC_LINE - 1) / SPSC_LINE * SPSC_LINE);
	if (!q)
		return NULL;
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	q->tail_cache = q->head_cache = 0;
	q->mask = capacity - 1;
	return q;
}

static inline void
spsc_free(struct spsc *q)
{
	free(q);
}

/* Producer only. False when the ring is full. */
static inline bool
spsc_push(struct spsc *q, void *p)
{
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (t - q->head_cache > q->mask) {
		q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
		if (t - q->head_cache > q->mask)
			return false;
	}
	q->slot[t & q->mask] = p;
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
	return true;
}

/* Consumer only. NULL when the ring is empty. */
static inline void *
spsc_pop(struct spsc *q)
{
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	if (h == q->tail_cache) {
		q->tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
		if (h == q->tail_cache)
			return NULL;
	}
	void *p = q->slot[h & q->mask];
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
	return p;
}

#endif
