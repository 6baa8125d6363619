/*
 * bench_client — ringmx-bench's SMTP client engine: one thread, one io_uring, many connections.
 *
 * A struct bench_plan holds what every thread shares read-only: the options, the server
 * address, the generated messages (one per configured size, built once by bench_msg) and
 * the run's clock marks. Each struct bench_client owns its connections, buffers and
 * statistics; nothing is shared on the hot path. The main thread reads progress through
 * relaxed atomics that each client publishes once per loop turn, and reads the statistics
 * after joining the thread.
 *
 * Usage:
 *   bench_client_plan_init(&plan, &opts, addr, addrlen, nthreads, err, sizeof err);
 *   c[i] = bench_client_new(&plan, i, conns_i, quota_i, rate_i, err, sizeof err);
 *   plan.t0_ns = bench_client_now_ns(); ... pthread_create(..., bench_client_run, c[i]);
 *   ... bench_client_progress(c[i], &p) once a second ...
 *   join; bench_client_stats(c[i]) / _hist_eod / _hist_txn; merge; bench_client_free(c[i]).
 *
 * Timing: latencies are nanoseconds on CLOCK_MONOTONIC. "Sent" instants (MAIL, end of data)
 * are read right before the io_uring submit that carries the write; reply instants right
 * after the wait that returned them (one clock read per batch of completions).
 *
 * Replies are parsed by bench_reply, commands and messages are written by bench_msg; this
 * module owns the connections, the session state machine and the measurements.
 *
 * TLS (--starttls): after the EHLO reply each connection sends STARTTLS, does the handshake
 * (bench_tls, memory BIOs) and EHLO again; from then on its receives bring ciphertext, which
 * is decrypted into the receive buffer, and each write's plaintext (commands and the shared
 * message) is encrypted one record at a time into the connection's wire buffer, sent, then
 * the next. The handshake is part of the session's set-up, like the connect and the greeting:
 * it is not in a transaction's latency (in the open loop a message waiting for a connection
 * still waits for it). A STARTTLS that is not offered, refused, or a handshake that fails or
 * times out fails the connection attempt: counted in connect_errors and tls_failed.
 *
 * Limits: per connection one receive buffer of BENCH_CLIENT_RBUF bytes (a reply longer than
 * that is a protocol error) and one command buffer sized from --rcpts and the patterns; with
 * --starttls also a ciphertext receive buffer of BENCH_CLIENT_RBUF bytes, a wire buffer of
 * BENCH_CLIENT_TLS_WIRE bytes and OpenSSL's own state (allocated by OpenSSL per connection).
 *
 * Failure: bench_client_plan_init and bench_client_new return -errno / NULL with err filled;
 * bench_client_run records what went wrong in the stats and always returns NULL.
 */
#ifndef RINGMX_BENCH_CLIENT_H
#define RINGMX_BENCH_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bench/bench_opts.h"
#include "bench/hist.h"

#define BENCH_CLIENT_RBUF 4096
#define BENCH_CLIENT_CONNECT_TRIES 5  /* failed attempts in a row before a slot gives up */
#define BENCH_CODE_MAX 1000	      /* reply codes are counted in [0, 1000) */
#define BENCH_CLIENT_TLS_WIRE 32768   /* ciphertext sent per write with --starttls */
#define BENCH_CLIENT_TLS_TEXT_MAX 160 /* the TLS strings kept in bench_stats */

struct bench_msg_set; /* bench/bench_msg.h */
struct ssl_ctx_st;    /* OpenSSL's SSL_CTX, from bench/bench_tls.h */

struct bench_plan {
	const struct bench_opts *opts;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct bench_msg_set *msgs; /* one message per --size entry, and their weights */
	struct ssl_ctx_st *tls_ctx; /* --starttls: the client context the threads share */
	unsigned nthreads;
	uint64_t t0_ns;		     /* start of the run; set before the threads start */
	uint64_t warmup_ns;	     /* results before t0 + warmup are discarded */
	uint64_t duration_ns;	     /* 0: --messages mode */
	uint64_t timeout_ns;	     /* per reply */
	uint64_t busy_poll_ns;	     /* poll before sleeping after a busy turn */
	atomic_bool stop;	     /* set by a signal: start nothing new, finish what is open */
	atomic_bool note_pipelining; /* some server did not offer what was asked */
	atomic_bool note_chunking;
};

/* Totals of one thread (or of all, after bench_client_stats_add). */
struct bench_stats {
	uint64_t sent;		 /* transactions started in the measured window */
	uint64_t accepted;	 /* ... that got 250 after the message */
	uint64_t rejected_total; /* ... that ended with another reply code */
	uint64_t errored;	 /* ... cut by a connection error, timeout or unparseable reply */
	uint64_t rejected[BENCH_CODE_MAX]; /* rejected by code */
	uint64_t rcpts_rejected;	   /* single RCPT replies that were not 250/251 */
	uint64_t bytes_accepted;	   /* message bytes of accepted messages */
	uint64_t connections;		   /* TCP connections established */
	uint64_t connect_errors;	   /* attempts that failed before the session was ready */
	uint64_t timeouts;		   /* replies not received within --timeout (any state) */
	uint64_t unsent;	 /* open loop: arrivals due before the end but never started */
	uint64_t tls_handshakes; /* --starttls: handshakes completed */
	uint64_t tls_failed;	 /* STARTTLS not offered, refused, or the handshake failed */
	uint64_t t_last_ns;	 /* end of the last measured transaction (0 if none) */
	int first_errno;	 /* first connect error, for the "cannot connect" message */
	int first_bad_greeting;	 /* first non-220 greeting / failed EHLO code */
	bool gave_up;		 /* a connection slot gave up: the server is unreachable */
	char tls_version[BENCH_CLIENT_TLS_TEXT_MAX]; /* of the first handshake: "TLSv1.3" */
	char tls_cipher[BENCH_CLIENT_TLS_TEXT_MAX];  /* "TLS_AES_256_GCM_SHA384" */
	char tls_error[BENCH_CLIENT_TLS_TEXT_MAX];   /* why the first TLS set-up failed */
};

/* Progress, published by the client thread with relaxed stores once per loop turn. */
struct bench_progress {
	uint64_t sent, accepted, rejected, errored;
};

uint64_t bench_client_now_ns(void);

int bench_client_plan_init(struct bench_plan *plan, const struct bench_opts *opts,
			   const struct sockaddr *addr, socklen_t addrlen, unsigned nthreads,
			   char *err, size_t errlen);
void bench_client_plan_free(struct bench_plan *plan);

/*
 * Client `index` of plan->nthreads with `nconns` connections. quota: measured messages to
 * start in --messages mode (ignored with --duration). rate: this thread's share of --rate.
 */
struct bench_client *bench_client_new(struct bench_plan *plan, unsigned index, unsigned nconns,
				      uint64_t quota, double rate, char *err, size_t errlen);
void bench_client_free(struct bench_client *c);

/* Thread entry point: runs until the work is done or every connection gave up. */
void *bench_client_run(void *client);

void bench_client_progress(const struct bench_client *c, struct bench_progress *out);
const struct bench_stats *bench_client_stats(const struct bench_client *c);
const struct hist *bench_client_hist_eod(const struct bench_client *c);
const struct hist *bench_client_hist_txn(const struct bench_client *c);

void bench_client_stats_add(struct bench_stats *dst, const struct bench_stats *src);

#endif
