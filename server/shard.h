/*
 * shard — one thread, one io_uring loop, its own listeners, connections and spool writer.
 *
 * Shards share nothing but atomics: the connection limits, the segment sequence counter and
 * the published config. main.c creates them, starts them, publishes a new config on SIGHUP
 * and asks them to stop on SIGTERM; the control thread (server/control.c) asks them ringmxctl
 * requests through a small mailbox (shard_ctl). AUTH's password checks run on the threads of
 * server/auth_pool.h, shared by all shards: a check's result lands in the shard's inbox and
 * wakes it through its eventfd (the one the delivery mesh uses too). ringmx-sink runs the same
 * shards in sink mode: no spool, every recipient accepted, messages answered (after an
 * optional delay, or failed at chosen rates) and discarded.
 *
 * Failure: shard_create / shard_start return NULL / -errno with err filled; shard_ctl returns
 * -ETIMEDOUT when the shard does not answer.
 */
#ifndef RINGMX_SHARD_H
#define RINGMX_SHARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct shard;
struct qmsg;
struct delivery_mesh;
struct dns_local;
struct auth_pool;

/* What start-up recovery found for one shard (its home messages and segments); the shard
 * adopts the messages, main frees the arrays once shard_start returned. */
struct shard_recovered {
	struct qmsg **msgs;
	uint32_t nmsgs, msgs_cap;
	struct shard_recovered_seg {
		uint8_t stream;
		uint32_t seq, live;
	} *segs;
	uint32_t nsegs, segs_cap;
};

struct shard_sink {
	bool enabled;
	unsigned delay_ms;     /* before the reply to end-of-data */
	unsigned tempfail_pct; /* of messages answered 451 */
	unsigned permfail_pct; /* of messages answered 554 */
};

struct shard_params {
	unsigned id;
	const struct config *cfg;
	_Atomic uint32_t *next_seq; /* spool segment sequence, shared */
	struct shard_sink sink;
	uint64_t qid_floor_ms; /* queue ids start above this (from the spool's newest) */
	struct delivery_mesh *mesh;    /* NULL: no delivery (sink mode, [deliver] enabled = no) */
	const struct dns_local *local; /* this host's addresses (MX loop detection) */
	struct shard_recovered *recovered;
	/* Password checks for AUTH (server/auth_pool.h), shared by all shards; this shard's
	 * inbox is its id. NULL: none (no submission listener), AUTH answers 454. */
	struct auth_pool *auth_pool;
};

/* The eventfd that wakes the shard (for the delivery mesh). */
int shard_wake_fd(const struct shard *sh);

/* The millisecond part of a queue id (see shard_qid_next). */
#define SHARD_QID_MS(qid) ((qid) >> 24)

/* Counters, readable from any thread at any time. */
struct shard_stats {
	_Atomic uint64_t connections, messages, recipients, bytes, rejected, tempfailed;
	_Atomic uint64_t tls, tls_failed; /* TLS handshakes completed / failed (server/tls.c) */
};

struct shard *shard_create(const struct shard_params *p, char *err, size_t err_len);
/* Starts the thread; returns once its loop is up (or failed to come up). */
int shard_start(struct shard *sh, char *err, size_t err_len);
/* Thread-safe: makes the shard use cfg from its next turn; see shard_config_acked. */
void shard_config_publish(struct shard *sh, const struct config *cfg, uint64_t gen);
uint64_t shard_config_acked(struct shard *sh);
/* Thread-safe: graceful stop (stop accepting, finish transactions up to shutdown_timeout). */
void shard_request_stop(struct shard *sh);
void shard_join(struct shard *sh);
/* Thread-safe (the control thread; one caller at a time): runs one ringmxctl request line on
 * the shard's thread (delivery_ctl, queue/ctl.h) at the start of its next turn and copies the
 * shard's answer (at most cap bytes) into out. Returns the answer's length, or -ETIMEDOUT when
 * the shard did not take the request within SHARD_CTL_TIMEOUT_MS (it is withdrawn). A shard
 * without delivery answers that delivery is disabled. */
#define SHARD_CTL_TIMEOUT_MS 5000
long shard_ctl(struct shard *sh, const char *req, char *out, size_t cap);
void shard_destroy(struct shard *sh);
const struct shard_stats *shard_stats(const struct shard *sh);

#endif
