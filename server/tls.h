/*
 * tls — inbound TLS (STARTTLS and implicit TLS) with OpenSSL 3 over memory BIOs.
 *
 * There is no kTLS here, so the connection's io_uring I/O keeps moving bytes and OpenSSL sits
 * between them and the session (DESIGN.md "TLS with memory BIOs"): transport_tls's on_recv
 * writes the ciphertext a recv brought into the SSL's read BIO, drives the handshake, then
 * SSL_read()s the plaintext into conn_deliver(); its wire_out SSL_write()s the replies the
 * session queued (c->out) into the write BIO and hands the ciphertext to the one send in
 * flight. Plain connections never touch this module.
 *
 * Usage:
 *   config load:   tls_ctx_new(&params, &ctx, err, len)  -> the config owns ctx (tls_ctx_free)
 *   STARTTLS:      reply 220 in the clear, then tls_conn_start(c, ctx): what c->out holds at
 *                  that moment still leaves unencrypted, everything after is TLS
 *   implicit TLS:  tls_conn_start(c, ctx) right after accept, before any reply
 *   The session gets SMTP_EV_TLS_DONE once the handshake is complete; a failed handshake is
 *   logged (event=tls_error) and the connection closed.
 *
 * Sharing: one SSL_CTX serves every shard (OpenSSL allows SSL_new from many threads). Each SSL
 * holds a reference on its SSL_CTX, so a SIGHUP may free the old config's context while
 * connections made from it go on (they keep their certificate until they end).
 *
 * Limits: plaintext is decrypted as it arrives and handed on, so what TLS buffers is bounded by
 * one TLS record; the connection's own input bounds (conn.h) apply to the plaintext.
 *
 * Failure: tls_ctx_new returns a negative enum tls_ctx_error with err filled ("why");
 * tls_conn_start returns -ENOMEM.
 */
#ifndef RINGMX_TLS_H
#define RINGMX_TLS_H

#include <stddef.h>

struct conn;
struct transport_ops;
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

enum tls_version { TLS_VERSION_1_2 = 0, TLS_VERSION_1_3 };

struct tls_ctx_params {
	const char *cert;    /* PEM: the certificate, then its chain */
	const char *key;     /* PEM: the private key (not encrypted) */
	const char *ciphers; /* OpenSSL cipher list for TLS 1.2; NULL or "": OpenSSL's default */
	enum tls_version min_version;
};

/* Which parameter a tls_ctx_new failure is about. */
enum tls_ctx_error {
	TLS_CTX_ERR_CERT = -1,
	TLS_CTX_ERR_KEY = -2,	  /* unreadable, not a key, or not the certificate's key */
	TLS_CTX_ERR_CIPHERS = -3, /* no cipher in the list is known */
	TLS_CTX_ERR_OTHER = -4,	  /* out of memory, or OpenSSL refused a setting */
};

/* Builds a server context and checks it whole: the chain loads, the key loads and matches the
 * certificate, the cipher list is usable. Returns 0 with *out set (the caller owns it), or a
 * tls_ctx_error with a one-line reason in err. */
int tls_ctx_new(const struct tls_ctx_params *p, struct ssl_ctx_st **out, char *err, size_t len);
/* Drops the caller's reference; connections made from ctx keep it alive. NULL is fine. */
void tls_ctx_free(struct ssl_ctx_st *ctx);

extern const struct transport_ops transport_tls;

/* Switches c to TLS (server side) on ctx: c->tp becomes &transport_tls. The c->out_len bytes
 * already queued go out in the clear first (the 220 to STARTTLS). Returns 0 or -ENOMEM. */
int tls_conn_start(struct conn *c, struct ssl_ctx_st *ctx);
/* For Received: and logs: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". */
void tls_conn_describe(const struct conn *c, char *buf, size_t len);

#endif
