#include "server/shard.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "queue/ctl.h"
#include "queue/delivery.h"
#include "queue/rec_buf.h"
#include "queue/spool_record.h"
#include "server/assert.h"
#include "server/auth_pool.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/shard_impl.h"
#include "server/tls.h"

#define SHARD_RING_ENTRIES 4096
#define SHARD_RECV_BUFS 256 /* 4 MiB a shard: buffers go back to the ring within the turn */
#define SHARD_RECV_BUF_SIZE 16384
#define SHARD_LISTEN_BACKLOG 4096
#define SHARD_SLOTS_SPARE 64 /* slots beyond max_connections, to say 421 to the excess */
#define QID_EPOCH 1577836800 /* 2020-01-01: qids carry seconds since then */

static struct conn *shard_conn_lookup(struct shard *sh, uint32_t slot, uint32_t gen);

const struct shard_stats *
shard_stats(const struct shard *sh)
{
	return &sh->stats;
}

struct shard *
shard_create(const struct shard_params *p, char *err, size_t err_len)
{
	struct shard *sh = calloc(1, sizeof *sh);
	if (!sh) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	sh->id = p->id;
	sh->cfg = p->cfg;
	sh->next_seq = p->next_seq;
	sh->sink = p->sink;
	sh->qid_last_ms = p->qid_floor_ms;
	sh->mesh = p->mesh;
	sh->local = p->local;
	sh->recovered = p->recovered;
	sh->auth_pool = p->auth_pool;
	sh->sink_rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)p->id << 17) ^ (uint64_t)time(NULL);
	sh->wake_fd = -1;
	for (unsigned i = 0; i < SHARD_LISTEN_MAX; i++)
		sh->listen_fd[i] = -1;
	pthread_mutex_init(&sh->start_mu, NULL);
	pthread_cond_init(&sh->start_cv, NULL);
	pthread_mutex_init(&sh->ctl_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sh->ctl_cv, &ca);
	pthread_condattr_destroy(&ca);
	const struct config *cfg = p->cfg;
	for (unsigned i = 0; i < cfg->nlisten + cfg->nlisten_tls; i++) {
		bool tls = i >= cfg->nlisten;
		const struct config_listen *ln = tls ? &cfg->listen_tls[i - cfg->nlisten]
						     : &cfg->listen[i];
		int fd = listen_open((const struct sockaddr *)&ln->addr, ln->addr_len, ln->text,
				     SHARD_LISTEN_BACKLOG, err, err_len);
		if (fd < 0)
			goto fail;
		ASSERT(sh->nlisten < SHARD_LISTEN_MAX);
		sh->listen_tls[sh->nlisten] = tls;
		sh->listen_submission[sh->nlisten] = ln->submission;
		sh->listen_fd[sh->nlisten++] = fd;
	}
	sh->nslots = cfg->max_connections + SHARD_SLOTS_SPARE;
	sh->slots = calloc(sh->nslots, sizeof *sh->slots);
	sh->free_slots = malloc(sh->nslots * sizeof *sh->free_slots);
	/* A slot can be freed and reused within one turn, so it may be listed twice. */
	sh->dirty_cap = sh->nslots + SHARD_RING_ENTRIES * 8;
	sh->dirty = malloc(sh->dirty_cap * sizeof *sh->dirty);
	sh->scratch_size = 64 * 1024 + 64;
	sh->scratch = malloc(sh->scratch_size);
	if (!sh->slots || !sh->free_slots || !sh->dirty || !sh->scratch) {
		snprintf(err, err_len, "out of memory for %u connection slots", sh->nslots);
		goto fail;
	}
	for (uint32_t i = 0; i < sh->nslots; i++)
		sh->free_slots[i] = sh->nslots - 1 - i;
	sh->nfree = sh->nslots;
	sh->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->wake_fd < 0) {
		snprintf(err, err_len, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if (sh->auth_pool)
		auth_pool_inbox_set_wake(sh->auth_pool, sh->id, sh->wake_fd);
	if (!sh->sink.enabled) {
		struct spool_params sp = {
			.dir = cfg->spool_dir,
			.shard = p->id,
			.segment_size = cfg->segment_size,
			.fsync = cfg->fsync,
			.next_seq = p->next_seq,
		};
		sh->spool = spool_open(&sp, err, err_len);
		if (!sh->spool)
			goto fail;
	}
	return sh;
fail:
	shard_destroy(sh);
	return NULL;
}

void
shard_destroy(struct shard *sh)
{
	if (!sh)
		return;
	for (unsigned i = 0; i < SHARD_LISTEN_MAX; i++)
		if (sh->listen_fd[i] >= 0)
			close(sh->listen_fd[i]);
	if (sh->slots) {
		for (uint32_t i = 0; i < sh->nslots; i++) {
			struct conn *c = sh->slots[i];
			if (!c)
				continue;
			timer_disarm(&sh->loop.wheel, &c->timer);
			conn_free_buffers(c);
			conn_limits_release(&c->ticket);
			close(c->fd);
			free(c);
		}
	}
	while (sh->conn_pool) {
		struct conn *c = sh->conn_pool;
		sh->conn_pool = (struct conn *)c->shard;
		free(c);
	}
	delivery_free(sh->dlv);
	spool_close(sh->spool);
	if (sh->wake_fd >= 0)
		close(sh->wake_fd);
	if (sh->loop_ready)
		loop_fini(&sh->loop);
	free(sh->slots);
	free(sh->free_slots);
	free(sh->dirty);
	free(sh->scratch);
	pthread_mutex_destroy(&sh->start_mu);
	pthread_cond_destroy(&sh->start_cv);
	pthread_mutex_destroy(&sh->ctl_mu);
	pthread_cond_destroy(&sh->ctl_cv);
	free(sh);
}

/* ---- services for sessions ------------------------------------------------------------ */

/*
 * Queue ids: milliseconds since 2020 (40 bits) | shard (8 bits) | counter (16 bits). Per shard
 * they only grow: the millisecond never goes below the last one used (nor below the floor
 * main.c found in the spool at start), so a restart or a clock step back never repeats one.
 */
uint64_t
shard_qid_next(struct shard *sh)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)(ts.tv_sec - QID_EPOCH) * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (ms <= sh->qid_last_ms) {
		ms = sh->qid_last_ms;
		if (++sh->qid_counter > 0xffff) {
			ms++;
			sh->qid_counter = 0;
		}
	} else {
		sh->qid_counter = 0;
	}
	sh->qid_last_ms = ms;
	return (ms << 24) | ((uint64_t)(sh->id & 0xff) << 16) | sh->qid_counter;
}

const char *
shard_date(struct shard *sh)
{
	time_t now = time(NULL);
	if (now != sh->date_sec) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(sh->date, sizeof sh->date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
		sh->date_sec = now;
	}
	return sh->date;
}

void
shard_conn_dirty(struct shard *sh, struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	ASSERT(sh->ndirty < sh->dirty_cap);
	sh->dirty[sh->ndirty++] = c->slot;
}

static uint64_t
sink_rand(struct shard *sh)
{
	uint64_t x = sh->sink_rng; /* xorshift64 */
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	sh->sink_rng = x;
	return x;
}

static void
sink_commit(struct shard *sh, struct conn *c, size_t len)
{
	unsigned roll = (unsigned)(sink_rand(sh) % 100);
	int status = 0;
	if (roll < sh->sink.permfail_pct)
		status = -EPERM;
	else if (roll < sh->sink.permfail_pct + sh->sink.tempfail_pct)
		status = -EAGAIN;
	if (status == 0) {
		atomic_fetch_add_explicit(&sh->stats.messages, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->stats.recipients, c->sess.nrcpt,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->stats.bytes, len, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(status == -EPERM ? &sh->stats.rejected
							   : &sh->stats.tempfailed,
					  1, memory_order_relaxed);
	}
	if (sh->sink.delay_ms > 0) {
		c->sink_wait = true;
		c->sink_status = status;
		conn_set_timeout_ms(c, sh->sink.delay_ms);
		return;
	}
	/* Answered at once; the caller (the session's input loop) goes on reading. */
	smtp_session_event(c, SMTP_EV_COMMITTED, NULL, 0, status);
}

void
shard_commit(struct shard *sh, struct conn *c, char *rec, size_t len)
{
	if (sh->sink.enabled) {
		rec_buf_put(rec);
		sink_commit(sh, c, len);
		return; /* ringmx-sink stores nothing: no lengths or checksum to seal */
	}
	spool_record_finish(rec, len);
	spool_append(sh->spool, rec, len, ((uint64_t)c->gen << 32) | c->slot);
}

static void
shard_spool_done(void *arg, const struct spool_done *d)
{
	struct shard *sh = arg;
	uint64_t owner = d->owner;
	int status = d->status;
	if (owner & DELIVERY_OWNER_BIT) {
		delivery_spool_done(sh->dlv, d);
		return;
	}
	if (status == 0 && sh->dlv)
		delivery_accept(sh->dlv, d);
	if (status == 0) {
		atomic_fetch_add_explicit(&sh->stats.messages, 1, memory_order_relaxed);
	} else if (log_start(LOG_ERROR, "spool_error")) {
		log_str("error", strerror(-status));
		log_finish();
	}
	struct conn *c = shard_conn_lookup(sh, (uint32_t)owner, (uint32_t)(owner >> 32));
	if (!c || c->closing || c->sess.state != SMTP_ST_COMMIT)
		return; /* the client left: the message is stored all the same */
	smtp_session_event(c, SMTP_EV_COMMITTED, NULL, 0, status);
	conn_resume(c);
}

int
shard_auth_submit(struct shard *sh, struct auth_job *job)
{
	if (!sh->auth_pool)
		return -EAGAIN;
	int rc = auth_pool_submit(sh->auth_pool, sh->id, job);
	if (rc == 0)
		sh->auth_inflight++;
	return rc;
}

/* The eventfd fired: password checks that are done come back to their sessions (or are
 * dropped by them, when the connection is gone). */
static void
shard_auth_take(struct shard *sh)
{
	if (!sh->auth_pool)
		return;
	struct auth_job *j = auth_pool_take(sh->auth_pool, sh->id), *next;
	for (; j; j = next) {
		next = j->next;
		ASSERT(sh->auth_inflight > 0);
		sh->auth_inflight--;
		uint32_t slot = (uint32_t)j->owner, gen = (uint32_t)(j->owner >> 32);
		smtp_session_auth_done(sh, shard_conn_lookup(sh, slot, gen), j); /* frees j */
	}
}

/* ---- connections ---------------------------------------------------------------------- */

static struct conn *
shard_conn_lookup(struct shard *sh, uint32_t slot, uint32_t gen)
{
	if (slot >= sh->nslots)
		return NULL;
	struct conn *c = sh->slots[slot];
	return c && c->gen == gen ? c : NULL;
}

static void
conn_timer_fire(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
	if (c->closing)
		return;
	if (c->lingering) {
		conn_close(c); /* the client did not close within the linger time */
		return;
	}
	if (c->sink_wait) {
		c->sink_wait = false;
		smtp_session_event(c, SMTP_EV_COMMITTED, NULL, 0, c->sink_status);
		conn_resume(c);
		return;
	}
	smtp_session_event(c, SMTP_EV_TIMEOUT, NULL, 0, 0);
}

static struct conn *
shard_conn_new(struct shard *sh, int fd)
{
	if (sh->nfree == 0)
		return NULL;
	struct conn *c = sh->conn_pool;
	if (c)
		sh->conn_pool = (struct conn *)c->shard;
	else
		c = malloc(sizeof *c);
	if (!c)
		return NULL;
	memset(c, 0, offsetof(struct conn, out_inline));
	c->slot = sh->free_slots[--sh->nfree];
	c->gen = (++sh->gen_counter & 0xffffff) ? sh->gen_counter & 0xffffff : ++sh->gen_counter;
	c->fd = fd;
	c->shard = sh;
	c->tp = &transport_plain;
	c->out = c->out_inline;
	c->out_cap = CONN_OUT_INLINE;
	c->timer.fn = conn_timer_fire;
	c->connected_ms = sh->loop.now_ms;
	c->session_deadline_ms = sh->loop.now_ms + (uint64_t)sh->cfg->timeout_session * 1000;
	c->deadline_ms = UINT64_MAX;
	sh->slots[c->slot] = c;
	sh->used_slots++;
	return c;
}

static void
shard_conn_release_now(struct shard *sh, struct conn *c)
{
	if (log_start(LOG_INFO, "disconnect")) {
		log_str("client", c->peer_ip);
		log_u64("commands", c->sess.n_cmds);
		log_u64("accepted", c->sess.n_accepted);
		log_u64("rejected", c->sess.n_rejected);
		log_u64("bytes_in", c->sess.bytes_in);
		log_u64("duration_ms", sh->loop.now_ms - c->connected_ms);
		log_finish();
	}
	timer_disarm(&sh->loop.wheel, &c->timer);
	conn_limits_release(&c->ticket);
	conn_free_buffers(c);
	sh->slots[c->slot] = NULL;
	sh->free_slots[sh->nfree++] = c->slot;
	sh->used_slots--;
	c->gen = 0;
	c->shard = (struct shard *)sh->conn_pool; /* the pool is linked through ->shard */
	sh->conn_pool = c;
}

/* Frees a connection once it is closing and no operation of its is still in flight. */
void
shard_conn_release(struct shard *sh, struct conn *c)
{
	if (c->closing && c->ops == 0)
		shard_conn_release_now(sh, c);
}

static void
shard_accept_arm(struct shard *sh, unsigned idx)
{
	struct io_uring_sqe *sqe = loop_sqe(&sh->loop);
	io_uring_prep_multishot_accept(sqe, sh->listen_fd[idx], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, loop_ud(OP_ACCEPT, idx, 0));
	sh->accept_armed[idx] = true;
}

/* Over a connection limit: 421 and close. On an implicit TLS listener the client expects a
 * handshake, and doing one for a refused connection would defeat the limit: just close. */
static void
shard_accept_reject(struct conn *c, enum conn_limits_result lr, bool implicit_tls)
{
	if (log_start(LOG_WARN, "reject")) {
		log_str("client", c->peer_ip);
		log_str("reason", lr == CONN_LIMITS_PER_IP ? "connections_per_ip" : "connections_total");
		log_finish();
	}
	if (implicit_tls) {
		conn_close(c);
		return;
	}
	if (lr == CONN_LIMITS_PER_IP)
		conn_reply_lit(c, "421 4.7.0 Error: too many connections from your address\r\n");
	else
		conn_reply_lit(c, "421 4.7.0 Error: too many connections\r\n");
	conn_close_after_flush(c);
}

/*
 * [server] proxy_protocol: the client is named by the PROXY header that the peer, a proxy,
 * sends first (conn.c reads it, then calls shard_conn_begin). A peer outside proxy_networks is
 * closed at once: the address it would send is not to be believed. Until the header is read the
 * connection counts against max_connections as the proxy's, never against the proxy's per-IP
 * limit (every client comes from that one address).
 */
static void
shard_accept_proxy(struct shard *sh, struct conn *c)
{
	const struct config *cfg = sh->cfg;
	if (!config_addr_may_proxy(cfg, (struct sockaddr *)&c->peer)) {
		if (log_start(LOG_WARN, "proxy_error")) {
			log_str("client", c->peer_ip);
			log_str("reason", "not_in_proxy_networks");
			log_finish();
		}
		conn_close(c);
		return;
	}
	enum conn_limits_result lr = conn_limits_acquire((struct sockaddr *)&c->peer,
							 cfg->max_connections, 0, true, &c->ticket);
	if (lr != CONN_LIMITS_OK) {
		shard_accept_reject(c, lr, c->implicit_tls);
		return;
	}
	uint64_t ms = (uint64_t)cfg->timeout_greeting * 1000;
	conn_proxy_start(c, ms < CONN_PROXY_TIMEOUT_MS ? ms : CONN_PROXY_TIMEOUT_MS);
}

static void
shard_on_accept(struct shard *sh, unsigned idx, const struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		sh->accept_armed[idx] = false;
		if (!sh->stopping && cqe->res != -ECANCELED)
			shard_accept_arm(sh, idx);
	}
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED && log_start(LOG_WARN, "accept_error")) {
			log_str("error", strerror(-cqe->res));
			log_finish();
		}
		return;
	}
	int fd = cqe->res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (sh->stopping || getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		close(fd);
		return;
	}
	struct conn *c = shard_conn_new(sh, fd);
	if (!c) {
		close(fd); /* every slot busy: even a 421 would need one */
		return;
	}
	c->peer = ss;
	listen_addr_text((struct sockaddr *)&ss, c->peer_ip, sizeof c->peer_ip, &c->peer_port);
	c->implicit_tls = sh->listen_tls[idx];
	c->submission = sh->listen_submission[idx];
	atomic_fetch_add_explicit(&sh->stats.connections, 1, memory_order_relaxed);
	conn_recv_update(c);
	if (sh->cfg->proxy_protocol) {
		shard_accept_proxy(sh, c);
		return;
	}
	shard_conn_begin(c);
}

void
shard_conn_begin(struct conn *c)
{
	struct shard *sh = c->shard;
	const struct config *cfg = sh->cfg;
	bool implicit_tls = c->implicit_tls;
	c->may_relay = config_addr_may_relay(cfg, (struct sockaddr *)&c->peer);
	enum conn_limits_result lr = conn_limits_acquire((struct sockaddr *)&c->peer,
							 cfg->max_connections,
							 cfg->max_connections_per_ip, c->may_relay,
							 &c->ticket);
	if (lr != CONN_LIMITS_OK) {
		shard_accept_reject(c, lr, implicit_tls);
		return;
	}
	if (log_start(LOG_INFO, "connect")) {
		log_str("client", c->peer_ip);
		log_u64("port", c->peer_port);
		if (implicit_tls)
			log_str("tls", "implicit");
		if (c->submission)
			log_str("submission", "yes");
		log_finish();
	}
	/* Implicit TLS: the handshake comes first; the session greets when it is done. A
	 * reload that dropped [tls] leaves the listener (a restart key) without a context. */
	if (implicit_tls && (!cfg->tls_ctx || tls_conn_start(c, cfg->tls_ctx) < 0)) {
		if (log_start(LOG_WARN, "tls_error")) {
			log_str("client", c->peer_ip);
			log_str("reason", cfg->tls_ctx ? "out of memory" : "no [tls] certificate");
			log_finish();
		}
		conn_close(c);
		return;
	}
	smtp_session_event(c, SMTP_EV_CONNECTED, NULL, 0, 0);
}

/* ---- the loop ------------------------------------------------------------------------- */

static void
shard_wake_arm(struct shard *sh)
{
	struct io_uring_sqe *sqe = loop_sqe(&sh->loop);
	io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_val, sizeof sh->wake_val, 0);
	io_uring_sqe_set_data64(sqe, loop_ud(OP_WAKE, 0, 0));
}

static void
shard_stop_begin(struct shard *sh)
{
	sh->stopping = true;
	sh->stop_deadline_ms = sh->loop.now_ms + (uint64_t)sh->cfg->shutdown_timeout * 1000;
	for (unsigned i = 0; i < sh->nlisten; i++) {
		struct io_uring_sqe *sqe = loop_sqe(&sh->loop);
		io_uring_prep_cancel64(sqe, loop_ud(OP_ACCEPT, i, 0), 0);
		io_uring_sqe_set_data64(sqe, loop_ud(OP_CANCEL, UINT32_MAX, 0));
		/* shutdown() stops the listener now, even while the accept still holds a
		 * reference to it: new connections are refused from this moment. */
		shutdown(sh->listen_fd[i], SHUT_RDWR);
		close(sh->listen_fd[i]);
		sh->listen_fd[i] = -1;
	}
	log_msg(LOG_INFO, "stopping", "finishing %u connection(s), deadline %u s",
		sh->used_slots, sh->cfg->shutdown_timeout);
	if (sh->dlv)
		delivery_stop(sh->dlv);
	for (uint32_t i = 0; i < sh->nslots; i++)
		if (sh->slots[i] && !sh->slots[i]->closing)
			smtp_session_event(sh->slots[i], SMTP_EV_STOP, NULL, 0, 0);
}

/* At the stop deadline: everything not waiting on our own disk is told 421 and closed. */
static void
shard_stop_force(struct shard *sh)
{
	if (sh->dlv)
		delivery_stop_force(sh->dlv);
	for (uint32_t i = 0; i < sh->nslots; i++) {
		struct conn *c = sh->slots[i];
		if (!c || c->closing || c->sess.state == SMTP_ST_COMMIT ||
		    c->sess.state == SMTP_ST_CLOSING)
			continue;
		conn_replyf(c, "421 4.3.2 %s Service shutting down\r\n", sh->cfg->hostname);
		conn_close_after_flush(c);
	}
}

static void
shard_on_cqe(void *ctx, struct io_uring_cqe *cqe)
{
	struct shard *sh = ctx;
	uint64_t ud = cqe->user_data;
	unsigned op = loop_ud_op(ud);
	if (op == OP_ACCEPT) {
		shard_on_accept(sh, loop_ud_slot(ud), cqe);
		return;
	}
	if (op == OP_SPOOL) {
		spool_complete(sh->spool, &sh->loop.ring, loop_ud(OP_SPOOL, 0, 0), cqe,
			       shard_spool_done, sh);
		return;
	}
	if (op == OP_DNS || op == OP_DLV || op == OP_JOURNAL || op == OP_DSPOOL) {
		if (sh->dlv)
			delivery_complete(sh->dlv, cqe);
		return;
	}
	if (op == OP_WAKE) {
		shard_wake_arm(sh);
		shard_auth_take(sh);
		if (atomic_load(&sh->stop_requested) && !sh->stopping)
			shard_stop_begin(sh);
		return;
	}
	if (op == OP_CANCEL && loop_ud_slot(ud) == UINT32_MAX)
		return; /* a listener's accept cancelled at stop */
	struct conn *c = shard_conn_lookup(sh, loop_ud_slot(ud), loop_ud_gen(ud));
	if (!c) {
		/* Owners are freed only when all their operations are done, so a buffer is all
		 * that can be left to hand back here. */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			loop_buf_return(&sh->loop, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	switch (op) {
	case OP_RECV:
		conn_on_recv(c, cqe);
		break;
	case OP_SEND:
		conn_on_send(c, cqe->res);
		break;
	case OP_CANCEL:
	case OP_CLOSE:
		conn_on_op_done(c);
		break;
	default:
		ASSERT(!"unknown operation");
	}
	shard_conn_release(sh, c);
}

static void
shard_config_pickup(struct shard *sh)
{
	uint64_t gen = atomic_load_explicit(&sh->cfg_next_gen, memory_order_acquire);
	if (gen == atomic_load_explicit(&sh->cfg_ack_gen, memory_order_relaxed))
		return;
	sh->cfg = atomic_load_explicit(&sh->cfg_next, memory_order_acquire);
	if (sh->dlv)
		delivery_config(sh->dlv, sh->cfg);
	atomic_store_explicit(&sh->cfg_ack_gen, gen, memory_order_release);
}

/* A ringmxctl request posted by shard_ctl: run here, before the delivery's turn, so that what
 * it marks (flush, release, resume) is started in this very turn. */
static void
shard_ctl_serve(struct shard *sh)
{
	if (!atomic_load_explicit(&sh->ctl_posted, memory_order_acquire))
		return;
	pthread_mutex_lock(&sh->ctl_mu);
	atomic_store_explicit(&sh->ctl_posted, false, memory_order_relaxed);
	if (sh->ctl_state != SHARD_CTL_POSTED) { /* withdrawn */
		pthread_mutex_unlock(&sh->ctl_mu);
		return;
	}
	sh->ctl_state = SHARD_CTL_RUNNING;
	pthread_mutex_unlock(&sh->ctl_mu);
	size_t len;
	if (sh->dlv) {
		len = delivery_ctl(sh->dlv, sh->ctl_req, sh->ctl_out, sh->ctl_cap);
	} else {
		int n = snprintf(sh->ctl_out, sh->ctl_cap, "%cdelivery is disabled ([deliver] "
			"enabled = no)\n", CTL_TAG_ERROR);
		len = n < 0 ? 0 : (size_t)n < sh->ctl_cap ? (size_t)n : sh->ctl_cap - 1;
	}
	pthread_mutex_lock(&sh->ctl_mu);
	sh->ctl_len = len;
	sh->ctl_state = SHARD_CTL_DONE;
	pthread_cond_signal(&sh->ctl_cv);
	pthread_mutex_unlock(&sh->ctl_mu);
}

static void
shard_before_wait(void *ctx)
{
	struct shard *sh = ctx;
	shard_config_pickup(sh);
	shard_ctl_serve(sh);
	if (sh->dlv)
		delivery_before_wait(sh->dlv);
	if (sh->spool)
		spool_flush(sh->spool, &sh->loop.ring, loop_ud(OP_SPOOL, 0, 0), shard_spool_done, sh);
	/* One send per connection per turn, with every reply the turn produced. */
	for (uint32_t i = 0; i < sh->ndirty; i++) {
		struct conn *c = sh->slots[sh->dirty[i]];
		if (c && c->dirty)
			conn_flush(c);
	}
	sh->ndirty = 0;
	log_flush();
	if (sh->loop.now_ms - sh->rec_trim_ms >= 1000) {
		rec_buf_trim(); /* record buffers unused for a second go back to the allocator */
		sh->rec_trim_ms = sh->loop.now_ms;
	}
}

static const struct loop_ops shard_loop_ops = {
	.on_cqe = shard_on_cqe,
	.before_wait = shard_before_wait,
};

static void
shard_start_report(struct shard *sh, int rc)
{
	pthread_mutex_lock(&sh->start_mu);
	sh->start_rc = rc;
	sh->start_done = true;
	pthread_cond_signal(&sh->start_cv);
	pthread_mutex_unlock(&sh->start_mu);
}

static bool
shard_finished(struct shard *sh)
{
	/* a check in flight comes back to this shard's inbox and wake_fd: wait for it */
	return sh->stopping && sh->used_slots == 0 && sh->auth_inflight == 0 &&
	       !(sh->spool && spool_busy(sh->spool)) && !(sh->dlv && delivery_busy(sh->dlv));
}

static uint64_t
shard_qid_cb(void *arg)
{
	return shard_qid_next(arg);
}

static const char *
shard_date_cb(void *arg)
{
	return shard_date(arg);
}

/* On the shard thread, once the loop is up: the delivery, and what recovery found for it. */
static int
shard_delivery_start(struct shard *sh)
{
	struct delivery_params dp = {
	    .shard = sh->id,
	    .mesh = sh->mesh,
	    .loop = &sh->loop,
	    .cfg = sh->cfg,
	    .spool = sh->spool,
	    .local = sh->local,
	    .op_dns = OP_DNS,
	    .op_out = OP_DLV,
	    .op_journal = OP_JOURNAL,
	    .op_dspool = OP_DSPOOL,
	    .next_seq = sh->next_seq,
	    .qid_next = shard_qid_cb,
	    .date = shard_date_cb,
	    .arg = sh,
	};
	sh->dlv = delivery_new(&dp, sh->start_err, sizeof sh->start_err);
	if (!sh->dlv)
		return -EINVAL;
	struct shard_recovered *r = sh->recovered;
	if (r) {
		for (uint32_t i = 0; i < r->nmsgs; i++)
			delivery_adopt(sh->dlv, r->msgs[i]);
		for (uint32_t i = 0; i < r->nsegs; i++)
			delivery_adopt_segment(sh->dlv, r->segs[i].stream, r->segs[i].seq,
					       r->segs[i].live);
		r->nmsgs = 0;
	}
	return 0;
}

int
shard_wake_fd(const struct shard *sh)
{
	return sh->wake_fd;
}

/* Names the thread "shard-N" (ps -L, top -H) and, under pin_shards, keeps it on one CPU: shard
 * i on the i-th CPU ringmx may use, so N shards on N CPUs each own one and keep their caches. */
static void
shard_pin(struct shard *sh)
{
	char name[16];
	snprintf(name, sizeof name, "shard-%u", sh->id);
	pthread_setname_np(pthread_self(), name);
	if (!sh->cfg->pin_shards)
		return;
	int cpu = config_cpu_nth(sh->id);
	if (cpu < 0) {
		log_msg(LOG_WARN, "pin_failed", "not pinned: the CPU affinity mask is unreadable");
		return;
	}
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof one, &one) != 0)
		log_msg(LOG_WARN, "pin_failed", "not pinned to CPU %d: %s", cpu, strerror(errno));
	else
		log_msg(LOG_DEBUG, "pinned", "on CPU %d", cpu);
}

static void *
shard_main(void *arg)
{
	struct shard *sh = arg;
	log_thread_init((int)sh->id, true);
	shard_pin(sh);
	struct loop_params lp = {
		.entries = SHARD_RING_ENTRIES,
		.nbufs = SHARD_RECV_BUFS,
		.buf_size = SHARD_RECV_BUF_SIZE,
		.buf_group = 1,
		.spin_us = sh->cfg->busy_poll_us,
	};
	int rc = loop_init(&sh->loop, &lp, sh->start_err, sizeof sh->start_err);
	if (rc < 0) {
		shard_start_report(sh, rc);
		return NULL;
	}
	sh->loop_ready = true;
	if (sh->mesh && !sh->sink.enabled) {
		rc = shard_delivery_start(sh);
		if (rc < 0) {
			shard_start_report(sh, rc);
			return NULL;
		}
	}
	for (unsigned i = 0; i < sh->nlisten; i++)
		shard_accept_arm(sh, i);
	shard_wake_arm(sh);
	shard_start_report(sh, 0);
	bool forced = false;
	while (!shard_finished(sh)) {
		/* while record buffers are cached, wake each second so that trimming them runs */
		int wait_ms = sh->stopping ? 100 : rec_buf_cached() > 0 ? 1000 : -1;
		rc = loop_turn(&sh->loop, &shard_loop_ops, sh, wait_ms);
		if (rc < 0) {
			log_msg(LOG_ERROR, "loop_error", "io_uring: %s", strerror(-rc));
			break;
		}
		if (sh->stopping && !forced && sh->loop.now_ms >= sh->stop_deadline_ms) {
			shard_stop_force(sh);
			forced = true;
		}
	}
	shard_before_wait(sh);
	log_msg(LOG_INFO, "stopped", "shard loop finished");
	log_flush();
	return NULL;
}

int
shard_start(struct shard *sh, char *err, size_t err_len)
{
	int rc = pthread_create(&sh->thread, NULL, shard_main, sh);
	if (rc != 0) {
		snprintf(err, err_len, "pthread_create: %s", strerror(rc));
		return -rc;
	}
	sh->thread_started = true;
	pthread_mutex_lock(&sh->start_mu);
	while (!sh->start_done)
		pthread_cond_wait(&sh->start_cv, &sh->start_mu);
	pthread_mutex_unlock(&sh->start_mu);
	if (sh->start_rc < 0)
		snprintf(err, err_len, "shard %u: %s", sh->id, sh->start_err);
	return sh->start_rc;
}

void
shard_config_publish(struct shard *sh, const struct config *cfg, uint64_t gen)
{
	atomic_store_explicit(&sh->cfg_next, cfg, memory_order_release);
	atomic_store_explicit(&sh->cfg_next_gen, gen, memory_order_release);
	uint64_t one = 1;
	ssize_t w = write(sh->wake_fd, &one, sizeof one);
	(void)w;
}

uint64_t
shard_config_acked(struct shard *sh)
{
	return atomic_load_explicit(&sh->cfg_ack_gen, memory_order_acquire);
}

void
shard_request_stop(struct shard *sh)
{
	atomic_store(&sh->stop_requested, true);
	uint64_t one = 1;
	ssize_t w = write(sh->wake_fd, &one, sizeof one);
	(void)w;
}

long
shard_ctl(struct shard *sh, const char *req, char *out, size_t cap)
{
	ASSERT(cap > 0);
	pthread_mutex_lock(&sh->ctl_mu);
	ASSERT(sh->ctl_state == SHARD_CTL_IDLE);
	sh->ctl_req = req;
	sh->ctl_out = out;
	sh->ctl_cap = cap;
	sh->ctl_len = 0;
	sh->ctl_state = SHARD_CTL_POSTED;
	atomic_store_explicit(&sh->ctl_posted, true, memory_order_release);
	pthread_mutex_unlock(&sh->ctl_mu);
	uint64_t one = 1;
	ssize_t w = write(sh->wake_fd, &one, sizeof one);
	(void)w;

	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += SHARD_CTL_TIMEOUT_MS / 1000;
	dl.tv_nsec += (long)(SHARD_CTL_TIMEOUT_MS % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	long rc = 0;
	pthread_mutex_lock(&sh->ctl_mu);
	while (sh->ctl_state == SHARD_CTL_POSTED) {
		if (pthread_cond_timedwait(&sh->ctl_cv, &sh->ctl_mu, &dl) == ETIMEDOUT &&
		    sh->ctl_state == SHARD_CTL_POSTED) {
			/* not taken: withdrawn, so the shard never writes into out */
			sh->ctl_state = SHARD_CTL_IDLE;
			rc = -ETIMEDOUT;
		}
	}
	/* taken: delivery_ctl only computes (no I/O, no waiting), so this wait is short */
	while (sh->ctl_state == SHARD_CTL_RUNNING)
		pthread_cond_wait(&sh->ctl_cv, &sh->ctl_mu);
	if (sh->ctl_state == SHARD_CTL_DONE) {
		rc = (long)sh->ctl_len;
		sh->ctl_state = SHARD_CTL_IDLE;
	}
	sh->ctl_req = NULL;
	sh->ctl_out = NULL;
	pthread_mutex_unlock(&sh->ctl_mu);
	return rc;
}

void
shard_join(struct shard *sh)
{
	if (sh->thread_started) {
		pthread_join(sh->thread, NULL);
		sh->thread_started = false;
	}
}
