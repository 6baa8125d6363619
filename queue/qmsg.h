/*
 * qmsg — a committed message held for delivery: its envelope in memory, its body in memory or
 * on disk, a reference count, shared between the shard whose spool holds it (its home) and the
 * shards that deliver its recipients.
 *
 * The envelope (helo, client, sender, the recipient table) is copied out of the record and
 * never changes after qmsg_new, so any shard may read it once it got the pointer through an
 * SPSC ring (which publishes it). The body is the spool record itself: kept while the message
 * is fresh, dropped by the home once the message sits in the deferred stream (qmsg_body_drop),
 * and read back from its segment file when a delivery needs it (qmsg_body_get). A small lock
 * per message guards the body pointer; it is taken once per delivery attempt, never per byte.
 * Only the home shard touches the per-recipient state (rdone) and the counters below it.
 *
 * Usage:
 *   m = qmsg_new(rec, len, home, stream, seq, off);  // takes rec on success
 *   body = qmsg_body_get(m, dirfd);  ... use m->v.msg_len bytes ...  qmsg_body_put(m);
 *   qmsg_ref(m) for every job handed out; qmsg_unref(m) when done (frees at zero)
 *
 * Limits: SPOOL_RCPT_MAX recipients (the record's own limit).
 *
 * Failure: qmsg_new returns NULL for a corrupt record or no memory; rec stays the caller's.
 * qmsg_body_get returns NULL when the body cannot be read back (the segment is unreadable or
 * the record there does not match): the caller defers.
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
	uint64_t off;         /* where the record starts in its segment */
	size_t rec_len;       /* the whole record's length */
	uint32_t msg_off;     /* where the message starts in the record */
	struct spool_record_view v; /* envelope slices into env; v.msg: see qmsg_body_get */
	struct spool_str *rcpt;     /* v.nrcpt recipients, in record order */
	char *env;            /* header and envelope, copied */

	/* the body: guarded by lock */
	atomic_flag lock;
	char *rec;            /* the whole record, or NULL when dropped */
	uint32_t body_refs;
	bool spilled;         /* qmsg_body_drop was called: read back for each use, never kept */

	/* Home shard only: */
	uint8_t *rdone;       /* per recipient: final outcome recorded (or moved) */
	uint32_t pending;     /* recipients without a final outcome */
	uint32_t bouncing;    /* failed recipients whose bounce is being spooled */
	bool moving;          /* its copy into the deferred stream is being written */
	bool warned;          /* a delay warning went to the sender */
	struct qmsg *next, *prev; /* the home's list of its messages */
};

struct qmsg *qmsg_new(char *rec, size_t len, unsigned home, enum qmsg_stream stream,
		      uint32_t seq, uint64_t off);
static inline void
qmsg_ref(struct qmsg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}
void qmsg_unref(struct qmsg *m);

/* The message bytes (m->v.msg_len of them), read back from the segment in dirfd[stream]
 * when they were dropped; NULL when that fails. Pair with qmsg_body_put. */
const char *qmsg_body_get(struct qmsg *m, const int dirfd[2]);
void qmsg_body_put(struct qmsg *m);
/* Frees the in-memory body now, or when the last qmsg_body_put comes; from then on a body read
 * back by qmsg_body_get is freed again by its last qmsg_body_put (the message waits without
 * its body in memory). */
void qmsg_body_drop(struct qmsg *m);
/* Whether qmsg_body_drop was called. */
bool qmsg_spilled(struct qmsg *m);
/* Bytes of records (bodies) in memory, all messages of the process together. */
uint64_t qmsg_body_bytes(void);
/* The record now lives elsewhere (moved to the deferred stream); under the body lock, since
 * another shard may be reading it back at that moment. */
void qmsg_relocate(struct qmsg *m, enum qmsg_stream stream, uint32_t seq, uint64_t off);
/* True while the body is in memory (for the control's view). */
bool qmsg_body_loaded(struct qmsg *m);

/* The domain part of recipient i (after the last '@', as stored), or an empty slice. */
struct spool_str qmsg_rcpt_domain(const struct qmsg *m, uint32_t i);

#endif
