/*
 * bench_client — the io_uring SMTP client engine of ringmx-bench; see bench_client.h.
 *
 * Every connection always has one receive in flight while its socket is open, and at most
 * one send: a send carries a whole pipelined group (the previous message and ".", then MAIL,
 * RCPT..., DATA; or MAIL, RCPT..., BDAT + message), or one command in lock-step. So a
 * connection has at most two transactions open: `fin`, whose message is written and whose
 * final reply comes next, and `cur`, whose commands are being answered. Replies are parsed in
 * place in the connection's receive buffer and drive a small state machine, one handler per
 * state. Nothing is allocated after bench_client_new() (but OpenSSL's state with
 * --starttls); connection slots are reused with a new generation on reconnect.
 *
 * With --starttls a connection's receives bring ciphertext into tls_in, which bench_tls
 * decrypts into rbuf for the same parser; a write's plaintext waits in tls_plain and is
 * encrypted one record at a time into tls_wire as the sends of the ciphertext complete, so
 * "one send in flight" and the send-before-reply check keep their meaning.
 */
#include "bench/bench_client.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_msg.h"
#include "bench/bench_reply.h"
#include "bench/bench_tls.h"
#include "server/assert.h"

#define SWEEP_INTERVAL_NS 100000000u /* timeouts and reconnects are checked this often */
#define BACKOFF_BASE_NS 50000000u    /* first reconnect delay after a failed attempt */
#define SQ_ENTRIES_MAX 32768u
#define CQ_ENTRIES_MAX (1u << 19)

enum conn_state {
	CONN_DOWN,	 /* no socket; reconnect at retry_ns */
	CONN_CONNECTING, /* connect in flight */
	CONN_GREETING,	 /* waiting for 220 */
	CONN_EHLO,
	CONN_HELO,	/* EHLO was refused; trying HELO */
	CONN_STARTTLS,	/* --starttls: waiting for 220 to STARTTLS */
	CONN_HANDSHAKE, /* TLS handshake; then EHLO again */
	CONN_READY,	/* session up, no transaction (open loop: maybe on the idle stack) */
	CONN_MAIL,	/* lock-step: waiting for the MAIL reply */
	CONN_RCPT,	/* lock-step: waiting for RCPT reply number rcpt_i */
	CONN_DATA,	/* lock-step: waiting for 354 */
	CONN_PIPE,	/* pipelined: waiting for the replies to MAIL, RCPT..., DATA/BDAT */
	CONN_FINAL,	/* message sent: waiting for the final reply */
	CONN_DRAIN,	/* sent a lone "." after a 354 with no recipient; waiting for its reply */
	CONN_RSET,	/* transaction failed after MAIL was accepted; waiting for RSET's 250 */
	CONN_QUIT,	/* waiting for 221 */
	CONN_CLOSING,	/* cancelling what is in flight; the socket closes when nothing is */
	CONN_DONE,	/* no more work for this slot, or it gave up */
};

enum conn_op { OP_CONNECT = 1, OP_RECV, OP_SEND, OP_CANCEL };

enum txn_outcome { TXN_ACCEPTED, TXN_REJECTED, TXN_ERRORED };

enum conn_fail_kind { FAIL_IO, FAIL_TIMEOUT, FAIL_PROTOCOL, FAIL_SESSION };

#define STAMP_START 1u	 /* cur.t_start_ns */
#define STAMP_EOD 2u	 /* cur.t_eod_ns */
#define STAMP_FIN_EOD 4u /* fin.t_eod_ns */

/* What is measured of one transaction. */
struct txn {
	const struct bench_msg *msg;
	uint64_t t_start_ns; /* MAIL written, or the intended start (open loop) */
	uint64_t t_eod_ns;   /* the write with "." (or BDAT LAST) submitted */
	bool measured;	     /* started after the warm-up */
};

struct conn {
	int fd;
	uint32_t slot;
	uint32_t gen; /* bumped on every connect; completions of an older one are dropped */
	enum conn_state state;
	unsigned ops;	      /* bit (1 << enum conn_op) for each operation in flight */
	unsigned stamp;	      /* STAMP_* to take at the next submit */
	unsigned fail_streak; /* failed connection attempts in a row */
	unsigned idle_pos;    /* index in client->idle, or UINT32_MAX */
	bool cap_size, pipelining, chunking;
	bool reconnect;	  /* after closing: connect again if there is work */
	bool in_setup;	  /* connecting, greeting or EHLO: counted in client->nsetup */
	bool in_txn;	  /* cur is open: replies to its commands are due */
	bool fin_pending; /* fin's message is written: the next reply is its final reply */
	bool mail_ok;
	unsigned rcpt_i, rcpt_ok, pipe_i;
	int mail_code; /* MAIL's reply */
	int rcpt_code; /* first refused RCPT's code */
	uint64_t started_on_conn;
	uint64_t seq;
	uint64_t deadline_ns, retry_ns;
	struct txn cur; /* the open transaction */
	struct txn fin; /* the one before, waiting for its final reply (see txn_send_message) */
	struct msghdr mh;
	struct iovec iov[2];
	char *cbuf; /* commands of the current write */
	char *rbuf; /* received bytes not yet parsed (plaintext) */
	size_t rlen;
	struct bench_tls *tls;	   /* from the 220 to STARTTLS until the socket is closed */
	bool tls_done;		   /* handshake complete */
	unsigned tls_nplain;	   /* pieces of the current write not yet encrypted */
	struct iovec tls_plain[2]; /* ... what is left of them */
	char *tls_in;		   /* ciphertext received (BENCH_CLIENT_RBUF bytes) */
	char *tls_wire;		   /* ciphertext being sent (BENCH_CLIENT_TLS_WIRE bytes) */
	size_t tls_wire_len;
};

struct bench_client {
	unsigned last_seen; /* completions handled in the last turn (for --busy-poll) */
	struct bench_plan *plan;
	const struct bench_opts *o;
	unsigned index;
	struct io_uring ring;
	bool ring_ok;
	struct conn *conns;
	unsigned nconns;
	unsigned finished; /* slots in CONN_DONE */
	unsigned nsetup;   /* slots on their way to CONN_READY */
	char *bufmem;
	size_t cbuf_size;
	size_t conn_mem; /* bytes of bufmem per connection */
	uint32_t *idle;	 /* open loop: READY connections waiting for an arrival */
	unsigned nidle;
	uint32_t *stamps; /* connections with a STAMP_* pending */
	unsigned nstamps;
	uint64_t quota, started_measured, local_seq;
	double rate; /* this thread's arrivals per second; 0 = closed loop */
	uint64_t arr_t0_ns, arr_k;
	bool arr_started;
	uint64_t now_ns, warmup_end_ns, end_ns, next_sweep_ns;
	uint64_t rng;
	struct bench_stats st;
	struct hist *eod, *txn;
	_Atomic uint64_t pub_sent, pub_accepted, pub_rejected, pub_errored;
};

static void conn_connect(struct bench_client *c, struct conn *k);
static void conn_fail(struct bench_client *c, struct conn *k, enum conn_fail_kind kind, int err);
static void conn_fail_tls(struct bench_client *c, struct conn *k, enum conn_fail_kind kind,
			  const char *why);
static void conn_close(struct bench_client *c, struct conn *k, bool reconnect);
static void conn_next(struct bench_client *c, struct conn *k);

uint64_t
bench_client_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the plan ------------------------------------------------------------------------- */

int
bench_client_plan_init(struct bench_plan *plan, const struct bench_opts *opts,
		       const struct sockaddr *addr, socklen_t addrlen, unsigned nthreads, char *err,
		       size_t errlen)
{
	memset(plan, 0, sizeof(*plan));
	ASSERT(addrlen <= sizeof(plan->addr) && nthreads > 0 && opts->nsizes > 0);
	plan->opts = opts;
	memcpy(&plan->addr, addr, addrlen);
	plan->addrlen = addrlen;
	plan->nthreads = nthreads;
	plan->warmup_ns = (uint64_t)(opts->warmup_s * 1e9);
	plan->duration_ns = (uint64_t)(opts->duration_s * 1e9);
	plan->timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
	plan->busy_poll_ns = (uint64_t)opts->busy_poll_us * 1000;
	plan->msgs =
	    bench_msg_set_new(opts->sizes, opts->nsizes, (uint64_t)time(NULL), err, errlen);
	if (!plan->msgs)
		return -ENOMEM;
	if (opts->starttls && !(plan->tls_ctx = bench_tls_ctx_new(err, errlen))) {
		bench_client_plan_free(plan);
		return -ENOMEM;
	}
	return 0;
}

void
bench_client_plan_free(struct bench_plan *plan)
{
	bench_msg_set_free(plan->msgs);
	plan->msgs = NULL;
	bench_tls_ctx_free(plan->tls_ctx);
	plan->tls_ctx = NULL;
}

/* ---- client set-up -------------------------------------------------------------------- */

static unsigned
roundup_pow2(unsigned v)
{
	unsigned p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

static int
client_ring_init(struct bench_client *c)
{
	/* Per connection at most a receive, a send and a cancel are in flight. */
	unsigned want = c->nconns * 3 + 8;
	unsigned sq = roundup_pow2(want < SQ_ENTRIES_MAX ? want : SQ_ENTRIES_MAX);
	unsigned cq = roundup_pow2(want < CQ_ENTRIES_MAX ? want : CQ_ENTRIES_MAX);
	static const unsigned flag_sets[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	int rc = -EINVAL;

	if (cq < 2 * sq)
		cq = 2 * sq;
	/* Newest flags first: DEFER_TASKRUN runs completions only when we wait, in one batch. */
	for (unsigned i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {
		    .flags = flag_sets[i] | IORING_SETUP_CQSIZE,
		    .cq_entries = cq,
		};

		rc = io_uring_queue_init_params(sq, &c->ring, &p);
		if (rc == 0) {
			c->ring_ok = true;
			return 0;
		}
	}
	return rc;
}

struct bench_client *
bench_client_new(struct bench_plan *plan, unsigned index, unsigned nconns, uint64_t quota,
		 double rate, char *err, size_t errlen)
{
	struct bench_client *c = calloc(1, sizeof(*c));

	ASSERT(nconns > 0 && index < plan->nthreads);
	if (!c)
		goto oom;
	c->plan = plan;
	c->o = plan->opts;
	c->index = index;
	c->nconns = nconns;
	c->quota = quota;
	c->rate = rate;
	c->rng = 0x9e3779b97f4a7c15ull * (index + 1u);
	c->cbuf_size = bench_msg_cmd_size_max(c->o);
	c->conn_mem = c->cbuf_size + BENCH_CLIENT_RBUF;
	if (plan->tls_ctx)
		c->conn_mem += BENCH_CLIENT_RBUF + BENCH_CLIENT_TLS_WIRE;
	c->conns = calloc(nconns, sizeof(*c->conns));
	c->idle = calloc(nconns, sizeof(*c->idle));
	c->stamps = calloc(nconns, sizeof(*c->stamps));
	c->bufmem = malloc((size_t)nconns * c->conn_mem);
	c->eod = hist_new();
	c->txn = hist_new();
	if (!c->conns || !c->idle || !c->stamps || !c->bufmem || !c->eod || !c->txn)
		goto oom;
	for (unsigned i = 0; i < nconns; i++) {
		struct conn *k = &c->conns[i];
		char *mem = c->bufmem + (size_t)i * c->conn_mem;

		k->fd = -1;
		k->slot = i;
		k->idle_pos = UINT32_MAX;
		k->cbuf = mem;
		k->rbuf = mem + c->cbuf_size;
		if (plan->tls_ctx) {
			k->tls_in = k->rbuf + BENCH_CLIENT_RBUF;
			k->tls_wire = k->tls_in + BENCH_CLIENT_RBUF;
		}
		k->mh.msg_iov = k->iov;
	}
	return c;
oom:
	snprintf(err, errlen, "out of memory for %u connections", nconns);
	bench_client_free(c);
	return NULL;
}

void
bench_client_free(struct bench_client *c)
{
	if (!c)
		return;
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);
	for (unsigned i = 0; c->conns && i < c->nconns; i++) {
		if (c->conns[i].fd >= 0)
			close(c->conns[i].fd);
		bench_tls_free(c->conns[i].tls);
	}
	hist_free(c->eod);
	hist_free(c->txn);
	free(c->bufmem);
	free(c->stamps);
	free(c->idle);
	free(c->conns);
	free(c);
}

/* ---- submission helpers --------------------------------------------------------------- */

static inline uint64_t
op_data(enum conn_op op, const struct conn *k)
{
	return (uint64_t)op << 56 | (uint64_t)(k->gen & 0xffffffu) << 32 | k->slot;
}

static struct io_uring_sqe *
client_sqe(struct bench_client *c)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);

	if (!sqe) {
		/* The SQ is full (more connections than entries): push this batch out early. */
		io_uring_submit(&c->ring);
		sqe = io_uring_get_sqe(&c->ring);
	}
	ASSERT(sqe);
	return sqe;
}

static void
conn_expect(struct bench_client *c, struct conn *k, enum conn_state state)
{
	k->state = state;
	k->deadline_ns = c->now_ns + c->plan->timeout_ns;
}

/* One receive: plaintext into what is free of rbuf, or with TLS ciphertext into tls_in. */
static void
conn_recv(struct bench_client *c, struct conn *k)
{
	struct io_uring_sqe *sqe = client_sqe(c);

	ASSERT(!(k->ops & (1u << OP_RECV)) && k->rlen < BENCH_CLIENT_RBUF);
	if (k->tls)
		io_uring_prep_recv(sqe, k->fd, k->tls_in, BENCH_CLIENT_RBUF, 0);
	else
		io_uring_prep_recv(sqe, k->fd, k->rbuf + k->rlen, BENCH_CLIENT_RBUF - k->rlen, 0);
	/* Every byte so far is consumed and the next reply needs our next write: skip the
	 * attempt that would only say EAGAIN and wait for data straight away. */
	sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	io_uring_sqe_set_data64(sqe, op_data(OP_RECV, k));
	k->ops |= 1u << OP_RECV;
}

static void
conn_sendmsg(struct bench_client *c, struct conn *k)
{
	struct io_uring_sqe *sqe = client_sqe(c);

	/* MSG_WAITALL: the kernel retries short sends itself, so one write is one completion. */
	io_uring_prep_sendmsg(sqe, k->fd, &k->mh, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, op_data(OP_SEND, k));
	k->ops |= 1u << OP_SEND;
}

/*
 * Moves ciphertext into the empty wire buffer: first what OpenSSL holds (handshake records,
 * the rest of the last record), then the write's plaintext, encrypted one record at a time,
 * until the buffer is full or nothing is left. Returns 0, or -1 on a TLS error.
 */
static int
conn_tls_fill(struct conn *k)
{
	for (;;) {
		k->tls_wire_len += bench_tls_take(k->tls, k->tls_wire + k->tls_wire_len,
						  BENCH_CLIENT_TLS_WIRE - k->tls_wire_len);
		if (k->tls_wire_len == BENCH_CLIENT_TLS_WIRE || k->tls_nplain == 0)
			return 0;
		struct iovec *v = &k->tls_plain[0];
		size_t n = v->iov_len < BENCH_TLS_RECORD ? v->iov_len : BENCH_TLS_RECORD;

		if (bench_tls_write(k->tls, v->iov_base, n) < 0)
			return -1;
		v->iov_base = (char *)v->iov_base + n;
		v->iov_len -= n;
		if (v->iov_len == 0) {
			k->tls_plain[0] = k->tls_plain[1];
			k->tls_nplain--;
		}
	}
}

/* With no send in flight: sends the next wire buffer of ciphertext, if there is any. */
static void
conn_tls_flush(struct bench_client *c, struct conn *k)
{
	ASSERT(k->tls && !(k->ops & (1u << OP_SEND)));
	k->tls_wire_len = 0;
	if (conn_tls_fill(k) < 0) {
		conn_fail(c, k, FAIL_IO, 0);
		return;
	}
	if (k->tls_wire_len == 0)
		return;
	k->iov[0] = (struct iovec){.iov_base = k->tls_wire, .iov_len = k->tls_wire_len};
	k->mh.msg_iovlen = 1;
	conn_sendmsg(c, k);
}

/*
 * One write of a[0..alen) then b[0..blen) (b may be empty): commands in cbuf and message bytes
 * from the shared, read-only message, in either order. Fails the connection if the previous
 * write is still in flight: the server answered before it read all we sent, and cbuf cannot
 * be reused yet. With TLS, "in flight" is plaintext not yet encrypted; ciphertext already made
 * may still be on its way, and the new write follows it.
 */
static void
conn_send(struct bench_client *c, struct conn *k, const void *a, size_t alen, const void *b,
	  size_t blen)
{
	ASSERT(alen > 0);
	if (k->tls) {
		if (k->tls_nplain > 0) {
			conn_fail(c, k, FAIL_PROTOCOL, 0);
			return;
		}
		k->tls_plain[0] = (struct iovec){.iov_base = (void *)a, .iov_len = alen};
		k->tls_plain[1] = (struct iovec){.iov_base = (void *)b, .iov_len = blen};
		k->tls_nplain = blen ? 2 : 1;
		if (!(k->ops & (1u << OP_SEND)))
			conn_tls_flush(c, k);
		return;
	}
	if (k->ops & (1u << OP_SEND)) {
		conn_fail(c, k, FAIL_PROTOCOL, 0);
		return;
	}
	k->iov[0] = (struct iovec){.iov_base = (void *)a, .iov_len = alen};
	k->iov[1] = (struct iovec){.iov_base = (void *)b, .iov_len = blen};
	k->mh.msg_iovlen = blen ? 2 : 1;
	conn_sendmsg(c, k);
}

static void
conn_send_cmd(struct bench_client *c, struct conn *k, size_t len)
{
	ASSERT(len <= c->cbuf_size);
	conn_send(c, k, k->cbuf, len, NULL, 0);
}

static void
conn_send_str(struct bench_client *c, struct conn *k, const char *s)
{
	size_t len = strlen(s);

	memcpy(k->cbuf, s, len);
	conn_send_cmd(c, k, len);
}

/* Marks a time to be read right before the submit that carries this connection's write. */
static void
conn_stamp(struct bench_client *c, struct conn *k, unsigned what)
{
	if (!k->stamp)
		c->stamps[c->nstamps++] = k->slot;
	k->stamp |= what;
}

static void
client_apply_stamps(struct bench_client *c)
{
	if (!c->nstamps)
		return;
	uint64_t t = bench_client_now_ns();

	for (unsigned i = 0; i < c->nstamps; i++) {
		struct conn *k = &c->conns[c->stamps[i]];

		if (k->stamp & STAMP_START)
			k->cur.t_start_ns = t;
		if (k->stamp & STAMP_EOD)
			k->cur.t_eod_ns = t;
		if (k->stamp & STAMP_FIN_EOD)
			k->fin.t_eod_ns = t;
		k->stamp = 0;
	}
	c->nstamps = 0;
}

/* ---- work accounting ------------------------------------------------------------------ */

static uint64_t
client_arrival_ns(const struct bench_client *c, uint64_t k)
{
	return c->arr_t0_ns + (uint64_t)((double)k * 1e9 / c->rate);
}

/* Whether a new transaction may start now (closed loop) or at the next arrival (open loop). */
static bool
client_has_work(const struct bench_client *c)
{
	if (atomic_load_explicit(&c->plan->stop, memory_order_relaxed))
		return false;
	if (c->end_ns) {
		uint64_t t =
		    c->rate > 0 && c->arr_started ? client_arrival_ns(c, c->arr_k) : c->now_ns;
		return t < c->end_ns && c->now_ns < c->end_ns;
	}
	return c->started_measured < c->quota;
}

/*
 * Whether a closed connection should be replaced. With a message count, not when the
 * connections already on their way up (or idle) can take every message that is left: with
 * --per-conn 1 that would open connections only to QUIT them.
 */
static bool
client_needs_conn(const struct bench_client *c)
{
	if (!client_has_work(c))
		return false;
	if (c->end_ns)
		return true;
	return c->quota - c->started_measured > (uint64_t)c->nsetup + c->nidle;
}

/*
 * Whether a transaction may start now; *intended_ns is its intended start in the open loop
 * (an arrival that is due, which is then taken) and 0 in the closed loop.
 */
static bool
client_take_arrival(struct bench_client *c, uint64_t *intended_ns)
{
	if (!client_has_work(c))
		return false;
	*intended_ns = 0;
	if (c->rate <= 0)
		return true;
	uint64_t due = client_arrival_ns(c, c->arr_k);

	if (due > c->now_ns)
		return false;
	c->arr_k++;
	*intended_ns = due;
	return true;
}

static uint64_t
client_rand(struct bench_client *c)
{
	/* xorshift64*: a size pick per message, no shared state between threads. */
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * 0x2545f4914f6cdd1dull;
}

static const struct bench_msg *
client_pick_msg(struct bench_client *c)
{
	/* One size: no random number is needed (nor drawn). */
	return bench_msg_set_pick(c->plan->msgs, c->o->nsizes == 1 ? 0 : client_rand(c));
}

static void
idle_push(struct bench_client *c, struct conn *k)
{
	ASSERT(k->idle_pos == UINT32_MAX && c->nidle < c->nconns);
	k->idle_pos = c->nidle;
	c->idle[c->nidle++] = k->slot;
}

static void
idle_remove(struct bench_client *c, struct conn *k)
{
	if (k->idle_pos == UINT32_MAX)
		return;
	uint32_t last = c->idle[--c->nidle];

	c->idle[k->idle_pos] = last;
	c->conns[last].idle_pos = k->idle_pos;
	k->idle_pos = UINT32_MAX;
}

/* ---- transactions --------------------------------------------------------------------- */

/* The open transaction's command lines, written into out (see bench_msg.h). */
static size_t
cmd_mail(const struct bench_client *c, const struct conn *k, char *out)
{
	/* RFC 1870: declaring the size lets the server refuse early, as real clients do. */
	return bench_msg_put_mail(out, &c->o->from_pat, k->seq, k->cap_size ? k->cur.msg->len : 0);
}

static size_t
cmd_rcpt(const struct bench_client *c, const struct conn *k, unsigned r, char *out)
{
	return bench_msg_put_rcpt(out, &c->o->to_pat, k->seq, r + 1);
}

static size_t
cmd_bdat(const struct conn *k, char *out)
{
	return bench_msg_put_bdat(out, k->cur.msg->len);
}

/*
 * Opens the next transaction (cur) and writes its commands into cbuf: MAIL alone in lock-step;
 * with PIPELINING, MAIL, every RCPT and DATA, or BDAT whose chunk follows in the same write
 * (RFC 2920 3.1). intended_ns is 0 in the closed loop. Returns the length of the commands.
 */
static size_t
txn_begin(struct bench_client *c, struct conn *k, uint64_t intended_ns)
{
	struct txn *t = &k->cur;
	size_t n;

	ASSERT(!k->in_txn);
	t->measured = (intended_ns ? intended_ns : c->now_ns) >= c->warmup_end_ns;
	if (t->measured) {
		c->started_measured++;
		c->st.sent++;
	}
	k->in_txn = true;
	k->started_on_conn++;
	k->mail_ok = false;
	k->rcpt_i = k->rcpt_ok = k->pipe_i = 0;
	k->mail_code = k->rcpt_code = 0;
	t->msg = client_pick_msg(c);
	k->seq = (uint64_t)c->index + (uint64_t)c->plan->nthreads * c->local_seq++;
	if (intended_ns)
		t->t_start_ns = intended_ns;
	else
		conn_stamp(c, k, STAMP_START);
	n = cmd_mail(c, k, k->cbuf);
	if (!k->pipelining) {
		conn_expect(c, k, CONN_MAIL);
		return n;
	}
	for (unsigned r = 0; r < c->o->rcpts; r++)
		n += cmd_rcpt(c, k, r, k->cbuf + n);
	conn_expect(c, k, CONN_PIPE);
	if (k->chunking) {
		conn_stamp(c, k, STAMP_EOD);
		return n + cmd_bdat(k, k->cbuf + n);
	}
	memcpy(k->cbuf + n, "DATA\r\n", sizeof("DATA\r\n") - 1);
	return n + sizeof("DATA\r\n") - 1;
}

/* Starts a transaction on a READY connection. */
static void
txn_start(struct bench_client *c, struct conn *k, uint64_t intended_ns)
{
	ASSERT(k->state == CONN_READY);
	size_t n = txn_begin(c, k, intended_ns);

	if (k->pipelining && k->chunking)
		conn_send(c, k, k->cbuf, n, k->cur.msg->data, k->cur.msg->len);
	else
		conn_send(c, k, k->cbuf, n, NULL, 0);
}

/* Counts how t ended, if it is measured; latencies only for accepted messages. */
static void
txn_record(struct bench_client *c, const struct txn *t, enum txn_outcome outcome, int code)
{
	if (!t->measured)
		return;
	switch (outcome) {
	case TXN_ACCEPTED:
		c->st.accepted++;
		c->st.bytes_accepted += t->msg->len;
		hist_record(c->eod, c->now_ns > t->t_eod_ns ? c->now_ns - t->t_eod_ns : 0);
		hist_record(c->txn, c->now_ns > t->t_start_ns ? c->now_ns - t->t_start_ns : 0);
		break;
	case TXN_REJECTED:
		c->st.rejected_total++;
		c->st.rejected[code >= 0 && code < BENCH_CODE_MAX ? code : 0]++;
		break;
	case TXN_ERRORED:
		c->st.errored++;
		break;
	}
	if (c->now_ns > c->st.t_last_ns)
		c->st.t_last_ns = c->now_ns;
}

static void
cur_end(struct bench_client *c, struct conn *k, enum txn_outcome outcome, int code)
{
	ASSERT(k->in_txn);
	k->in_txn = false;
	txn_record(c, &k->cur, outcome, code);
}

static void
fin_end(struct bench_client *c, struct conn *k, enum txn_outcome outcome, int code)
{
	ASSERT(k->fin_pending);
	k->fin_pending = false;
	txn_record(c, &k->fin, outcome, code);
}

/*
 * After a refusal (already counted): a 4xx/5xx leaves the session usable, after RSET when the
 * server still holds an envelope (RFC 5321 4.1.1.5). 421 means the server is closing (RFC
 * 5321 3.8), and any other code that client and server no longer agree where the dialogue
 * is: then the connection is replaced.
 */
static void
conn_after_reject(struct bench_client *c, struct conn *k, int code, bool rset)
{
	if (code == 421 || code < 400 || code > 599) {
		conn_close(c, k, true);
	} else if (rset) {
		conn_expect(c, k, CONN_RSET);
		conn_send_str(c, k, "RSET\r\n");
	} else {
		conn_next(c, k);
	}
}

/* A reply refused the open transaction: it is counted under that code. */
static void
txn_reject(struct bench_client *c, struct conn *k, int code, bool rset)
{
	cur_end(c, k, TXN_REJECTED, code);
	conn_after_reject(c, k, code, rset);
}

/*
 * Writes the open transaction's message (after 354, or after the RCPTs with BDAT); it becomes
 * fin, whose final reply is the next reply to come. With PIPELINING and DATA, the next
 * transaction's MAIL, RCPTs and DATA go in the same write: RFC 2920 3.1 lets message content
 * be the first "command" of a group. That makes one round trip per message instead of two.
 * --pipelining-envelope stops at the "." (two round trips: the envelope group, the message).
 */
static void
txn_send_message(struct bench_client *c, struct conn *k)
{
	const struct bench_msg *m = k->cur.msg;
	uint64_t per_conn = c->o->per_conn, intended_ns;

	k->fin = k->cur;
	k->in_txn = false;
	k->fin_pending = true;
	conn_stamp(c, k, STAMP_FIN_EOD);
	if (k->chunking) {
		conn_expect(c, k, CONN_FINAL);
		conn_send(c, k, k->cbuf, cmd_bdat(k, k->cbuf), m->data, m->len);
		return;
	}
	if (k->pipelining && !c->o->pipelining_envelope &&
	    !(per_conn && k->started_on_conn >= per_conn) && client_take_arrival(c, &intended_ns)) {
		size_t n = txn_begin(c, k, intended_ns);

		conn_send(c, k, m->data, m->len + 3, k->cbuf, n); /* ".\r\n", then the next group */
		return;
	}
	conn_expect(c, k, CONN_FINAL);
	conn_send(c, k, m->data, m->len + 3, NULL, 0);
}

/* Counts one RCPT reply; true when it accepted the recipient. */
static bool
txn_rcpt_reply(struct bench_client *c, struct conn *k, int code)
{
	if (code == 250 || code == 251) { /* 251: "will forward", RFC 5321 3.4 */
		k->rcpt_ok++;
		return true;
	}
	if (k->cur.measured)
		c->st.rcpts_rejected++;
	if (!k->rcpt_code)
		k->rcpt_code = code;
	return false;
}

static void
conn_setup_end(struct bench_client *c, struct conn *k)
{
	if (k->in_setup) {
		k->in_setup = false;
		c->nsetup--;
	}
}

/* ---- reply handlers, one per state ---------------------------------------------------- */

static void
on_greeting(struct bench_client *c, struct conn *k, int code)
{
	size_t n;

	if (code != 220) {
		if (!c->st.first_bad_greeting)
			c->st.first_bad_greeting = code;
		conn_fail(c, k, FAIL_SESSION, 0);
		return;
	}
	n = bench_msg_put_ehlo(k->cbuf, c->o->helo);
	conn_expect(c, k, CONN_EHLO);
	conn_send_cmd(c, k, n);
}

/* The session is up: decide what this connection uses, then start work. */
static void
conn_session_ready(struct bench_client *c, struct conn *k, bool pipelining, bool chunking)
{
	const struct bench_opts *o = c->o;

	conn_setup_end(c, k);
	k->fail_streak = 0;
	k->started_on_conn = 0;
	k->pipelining = o->pipelining && pipelining;
	k->chunking = o->chunking && chunking;
	if (o->pipelining && !pipelining)
		atomic_store_explicit(&c->plan->note_pipelining, true, memory_order_relaxed);
	if (o->chunking && !chunking)
		atomic_store_explicit(&c->plan->note_chunking, true, memory_order_relaxed);
	if (!c->arr_started) {
		/* Open loop: arrivals start once a connection can take them, not at connect. */
		c->arr_started = true;
		c->arr_t0_ns = c->now_ns;
	}
	k->state = CONN_READY;
	conn_next(c, k);
}

/* EHLO reply (RFC 5321 4.1.1.1): the first line greets, each further line names a keyword. */
static void
on_ehlo(struct bench_client *c, struct conn *k, const struct bench_reply *r)
{
	unsigned caps;
	char why[64];

	if (r->code != 250) {
		if (r->code < 500) {
			conn_fail(c, k, FAIL_SESSION, 0);
			return;
		}
		if (c->plan->tls_ctx && !k->tls) {
			/* HELO has no extensions: no STARTTLS, and no plaintext instead of it */
			snprintf(why, sizeof(why), "EHLO refused (reply %d): no STARTTLS", r->code);
			conn_fail_tls(c, k, FAIL_SESSION, why);
			return;
		}
		/* RFC 5321 3.2: a server that does not know EHLO gets HELO. */
		size_t n = bench_msg_put_helo(k->cbuf, c->o->helo);

		conn_expect(c, k, CONN_HELO);
		conn_send_cmd(c, k, n);
		return;
	}
	caps = bench_reply_ehlo_caps(r);
	if (c->plan->tls_ctx && !k->tls) {
		/* --starttls asks for TLS, so a server without it gets no plaintext mail */
		if (!(caps & BENCH_REPLY_CAP_STARTTLS)) {
			conn_fail_tls(c, k, FAIL_SESSION, "the server does not offer STARTTLS");
			return;
		}
		conn_expect(c, k, CONN_STARTTLS);
		conn_send_str(c, k, "STARTTLS\r\n");
		return;
	}
	/* RFC 3207 4.2: what the EHLO before STARTTLS said is forgotten; this reply counts */
	k->cap_size = caps & BENCH_REPLY_CAP_SIZE;
	conn_session_ready(c, k, caps & BENCH_REPLY_CAP_PIPELINING,
			   caps & BENCH_REPLY_CAP_CHUNKING);
}

/*
 * The 220 to STARTTLS: the TLS session starts and the ClientHello goes out. Nothing the
 * server sent after the 220 in the clear may be used (RFC 3207 5; conn_parse checks).
 */
static void
on_starttls(struct bench_client *c, struct conn *k, int code)
{
	char why[64];

	if (code != 220) {
		snprintf(why, sizeof(why), "STARTTLS refused (reply %d)", code);
		conn_fail_tls(c, k, FAIL_SESSION, why);
		return;
	}
	ASSERT(!k->tls && !k->tls_done && k->tls_nplain == 0);
	k->tls = bench_tls_new(c->plan->tls_ctx, c->o->host);
	if (!k->tls) {
		conn_fail_tls(c, k, FAIL_SESSION, "out of memory for a TLS session");
		return;
	}
	conn_expect(c, k, CONN_HANDSHAKE);
	if (bench_tls_handshake(k->tls) < 0) {
		conn_fail_tls(c, k, FAIL_SESSION, bench_tls_error(k->tls));
		return;
	}
	if (!(k->ops & (1u << OP_SEND)))
		conn_tls_flush(c, k);
}

static void
on_helo(struct bench_client *c, struct conn *k, int code)
{
	if (code != 250) {
		conn_fail(c, k, FAIL_SESSION, 0);
		return;
	}
	k->cap_size = false;
	conn_session_ready(c, k, false, false);
}

static void
on_mail(struct bench_client *c, struct conn *k, int code)
{
	k->mail_code = code;
	if (code != 250) {
		txn_reject(c, k, code, false);
		return;
	}
	k->mail_ok = true;
	conn_expect(c, k, CONN_RCPT);
	conn_send_cmd(c, k, cmd_rcpt(c, k, 0, k->cbuf));
}

static void
on_rcpt(struct bench_client *c, struct conn *k, int code)
{
	txn_rcpt_reply(c, k, code);
	if (++k->rcpt_i < c->o->rcpts) {
		conn_expect(c, k, CONN_RCPT);
		conn_send_cmd(c, k, cmd_rcpt(c, k, k->rcpt_i, k->cbuf));
		return;
	}
	if (k->rcpt_ok == 0) {
		txn_reject(c, k, k->rcpt_code, true);
		return;
	}
	if (k->chunking) {
		txn_send_message(c, k);
		return;
	}
	conn_expect(c, k, CONN_DATA);
	conn_send_str(c, k, "DATA\r\n");
}

static void
on_data(struct bench_client *c, struct conn *k, int code)
{
	if (code != 354) {
		txn_reject(c, k, code, true);
		return;
	}
	txn_send_message(c, k);
}

/* The last reply of a pipelined group: to DATA, or to BDAT LAST (then it is the final one). */
static void
on_pipe_last(struct bench_client *c, struct conn *k, int code)
{
	bool envelope_ok = k->mail_ok && k->rcpt_ok > 0;
	int why = !k->mail_ok ? k->mail_code : k->rcpt_ok == 0 ? k->rcpt_code : code;

	if (k->chunking) {
		if (envelope_ok && code == 250) {
			cur_end(c, k, TXN_ACCEPTED, code);
			conn_next(c, k);
		} else {
			txn_reject(c, k, why, k->mail_ok);
		}
		return;
	}
	if (code == 354 && envelope_ok) {
		txn_send_message(c, k);
	} else if (code == 354) {
		/* RFC 2920 3.1: after 354 the only way out is to end the (empty) message. */
		cur_end(c, k, TXN_REJECTED, why);
		conn_expect(c, k, CONN_DRAIN);
		conn_send_str(c, k, ".\r\n");
	} else {
		txn_reject(c, k, why, k->mail_ok);
	}
}

static void
on_pipe(struct bench_client *c, struct conn *k, int code)
{
	unsigned i = k->pipe_i++;

	if (i == 0) {
		k->mail_code = code;
		k->mail_ok = code == 250;
	} else if (i <= c->o->rcpts) {
		if (k->mail_ok)
			txn_rcpt_reply(c, k, code);
	} else {
		on_pipe_last(c, k, code);
		return;
	}
	conn_expect(c, k, CONN_PIPE);
}

/*
 * The final reply to fin's message. Alone (CONN_FINAL) it ends this turn of the dialogue; with
 * the next transaction pipelined behind it (CONN_PIPE) that transaction's replies follow.
 */
static void
on_fin(struct bench_client *c, struct conn *k, int code)
{
	fin_end(c, k, code == 250 ? TXN_ACCEPTED : TXN_REJECTED, code);
	if (k->state == CONN_FINAL) {
		if (code == 250)
			conn_next(c, k);
		else /* after DATA's final reply no envelope is left; after BDAT's there is */
			conn_after_reject(c, k, code, k->chunking);
		return;
	}
	ASSERT(k->state == CONN_PIPE && k->in_txn);
	if (code == 421)
		conn_fail(c, k, FAIL_IO, 0); /* closing: the open transaction gets no replies */
	else if (code != 250 && (code < 400 || code > 599))
		conn_fail(c, k, FAIL_PROTOCOL, 0);
	else
		conn_expect(c, k, CONN_PIPE);
}

static void
on_rset(struct bench_client *c, struct conn *k, int code)
{
	if (code == 250)
		conn_next(c, k);
	else
		conn_close(c, k, true);
}

/* A reply nobody asked for: 421 is the server closing (RFC 5321 3.8), anything else desync. */
static void
on_unsolicited(struct bench_client *c, struct conn *k, int code)
{
	if (code == 421)
		conn_close(c, k, true);
	else
		conn_fail(c, k, FAIL_PROTOCOL, 0);
}

static void
conn_on_reply(struct bench_client *c, struct conn *k, const struct bench_reply *r)
{
	int code = r->code;

	if (k->fin_pending) {
		on_fin(c, k, code);
		return;
	}
	if (code == 421 && k->in_txn) {
		txn_reject(c, k, code, false); /* counted as refused, then the connection closes */
		return;
	}
	switch (k->state) {
	case CONN_GREETING:
		on_greeting(c, k, code);
		break;
	case CONN_EHLO:
		on_ehlo(c, k, r);
		break;
	case CONN_HELO:
		on_helo(c, k, code);
		break;
	case CONN_STARTTLS:
		on_starttls(c, k, code);
		break;
	case CONN_MAIL:
		on_mail(c, k, code);
		break;
	case CONN_RCPT:
		on_rcpt(c, k, code);
		break;
	case CONN_DATA:
		on_data(c, k, code);
		break;
	case CONN_PIPE:
		on_pipe(c, k, code);
		break;
	case CONN_DRAIN: /* the reply to the lone "."; the transaction was counted before */
		conn_next(c, k);
		break;
	case CONN_RSET:
		on_rset(c, k, code);
		break;
	case CONN_QUIT:
		conn_close(c, k, k->reconnect);
		break;
	case CONN_READY:
		on_unsolicited(c, k, code);
		break;
	default: /* CONN_FINAL always has fin_pending; CONN_HANDSHAKE parses no replies */
		ASSERT(!"reply in a state that expects none");
	}
}

/* ---- replies -------------------------------------------------------------------------- */

static bool
conn_in_session(const struct conn *k)
{
	return k->state >= CONN_GREETING && k->state <= CONN_QUIT;
}

/*
 * Handles every complete reply in rbuf. Returns true when the connection goes on and wants
 * its next receive, false when it was closed (the rest of the buffer is stale then).
 */
static bool
conn_parse(struct bench_client *c, struct conn *k)
{
	uint32_t gen = k->gen;
	bool was_tls = k->tls != NULL;
	size_t off = 0;

	while (off < k->rlen) {
		struct bench_reply r;
		long n = bench_reply_parse(k->rbuf + off, k->rlen - off, &r);

		if (n == BENCH_REPLY_NEED_MORE)
			break;
		if (n == BENCH_REPLY_ERROR) {
			conn_fail(c, k, FAIL_PROTOCOL, 0);
			return false;
		}
		conn_on_reply(c, k, &r);
		off += (size_t)n;
		if (k->gen != gen || !conn_in_session(k))
			return false; /* closed (and maybe reconnected) */
		if (k->tls && !was_tls) {
			/* RFC 3207 5: plaintext after the 220 is an injection, never a reply */
			if (off != k->rlen) {
				conn_fail_tls(c, k, FAIL_PROTOCOL,
					      "the server sent more after its 220 to STARTTLS");
				return false;
			}
			k->rlen = 0;
			return true;
		}
	}
	if (off) {
		memmove(k->rbuf, k->rbuf + off, k->rlen - off);
		k->rlen -= off;
	}
	if (k->rlen == BENCH_CLIENT_RBUF) {
		conn_fail(c, k, FAIL_PROTOCOL, 0); /* one reply larger than the buffer */
		return false;
	}
	return true;
}

/* End of the stream (a FIN, or TLS close_notify): expected after QUIT, tolerated between
 * transactions, an error otherwise. */
static void
conn_on_eof(struct bench_client *c, struct conn *k)
{
	if (k->state == CONN_QUIT)
		conn_close(c, k, k->reconnect);
	else if (k->state == CONN_READY)
		conn_close(c, k, true);
	else
		conn_fail(c, k, FAIL_IO, 0);
}

/*
 * TLS: decrypts what has come into rbuf and handles the replies, as long as there is some,
 * sends what OpenSSL wants to send by itself (a KeyUpdate answer), then receives again.
 */
static void
conn_tls_read(struct bench_client *c, struct conn *k)
{
	uint32_t gen = k->gen;

	for (;;) {
		ASSERT(k->rlen < BENCH_CLIENT_RBUF);
		ssize_t n = bench_tls_read(k->tls, k->rbuf + k->rlen, BENCH_CLIENT_RBUF - k->rlen);

		if (n == BENCH_TLS_CLOSED) {
			conn_on_eof(c, k);
			return;
		}
		if (n < 0) {
			conn_fail(c, k, FAIL_IO, 0);
			return;
		}
		if (n == 0)
			break;
		k->rlen += (size_t)n;
		if (!conn_parse(c, k))
			return;
	}
	if (bench_tls_pending(k->tls) > 0 && !(k->ops & (1u << OP_SEND)))
		conn_tls_flush(c, k);
	if (k->gen == gen && conn_in_session(k))
		conn_recv(c, k);
}

/* The handshake is complete: note what was negotiated, then EHLO again (RFC 3207 4.2). */
static void
conn_tls_ready(struct bench_client *c, struct conn *k)
{
	k->tls_done = true;
	c->st.tls_handshakes++;
	if (!c->st.tls_version[0]) {
		snprintf(c->st.tls_version, sizeof(c->st.tls_version), "%s",
			 bench_tls_version(k->tls));
		snprintf(c->st.tls_cipher, sizeof(c->st.tls_cipher), "%s",
			 bench_tls_cipher(k->tls));
	}
	conn_expect(c, k, CONN_EHLO);
	conn_send_cmd(c, k, bench_msg_put_ehlo(k->cbuf, c->o->helo));
}

/* TLS: n bytes of ciphertext arrived in tls_in. */
static void
conn_tls_on_data(struct bench_client *c, struct conn *k, size_t n)
{
	uint32_t gen = k->gen;

	if (bench_tls_feed(k->tls, k->tls_in, n) < 0) {
		conn_fail(c, k, FAIL_IO, 0);
		return;
	}
	if (k->tls_done) {
		conn_tls_read(c, k);
		return;
	}
	int r = bench_tls_handshake(k->tls);

	if (r < 0) {
		conn_fail_tls(c, k, FAIL_SESSION, bench_tls_error(k->tls));
		return;
	}
	if (!(k->ops & (1u << OP_SEND)))
		conn_tls_flush(c, k); /* our next flight, if any */
	if (k->gen != gen || !conn_in_session(k))
		return;
	if (r == 0) {
		conn_expect(c, k, CONN_HANDSHAKE);
		conn_recv(c, k);
		return;
	}
	conn_tls_ready(c, k);
	if (k->gen == gen && conn_in_session(k))
		conn_tls_read(c, k); /* records that came with the server's last flight */
}

/* ---- connection life ------------------------------------------------------------------ */

static void
conn_set_done(struct bench_client *c, struct conn *k)
{
	k->state = CONN_DONE;
	k->deadline_ns = 0;
	c->finished++;
}

static void
conn_connect(struct bench_client *c, struct conn *k)
{
	const struct bench_plan *p = c->plan;
	int one = 1;
	int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);

	k->gen++;
	ASSERT(k->tls == NULL && k->tls_nplain == 0);
	if (fd < 0) {
		k->state = CONN_CONNECTING; /* so that the failure counts as a connect error */
		conn_fail(c, k, FAIL_IO, errno);
		return;
	}
	/* Lock-step commands are small writes that must leave at once (no Nagle delay). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	k->fd = fd;
	k->in_setup = true;
	c->nsetup++;
	k->ops = 0;
	k->rlen = 0;
	k->in_txn = false;
	k->fin_pending = false;
	conn_expect(c, k, CONN_CONNECTING);

	struct io_uring_sqe *sqe = client_sqe(c);

	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&p->addr, p->addrlen);
	io_uring_sqe_set_data64(sqe, op_data(OP_CONNECT, k));
	k->ops |= 1u << OP_CONNECT;
}

/* The socket is closed and nothing is in flight: connect again, later, or never. */
static void
conn_closed(struct bench_client *c, struct conn *k)
{
	ASSERT(k->ops == 0);
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
	bench_tls_free(k->tls); /* nothing in flight reads tls_wire any more */
	k->tls = NULL;
	k->tls_done = false;
	k->tls_nplain = 0;
	k->tls_wire_len = 0;
	if (k->fail_streak >= BENCH_CLIENT_CONNECT_TRIES) {
		c->st.gave_up = true;
		conn_set_done(c, k);
	} else if (!k->reconnect || !client_needs_conn(c)) {
		conn_set_done(c, k);
	} else if (k->fail_streak == 0) {
		conn_connect(c, k);
	} else {
		k->state = CONN_DOWN;
		k->deadline_ns = 0;
		k->retry_ns = c->now_ns + ((uint64_t)BACKOFF_BASE_NS << (k->fail_streak - 1));
	}
}

static void
conn_close(struct bench_client *c, struct conn *k, bool reconnect)
{
	idle_remove(c, k);
	conn_setup_end(c, k);
	k->reconnect = reconnect;
	k->deadline_ns = 0;
	k->state = CONN_CLOSING;
	if (k->ops == 0) {
		conn_closed(c, k);
		return;
	}
	struct io_uring_sqe *sqe = client_sqe(c);

	io_uring_prep_cancel_fd(sqe, k->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, op_data(OP_CANCEL, k));
}

/* A STARTTLS set-up that did not come up: counted, and the first reason kept for the report. */
static void
tls_note_failure(struct bench_client *c, const char *why)
{
	c->st.tls_failed++;
	if (!c->st.tls_error[0])
		snprintf(c->st.tls_error, sizeof(c->st.tls_error), "%s", why);
}

/* Why a connection failed while waiting for the 220 to STARTTLS or in the handshake. */
static const char *
tls_failure_reason(const struct conn *k, enum conn_fail_kind kind)
{
	bool hs = k->state == CONN_HANDSHAKE;

	switch (kind) {
	case FAIL_TIMEOUT:
		return hs ? "the TLS handshake timed out (--timeout)"
			  : "no reply to STARTTLS within --timeout";
	case FAIL_IO:
		return hs ? "the connection broke during the TLS handshake"
			  : "the connection broke after STARTTLS";
	default:
		return hs ? "the TLS handshake failed" : "unparseable reply to STARTTLS";
	}
}

static void
conn_fail_now(struct bench_client *c, struct conn *k, enum conn_fail_kind kind, int err)
{
	if (kind == FAIL_TIMEOUT)
		c->st.timeouts++;
	if (k->fin_pending)
		fin_end(c, k, TXN_ERRORED, 0);
	if (k->in_txn) {
		cur_end(c, k, TXN_ERRORED, 0);
	} else if (k->state < CONN_READY) {
		c->st.connect_errors++;
		k->fail_streak++;
		if (err && !c->st.first_errno)
			c->st.first_errno = err;
	}
	conn_close(c, k, true);
}

/* A failure while TLS was coming up (STARTTLS not offered, refused, a handshake error):
 * counted as a failed connection attempt and as a TLS failure, for the reason why. */
static void
conn_fail_tls(struct bench_client *c, struct conn *k, enum conn_fail_kind kind, const char *why)
{
	ASSERT(k->state < CONN_READY);
	tls_note_failure(c, why);
	conn_fail_now(c, k, kind, 0);
}

/* A failure of kind `kind`: the open transactions err, the connection is replaced. */
static void
conn_fail(struct bench_client *c, struct conn *k, enum conn_fail_kind kind, int err)
{
	if (k->state == CONN_STARTTLS || k->state == CONN_HANDSHAKE)
		tls_note_failure(c, tls_failure_reason(k, kind));
	conn_fail_now(c, k, kind, err);
}

static void
conn_quit(struct bench_client *c, struct conn *k, bool reconnect)
{
	k->reconnect = reconnect;
	conn_expect(c, k, CONN_QUIT);
	conn_send_str(c, k, "QUIT\r\n");
}

/* The connection is READY: start the next transaction, wait for an arrival, or leave. */
static void
conn_next(struct bench_client *c, struct conn *k)
{
	uint64_t per_conn = c->o->per_conn, intended_ns;

	ASSERT(!k->in_txn && !k->fin_pending);
	k->state = CONN_READY;
	k->deadline_ns = 0;
	if (!client_has_work(c))
		conn_quit(c, k, false);
	else if (per_conn && k->started_on_conn >= per_conn)
		conn_quit(c, k, true);
	else if (client_take_arrival(c, &intended_ns))
		txn_start(c, k, intended_ns);
	else
		idle_push(c, k); /* open loop: client_dispatch() hands out the next arrival */
}

/* ---- completions ---------------------------------------------------------------------- */

static void
on_connect_done(struct bench_client *c, struct conn *k, int res)
{
	if (res < 0) {
		conn_fail(c, k, FAIL_IO, -res);
		return;
	}
	c->st.connections++;
	conn_expect(c, k, CONN_GREETING);
	conn_recv(c, k);
}

static void
on_send_done(struct bench_client *c, struct conn *k, int res)
{
	size_t want = 0;

	for (size_t i = 0; i < k->mh.msg_iovlen; i++)
		want += k->iov[i].iov_len;
	if (res < 0) {
		conn_fail(c, k, FAIL_IO, 0);
		return;
	}
	if ((size_t)res >= want) {
		if (k->tls)
			conn_tls_flush(c, k); /* the rest of the write, or what OpenSSL queued */
		return;
	}
	/* Short write despite MSG_WAITALL (a signal, a full buffer): send the rest. */
	size_t done = (size_t)res;

	while (done >= k->iov[0].iov_len) {
		done -= k->iov[0].iov_len;
		k->iov[0] = k->iov[1];
		k->mh.msg_iovlen--;
	}
	k->iov[0].iov_base = (char *)k->iov[0].iov_base + done;
	k->iov[0].iov_len -= done;
	conn_sendmsg(c, k);
}

static void
on_recv_done(struct bench_client *c, struct conn *k, int res)
{
	if (res < 0) {
		conn_fail(c, k, FAIL_IO, 0);
	} else if (res == 0) {
		conn_on_eof(c, k);
	} else if (k->tls) {
		conn_tls_on_data(c, k, (size_t)res);
	} else {
		k->rlen += (size_t)res;
		if (conn_parse(c, k))
			conn_recv(c, k);
	}
}

static void
client_on_cqe(struct bench_client *c, const struct io_uring_cqe *cqe)
{
	uint64_t d = io_uring_cqe_get_data64(cqe);
	enum conn_op op = (enum conn_op)(d >> 56);
	uint32_t slot = (uint32_t)d, gen = (uint32_t)(d >> 32) & 0xffffffu;
	struct conn *k;

	if (op == OP_CANCEL)
		return; /* its targets complete on their own */
	ASSERT(slot < c->nconns);
	k = &c->conns[slot];
	if ((k->gen & 0xffffffu) != gen)
		return; /* for a connection that is gone */
	k->ops &= ~(1u << op);
	if (k->state == CONN_CLOSING) {
		if (k->ops == 0)
			conn_closed(c, k);
		return;
	}
	switch (op) {
	case OP_CONNECT:
		on_connect_done(c, k, cqe->res);
		break;
	case OP_SEND:
		on_send_done(c, k, cqe->res);
		break;
	case OP_RECV:
		on_recv_done(c, k, cqe->res);
		break;
	default:
		ASSERT(!"unknown operation in user_data");
	}
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Open loop: give every arrival that is due to an idle connection. */
static void
client_dispatch(struct bench_client *c)
{
	while (c->nidle > 0) {
		struct conn *k = &c->conns[c->idle[c->nidle - 1]];

		uint64_t intended_ns;

		if (!client_has_work(c)) {
			idle_remove(c, k);
			conn_quit(c, k, false);
			continue;
		}
		if (!client_take_arrival(c, &intended_ns))
			break;
		idle_remove(c, k);
		txn_start(c, k, intended_ns);
	}
}

/* Timeouts, delayed reconnects, and slots that have nothing left to do. */
static void
client_sweep(struct bench_client *c)
{
	bool work = client_has_work(c);

	for (unsigned i = 0; i < c->nconns; i++) {
		struct conn *k = &c->conns[i];

		if (k->deadline_ns && c->now_ns >= k->deadline_ns) {
			if (k->state == CONN_QUIT)
				conn_close(c, k, k->reconnect); /* not worth an error */
			else
				conn_fail(c, k, FAIL_TIMEOUT, ETIMEDOUT);
		} else if (k->state == CONN_DOWN && !work) {
			conn_set_done(c, k);
		} else if (k->state == CONN_DOWN && c->now_ns >= k->retry_ns) {
			conn_connect(c, k);
		}
	}
	c->next_sweep_ns = c->now_ns + SWEEP_INTERVAL_NS;
}

static uint64_t
client_wait_ns(const struct bench_client *c)
{
	uint64_t until = c->next_sweep_ns;

	if (c->rate > 0 && c->nidle > 0 && client_has_work(c)) {
		uint64_t due = client_arrival_ns(c, c->arr_k);

		if (due < until)
			until = due;
	}
	if (c->end_ns && c->end_ns > c->now_ns && c->end_ns < until)
		until = c->end_ns;
	return until > c->now_ns ? until - c->now_ns : 0;
}

static void
client_publish(struct bench_client *c)
{
	atomic_store_explicit(&c->pub_sent, c->st.sent, memory_order_relaxed);
	atomic_store_explicit(&c->pub_accepted, c->st.accepted, memory_order_relaxed);
	atomic_store_explicit(&c->pub_rejected, c->st.rejected_total, memory_order_relaxed);
	atomic_store_explicit(&c->pub_errored, c->st.errored, memory_order_relaxed);
}

/* One turn: due work, one submit-and-wait, then every completion that is there. */
static int
client_turn(struct bench_client *c)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int rc;

	c->now_ns = bench_client_now_ns();
	if (c->rate > 0)
		client_dispatch(c);
	if (c->now_ns >= c->next_sweep_ns)
		client_sweep(c);
	uint64_t wait_ns = client_wait_ns(c);

	client_apply_stamps(c);
	if (wait_ns > 0 && c->plan->busy_poll_ns > 0 && c->last_seen > 0) {
		/* On a VM a sleeping vCPU is slow to wake: poll a little first (--busy-poll). */
		uint64_t until = c->now_ns + c->plan->busy_poll_ns;
		io_uring_submit_and_get_events(&c->ring);
		while (io_uring_cq_ready(&c->ring) == 0 && bench_client_now_ns() < until)
			io_uring_get_events(&c->ring);
		if (io_uring_cq_ready(&c->ring) > 0)
			wait_ns = 0;
	}
	if (wait_ns == 0) {
		rc = io_uring_submit_and_get_events(&c->ring);
	} else {
		struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ns / 1000000000u),
					       .tv_nsec = (long long)(wait_ns % 1000000000u)};

		rc = io_uring_submit_and_wait_timeout(&c->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	c->now_ns = bench_client_now_ns();
	io_uring_for_each_cqe(&c->ring, head, cqe)
	{
		client_on_cqe(c, cqe);
		seen++;
	}
	io_uring_cq_advance(&c->ring, seen);
	c->last_seen = seen;
	client_publish(c);
	return 0;
}

/* Open loop, --duration: arrivals that were due before the end but never started. */
static void
client_count_unsent(struct bench_client *c)
{
	if (c->rate <= 0 || !c->end_ns || !c->arr_started ||
	    atomic_load_explicit(&c->plan->stop, memory_order_relaxed))
		return;
	double from =
	    (double)(c->warmup_end_ns > c->arr_t0_ns ? c->warmup_end_ns - c->arr_t0_ns : 0);
	double to = (double)(c->end_ns - c->arr_t0_ns);
	uint64_t first = (uint64_t)(from * c->rate / 1e9);
	uint64_t last = (uint64_t)(to * c->rate / 1e9); /* arrivals [first, last) are measured */
	uint64_t started = c->arr_k > first ? c->arr_k : first;

	c->st.unsent = last > started ? last - started : 0;
}

void *
bench_client_run(void *arg)
{
	struct bench_client *c = arg;
	const struct bench_plan *p = c->plan;
	int rc = client_ring_init(c);

	if (rc < 0) {
		fprintf(stderr, "ringmx-bench: io_uring_queue_init: %s\n", strerror(-rc));
		c->st.first_errno = -rc;
		return NULL;
	}
	c->now_ns = bench_client_now_ns();
	c->warmup_end_ns = p->t0_ns + p->warmup_ns;
	c->end_ns = p->duration_ns ? c->warmup_end_ns + p->duration_ns : 0;
	c->next_sweep_ns = c->now_ns + SWEEP_INTERVAL_NS;
	/* With fewer messages than connections, the spare slots are never opened. */
	for (unsigned i = 0; i < c->nconns; i++) {
		if (p->duration_ns || i < c->quota)
			conn_connect(c, &c->conns[i]);
		else
			conn_set_done(c, &c->conns[i]);
	}
	while (c->finished < c->nconns) {
		rc = client_turn(c);
		if (rc < 0) {
			fprintf(stderr, "ringmx-bench: io_uring_submit: %s\n", strerror(-rc));
			break;
		}
	}
	client_count_unsent(c);
	client_publish(c);
	return NULL;
}

/* ---- results -------------------------------------------------------------------------- */

void
bench_client_progress(const struct bench_client *c, struct bench_progress *out)
{
	out->sent = atomic_load_explicit(&c->pub_sent, memory_order_relaxed);
	out->accepted = atomic_load_explicit(&c->pub_accepted, memory_order_relaxed);
	out->rejected = atomic_load_explicit(&c->pub_rejected, memory_order_relaxed);
	out->errored = atomic_load_explicit(&c->pub_errored, memory_order_relaxed);
}

const struct bench_stats *
bench_client_stats(const struct bench_client *c)
{
	return &c->st;
}

const struct hist *
bench_client_hist_eod(const struct bench_client *c)
{
	return c->eod;
}

const struct hist *
bench_client_hist_txn(const struct bench_client *c)
{
	return c->txn;
}

void
bench_client_stats_add(struct bench_stats *dst, const struct bench_stats *src)
{
	dst->sent += src->sent;
	dst->accepted += src->accepted;
	dst->rejected_total += src->rejected_total;
	dst->errored += src->errored;
	for (unsigned i = 0; i < BENCH_CODE_MAX; i++)
		dst->rejected[i] += src->rejected[i];
	dst->rcpts_rejected += src->rcpts_rejected;
	dst->bytes_accepted += src->bytes_accepted;
	dst->connections += src->connections;
	dst->connect_errors += src->connect_errors;
	dst->timeouts += src->timeouts;
	dst->unsent += src->unsent;
	dst->tls_handshakes += src->tls_handshakes;
	dst->tls_failed += src->tls_failed;
	if (!dst->tls_version[0]) {
		memcpy(dst->tls_version, src->tls_version, sizeof(dst->tls_version));
		memcpy(dst->tls_cipher, src->tls_cipher, sizeof(dst->tls_cipher));
	}
	if (!dst->tls_error[0])
		memcpy(dst->tls_error, src->tls_error, sizeof(dst->tls_error));
	if (src->t_last_ns > dst->t_last_ns)
		dst->t_last_ns = src->t_last_ns;
	if (!dst->first_errno)
		dst->first_errno = src->first_errno;
	if (!dst->first_bad_greeting)
		dst->first_bad_greeting = src->first_bad_greeting;
	dst->gave_up |= src->gave_up;
}
