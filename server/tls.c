#include "server/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/assert.h"
#include "server/conn.h"
#include "server/log.h"
#include "server/shard_impl.h"

/* Plaintext is taken out of OpenSSL in pieces of at most this much (one TLS record's worth). */
#define TLS_READ_CHUNK 16384

struct tls_conn {
	SSL *ssl;
	BIO *rbio;  /* ciphertext from the client; owned by ssl */
	BIO *wbio;  /* ciphertext for the client; owned by ssl */
	char *wire; /* ciphertext taken out of wbio, sent from here until wire_sent */
	uint32_t wire_len;
	uint32_t clear_len; /* bytes at the head of c->out queued before TLS began: sent as is */
	bool handshake_done;
	bool failed;	    /* a fatal TLS error: nothing more is read or encrypted */
	bool shutdown_sent; /* close_notify queued */
};

/* ---- the context ------------------------------------------------------------------------- */

/* Keys are read unencrypted: a daemon has nobody to ask for a pass phrase. */
static int
tls_no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* OpenSSL's reason for the last error, or fallback. Clears the error queue. */
static const char *
tls_err_reason(const char *fallback)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : fallback;
}

static int __attribute__((format(printf, 5, 6)))
ctx_fail(SSL_CTX *ctx, int code, char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return code;
}

/* fopen() first, so a missing or unreadable file is reported with its errno. */
static bool
tls_file_readable(const char *path, char *why, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(why, len, "cannot open \"%s\": %s", path, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

static int
tls_ctx_load_key(SSL_CTX *ctx, const char *path, char *err, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return ctx_fail(ctx, TLS_CTX_ERR_KEY, err, len, "cannot open \"%s\": %s", path,
				strerror(errno));
	EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, tls_no_password, NULL);
	fclose(f);
	if (!pkey)
		return ctx_fail(ctx, TLS_CTX_ERR_KEY, err, len,
				"\"%s\": no PEM private key in it (%s; an encrypted key is not "
				"supported)",
				path, tls_err_reason("unreadable"));
	int ok = SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	EVP_PKEY_free(pkey);
	if (!ok)
		return ctx_fail(ctx, TLS_CTX_ERR_KEY, err, len,
				"\"%s\" is not the private key of the certificate", path);
	return 0;
}

int
tls_ctx_new(const struct tls_ctx_params *p, struct ssl_ctx_st **out, char *err, size_t len)
{
	ASSERT(p->cert && p->key && out);
	*out = NULL;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return ctx_fail(NULL, TLS_CTX_ERR_OTHER, err, len, "SSL_CTX_new: %s",
				tls_err_reason("failed"));
	int minv = p->min_version == TLS_VERSION_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
	if (SSL_CTX_set_min_proto_version(ctx, minv) != 1)
		return ctx_fail(ctx, TLS_CTX_ERR_OTHER, err, len, "cannot set the minimum version");
	/* No client-initiated renegotiation (a CPU sink); our cipher order, not the client's. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_COMPRESSION);
	/* An idle TLS connection gives its record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Shards share the context: no session cache to lock (tickets still resume). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_default_passwd_cb(ctx, tls_no_password);
	SSL_CTX_set_dh_auto(ctx, 1);
	if (!tls_file_readable(p->cert, err, len)) {
		SSL_CTX_free(ctx);
		return TLS_CTX_ERR_CERT;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1)
		return ctx_fail(ctx, TLS_CTX_ERR_CERT, err, len,
				"\"%s\": no PEM certificate chain in it (%s)", p->cert,
				tls_err_reason("unreadable"));
	int rc = tls_ctx_load_key(ctx, p->key, err, len);
	if (rc < 0)
		return rc;
	if (p->ciphers && p->ciphers[0] && SSL_CTX_set_cipher_list(ctx, p->ciphers) != 1)
		return ctx_fail(ctx, TLS_CTX_ERR_CIPHERS, err, len,
				"no usable cipher in \"%s\" (%s)", p->ciphers,
				tls_err_reason("unknown"));
	*out = ctx;
	return 0;
}

void
tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}

/* ---- a connection ------------------------------------------------------------------------ */

/* A fatal TLS error: logged; whatever OpenSSL queued (an alert) still goes out, then the
 * connection closes. Plaintext not yet encrypted is dropped. */
static void
tls_fail(struct conn *c, const char *reason)
{
	struct tls_conn *t = c->tls;
	if (log_start(LOG_INFO, "tls_error")) {
		log_str("client", c->peer_ip);
		log_str("phase", t->handshake_done ? "session" : "handshake");
		log_str("reason", reason);
		log_finish();
	}
	ERR_clear_error();
	if (!t->handshake_done)
		atomic_fetch_add_explicit(&c->shard->stats.tls_failed, 1, memory_order_relaxed);
	t->failed = true;
	c->out_len = t->clear_len; /* a send in flight may still be reading the clear part */
	shard_conn_dirty(c->shard, c);
	conn_close_after_flush(c);
}

static const char *
tls_ssl_reason(int ssl_error)
{
	switch (ssl_error) {
	case SSL_ERROR_ZERO_RETURN:
		return "closed by the client";
	case SSL_ERROR_SYSCALL:
		return tls_err_reason("unexpected end of input");
	default:
		return tls_err_reason("protocol error");
	}
}

/* Returns true once the handshake is complete (the session has been told). */
static bool
tls_handshake(struct conn *c)
{
	struct tls_conn *t = c->tls;
	int r = SSL_do_handshake(t->ssl);
	if (r != 1) {
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			shard_conn_dirty(c->shard, c); /* our part of the handshake, if any */
		else
			tls_fail(c, tls_ssl_reason(e));
		return false;
	}
	t->handshake_done = true;
	atomic_fetch_add_explicit(&c->shard->stats.tls, 1, memory_order_relaxed);
	if (log_start(LOG_INFO, "tls")) {
		const SSL_CIPHER *ci = SSL_get_current_cipher(t->ssl);
		log_str("client", c->peer_ip);
		log_str("version", SSL_get_version(t->ssl));
		log_str("cipher", ci ? SSL_CIPHER_get_name(ci) : "none");
		log_finish();
	}
	shard_conn_dirty(c->shard, c);
	smtp_session_event(c, SMTP_EV_TLS_DONE, NULL, 0, 0);
	return true;
}

/* Decrypts everything the read BIO holds into the session (conn_deliver keeps what the session
 * cannot take yet, with the same bounds as in the clear). */
static void
tls_read(struct conn *c)
{
	struct tls_conn *t = c->tls;
	char buf[TLS_READ_CHUNK];
	while (!c->closing && !t->failed && c->sess.state != SMTP_ST_CLOSING) {
		size_t got = 0;
		ERR_clear_error();
		if (SSL_read_ex(t->ssl, buf, sizeof buf, &got) == 1) {
			conn_deliver(c, buf, got);
			continue;
		}
		int e = SSL_get_error(t->ssl, 0);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			conn_close(c); /* close_notify: the client is done, like a TCP FIN */
			return;
		}
		tls_fail(c, tls_ssl_reason(e));
		return;
	}
	if (BIO_ctrl_pending(t->wbio) > 0)
		shard_conn_dirty(c->shard, c); /* a ticket, a KeyUpdate answer */
}

static int
tls_on_recv(struct conn *c, const char *p, size_t n)
{
	struct tls_conn *t = c->tls;
	if (t->failed)
		return 0;
	size_t w = 0;
	ERR_clear_error();
	if (BIO_write_ex(t->rbio, p, n, &w) != 1 || w != n) {
		tls_fail(c, "out of memory");
		return 0;
	}
	if (!t->handshake_done && !tls_handshake(c))
		return 0;
	tls_read(c);
	return 0;
}

static void
tls_wire_out(struct conn *c, const char **p, size_t *n)
{
	struct tls_conn *t = c->tls;
	if (t->clear_len > 0) {
		/* what was queued before TLS began (the 220 to STARTTLS) leaves first, as is */
		*p = c->out;
		*n = t->clear_len;
		return;
	}
	if (t->handshake_done && !t->failed && c->out_len > 0) {
		size_t w = 0;
		ERR_clear_error();
		if (SSL_write_ex(t->ssl, c->out, c->out_len, &w) != 1) {
			tls_fail(c, tls_ssl_reason(SSL_get_error(t->ssl, 0)));
		} else {
			ASSERT(w == c->out_len); /* a memory BIO takes it all */
			c->out_len = 0;
		}
	}
	if (c->close_after_flush && t->handshake_done && !t->failed && !t->shutdown_sent &&
	    c->out_len == 0) {
		/* close_notify, so the client can tell our close from a cut connection */
		ERR_clear_error();
		SSL_shutdown(t->ssl);
		ERR_clear_error();
		t->shutdown_sent = true;
	}
	size_t pending = BIO_ctrl_pending(t->wbio);
	if (pending > 0) {
		ASSERT(pending < UINT32_MAX - t->wire_len);
		char *nw = realloc(t->wire, t->wire_len + pending);
		ASSERT(nw != NULL);
		t->wire = nw;
		size_t got = 0;
		int ok = BIO_read_ex(t->wbio, t->wire + t->wire_len, pending, &got);
		ASSERT(ok == 1 && got == pending);
		t->wire_len += (uint32_t)pending;
	}
	*p = t->wire;
	*n = t->wire_len;
}

static void
tls_wire_sent(struct conn *c, size_t n)
{
	struct tls_conn *t = c->tls;
	if (t->clear_len > 0) {
		ASSERT(n <= t->clear_len && n <= c->out_len);
		memmove(c->out, c->out + n, c->out_len - n);
		c->out_len -= (uint32_t)n;
		t->clear_len -= (uint32_t)n;
		return;
	}
	ASSERT(n <= t->wire_len);
	memmove(t->wire, t->wire + n, t->wire_len - n);
	t->wire_len -= (uint32_t)n;
	if (t->wire_len == 0) {
		free(t->wire); /* an idle connection holds no ciphertext buffer */
		t->wire = NULL;
	}
}

static size_t
tls_wire_pending(const struct conn *c)
{
	const struct tls_conn *t = c->tls;
	size_t plain = t->failed ? t->clear_len : c->out_len;
	return plain + t->wire_len + BIO_ctrl_pending(t->wbio);
}

static void
tls_release(struct conn *c)
{
	struct tls_conn *t = c->tls;
	if (!t)
		return;
	SSL_free(t->ssl); /* the BIOs with it, and its reference on the SSL_CTX */
	free(t->wire);
	free(t);
	c->tls = NULL;
}

const struct transport_ops transport_tls = {
    .name = "tls",
    .on_recv = tls_on_recv,
    .wire_out = tls_wire_out,
    .wire_sent = tls_wire_sent,
    .wire_pending = tls_wire_pending,
    .release = tls_release,
};

int
tls_conn_start(struct conn *c, struct ssl_ctx_st *ctx)
{
	ASSERT(c->tls == NULL && c->tp != &transport_tls && ctx != NULL);
	struct tls_conn *t = calloc(1, sizeof *t);
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	if (!t || !ssl || !rbio || !wbio) {
		free(t);
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_mem_eof_return(rbio, -1); /* empty means "wait for more", not end of stream */
	BIO_set_mem_eof_return(wbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_accept_state(ssl);
	t->ssl = ssl;
	t->rbio = rbio;
	t->wbio = wbio;
	t->clear_len = c->out_len;
	c->tls = t;
	c->tp = &transport_tls;
	return 0;
}

void
tls_conn_describe(const struct conn *c, char *buf, size_t len)
{
	ASSERT(c->tls != NULL && len > 0);
	const SSL *ssl = c->tls->ssl;
	const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
	int alg_bits = 0;
	int bits = ci ? SSL_CIPHER_get_bits(ci, &alg_bits) : 0;
	snprintf(buf, len, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
		 ci ? SSL_CIPHER_get_name(ci) : "none", bits, alg_bits);
}
