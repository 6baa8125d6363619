/*
 * smtp_out — one outbound SMTP or LMTP connection of a site, on the shard's io_uring.
 *
 * connect (each of the site's addresses in turn) → banner → EHLO (HELO when refused; LHLO
 * for LMTP) → transactions: MAIL, RCPT... and DATA (dot-stuffed, bare CR/LF made CRLF) or
 * BDAT n LAST, all in one write when the server offers PIPELINING, one command per reply
 * otherwise → the next transaction on the same connection, up to the site's
 * max_messages_per_connection → idle for idle_timeout → QUIT.
 *
 * Replies are read with queue/smtp_reply (bounded); a bad reply, a 421, a timeout or a lost
 * connection defers what is unsettled and closes. A failure before the first transaction
 * (refused, banner, EHLO, timeout) backs the whole site off.
 */
/* Diagnostics and relay names are cut to their buffers on purpose: a remote's reply text is
 * bounded wherever it is kept. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <stdatomic.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/body_encode.h"
#include "queue/delivery_impl.h"
#include "server/log.h"

enum out_kind { K_CONNECT = 1, K_RECV, K_SEND, K_CANCEL };

#define SLOT_BITS 28
#define QUIT_WAIT_MS 2000

static uint64_t
out_ud(struct dlv_conn *c, enum out_kind k)
{
	return loop_ud(c->d->op_out, c->slot | ((uint32_t)k << SLOT_BITS), c->gen);
}

static struct io_uring_sqe *
out_sqe(struct dlv_conn *c, enum out_kind k)
{
	struct io_uring_sqe *sqe = loop_sqe(c->d->loop);
	io_uring_sqe_set_data64(sqe, out_ud(c, k));
	c->ops++;
	return sqe;
}

static const struct config_domain_policy *
conn_policy(const struct dlv_conn *c)
{
	return c->site->pol;
}

static void
conn_relay(const struct dlv_conn *c, char *buf, size_t len)
{
	if (!c->addr) {
		snprintf(buf, len, "none");
	} else if (c->addr->sa.ss_family == AF_UNIX) {
		snprintf(buf, len, "lmtp:unix:%s", ((const struct sockaddr_un *)&c->addr->sa)->sun_path);
	} else {
		unsigned port = c->addr->sa.ss_family == AF_INET
				    ? ntohs(((const struct sockaddr_in *)&c->addr->sa)->sin_port)
				    : ntohs(((const struct sockaddr_in6 *)&c->addr->sa)->sin6_port);
		snprintf(buf, len, "%s%s[%s]:%u", c->site->lmtp ? "lmtp:" : "", c->addr->host,
			 c->addr->text, port);
	}
}

static void
conn_timer_set(struct dlv_conn *c, uint64_t ms)
{
	c->deadline_ms = dlv_now(c->d) + ms;
	timer_arm(&c->d->loop->wheel, &c->timer, c->deadline_ms);
}

static void conn_close(struct dlv_conn *c);
static void conn_next_txn(struct dlv_conn *c);
static void conn_quit(struct dlv_conn *c);

/* The transaction's hold on its message's body ends (before the job may go away). */
static void
conn_body_put(struct dlv_conn *c, struct dlv_job *j)
{
	if (c->body) {
		qmsg_body_put(j->m);
		c->body = NULL;
	}
}

/* ---- output ---- */

static bool
out_reserve(struct dlv_conn *c, size_t more)
{
	if (c->out_len + more <= c->out_cap)
		return true;
	size_t cap = c->out_cap ? c->out_cap : 1024;
	while (cap < c->out_len + more)
		cap *= 2;
	char *p;
	if (c->send_armed && !c->out_retired) {
		/* the kernel may still read the buffer of the send in flight: keep it until that
		 * send completes (a buffer made after it was submitted is ours to move) */
		if (!(p = malloc(cap)))
			return false;
		memcpy(p, c->out, c->out_len);
		c->out_retired = c->out;
	} else if (!(p = realloc(c->out, cap))) {
		return false;
	}
	c->out = p;
	c->out_cap = cap;
	return true;
}

static void
out_printf(struct dlv_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char line[SPOOL_STR_MAX + 128];
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || !out_reserve(c, (size_t)n))
		return;
	memcpy(c->out + c->out_len, line, (size_t)n);
	c->out_len += (size_t)n;
}

static void conn_fail(struct dlv_conn *c, const char *status, bool site_trouble,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* TLS: moves the ciphertext OpenSSL made into cout (only while no send reads cout). */
static bool
tls_pull(struct dlv_conn *c)
{
	size_t want = tls_client_pending(c->tls);
	if (want == 0)
		return true;
	if (c->cout_len + want > c->cout_cap) {
		size_t cap = c->cout_cap ? c->cout_cap : 4096;
		while (cap < c->cout_len + want)
			cap *= 2;
		char *p = realloc(c->cout, cap);
		if (!p)
			return false;
		c->cout = p;
		c->cout_cap = cap;
	}
	c->cout_len += tls_client_take(c->tls, c->cout + c->cout_len, c->cout_cap - c->cout_len);
	return true;
}

static void
out_flush(struct dlv_conn *c)
{
	if (c->send_armed || c->st == OC_CLOSING)
		return;
	if (c->tls) {
		/* the plaintext queued goes into TLS at once; its ciphertext leaves from cout */
		if (c->tls_done && c->out_len > c->out_sent) {
			if (tls_client_write(c->tls, c->out + c->out_sent, c->out_len - c->out_sent) < 0) {
				conn_fail(c, "4.7.0", false, "TLS: %s", tls_client_error(c->tls));
				return;
			}
			c->out_sent = c->out_len = 0;
		}
		if (!tls_pull(c)) {
			conn_fail(c, "4.3.0", false, "out of memory");
			return;
		}
		if (c->cout_sent == c->cout_len)
			return;
		struct io_uring_sqe *sqe = out_sqe(c, K_SEND);
		io_uring_prep_send(sqe, c->fd, c->cout + c->cout_sent, c->cout_len - c->cout_sent,
				   MSG_NOSIGNAL);
		c->send_armed = true;
		c->send_tls = true;
		return;
	}
	if (c->out_sent == c->out_len)
		return;
	struct io_uring_sqe *sqe = out_sqe(c, K_SEND);
	io_uring_prep_send(sqe, c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
			   MSG_NOSIGNAL);
	c->send_armed = true;
	c->send_tls = false;
}

static void
recv_arm(struct dlv_conn *c)
{
	if (c->recv_armed || c->st == OC_CLOSING)
		return;
	struct io_uring_sqe *sqe = out_sqe(c, K_RECV);
	io_uring_prep_recv(sqe, c->fd, c->in, sizeof c->in, 0);
	c->recv_armed = true;
}

/* ---- TLS policy and DANE ---- */

/* What a connection needs of TLS, settled after EHLO (tls_settle). */
enum tls_need {
	TN_NEVER = 1, /* tls = none */
	TN_MAY,	      /* opportunistic */
	TN_MUST,      /* encrypted, not authenticated: tls = required, or dane with only unusable
		       * TLSA records (RFC 7672 2.2) */
	TN_VERIFY,    /* encrypted, the certificate valid for the host name (tls = verify) */
	TN_DANE,      /* encrypted, a TLSA record matching (tls = dane with secure TLSA records) */
};

static const char *const policy_names[] = {
    [CONFIG_TLS_OPTIONAL] = "optional", [CONFIG_TLS_REQUIRED] = "required",
    [CONFIG_TLS_NONE] = "none", [CONFIG_TLS_VERIFY] = "verify", [CONFIG_TLS_DANE] = "dane",
};

/* Whether DANE can apply to the connection's address at all: a named host over TCP. */
static bool
tlsa_applies(const struct dlv_conn *c)
{
	unsigned char a[16];
	return conn_policy(c)->tls == CONFIG_TLS_DANE && c->addr->sa.ss_family != AF_UNIX &&
	       inet_pton(AF_INET, c->addr->host, a) != 1 &&
	       inet_pton(AF_INET6, c->addr->host, a) != 1;
}

struct tlsa_wait {
	struct delivery *d;
	uint32_t slot, gen, seq;
};

static void tls_settle(struct dlv_conn *c);

static void
on_tlsa(void *arg, struct dns_tlsa *t)
{
	struct tlsa_wait w = *(struct tlsa_wait *)arg;
	free(arg);
	struct dlv_conn *c = w.d->conns[w.slot];
	if (!c || c->gen != w.gen || c->tlsa_seq != w.seq || !c->tlsa_pending) {
		dns_tlsa_free(t); /* the connection is gone, or moved on to another host */
		return;
	}
	c->tlsa_pending = false;
	c->tlsa = t;
	if (c->st == OC_TLSA)
		tls_settle(c);
}

/* Starts the TLSA lookup of the host the connection is about to try (tls = dane), unless its
 * answer is already there. A cache hit completes at once. */
static void
tlsa_start(struct dlv_conn *c)
{
	if (!tlsa_applies(c))
		return;
	if ((c->tlsa || c->tlsa_pending) && strcasecmp(c->tlsa_host, c->addr->host) == 0)
		return;
	dns_tlsa_free(c->tlsa);
	c->tlsa = NULL;
	c->tlsa_err = 0;
	struct tlsa_wait *w = malloc(sizeof *w);
	if (!w) {
		c->tlsa_err = -ENOMEM;
		return;
	}
	*w = (struct tlsa_wait){c->d, c->slot, c->gen, ++c->tlsa_seq};
	snprintf(c->tlsa_host, sizeof c->tlsa_host, "%s", c->addr->host);
	uint16_t port = ntohs(c->addr->sa.ss_family == AF_INET6
				  ? ((struct sockaddr_in6 *)&c->addr->sa)->sin6_port
				  : ((struct sockaddr_in *)&c->addr->sa)->sin_port);
	c->tlsa_pending = true;
	int rc = dns_tlsa_lookup(c->d->res, c->addr->host, port, dlv_now(c->d), on_tlsa, w);
	if (rc < 0) {
		free(w);
		c->tlsa_pending = false;
		c->tlsa_err = rc;
	}
}

/* How many of the TLSA records RFC 7672 lets SMTP use (DANE-TA/DANE-EE, known selector and
 * matching type); OpenSSL may still refuse a malformed one of them (tls_start). */
static unsigned
tlsa_usable(const struct dns_tlsa *t)
{
	unsigned n = 0;
	for (unsigned i = 0; i < t->nrr; i++) {
		const struct dns_tlsa_rr *r = &t->rr[i];
		n += (r->usage == 2 || r->usage == 3) && r->selector <= 1 && r->mtype <= 2;
	}
	return n;
}

/* Settles c->tls_need from the policy and, for dane, the TLSA answer. Returns false when the
 * connection failed (a TLSA lookup that failed: RFC 7672 2.2 makes it a temporary failure). */
static bool
tls_need_settle(struct dlv_conn *c)
{
	switch (conn_policy(c)->tls) {
	case CONFIG_TLS_NONE: c->tls_need = TN_NEVER; return true;
	case CONFIG_TLS_OPTIONAL: c->tls_need = TN_MAY; return true;
	case CONFIG_TLS_REQUIRED: c->tls_need = TN_MUST; return true;
	case CONFIG_TLS_VERIFY: c->tls_need = TN_VERIFY; return true;
	case CONFIG_TLS_DANE: break;
	}
	c->tls_need = TN_MAY;
	if (!tlsa_applies(c))
		return true;
	const struct dns_tlsa *t = c->tlsa;
	if (c->tlsa_err || !t || t->status == DNS_TLSA_TEMPFAIL) {
		char why[64];
		if (c->tlsa_err || !t)
			snprintf(why, sizeof why, "%s", strerror(-(c->tlsa_err ? c->tlsa_err : -EIO)));
		else if (t->err == DNS_TLSA_ERR_RCODE)
			snprintf(why, sizeof why, "DNS rcode %u", (unsigned)t->rcode);
		else
			snprintf(why, sizeof why, "%s", t->err == -ETIMEDOUT ? "timeout" : "lookup failed");
		conn_fail(c, "4.7.5", true, "TLSA lookup for %s failed (%s); tls = dane defers",
			  c->tlsa_host, why);
		return false;
	}
	if (t->status == DNS_TLSA_NONE)
		return true;
	if (!t->secure) {
		/* RFC 7672 2.2: TLSA records without DNSSEC are as good as none */
		if (log_start(LOG_INFO, "smtp_out_tlsa_insecure")) {
			log_str("site", c->site->key);
			log_str("name", t->name);
			log_finish();
		}
		return true;
	}
	c->tls_need = tlsa_usable(t) > 0 ? TN_DANE : TN_MUST;
	return true;
}

/* After EHLO (or HELO): STARTTLS, or on in the clear, or fail when the policy needs TLS and
 * the server does not offer it. With tls = dane it waits for the TLSA answer first. */
static void
tls_settle(struct dlv_conn *c)
{
	struct delivery *d = c->d;
	if (c->tlsa_pending) {
		c->st = OC_TLSA;
		conn_timer_set(c, (uint64_t)d->cfg->smtp_timeout * 1000);
		return;
	}
	if (!tls_need_settle(c))
		return;
	if (!c->tls && c->tls_need != TN_NEVER && c->caps.starttls && d->tls_ctx) {
		out_printf(c, "STARTTLS\r\n");
		c->st = OC_STARTTLS;
		out_flush(c);
		conn_timer_set(c, (uint64_t)d->cfg->smtp_timeout * 1000);
		return;
	}
	if (!c->tls && c->tls_need >= TN_MUST) {
		conn_fail(c, "4.7.5", true, "TLS is required ([domain] tls = %s%s) but %s",
			  policy_names[conn_policy(c)->tls],
			  c->tls_need == TN_DANE ? ", with TLSA records" : "",
			  !c->esmtp		? "the server does not speak ESMTP"
			  : !c->caps.starttls	? "the server does not offer STARTTLS"
						: "ringmx has no TLS client context (see the log)");
		return;
	}
	c->st = OC_READY;
	conn_next_txn(c);
}

/* The 220 to STARTTLS: the TLS client for this connection, set up for its tls_need. */
static int
tls_start(struct dlv_conn *c)
{
	const char *host = c->addr->host;
	c->tls = tls_client_new(c->d->tls_ctx, host);
	if (!c->tls) {
		conn_fail(c, "4.3.0", false, "out of memory for TLS");
		return -1;
	}
	int rc = 0;
	if (c->tls_need == TN_VERIFY) {
		rc = tls_client_require_pkix(c->tls, host);
	} else if (c->tls_need == TN_DANE) {
		/* the TLSA base domain is the MX host name (RFC 7672 2.2.2): the name DANE-TA
		 * certificates must carry, and the SNI */
		rc = tls_client_dane(c->tls, host);
		unsigned usable = 0;
		for (unsigned i = 0; rc == 0 && i < c->tlsa->nrr; i++) {
			const struct dns_tlsa_rr *r = &c->tlsa->rr[i];
			int a = tls_client_dane_add(c->tls, r->usage, r->selector, r->mtype, r->data,
						    r->len);
			if (a < 0)
				rc = -1;
			usable += a > 0;
		}
		if (rc == 0 && usable == 0) {
			/* every record malformed for OpenSSL: unusable, so encrypted without
			 * authentication (RFC 7672 2.2); a fresh client without DANE */
			tls_client_free(c->tls);
			c->tls_need = TN_MUST;
			c->tls = tls_client_new(c->d->tls_ctx, host);
			if (!c->tls) {
				conn_fail(c, "4.3.0", false, "out of memory for TLS");
				return -1;
			}
		}
	}
	if (rc < 0) {
		conn_fail(c, "4.7.5", true, "TLS: %s", tls_client_error(c->tls));
		return -1;
	}
	return 0;
}

/* ---- connecting ---- */

static int
conn_connect(struct dlv_conn *c)
{
	struct dlv_site *s = c->site;
	c->addr = &s->addr[c->addr_i % s->naddr];
	int fd = socket(c->addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	c->fd = fd;
	struct io_uring_sqe *sqe = out_sqe(c, K_CONNECT);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->addr->sa, c->addr->len);
	c->st = OC_CONNECT;
	conn_timer_set(c, (uint64_t)c->d->cfg->connect_timeout * 1000);
	tlsa_start(c); /* tls = dane: the host's TLSA records, while the connection is made */
	return 0;
}

static void
conn_timer_fire(struct timer *t)
{
	struct dlv_conn *c = (struct dlv_conn *)((char *)t - offsetof(struct dlv_conn, timer));
	if (c->st == OC_CLOSING)
		return;
	if (c->st == OC_IDLE) {
		conn_quit(c);
		return;
	}
	if (c->st == OC_QUIT) {
		conn_close(c);
		return;
	}
	static const char *const what[] = {
	    [OC_CONNECT] = "connecting", [OC_BANNER] = "waiting for the banner",
	    [OC_EHLO] = "waiting for the EHLO reply", [OC_HELO] = "waiting for the HELO reply",
	    [OC_STARTTLS] = "waiting for the STARTTLS reply", [OC_TLSHAKE] = "in the TLS handshake",
	    [OC_TLSA] = "waiting for the TLSA lookup",
	    [OC_TXN] = "waiting for a reply", [OC_BODY] = "waiting for the end-of-data reply",
	};
	conn_fail(c, "4.4.2", true, "timeout while %s",
		  c->st < (int)(sizeof what / sizeof what[0]) && what[c->st] ? what[c->st]
									   : "talking");
}

struct dlv_conn *
smtp_out_open(struct delivery *d, struct dlv_site *s)
{
	if (d->nconn_free == 0)
		return NULL;
	struct dlv_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->d = d;
	c->site = s;
	c->fd = -1;
	c->slot = d->conn_free[--d->nconn_free];
	c->gen = (++d->conn_gen & 0xffffff) ? d->conn_gen & 0xffffff : ++d->conn_gen;
	c->timer.fn = conn_timer_fire;
	c->addr_i = s->next_addr++;
	smtp_reply_reader_init(&c->rr);
	d->conns[c->slot] = c;
	d->nconns_open++;
	c->next = s->conns;
	s->conns = c;
	s->nconn++;
	s->sessions++;
	int rc = conn_connect(c);
	if (rc < 0) {
		c->st = OC_CONNECT;
		conn_fail(c, "4.4.1", true, "socket: %s", strerror(-rc));
		return NULL; /* released */
	}
	return c;
}

/* ---- closing ---- */

static void
conn_release(struct dlv_conn *c)
{
	struct delivery *d = c->d;
	struct dlv_site *s = c->site;
	timer_disarm(&d->loop->wheel, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	for (struct dlv_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	s->nconn--;
	atomic_fetch_sub(s->gconns, 1);
	d->conns[c->slot] = NULL;
	d->conn_free[d->nconn_free++] = c->slot;
	d->nconns_open--;
	if (log_start(LOG_DEBUG, "smtp_out_close")) {
		log_str("site", s->key);
		log_u64("transactions", c->transactions);
		log_finish();
	}
	free(c->out);
	free(c->out_retired);
	free(c->exp);
	free(c->cout);
	tls_client_free(c->tls);
	dns_tlsa_free(c->tlsa); /* a lookup still pending finds the slot changed (on_tlsa) */
	free(c);
	dlv_site_mark(s);
}

static void
conn_close(struct dlv_conn *c)
{
	if (c->st == OC_CLOSING)
		return;
	c->st = OC_CLOSING;
	timer_disarm(&c->d->loop->wheel, &c->timer);
	if (c->ops == 0) {
		/* inside a completion the handler still holds c: smtp_out_complete releases it */
		if (!c->in_cqe)
			conn_release(c);
		return;
	}
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	struct io_uring_sqe *sqe = out_sqe(c, K_CANCEL);
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
}

void
smtp_out_abort(struct dlv_conn *c)
{
	if (c->st != OC_CLOSING)
		conn_fail(c, "4.3.2", false, "ringmx is shutting down");
}

void
smtp_out_shutdown(struct dlv_conn *c)
{
	if (c->st == OC_IDLE)
		conn_quit(c);
}

/* Settles what the transaction left open as deferred, and closes. */
static void
conn_fail(struct dlv_conn *c, const char *status, bool site_trouble, const char *fmt, ...)
{
	char reason[DLV_DIAG_MAX], relay[DLV_RELAY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	conn_relay(c, relay, sizeof relay);
	char full[DLV_DIAG_MAX];
	snprintf(full, sizeof full, "%s (%s)", reason, relay);
	bool before_txn = c->st < OC_READY;
	if (c->job) {
		struct dlv_job *j = c->job;
		for (uint32_t i = 0; i < c->ntx; i++)
			if (j->state[i] == R_PENDING || j->state[i] == R_ACCEPTED)
				dlv_rcpt_result(c->d, j, i, R_DEFERRED, status, full, relay,
						c->addr ? c->addr->host : NULL);
		c->job = NULL;
		conn_body_put(c, j);
		dlv_job_done(c->d, j, c->ntx, relay, site_trouble);
	}
	if (site_trouble && (before_txn || c->transactions == 0))
		dlv_site_failed(c->site, status, full);
	if (log_start(LOG_INFO, "smtp_out_fail")) {
		log_str("site", c->site->key);
		log_str("relay", relay);
		log_str("reason", reason);
		log_finish();
	}
	conn_close(c);
}

/* ---- transactions ---- */

static void
exp_push(struct dlv_conn *c, enum expect e)
{
	ASSERT(c->nexp < DLV_EXPECT_MAX);
	c->exp[c->nexp++] = (uint16_t)e;
}

static const char *
rcpt_class_status(int code)
{
	return code >= 500 ? "5.0.0" : "4.0.0";
}

/* The status of a reply: its enhanced code, else one from its class. */
static const char *
reply_status(const struct smtp_reply *r)
{
	return r->enh[0] ? r->enh : rcpt_class_status(r->code);
}

static void
reply_diag(const struct smtp_reply *r, char *buf, size_t len)
{
	if (r->enh[0])
		snprintf(buf, len, "%d %s %s", r->code, r->enh, r->text);
	else
		snprintf(buf, len, "%d %s", r->code, r->text);
}

/* Emits command number k of the transaction (its place in exp). */
static void
emit(struct dlv_conn *c, uint32_t k)
{
	struct dlv_job *j = c->job;
	const struct qmsg *m = j->m;
	switch (c->exp[k]) {
	case EX_MAIL: {
		char params[128] = "";
		size_t o = 0;
		if (c->caps.size_present)
			o += (size_t)snprintf(params + o, sizeof params - o, " SIZE=%u", m->v.msg_len);
		if ((m->v.flags & SPOOL_F_8BITMIME) && c->caps.eightbitmime)
			o += (size_t)snprintf(params + o, sizeof params - o, " BODY=8BITMIME");
		if ((m->v.flags & SPOOL_F_SMTPUTF8) && c->caps.smtputf8)
			snprintf(params + o, sizeof params - o, " SMTPUTF8");
		out_printf(c, "MAIL FROM:<%.*s>%s\r\n", (int)m->v.from.len, m->v.from.p, params);
		break;
	}
	case EX_RCPT: {
		struct spool_str r = m->rcpt[j->ridx[k - 1]];
		out_printf(c, "RCPT TO:<%.*s>\r\n", (int)r.len, r.p);
		break;
	}
	case EX_DATA:
		out_printf(c, "DATA\r\n");
		break;
	case EX_BODY:
		if (k > 0 && c->exp[k - 1] == EX_DATA) {
			/* after 354: the dot-stuffed body and its terminator */
			/* small bodies: room for the worst case (every byte a bare line end: 2 len
			 * + 5), so they are scanned once, while written; large ones are measured
			 * first rather than doubling their buffer */
			size_t len = m->v.msg_len;
			size_t need = !c->naccepted	 ? 3
				      : len <= 1u << 20 ? 2 * len + 5
							 : body_encode_data_size(c->body, len);
			if (!out_reserve(c, need))
				break;
			if (c->naccepted)
				c->out_len += body_encode_data(c->body, m->v.msg_len, c->out + c->out_len);
			else
				memcpy(c->out + c->out_len, ".\r\n", 3), c->out_len += 3;
		} else {
			out_printf(c, "BDAT %u LAST\r\n", m->v.msg_len);
			if (out_reserve(c, m->v.msg_len)) {
				memcpy(c->out + c->out_len, c->body, m->v.msg_len);
				c->out_len += m->v.msg_len;
			}
		}
		break;
	case EX_RSET:
		out_printf(c, "RSET\r\n");
		break;
	default:
		break;
	}
}

static void
txn_finish(struct dlv_conn *c)
{
	char relay[DLV_RELAY_MAX];
	conn_relay(c, relay, sizeof relay);
	struct dlv_job *j = c->job;
	for (uint32_t i = 0; i < c->ntx; i++)
		if (j->state[i] == R_PENDING || j->state[i] == R_ACCEPTED)
			dlv_rcpt_result(c->d, j, i, R_DEFERRED, "4.4.2", "no reply for this recipient",
					relay, c->addr->host);
	c->job = NULL;
	conn_body_put(c, j);
	c->transactions++;
	c->site->transactions++;
	dlv_site_ok(c->site);
	dlv_job_done(c->d, j, c->ntx, relay, false);
	conn_next_txn(c);
}

static bool
txn_reject_early(struct dlv_conn *c, struct dlv_job *j, uint32_t ntx)
{
	const struct qmsg *m = j->m;
	char relay[DLV_RELAY_MAX], diag[DLV_DIAG_MAX];
	const char *status = NULL;
	if (c->caps.size && m->v.msg_len > c->caps.size) {
		status = "5.3.4";
		snprintf(diag, sizeof diag, "message size %u exceeds the remote limit of %llu bytes",
			 m->v.msg_len, (unsigned long long)c->caps.size);
	} else if ((m->v.flags & SPOOL_F_SMTPUTF8) && !c->caps.smtputf8) {
		status = "5.6.7";
		snprintf(diag, sizeof diag, "SMTPUTF8 is required but the remote does not offer it");
	}
	if (!status)
		return false;
	conn_relay(c, relay, sizeof relay);
	for (uint32_t i = 0; i < ntx; i++)
		dlv_rcpt_result(c->d, j, i, R_FAILED, status, diag, relay, c->addr->host);
	dlv_job_done(c->d, j, ntx, relay, false);
	return true;
}

static void
conn_quit(struct dlv_conn *c)
{
	c->st = OC_QUIT;
	out_printf(c, "QUIT\r\n");
	out_flush(c);
	conn_timer_set(c, QUIT_WAIT_MS);
}

static void
conn_next_txn(struct dlv_conn *c)
{
	struct delivery *d = c->d;
	const struct config_domain_policy *pol = conn_policy(c);
	for (;;) {
		if (d->stopping || c->transactions >= pol->max_messages_per_connection) {
			conn_quit(c);
			return;
		}
		struct dlv_job *j = dlv_site_take(c->site);
		if (!j && atomic_exchange(c->site->gstarved, 0)) {
			/* another shard waits for a place in this site's connections: give ours */
			conn_quit(c);
			return;
		}
		if (!j) {
			c->st = OC_IDLE;
			unsigned idle = d->cfg->idle_timeout;
			conn_timer_set(c, idle ? (uint64_t)idle * 1000 : 1);
			return;
		}
		uint32_t ntx = j->n < pol->max_recipients ? j->n : pol->max_recipients;
		if (ntx > DLV_EXPECT_MAX - 4)
			ntx = DLV_EXPECT_MAX - 4;
		for (uint32_t i = 0; i < j->n; i++)
			j->state[i] = R_PENDING;
		if (txn_reject_early(c, j, ntx)) {
			c->transactions++;
			continue;
		}
		/* the body, from memory or read back from the spool, for this transaction */
		c->body = qmsg_body_get(j->m, d->dirfd);
		if (!c->body) {
			char relay[DLV_RELAY_MAX];
			conn_relay(c, relay, sizeof relay);
			for (uint32_t i = 0; i < ntx; i++)
				dlv_rcpt_result(d, j, i, R_DEFERRED, "4.3.0",
						"cannot read the message back from the spool", relay,
						NULL);
			dlv_job_done(d, j, ntx, relay, false);
			continue;
		}
		c->job = j;
		c->ntx = ntx;
		c->naccepted = 0;
		c->nexp = c->exp_head = 0;
		c->rcpt_reply = 0;
		c->body_replies = 0;
		c->mail_failed = false;
		c->data_go = false;
		c->pipelined = c->esmtp && c->caps.pipelining;
		bool bdat = c->esmtp && c->caps.chunking && !c->site->lmtp;
		if (!c->exp && !(c->exp = malloc(DLV_EXPECT_MAX * sizeof *c->exp))) {
			conn_fail(c, "4.3.0", false, "out of memory");
			return;
		}
		exp_push(c, EX_MAIL);
		for (uint32_t i = 0; i < ntx; i++)
			exp_push(c, EX_RCPT);
		exp_push(c, bdat ? EX_BODY : EX_DATA);
		c->st = OC_TXN;
		if (c->pipelined) {
			for (uint32_t k = 0; k < c->nexp; k++)
				emit(c, k);
			c->unsent_from = c->nexp;
		} else {
			emit(c, 0);
			c->unsent_from = 1;
		}
		out_flush(c);
		conn_timer_set(c, (uint64_t)d->cfg->smtp_timeout * 1000);
		return;
	}
}

void
smtp_out_kick(struct dlv_conn *c)
{
	if (c->st == OC_IDLE)
		conn_next_txn(c);
}

/* Non-pipelined: sends the next command, unless what follows depends on the replies. */
static void
send_next(struct dlv_conn *c)
{
	if (c->unsent_from >= c->nexp)
		return;
	uint32_t k = c->unsent_from;
	if ((c->exp[k] == EX_DATA || (c->exp[k] == EX_BODY && c->exp[k - 1] != EX_DATA)) &&
	    c->naccepted == 0) {
		/* no recipient accepted: no data; close the transaction instead */
		c->nexp = k;
		exp_push(c, EX_RSET);
		emit(c, k);
		c->unsent_from = c->nexp;
		out_flush(c);
		return;
	}
	emit(c, k);
	c->unsent_from = k + 1;
	out_flush(c);
}

static void
on_txn_reply(struct dlv_conn *c, const struct smtp_reply *r)
{
	struct dlv_job *j = c->job;
	char relay[DLV_RELAY_MAX], diag[DLV_DIAG_MAX];
	conn_relay(c, relay, sizeof relay);
	reply_diag(r, diag, sizeof diag);
	ASSERT(c->exp_head < c->nexp);
	uint32_t k = c->exp_head++;
	bool ok = r->code >= 200 && r->code < 300;
	enum rcpt_state bad = r->code >= 500 ? R_FAILED : R_DEFERRED;
	switch (c->exp[k]) {
	case EX_MAIL:
		if (!ok) {
			c->mail_failed = true;
			for (uint32_t i = 0; i < c->ntx; i++)
				dlv_rcpt_result(c->d, j, i, bad, reply_status(r), diag, relay,
						c->addr->host);
			if (!c->pipelined)
				c->nexp = c->exp_head; /* nothing more to send or read */
		}
		break;
	case EX_RCPT: {
		uint32_t i = c->rcpt_reply++;
		if (c->mail_failed)
			break;
		if (ok) {
			j->state[i] = R_ACCEPTED;
			c->naccepted++;
		} else {
			dlv_rcpt_result(c->d, j, i, bad, reply_status(r), diag, relay, c->addr->host);
		}
		break;
	}
	case EX_DATA:
		if (r->code == 354) {
			/* the body goes now (an empty one when nothing was accepted) */
			uint32_t body_k = c->nexp;
			exp_push(c, EX_BODY);
			emit(c, body_k);
			if (c->naccepted == 0 || c->mail_failed) {
				exp_push(c, EX_RSET);
				emit(c, c->nexp - 1);
			} else if (c->site->lmtp) {
				for (uint32_t n = 1; n < c->naccepted; n++)
					exp_push(c, EX_BODY);
			}
			c->unsent_from = c->nexp;
			c->st = OC_BODY;
			out_flush(c);
		} else {
			if (!c->mail_failed)
				for (uint32_t i = 0; i < c->ntx; i++)
					if (j->state[i] == R_ACCEPTED)
						dlv_rcpt_result(c->d, j, i,
								ok ? R_DEFERRED : bad,
								reply_status(r), diag, relay,
								c->addr->host);
			/* the transaction may still be open on the remote side */
			exp_push(c, EX_RSET);
			emit(c, c->nexp - 1);
			c->unsent_from = c->nexp;
			out_flush(c);
		}
		break;
	case EX_BODY:
		if (!ok && k > 0 && c->exp[k - 1] != EX_DATA) {
			/* a refused BDAT may leave the transaction open on the remote side */
			exp_push(c, EX_RSET);
			emit(c, c->nexp - 1);
			c->unsent_from = c->nexp;
			out_flush(c);
		}
		if (c->mail_failed || c->naccepted == 0)
			break;
		if (c->site->lmtp) {
			/* one reply per accepted recipient, in RCPT order: the first one still
			 * waiting is the one this reply is for */
			c->body_replies++;
			for (uint32_t i = 0; i < c->ntx; i++) {
				if (j->state[i] != R_ACCEPTED)
					continue;
				dlv_rcpt_result(c->d, j, i, ok ? R_DELIVERED : bad,
						ok ? (r->enh[0] ? r->enh : "2.0.0") : reply_status(r),
						diag, relay, c->addr->host);
				break;
			}
		} else {
			for (uint32_t i = 0; i < c->ntx; i++)
				if (j->state[i] == R_ACCEPTED)
					dlv_rcpt_result(c->d, j, i, ok ? R_DELIVERED : bad,
							ok ? (r->enh[0] ? r->enh : "2.0.0")
							   : reply_status(r),
							diag, relay, c->addr->host);
		}
		break;
	case EX_RSET:
		break;
	default:
		break;
	}
	if (!c->pipelined && c->exp_head == c->unsent_from && c->unsent_from < c->nexp)
		send_next(c);
	if (c->exp_head == c->nexp && c->st != OC_CLOSING)
		txn_finish(c);
}

/* ---- replies ---- */

static void
on_reply(struct dlv_conn *c, const struct smtp_reply *r)
{
	struct delivery *d = c->d;
	char diag[DLV_DIAG_MAX];
	if (r->code == 421 && c->st != OC_QUIT) {
		reply_diag(r, diag, sizeof diag);
		conn_fail(c, r->enh[0] ? r->enh : "4.3.2", true, "%s", diag);
		return;
	}
	switch (c->st) {
	case OC_BANNER:
		if (r->code != 220) {
			reply_diag(r, diag, sizeof diag);
			conn_fail(c, "4.4.2", true, "banner: %s", diag);
			return;
		}
		out_printf(c, "%s %s\r\n", c->site->lmtp ? "LHLO" : "EHLO", d->cfg->helo_name);
		smtp_reply_reader_expect_ehlo(&c->rr);
		c->st = OC_EHLO;
		out_flush(c);
		conn_timer_set(c, (uint64_t)d->cfg->smtp_timeout * 1000);
		return;
	case OC_EHLO:
		if (r->code == 250) {
			c->caps = r->caps;
			c->esmtp = true;
			if (c->tls) {
				c->st = OC_READY;
				conn_next_txn(c);
				return;
			}
			tls_settle(c);
			return;
		}
		if (r->code >= 500 && !c->site->lmtp) {
			out_printf(c, "HELO %s\r\n", d->cfg->helo_name);
			c->st = OC_HELO;
			out_flush(c);
			return;
		}
		reply_diag(r, diag, sizeof diag);
		conn_fail(c, "4.4.2", true, "EHLO: %s", diag);
		return;
	case OC_HELO:
		if (r->code == 250) {
			memset(&c->caps, 0, sizeof c->caps);
			tls_settle(c); /* no STARTTLS without ESMTP: fails when TLS is needed */
			return;
		}
		reply_diag(r, diag, sizeof diag);
		conn_fail(c, "4.4.2", true, "HELO: %s", diag);
		return;
	case OC_STARTTLS:
		if (r->code != 220) {
			if (c->tls_need >= TN_MUST) {
				reply_diag(r, diag, sizeof diag);
				conn_fail(c, "4.7.5", true, "STARTTLS refused: %s", diag);
				return;
			}
			/* opportunistic: on in the clear */
			c->st = OC_READY;
			conn_next_txn(c);
			return;
		}
		if (tls_start(c) < 0)
			return;
		c->drop_input = true;
		c->st = OC_TLSHAKE;
		if (tls_client_handshake(c->tls) < 0) {
			conn_fail(c, "4.7.5", true, "TLS handshake: %s", tls_client_error(c->tls));
			return;
		}
		out_flush(c); /* the ClientHello */
		return;
	case OC_TXN:
	case OC_BODY:
		on_txn_reply(c, r);
		return;
	case OC_QUIT:
		conn_close(c);
		return;
	default:
		/* idle: the server said something unasked (a timeout notice): leave */
		conn_close(c);
		return;
	}
}

/* Plaintext from the server: every complete reply in it, in order. */
static void
replies_feed(struct dlv_conn *c, const char *p, size_t n)
{
	size_t off = 0;
	c->drop_input = false;
	while (off < n && c->st != OC_CLOSING) {
		size_t used = 0;
		struct smtp_reply r;
		enum smtp_reply_result rr = smtp_reply_feed(&c->rr, p + off, n - off, &used, &r);
		off += used;
		if (rr == SMTP_REPLY_MORE)
			break;
		if (rr == SMTP_REPLY_BAD) {
			conn_fail(c, "4.5.0", true, "bad reply: %s", r.text);
			return;
		}
		on_reply(c, &r);
		if (c->drop_input) {
			/* the 220 to STARTTLS: whatever came with it is not part of the TLS
			 * session and is never read as a reply (client-side STARTTLS injection) */
			if (off < n && log_start(LOG_WARN, "smtp_out_tls_injection")) {
				log_str("site", c->site->key);
				log_u64("discarded", n - off);
				log_finish();
			}
			c->drop_input = false;
			return;
		}
	}
}

/* Ciphertext from the server: the handshake, then plaintext replies. Returns -1 when the
 * connection failed. */
static int
tls_input(struct dlv_conn *c, size_t n)
{
	if (tls_client_feed(c->tls, c->in, n) < 0) {
		conn_fail(c, "4.7.0", true, "TLS: %s", tls_client_error(c->tls));
		return -1;
	}
	if (!c->tls_done) {
		int r = tls_client_handshake(c->tls);
		if (r < 0) {
			conn_fail(c, "4.7.5", true, "TLS handshake: %s", tls_client_error(c->tls));
			return -1;
		}
		out_flush(c);
		if (r == 0)
			return 0;
		c->tls_done = true;
		char what[96], relay[DLV_RELAY_MAX];
		tls_client_describe(c->tls, what, sizeof what);
		conn_relay(c, relay, sizeof relay);
		if (log_start(LOG_INFO, "smtp_out_tls")) {
			log_str("site", c->site->key);
			log_str("relay", relay);
			log_str("tls", what);
			log_str("verified", tls_client_auth_result(c->tls));
			log_str("policy", policy_names[conn_policy(c)->tls]);
			if (c->tls_need == TN_MUST && conn_policy(c)->tls == CONFIG_TLS_DANE)
				log_str("dane", "unusable TLSA records: encrypted only");
			log_finish();
		}
		/* RFC 3207 4.2: forget what the server said before; EHLO again */
		smtp_reply_reader_init(&c->rr);
		memset(&c->caps, 0, sizeof c->caps);
		out_printf(c, "EHLO %s\r\n", c->d->cfg->helo_name);
		smtp_reply_reader_expect_ehlo(&c->rr);
		c->st = OC_EHLO;
		conn_timer_set(c, (uint64_t)c->d->cfg->smtp_timeout * 1000);
		out_flush(c);
	}
	char plain[4096];
	for (;;) {
		ssize_t got = tls_client_read(c->tls, plain, sizeof plain);
		if (got < 0) {
			if (c->st == OC_QUIT || c->st == OC_IDLE) {
				conn_close(c);
				return -1;
			}
			conn_fail(c, "4.4.2", false, "TLS: %s", tls_client_error(c->tls));
			return -1;
		}
		if (got == 0)
			break;
		replies_feed(c, plain, (size_t)got);
		if (c->st == OC_CLOSING)
			return -1;
	}
	out_flush(c);
	return 0;
}

static void
on_recv(struct dlv_conn *c, int res)
{
	c->recv_armed = false;
	if (c->st == OC_CLOSING)
		return;
	if (res <= 0) {
		if (c->st == OC_QUIT || c->st == OC_IDLE) {
			conn_close(c);
			return;
		}
		conn_fail(c, "4.4.2", c->st < OC_READY, "lost connection: %s",
			  res == 0 ? "closed by the remote" : strerror(-res));
		return;
	}
	if (!c->tls) {
		replies_feed(c, c->in, (size_t)res);
	} else if (tls_input(c, (size_t)res) < 0) {
		return;
	}
	if (c->st != OC_CLOSING)
		recv_arm(c);
}

static void
on_send(struct dlv_conn *c, int res)
{
	c->send_armed = false;
	free(c->out_retired);
	c->out_retired = NULL;
	if (c->st == OC_CLOSING)
		return;
	if (res < 0) {
		if (c->st == OC_QUIT) {
			conn_close(c);
			return;
		}
		conn_fail(c, "4.4.2", false, "send: %s", strerror(-res));
		return;
	}
	if (c->send_tls) {
		c->cout_sent += (size_t)res;
		if (c->cout_sent == c->cout_len)
			c->cout_sent = c->cout_len = 0;
		out_flush(c); /* the rest, or what TLS made meanwhile */
		return;
	}
	c->out_sent += (size_t)res;
	if (c->out_sent == c->out_len) {
		c->out_sent = c->out_len = 0;
		if (c->out_cap > 256 * 1024) { /* a big body went out: give the memory back */
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
		if (c->tls)
			out_flush(c); /* the switch to TLS happened while this went out */
		return;
	}
	out_flush(c);
}

static void
on_connect(struct dlv_conn *c, int res)
{
	if (c->st == OC_CLOSING)
		return;
	if (res < 0) {
		char what[DLV_DIAG_MAX];
		snprintf(what, sizeof what, "connect to %s[%s]: %s", c->addr->host, c->addr->text,
			 strerror(-res));
		if (++c->addr_tries < c->site->naddr) {
			/* the next address of the site, on a fresh socket */
			if (log_start(LOG_INFO, "smtp_out_fail")) {
				log_str("site", c->site->key);
				log_str("reason", what);
				log_finish();
			}
			close(c->fd);
			c->fd = -1;
			c->addr_i++;
			int rc = conn_connect(c);
			if (rc == 0)
				return;
		}
		conn_fail(c, "4.4.1", true, "%s", what);
		return;
	}
	c->st = OC_BANNER;
	conn_timer_set(c, (uint64_t)c->d->cfg->smtp_timeout * 1000);
	recv_arm(c);
}

void
smtp_out_complete(struct delivery *d, const struct io_uring_cqe *cqe)
{
	uint32_t slot = loop_ud_slot(cqe->user_data);
	enum out_kind k = (enum out_kind)(slot >> SLOT_BITS);
	slot &= (1u << SLOT_BITS) - 1;
	if (slot >= d->nconns_cap)
		return;
	struct dlv_conn *c = d->conns[slot];
	if (!c || c->gen != loop_ud_gen(cqe->user_data))
		return;
	ASSERT(c->ops > 0);
	c->ops--;
	c->in_cqe = true;
	switch (k) {
	case K_CONNECT:
		on_connect(c, cqe->res);
		break;
	case K_RECV:
		on_recv(c, cqe->res);
		break;
	case K_SEND:
		on_send(c, cqe->res);
		break;
	default:
		break;
	}
	c->in_cqe = false;
	if (c->st == OC_CLOSING && c->ops == 0)
		conn_release(c);
}
