/*
 * delivery — a shard's outbound side: per-domain queues, sites with connection pools, local
 * delivery, retries, bounces and the completion journal.
 *
 * Every shard runs one. Two roles meet in it:
 *   home:  the shard whose spool holds a message. Once the message is committed it keeps the
 *          record in memory (queue/qmsg.h), splits the recipients by domain and hands each
 *          domain's share as a job to the domain's owner shard (a hash of the domain) over
 *          the SPSC mesh. Outcomes come back the same way; the home records the final ones in
 *          the segment's completion log (queue/journal.h), spools a bounce (queue/dsn.h) for
 *          permanent failures, and removes a segment once every recipient in it is done.
 *   owner: keeps a ready queue and a scheduled (retry) queue per domain, resolves its route
 *          (the [transport] table, local delivery, [deliver] relayhost, or MX through dns/),
 *          groups domains whose MX sets are equal into one site with one connection pool, and
 *          delivers: many recipients per transaction, many transactions per connection,
 *          PIPELINING and CHUNKING when offered (queue/smtp_out.c), shaped by the [domain]
 *          limits (connections, messages per connection, recipients, rate).
 *
 * Threading: a delivery belongs to its shard thread. Shards meet only through the mesh
 * (lock-free SPSC rings, an eventfd to wake the peer) and qmsg reference counts. The control
 * calls (delivery_ctl) run on the shard thread too, asked through shard.c's mailbox.
 *
 * Usage (shard.c):
 *   mesh = delivery_mesh_new(nshards);  delivery_mesh_set_wake(mesh, i, eventfd) for each
 *   d = delivery_new(&params, err, sizeof err);
 *   on spool commit of a session's record: delivery_accept(d, done)  (takes the record)
 *   on spool completion of a delivery record (owner has DELIVERY_OWNER_BIT): delivery_spool_done
 *   CQEs whose op is one of params.op_*: delivery_complete(d, cqe)
 *   before each wait: delivery_before_wait(d)
 *
 * Failure: delivery_new returns NULL with err filled. Nothing else fails outward: a failed
 * delivery is a deferral or a bounce, logged per recipient (event=delivered|deferred|bounced).
 */
#ifndef RINGMX_DELIVERY_H
#define RINGMX_DELIVERY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "queue/qmsg.h"
#include "queue/spool.h"

struct config;
struct loop;
struct dns_local;
struct delivery;
struct delivery_mesh;

/* Records the delivery itself spools (bounces) carry this bit in their spool owner. */
#define DELIVERY_OWNER_BIT ((uint64_t)1 << 63)

struct delivery_mesh *delivery_mesh_new(unsigned nshards);
void delivery_mesh_free(struct delivery_mesh *m);
void delivery_mesh_set_wake(struct delivery_mesh *m, unsigned shard, int eventfd);

struct delivery_params {
	unsigned shard;
	struct delivery_mesh *mesh;
	struct loop *loop;
	const struct config *cfg;
	struct spool *spool;         /* the shard's spool (bounces go there) */
	const struct dns_local *local; /* this host's addresses, for MX loop detection */
	unsigned op_dns, op_out, op_journal, op_dspool; /* loop ops for delivery_complete */
	_Atomic uint32_t *next_seq;  /* the spool's segment counter (the deferred stream uses it) */
	uint64_t (*qid_next)(void *arg);     /* a new queue id (for bounces) */
	const char *(*date)(void *arg);      /* RFC 5322 date, for Received: of bounces */
	void *arg;
};

struct delivery *delivery_new(const struct delivery_params *p, char *err, size_t err_len);
void delivery_free(struct delivery *d);
/* A new config (SIGHUP): routes are looked up again, limits apply from now. */
void delivery_config(struct delivery *d, const struct config *cfg);

/* Home: a session's record was committed (status 0): keep it and deliver it. */
void delivery_accept(struct delivery *d, const struct spool_done *sd);
/* Home: a record the delivery spooled (a bounce) settled. */
void delivery_spool_done(struct delivery *d, const struct spool_done *sd);

/* Start-up, before the shard runs: a recovered message (home = this shard) and the live
 * message count of a recovered segment of ours. */
void delivery_adopt(struct delivery *d, struct qmsg *m);
void delivery_adopt_segment(struct delivery *d, unsigned stream, uint32_t seq, uint32_t live);

void delivery_complete(struct delivery *d, const struct io_uring_cqe *cqe);
void delivery_before_wait(struct delivery *d);

/* Graceful stop: no new transactions; idle connections close. */
void delivery_stop(struct delivery *d);
/* At the stop deadline: outbound connections close now; their open recipients stay undone
 * (delivered after the restart). */
void delivery_stop_force(struct delivery *d);
/* True while connections, lookups or journal writes are still going. */
bool delivery_busy(const struct delivery *d);

/* Control (ringmxctl): runs one request line, writes the answer (text or JSON) into out.
 * Returns the bytes written. See queue/ctl.h for the commands. */
size_t delivery_ctl(struct delivery *d, const char *req, char *out, size_t cap);

#endif
