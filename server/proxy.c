/*
 * proxy — the pure PROXY protocol v1/v2 header parser; see proxy.h for the contract.
 *
 * The first byte tells the versions apart ('P' for v1, CR for v2's signature). Every check that
 * needs only the bytes already there is made at once, so a prefix of a valid header is always
 * PROXY_MORE and anything else is PROXY_BAD as early as it can be told. Nothing is read past
 * p[n - 1], nothing is written but *out.
 */
#include "server/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "server/assert.h"

#define PROXY_V1_SIG "PROXY "
#define PROXY_V1_SIG_LEN (sizeof(PROXY_V1_SIG) - 1)
#define PROXY_V1_FIELDS 4 /* source, destination, source port, destination port */
#define PROXY_V1_PORT_DIGITS 5

#define PROXY_V2_SIG_LEN 12
#define PROXY_V2_CMD_LOCAL 0x0
#define PROXY_V2_CMD_PROXY 0x1
#define PROXY_V2_FAM_UNSPEC 0x00
#define PROXY_V2_FAM_TCP4 0x11
#define PROXY_V2_FAM_TCP6 0x21
#define PROXY_V2_ADDR4_LEN 12 /* two IPv4 addresses, two ports */
#define PROXY_V2_ADDR6_LEN 36 /* two IPv6 addresses, two ports */
#define PROXY_V2_TLV_HEAD 3   /* type, length (big-endian, 2 bytes) */

static const unsigned char proxy_v2_sig[PROXY_V2_SIG_LEN] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

_Static_assert(PROXY_V2_PAYLOAD_MAX >= PROXY_V2_ADDR6_LEN, "a TCP6 header fits");
_Static_assert(PROXY_V2_PAYLOAD_MAX <= 0xffff, "the v2 length field is 16 bits");
_Static_assert(PROXY_HEADER_MAX > PROXY_V1_MAX, "either version fits PROXY_HEADER_MAX");

static enum proxy_result
proxy_bad(struct proxy_info *out, const char *why)
{
	out->error = why;
	return PROXY_BAD;
}

/* ---- v1 ------------------------------------------------------------------------------------ */

/* A port: 1 to 5 decimal digits, no leading zero (but "0" itself), at most 65535. */
static bool
proxy_v1_port(const char *s, size_t len, uint16_t *port)
{
	unsigned v = 0;

	if (len == 0 || len > PROXY_V1_PORT_DIGITS || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 0xffff)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* An address in its text form for family, with its port, into *ss. inet_pton() is strict:
 * no leading zeros in IPv4, nothing around the address. */
static bool
proxy_v1_addr(const char *s, size_t len, int family, uint16_t port, struct sockaddr_storage *ss)
{
	char text[INET6_ADDRSTRLEN];

	if (len == 0 || len >= sizeof text)
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		return inet_pton(AF_INET, text, &in->sin_addr) == 1;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1;
}

/*
 * The complete line line[0..len), CRLF not included, "PROXY " first:
 * "UNKNOWN[ anything]" or "TCP4|TCP6 SRC DST SPORT DPORT" with single spaces.
 */
static enum proxy_result
proxy_v1_line(const char *line, size_t len, struct proxy_info *out)
{
	const char *s = line + PROXY_V1_SIG_LEN, *end = line + len;
	const char *sp = memchr(s, ' ', (size_t)(end - s));
	size_t proto_len = (size_t)((sp ? sp : end) - s);
	const char *field[PROXY_V1_FIELDS];
	size_t field_len[PROXY_V1_FIELDS];
	int family;

	ASSERT(len + 2 <= PROXY_V1_MAX && len >= PROXY_V1_SIG_LEN);
	out->len = len + 2;
	/* "the receiver must ignore anything presented before the CRLF is found" */
	if (proto_len == 7 && memcmp(s, "UNKNOWN", 7) == 0)
		return PROXY_LOCAL;
	if (proto_len == 4 && memcmp(s, "TCP4", 4) == 0)
		family = AF_INET;
	else if (proto_len == 4 && memcmp(s, "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return proxy_bad(out, "unknown v1 protocol");
	const char *q = s + proto_len;

	for (size_t i = 0; i < PROXY_V1_FIELDS; i++) {
		if (q == end)
			return proxy_bad(out, "missing v1 field");
		ASSERT(*q == ' ');
		q++;
		const char *e = memchr(q, ' ', (size_t)(end - q));

		if (!e)
			e = end;
		if (e == q)
			return proxy_bad(out, "empty v1 field");
		field[i] = q;
		field_len[i] = (size_t)(e - q);
		q = e;
	}
	if (q != end)
		return proxy_bad(out, "extra v1 field");
	uint16_t sport, dport;

	if (!proxy_v1_port(field[2], field_len[2], &sport) ||
	    !proxy_v1_port(field[3], field_len[3], &dport))
		return proxy_bad(out, "bad v1 port");
	if (!proxy_v1_addr(field[0], field_len[0], family, sport, &out->src) ||
	    !proxy_v1_addr(field[1], field_len[1], family, dport, &out->dst))
		return proxy_bad(out, "bad v1 address");
	return PROXY_DONE;
}

/* v1: printable ASCII up to CRLF, at most PROXY_V1_MAX bytes with it. */
static enum proxy_result
proxy_v1(const char *p, size_t n, struct proxy_info *out)
{
	size_t sig = n < PROXY_V1_SIG_LEN ? n : PROXY_V1_SIG_LEN;
	size_t lim = n < PROXY_V1_MAX ? n : PROXY_V1_MAX;

	out->version = 1;
	if (memcmp(p, PROXY_V1_SIG, sig) != 0)
		return proxy_bad(out, "bad signature");
	for (size_t i = sig; i < lim; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch == '\r') {
			if (i + 2 > PROXY_V1_MAX)
				return proxy_bad(out, "v1 header longer than 107 bytes");
			if (i + 1 == n)
				return PROXY_MORE;
			if (p[i + 1] != '\n')
				return proxy_bad(out, "v1 CR without LF");
			return proxy_v1_line(p, i, out);
		}
		if (ch == '\n')
			return proxy_bad(out, "v1 LF without CR");
		if (ch < 0x20 || ch > 0x7e)
			return proxy_bad(out, "control byte in v1 header");
	}
	if (n >= PROXY_V1_MAX)
		return proxy_bad(out, "v1 header longer than 107 bytes");
	return PROXY_MORE;
}

/* ---- v2 ------------------------------------------------------------------------------------ */

/* TLVs must tile p[0..len) exactly: a truncated one is a length mismatch. */
static bool
proxy_v2_tlvs_ok(const unsigned char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		if (len - off < PROXY_V2_TLV_HEAD)
			return false;
		size_t vlen = (size_t)p[off + 1] << 8 | p[off + 2];

		if (vlen > len - off - PROXY_V2_TLV_HEAD)
			return false;
		off += PROXY_V2_TLV_HEAD + vlen;
	}
	return true;
}

/* The address block after the fixed 16 bytes: source, destination, source port, dest. port. */
static void
proxy_v2_addrs(const unsigned char *a, unsigned fam, struct proxy_info *out)
{
	memset(&out->src, 0, sizeof out->src);
	memset(&out->dst, 0, sizeof out->dst);
	if (fam == PROXY_V2_FAM_TCP4) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2); /* network byte order on the wire and here */
		memcpy(&d->sin_port, a + 10, 2);
		return;
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
	struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;

	s->sin6_family = d->sin6_family = AF_INET6;
	memcpy(&s->sin6_addr, a, 16);
	memcpy(&d->sin6_addr, a + 16, 16);
	memcpy(&s->sin6_port, a + 32, 2);
	memcpy(&d->sin6_port, a + 34, 2);
}

static enum proxy_result
proxy_v2(const unsigned char *p, size_t n, struct proxy_info *out)
{
	size_t sig = n < PROXY_V2_SIG_LEN ? n : PROXY_V2_SIG_LEN;

	if (memcmp(p, proxy_v2_sig, sig) != 0)
		return proxy_bad(out, "bad signature");
	if (n <= PROXY_V2_SIG_LEN)
		return PROXY_MORE;
	out->version = 2;
	unsigned cmd = p[12] & 0x0f;

	if (p[12] >> 4 != 2)
		return proxy_bad(out, "bad v2 version");
	if (cmd != PROXY_V2_CMD_LOCAL && cmd != PROXY_V2_CMD_PROXY)
		return proxy_bad(out, "bad v2 command");
	if (n <= 13)
		return PROXY_MORE;
	unsigned fam = p[13];

	if (fam >> 4 > 3 || (fam & 0x0f) > 2)
		return proxy_bad(out, "bad v2 address family");
	/* LOCAL (the proxy's own health checks) and UNSPEC: the addresses are ignored */
	bool local = cmd == PROXY_V2_CMD_LOCAL || fam == PROXY_V2_FAM_UNSPEC;

	if (!local && fam != PROXY_V2_FAM_TCP4 && fam != PROXY_V2_FAM_TCP6)
		return proxy_bad(out, "v2 address family is not TCP over IPv4 or IPv6");
	if (n < PROXY_V2_FIXED)
		return PROXY_MORE;
	size_t plen = (size_t)p[14] << 8 | p[15];
	size_t alen = local ? 0 : fam == PROXY_V2_FAM_TCP4 ? PROXY_V2_ADDR4_LEN : PROXY_V2_ADDR6_LEN;

	if (plen > PROXY_V2_PAYLOAD_MAX)
		return proxy_bad(out, "v2 header too long");
	if (plen < alen)
		return proxy_bad(out, "v2 length too short for its addresses");
	if (n < PROXY_V2_FIXED + plen)
		return PROXY_MORE;
	out->len = PROXY_V2_FIXED + plen;
	if (local)
		return PROXY_LOCAL;
	if (!proxy_v2_tlvs_ok(p + PROXY_V2_FIXED + alen, plen - alen))
		return proxy_bad(out, "v2 TLVs do not match its length");
	proxy_v2_addrs(p + PROXY_V2_FIXED, fam, out);
	return PROXY_DONE;
}

/* ---- entry ----------------------------------------------------------------------------------- */

enum proxy_result
proxy_parse(const char *p, size_t n, struct proxy_info *out)
{
	ASSERT(out != NULL && (p != NULL || n == 0));
	out->len = 0;
	out->version = 0;
	out->error = NULL;
	if (n == 0)
		return PROXY_MORE;
	if (p[0] == PROXY_V1_SIG[0])
		return proxy_v1(p, n, out);
	if ((unsigned char)p[0] == proxy_v2_sig[0])
		return proxy_v2((const unsigned char *)p, n, out);
	return proxy_bad(out, "not a PROXY protocol header");
}
