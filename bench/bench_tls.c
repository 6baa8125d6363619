/*
 * bench_tls — ringmx-bench's TLS client over memory BIOs; see bench_tls.h.
 */
#include "bench/bench_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/assert.h"

#define BENCH_TLS_ERR_MAX 160

struct bench_tls {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	char err[BENCH_TLS_ERR_MAX];
};

_Static_assert(BENCH_TLS_RECORD <= 16384, "a TLS record carries at most 2^14 bytes");

SSL_CTX *
bench_tls_ctx_new(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		unsigned long e = ERR_peek_last_error();

		snprintf(err, errlen, "TLS client context: %s",
			 e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "failed");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* A load generator against test certificates: encrypt, do not authenticate. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	return ctx;
}

void
bench_tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

/* Keeps OpenSSL's reason for the failure of `what`, and empties its (per-thread) queue. */
static void
tls_note_error(struct bench_tls *t, const char *what, int ssl_error)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;

	if (!reason)
		reason = ssl_error == SSL_ERROR_SYSCALL	      ? "unexpected end of the stream"
			 : ssl_error == SSL_ERROR_ZERO_RETURN ? "closed by the server"
							      : "protocol error";
	snprintf(t->err, sizeof(t->err), "%s: %s", what, reason);
	ERR_clear_error();
}

struct bench_tls *
bench_tls_new(SSL_CTX *ctx, const char *sni)
{
	struct bench_tls *t = calloc(1, sizeof(*t));
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	unsigned char addr[16];

	ASSERT(ctx != NULL);
	if (!t || !ssl || !rbio || !wbio) {
		free(t);
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_mem_eof_return(rbio, -1); /* empty means "wait for more", not end of stream */
	BIO_set_mem_eof_return(wbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	/* RFC 6066 3: no literal IPv4 or IPv6 addresses in SNI. */
	if (sni && sni[0] && inet_pton(AF_INET, sni, addr) != 1 &&
	    inet_pton(AF_INET6, sni, addr) != 1)
		SSL_set_tlsext_host_name(ssl, sni);
	ERR_clear_error();
	t->ssl = ssl;
	t->rbio = rbio;
	t->wbio = wbio;
	return t;
}

void
bench_tls_free(struct bench_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* the BIOs with it */
	free(t);
}

int
bench_tls_feed(struct bench_tls *t, const void *p, size_t n)
{
	size_t w = 0;

	if (n == 0)
		return 0;
	if (BIO_write_ex(t->rbio, p, n, &w) != 1 || w != n) {
		tls_note_error(t, "out of memory for received data", SSL_ERROR_SSL);
		return -1;
	}
	return 0;
}

int
bench_tls_handshake(struct bench_tls *t)
{
	/* SSL_get_error reads the thread's error queue: it must be empty before each call. */
	ERR_clear_error();
	int r = SSL_do_handshake(t->ssl);

	if (r == 1)
		return 1;
	int e = SSL_get_error(t->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	tls_note_error(t, "handshake failed", e);
	return -1;
}

ssize_t
bench_tls_read(struct bench_tls *t, char *buf, size_t cap)
{
	size_t got = 0;

	ASSERT(cap > 0);
	ERR_clear_error();
	if (SSL_read_ex(t->ssl, buf, cap, &got) == 1)
		return (ssize_t)got;
	int e = SSL_get_error(t->ssl, 0);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		return BENCH_TLS_CLOSED;
	}
	tls_note_error(t, "read", e);
	return -1;
}

int
bench_tls_write(struct bench_tls *t, const void *p, size_t n)
{
	size_t w = 0;

	ASSERT(n > 0 && n <= BENCH_TLS_RECORD);
	ERR_clear_error();
	if (SSL_write_ex(t->ssl, p, n, &w) != 1) {
		tls_note_error(t, "write", SSL_get_error(t->ssl, 0));
		return -1;
	}
	ASSERT(w == n); /* a memory BIO takes it all */
	return 0;
}

size_t
bench_tls_take(struct bench_tls *t, char *buf, size_t cap)
{
	size_t got = 0;

	if (cap == 0 || BIO_read_ex(t->wbio, buf, cap, &got) != 1)
		return 0;
	return got;
}

size_t
bench_tls_pending(const struct bench_tls *t)
{
	return BIO_ctrl_pending(t->wbio);
}

const char *
bench_tls_version(const struct bench_tls *t)
{
	return SSL_get_version(t->ssl);
}

const char *
bench_tls_cipher(const struct bench_tls *t)
{
	const SSL_CIPHER *ci = SSL_get_current_cipher(t->ssl);

	return ci ? SSL_CIPHER_get_name(ci) : "none";
}

const char *
bench_tls_error(const struct bench_tls *t)
{
	return t->err[0] ? t->err : "TLS error";
}
