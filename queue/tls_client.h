/*
 * tls_client — the client side of TLS for outbound connections, OpenSSL over memory BIOs.
 *
 * Like the server side (server/tls.h), the connection's io_uring I/O moves ciphertext and this
 * module turns it into plaintext and back; it knows nothing of sockets or SMTP. One client
 * context (tls_client_ctx_new) serves a shard's connections.
 *
 * Authentication, chosen per connection before the handshake:
 *   none (opportunistic, RFC 7435): the chain is checked against the trust store and the result
 *     kept (tls_client_auth_result), but a failed check does not stop the handshake; that is
 *     what `tls = optional` and `tls = required` ask for (required means "encrypted, or not at
 *     all"; it does not authenticate the server).
 *   tls_client_require_pkix(t, name): the chain must lead to a trust anchor of the context's
 *     store and the certificate must name `name` (RFC 6125; no partial wildcards), or the
 *     handshake fails: `tls = verify`.
 *   tls_client_dane(t, name) + tls_client_dane_add(t, ...) per TLSA record: RFC 7672 DANE.
 *     Only DANE-TA(2) and DANE-EE(3) records are usable in SMTP (section 3.1.3); PKIX-TA(0)
 *     and PKIX-EE(1), and unknown selectors or matching types, are refused as unusable
 *     (return 0). The handshake fails unless a usable record matches; DANE-EE matches the
 *     server's own key or certificate with no name check and no expiry check (3.1.1),
 *     DANE-TA a trust anchor of the chain, with the name checked against `name` (3.2.2).
 *
 * Usage:
 *   ctx = tls_client_ctx_new(NULL, err, len);         // once per shard
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
#include <stdint.h>
#include <sys/types.h>

struct ssl_ctx_st;
struct tls_client;

/* ca_file: PEM trust anchors instead of the system's store (NULL or "": the system's). NULL
 * with a one-line reason in err when the file gives no certificate or on no memory. */
struct ssl_ctx_st *tls_client_ctx_new(const char *ca_file, char *err, size_t errlen);
/* Whether ca_file holds at least one PEM certificate: 0, or -1 with the reason in err. */
int tls_client_ca_check(const char *ca_file, char *err, size_t errlen);
void tls_client_ctx_free(struct ssl_ctx_st *ctx);

/* sni: the server's name for SNI (NULL or an address literal: none). NULL on no memory. */
struct tls_client *tls_client_new(struct ssl_ctx_st *ctx, const char *sni);
void tls_client_free(struct tls_client *t);

/* Before the handshake, see "Authentication" above. Return 0 or -1 (no memory, a bad name);
 * tls_client_dane_add returns 1 for a usable record, 0 for an unusable one, -1 on error. */
int tls_client_require_pkix(struct tls_client *t, const char *name);
int tls_client_dane(struct tls_client *t, const char *name);
int tls_client_dane_add(struct tls_client *t, uint8_t usage, uint8_t selector, uint8_t mtype,
			const uint8_t *data, size_t len);

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

/* After the handshake: "dane-ee" or "dane-ta" (a TLSA record matched), "yes" (the chain and
 * the name were valid), or "no" (opportunistic: not authenticated). */
const char *tls_client_auth_result(const struct tls_client *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
void tls_client_describe(const struct tls_client *t, char *buf, size_t len);
const char *tls_client_error(const struct tls_client *t);

#endif
