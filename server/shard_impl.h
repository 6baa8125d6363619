/*
 * shard_impl — what conn.c, shard.c and smtp_session.c share about a shard. Not for use
 * outside server/ (main.c and the sink use shard.h).
 */
#ifndef RINGMX_SHARD_IMPL_H
#define RINGMX_SHARD_IMPL_H

#include <pthread.h>
#include <time.h>

#include "queue/spool.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/loop.h"
#include "server/shard.h"

enum shard_op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_CANCEL,
	OP_CLOSE,
	OP_SPOOL,
	OP_WAKE,
	OP_DNS,     /* the delivery's resolver */
	OP_DLV,     /* the delivery's outbound connections */
	OP_JOURNAL, /* the delivery's completion logs */
	OP_DSPOOL,  /* the delivery's deferred stream */
};

#define SHARD_LISTEN_MAX (2 * CONFIG_LISTEN_MAX)

/* shard_ctl's mailbox: the control thread posts, the shard runs it and says it is done. */
enum shard_ctl_state { SHARD_CTL_IDLE = 0, SHARD_CTL_POSTED, SHARD_CTL_RUNNING, SHARD_CTL_DONE };

struct shard {
	unsigned id;
	pthread_t thread;
	bool thread_started;
	struct loop loop;
	bool loop_ready;
	uint64_t rec_trim_ms; /* when rec_buf_trim last ran (loop clock) */

	const struct config *cfg;
	_Atomic(const struct config *) cfg_next;
	_Atomic uint64_t cfg_next_gen, cfg_ack_gen;

	/* [server] listen, then listen_tls (implicit TLS) */
	int listen_fd[SHARD_LISTEN_MAX];
	unsigned nlisten;
	bool accept_armed[SHARD_LISTEN_MAX];
	bool listen_tls[SHARD_LISTEN_MAX];
	bool listen_submission[SHARD_LISTEN_MAX]; /* MAIL needs AUTH there */

	struct conn **slots;
	uint32_t nslots, used_slots;
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t gen_counter;
	struct conn *conn_pool; /* freed conns kept for reuse, linked through ->shard */

	uint32_t *dirty;
	uint32_t ndirty, dirty_cap;

	struct spool *spool;
	struct delivery *dlv;
	struct delivery_mesh *mesh;
	const struct dns_local *local;
	struct shard_recovered *recovered;
	_Atomic uint32_t *next_seq;
	struct shard_sink sink;
	uint64_t sink_rng;

	struct auth_pool *auth_pool;
	uint32_t auth_inflight; /* checks submitted and not yet taken back: the stop waits */

	int wake_fd;
	uint64_t wake_val;
	bool wake_armed;
	_Atomic bool stop_requested;
	bool stopping;
	uint64_t stop_deadline_ms;

	char *scratch; /* output room for DATA bytes that are scanned but not kept */
	size_t scratch_size;
	uint32_t qid_counter;
	uint64_t qid_last_ms;
	time_t date_sec;
	char date[64]; /* RFC 5322 date for Received:, cached per second */

	struct shard_stats stats;

	/* shard_ctl's mailbox: one request at a time from the control thread. The shard looks at
	 * ctl_posted (an atomic) each turn and takes the mutex only when it is set. */
	pthread_mutex_t ctl_mu;
	pthread_cond_t ctl_cv; /* on CLOCK_MONOTONIC */
	enum shard_ctl_state ctl_state;
	_Atomic bool ctl_posted;
	const char *ctl_req;
	char *ctl_out;
	size_t ctl_cap, ctl_len;

	pthread_mutex_t start_mu; /* start-up handshake only, never on the hot path */
	pthread_cond_t start_cv;
	int start_rc;
	bool start_done;
	char start_err[256];
};

/* For the session: */
uint64_t shard_qid_next(struct shard *sh);
const char *shard_date(struct shard *sh);
/* Hands a complete record, built but not yet sealed, to the spool, which seals it
 * (spool_record_finish: lengths and checksum), or to the sink, which drops it unsealed; the
 * session gets COMMITTED later. */
void shard_commit(struct shard *sh, struct conn *c, char *rec, size_t len);
/* Hands a password check to the auth pool; its result comes back to
 * smtp_session_auth_done on this thread. Returns 0, or -EAGAIN when the pool's queue is full or
 * there is no pool (the job stays the caller's). */
struct auth_job;
int shard_auth_submit(struct shard *sh, struct auth_job *job);
/* For conn.c: */
void shard_conn_dirty(struct shard *sh, struct conn *c);
/* The client is known (at accept, or from its PROXY header): its connection limits, the
 * connect log line, the TLS handshake on an implicit TLS listener, then the session. */
void shard_conn_begin(struct conn *c);
void shard_conn_release(struct shard *sh, struct conn *c);

#endif
