/*
 * qmsg — a committed message held in memory for delivery: its spool record, decoded, with a
 * reference count, shared read-only between the shard whose spool holds it (its home) and the
 * shards that deliver its recipients.
 *
 * The record bytes, the envelope and the recipient table never change after qmsg_new, so any
 * shard may read them once it got the pointer through an SPSC ring (which publishes them).
 * Only the home shard touches the per-recipient state (rdone) and the counters below it.
 *
 * Usage:
 *   m = qmsg_new(rec, len, home, stream, seq);   // takes rec (malloc'ed); NULL: corrupt/ENOMEM
 *   qmsg_ref(m) for every job handed out; qmsg_unref(m) when done (frees at zero)
 *
 * Limits: SPOOL_RCPT_MAX recipients (the record's own limit).
 */
#ifndef RINGMX_QMSG_H
#define RINGMX_QMSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/spool_record.h"

/* Which of a shard's spool streams holds the record. */
enum qmsg_stream { QMSG_HOT = 0, QMSG_DEFERRED = 1 };

struct qmsg {
	_Atomic uint32_t refs;
	uint16_t home;        /* the shard whose spool holds the record */
	uint8_t stream;       /* enum qmsg_stream */
	uint32_t seq;         /* segment number */
	char *rec;            /* the whole record (owned) */
	size_t rec_len;
	struct spool_record_view v; /* slices into rec */
	struct spool_str *rcpt;     /* v.nrcpt recipients, in record order */

	/* Home shard only: */
	uint8_t *rdone;       /* per recipient: final outcome recorded (or moved) */
	uint32_t pending;     /* recipients without a final outcome */
	uint32_t bouncing;    /* failed recipients whose bounce is being spooled */
	bool moving;          /* its copy into the deferred stream is being written */
	bool warned;          /* a delay warning went to the sender */
	struct qmsg *next, *prev; /* the home's list of its messages */
};

struct qmsg *qmsg_new(char *rec, size_t len, unsigned home, enum qmsg_stream stream,
		      uint32_t seq);
static inline void
qmsg_ref(struct qmsg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}
void qmsg_unref(struct qmsg *m);

/* The domain part of recipient i (after the last '@', as stored), or an empty slice. */
struct spool_str qmsg_rcpt_domain(const struct qmsg *m, uint32_t i);

#endif
