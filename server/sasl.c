/*
 * sasl — the pure part of SMTP AUTH; see sasl.h for the contract.
 */
#include "server/sasl.h"

#include <errno.h>
#include <string.h>

#include "server/assert.h"

_Static_assert(SASL_NAME_MAX * 2 + SASL_PASSWORD_MAX + 2 <= SASL_DECODED_MAX,
	       "a PLAIN message within the limits fits in a decoded response");

static const struct {
	const char *name;
	enum sasl_mech mech;
} sasl_mechs[] = {
    {"PLAIN", SASL_MECH_PLAIN},
    {"LOGIN", SASL_MECH_LOGIN},
};

static unsigned char
ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

enum sasl_mech
sasl_mech_lookup(const char *name, size_t len)
{
	ASSERT(name != NULL || len == 0);
	for (size_t i = 0; i < sizeof sasl_mechs / sizeof sasl_mechs[0]; i++) {
		const char *m = sasl_mechs[i].name;
		size_t j = 0;

		if (strlen(m) != len)
			continue;
		while (j < len && ascii_upper((unsigned char)name[j]) == (unsigned char)m[j])
			j++;
		if (j == len)
			return sasl_mechs[i].mech;
	}
	return SASL_MECH_UNKNOWN;
}

const char *
sasl_mech_name(enum sasl_mech m)
{
	for (size_t i = 0; i < sizeof sasl_mechs / sizeof sasl_mechs[0]; i++) {
		if (sasl_mechs[i].mech == m)
			return sasl_mechs[i].name;
	}
	return "UNKNOWN";
}

bool
sasl_is_cancel(const char *p, size_t len)
{
	return len == 1 && p[0] == '*';
}

/* The 6-bit value of a base64 character (RFC 4648 4), or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long
sasl_base64_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	ASSERT((in != NULL || len == 0) && (out != NULL || cap == 0));
	if (len == 0 || (len == 1 && in[0] == '='))
		return 0;
	if (len % 4 != 0)
		return SASL_ERR_BASE64;
	for (size_t i = 0; i < len; i += 4) {
		const unsigned char *q = (const unsigned char *)in + i;
		bool last = i + 4 == len;
		/* '=' pads only the last quantum: "xx==" or "xxx=" */
		size_t pad = last && q[3] == '=' ? (q[2] == '=' ? 2 : 1) : 0;
		unsigned v = 0;

		for (size_t k = 0; k < 4 - pad; k++) {
			int d = b64_value(q[k]);
			if (d < 0)
				return SASL_ERR_BASE64;
			v = v << 6 | (unsigned)d;
		}
		v <<= 6 * pad;
		if (o + 3 - pad > cap)
			return SASL_ERR_TOO_LONG;
		out[o++] = (char)(v >> 16);
		if (pad < 2)
			out[o++] = (char)(v >> 8 & 0xff);
		if (pad < 1)
			out[o++] = (char)(v & 0xff);
	}
	ASSERT(o <= cap && o <= len / 4 * 3);
	return (long)o;
}

bool
sasl_name_ok(const char *p, size_t len)
{
	if (len == 0 || len > SASL_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

int
sasl_plain_split(const char *msg, size_t len, struct sasl_plain *out)
{
	const char *end = msg + len, *nul1, *nul2;

	ASSERT((msg != NULL || len == 0) && out != NULL);
	memset(out, 0, sizeof *out);
	nul1 = len ? memchr(msg, '\0', len) : NULL;
	if (nul1 == NULL)
		return -EINVAL;
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
	/* exactly two NULs: a third would be inside the password, which UTF-8 forbids */
	if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
		return -EINVAL;
	out->authzid = msg;
	out->authzid_len = (size_t)(nul1 - msg);
	out->authcid = nul1 + 1;
	out->authcid_len = (size_t)(nul2 - nul1 - 1);
	out->passwd = nul2 + 1;
	out->passwd_len = (size_t)(end - nul2 - 1);
	if (out->authzid_len > SASL_NAME_MAX || !sasl_name_ok(out->authcid, out->authcid_len) ||
	    out->passwd_len == 0 || out->passwd_len > SASL_PASSWORD_MAX) {
		memset(out, 0, sizeof *out);
		return -EINVAL;
	}
	return 0;
}
