/*
 * fuzz_session — libFuzzer harness for a whole inbound SMTP session: server/smtp_session.c as
 * server/conn.c drives it (the transport table, the input it keeps, the reply buffer and its
 * sends, the recv pause), with the real command parser, DATA scanner, SASL decoding, PROXY
 * header parser, spool record codec and timer wheel. Only the edges are stand-ins, all in this
 * file: the shard (queue ids, the spool commit, the dirty list, the timer callback, the auth
 * pool: a password check waits in the pool until the driver settles it, like a commit), io_uring
 * (the SQEs the connection queues, completed here as the kernel would), TLS (a transport that
 * passes plaintext through and "completes the handshake" on its first receive), the users
 * (alice / wonderland, bob@example.org / hunter2; the password "busy" finds the pool full) and
 * the failure throttle, the config (one struct filled per input) and the log (its calls are
 * checked, nothing is written).
 *
 * The link wraps smtp_session_event (-Wl,--wrap, Makefile): every event, from conn.c or from
 * here, goes through __wrap_smtp_session_event() below, which sees the state before and after,
 * the bytes consumed and the replies queued, and checks them against a model of the client's
 * stream.
 *
 * Input: three header bytes, then fuzz.h's chunk header, then what the client sends, handed
 * over one receive completion per chunk.
 *   byte 0: bit 0 bare_newline = accept; bit 1 small limits (2 recipients, 300-byte messages —
 *           below the config's minimum, to reach the limit in a short input —, 512-byte lines,
 *           3 errors, a long hostname); bit 2 TLS (STARTTLS offered); bit 3 [auth] users (TLS
 *           too); bit 4 a client in relay_networks; bit 5 the submission listener (with
 *           [auth]); bit 6 implicit TLS (with TLS); bit 7 a PROXY protocol header first.
 *   byte 1: bits 0-1 the commit: spool, spool failing every other message, sink (answered at
 *           once), sink answering 250 / 451 / 554 in turn; bits 2-3 how many chunks the spool
 *           takes to settle; bit 4 slow sends (a send completes after the next chunk, in
 *           part); bits 5-6 the end: EOF, TIMEOUT, STOP, STOP then TIMEOUT; bit 7 a greeting
 *           delay.
 *   byte 2: bit 0 wait out the greeting delay first; bit 1 [auth] sender_policy = any;
 *           bit 2 a recipients list (only alice and bob exist); bit 3 an IPv6 client;
 *           bits 4-6 after which chunk (1-7, 0: none) a TIMEOUT, or with bit 7 a STOP, comes.
 *
 * Checks (FUZZ_CHECK): every reply line is "ddd" 200-599, SP or '-', printable text, CRLF,
 * at most 512 bytes, a multi-line reply keeps its code, an enhanced code has the reply's class,
 * and replies are whole lines; what is sent is what was queued, in order, read from the buffer
 * the send points at (ASan sees a freed one); nothing is queued once the session is closing
 * (after 221, 421 and the like); the bytes a DATAIN consumes continue the client's stream
 * exactly; DATA ends at the first CRLF "." CRLF and nowhere else, and the message handed to the
 * spool is exactly the client's bytes before it with the line-start dots removed (no
 * smuggling either way), refused with 552 / 554 exactly when too big, with a bare CR or LF
 * (bare_newline = reject) or a NUL; a BDAT chunk is exactly its size, its 250 counts the bytes
 * so far, and BDAT LAST hands over exactly the chunks' bytes; a handed record decodes, has 1 to
 * max_recipients non-empty recipients, each local (and known) or relayed only for a relay
 * client or an authenticated one, the session's qid, helo and client, the AUTH flag exactly
 * when authenticated and, with sender_policy = own, an owned sender; the 250 "queued as" replies
 * equal the commits that succeeded, each with the qid of its message; 235 only for a good
 * password and a session still waiting for it, 535 for a bad one, nothing to a session that
 * moved on; AUTH only over TLS on the submission listener, MAIL there only once authenticated;
 * no reply between STARTTLS's 220 and the handshake; session state within bounds (recipients,
 * arena, record buffer, errors, HELO, kept input, replies per input byte); every connection
 * ends, by EOF or by its timer, with all its operations completed and its memory freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/spool_record.h"
#include "server/auth.h"
#include "server/auth_pool.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/proxy.h"
#include "server/sasl.h"
#include "server/shard_impl.h"
#include "server/smtp_parse.h"
#include "server/smtp_session.h"
#include "server/timer.h"
#include "server/tls.h"
#include "tests/fuzz/fuzz.h"

#define SESSION_FEED_MAX (64 * 1024) /* smtp_session.c FEED_MAX: bytes per DATA/BDAT step */
#define REPLY_LINE_MAX 512	     /* RFC 5321 4.5.3.1.5, CRLF included */
#define REPLY_PER_BYTE 64	     /* reply bytes per client byte, at most (EHLO: about 50) */
#define SQE_MAX 16
#define NOW0_MS 1000000000ull
#define DRAIN_STEPS 16 /* plus one per client byte: each step may settle one pipelined message */

static const char hostname_short[] = "mx.example.org";
static const char hostname_long[] =
    "a-rather-long-host-name-that-makes-every-reply-longer.mx.example.org."
    "a-rather-long-host-name-that-makes-every-reply-longer.mx.example.org."
    "a-rather-long-host-name-that-makes-every-reply-longer.mx.example.org";

/* Stand-ins for the objects the config and the connection only pass around. */
static char fake_ssl_ctx, fake_users, fake_tls_state;
#define FAKE_CTX ((struct ssl_ctx_st *)&fake_ssl_ctx)
#define FAKE_USERS ((struct auth_users *)&fake_users)

struct buf {
	char *p;
	size_t len, cap;
};

static void
buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		FUZZ_CHECK(b->p != NULL);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* One input's run: the header's choices, the stand-ins' state and the model. */
struct run {
	/* from the header */
	bool relay, submission, implicit_tls, proxy, sink, commit_fail, slow_sends, greet_wait;
	bool listed, v6, event_stop;
	unsigned commit_delay, ending, event_chunk;
	struct conn *c;

	/* io_uring: what the connection queued, and what is in flight */
	struct io_uring_sqe sqe[SQE_MAX];
	unsigned nsqe, ncancel, nclose, nsend;
	bool recv_in_flight, buf_lent, send_in_flight;
	const char *send_p;
	size_t send_len;

	/* the client's bytes as received; the session's plaintext starts at plain_off */
	struct buf raw;
	size_t plain_off, consumed, last_chunk;

	/* replies: every byte queued, in order; how much of c->out is in q; how much was sent */
	struct buf q;
	size_t q_seen, q_checked, q_sent, q_at_starttls;
	bool closed, in_multi;
	char multi_code[3];
	unsigned n_queued_250;

	/* the transaction model: DATA bytes since the 354, BDAT bytes of this message */
	struct buf data, bdat;
	size_t data_scanned;
	uint64_t chunk_size, chunk_got;
	bool in_chunk, chunk_last, chunk_discard;

	/* commits */
	char *handed; /* the record handed in this DATAIN, until the model has looked at it */
	size_t handed_len;
	uint64_t handed_qid, commit_qid;
	char *pending; /* spool: the record waiting for its fdatasync */
	uint64_t pending_qid;
	unsigned pending_wait, nhanded, ncommit, n_commit_ok;
	bool in_datain;

	/* auth, tls, log */
	struct sockaddr_storage peer; /* the client, once known (after a PROXY header) */
	struct auth_job *job;	      /* a password check in the pool */
	unsigned job_wait, auth_failures;
	bool hash_known, job_known;
	bool tls_up, log_open;
	uint64_t qid_counter;
};

static struct run R;
static struct shard g_sh;
static struct config g_cfg;

size_t __real_smtp_session_event(struct conn *c, enum smtp_event ev, const char *p, size_t n,
				 int status);
static void q_sync(void);

/* ---- the config: one struct, filled per input --------------------------------------- */

static void
cfg_fill(uint8_t h0, uint8_t h1, uint8_t h2)
{
	struct config *cfg = &g_cfg;
	bool small = h0 & 2, tls = h0 & 12, auth = h0 & 8;

	snprintf(cfg->hostname, sizeof cfg->hostname, "%s", small ? hostname_long : hostname_short);
	cfg->max_message_size = small ? 300 : 1 << 20;
	cfg->max_recipients = small ? 2 : 100;
	cfg->max_line_length = small ? 512 : 1000;
	cfg->max_errors = small ? 3 : 20;
	cfg->timeout_greeting = 30;
	cfg->timeout_command = 20;
	cfg->timeout_data = 40;
	cfg->timeout_session = 300;
	cfg->greeting_delay_ms = (h1 & 0x80) ? 200 : 0;
	cfg->shutdown_timeout = 10;
	cfg->bare_newline = (h0 & 1) ? CONFIG_BARE_NEWLINE_ACCEPT : CONFIG_BARE_NEWLINE_REJECT;
	cfg->starttls = tls;
	cfg->tls_ctx = tls ? FAKE_CTX : NULL;
	cfg->auth_users = auth ? FAKE_USERS : NULL;
	cfg->auth_sender_policy = (h2 & 2) ? CONFIG_SENDER_ANY : CONFIG_SENDER_OWN;
	cfg->auth_max_failures = 3;
	cfg->auth_failure_window = 60;
	cfg->proxy_protocol = h0 & 0x80;
}

static const char *const local_domains[] = {"example.org", "localhost", "xn--bcher-kva.example"};
static const char *const listed_rcpts[] = {"alice@example.org", "bob@example.org",
					   "alice@localhost"};

static bool
eq_nocase(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

static void
touch(const char *p, size_t n)
{
	volatile unsigned char sum = 0;
	for (size_t i = 0; i < n; i++)
		sum ^= (unsigned char)p[i];
	(void)sum;
}

bool
config_domain_is_local(const struct config *cfg, const char *domain, size_t len)
{
	FUZZ_CHECK(cfg == &g_cfg && (domain != NULL || len == 0));
	touch(domain, len);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	for (size_t i = 0; i < sizeof local_domains / sizeof local_domains[0]; i++)
		if (eq_nocase(domain, len, local_domains[i]))
			return true;
	return false;
}

bool
config_recipient_exists(const struct config *cfg, const char *addr, size_t len)
{
	FUZZ_CHECK(cfg == &g_cfg && addr != NULL);
	touch(addr, len);
	if (!R.listed)
		return true;
	for (size_t i = 0; i < sizeof listed_rcpts / sizeof listed_rcpts[0]; i++)
		if (eq_nocase(addr, len, listed_rcpts[i]))
			return true;
	return false;
}

bool
config_addr_may_relay(const struct config *cfg, const struct sockaddr *sa)
{
	FUZZ_CHECK(cfg == &g_cfg);
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

/* ---- the log: calls checked, nothing written ------------------------------------------ */

bool
log_start(enum log_level level, const char *event)
{
	FUZZ_CHECK(!R.log_open); /* the last line was finished */
	FUZZ_CHECK(level <= LOG_ERROR && event != NULL && event[0] != '\0');
	R.log_open = true;
	return true;
}

void
log_strn(const char *key, const char *val, size_t len)
{
	FUZZ_CHECK(R.log_open && key != NULL && (val != NULL || len == 0));
	touch(val, len);
}

void
log_str(const char *key, const char *val)
{
	log_strn(key, val ? val : "", val ? strlen(val) : 0);
}

void
log_u64(const char *key, uint64_t val)
{
	(void)val;
	FUZZ_CHECK(R.log_open && key != NULL);
}

void
log_i64(const char *key, int64_t val)
{
	(void)val;
	FUZZ_CHECK(R.log_open && key != NULL);
}

void
log_qid_format(uint64_t qid, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, qid);
}

void
log_qid(uint64_t qid)
{
	(void)qid;
	FUZZ_CHECK(R.log_open);
}

void
log_finish(void)
{
	FUZZ_CHECK(R.log_open);
	R.log_open = false;
}

void
log_flush(void)
{
}

void
log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char tmp[LOG_LINE_MAX];
	va_list ap;
	(void)level;
	FUZZ_CHECK(!R.log_open && event != NULL);
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
}

/* ---- AUTH: two users, a pool that checks when the driver says, a per-input throttle ---- */

static const struct {
	const char *user, *pass, *hash;
} users[] = {{"alice", "wonderland", "$fuzz$alice"}, {"bob@example.org", "hunter2", "$fuzz$bob"}};

/* The same client address (the session copies it into the job's owner data). */
static bool
sa_same(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET)
		return !memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			       &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr));
	return a->sa_family == AF_INET6 &&
	       !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
}

const char *
auth_users_hash(const struct auth_users *u, const char *user, size_t user_len, bool *known)
{
	FUZZ_CHECK(u == FAKE_USERS && R.c != NULL && known != NULL);
	FUZZ_CHECK(R.c->tls != NULL && R.c->submission); /* RFC 4954 4: PLAIN/LOGIN in TLS only */
	FUZZ_CHECK(user_len >= 1 && user_len <= SASL_NAME_MAX);
	touch(user, user_len);
	for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
		if (user_len == strlen(users[i].user) && !memcmp(user, users[i].user, user_len)) {
			*known = R.hash_known = true;
			return users[i].hash;
		}
	}
	*known = R.hash_known = false;
	return users[0].hash; /* an unknown user costs a check all the same */
}

/* A password "busy" finds the pool's queue full (454). */
int
shard_auth_submit(struct shard *sh, struct auth_job *job)
{
	FUZZ_CHECK(sh == &g_sh && job != NULL && R.job == NULL && R.c != NULL);
	FUZZ_CHECK(job->owner == (((uint64_t)R.c->gen << 32) | R.c->slot));
	FUZZ_CHECK(job->pass_len >= 1 && job->pass_len <= SASL_PASSWORD_MAX);
	FUZZ_CHECK(strnlen(job->hash, AUTH_HASH_MAX) < AUTH_HASH_MAX);
	if (job->pass_len == 4 && !memcmp(job->pass, "busy", 4))
		return -EAGAIN;
	R.job = job;
	R.job_known = R.hash_known;
	R.job_wait = R.commit_delay;
	return 0;
}

bool
auth_throttle_blocked(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
		      unsigned window_s)
{
	(void)now_s;
	(void)window_s;
	FUZZ_CHECK(sa_same(client, &R.peer));
	return R.auth_failures >= max_failures;
}

void
auth_throttle_fail(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
		   unsigned window_s)
{
	(void)now_s;
	(void)max_failures;
	(void)window_s;
	FUZZ_CHECK(sa_same(client, &R.peer));
	R.auth_failures++;
}

/* ---- TLS: plaintext through; the handshake completes on the first receive ------------- */

static int
fake_tls_on_recv(struct conn *c, const char *p, size_t n)
{
	if (!R.tls_up) {
		R.tls_up = true;
		smtp_session_event(c, SMTP_EV_TLS_DONE, NULL, 0, 0);
		if (c->closing)
			return 0;
	}
	conn_deliver(c, p, n);
	return 0;
}

static void
fake_tls_wire_out(struct conn *c, const char **p, size_t *n)
{
	*p = c->out;
	*n = c->out_len;
}

static void
fake_tls_wire_sent(struct conn *c, size_t n)
{
	FUZZ_CHECK(n <= c->out_inflight && n <= c->out_len);
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= (uint32_t)n;
}

static size_t
fake_tls_wire_pending(const struct conn *c)
{
	return c->out_len;
}

static void
fake_tls_release(struct conn *c)
{
	c->tls = NULL;
}

const struct transport_ops transport_tls = {
    .name = "tls (fuzz stand-in)",
    .on_recv = fake_tls_on_recv,
    .wire_out = fake_tls_wire_out,
    .wire_sent = fake_tls_wire_sent,
    .wire_pending = fake_tls_wire_pending,
    .release = fake_tls_release,
};

int
tls_conn_start(struct conn *c, struct ssl_ctx_st *ctx)
{
	static const char ready[] = "220 2.0.0 Ready to start TLS\r\n";
	FUZZ_CHECK(ctx == FAKE_CTX && c == R.c && c->tls == NULL);
	FUZZ_CHECK(c->tp == &transport_plain);
	q_sync();
	if (c->sess.greeted) /* STARTTLS: its 220 is the last reply in the clear */
		FUZZ_CHECK(R.q.len >= sizeof ready - 1 &&
			   !memcmp(R.q.p + R.q.len - (sizeof ready - 1), ready, sizeof ready - 1));
	R.q_at_starttls = R.q.len;
	R.tls_up = false;
	c->tls = (struct tls_conn *)&fake_tls_state;
	c->tp = &transport_tls;
	return 0;
}

void
tls_conn_describe(const struct conn *c, char *buf, size_t len)
{
	FUZZ_CHECK(c->tls != NULL && len > 0);
	snprintf(buf, len, "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
}

/* ---- io_uring: SQEs taken here, completed by the driver -------------------------------- */

struct io_uring_sqe *
loop_sqe(struct loop *l)
{
	FUZZ_CHECK(l == &g_sh.loop && R.nsqe < SQE_MAX);
	memset(&R.sqe[R.nsqe], 0, sizeof R.sqe[0]);
	return &R.sqe[R.nsqe++];
}

void
loop_buf_return(struct loop *l, unsigned bid)
{
	FUZZ_CHECK(l == &g_sh.loop && bid == 0 && R.buf_lent);
	R.buf_lent = false;
}

/* ---- the shard ----------------------------------------------------------------------- */

uint64_t
shard_qid_next(struct shard *sh)
{
	FUZZ_CHECK(sh == &g_sh);
	return (UINT64_C(0x5eed) << 40) | ++R.qid_counter;
}

const char *
shard_date(struct shard *sh)
{
	FUZZ_CHECK(sh == &g_sh);
	return "Mon, 01 Jan 2024 00:00:00 +0000";
}

void
shard_conn_dirty(struct shard *sh, struct conn *c)
{
	FUZZ_CHECK(sh == &g_sh && c == R.c);
	c->dirty = true;
}

static bool
sender_owned(const char *user, struct spool_str from)
{
	const char *at;
	if (from.len == 0)
		return true;
	if (strchr(user, '@'))
		return eq_nocase(from.p, from.len, user);
	at = memrchr(from.p, '@', from.len);
	if (at == NULL || at + 1 == from.p + from.len || at[1] == '[')
		return false;
	return eq_nocase(from.p, (size_t)(at - from.p), user) &&
	       config_domain_is_local(&g_cfg, at + 1, (size_t)(from.p + from.len - at - 1));
}

/* A recipient the session may take: local and known, postmaster, or relayed for a relay
 * client or an authenticated user (the sink takes all). */
static bool
rcpt_allowed(struct spool_str r)
{
	struct smtp_slice path = {r.p, r.len}, local, domain;
	if (g_sh.sink.enabled)
		return true;
	if (!smtp_path_domain(path, &local, &domain))
		return eq_nocase(r.p, r.len, "postmaster");
	if (domain.len > 0 && domain.p[0] != '[' &&
	    config_domain_is_local(&g_cfg, domain.p, domain.len))
		return eq_nocase(local.p, local.len, "postmaster") ||
		       config_recipient_exists(&g_cfg, r.p, r.len);
	return R.c->may_relay || R.c->sess.auth_user != NULL;
}

/* The record the session hands over, checked as the spool would store it. */
static void
record_check(const char *rec, size_t len)
{
	const struct conn *c = R.c;
	const struct smtp_session *s = &c->sess;
	struct spool_record_view v;
	struct spool_str r;
	size_t off = 0;
	uint32_t n = 0;

	FUZZ_CHECK(spool_record_decode(rec, len, &v) == (long)len);
	FUZZ_CHECK(v.qid == s->qid && v.qid != 0);
	FUZZ_CHECK(v.nrcpt >= 1 && v.nrcpt <= g_cfg.max_recipients && v.nrcpt == s->nrcpt);
	while (spool_record_rcpt_next(&v, &off, &r)) {
		FUZZ_CHECK(r.len > 0 && r.len <= 254);
		FUZZ_CHECK(rcpt_allowed(r)); /* no open relay */
		n++;
	}
	FUZZ_CHECK(n == v.nrcpt);
	FUZZ_CHECK(s->helo != NULL && v.helo.len == strlen(s->helo) &&
		   !memcmp(v.helo.p, s->helo, v.helo.len));
	FUZZ_CHECK(v.client.len == strlen(c->peer_ip) &&
		   !memcmp(v.client.p, c->peer_ip, v.client.len));
	FUZZ_CHECK(!!(v.flags & SPOOL_F_AUTH) == (s->auth_user != NULL));
	if (c->submission)
		FUZZ_CHECK(s->auth_user != NULL); /* RFC 6409 4.3 */
	if (s->auth_user && g_cfg.auth_sender_policy == CONFIG_SENDER_OWN)
		FUZZ_CHECK(sender_owned(s->auth_user, v.from));
	FUZZ_CHECK(v.msg_len >= 10 && !memcmp(v.msg, "Received: ", 10));
}

void
shard_commit(struct shard *sh, struct conn *c, char *rec, size_t len)
{
	static const int sink_status[] = {0, -EAGAIN, -EPERM};
	FUZZ_CHECK(sh == &g_sh && c == R.c && R.in_datain && rec != NULL);
	FUZZ_CHECK(R.handed == NULL && R.pending == NULL); /* one message at a time */
	FUZZ_CHECK(c->sess.state == SMTP_ST_COMMIT);
	spool_record_finish(rec, len); /* as shard.c does for the spool; the sink skips it */
	record_check(rec, len);
	R.handed = rec;
	R.handed_len = len;
	R.handed_qid = c->sess.qid;
	R.nhanded++;
	if (!sh->sink.enabled) {
		R.pending_wait = R.commit_delay;
		return;
	}
	/* the sink answers at once, inside the session's input loop (shard.c sink_commit) */
	R.commit_qid = R.handed_qid;
	smtp_session_event(c, SMTP_EV_COMMITTED, NULL, 0,
			   R.commit_fail ? sink_status[R.ncommit++ % 3] : 0);
}

void
shard_conn_begin(struct conn *c)
{
	FUZZ_CHECK(c == R.c);
	if (R.proxy) {
		/* transport_proxy parsed what came so far: the header, then the plaintext */
		struct proxy_info info;
		enum proxy_result r = proxy_parse(R.raw.p, R.raw.len, &info);
		FUZZ_CHECK(r == PROXY_DONE || r == PROXY_LOCAL);
		R.plain_off = info.len;
	}
	R.peer = c->peer;
	c->may_relay = config_addr_may_relay(&g_cfg, (struct sockaddr *)&c->peer);
	if (c->implicit_tls && tls_conn_start(c, g_cfg.tls_ctx) < 0) {
		conn_close(c);
		return;
	}
	smtp_session_event(c, SMTP_EV_CONNECTED, NULL, 0, 0);
}

/* shard.c conn_timer_fire */
static void
timer_fire(struct timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
	FUZZ_CHECK(c == R.c);
	if (c->closing)
		return;
	if (c->lingering) {
		conn_close(c);
		return;
	}
	smtp_session_event(c, SMTP_EV_TIMEOUT, NULL, 0, 0);
}

/* ---- replies ------------------------------------------------------------------------- */

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* "X.Y.Z " at the start of the text (RFC 3463): its class is the reply's. */
static void
enhanced_check(const char *line, size_t len)
{
	const char *t = line + 4, *end = line + len - 2;
	size_t i = 1;
	if (end - t < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.')
		return;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		for (i++; t + i < end && is_digit(t[i]); i++)
			d++;
		if (d == 0 || d > 3 || t + i >= end || t[i] != (part == 0 ? '.' : ' '))
			return;
	}
	FUZZ_CHECK(t[0] == line[0]);
}

static void
reply_line_check(const char *line, size_t len)
{
	static const char queued[] = "250 2.0.0 Ok: queued as ";
	FUZZ_CHECK(len >= 6 && len <= REPLY_LINE_MAX && line[len - 2] == '\r');
	FUZZ_CHECK(line[0] >= '2' && line[0] <= '5' && is_digit(line[1]) && is_digit(line[2]));
	FUZZ_CHECK(line[3] == ' ' || line[3] == '-');
	for (size_t i = 4; i < len - 2; i++)
		FUZZ_CHECK(line[i] >= 0x20 && line[i] < 0x7f);
	if (R.in_multi)
		FUZZ_CHECK(!memcmp(line, R.multi_code, 3));
	enhanced_check(line, len);
	R.in_multi = line[3] == '-';
	memcpy(R.multi_code, line, 3);
	if (line[3] == ' ' && len > sizeof queued - 1 && !memcmp(line, queued, sizeof queued - 1))
		R.n_queued_250++;
}

/* Appends what the session queued since the last look to q, and checks it line by line. */
static void
q_sync(void)
{
	struct conn *c = R.c;
	const char *lf;
	if (c == NULL)
		return;
	FUZZ_CHECK(R.q_seen <= c->out_len && c->out_len <= c->out_cap);
	if (c->out_len == R.q_seen)
		return;
	FUZZ_CHECK(!R.closed); /* nothing after the final reply (221, 421, ...) */
	buf_add(&R.q, c->out + R.q_seen, c->out_len - R.q_seen);
	R.q_seen = c->out_len;
	while ((lf = memchr(R.q.p + R.q_checked, '\n', R.q.len - R.q_checked)) != NULL) {
		size_t len = (size_t)(lf - (R.q.p + R.q_checked)) + 1;
		reply_line_check(R.q.p + R.q_checked, len);
		R.q_checked += len;
	}
	FUZZ_CHECK(R.q_checked == R.q.len); /* whole lines only */
	FUZZ_CHECK(R.q.len <= 8192 + REPLY_PER_BYTE * R.raw.len);
}

/* Lines of q from `from` that start with prefix. */
static unsigned
q_count(size_t from, const char *prefix)
{
	size_t plen = strlen(prefix);
	unsigned n = 0;
	for (size_t i = from; i < R.q.len;) {
		const char *lf = memchr(R.q.p + i, '\n', R.q.len - i);
		FUZZ_CHECK(lf != NULL);
		if ((size_t)(lf - R.q.p) + 1 - i >= plen && !memcmp(R.q.p + i, prefix, plen))
			n++;
		i = (size_t)(lf - R.q.p) + 1;
	}
	return n;
}

/* True when q from `from` starts with prefix. */
static bool
q_starts(size_t from, const char *prefix)
{
	size_t plen = strlen(prefix);
	return R.q.len - from >= plen && !memcmp(R.q.p + from, prefix, plen);
}

static void
closed_update(void)
{
	if (R.c && (R.c->sess.state == SMTP_ST_CLOSING || R.c->closing)) {
		q_sync();
		R.closed = true;
	}
}

/* ---- the model of the transaction --------------------------------------------------- */

/* RFC 5321 4.5.2: the '.' at a line start (the start of DATA, or after CRLF). */
static bool
data_bol(const char *d, size_t i)
{
	return i == 0 || (i >= 2 && d[i - 2] == '\r' && d[i - 1] == '\n');
}

/* Where the first CRLF "." CRLF of the DATA bytes starts (its '.'), or SIZE_MAX. */
static size_t
data_end_find(void)
{
	const char *d = R.data.p;
	size_t i = R.data_scanned > 2 ? R.data_scanned - 2 : 0;
	for (; i + 3 <= R.data.len; i++)
		if (d[i] == '.' && d[i + 1] == '\r' && d[i + 2] == '\n' && data_bol(d, i))
			return i;
	R.data_scanned = R.data.len;
	return SIZE_MAX;
}

/* The message the session must have handed over: the stored bytes after Received:. */
static void
handed_body_check(const char *body, size_t len, bool binary)
{
	struct spool_record_view v;
	FUZZ_CHECK(R.handed != NULL);
	FUZZ_CHECK(spool_record_decode(R.handed, R.handed_len, &v) == (long)R.handed_len);
	FUZZ_CHECK(!!(v.flags & SPOOL_F_BINARY) == binary);
	FUZZ_CHECK(v.msg_len > len && (len == 0 || !memcmp(v.msg + v.msg_len - len, body, len)));
	FUZZ_CHECK(len <= g_cfg.max_message_size);
	if (!binary) {
		FUZZ_CHECK(memchr(body, '\0', len) == NULL);
		for (size_t i = 0; i < len && g_cfg.bare_newline == CONFIG_BARE_NEWLINE_REJECT;
		     i++) {
			if (body[i] == '\n')
				FUZZ_CHECK(i > 0 && body[i - 1] == '\r');
			if (body[i] == '\r')
				FUZZ_CHECK(i + 1 < len && body[i + 1] == '\n');
		}
	}
}

/* The DATA bytes ended (the session left SMTP_ST_DATA): check against the model. */
static void
data_ended(size_t q0, bool handed)
{
	const char *x = R.data.p;
	size_t end = data_end_find(), blen = 0;
	bool bare = false, nul = false;
	const char *expect = NULL;
	char *body;

	/* The end is the first CRLF "." CRLF, exactly where the session stopped reading. */
	FUZZ_CHECK(end != SIZE_MAX && end + 3 == R.data.len);
	body = fuzz_dup(x, end);
	for (size_t i = 0; i < end; i++) {
		if (x[i] == '\n' && (i == 0 || x[i - 1] != '\r'))
			bare = true;
		if (x[i] == '\r' && (i + 1 == end || x[i + 1] != '\n'))
			bare = true;
		nul |= x[i] == '\0';
		if (x[i] == '.' && data_bol(x, i))
			continue; /* dot-stuffing undone */
		body[blen++] = x[i];
	}
	if (blen > g_cfg.max_message_size)
		expect = "552 ";
	else if (bare && g_cfg.bare_newline == CONFIG_BARE_NEWLINE_REJECT)
		expect = "554 ";
	else if (nul)
		expect = "554 ";
	if (expect) {
		FUZZ_CHECK(!handed && q_starts(q0, expect));
	} else {
		FUZZ_CHECK(handed);
		handed_body_check(body, blen, false);
	}
	free(body);
	R.data.len = 0;
	R.data_scanned = 0;
}

/* A BDAT chunk's bytes are all read (or it had none). */
static void
chunk_ended(size_t q0, bool handed, enum smtp_state after)
{
	char want[64];
	R.in_chunk = false;
	if (R.chunk_discard) {
		FUZZ_CHECK(!handed && (q_starts(q0, "503 ") || q_starts(q0, "554 ")));
		return;
	}
	if (R.bdat.len > g_cfg.max_message_size) {
		FUZZ_CHECK(!handed && q_starts(q0, "552 "));
		return;
	}
	if (R.chunk_last) {
		FUZZ_CHECK(handed);
		handed_body_check(R.bdat.p, R.bdat.len, true);
		return;
	}
	FUZZ_CHECK(!handed && after == SMTP_ST_RCPT);
	snprintf(want, sizeof want, "250 2.0.0 %zu octets received\r\n", R.bdat.len);
	FUZZ_CHECK(q_starts(q0, want));
}

static void
command_done(const char *p, size_t used, enum smtp_state before, enum smtp_state after, size_t q0,
	     bool handed)
{
	const struct smtp_session *s = &R.c->sess;
	struct smtp_cmd cmd;
	long r = smtp_parse_command(p, used, g_cfg.max_line_length, &cmd);
	if (r != (long)used)
		return; /* the rest of a line too long, or input dropped after STARTTLS */
	if (cmd.verb != SMTP_VERB_BDAT)
		FUZZ_CHECK(!handed);
	switch (cmd.verb) {
	case SMTP_VERB_DATA:
		if (after == SMTP_ST_DATA) {
			FUZZ_CHECK(before == SMTP_ST_RCPT && q_starts(q0, "354 "));
			R.data.len = 0;
			R.data_scanned = 0;
		}
		break;
	case SMTP_VERB_BDAT:
		R.in_chunk = true;
		R.chunk_size = cmd.bdat_size;
		R.chunk_last = cmd.bdat_last;
		R.chunk_discard = before != SMTP_ST_RCPT;
		R.chunk_got = 0;
		if (cmd.bdat_size == 0)
			chunk_ended(q0, handed, after);
		else
			FUZZ_CHECK(after == SMTP_ST_BDAT && R.q.len == q0);
		break;
	case SMTP_VERB_QUIT:
		FUZZ_CHECK(after == SMTP_ST_CLOSING && q_starts(q0, "221 "));
		break;
	case SMTP_VERB_MAIL:
		if (q_starts(q0, "250 ")) { /* accepted */
			FUZZ_CHECK(before == SMTP_ST_READY && after == SMTP_ST_MAIL);
			if (R.c->submission)
				FUZZ_CHECK(s->auth_user != NULL);
		}
		break;
	case SMTP_VERB_RCPT:
		FUZZ_CHECK(s->nrcpt <= g_cfg.max_recipients);
		break;
	default:
		break;
	}
}

static void
datain_done(const char *p, size_t n, size_t used, enum smtp_state before, bool skip_before,
	    size_t q0, bool handed)
{
	enum smtp_state after = R.c->sess.state;

	FUZZ_CHECK(n > 0 && p != NULL && used <= n);
	/* the consumed bytes continue the client's stream, none skipped, none twice */
	FUZZ_CHECK(R.plain_off + R.consumed + used <= R.raw.len);
	FUZZ_CHECK(!memcmp(p, R.raw.p + R.plain_off + R.consumed, used));
	R.consumed += used;
	switch (before) {
	case SMTP_ST_GREET:
		FUZZ_CHECK(used == n && after == SMTP_ST_CLOSING && q_starts(q0, "554 "));
		break;
	case SMTP_ST_COMMIT:
	case SMTP_ST_AUTH_CHECK:
	case SMTP_ST_CLOSING:
		FUZZ_CHECK(used == 0 && R.q.len == q0 && after == before);
		break;
	case SMTP_ST_DATA:
		buf_add(&R.data, p, used);
		if (after == SMTP_ST_DATA) {
			FUZZ_CHECK(data_end_find() == SIZE_MAX && !handed);
			FUZZ_CHECK(used == n || used == SESSION_FEED_MAX);
		} else {
			data_ended(q0, handed);
		}
		break;
	case SMTP_ST_BDAT:
		FUZZ_CHECK(R.in_chunk && used > 0);
		R.chunk_got += used;
		FUZZ_CHECK(R.chunk_got <= R.chunk_size);
		if (!R.chunk_discard)
			buf_add(&R.bdat, p, used);
		if (after == SMTP_ST_BDAT) {
			FUZZ_CHECK(R.chunk_got < R.chunk_size && !handed);
			FUZZ_CHECK(used == n || used == SESSION_FEED_MAX);
		} else {
			FUZZ_CHECK(R.chunk_got == R.chunk_size);
			chunk_ended(q0, handed, after);
		}
		break;
	case SMTP_ST_AUTH:
		FUZZ_CHECK(!handed);
		break;
	case SMTP_ST_INIT:
	case SMTP_ST_READY:
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
		if (!skip_before && after != SMTP_ST_TLS && used > 0)
			command_done(p, used, before, after, q0, handed);
		else
			FUZZ_CHECK(!handed);
		break;
	default:
		FUZZ_CHECK(!"DATAIN in a state that reads nothing");
	}
}

/* Whatever the session holds stays within what the config allows. */
static void
bounds_check(void)
{
	const struct conn *c = R.c;
	const struct smtp_session *s = &c->sess;
	const struct config *cfg = &g_cfg;
	size_t arena_max = ((size_t)cfg->max_recipients + 1) * 256;

	FUZZ_CHECK(s->state <= SMTP_ST_CLOSING);
	FUZZ_CHECK(s->nrcpt <= cfg->max_recipients);
	FUZZ_CHECK(s->rcpt_cap <= (cfg->max_recipients < 8 ? 8 : 2 * cfg->max_recipients));
	FUZZ_CHECK(s->arena_len <= arena_max &&
		   s->arena_cap <= (arena_max < 256 ? 512 : 2 * arena_max));
	FUZZ_CHECK(s->errors <= cfg->max_errors);
	FUZZ_CHECK(s->helo == NULL || strlen(s->helo) <= 255);
	FUZZ_CHECK(s->auth_login == NULL ||
		   ((s->state == SMTP_ST_AUTH || s->state == SMTP_ST_CLOSING) &&
		    strlen(s->auth_login) <= SASL_NAME_MAX));
	FUZZ_CHECK(s->auth_user == NULL || (c->tls != NULL && c->submission));
	if (s->state == SMTP_ST_AUTH || s->state == SMTP_ST_AUTH_CHECK)
		FUZZ_CHECK(c->tls != NULL && c->submission && s->auth_user == NULL);
	if (s->state == SMTP_ST_AUTH_CHECK)
		FUZZ_CHECK(R.job != NULL);
	if (s->rec) {
		FUZZ_CHECK(s->rec_len >= s->body_off && s->body_off >= s->msg_off);
		FUZZ_CHECK(s->rec_len - s->body_off <= cfg->max_message_size);
		FUZZ_CHECK(s->rec_cap <=
			   2 * (s->body_off + cfg->max_message_size + SESSION_FEED_MAX + 64));
	}
	if (s->state == SMTP_ST_DATA || (s->state == SMTP_ST_BDAT && !s->bdat_discard))
		FUZZ_CHECK(s->rec != NULL || s->too_big);
	if (s->state == SMTP_ST_COMMIT && !g_sh.sink.enabled)
		FUZZ_CHECK(R.handed != NULL || R.pending != NULL);
	FUZZ_CHECK(c->in_len <= CONN_IN_HARD_BYTES || c->in_len <= R.last_chunk);
}

/* Every event reaches the session through here (the link wraps smtp_session_event). */
size_t
__wrap_smtp_session_event(struct conn *c, enum smtp_event ev, const char *p, size_t n, int status)
{
	enum smtp_state before = c->sess.state;
	bool skip_before = c->sess.skip_line, outer = !R.in_datain;
	unsigned handed_before = R.nhanded;
	size_t q0, used;

	FUZZ_CHECK(c == R.c && !c->closing);
	q_sync();
	q0 = R.q.len;
	if (ev == SMTP_EV_TLS_DONE) /* RFC 3207 4.2: nothing answered in the clear after 220 */
		FUZZ_CHECK(R.q.len == R.q_at_starttls &&
			   (before == SMTP_ST_TLS || before == SMTP_ST_CLOSING));
	if (ev == SMTP_EV_DATAIN)
		R.in_datain = true;
	used = __real_smtp_session_event(c, ev, p, n, status);
	if (ev == SMTP_EV_DATAIN && outer)
		R.in_datain = false;
	q_sync();
	if (ev == SMTP_EV_DATAIN) {
		bool handed = R.nhanded != handed_before;
		FUZZ_CHECK(R.nhanded <= handed_before + 1);
		datain_done(p, n, used, before, skip_before, q0, handed);
		if (handed && !g_sh.sink.enabled) {
			R.pending = R.handed;
			R.pending_qid = R.handed_qid;
		} else if (handed) {
			free(R.handed);
		}
		R.handed = NULL;
	} else {
		FUZZ_CHECK(used == 0);
	}
	if (outer && (c->sess.state == SMTP_ST_READY || c->sess.state == SMTP_ST_INIT ||
		      c->sess.state == SMTP_ST_COMMIT)) {
		R.bdat.len = 0; /* the transaction is over */
		R.data.len = 0;
		R.data_scanned = 0;
	}
	if (ev == SMTP_EV_COMMITTED) {
		char want[64];
		FUZZ_CHECK(before == SMTP_ST_COMMIT);
		if (status == 0) {
			snprintf(want, sizeof want, "250 2.0.0 Ok: queued as %016" PRIx64 "\r\n",
				 R.commit_qid);
			R.n_commit_ok++;
		} else {
			snprintf(want, sizeof want, "%s ",
				 status == -EAGAIN  ? "451 4.3.0"
				 : status == -EPERM ? "554 5.6.0"
						    : "451 4.3.0");
		}
		FUZZ_CHECK(q_starts(q0, want));
	}
	FUZZ_CHECK(q_count(q0, "235 ") == 0); /* only a password check that came back says 235 */
	bounds_check();
	closed_update();
	return used;
}

/* ---- the driver: the kernel's side of the connection ---------------------------------- */

static bool
release_check(void)
{
	struct conn *c = R.c;
	if (!(c->closing && c->ops == 0))
		return false;
	/* shard.c shard_conn_release_now */
	FUZZ_CHECK(!R.recv_in_flight && !R.send_in_flight && R.ncancel == 0 && R.nclose == 0);
	q_sync();
	timer_disarm(&g_sh.loop.wheel, &c->timer);
	conn_limits_release(&c->ticket);
	conn_free_buffers(c);
	free(c);
	R.c = NULL;
	return true;
}

static void
ring_take(void)
{
	struct conn *c = R.c;
	for (unsigned i = 0; i < R.nsqe; i++) {
		const struct io_uring_sqe *sqe = &R.sqe[i];
		uint64_t ud = sqe->user_data;
		FUZZ_CHECK(loop_ud_slot(ud) == c->slot && loop_ud_gen(ud) == c->gen);
		switch (loop_ud_op(ud)) {
		case OP_RECV:
			FUZZ_CHECK(!R.recv_in_flight && sqe->opcode == IORING_OP_RECV);
			R.recv_in_flight = true;
			break;
		case OP_SEND:
			FUZZ_CHECK(!R.send_in_flight && sqe->opcode == IORING_OP_SEND &&
				   sqe->len > 0);
			R.send_in_flight = true;
			R.send_p = (const char *)(uintptr_t)sqe->addr;
			R.send_len = sqe->len;
			break;
		case OP_CANCEL:
			FUZZ_CHECK(sqe->addr == loop_ud(OP_RECV, c->slot, c->gen));
			R.ncancel++;
			break;
		case OP_CLOSE:
			FUZZ_CHECK(sqe->opcode == IORING_OP_CLOSE && R.nclose == 0);
			R.nclose++;
			break;
		default:
			FUZZ_CHECK(!"an operation a connection does not start");
		}
	}
	R.nsqe = 0;
}

/* The multishot recv ends: EOF (0) or cancelled. */
static void
recv_final(int res)
{
	struct io_uring_cqe cqe = {0};
	FUZZ_CHECK(R.recv_in_flight);
	cqe.user_data = loop_ud(OP_RECV, R.c->slot, R.c->gen);
	cqe.res = res;
	R.recv_in_flight = false;
	conn_on_recv(R.c, &cqe);
}

static void
send_complete(void)
{
	size_t res = R.send_len;
	FUZZ_CHECK(R.send_in_flight);
	if (R.slow_sends && res > 1)
		res = 1 + (R.nsend * 7 + res) % res; /* a short send: the rest goes again */
	R.nsend++;
	q_sync();
	/* the wire gets what was queued, in order, from the buffer the send was given */
	FUZZ_CHECK(R.q_sent + res <= R.q.len);
	FUZZ_CHECK(!memcmp(R.send_p, R.q.p + R.q_sent, res));
	R.q_sent += res;
	R.send_in_flight = false;
	conn_on_send(R.c, (int)res);
	R.q_seen = R.c->out_len; /* the sent bytes left c->out (all of it when closing) */
}

/* Completes what the kernel would now: cancels and closes, the flush of the turn, and sends
 * unless they are slow. Returns false once the connection is released. */
static bool
settle(bool sends)
{
	for (int guard = 0; guard < (1 << 16); guard++) { /* short sends take turns */
		struct conn *c = R.c;
		ring_take();
		if (release_check())
			return false;
		if (R.ncancel > 0) {
			R.ncancel--;
			FUZZ_CHECK(R.recv_in_flight); /* conn.c cancels only an armed recv */
			recv_final(-ECANCELED);
			conn_on_op_done(c);
		} else if (R.nclose > 0) {
			R.nclose--;
			conn_on_op_done(c);
		} else if (c->dirty) {
			conn_flush(c);
			continue;
		} else if (R.send_in_flight && sends) {
			send_complete();
		} else {
			FUZZ_CHECK(c->recv_armed == R.recv_in_flight);
			closed_update();
			return true;
		}
		if (release_check())
			return false;
	}
	FUZZ_CHECK(!"the connection does not settle");
	return false;
}

/* The spool settled the message (shard.c shard_spool_done). */
static void
commit_settle(void)
{
	char *rec = R.pending;
	struct conn *c = R.c;
	int status = R.commit_fail && R.ncommit++ % 2 == 1 ? -EIO : 0;
	R.pending = NULL;
	if (c && !c->closing && c->sess.state == SMTP_ST_COMMIT) {
		R.commit_qid = R.pending_qid;
		smtp_session_event(c, SMTP_EV_COMMITTED, NULL, 0, status);
		conn_resume(c);
	}
	free(rec);
}

/* The pool hands the check back (shard.c shard_auth_take): to the session if its connection is
 * still there, else with no connection. */
static void
auth_job_settle(void)
{
	struct auth_job *j = R.job;
	struct conn *c = R.c;
	bool ok = false, waiting;
	size_t q0;
	R.job = NULL;
	for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
		if (!strcmp(j->hash, users[i].hash))
			ok = j->pass_len == strlen(users[i].pass) &&
			     !memcmp(j->pass, users[i].pass, j->pass_len);
	j->ok = ok; /* auth_pool_check_crypt's contract: the result, and the password wiped */
	explicit_bzero(j->pass, sizeof j->pass);
	ok = ok && R.job_known;
	if (c && j->owner != (((uint64_t)c->gen << 32) | c->slot))
		c = NULL;
	waiting = c && !c->closing && c->sess.state == SMTP_ST_AUTH_CHECK;
	q_sync();
	q0 = R.q.len;
	smtp_session_auth_done(&g_sh, c, j); /* frees j; may read the input that waited */
	if (R.c == NULL)
		return;
	q_sync();
	if (waiting) {
		FUZZ_CHECK(q_starts(q0, ok ? "235 " : "535 "));
		FUZZ_CHECK(ok == (R.c->sess.auth_user != NULL));
	} else {
		FUZZ_CHECK(R.q.len == q0); /* nothing said to a session that moved on */
	}
	FUZZ_CHECK(q_count(q0, "235 ") == (waiting && ok));
	bounds_check();
	closed_update();
}

static void
timer_advance(void)
{
	uint64_t when = R.c->timer.expire_ms;
	FUZZ_CHECK(R.c->timer.armed);
	if (when < g_sh.loop.now_ms)
		when = g_sh.loop.now_ms;
	g_sh.loop.now_ms = when + TIMER_TICK_MS;
	timer_wheel_advance(&g_sh.loop.wheel, g_sh.loop.now_ms);
}

static bool
can_deliver(void)
{
	const struct conn *c = R.c;
	return c && !c->closing && R.recv_in_flight && c->recv_armed && !c->recv_cancelling;
}

static void
deliver(const uint8_t *p, size_t n)
{
	struct io_uring_cqe cqe = {0};
	char *chunk = fuzz_dup(p, n); /* exactly n bytes: ASan sees a read past them */

	buf_add(&R.raw, p, n);
	R.last_chunk = n;
	g_sh.loop.bufs = chunk;
	g_sh.loop.buf_size = (unsigned)n;
	g_sh.loop.nbufs = 1;
	cqe.user_data = loop_ud(OP_RECV, R.c->slot, R.c->gen);
	cqe.res = (int)n;
	cqe.flags = IORING_CQE_F_BUFFER | IORING_CQE_F_MORE;
	R.buf_lent = true;
	conn_on_recv(R.c, &cqe);
	FUZZ_CHECK(!R.buf_lent);
	g_sh.loop.bufs = NULL;
	free(chunk);
}

static void
run_begin(uint8_t h0, uint8_t h1, uint8_t h2)
{
	struct conn *c;
	static uint32_t gen;

	memset(&R, 0, sizeof R);
	cfg_fill(h0, h1, h2);
	R.relay = h0 & 0x10;
	R.submission = (h0 & 0x20) && g_cfg.auth_users;
	R.implicit_tls = (h0 & 0x40) && g_cfg.tls_ctx;
	R.proxy = h0 & 0x80;
	R.sink = h1 & 2;
	R.commit_fail = h1 & 1;
	R.commit_delay = (h1 >> 2) & 3;
	R.slow_sends = h1 & 0x10;
	R.ending = (h1 >> 5) & 3;
	R.greet_wait = h2 & 1;
	R.listed = h2 & 4;
	R.v6 = h2 & 8;
	R.event_chunk = (h2 >> 4) & 7;
	R.event_stop = h2 & 0x80;

	g_sh.cfg = &g_cfg;
	g_sh.sink.enabled = R.sink;
	if (g_sh.scratch == NULL) {
		g_sh.scratch_size = 64 * 1024 + 64; /* as shard.c allocates it */
		g_sh.scratch = malloc(g_sh.scratch_size);
		FUZZ_CHECK(g_sh.scratch != NULL);
	}
	g_sh.loop.now_ms = NOW0_MS;
	timer_wheel_init(&g_sh.loop.wheel, NOW0_MS);

	/* shard.c shard_conn_new and shard_on_accept */
	c = calloc(1, sizeof *c);
	FUZZ_CHECK(c != NULL);
	R.c = c;
	c->slot = 3;
	c->gen = (++gen & 0xffffff) ? gen & 0xffffff : ++gen;
	c->fd = -1;
	c->shard = &g_sh;
	c->tp = &transport_plain;
	c->out = c->out_inline;
	c->out_cap = CONN_OUT_INLINE;
	c->timer.fn = timer_fire;
	c->connected_ms = NOW0_MS;
	c->session_deadline_ms = NOW0_MS + (uint64_t)g_cfg.timeout_session * 1000;
	c->deadline_ms = UINT64_MAX;
	if (R.v6) {
		struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&c->peer;
		sa->sin6_family = AF_INET6;
		inet_pton(AF_INET6, R.relay ? "::1" : "2001:db8::25", &sa->sin6_addr);
		sa->sin6_port = htons(40000);
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&c->peer;
		sa->sin_family = AF_INET;
		inet_pton(AF_INET, R.relay ? "127.0.0.1" : "192.0.2.25", &sa->sin_addr);
		sa->sin_port = htons(40000);
	}
	listen_addr_text((struct sockaddr *)&c->peer, c->peer_ip, sizeof c->peer_ip, &c->peer_port);
	c->implicit_tls = R.implicit_tls;
	c->submission = R.submission;
	conn_recv_update(c);
	if (R.proxy)
		conn_proxy_start(c, CONN_PROXY_TIMEOUT_MS);
	else
		shard_conn_begin(c);
}

/* After the input: let the spool settle, the chosen ending, then EOF or the timer until the
 * connection is gone. */
static void
run_end(void)
{
	if (R.c && R.pending) {
		commit_settle();
		if (R.c)
			settle(true);
	}
	if (R.c)
		settle(true);
	if (R.c && !R.c->closing && (R.ending == 2 || R.ending == 3)) {
		smtp_session_event(R.c, SMTP_EV_STOP, NULL, 0, 0);
		settle(true);
	}
	if (R.c && (R.ending == 1 || R.ending == 3)) {
		if (R.pending)
			commit_settle();
		if (R.c && R.c->timer.armed)
			timer_advance();
		if (R.c)
			settle(true);
	}
	for (size_t i = 0; i < DRAIN_STEPS + R.raw.len && R.c; i++) {
		if (R.pending)
			commit_settle();
		else if (R.job)
			auth_job_settle();
		else if (can_deliver())
			recv_final(0); /* the client closes */
		else if (R.c->timer.armed)
			timer_advance();
		else
			FUZZ_CHECK(!"a connection that nothing will ever close");
		if (R.c)
			settle(true);
	}
	FUZZ_CHECK(R.c == NULL); /* every connection ends */
	if (R.job)
		auth_job_settle(); /* a check that outlived its connection */
	free(R.pending);
	R.pending = NULL;
	/* each success answered once with its 250, and only those */
	FUZZ_CHECK(R.n_queued_250 == R.n_commit_ok);
	FUZZ_CHECK(R.q_sent <= R.q.len);
	FUZZ_CHECK(!R.log_open);
	buf_free(&R.raw);
	buf_free(&R.q);
	buf_free(&R.data);
	buf_free(&R.bdat);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_chunks ch;
	unsigned nchunk = 0;
	uint8_t h0, h1, h2;

	if (size < 3)
		return 0;
	h0 = data[0];
	h1 = data[1];
	h2 = data[2];
	data += 3;
	size -= 3;
	fuzz_chunks_init(&ch, &data, &size);
	run_begin(h0, h1, h2);
	if (R.c)
		settle(!R.slow_sends);
	if (R.c && R.greet_wait && R.c->sess.state == SMTP_ST_GREET) {
		timer_advance();
		if (R.c)
			settle(!R.slow_sends);
	}
	while (size > 0 && R.c) {
		size_t n;
		if (!can_deliver()) {
			/* reading paused (a commit, or too much input kept): what would resume it
			 */
			if (R.pending)
				commit_settle();
			else if (R.job)
				auth_job_settle();
			else if (R.send_in_flight)
				send_complete();
			else
				break;
			if (R.c)
				settle(!R.slow_sends);
			continue;
		}
		n = fuzz_chunks_next(&ch, size);
		deliver(data, n);
		data += n;
		size -= n;
		nchunk++;
		if (R.c && R.slow_sends && R.send_in_flight)
			send_complete(); /* the send of the last turn completes after this recv */
		if (R.c && !release_check())
			settle(!R.slow_sends);
		if (R.c && R.pending && R.pending_wait-- == 0) {
			commit_settle();
			if (R.c)
				settle(!R.slow_sends);
		}
		if (R.c && R.job && R.job_wait-- == 0) {
			auth_job_settle();
			if (R.c)
				settle(!R.slow_sends);
		}
		if (R.c && nchunk == R.event_chunk && !R.c->closing) {
			if (R.event_stop)
				smtp_session_event(R.c, SMTP_EV_STOP, NULL, 0, 0);
			else if (R.c->timer.armed)
				timer_advance();
			if (R.c)
				settle(!R.slow_sends);
		}
	}
	run_end();
	return 0;
}
