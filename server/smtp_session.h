/*
 * smtp_session — the inbound ESMTP state machine (RFC 5321, 1870, 2920, 3030, 4954, 6152,
 * 6531).
 *
 * A session consumes events from its connection (conn.c) in one switch: CONNECTED, DATAIN,
 * COMMITTED, TIMEOUT, STOP, TLS_DONE. It parses commands with smtp_parse (pure, in place), scans DATA
 * with smtp_data, builds the spool record in one buffer as bytes arrive, queues replies on
 * the connection (all replies of a pipelined batch leave in one send) and hands finished
 * messages to the shard for group commit. It stops reading while a message waits for its
 * fdatasync, so the 250 and every later reply keep their order.
 *
 * STARTTLS (RFC 3207): offered in EHLO when [server] tls = starttls and the connection is in
 * the clear. After the 220, input the client sent behind STARTTLS is dropped unread and the
 * session starts over once the handshake is done (DESIGN.md invariant 4).
 *
 * Submission (RFC 6409) and AUTH (RFC 4954): on a submission listener (conn->submission) MAIL
 * needs AUTH first, and AUTH PLAIN / LOGIN are offered only once the connection is in TLS. The
 * exchange reads its continuation lines in SMTP_ST_AUTH; a failure or a cancel goes back to
 * SMTP_ST_READY with nothing kept, so the next AUTH starts fresh. The password is checked off
 * the shard's thread (server/auth_pool.h, crypt_r is slow on purpose): the session waits in
 * SMTP_ST_AUTH_CHECK, reading nothing (pipelined bytes stay buffered), until
 * smtp_session_auth_done brings the result back on the shard's thread; a connection that is
 * gone by then has the result dropped (the job holds copies, never a pointer into the
 * connection). A full check queue answers 454. Failures count per client address, and past
 * [auth] max_failures AUTH is refused (454) for [auth] failure_window. An
 * authenticated session may relay, its MAIL FROM is held to [auth] sender_policy, and its
 * mail is flagged SPOOL_F_AUTH and received "with ESMTPSA".
 *
 * PROXY protocol ([server] proxy_protocol): the connection reads the header first, in state
 * SMTP_ST_PROXY, and sends CONNECTED only once the real client is known (conn.c), so the session
 * never sees the header; a timeout or a stop in that state closes without a word.
 *
 * Limits: every client-grown resource is bounded by the config: line length, recipients,
 * message size, errors, time per phase and per session (DESIGN.md invariant 6).
 */
#ifndef RINGMX_SMTP_SESSION_H
#define RINGMX_SMTP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "queue/spool_record.h"
#include "server/smtp_data.h"

struct conn;
struct shard;
struct auth_job;

enum smtp_state {
	SMTP_ST_GREET = 0, /* waiting out greeting_delay_ms; any input is an early talker */
	SMTP_ST_INIT,      /* greeted, no HELO/EHLO yet */
	SMTP_ST_READY,     /* HELO/EHLO done, no transaction */
	SMTP_ST_MAIL,      /* MAIL accepted, no recipient yet */
	SMTP_ST_RCPT,      /* at least one recipient */
	SMTP_ST_DATA,      /* reading DATA up to CRLF.CRLF */
	SMTP_ST_BDAT,      /* reading a BDAT chunk's counted bytes */
	SMTP_ST_COMMIT,    /* message handed to the spool, waiting for its fdatasync */
	SMTP_ST_TLS,       /* TLS handshake (implicit TLS, or after STARTTLS); no input yet */
	SMTP_ST_PROXY,     /* waiting for the PROXY protocol header (conn.c); not started yet */
	SMTP_ST_AUTH,      /* AUTH sent a 334: the next line is the client's SASL response */
	SMTP_ST_AUTH_CHECK, /* a password check runs on the auth pool; no input is read */
	SMTP_ST_CLOSING,   /* final reply queued; no more input is read */
};

enum smtp_event {
	SMTP_EV_CONNECTED, /* a fresh connection: greet, or wait out the greeting delay */
	SMTP_EV_DATAIN,    /* bytes from the client */
	SMTP_EV_COMMITTED, /* the spool settled our message: status 0 or -errno */
	SMTP_EV_TIMEOUT,   /* the connection's deadline passed */
	SMTP_EV_STOP,      /* graceful shutdown: finish the transaction, then 421 */
	SMTP_EV_TLS_DONE,  /* the TLS handshake completed (server/tls.c) */
};

struct smtp_session {
	enum smtp_state state;
	uint8_t esmtp : 1, smtputf8 : 1, body8 : 1, bdat_used : 1, too_big : 1, bad_txn : 1,
		stop_requested : 1, skip_line : 1;
	uint8_t bdat_last : 1, bdat_discard : 1, greeted : 1;
	uint8_t auth_step; /* in SMTP_ST_AUTH: which response comes next (smtp_session.c) */
	char *auth_user;   /* who authenticated (NUL-terminated); NULL before a successful AUTH */
	char *auth_login;  /* AUTH LOGIN: the user name, between the two prompts */
	uint8_t bdat_prev_state; /* the state a discarded chunk's BDAT came in */
	uint64_t msg_size;       /* bytes stored, Received: included */
	uint32_t nrcpt;
	uint32_t errors;
	uint64_t qid;
	uint64_t size_declared;
	uint64_t bdat_left;
	char *helo;
	/* the transaction: sender and recipients in one arena (reused across transactions) */
	char *arena;
	uint32_t arena_len, arena_cap;
	uint32_t from_off, from_len;
	struct spool_str *rcpts; /* point into arena; fixed up before the record is begun */
	uint32_t *rcpt_off;
	uint32_t rcpt_cap;
	/* the spool record being built: header, envelope, Received:, then the message */
	char *rec;
	size_t rec_len, rec_cap, msg_off, body_off;
	struct smtp_data_scan scan;
	/* per connection counters, logged at disconnect */
	uint32_t n_cmds, n_accepted, n_rejected;
	uint64_t bytes_in;
};

/* Returns the number of input bytes consumed (DATAIN); other events return 0. */
size_t smtp_session_event(struct conn *c, enum smtp_event ev, const char *p, size_t n,
			  int status);

/* A password check this session submitted is done (on the shard's thread): c is the connection
 * that job->owner names, or NULL when it is gone. Counts a failure against the client address
 * and logs it whether or not the connection is still there; answers 235 or 535 only to a
 * session still in SMTP_ST_AUTH_CHECK, which then reads its buffered input. Frees job. */
void smtp_session_auth_done(struct shard *sh, struct conn *c, struct auth_job *job);

/* Frees what the session holds (the connection is going away). */
void smtp_session_free(struct smtp_session *s);

#endif
