#include "server/smtp_session.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/rec_buf.h"
#include "server/assert.h"
#include "server/auth.h"
#include "server/auth_pool.h"
#include "server/conn.h"
#include "server/log.h"
#include "server/shard_impl.h"
#include "server/sasl.h"
#include "server/smtp_parse.h"
#include "server/tls.h"

#define REPLY(c, lit) conn_reply_lit(c, lit)
#define HELO_MAX 255
#define FEED_MAX (64 * 1024) /* DATA/BDAT bytes handled per step (bounds buffer growth) */
#define RECEIVED_MAX 1536
#define TLS_DESCRIBE_MAX 160

/* States in which a command line is read (the others consume bytes, or none). */
#define ST(x) (1u << SMTP_ST_##x)
#define ST_ANY_CMD (ST(INIT) | ST(READY) | ST(MAIL) | ST(RCPT))

static const struct config *
cfg_of(struct conn *c)
{
	return c->shard->cfg;
}

static void
log_client(struct conn *c)
{
	log_str("client", c->peer_ip);
}

static void
log_reject(struct conn *c, const char *reason, const char *reply, size_t reply_len)
{
	c->sess.n_rejected++;
	if (!log_start(LOG_INFO, "reject"))
		return;
	log_client(c);
	if (c->sess.qid)
		log_qid(c->sess.qid);
	log_str("reason", reason);
	/* the reply without its CRLF */
	log_strn("reply", reply, reply_len >= 2 ? reply_len - 2 : reply_len);
	log_finish();
}

#define REJECT_LOG(c, reason, lit) log_reject((c), (reason), "" lit, sizeof(lit) - 1)

#define REJECT(c, reason, lit)                                                                 \
	do {                                                                                   \
		REPLY(c, lit);                                                                 \
		log_reject(c, reason, lit, sizeof(lit) - 1);                                  \
	} while (0)

/* Counts a client error; past max_errors the session ends (RFC 5321 4.3.2 allows 421). */
static bool
session_error(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	if (++s->errors < cfg_of(c)->max_errors)
		return false;
	conn_replyf(c, "421 4.7.0 %s Error: too many errors\r\n", cfg_of(c)->hostname);
	REJECT_LOG(c, "too_many_errors", "421 4.7.0 too many errors\r\n");
	conn_close_after_flush(c);
	return true;
}

static void
txn_reset(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	rec_buf_put(s->rec);
	s->rec = NULL;
	s->rec_len = s->rec_cap = 0;
	s->nrcpt = 0;
	s->arena_len = 0;
	s->from_len = 0;
	s->qid = 0;
	s->size_declared = 0;
	s->smtputf8 = s->body8 = s->bdat_used = s->too_big = s->bad_txn = 0;
	s->bdat_last = s->bdat_discard = 0;
	if (s->state != SMTP_ST_CLOSING)
		s->state = s->helo ? SMTP_ST_READY : SMTP_ST_INIT;
}

/* A transaction is over; a pending graceful stop may now close the session. */
static void
txn_done(struct conn *c)
{
	txn_reset(c);
	if (c->sess.stop_requested && c->sess.state != SMTP_ST_CLOSING) {
		conn_replyf(c, "421 4.3.2 %s Service shutting down\r\n", cfg_of(c)->hostname);
		conn_close_after_flush(c);
	}
}

static void
session_greet(struct conn *c)
{
	c->sess.state = SMTP_ST_INIT;
	c->sess.greeted = 1;
	conn_replyf(c, "220 %s ESMTP ringmx\r\n", cfg_of(c)->hostname);
	conn_set_timeout(c, cfg_of(c)->timeout_greeting);
}

static uint32_t
arena_add(struct smtp_session *s, const char *p, size_t n)
{
	/* Allocated even for an empty string (the null sender "<>"), so arena is never NULL
	 * once a transaction has begun. */
	if (s->arena == NULL || (size_t)s->arena_len + n > s->arena_cap) {
		size_t cap = s->arena_cap ? s->arena_cap : 512;
		while (cap < (size_t)s->arena_len + n)
			cap *= 2;
		char *a = realloc(s->arena, cap);
		ASSERT(a != NULL);
		s->arena = a;
		s->arena_cap = (uint32_t)cap;
	}
	uint32_t off = s->arena_len;
	if (n > 0)
		memcpy(s->arena + off, p, n);
	s->arena_len += (uint32_t)n;
	return off;
}

/* ---- HELO / EHLO ---------------------------------------------------------------------- */

/* RFC 3207: STARTTLS is offered where the config has TLS for plain listeners (always on a
 * submission listener, whose AUTH needs it), and only while the connection is in the clear. */
static bool
starttls_offered(struct conn *c)
{
	const struct config *cfg = cfg_of(c);
	return (cfg->starttls || c->submission) && cfg->tls_ctx != NULL && c->tls == NULL;
}

/* AUTH exists on submission listeners (a reload that dropped [auth] leaves the listener, a
 * restart key, without users: then it does not). */
static bool
auth_available(struct conn *c)
{
	return c->submission && cfg_of(c)->auth_users != NULL;
}

/* RFC 4954 4 and RFC 8314 4: PLAIN and LOGIN send the password as it is, so they are offered
 * only over TLS. */
static bool
auth_offered(struct conn *c)
{
	return auth_available(c) && c->tls != NULL;
}

static void
cmd_helo(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	txn_reset(c); /* RFC 5321 4.1.4: HELO/EHLO resets any transaction */
	size_t n = cmd->arg.len < HELO_MAX ? cmd->arg.len : HELO_MAX;
	char *h = realloc(s->helo, n + 1);
	ASSERT(h != NULL);
	memcpy(h, cmd->arg.p, n);
	h[n] = '\0';
	s->helo = h;
	s->state = SMTP_ST_READY;
	s->esmtp = cmd->verb == SMTP_VERB_EHLO;
	if (!s->esmtp) {
		conn_replyf(c, "250 %s\r\n", cfg->hostname);
		return;
	}
	conn_replyf(c,
		    "250-%s\r\n"
		    "250-PIPELINING\r\n"
		    "250-SIZE %" PRIu64 "\r\n"
		    "%s"
		    "%s"
		    "250-ENHANCEDSTATUSCODES\r\n"
		    "250-8BITMIME\r\n"
		    "250-SMTPUTF8\r\n"
		    "250 CHUNKING\r\n",
		    cfg->hostname, cfg->max_message_size,
		    starttls_offered(c) ? "250-STARTTLS\r\n" : "",
		    auth_offered(c) ? "250-AUTH PLAIN LOGIN\r\n" : "");
}

/* ---- MAIL ----------------------------------------------------------------------------- */

/* Applies MAIL parameters (RFC 1870 SIZE, 6152 BODY, 6531 SMTPUTF8). Returns false after
 * replying with the error. */
static bool
mail_params(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	struct smtp_param prm;
	size_t pos = 0;
	int r;
	while ((r = smtp_param_next(cmd->params, &pos, &prm)) > 0) {
		if (!s->esmtp) {
			REJECT(c, "param_without_ehlo", "555 5.5.4 Error: parameters need EHLO\r\n");
			return false;
		}
		if (smtp_slice_eq(prm.key, "SIZE")) {
			uint64_t v = 0;
			if (prm.value.len == 0 || prm.value.len > 19)
				goto syntax;
			for (size_t i = 0; i < prm.value.len; i++) {
				if (prm.value.p[i] < '0' || prm.value.p[i] > '9')
					goto syntax;
				v = v * 10 + (uint64_t)(prm.value.p[i] - '0');
			}
			if (v > cfg_of(c)->max_message_size) {
				REJECT(c, "size_declared",
				       "552 5.3.4 Error: message size exceeds fixed maximum\r\n");
				return false;
			}
			s->size_declared = v;
		} else if (smtp_slice_eq(prm.key, "BODY")) {
			if (smtp_slice_eq(prm.value, "8BITMIME"))
				s->body8 = 1;
			else if (!smtp_slice_eq(prm.value, "7BIT"))
				goto syntax;
		} else if (smtp_slice_eq(prm.key, "SMTPUTF8")) {
			if (prm.value.len != 0)
				goto syntax;
			s->smtputf8 = 1;
		} else {
			REJECT(c, "param_unsupported", "555 5.5.4 Error: unsupported parameter\r\n");
			return false;
		}
	}
	if (r == 0)
		return true;
syntax:
	REJECT(c, "param_syntax", "501 5.5.4 Error: bad parameter syntax\r\n");
	return false;
}

/*
 * [auth] sender_policy = own: the addresses an authenticated user owns. A user name with an '@'
 * is an address and owns itself; another name owns name@D for every local domain D. Compared
 * without regard to case. The null sender is allowed (bounces and receipts, RFC 3461 / 8098).
 */
static bool
sender_owned(struct conn *c, struct smtp_slice path)
{
	const char *user = c->sess.auth_user;
	struct smtp_slice local, domain;
	ASSERT(user != NULL);
	if (path.len == 0)
		return true;
	if (strchr(user, '@') != NULL)
		return smtp_slice_eq(path, user);
	if (!smtp_path_domain(path, &local, &domain) || domain.len == 0 || domain.p[0] == '[')
		return false;
	return smtp_slice_eq(local, user) &&
	       config_domain_is_local(cfg_of(c), domain.p, domain.len);
}

static void
cmd_mail(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	if (s->state == SMTP_ST_INIT) {
		REJECT(c, "mail_before_helo", "503 5.5.1 Error: send HELO/EHLO first\r\n");
		session_error(c);
		return;
	}
	if (s->state != SMTP_ST_READY) {
		REJECT(c, "nested_mail", "503 5.5.1 Error: nested MAIL command\r\n");
		session_error(c);
		return;
	}
	if (c->submission && s->auth_user == NULL) {
		/* RFC 6409 4.3 (4954 6): a submission server takes mail only from whom it knows */
		if (c->tls == NULL)
			REJECT(c, "auth_required",
			       "530 5.7.0 Error: must issue a STARTTLS command first\r\n");
		else
			REJECT(c, "auth_required", "530 5.7.0 Error: authentication required\r\n");
		session_error(c);
		return;
	}
	if (!mail_params(c, cmd)) {
		txn_reset(c);
		session_error(c);
		return;
	}
	if (cmd->path_utf8 && !s->smtputf8) {
		/* RFC 6531 3.4: a UTF-8 address needs the SMTPUTF8 parameter. */
		txn_reset(c);
		REJECT(c, "utf8_without_smtputf8",
		       "553 5.6.7 Error: UTF-8 address needs the SMTPUTF8 parameter\r\n");
		session_error(c);
		return;
	}
	if (s->auth_user && cfg_of(c)->auth_sender_policy == CONFIG_SENDER_OWN &&
	    !sender_owned(c, cmd->path)) {
		txn_reset(c);
		REJECT(c, "sender_not_owned",
		       "553 5.7.1 Error: sender address not owned by the authenticated user\r\n");
		session_error(c);
		return;
	}
	s->from_off = arena_add(s, cmd->path.p, cmd->path.len);
	s->from_len = (uint32_t)cmd->path.len;
	s->state = SMTP_ST_MAIL;
	REPLY(c, "250 2.1.0 Ok\r\n");
}

/* ---- RCPT ----------------------------------------------------------------------------- */

/* Decides whether a recipient is acceptable: local domain (and known), or relay allowed.
 * Returns NULL when it is, else the reply to send (and its log reason in *why). */
static const char *
rcpt_policy(struct conn *c, struct smtp_slice path, const char **why)
{
	struct smtp_slice local, domain;
	const struct config *cfg = cfg_of(c);
	if (c->shard->sink.enabled)
		return NULL;
	if (!smtp_path_domain(path, &local, &domain))
		return NULL; /* "postmaster" with no domain: always accepted (RFC 5321 4.5.1) */
	if (domain.len > 0 && domain.p[0] != '[' &&
	    config_domain_is_local(cfg, domain.p, domain.len)) {
		if (smtp_slice_eq(local, "postmaster") ||
		    config_recipient_exists(cfg, path.p, path.len))
			return NULL;
		*why = "unknown_recipient";
		return "550 5.1.1 Error: recipient address rejected: user unknown\r\n";
	}
	if (c->may_relay || c->sess.auth_user != NULL)
		return NULL; /* relay_networks, or an authenticated user */
	*why = "relay_denied";
	return "554 5.7.1 Error: relay access denied\r\n";
}

static void
cmd_rcpt(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	if (s->state != SMTP_ST_MAIL && s->state != SMTP_ST_RCPT) {
		REJECT(c, "rcpt_without_mail", "503 5.5.1 Error: need MAIL command\r\n");
		session_error(c);
		return;
	}
	if (s->bdat_used) {
		/* The first BDAT chunk wrote the envelope into the record (message_begin): a
		 * recipient taken now would get its 250 and never be delivered. */
		REJECT(c, "rcpt_after_bdat", "503 5.5.1 Error: RCPT after BDAT\r\n");
		session_error(c);
		return;
	}
	if (s->nrcpt >= cfg_of(c)->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452, and not counted as an error. */
		REJECT(c, "too_many_recipients", "452 4.5.3 Error: too many recipients\r\n");
		return;
	}
	if (cmd->params.len > 0) {
		REJECT(c, "param_unsupported", "555 5.5.4 Error: unsupported parameter\r\n");
		session_error(c);
		return;
	}
	if (cmd->path_utf8 && !s->smtputf8) {
		REJECT(c, "utf8_without_smtputf8",
		       "553 5.6.7 Error: UTF-8 address needs the SMTPUTF8 parameter\r\n");
		session_error(c);
		return;
	}
	const char *why = NULL;
	const char *deny = rcpt_policy(c, cmd->path, &why);
	if (deny) {
		size_t n = strlen(deny);
		conn_reply(c, deny, n);
		log_reject(c, why, deny, n);
		if (log_start(LOG_DEBUG, "rcpt_rejected")) {
			log_strn("rcpt", cmd->path.p, cmd->path.len);
			log_finish();
		}
		session_error(c);
		return;
	}
	if (s->nrcpt == s->rcpt_cap) {
		uint32_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 8;
		s->rcpts = realloc(s->rcpts, cap * sizeof *s->rcpts);
		s->rcpt_off = realloc(s->rcpt_off, cap * sizeof *s->rcpt_off);
		ASSERT(s->rcpts && s->rcpt_off);
		s->rcpt_cap = cap;
	}
	s->rcpt_off[s->nrcpt] = arena_add(s, cmd->path.p, cmd->path.len);
	s->rcpts[s->nrcpt].len = cmd->path.len;
	s->nrcpt++;
	s->state = SMTP_ST_RCPT;
	REPLY(c, "250 2.1.5 Ok\r\n");
}

/* ---- the message record --------------------------------------------------------------- */

static void
rec_reserve(struct smtp_session *s, size_t need)
{
	if (need <= s->rec_cap)
		return;
	if (!s->rec) {
		s->rec = rec_buf_get(need, &s->rec_cap);
		ASSERT(s->rec != NULL);
		return;
	}
	size_t cap = s->rec_cap * 2;
	if (cap < need)
		cap = need;
	/* not realloc: the bigger buffer comes from the cache too (rec_buf.h) */
	char *r = rec_buf_get(cap, &cap);
	ASSERT(r != NULL);
	memcpy(r, s->rec, s->rec_len);
	rec_buf_put(s->rec);
	s->rec = r;
	s->rec_cap = cap;
}

/* A bounded appender for the Received: header. */
struct hdr_buf {
	char *p;
	size_t len, cap;
	bool cut; /* a piece did not fit (and was cut, never written past cap) */
};

static void
hdr_put(struct hdr_buf *h, const char *s, size_t n)
{
	if (n > h->cap - 1 - h->len) {
		n = h->cap - 1 - h->len;
		h->cut = true;
	}
	memcpy(h->p + h->len, s, n);
	h->len += n;
}

static void
hdr_puts(struct hdr_buf *h, const char *s)
{
	hdr_put(h, s, strlen(s));
}

static size_t
received_header(struct conn *c, char *buf, size_t cap)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	char qid[17];
	log_qid_format(s->qid, qid);
	/* RFC 3848 / 6531: an S at the end of the protocol says TLS */
	const char *proto = !s->esmtp ? "SMTP" : s->smtputf8 ? "UTF8SMTP" : "ESMTP";
	const char *secure = c->tls && s->esmtp ? "S" : "";
	const char *authed = s->auth_user && s->esmtp ? "A" : ""; /* RFC 3848: ESMTPSA */
	/* Built by appending, not by snprintf: this runs once per message, and the formatter was
	 * a measurable share of a pipelined session's CPU. Every piece is bounded (HELO_MAX, an
	 * address, a path of at most 256 octets, the hostname, TLS_DESCRIBE_MAX), so the total
	 * fits RECEIVED_MAX (asserted); hdr_put still never writes past cap. */
	struct hdr_buf h = {buf, 0, cap, false};
	hdr_puts(&h, "Received: from ");
	hdr_puts(&h, s->helo);
	hdr_puts(&h, strchr(c->peer_ip, ':') != NULL ? " ([IPv6:" : " ([");
	hdr_puts(&h, c->peer_ip);
	hdr_puts(&h, "])");
	if (c->tls) {
		char d[TLS_DESCRIBE_MAX];
		tls_conn_describe(c, d, sizeof d);
		hdr_puts(&h, "\r\n\t(using ");
		hdr_puts(&h, d);
		hdr_puts(&h, ")");
	}
	hdr_puts(&h, "\r\n\tby ");
	hdr_puts(&h, cfg->hostname);
	hdr_puts(&h, " (ringmx) with ");
	hdr_puts(&h, proto);
	hdr_puts(&h, secure);
	hdr_puts(&h, authed);
	hdr_puts(&h, " id ");
	hdr_put(&h, qid, 16);
	if (s->nrcpt == 1) {
		hdr_puts(&h, "\r\n\tfor <");
		hdr_put(&h, s->rcpts[0].p, s->rcpts[0].len);
		hdr_puts(&h, ">");
	}
	hdr_puts(&h, ";\r\n\t");
	hdr_puts(&h, shard_date(c->shard));
	hdr_puts(&h, "\r\n");
	ASSERT(!h.cut && h.len < cap);
	return h.len;
}

/* Starts the spool record: header, envelope and Received: now, message bytes as they come,
 * into one buffer, so the message is copied once on its way to the disk. */
static void
message_begin(struct conn *c, bool binary)
{
	struct smtp_session *s = &c->sess;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	s->qid = shard_qid_next(c->shard);
	for (uint32_t i = 0; i < s->nrcpt; i++)
		s->rcpts[i].p = s->arena + s->rcpt_off[i];
	struct spool_envelope env = {
		.qid = s->qid,
		.arrival_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000,
		.flags = (s->body8 ? SPOOL_F_8BITMIME : 0) | (s->smtputf8 ? SPOOL_F_SMTPUTF8 : 0) |
			 (binary ? SPOOL_F_BINARY : 0) | (s->auth_user ? SPOOL_F_AUTH : 0),
		.helo = {s->helo, strlen(s->helo)},
		.client = {c->peer_ip, strlen(c->peer_ip)},
		.from = {s->arena + s->from_off, s->from_len},
		.rcpts = s->rcpts,
		.nrcpt = s->nrcpt,
	};
	char rcv[RECEIVED_MAX];
	size_t rcv_len = received_header(c, rcv, sizeof rcv);
	size_t env_size = spool_record_envelope_size(&env);
	uint64_t expect = s->size_declared ? s->size_declared : 16384;
	if (expect > cfg_of(c)->max_message_size)
		expect = cfg_of(c)->max_message_size;
	rec_buf_put(s->rec); /* none is expected here; a new message starts a new buffer */
	s->rec = NULL;
	s->rec_len = s->rec_cap = 0;
	rec_reserve(s, env_size + rcv_len + expect + SMTP_DATA_HOLD_MAX + 64);
	s->msg_off = spool_record_begin(s->rec, s->rec_cap, &env);
	memcpy(s->rec + s->msg_off, rcv, rcv_len);
	s->body_off = s->msg_off + rcv_len;
	s->rec_len = s->body_off;
	s->too_big = 0;
}

/* Marks the message too big and drops what was kept of it; the rest is read and discarded. */
static void
message_too_big(struct smtp_session *s)
{
	s->too_big = 1;
	rec_buf_put(s->rec);
	s->rec = NULL;
	s->rec_len = s->rec_cap = 0;
}

/* binary: the message came by BDAT, so its bytes are as sent and bare CR/LF are data. */
static void
message_end(struct conn *c, bool binary)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	if (s->too_big) {
		REJECT(c, "message_too_big", "552 5.3.4 Error: message too big\r\n");
		txn_done(c);
		return;
	}
	if (!binary && (s->scan.flags & (SMTP_DATA_BARE_LF | SMTP_DATA_BARE_CR)) &&
	    cfg->bare_newline == CONFIG_BARE_NEWLINE_REJECT) {
		/* RFC 5321 2.3.8: bare CR/LF are not line ends; we refuse them outright so no
		 * downstream parser can be tricked into a second message (SMTP smuggling). */
		REJECT(c, "bare_newline",
		       "554 5.6.0 Error: bare <CR> or <LF> in message data (RFC 5321 2.3.8)\r\n");
		txn_done(c);
		return;
	}
	if (!binary && (s->scan.flags & SMTP_DATA_NUL)) {
		/* NUL is not text (RFC 5321 4.5.2 and RFC 6152 allow it in no DATA body); a next hop
		 * that drops it could see a CRLF.CRLF we never did (smuggling): refuse, whatever
		 * bare_newline says. BDAT carries bytes as sent. */
		REJECT(c, "nul_in_data", "554 5.6.0 Error: NUL character in message data\r\n");
		txn_done(c);
		return;
	}
	s->msg_size = s->rec_len - s->msg_off;
	s->state = SMTP_ST_COMMIT;
	char *rec = s->rec;
	size_t len = s->rec_len;
	s->rec = NULL;
	s->rec_cap = 0;
	conn_set_timeout(c, 0); /* waiting on our disk, not on the client */
	shard_commit(c->shard, c, rec, len);
}

/* ---- DATA ----------------------------------------------------------------------------- */

static bool
txn_ready_for_data(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	if (s->state == SMTP_ST_RCPT)
		return true;
	if (s->state == SMTP_ST_MAIL)
		REJECT(c, "no_valid_recipients", "554 5.5.1 Error: no valid recipients\r\n");
	else if (s->state == SMTP_ST_INIT)
		REJECT(c, "data_before_helo", "503 5.5.1 Error: send HELO/EHLO first\r\n");
	else
		REJECT(c, "data_without_rcpt", "503 5.5.1 Error: need RCPT command\r\n");
	return false;
}

static void
cmd_data(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	struct smtp_session *s = &c->sess;
	if (!txn_ready_for_data(c)) {
		session_error(c);
		return;
	}
	if (s->bdat_used) {
		/* RFC 3030 2: DATA may not follow BDAT in one transaction. */
		REJECT(c, "data_after_bdat", "503 5.5.1 Error: DATA after BDAT\r\n");
		session_error(c);
		return;
	}
	message_begin(c, false);
	smtp_data_scan_init(&s->scan);
	s->state = SMTP_ST_DATA;
	conn_set_timeout(c, cfg_of(c)->timeout_data);
	REPLY(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

static size_t
data_feed(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	struct shard *sh = c->shard;
	size_t piece = n < FEED_MAX ? n : FEED_MAX;
	char *out;
	if (!s->too_big) {
		rec_reserve(s, s->rec_len + piece + SMTP_DATA_HOLD_MAX);
		out = s->rec + s->rec_len;
	} else {
		ASSERT(sh->scratch_size >= FEED_MAX + SMTP_DATA_HOLD_MAX);
		out = sh->scratch;
	}
	size_t out_len = 0;
	size_t used = smtp_data_scan_feed(&s->scan, p, piece, out, &out_len);
	if (!s->too_big) {
		s->rec_len += out_len;
		if (s->rec_len - s->body_off > cfg_of(c)->max_message_size)
			message_too_big(s);
	}
	conn_set_timeout(c, cfg_of(c)->timeout_data);
	if (s->scan.done)
		message_end(c, false);
	return used;
}

/* ---- BDAT (RFC 3030) ------------------------------------------------------------------ */

static void bdat_chunk_end(struct conn *c);

static void
cmd_bdat(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	/* The chunk's bytes follow whatever we answer; they must be read either way. */
	s->bdat_left = cmd->bdat_size;
	s->bdat_last = cmd->bdat_last;
	s->bdat_discard = 0;
	if (s->state != SMTP_ST_RCPT) {
		s->bdat_discard = 1;
		s->bdat_prev_state = (uint8_t)s->state;
	} else if (!s->bdat_used) {
		message_begin(c, true);
		s->bdat_used = 1;
	}
	s->state = SMTP_ST_BDAT;
	conn_set_timeout(c, cfg_of(c)->timeout_data);
	if (s->bdat_left == 0)
		bdat_chunk_end(c); /* "BDAT 0 LAST": no bytes follow (RFC 3030 2) */
}

static void
bdat_chunk_end(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	if (s->bdat_discard) {
		/* Answer as if the chunk had been the command alone (RFC 3030 2). */
		s->state = (enum smtp_state)s->bdat_prev_state;
		if (s->state == SMTP_ST_INIT)
			REJECT(c, "bdat_before_helo", "503 5.5.1 Error: send HELO/EHLO first\r\n");
		else if (s->state == SMTP_ST_MAIL)
			REJECT(c, "no_valid_recipients", "554 5.5.1 Error: no valid recipients\r\n");
		else
			REJECT(c, "bdat_without_rcpt", "503 5.5.1 Error: need MAIL and RCPT first\r\n");
		if (s->state == SMTP_ST_MAIL || s->state == SMTP_ST_RCPT)
			txn_reset(c);
		session_error(c);
		return;
	}
	if (s->too_big) {
		REJECT(c, "message_too_big", "552 5.3.4 Error: message too big\r\n");
		txn_done(c);
		return;
	}
	if (s->bdat_last) {
		message_end(c, true);
		return;
	}
	s->state = SMTP_ST_RCPT;
	conn_replyf(c, "250 2.0.0 %" PRIu64 " octets received\r\n", s->rec_len - s->body_off);
	conn_set_timeout(c, cfg_of(c)->timeout_command);
}

static size_t
bdat_feed(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	size_t piece = n < FEED_MAX ? n : FEED_MAX;
	if (piece > s->bdat_left)
		piece = (size_t)s->bdat_left;
	if (!s->bdat_discard && !s->too_big) {
		if (s->rec_len + piece - s->body_off > cfg_of(c)->max_message_size) {
			message_too_big(s);
		} else {
			rec_reserve(s, s->rec_len + piece);
			memcpy(s->rec + s->rec_len, p, piece);
			s->rec_len += piece;
		}
	}
	s->bdat_left -= piece;
	conn_set_timeout(c, cfg_of(c)->timeout_data);
	if (s->bdat_left == 0)
		bdat_chunk_end(c);
	return piece;
}

/* ---- the small commands --------------------------------------------------------------- */

static void
cmd_rset(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REPLY(c, "250 2.0.0 Ok\r\n");
	txn_done(c);
}

static void
cmd_noop(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REPLY(c, "250 2.0.0 Ok\r\n");
}

static void
cmd_quit(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	conn_replyf(c, "221 2.0.0 %s Bye\r\n", cfg_of(c)->hostname);
	conn_close_after_flush(c);
}

static void
cmd_vrfy(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	/* RFC 5321 3.5.3: 252 when we will not verify but would accept. */
	REPLY(c, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
}

static void
cmd_help(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REPLY(c, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n");
}

/* RFC 3207. The 220 leaves in the clear, everything after it is TLS; the session forgets all
 * the client said before (4.2) and waits for the handshake in SMTP_ST_TLS. */
static void
cmd_starttls(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	struct smtp_session *s = &c->sess;
	if (c->tls) {
		REJECT(c, "starttls_in_tls", "503 5.5.1 Error: TLS already active\r\n");
		session_error(c);
		return;
	}
	if (!starttls_offered(c)) {
		REJECT(c, "not_implemented", "502 5.5.1 Error: command not implemented\r\n");
		session_error(c);
		return;
	}
	if (s->state == SMTP_ST_MAIL || s->state == SMTP_ST_RCPT) {
		REJECT(c, "starttls_in_transaction",
		       "503 5.5.1 Error: MAIL transaction in progress\r\n");
		session_error(c);
		return;
	}
	REPLY(c, "220 2.0.0 Ready to start TLS\r\n");
	if (tls_conn_start(c, cfg_of(c)->tls_ctx) < 0) {
		if (log_start(LOG_WARN, "tls_error")) {
			log_client(c);
			log_str("reason", "out of memory");
			log_finish();
		}
		conn_close_after_flush(c);
		return;
	}
	txn_reset(c);
	free(s->helo);
	s->helo = NULL;
	free(s->auth_user); /* none is set in the clear (AUTH needs TLS): forgotten all the same */
	s->auth_user = NULL;
	s->esmtp = 0;
	s->skip_line = 0;
	s->state = SMTP_ST_TLS;
	conn_set_timeout(c, cfg_of(c)->timeout_command); /* the handshake's time */
}

static void
cmd_not_implemented(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REJECT(c, "not_implemented", "502 5.5.1 Error: command not implemented\r\n");
	session_error(c);
}

/* ---- AUTH (RFC 4954) ------------------------------------------------------------------ */

/* Which client response SMTP_ST_AUTH waits for. */
enum auth_step { AUTH_STEP_NONE = 0, AUTH_STEP_PLAIN, AUTH_STEP_LOGIN_USER, AUTH_STEP_LOGIN_PASS };

static size_t command_feed(struct conn *c, const char *p, size_t n);

static uint64_t
session_now_s(struct conn *c)
{
	return c->shard->loop.now_ms / 1000;
}

/* A password check on the auth pool, with what the session needs to finish the exchange:
 * copies, since the connection may be gone when the result comes back. */
struct auth_pending {
	struct auth_job job; /* first: the block is freed through it */
	enum sasl_mech mech;
	bool known; /* the user is in the users file */
	struct sockaddr_storage peer;
	char peer_ip[INET6_ADDRSTRLEN];
	size_t user_len;
	char user[SASL_NAME_MAX + 1];
};
_Static_assert(offsetof(struct auth_pending, job) == 0, "auth_pool frees a job's whole block");

/* Which way an AUTH response went: answered now (a failure, 454 or 501), or a password check
 * was handed to the auth pool and its result comes later (smtp_session_auth_done). */
enum auth_outcome { AUTH_ANSWERED = 0, AUTH_CHECKING };

static void
auth_log_ip(const char *client, enum sasl_mech mech, const char *user, size_t user_len, bool ok,
	    const char *reason)
{
	if (!log_start(ok ? LOG_INFO : LOG_WARN, "auth"))
		return;
	log_strn("user", user, user_len);
	log_str("client", client);
	log_str("mechanism", sasl_mech_name(mech));
	log_str("result", ok ? "ok" : "fail");
	if (reason)
		log_str("reason", reason);
	log_finish();
}

static void
auth_log(struct conn *c, enum sasl_mech mech, const char *user, size_t user_len, bool ok,
	 const char *reason)
{
	auth_log_ip(c->peer_ip, mech, user, user_len, ok, reason);
}

/* Ends the exchange, whatever its outcome: back to READY, the LOGIN name wiped, so the next
 * AUTH starts from nothing. */
static void
auth_end(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	if (s->auth_login) {
		explicit_bzero(s->auth_login, strlen(s->auth_login));
		free(s->auth_login);
		s->auth_login = NULL;
	}
	s->auth_step = AUTH_STEP_NONE;
	if (s->state == SMTP_ST_AUTH)
		s->state = SMTP_ST_READY;
}

/* Past [auth] max_failures for this client address: 454 (RFC 4954 6, a temporary failure). */
static bool
auth_throttled(struct conn *c)
{
	const struct config *cfg = cfg_of(c);
	if (!auth_throttle_blocked((const struct sockaddr *)&c->peer, session_now_s(c),
				   cfg->auth_max_failures, cfg->auth_failure_window))
		return false;
	REJECT(c, "auth_throttled",
	       "454 4.7.0 Error: too many failed authentications, try again later\r\n");
	return true;
}

/* A wrong password (or user), now or when a check comes back: counts against the address. */
static void
auth_fail_count(struct shard *sh, const struct sockaddr *peer)
{
	const struct config *cfg = sh->cfg;
	auth_throttle_fail(peer, sh->loop.now_ms / 1000, cfg->auth_max_failures,
			   cfg->auth_failure_window);
}

/* Hands the check of user and password to the auth pool (server/auth_pool.h: crypt_r is slow
 * on purpose, and never runs on the shard's thread). Answers at once only what needs no check:
 * 454 when throttled or when the pool's queue is full, 535 for a password that cannot match
 * (empty, too long, a NUL) or when [auth] is gone (a reload). */
static enum auth_outcome
auth_check(struct conn *c, enum sasl_mech mech, const char *user, size_t user_len,
	   const char *pass, size_t pass_len)
{
	const struct config *cfg = cfg_of(c);
	bool known;
	ASSERT(user_len <= SASL_NAME_MAX);
	if (auth_throttled(c)) {
		auth_log(c, mech, user, user_len, false, "throttled");
		return AUTH_ANSWERED;
	}
	const char *hash = auth_users_hash(cfg->auth_users, user, user_len, &known);
	if (!hash || pass_len == 0 || pass_len > SASL_PASSWORD_MAX ||
	    memchr(pass, '\0', pass_len)) {
		auth_fail_count(c->shard, (const struct sockaddr *)&c->peer);
		auth_log(c, mech, user, user_len, false, "credentials");
		REJECT(c, "auth_failed", "535 5.7.8 Error: authentication credentials invalid\r\n");
		return AUTH_ANSWERED;
	}
	size_t hash_len = strlen(hash);
	ASSERT(hash_len < AUTH_HASH_MAX);
	struct auth_pending *ap = malloc(sizeof *ap);
	if (ap) {
		memcpy(ap->job.hash, hash, hash_len + 1);
		memcpy(ap->job.pass, pass, pass_len);
		ap->job.pass_len = pass_len;
		ap->job.owner = ((uint64_t)c->gen << 32) | c->slot;
		ap->mech = mech;
		ap->known = known;
		ap->peer = c->peer;
		memcpy(ap->peer_ip, c->peer_ip, sizeof ap->peer_ip);
		memcpy(ap->user, user, user_len);
		ap->user[user_len] = '\0';
		ap->user_len = user_len;
		if (shard_auth_submit(c->shard, &ap->job) == 0)
			return AUTH_CHECKING;
		explicit_bzero(ap->job.pass, sizeof ap->job.pass);
		free(ap);
	}
	/* RFC 4954 6: a temporary failure; nothing was checked, so nothing is counted */
	auth_log(c, mech, user, user_len, false, "busy");
	REJECT(c, "auth_busy", "454 4.7.0 Temporary authentication failure\r\n");
	return AUTH_ANSWERED;
}

/* PLAIN (RFC 4616): authzid NUL authcid NUL passwd. We act for nobody else: an authzid that is
 * not the authcid fails like a wrong password. */
static enum auth_outcome
auth_plain(struct conn *c, const char *msg, size_t len)
{
	struct sasl_plain pl;
	if (sasl_plain_split(msg, len, &pl) < 0) {
		REJECT(c, "auth_malformed", "501 5.5.2 Error: malformed PLAIN response\r\n");
		return AUTH_ANSWERED;
	}
	if (pl.authzid_len > 0 &&
	    (pl.authzid_len != pl.authcid_len || memcmp(pl.authzid, pl.authcid, pl.authcid_len))) {
		auth_fail_count(c->shard, (const struct sockaddr *)&c->peer);
		auth_log(c, SASL_MECH_PLAIN, pl.authcid, pl.authcid_len, false, "authzid");
		REJECT(c, "auth_failed", "535 5.7.8 Error: authentication credentials invalid\r\n");
		return AUTH_ANSWERED;
	}
	return auth_check(c, SASL_MECH_PLAIN, pl.authcid, pl.authcid_len, pl.passwd, pl.passwd_len);
}

/* One client response (a continuation line, or AUTH's initial response), without its CRLF.
 * Either asks for the next one (334), ends the exchange with its final reply, or hands the
 * password to the auth pool and waits in SMTP_ST_AUTH_CHECK. */
static void
auth_response(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	char buf[SASL_DECODED_MAX];
	long len;
	enum auth_outcome out = AUTH_ANSWERED;
	bool done = true;
	if (sasl_is_cancel(p, n)) {
		/* RFC 4954 4: the client cancels with "*", and we answer 501 */
		REJECT(c, "auth_cancelled", "501 5.0.0 Error: authentication cancelled\r\n");
		auth_end(c);
		return;
	}
	len = sasl_base64_decode(p, n, buf, sizeof buf);
	if (len < 0) {
		REJECT(c, "auth_bad_base64", "501 5.5.2 Error: cannot decode the response\r\n");
	} else if (s->auth_step == AUTH_STEP_PLAIN) {
		out = auth_plain(c, buf, (size_t)len);
	} else if (s->auth_step == AUTH_STEP_LOGIN_USER) {
		if (sasl_name_ok(buf, (size_t)len)) {
			s->auth_login = strndup(buf, (size_t)len);
			ASSERT(s->auth_login != NULL);
			s->auth_step = AUTH_STEP_LOGIN_PASS;
			REPLY(c, "334 " SASL_LOGIN_PROMPT_PASS "\r\n");
			done = false;
		} else {
			REJECT(c, "auth_malformed", "501 5.5.2 Error: malformed user name\r\n");
		}
	} else {
		ASSERT(s->auth_step == AUTH_STEP_LOGIN_PASS && s->auth_login != NULL);
		out = auth_check(c, SASL_MECH_LOGIN, s->auth_login, strlen(s->auth_login), buf,
				 (size_t)len);
	}
	explicit_bzero(buf, sizeof buf);
	if (!done)
		return;
	auth_end(c);
	if (out == AUTH_CHECKING)
		s->state = SMTP_ST_AUTH_CHECK; /* smtp_session_auth_done answers */
	else
		session_error(c);
}

/* The check came back to a session that waits for it: 235 or 535, then the input that
 * waited behind the AUTH (RFC 4954 4: a client may pipeline nothing after AUTH but its
 * responses; a careless one is still read in order). */
static void
auth_answer(struct conn *c, const struct auth_pending *ap, bool ok)
{
	struct smtp_session *s = &c->sess;
	ASSERT(s->state == SMTP_ST_AUTH_CHECK && s->auth_user == NULL);
	s->state = s->helo ? SMTP_ST_READY : SMTP_ST_INIT;
	if (ok) {
		s->auth_user = strndup(ap->user, ap->user_len);
		ASSERT(s->auth_user != NULL);
		REPLY(c, "235 2.7.0 Authentication successful\r\n");
	} else {
		REJECT(c, "auth_failed",
		       "535 5.7.8 Error: authentication credentials invalid\r\n");
		if (session_error(c))
			return;
	}
	if (s->stop_requested) {
		conn_replyf(c, "421 4.3.2 %s Service shutting down\r\n", cfg_of(c)->hostname);
		conn_close_after_flush(c);
		return;
	}
	conn_set_timeout(c, cfg_of(c)->timeout_command);
	conn_resume(c);
}

void
smtp_session_auth_done(struct shard *sh, struct conn *c, struct auth_job *job)
{
	struct auth_pending *ap = (struct auth_pending *)job;
	bool ok = ap->known && job->ok;
	bool waiting = c != NULL && !c->closing && c->sess.state == SMTP_ST_AUTH_CHECK;
	/* A wrong password counts even when its client left: hanging up does not reset the
	 * throttle. A right one for a client that left logs nobody in. */
	if (!ok)
		auth_fail_count(sh, (const struct sockaddr *)&ap->peer);
	auth_log_ip(ap->peer_ip, ap->mech, ap->user, ap->user_len, ok && waiting,
		    !ok ? "credentials" : waiting ? NULL : "client_gone");
	if (waiting)
		auth_answer(c, ap, ok);
	explicit_bzero(ap, sizeof *ap);
	free(ap);
}

/* "AUTH mechanism [initial-response]" (RFC 4954 4), in READY only: after EHLO, before MAIL,
 * once per session. */
static void
cmd_auth(struct conn *c, const struct smtp_cmd *cmd)
{
	struct smtp_session *s = &c->sess;
	enum sasl_mech mech;
	if (!auth_available(c)) {
		cmd_not_implemented(c, cmd);
		return;
	}
	if (c->tls == NULL) {
		REJECT(c, "auth_without_tls",
		       "538 5.7.11 Error: encryption required for requested authentication "
		       "mechanism\r\n");
	} else if (s->auth_user != NULL) {
		REJECT(c, "auth_twice", "503 5.5.1 Error: already authenticated\r\n");
	} else if (s->state == SMTP_ST_INIT || !s->esmtp) {
		REJECT(c, "auth_before_ehlo", "503 5.5.1 Error: send EHLO first\r\n");
	} else if (s->state != SMTP_ST_READY) {
		REJECT(c, "auth_in_transaction", "503 5.5.1 Error: MAIL transaction in progress\r\n");
	} else if ((mech = sasl_mech_lookup(cmd->auth_mech.p, cmd->auth_mech.len)) ==
		   SASL_MECH_UNKNOWN) {
		REJECT(c, "auth_mechanism",
		       "504 5.5.4 Error: unrecognized authentication type\r\n");
	} else if (!auth_throttled(c)) {
		s->state = SMTP_ST_AUTH;
		s->auth_step = mech == SASL_MECH_PLAIN ? AUTH_STEP_PLAIN : AUTH_STEP_LOGIN_USER;
		if (cmd->auth_resp.len > 0)
			auth_response(c, cmd->auth_resp.p, cmd->auth_resp.len);
		else if (mech == SASL_MECH_PLAIN)
			REPLY(c, "334 \r\n");
		else
			REPLY(c, "334 " SASL_LOGIN_PROMPT_USER "\r\n");
		return;
	}
	session_error(c);
}

/* SMTP_ST_AUTH: the next line is a response, bounded like a command line (RFC 4954 4 asks for
 * at least 12288 octets only of servers that take long responses: ours are short). */
static size_t
auth_feed(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	struct smtp_slice line;
	enum smtp_parse_error err;
	long r = smtp_parse_line(p, n, cfg->max_line_length, &line, &err);
	if (r == 0)
		return 0;
	s->n_cmds++;
	conn_set_timeout(c, cfg->timeout_command);
	if (r == SMTP_PARSE_TOO_LONG) {
		REJECT(c, "auth_line_too_long",
		       "500 5.5.6 Error: authentication exchange line is too long\r\n");
		auth_end(c);
		s->skip_line = 1; /* command_feed drops the rest of the line */
		if (!session_error(c))
			return command_feed(c, p, n);
		return n;
	}
	if (err != SMTP_ERR_NONE) {
		REJECT(c, "auth_bad_line", "501 5.5.2 Error: invalid character in the response\r\n");
		auth_end(c);
		session_error(c);
		return (size_t)r;
	}
	auth_response(c, line.p, line.len);
	return (size_t)r;
}

static void
cmd_http(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REJECT(c, "http_command", "554 5.7.0 Error: this is an SMTP server, not HTTP\r\n");
	conn_close_after_flush(c);
}

static void
cmd_unknown(struct conn *c, const struct smtp_cmd *cmd)
{
	(void)cmd;
	REJECT(c, "unknown_command", "500 5.5.2 Error: command not recognized\r\n");
	session_error(c);
}

static void
cmd_bad(struct conn *c, const struct smtp_cmd *cmd)
{
	switch (cmd->error) {
	case SMTP_ERR_BARE_LF:
		REJECT(c, "bare_lf_command", "500 5.5.2 Error: bare <LF> received\r\n");
		break;
	case SMTP_ERR_BAD_CHAR:
		REJECT(c, "bad_character", "500 5.5.2 Error: invalid character in command\r\n");
		break;
	case SMTP_ERR_PATH:
		if (cmd->bad_verb == SMTP_VERB_MAIL)
			REJECT(c, "bad_sender", "501 5.1.7 Error: bad sender address syntax\r\n");
		else
			REJECT(c, "bad_recipient", "501 5.1.3 Error: bad recipient address syntax\r\n");
		break;
	case SMTP_ERR_BDAT_SIZE:
		/* We cannot know where the chunk ends: nothing after this can be trusted. */
		REJECT(c, "bdat_size", "501 5.5.4 Error: bad BDAT size, closing connection\r\n");
		conn_close_after_flush(c);
		return;
	default:
		REJECT(c, "syntax", "501 5.5.4 Error: syntax error in command or arguments\r\n");
		break;
	}
	session_error(c);
}

struct verb_entry {
	void (*handle)(struct conn *c, const struct smtp_cmd *cmd);
};

static const struct verb_entry verb_table[SMTP_VERB_COUNT] = {
	[SMTP_VERB_BAD] = {cmd_bad},
	[SMTP_VERB_HELO] = {cmd_helo},
	[SMTP_VERB_EHLO] = {cmd_helo},
	[SMTP_VERB_MAIL] = {cmd_mail},
	[SMTP_VERB_RCPT] = {cmd_rcpt},
	[SMTP_VERB_DATA] = {cmd_data},
	[SMTP_VERB_BDAT] = {cmd_bdat},
	[SMTP_VERB_RSET] = {cmd_rset},
	[SMTP_VERB_NOOP] = {cmd_noop},
	[SMTP_VERB_QUIT] = {cmd_quit},
	[SMTP_VERB_VRFY] = {cmd_vrfy},
	[SMTP_VERB_HELP] = {cmd_help},
	[SMTP_VERB_STARTTLS] = {cmd_starttls},
	[SMTP_VERB_AUTH] = {cmd_auth},
	[SMTP_VERB_EXPN] = {cmd_not_implemented},
	[SMTP_VERB_ETRN] = {cmd_not_implemented},
	[SMTP_VERB_HTTP] = {cmd_http},
	[SMTP_VERB_UNKNOWN] = {cmd_unknown},
};

/* DESIGN.md invariant 4 (STARTTLS injection): whatever followed STARTTLS in the clear, in the
 * same read or still waiting in the input buffer, is dropped unread; only what comes through
 * TLS is ever a command. Returns all n bytes as consumed. */
static size_t
starttls_discard(struct conn *c, size_t used, size_t n)
{
	if (used < n && log_start(LOG_INFO, "reject")) {
		log_client(c);
		log_str("reason", "starttls_pipelined");
		log_u64("discarded", n - used);
		log_finish();
	}
	return n;
}

static size_t
command_feed(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	if (s->skip_line) {
		/* The rest of an over-long line, already answered. */
		const char *lf = memchr(p, '\n', n);
		if (!lf)
			return n;
		s->skip_line = 0;
		return (size_t)(lf - p) + 1;
	}
	struct smtp_cmd cmd;
	long r = smtp_parse_command(p, n, cfg->max_line_length, &cmd);
	if (r == 0)
		return 0;
	s->n_cmds++;
	conn_set_timeout(c, cfg->timeout_command);
	if (r == SMTP_PARSE_TOO_LONG) {
		/* RFC 5321 4.5.3.1.4 */
		REJECT(c, "line_too_long", "500 5.5.2 Error: line too long\r\n");
		s->skip_line = 1;
		if (!session_error(c))
			return command_feed(c, p, n);
		return n;
	}
	ASSERT(cmd.verb < SMTP_VERB_COUNT && verb_table[cmd.verb].handle);
	verb_table[cmd.verb].handle(c, &cmd);
	if (s->state == SMTP_ST_TLS)
		return starttls_discard(c, (size_t)r, n);
	return (size_t)r;
}

static size_t
session_datain(struct conn *c, const char *p, size_t n)
{
	struct smtp_session *s = &c->sess;
	switch (s->state) {
	case SMTP_ST_GREET:
		/* Bytes before our greeting: not a real SMTP client (RFC 5321 3.1, 4.3.1). */
		REJECT(c, "early_talker", "554 5.5.1 Error: SMTP protocol synchronization\r\n");
		conn_close_after_flush(c);
		return n;
	case SMTP_ST_DATA:
		return data_feed(c, p, n);
	case SMTP_ST_BDAT:
		return bdat_feed(c, p, n);
	case SMTP_ST_COMMIT:
	case SMTP_ST_AUTH_CHECK:
	case SMTP_ST_CLOSING:
		return 0; /* kept by the connection until the session resumes it */
	case SMTP_ST_TLS:
		/* the TLS transport delivers nothing before the handshake is done, and the clear
		 * input after STARTTLS was discarded */
		ASSERT(!"input during the TLS handshake");
		return n;
	case SMTP_ST_PROXY:
		/* transport_proxy hands nothing on before the session is started */
		ASSERT(!"input before the PROXY header was read");
		return n;
	case SMTP_ST_AUTH:
		return auth_feed(c, p, n);
	case SMTP_ST_INIT:
	case SMTP_ST_READY:
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
		return command_feed(c, p, n);
	}
	ASSERT(!"unknown session state");
	return 0;
}

static void
session_committed(struct conn *c, int status)
{
	struct smtp_session *s = &c->sess;
	ASSERT(s->state == SMTP_ST_COMMIT);
	char qid[17];
	log_qid_format(s->qid, qid);
	if (status == 0) {
		static const char ok[] = "250 2.0.0 Ok: queued as ";
		char reply[sizeof(ok) - 1 + 16 + 2];
		memcpy(reply, ok, sizeof(ok) - 1);
		memcpy(reply + sizeof(ok) - 1, qid, 16);
		memcpy(reply + sizeof(ok) - 1 + 16, "\r\n", 2);
		conn_reply(c, reply, sizeof(reply)); /* once per message: no formatter */
		s->n_accepted++;
		if (log_start(LOG_INFO, "accept")) {
			log_client(c);
			log_strn("qid", qid, 16);
			log_strn("from", s->arena + s->from_off, s->from_len);
			if (s->auth_user)
				log_str("user", s->auth_user);
			log_u64("nrcpt", s->nrcpt);
			log_u64("size", s->msg_size);
			log_finish();
		}
	} else if (status == -EAGAIN) {
		REJECT(c, "sink_tempfail", "451 4.3.0 Error: temporary failure (sink)\r\n");
	} else if (status == -EPERM) {
		REJECT(c, "sink_permfail", "554 5.6.0 Error: rejected (sink)\r\n");
	} else {
		REJECT(c, "spool_write_error", "451 4.3.0 Error: queue file write error\r\n");
	}
	s->state = s->helo ? SMTP_ST_READY : SMTP_ST_INIT; /* so txn_done can reset */
	txn_done(c);
	if (s->state != SMTP_ST_CLOSING)
		conn_set_timeout(c, cfg_of(c)->timeout_command);
}

static void
session_timeout(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	const struct config *cfg = cfg_of(c);
	if (s->state == SMTP_ST_GREET) {
		session_greet(c);
		return;
	}
	if (s->state == SMTP_ST_CLOSING) {
		conn_close(c); /* the client did not read its last reply in time */
		return;
	}
	if (s->state == SMTP_ST_PROXY) {
		/* nothing has been said yet, and a reply would reach the proxy, not a client */
		if (log_start(LOG_INFO, "proxy_error")) {
			log_client(c);
			log_str("reason", "timeout");
			log_finish();
		}
		conn_close(c);
		return;
	}
	if (s->state == SMTP_ST_TLS) {
		/* mid-handshake there is no channel for a 421 */
		if (log_start(LOG_INFO, "tls_error")) {
			log_client(c);
			log_str("phase", "handshake");
			log_str("reason", "timeout");
			log_finish();
		}
		conn_close(c);
		return;
	}
	if (c->shard->loop.now_ms >= c->session_deadline_ms) {
		conn_replyf(c, "421 4.4.2 %s Error: session time limit exceeded\r\n", cfg->hostname);
		REJECT_LOG(c, "session_timeout", "421 4.4.2 session time limit\r\n");
	} else {
		conn_replyf(c, "421 4.4.2 %s Error: timeout exceeded\r\n", cfg->hostname);
		REJECT_LOG(c, "timeout", "421 4.4.2 timeout exceeded\r\n");
	}
	conn_close_after_flush(c);
}

static void
session_stop(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	switch (s->state) {
	case SMTP_ST_GREET:
	case SMTP_ST_INIT:
	case SMTP_ST_READY:
	case SMTP_ST_AUTH:
		conn_replyf(c, "421 4.3.2 %s Service shutting down\r\n", cfg_of(c)->hostname);
		conn_close_after_flush(c);
		break;
	case SMTP_ST_CLOSING:
		break;
	case SMTP_ST_TLS:
		conn_close(c); /* mid-handshake: nothing to finish, no channel for a 421 */
		break;
	case SMTP_ST_PROXY:
		conn_close(c); /* the client is not even known yet */
		break;
	default:
		s->stop_requested = 1; /* after this transaction */
		break;
	}
}

static void
session_connected(struct conn *c)
{
	unsigned delay = cfg_of(c)->greeting_delay_ms;
	if (delay > 0) {
		c->sess.state = SMTP_ST_GREET;
		conn_set_timeout_ms(c, delay);
	} else {
		session_greet(c);
	}
}

/* The handshake is done: implicit TLS greets now (encrypted); after STARTTLS the session
 * starts over, EHLO first (RFC 3207 4.2). */
static void
session_tls_done(struct conn *c)
{
	struct smtp_session *s = &c->sess;
	if (s->state == SMTP_ST_CLOSING)
		return;
	ASSERT(s->state == SMTP_ST_TLS && c->tls != NULL);
	if (!s->greeted) {
		session_connected(c);
		return;
	}
	s->state = SMTP_ST_INIT;
	conn_set_timeout(c, cfg_of(c)->timeout_command);
}

size_t
smtp_session_event(struct conn *c, enum smtp_event ev, const char *p, size_t n, int status)
{
	switch (ev) {
	case SMTP_EV_CONNECTED:
		if (c->tls) {
			/* implicit TLS: the greeting waits for the handshake */
			c->sess.state = SMTP_ST_TLS;
			conn_set_timeout(c, cfg_of(c)->timeout_command);
			return 0;
		}
		session_connected(c);
		return 0;
	case SMTP_EV_TLS_DONE:
		session_tls_done(c);
		return 0;
	case SMTP_EV_DATAIN:
		return session_datain(c, p, n);
	case SMTP_EV_COMMITTED:
		session_committed(c, status);
		return 0;
	case SMTP_EV_TIMEOUT:
		session_timeout(c);
		return 0;
	case SMTP_EV_STOP:
		session_stop(c);
		return 0;
	}
	ASSERT(!"unknown session event");
	return 0;
}

void
smtp_session_free(struct smtp_session *s)
{
	free(s->helo);
	free(s->auth_user);
	if (s->auth_login) {
		explicit_bzero(s->auth_login, strlen(s->auth_login));
		free(s->auth_login);
	}
	free(s->arena);
	free(s->rcpts);
	free(s->rcpt_off);
	rec_buf_put(s->rec);
	memset(s, 0, sizeof *s);
}
