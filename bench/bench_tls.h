/*
 * bench_tls — the client side of TLS for ringmx-bench --starttls: OpenSSL 3 over memory BIOs.
 *
 * Like server/tls.c and queue/tls_client.c, it moves no bytes itself: the client's io_uring
 * receives ciphertext and feeds it here (bench_tls_feed), reads plaintext out
 * (bench_tls_read); plaintext to send is encrypted (bench_tls_write) and the ciphertext taken
 * out (bench_tls_take) to be sent. It knows nothing of sockets or SMTP.
 *
 * It is its own small module rather than queue/tls_client.h because a load generator wants
 * other things from TLS than an MTA's outbound side: no trust store and no verification
 * (test certificates; queue/'s verification and DANE policy do not belong here), a peer's
 * close_notify told apart from an error, and no dependency of the benchmark on the MTA's
 * delivery code.
 *
 * Usage:
 *   ctx = bench_tls_ctx_new(err, len);          once per run; threads share it
 *   t = bench_tls_new(ctx, sni);                after the server's 220 to STARTTLS
 *   loop: bench_tls_handshake(t) (ClientHello on the first call); send bench_tls_take();
 *         bench_tls_feed(t, received...)
 *   then: bench_tls_write(t, plaintext) + bench_tls_take(); bench_tls_feed + bench_tls_read
 *   bench_tls_free(t); bench_tls_ctx_free(ctx)
 *
 * Limits: bench_tls_write takes at most BENCH_TLS_RECORD bytes at a time, so the ciphertext
 * waiting in the write BIO is bounded by one record (the caller encrypts as it sends). The
 * read BIO holds what was fed and not yet read: the caller feeds one receive at a time.
 *
 * Failure: bench_tls_ctx_new returns NULL with err filled; bench_tls_new returns NULL when
 * memory runs out; the others return -1 on a TLS error (the reason in bench_tls_error) and
 * bench_tls_read BENCH_TLS_CLOSED on the peer's close_notify.
 */
#ifndef RINGMX_BENCH_TLS_H
#define RINGMX_BENCH_TLS_H

#include <stddef.h>
#include <sys/types.h>

#define BENCH_TLS_RECORD 16384 /* plaintext bytes of one TLS record (RFC 8446 5.1) */
#define BENCH_TLS_CLOSED (-2)

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct bench_tls;

/* A client context: TLS 1.2 or later, no certificate verification. NULL with err filled. */
struct ssl_ctx_st *bench_tls_ctx_new(char *err, size_t errlen);
void bench_tls_ctx_free(struct ssl_ctx_st *ctx); /* NULL is fine */

/* sni: the server name for SNI; NULL, "" or an address literal: none. NULL on no memory. */
struct bench_tls *bench_tls_new(struct ssl_ctx_st *ctx, const char *sni);
void bench_tls_free(struct bench_tls *t); /* NULL is fine */

/* Ciphertext received from the server. Returns 0, or -1. */
int bench_tls_feed(struct bench_tls *t, const void *p, size_t n);
/* Drives the handshake: 1 complete, 0 needs more input (and maybe has output), -1 failed. */
int bench_tls_handshake(struct bench_tls *t);
/* Decrypted bytes into buf (cap > 0): their count, 0 when none is complete yet, -1 on an
 * error, BENCH_TLS_CLOSED when the server closed the TLS session (close_notify). */
ssize_t bench_tls_read(struct bench_tls *t, char *buf, size_t cap);
/* Encrypts p[0..n), 0 < n <= BENCH_TLS_RECORD, into the write BIO. Returns 0 or -1. */
int bench_tls_write(struct bench_tls *t, const void *p, size_t n);
/* Moves up to cap bytes of ciphertext to send into buf; returns their count (0: none). */
size_t bench_tls_take(struct bench_tls *t, char *buf, size_t cap);
/* Ciphertext waiting to be taken. */
size_t bench_tls_pending(const struct bench_tls *t);

/* After the handshake: "TLSv1.3" and "TLS_AES_256_GCM_SHA384". */
const char *bench_tls_version(const struct bench_tls *t);
const char *bench_tls_cipher(const struct bench_tls *t);
/* The last failure, one line ("handshake: wrong version number"). */
const char *bench_tls_error(const struct bench_tls *t);

#endif
