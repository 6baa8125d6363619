/*
 * timer — a hashed timer wheel, one per shard: every session timeout lives here.
 *
 * Timers are intrusive (embedded in their owner) and re-arming is O(1). Moving a deadline
 * later, which every command does, costs only a store: the timer stays in its slot and is
 * re-filed when that slot comes round (lazy re-arm). The wheel has TIMER_SLOTS slots of
 * TIMER_TICK_MS; deadlines further away wait in their slot for more revolutions.
 *
 * Usage: timer_wheel_init(&w, now_ms); t.fn = on_expire; timer_arm(&w, &t, now + 5000);
 *        ... timer_wheel_advance(&w, now_ms) calls fn for every timer that is due.
 * A timer must be disarmed (timer_disarm) before its memory is freed.
 */
#ifndef RINGMX_TIMER_H
#define RINGMX_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMER_TICK_MS 10
#define TIMER_SLOTS 1024

struct timer {
	struct timer *next, *prev; /* in a slot's list; NULL when not armed */
	uint64_t filed_ms;         /* the deadline its slot was chosen for */
	uint64_t expire_ms;        /* the real deadline (>= filed_ms) */
	void (*fn)(struct timer *t);
	bool armed;
};

struct timer_wheel {
	struct timer slots[TIMER_SLOTS]; /* list heads */
	uint64_t now_ms;                 /* last time advanced to */
	uint64_t tick;                   /* next tick to process */
	uint64_t count;                  /* armed timers */
};

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms);
void timer_arm(struct timer_wheel *w, struct timer *t, uint64_t expire_ms);
void timer_disarm(struct timer_wheel *w, struct timer *t);
/* Runs every timer due at now_ms. A callback may arm or disarm any timer, itself included. */
void timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms);
/* Milliseconds until the next tick that could fire, or -1 when no timer is armed. */
int64_t timer_wheel_wait_ms(const struct timer_wheel *w, uint64_t now_ms);

#endif
