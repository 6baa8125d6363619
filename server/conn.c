#include "server/conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/assert.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/proxy.h"
#include "server/shard_impl.h"

/* After a final reply, a client that never reads must not hold the slot for long. */
#define CONN_CLOSE_BACKSTOP_MS 5000
#define CONN_LINGER_MS 2000 /* after the final reply: how long we read and drop */

static int
plain_on_recv(struct conn *c, const char *p, size_t n)
{
	conn_deliver(c, p, n);
	return 0;
}

static void
plain_wire_out(struct conn *c, const char **p, size_t *n)
{
	*p = c->out;
	*n = c->out_len;
}

static void
plain_wire_sent(struct conn *c, size_t n)
{
	ASSERT(n <= c->out_inflight && n <= c->out_len);
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= (uint32_t)n;
}

static size_t
plain_wire_pending(const struct conn *c)
{
	return c->out_len;
}

const struct transport_ops transport_plain = {
	.name = "plain",
	.on_recv = plain_on_recv,
	.wire_out = plain_wire_out,
	.wire_sent = plain_wire_sent,
	.wire_pending = plain_wire_pending,
	.release = NULL,
};

static struct io_uring_sqe *
conn_sqe(struct conn *c, unsigned op)
{
	struct io_uring_sqe *sqe = loop_sqe(&c->shard->loop);
	io_uring_sqe_set_data64(sqe, loop_ud(op, c->slot, c->gen));
	c->ops++;
	return sqe;
}

/* Grows the reply buffer. A send in flight may be reading the old one, so it is retired, not
 * freed, until that send completes; once one buffer is retired, the send reads that one (or
 * the inline one, or TLS's own), so later ones can go at once. */
static void
conn_out_grow(struct conn *c, size_t need)
{
	size_t cap = c->out_cap;
	while (cap < need)
		cap *= 2;
	char *nb = malloc(cap);
	ASSERT(nb != NULL);
	memcpy(nb, c->out, c->out_len);
	if (c->out != c->out_inline) {
		if (c->send_inflight && c->out_retired == NULL)
			c->out_retired = c->out;
		else
			free(c->out);
	}
	c->out = nb;
	c->out_cap = (uint32_t)cap;
}

void
conn_reply(struct conn *c, const char *p, size_t n)
{
	if (c->closing)
		return;
	/* An inline buffer being sent from cannot take new bytes in place safely either way:
	 * bytes after out_inflight are never read by that send, so appending is fine. */
	if ((size_t)c->out_len + n > c->out_cap)
		conn_out_grow(c, (size_t)c->out_len + n);
	memcpy(c->out + c->out_len, p, n);
	c->out_len += (uint32_t)n;
	shard_conn_dirty(c->shard, c);
}

void
conn_replyf(struct conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	ASSERT(n > 0);
	if ((size_t)n >= sizeof buf)
		n = sizeof buf - 1;
	conn_reply(c, buf, (size_t)n);
}

void
conn_flush(struct conn *c)
{
	c->dirty = false;
	if (c->closing || c->send_inflight)
		return;
	const char *p;
	size_t n;
	c->tp->wire_out(c, &p, &n);
	if (n == 0 || c->closing)
		return;
	struct io_uring_sqe *sqe = conn_sqe(c, OP_SEND);
	io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
	c->send_inflight = true;
	c->out_inflight = (uint32_t)n;
}

static void conn_linger(struct conn *c);

void
conn_on_send(struct conn *c, int res)
{
	ASSERT(c->send_inflight && c->ops > 0);
	c->ops--;
	c->send_inflight = false;
	free(c->out_retired);
	c->out_retired = NULL;
	if (c->closing) {
		c->out_len = 0;
		return;
	}
	if (res < 0) {
		/* EPIPE, ECONNRESET: the client is gone; nothing more can be said. */
		if (log_start(LOG_DEBUG, "send_error")) {
			log_str("client", c->peer_ip);
			log_str("error", strerror(-res));
			log_finish();
		}
		c->out_len = 0;
		conn_close(c);
		return;
	}
	ASSERT((uint32_t)res <= c->out_inflight);
	c->tp->wire_sent(c, (size_t)res);
	c->out_inflight = 0;
	if (c->tp->wire_pending(c) > 0) {
		shard_conn_dirty(c->shard, c);
		return;
	}
	if (c->out != c->out_inline) {
		/* Drained: give the heap buffer back so an idle connection stays small. */
		free(c->out);
		c->out = c->out_inline;
		c->out_cap = CONN_OUT_INLINE;
	}
	if (c->close_after_flush)
		conn_linger(c);
}

/*
 * The final reply is out: shut our side (FIN) and read and drop what the client still sends
 * until it closes or CONN_LINGER_MS pass. Closing at once with its bytes unread would send an
 * RST, and an RST makes the client's kernel throw away our last reply unread (a 421 at a
 * session timeout while the client streams DATA, say).
 */
static void
conn_linger(struct conn *c)
{
	if (c->eof || c->lingering) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	shutdown(c->fd, SHUT_WR);
	c->session_deadline_ms = UINT64_MAX;
	conn_set_timeout_ms(c, CONN_LINGER_MS);
	if (!c->recv_armed)
		conn_recv_update(c);
}

void
conn_close_after_flush(struct conn *c)
{
	if (c->closing)
		return;
	c->close_after_flush = true;
	c->sess.state = SMTP_ST_CLOSING;
	/* the backstop holds even past the session's deadline (the reply may be that one's) */
	c->session_deadline_ms = UINT64_MAX;
	conn_set_timeout_ms(c, CONN_CLOSE_BACKSTOP_MS);
	if (!c->send_inflight && c->tp->wire_pending(c) == 0)
		conn_close(c);
}

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->sess.state = SMTP_ST_CLOSING;
	timer_disarm(&c->shard->loop.wheel, &c->timer);
	if (c->recv_armed && !c->recv_cancelling) {
		struct io_uring_sqe *sqe = conn_sqe(c, OP_CANCEL);
		io_uring_prep_cancel64(sqe, loop_ud(OP_RECV, c->slot, c->gen), 0);
		c->recv_cancelling = true;
	}
	struct io_uring_sqe *sqe = conn_sqe(c, OP_CLOSE);
	io_uring_prep_close(sqe, c->fd);
}

void
conn_on_op_done(struct conn *c)
{
	ASSERT(c->ops > 0);
	c->ops--;
}

void
conn_set_timeout_ms(struct conn *c, uint64_t ms)
{
	struct loop *l = &c->shard->loop;
	c->deadline_ms = l->now_ms + ms;
	uint64_t when = c->deadline_ms < c->session_deadline_ms ? c->deadline_ms
								  : c->session_deadline_ms;
	timer_arm(&l->wheel, &c->timer, when);
}

void
conn_set_timeout(struct conn *c, unsigned seconds)
{
	if (seconds == 0) {
		c->deadline_ms = UINT64_MAX;
		timer_arm(&c->shard->loop.wheel, &c->timer, c->session_deadline_ms);
		return;
	}
	conn_set_timeout_ms(c, (uint64_t)seconds * 1000);
}

static void
conn_in_keep(struct conn *c, const char *p, size_t n)
{
	if ((size_t)c->in_len + n > c->in_cap) {
		size_t cap = c->in_cap ? c->in_cap : 1024;
		while (cap < (size_t)c->in_len + n)
			cap *= 2;
		char *nb = realloc(c->in, cap);
		ASSERT(nb != NULL);
		c->in = nb;
		c->in_cap = (uint32_t)cap;
	}
	memmove(c->in + c->in_len, p, n);
	c->in_len += (uint32_t)n;
}

/* Feeds the kept input to the session and keeps only what it leaves. */
static void
conn_in_drain(struct conn *c)
{
	while (c->in_len > 0 && !c->closing) {
		size_t used = smtp_session_event(c, SMTP_EV_DATAIN, c->in, c->in_len, 0);
		if (used == 0)
			break;
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= (uint32_t)used;
	}
	if (c->in_len == 0 && c->in) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

void
conn_deliver(struct conn *c, const char *p, size_t n)
{
	if (c->closing || c->sess.state == SMTP_ST_CLOSING)
		return; /* after a final reply (QUIT, 421) the rest is not read */
	c->sess.bytes_in += n;
	if (c->in_len > 0) {
		/* Earlier bytes wait (partial line, or a commit in progress): keep order. */
		if ((size_t)c->in_len + n > CONN_IN_HARD_BYTES) {
			conn_reply_lit(c, "421 4.7.0 Error: too much pipelined input\r\n");
			conn_close_after_flush(c);
			return;
		}
		conn_in_keep(c, p, n);
		conn_in_drain(c);
	} else {
		size_t used = 0;
		while (used < n && !c->closing) {
			size_t u = smtp_session_event(c, SMTP_EV_DATAIN, p + used, n - used, 0);
			if (u == 0)
				break;
			used += u;
		}
		if (used < n && !c->closing)
			conn_in_keep(c, p + used, n - used);
	}
	conn_recv_update(c);
}

void
conn_resume(struct conn *c)
{
	conn_in_drain(c);
	conn_recv_update(c);
}

/* Reads while the session can use input; stops (cancels the multishot recv) while too much
 * unconsumed input waits, so a pipelining client is held back by TCP, not by our memory. */
void
conn_recv_update(struct conn *c)
{
	bool want = !c->closing && !c->eof && (c->lingering || c->in_len < CONN_IN_PAUSE_BYTES);
	if (want && !c->recv_armed) {
		struct io_uring_sqe *sqe = conn_sqe(c, OP_RECV);
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = (uint16_t)c->shard->loop.buf_group;
		c->recv_armed = true;
		c->recv_cancelling = false;
	} else if (!want && c->recv_armed && !c->recv_cancelling && !c->closing) {
		struct io_uring_sqe *sqe = conn_sqe(c, OP_CANCEL);
		io_uring_prep_cancel64(sqe, loop_ud(OP_RECV, c->slot, c->gen), 0);
		c->recv_cancelling = true;
	}
}

void
conn_on_recv(struct conn *c, const struct io_uring_cqe *cqe)
{
	struct loop *l = &c->shard->loop;
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		ASSERT(c->recv_armed && c->ops > 0);
		c->recv_armed = false;
		c->recv_cancelling = false;
		c->ops--;
	}
	if (cqe->res > 0) {
		ASSERT(cqe->flags & IORING_CQE_F_BUFFER);
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (!c->closing && !c->lingering) {
			int rc = c->tp->on_recv(c, loop_buf(l, bid), (size_t)cqe->res);
			if (rc < 0)
				conn_close(c);
		}
		loop_buf_return(l, bid);
	} else if (cqe->res == 0) {
		c->eof = true;
		conn_close(c); /* the client went away; anything unfinished is dropped */
	} else if (cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
		if (log_start(LOG_DEBUG, "recv_error")) {
			log_str("client", c->peer_ip);
			log_str("error", strerror(-cqe->res));
			log_finish();
		}
		conn_close(c);
	}
	if (!c->recv_armed && !c->closing)
		conn_recv_update(c); /* re-arm after ENOBUFS or a paused-then-resumed read */
}

void
conn_free_buffers(struct conn *c)
{
	smtp_session_free(&c->sess);
	if (c->tp->release)
		c->tp->release(c);
	c->tp = &transport_plain;
	if (c->out != c->out_inline)
		free(c->out);
	free(c->out_retired);
	free(c->in);
	c->out = c->out_inline;
	c->out_cap = CONN_OUT_INLINE;
	c->out_len = 0;
	c->out_retired = NULL;
	c->in = NULL;
	c->in_len = c->in_cap = 0;
}

/* ---- the PROXY protocol header ---------------------------------------------------------- */

/* The header is complete: the client it names becomes the peer (LOCAL: the proxy stays the
 * peer), the proxy's connection ticket is given back and the session starts as on any
 * listener: the per-IP limit for the client, implicit TLS, the greeting. */
static void
proxy_header_done(struct conn *c, enum proxy_result r, const struct proxy_info *info)
{
	char proxy_ip[sizeof c->peer_ip];

	memcpy(proxy_ip, c->peer_ip, sizeof proxy_ip);
	if (r == PROXY_DONE) {
		c->peer = info->src;
		listen_addr_text((const struct sockaddr *)&c->peer, c->peer_ip, sizeof c->peer_ip,
				 &c->peer_port);
	}
	if (log_start(LOG_INFO, "proxy")) {
		log_str("client", c->peer_ip);
		log_u64("port", c->peer_port);
		log_str("proxy", proxy_ip);
		log_u64("version", (uint64_t)info->version);
		if (r == PROXY_LOCAL)
			log_str("command", "local");
		log_finish();
	}
	conn_limits_release(&c->ticket);
	c->tp = &transport_plain;
	shard_conn_begin(c);
}

/* Reads nothing but the header: a partial one waits in c->in (less than PROXY_HEADER_MAX
 * bytes, plus the read that completes it); once it is whole, what follows it goes to the
 * transport the connection has from then on (plain, or TLS: ciphertext). */
static int
proxy_on_recv(struct conn *c, const char *p, size_t n)
{
	const char *buf = p;
	size_t len = n;

	if (c->in_len > 0) {
		conn_in_keep(c, p, n);
		buf = c->in;
		len = c->in_len;
	}
	struct proxy_info info;
	enum proxy_result r = proxy_parse(buf, len, &info);

	if (r == PROXY_MORE) {
		ASSERT(len < PROXY_HEADER_MAX);
		if (buf == p)
			conn_in_keep(c, p, n);
		return 0;
	}
	if (r == PROXY_BAD) {
		if (log_start(LOG_WARN, "proxy_error")) {
			log_str("client", c->peer_ip);
			log_str("reason", info.error);
			log_finish();
		}
		return -EPROTO; /* closed, with no reply: there is no SMTP session to speak for */
	}
	ASSERT(info.len > 0 && info.len <= len);
	char *kept = c->in; /* buf may point into it: freed once the rest is handed on */

	c->in = NULL;
	c->in_len = c->in_cap = 0;
	proxy_header_done(c, r, &info);
	int rc = 0;

	if (len > info.len && !c->closing)
		rc = c->tp->on_recv(c, buf + info.len, len - info.len);
	free(kept);
	return rc;
}

const struct transport_ops transport_proxy = {
	.name = "proxy",
	.on_recv = proxy_on_recv,
	.wire_out = plain_wire_out,
	.wire_sent = plain_wire_sent,
	.wire_pending = plain_wire_pending,
	.release = NULL,
};

void
conn_proxy_start(struct conn *c, uint64_t timeout_ms)
{
	ASSERT(c->tp == &transport_plain && c->in_len == 0);
	c->tp = &transport_proxy;
	c->sess.state = SMTP_ST_PROXY;
	conn_set_timeout_ms(c, timeout_ms);
}
