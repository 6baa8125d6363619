/*
 * tls_client — the client side of TLS for outbound connections, OpenSSL over memory BIOs.
 *
 * Like the server side (server/tls.h), the connection's io_uring I/O moves ciphertext and this
 * module turns it into plaintext and back; it knows nothing of sockets or SMTP. One client
 * context (tls_client_ctx_new) serves a shard's connections.
 *
 * Verification: the certificate chain is checked against the system's trust store and the
 * result is kept (tls_client_verified), but a failed check does not stop the handshake: that
 * is opportunistic TLS (RFC 7435), which is what `tls = optional` and `tls = required` ask for
 * (required means "encrypted, or not at all"; it does not authenticate the server). DANE and
 * a `verify` level are for later.
 *
 * Usage:
 *   ctx = tls_client_ctx_new();                       // once per shard
 *   t = tls_client_new(ctx, "mx.example.org");        // after the server's 220 to STARTTLS
 *   loop: tls_client_feed(t, ciphertext...); r = tls_client_handshake(t);
 *         tls_client_take(t, buf, cap) -> ciphertext to send
 *   after: tls_client_write(t, plaintext); tls_client_read(t, buf, cap) -> plaintext
 *
 * Failure: functions return -1 on a TLS error with a one-line reason in tls_client_error().
 */
#ifndef RINGMX_TLS_CLIENT_H
#define RINGMX_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct tls_client;

struct ssl_ctx_st *tls_client_ctx_new(void);
void tls_client_ctx_free(struct ssl_ctx_st *ctx);

/* sni: the server's name for SNI (NULL or an address literal: none). NULL on no memory. */
struct tls_client *tls_client_new(struct ssl_ctx_st *ctx, const char *sni);
void tls_client_free(struct tls_client *t);

/* Ciphertext from the socket. Returns 0 or -1. */
int tls_client_feed(struct tls_client *t, const char *p, size_t n);
/* Drives the handshake: 1 done, 0 wants more input, -1 failed. */
int tls_client_handshake(struct tls_client *t);
/* Plaintext to send: encrypts all of it. Returns 0 or -1. */
int tls_client_write(struct tls_client *t, const char *p, size_t n);
/* Decrypted plaintext into buf: bytes (0: none yet), or -1 (error or the peer's close). */
ssize_t tls_client_read(struct tls_client *t, char *buf, size_t cap);
/* Ciphertext waiting to be sent, moved into buf: bytes (0: none). */
size_t tls_client_take(struct tls_client *t, char *buf, size_t cap);
size_t tls_client_pending(const struct tls_client *t);

bool tls_client_verified(const struct tls_client *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
void tls_client_describe(const struct tls_client *t, char *buf, size_t len);
const char *tls_client_error(const struct tls_client *t);

#endif
