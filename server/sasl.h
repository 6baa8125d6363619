/*
 * sasl — the pure part of SMTP AUTH (RFC 4954): base64 responses, the PLAIN message (RFC 4616),
 * the mechanism names. No allocation, no I/O, no replies: the session (smtp_session.c) decides
 * what to answer, server/auth.h checks the credentials.
 *
 * Usage:
 *   enum sasl_mech m = sasl_mech_lookup(cmd.auth_mech.p, cmd.auth_mech.len);
 *   char buf[SASL_DECODED_MAX];
 *   long n = sasl_base64_decode(resp, resp_len, buf, sizeof buf);   // "=" decodes to 0 bytes
 *   struct sasl_plain pl;
 *   if (n >= 0 && sasl_plain_split(buf, (size_t)n, &pl) == 0) ... pl.authcid, pl.passwd ...
 *
 * Limits: a decoded response is at most SASL_DECODED_MAX bytes (a response line is bounded by
 * [server] max_line_length first); names and passwords at most SASL_NAME_MAX and
 * SASL_PASSWORD_MAX bytes.
 *
 * Failure: sasl_base64_decode returns SASL_ERR_BASE64 or SASL_ERR_TOO_LONG; sasl_plain_split
 * returns -EINVAL for a message that is not authzid NUL authcid NUL passwd with a non-empty
 * authcid and password within the limits.
 */
#ifndef RINGMX_SASL_H
#define RINGMX_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_DECODED_MAX 4096 /* bytes of one decoded response */
#define SASL_NAME_MAX 255     /* authcid / authzid / LOGIN user name */
#define SASL_PASSWORD_MAX 1024

#define SASL_ERR_BASE64 (-1)   /* not base64 (RFC 4648 4, padded, no blanks) */
#define SASL_ERR_TOO_LONG (-2) /* decodes to more than the caller's room */

enum sasl_mech {
	SASL_MECH_UNKNOWN = 0,
	SASL_MECH_PLAIN, /* RFC 4616 */
	SASL_MECH_LOGIN, /* draft-murchison-sasl-login: user name, then password */
};

/* The AUTH line's prompts for LOGIN, base64 of "Username:" and "Password:". */
#define SASL_LOGIN_PROMPT_USER "VXNlcm5hbWU6"
#define SASL_LOGIN_PROMPT_PASS "UGFzc3dvcmQ6"

/* The mechanism named (any case), or SASL_MECH_UNKNOWN. */
enum sasl_mech sasl_mech_lookup(const char *name, size_t len);
/* Its name in upper case, for logs. */
const char *sasl_mech_name(enum sasl_mech m);

/* A client response line of a single "*": the client cancels the exchange (RFC 4954 4). */
bool sasl_is_cancel(const char *p, size_t len);

/*
 * Decodes base64 in[0..len) into out (cap bytes). A lone "=" is the empty initial response
 * (RFC 4954 4) and decodes to 0 bytes, as does an empty line. Returns the decoded length, or
 * SASL_ERR_BASE64 (a byte outside the alphabet, a length not a multiple of 4, '=' anywhere but
 * the last two places), or SASL_ERR_TOO_LONG (more than cap bytes).
 */
long sasl_base64_decode(const char *in, size_t len, char *out, size_t cap);

/* RFC 4616 2: message = [authzid] NUL authcid NUL passwd. Slices point into the message. */
struct sasl_plain {
	const char *authzid, *authcid, *passwd;
	size_t authzid_len, authcid_len, passwd_len;
};

/* Splits a decoded PLAIN message. Returns 0, or -EINVAL (see the header comment). */
int sasl_plain_split(const char *msg, size_t len, struct sasl_plain *out);

/* A user name we look up: 1..SASL_NAME_MAX bytes, none a control byte (NUL included). */
bool sasl_name_ok(const char *p, size_t len);

#endif
