#include "queue/tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_client {
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	bool dane;	  /* tls_client_dane was called */
	char err[160];
};

/* Loads ca_file's certificates into a new store: NULL with the reason when there is none. */
static X509_STORE *
ca_store(const char *ca_file, char *err, size_t errlen)
{
	X509_STORE *st = X509_STORE_new();
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	FILE *f = fopen(ca_file, "r");
	if (!f) {
		snprintf(err, errlen, "cannot open \"%s\": %s", ca_file, strerror(errno));
		X509_STORE_free(st);
		return NULL;
	}
	fclose(f);
	if (X509_STORE_load_file(st, ca_file) != 1) {
		const char *why = ERR_reason_error_string(ERR_peek_last_error());
		ERR_clear_error();
		snprintf(err, errlen, "cannot read PEM certificates from \"%s\"%s%s", ca_file,
			 why ? ": " : "", why ? why : "");
		X509_STORE_free(st);
		return NULL;
	}
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(st);
	if (!objs || sk_X509_OBJECT_num(objs) == 0) {
		snprintf(err, errlen, "\"%s\" holds no PEM certificate", ca_file);
		X509_STORE_free(st);
		return NULL;
	}
	return st;
}

int
tls_client_ca_check(const char *ca_file, char *err, size_t errlen)
{
	X509_STORE *st = ca_store(ca_file, err, errlen);
	X509_STORE_free(st);
	return st ? 0 : -1;
}

SSL_CTX *
tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot make a TLS client context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* opportunistic by default: the chain is checked and the result kept, the handshake goes
	 * on; tls_client_require_pkix and tls_client_dane make it fail per connection */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_dane_enable(ctx) <= 0) {
		snprintf(err, errlen, "OpenSSL refuses DANE for the TLS client context");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (ca_file && ca_file[0]) {
		X509_STORE *st = ca_store(ca_file, err, errlen);
		if (!st) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_cert_store(ctx, st); /* the context owns it now */
	} else {
		SSL_CTX_set_default_verify_paths(ctx);
	}
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
	if (sni && sni[0] && inet_pton(AF_INET, sni, a) != 1 && inet_pton(AF_INET6, sni, a) != 1) {
		SSL_set_tlsext_host_name(t->ssl, sni);
		/* so that "verified=yes" in the log also means the certificate names the host */
		SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(t->ssl, sni);
	}
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
tls_client_require_pkix(struct tls_client *t, const char *name)
{
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!name || !name[0] || SSL_set1_host(t->ssl, name) != 1) {
		note_error(t, "no host name to verify the certificate against");
		return -1;
	}
	SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

int
tls_client_dane(struct tls_client *t, const char *name)
{
	if (!name || !name[0] || SSL_dane_enable(t->ssl, name) <= 0) {
		note_error(t, "cannot enable DANE");
		return -1;
	}
	/* RFC 7672 3.1.1: a DANE-EE match authenticates the server whatever names it carries */
	SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
	t->dane = true;
	return 0;
}

int
tls_client_dane_add(struct tls_client *t, uint8_t usage, uint8_t selector, uint8_t mtype,
		    const uint8_t *data, size_t len)
{
	/* RFC 7672 3.1.3: PKIX-TA(0) and PKIX-EE(1) are not for SMTP */
	if (usage != 2 && usage != 3)
		return 0;
	int r = SSL_dane_tlsa_add(t->ssl, usage, selector, mtype, data, len);
	if (r > 0)
		return 1;
	if (r == 0 || (r == -1 && ERR_peek_error() == 0)) {
		ERR_clear_error();
		return 0; /* an unsupported selector or matching type, or bad data: unusable */
	}
	/* a malformed record (wrong digest length, undecodable certificate) is unusable too;
	 * only running out of memory is an error */
	unsigned long e = ERR_peek_error();
	if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) {
		note_error(t, "SSL_dane_tlsa_add");
		return -1;
	}
	ERR_clear_error();
	return 0;
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
	ERR_clear_error(); /* SSL_get_error reads the thread's queue: nothing stale in it */
	int r = SSL_do_handshake(t->ssl);
	if (r == 1)
		return 1;
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	long v = SSL_get_verify_result(t->ssl);
	if (v != X509_V_OK && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
		/* the reason a certificate was refused says more than "handshake failure" */
		snprintf(t->err, sizeof t->err, "certificate not accepted (%s): %s",
			 t->dane ? "DANE" : "verify", X509_verify_cert_error_string(v));
		ERR_clear_error();
		return -1;
	}
	note_error(t, "handshake failed");
	return -1;
}

int
tls_client_write(struct tls_client *t, const char *p, size_t n)
{
	while (n > 0) {
		ERR_clear_error();
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
	ERR_clear_error();
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

const char *
tls_client_auth_result(const struct tls_client *t)
{
	if (SSL_get_verify_result(t->ssl) != X509_V_OK || !SSL_get0_peer_certificate(t->ssl))
		return "no";
	if (t->dane) {
		uint8_t usage = 0;
		if (SSL_get0_dane_tlsa(t->ssl, &usage, NULL, NULL, NULL, NULL) < 0)
			return "no";
		return usage == 3 ? "dane-ee" : "dane-ta";
	}
	return "yes";
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
