#include "queue/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_client {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	char err[160];
};

SSL_CTX *
tls_client_ctx_new(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* opportunistic: the chain is checked and the result kept, the handshake goes on */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_default_verify_paths(ctx);
	return ctx;
}

void
tls_client_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static void
note_error(struct tls_client *t, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[120] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	snprintf(t->err, sizeof t->err, "%s%s%s", what, buf[0] ? ": " : "", buf);
	ERR_clear_error();
}

struct tls_client *
tls_client_new(SSL_CTX *ctx, const char *sni)
{
	struct tls_client *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		SSL_free(t->ssl);
		free(t);
		return NULL;
	}
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	SSL_set_connect_state(t->ssl);
	unsigned char a[16];
	if (sni && sni[0] && inet_pton(AF_INET, sni, a) != 1 && inet_pton(AF_INET6, sni, a) != 1)
		SSL_set_tlsext_host_name(t->ssl, sni);
	return t;
}

void
tls_client_free(struct tls_client *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t);
}

int
tls_client_feed(struct tls_client *t, const char *p, size_t n)
{
	while (n > 0) {
		int w = BIO_write(t->rbio, p, n > 1u << 30 ? 1 << 30 : (int)n);
		if (w <= 0) {
			note_error(t, "BIO_write");
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
tls_client_handshake(struct tls_client *t)
{
	int r = SSL_do_handshake(t->ssl);
	if (r == 1)
		return 1;
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	note_error(t, "handshake failed");
	return -1;
}

int
tls_client_write(struct tls_client *t, const char *p, size_t n)
{
	while (n > 0) {
		int w = SSL_write(t->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
		if (w <= 0) {
			note_error(t, "SSL_write");
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

ssize_t
tls_client_read(struct tls_client *t, char *buf, size_t cap)
{
	int r = SSL_read(t->ssl, buf, cap > 1u << 30 ? 1 << 30 : (int)cap);
	if (r > 0)
		return r;
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	note_error(t, e == SSL_ERROR_ZERO_RETURN ? "closed by the remote" : "SSL_read");
	return -1;
}

size_t
tls_client_pending(const struct tls_client *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t
tls_client_take(struct tls_client *t, char *buf, size_t cap)
{
	int r = BIO_read(t->wbio, buf, cap > 1u << 30 ? 1 << 30 : (int)cap);
	return r > 0 ? (size_t)r : 0;
}

bool
tls_client_verified(const struct tls_client *t)
{
	return SSL_get_verify_result(t->ssl) == X509_V_OK && SSL_get0_peer_certificate(t->ssl);
}

void
tls_client_describe(const struct tls_client *t, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}

const char *
tls_client_error(const struct tls_client *t)
{
	return t->err[0] ? t->err : "TLS error";
}
