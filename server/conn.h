/*
 * conn — one client connection of a shard: its socket I/O over io_uring, behind a transport.
 *
 * The connection turns io_uring completions into session events (smtp_session.h): bytes
 * received become DATAIN (what the session leaves unconsumed — a partial line, or input that
 * arrives while it waits for a commit — is kept in a small buffer allocated only then); a
 * deadline becomes TIMEOUT. Replies are appended with conn_reply() and leave in one send per
 * loop turn, with at most one send in flight. An idle connection holds no receive buffer and
 * only its inline reply buffer.
 *
 * The transport is a small function table between the socket and the session: plain, or TLS
 * (server/tls.h, DESIGN.md "TLS with memory BIOs"). Plain sends straight from c->out; TLS
 * encrypts c->out into its own buffer and sends from there.
 *
 * PROXY protocol ([server] proxy_protocol): a connection from a proxy starts on transport_proxy,
 * which reads only the header (server/proxy.h), keeping a partial one in c->in. Once it is
 * complete the connection takes the client's address as its peer, switches to the plain
 * transport (or TLS on an implicit TLS listener: the header comes before the ClientHello),
 * starts the session (shard_conn_begin) and hands it what followed the header. A malformed
 * header closes the connection with no reply; so does silence past the header timeout.
 *
 * Ownership: a conn lives in its shard's slot table; completions find it by slot and
 * generation (shard_conn_lookup). It is freed only once every operation it started is done.
 */
#ifndef RINGMX_CONN_H
#define RINGMX_CONN_H

#include <liburing.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/conn_limits.h"
#include "server/smtp_session.h"
#include "server/timer.h"

#define CONN_OUT_INLINE 512
#define CONN_IN_PAUSE_BYTES (64 * 1024) /* stop reading past this much unconsumed input */
#define CONN_IN_HARD_BYTES (1024 * 1024)
#define CONN_PROXY_TIMEOUT_MS 5000 /* for the PROXY header (or timeout_greeting if shorter) */

struct shard;
struct conn;
struct tls_conn;

/* Called with no send in flight, except wire_sent (which ends one) and wire_pending. */
struct transport_ops {
	const char *name;
	/* Bytes from the socket: hand plaintext to conn_deliver(); returns 0 or -errno (the
	 * connection is closed). */
	int (*on_recv)(struct conn *c, const char *p, size_t n);
	/* The bytes to put on the wire now, from the plaintext queued in c->out (*n == 0:
	 * nothing yet). They must stay in place until wire_sent. May close the connection. */
	void (*wire_out)(struct conn *c, const char **p, size_t *n);
	/* The first n bytes of what wire_out gave have been sent. */
	void (*wire_sent)(struct conn *c, size_t n);
	/* Bytes queued that have not been sent yet (plaintext or ciphertext). */
	size_t (*wire_pending)(const struct conn *c);
	/* The connection is being freed: drop the transport's state (NULL: none). */
	void (*release)(struct conn *c);
};

extern const struct transport_ops transport_plain;
extern const struct transport_ops transport_proxy;

struct conn {
	uint32_t slot, gen;
	int fd;
	struct shard *shard;
	const struct transport_ops *tp;
	struct tls_conn *tls; /* transport_tls's state (server/tls.c); NULL in the clear */

	bool recv_armed;        /* a multishot recv is outstanding */
	bool recv_cancelling;
	bool send_inflight;
	bool dirty;             /* on the shard's flush list */
	bool close_after_flush; /* close once the queued replies are sent */
	bool closing;           /* close issued; nothing more is processed */
	bool eof;
	bool lingering;         /* final reply sent, our side shut: reading and dropping until the
				 * client closes, so its unread bytes never turn our FIN into an RST
				 * that destroys the reply at the client */
	bool may_relay;
	bool implicit_tls; /* accepted on a listen_tls address: TLS once the session starts */
	bool submission;   /* accepted on a submission listener: AUTH before MAIL */
	bool sink_wait;   /* sink mode: the end-of-data reply waits for the delay timer */
	int sink_status;
	uint8_t ops;            /* io_uring operations in flight */

	struct sockaddr_storage peer;
	char peer_ip[INET6_ADDRSTRLEN];
	unsigned peer_port;
	struct conn_limits_ticket ticket;

	/* replies queued by the session (plaintext); transport_plain sends from here */
	char *out;
	uint32_t out_len, out_cap, out_inflight;
	char *out_retired; /* a buffer a send in flight still reads; freed when it completes */

	char *in;
	uint32_t in_len, in_cap;

	struct timer timer;
	uint64_t deadline_ms;         /* of the current phase */
	uint64_t session_deadline_ms; /* of the whole connection */
	uint64_t connected_ms;

	struct smtp_session sess;
	char out_inline[CONN_OUT_INLINE];
};

/* Queues reply bytes; they leave with the shard's next flush. */
void conn_reply(struct conn *c, const char *p, size_t n);
/* A string literal reply; its length is known at compile time. */
#define conn_reply_lit(c, lit) conn_reply((c), "" lit, sizeof(lit) - 1)
void conn_replyf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes once everything queued is sent (with a short backstop if the client never reads). */
void conn_close_after_flush(struct conn *c);
/* Closes now: queued replies are dropped. */
void conn_close(struct conn *c);
/* Sets the phase deadline, seconds from now (0: none); the session deadline always holds. */
void conn_set_timeout(struct conn *c, unsigned seconds);
void conn_set_timeout_ms(struct conn *c, uint64_t ms);
/* Plaintext from the transport: feeds the session, keeps what it leaves. */
void conn_deliver(struct conn *c, const char *p, size_t n);
/* The session can take input again (its commit settled): feed what was kept, read again. */
void conn_resume(struct conn *c);
/* A proxy listener's connection: wait up to timeout_ms for the PROXY header, on
 * transport_proxy, with the session in SMTP_ST_PROXY. */
void conn_proxy_start(struct conn *c, uint64_t timeout_ms);

#endif

/* For shard.c: starting I/O, completions, the per-turn flush. */
void conn_recv_update(struct conn *c);
void conn_on_recv(struct conn *c, const struct io_uring_cqe *cqe);
void conn_on_send(struct conn *c, int res);
void conn_on_op_done(struct conn *c); /* a cancel or close completed */
void conn_flush(struct conn *c);
void conn_free_buffers(struct conn *c);
