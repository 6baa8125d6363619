#include "server/timer.h"

#include <stddef.h>

#include "server/assert.h"

void
timer_wheel_init(struct timer_wheel *w, uint64_t now_ms)
{
	for (unsigned i = 0; i < TIMER_SLOTS; i++) {
		w->slots[i].next = &w->slots[i];
		w->slots[i].prev = &w->slots[i];
	}
	w->now_ms = now_ms;
	w->tick = now_ms / TIMER_TICK_MS;
	w->count = 0;
}

static void
timer_link(struct timer_wheel *w, struct timer *t)
{
	uint64_t tick = t->filed_ms / TIMER_TICK_MS;
	if (tick < w->tick)
		tick = w->tick; /* already due: the next advance fires it */
	struct timer *head = &w->slots[tick % TIMER_SLOTS];
	t->next = head;
	t->prev = head->prev;
	head->prev->next = t;
	head->prev = t;
}

static void
timer_unlink(struct timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = NULL;
}

void
timer_arm(struct timer_wheel *w, struct timer *t, uint64_t expire_ms)
{
	ASSERT(t->fn != NULL);
	if (t->armed && expire_ms >= t->filed_ms) {
		t->expire_ms = expire_ms; /* later: re-filed lazily when its slot comes round */
		return;
	}
	if (t->armed)
		timer_unlink(t);
	else
		w->count++;
	t->armed = true;
	t->filed_ms = t->expire_ms = expire_ms;
	timer_link(w, t);
}

void
timer_disarm(struct timer_wheel *w, struct timer *t)
{
	if (!t->armed)
		return;
	timer_unlink(t);
	t->armed = false;
	ASSERT(w->count > 0);
	w->count--;
}

static void
timer_slot_run(struct timer_wheel *w, struct timer *head, uint64_t now_ms)
{
	/* Detach the list first: callbacks may arm timers into this same slot. */
	struct timer pending = {0};
	if (head->next == head)
		return;
	pending.next = head->next;
	pending.prev = head->prev;
	pending.next->prev = &pending;
	pending.prev->next = &pending;
	head->next = head->prev = head;
	while (pending.next != &pending) {
		struct timer *t = pending.next;
		timer_unlink(t);
		if (t->expire_ms > now_ms) {
			t->filed_ms = t->expire_ms; /* not due yet: another revolution or a lazy re-arm */
			timer_link(w, t);
			continue;
		}
		t->armed = false;
		w->count--;
		t->fn(t);
	}
}

void
timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms)
{
	if (now_ms < w->now_ms)
		now_ms = w->now_ms;
	w->now_ms = now_ms;
	uint64_t last = now_ms / TIMER_TICK_MS;
	if (w->count == 0) {
		w->tick = last + 1;
		return;
	}
	/* After a long stall, one pass over every slot is enough. */
	if (last - w->tick >= TIMER_SLOTS)
		w->tick = last - TIMER_SLOTS + 1;
	for (; w->tick <= last; w->tick++) {
		struct timer *head = &w->slots[w->tick % TIMER_SLOTS];
		w->tick++; /* timers armed by callbacks for "now" go to the next tick */
		timer_slot_run(w, head, now_ms);
		w->tick--;
	}
}

int64_t
timer_wheel_wait_ms(const struct timer_wheel *w, uint64_t now_ms)
{
	if (w->count == 0)
		return -1;
	uint64_t next_ms = w->tick * TIMER_TICK_MS;
	return next_ms > now_ms ? (int64_t)(next_ms - now_ms) : 0;
}
