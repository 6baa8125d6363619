/*
 * loop — one io_uring event loop: the ring, a provided-buffer ring for receives, a timer
 * wheel, and one submit-and-wait per turn. It knows nothing about SMTP: its owner (a shard,
 * the sink, the bench client) handles completions and does its batched work before each wait.
 *
 * user_data layout (64 bits): op (8) | generation (24) | slot (32). A completion finds its
 * owner by slot and checks the generation; a result whose owner is gone is dropped.
 *
 * Usage:
 *   struct loop l; loop_init(&l, &(struct loop_params){...}, err, sizeof err);
 *   while (!stop) loop_turn(&l, &ops, ctx);
 *
 * Limits: LOOP_BUF_MAX receive buffers per loop. Failure: loop_init returns -errno with err
 * filled; loop_turn returns -errno only when io_uring itself fails (not for failed ops).
 */
#ifndef RINGMX_LOOP_H
#define RINGMX_LOOP_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/timer.h"

#define LOOP_BUF_MAX 32768

struct loop_params {
	unsigned entries;   /* submission queue size */
	unsigned nbufs;     /* provided receive buffers (a power of two) */
	unsigned buf_size;  /* bytes each */
	unsigned buf_group; /* buffer group id */
	unsigned spin_us;   /* after a busy turn, poll this long for completions before sleeping */
};

struct loop {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *bufs;
	size_t br_map_size;
	unsigned nbufs, buf_size, buf_group, buf_mask;
	unsigned bufs_pending; /* returned since the last advance */
	struct timer_wheel wheel;
	uint64_t now_ms; /* CLOCK_MONOTONIC, updated every turn */
	unsigned spin_us;
	unsigned last_cqes; /* completions handled in the last turn */
};

struct loop_ops {
	void (*on_cqe)(void *ctx, struct io_uring_cqe *cqe);
	void (*before_wait)(void *ctx); /* batched work: sends, group commit, log flush */
};

static inline uint64_t
loop_ud(unsigned op, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffff) << 32) | slot;
}
static inline unsigned loop_ud_op(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t loop_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffff; }
static inline uint32_t loop_ud_slot(uint64_t ud) { return (uint32_t)ud; }

int loop_init(struct loop *l, const struct loop_params *p, char *err, size_t err_len);
void loop_fini(struct loop *l);

/* A free SQE; submits what is queued when the ring is full. Never returns NULL. */
struct io_uring_sqe *loop_sqe(struct loop *l);

/* The receive buffer a completion's IORING_CQE_F_BUFFER flag named, and giving it back. */
static inline char *
loop_buf(struct loop *l, unsigned bid)
{
	return l->bufs + (size_t)bid * l->buf_size;
}
void loop_buf_return(struct loop *l, unsigned bid);

/* One turn: before_wait, submit and wait (for a completion or the next timer tick), handle
 * every completion, advance the timers. wait_ms caps the wait (-1: timers only). */
int loop_turn(struct loop *l, const struct loop_ops *ops, void *ctx, int wait_ms);

uint64_t loop_clock_ms(void);
uint64_t loop_clock_us(void);

#endif
