/*
 * Unit tests for server/proxy: v1 (TCP4, TCP6, UNKNOWN) and v2 (PROXY and LOCAL, IPv4 and IPv6,
 * with and without TLVs) headers, each fed cut at every byte boundary (PROXY_MORE until it is
 * complete) and followed by client bytes that must be left alone; every malformation. Inputs sit
 * at the very end of a mapping whose next page is PROT_NONE, so reading one byte past them
 * crashes the test.
 */
#include "server/proxy.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/guard.h"

static enum proxy_result
parse_guarded(const void *src, size_t len, struct proxy_info *out)
{
	struct guard g = guard_place(src, len);
	enum proxy_result r = proxy_parse(g.p, len, out);

	guard_free(&g);
	return r;
}

/* "1.2.3.4:5" or "[::1]:5" */
static void
addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "family %d", ss->ss_family);
	}
}

/*
 * A valid header: every prefix is PROXY_MORE; the whole is `want` with len == n; the same
 * followed by client bytes still consumes exactly n. For DONE, src and dst are as given.
 */
static void
check_valid(const void *hdr, size_t n, enum proxy_result want, int version, const char *src,
	    const char *dst)
{
	struct proxy_info info;
	char a[80], b[80];
	static const char tail[] = "EHLO client.example\r\n";
	char buf[PROXY_HEADER_MAX + sizeof tail];

	for (size_t k = 0; k < n; k++) {
		enum proxy_result r = parse_guarded(hdr, k, &info);

		cr_assert_eq(r, PROXY_MORE, "prefix %zu of %zu: %d (%s)", k, n, r,
			     info.error ? info.error : "");
	}
	cr_assert_eq(parse_guarded(hdr, n, &info), want, "whole header: %s",
		     info.error ? info.error : "");
	cr_assert_eq(info.len, n);
	cr_assert_eq(info.version, version);
	if (want == PROXY_DONE) {
		addr_text(&info.src, a, sizeof a);
		addr_text(&info.dst, b, sizeof b);
		cr_assert_str_eq(a, src);
		cr_assert_str_eq(b, dst);
	}
	cr_assert(n + sizeof tail - 1 <= sizeof buf);
	memcpy(buf, hdr, n);
	memcpy(buf + n, tail, sizeof tail - 1);
	cr_assert_eq(parse_guarded(buf, n + sizeof tail - 1, &info), want);
	cr_assert_eq(info.len, n, "the client's bytes are not part of the header");
}

#define V1_OK(s, want, src, dst) check_valid(s, sizeof(s) - 1, want, 1, src, dst)

static void
check_bad(const void *in, size_t n)
{
	struct proxy_info info;

	cr_assert_eq(parse_guarded(in, n, &info), PROXY_BAD, "%zu bytes \"%.*s\" not refused", n,
		     (int)n, (const char *)in);
	cr_assert_not_null(info.error);
	/* No prefix of it may be taken as a complete header either. */
	for (size_t k = 0; k < n; k++) {
		enum proxy_result r = parse_guarded(in, k, &info);

		cr_assert(r == PROXY_MORE || r == PROXY_BAD, "prefix %zu: %d", k, r);
	}
}

#define V1_BAD(s) check_bad(s, sizeof(s) - 1)

/* ---- v1 ---------------------------------------------------------------------------------- */

Test(proxy, v1_tcp4_gives_both_addresses_and_ports)
{
	V1_OK("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\r\n", PROXY_DONE, "203.0.113.7:51000",
	      "127.0.0.1:25");
	V1_OK("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", PROXY_DONE, "0.0.0.0:0",
	      "255.255.255.255:65535");
}

Test(proxy, v1_tcp6_gives_both_addresses_and_ports)
{
	V1_OK("PROXY TCP6 2001:db8::7 2001:db8::1 51000 25\r\n", PROXY_DONE, "[2001:db8::7]:51000",
	      "[2001:db8::1]:25");
	V1_OK("PROXY TCP6 ::ffff:203.0.113.7 ::1 1 2\r\n", PROXY_DONE, "[::ffff:203.0.113.7]:1",
	      "[::1]:2");
	V1_OK("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
	      "ffff 65535 65535\r\n",
	      PROXY_DONE, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
	      "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

Test(proxy, v1_unknown_keeps_the_real_peer_and_ignores_the_rest_of_the_line)
{
	V1_OK("PROXY UNKNOWN\r\n", PROXY_LOCAL, NULL, NULL);
	V1_OK("PROXY UNKNOWN ffff:f...:ffff ffff:f...:ffff 65535 65535\r\n", PROXY_LOCAL, NULL, NULL);
}

Test(proxy, v1_at_107_bytes_is_accepted_and_at_108_refused)
{
	char line[PROXY_V1_MAX + 2];

	/* "PROXY UNKNOWN " + padding + CRLF, exactly 107 bytes */
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + PROXY_V1_MAX - 2, "\r\n", 2);
	check_valid(line, PROXY_V1_MAX, PROXY_LOCAL, 1, NULL, NULL);
	memset(line, 'x', sizeof line);
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + PROXY_V1_MAX - 1, "\r\n", 2);
	check_bad(line, PROXY_V1_MAX + 1);
	check_bad(line, PROXY_V1_MAX); /* the CR at byte 107 is already one too many */
}

Test(proxy, v1_without_crlf_within_107_bytes_is_refused)
{
	char line[200];

	memset(line, '1', sizeof line);
	memcpy(line, "PROXY TCP4 ", 11);
	check_bad(line, PROXY_V1_MAX);
	check_bad(line, sizeof line);
	struct proxy_info info;

	cr_assert_eq(parse_guarded(line, PROXY_V1_MAX - 1, &info), PROXY_MORE);
}

Test(proxy, v1_malformations_are_refused)
{
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\n");    /* bare LF */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\rX");   /* CR without LF */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\r\r\n");
	V1_BAD("PROXY  TCP4 203.0.113.7 127.0.0.1 51000 25\r\n"); /* double spaces */
	V1_BAD("PROXY TCP4  203.0.113.7 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7  127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25 \r\n"); /* trailing space */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25 7\r\n"); /* extra field */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000\r\n");    /* missing field */
	V1_BAD("PROXY TCP4 203.0.113.7\r\n");
	V1_BAD("PROXY TCP4\r\n");
	V1_BAD("PROXY \r\n");
	V1_BAD("PROXY\r\n");
	V1_BAD("PROXY tcp4 203.0.113.7 127.0.0.1 51000 25\r\n"); /* protocol case */
	V1_BAD("PROXY TCP5 203.0.113.7 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY UDP4 203.0.113.7 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY UNKNOWNX\r\n");
	V1_BAD("proxy TCP4 203.0.113.7 127.0.0.1 51000 25\r\n"); /* signature case */
	V1_BAD("PROXYTCP4 203.0.113.7 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\x00\r\n"); /* NUL */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 2\t5\r\n");   /* control byte */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 25\xff\r\n");
}

Test(proxy, v1_bad_numbers_and_ports_are_refused)
{
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 65536 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 99999\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 100000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 051000 25\r\n"); /* leading zero */
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 00 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 -1 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 +1 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 0x19 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7 127.0.0.1 51000 2a\r\n");
}

Test(proxy, v1_addresses_that_do_not_parse_or_do_not_match_the_family_are_refused)
{
	V1_BAD("PROXY TCP4 203.0.113.256 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.7.1 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 203.0.113.07 127.0.0.1 51000 25\r\n"); /* leading zero: octal? */
	V1_BAD("PROXY TCP4 mx.example 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP4 2001:db8::7 127.0.0.1 51000 25\r\n"); /* IPv6 in TCP4 */
	V1_BAD("PROXY TCP4 203.0.113.7 ::1 51000 25\r\n");
	V1_BAD("PROXY TCP6 203.0.113.7 ::1 51000 25\r\n"); /* IPv4 in TCP6 */
	V1_BAD("PROXY TCP6 2001:db8::7 127.0.0.1 51000 25\r\n");
	V1_BAD("PROXY TCP6 2001:db8:::7 ::1 51000 25\r\n");
	V1_BAD("PROXY TCP6 2001:db8::7::1 ::1 51000 25\r\n");
	V1_BAD("PROXY TCP6 [2001:db8::7] ::1 51000 25\r\n");
	V1_BAD("PROXY TCP6 fe80::1%eth0 ::1 51000 25\r\n");
	V1_BAD("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0 ::1 51000 25\r\n");
}

Test(proxy, smtp_or_tls_first_is_refused_at_the_first_byte)
{
	V1_BAD("EHLO client.example\r\n");
	V1_BAD("E");
	V1_BAD("\x16\x03\x01\x02\x00"); /* a TLS ClientHello */
	V1_BAD("GET / HTTP/1.1\r\n");
	V1_BAD("\r\nQUIT\r\n");
	V1_BAD("PROXX");
	/* while they can still become a header, they are not refused */
	struct proxy_info info;

	cr_assert_eq(parse_guarded("PRO", 3, &info), PROXY_MORE);
	cr_assert_eq(parse_guarded("\r\n\r", 3, &info), PROXY_MORE);
}

/* ---- v2 ---------------------------------------------------------------------------------- */

static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Builds a v2 header: the signature, ver_cmd, fam, length = len(addr) + len(tlv) unless
 * len_override >= 0, then addr and tlv. Returns its length. */
static size_t
v2_build(unsigned char *buf, unsigned ver_cmd, unsigned fam, const void *addr, size_t alen,
	 const void *tlv, size_t tlen, long len_override)
{
	size_t len = len_override >= 0 ? (size_t)len_override : alen + tlen;

	memcpy(buf, v2_sig, 12);
	buf[12] = (unsigned char)ver_cmd;
	buf[13] = (unsigned char)fam;
	buf[14] = (unsigned char)(len >> 8);
	buf[15] = (unsigned char)len;
	if (alen)
		memcpy(buf + 16, addr, alen);
	if (tlen)
		memcpy(buf + 16 + alen, tlv, tlen);
	return 16 + alen + tlen;
}

/* 203.0.113.7:51000 -> 127.0.0.1:25 */
static const unsigned char addr4[12] = {203, 0, 113, 7, 127, 0, 0, 1, 0xc7, 0x38, 0x00, 25};

/* [2001:db8::7]:51000 -> [2001:db8::1]:25 */
static const unsigned char addr6[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0xc7, 0x38, 0x00, 25,
};

/* PP2_TYPE_ALPN "smtp", PP2_TYPE_AUTHORITY "mx.example", PP2_TYPE_NOOP with nothing */
static const unsigned char tlvs[] = {
	0x01, 0x00, 0x04, 's', 'm', 't', 'p',
	0x02, 0x00, 0x0a, 'm', 'x', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',
	0x04, 0x00, 0x00,
};

Test(proxy, v2_proxy_ipv4_with_and_without_tlvs)
{
	unsigned char h[PROXY_HEADER_MAX];
	size_t n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, -1);

	cr_assert_eq(n, 28);
	check_valid(h, n, PROXY_DONE, 2, "203.0.113.7:51000", "127.0.0.1:25");
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, tlvs, sizeof tlvs, -1);
	check_valid(h, n, PROXY_DONE, 2, "203.0.113.7:51000", "127.0.0.1:25");
}

Test(proxy, v2_proxy_ipv6_with_and_without_tlvs)
{
	unsigned char h[PROXY_HEADER_MAX];
	size_t n = v2_build(h, 0x21, 0x21, addr6, sizeof addr6, NULL, 0, -1);

	cr_assert_eq(n, 52);
	check_valid(h, n, PROXY_DONE, 2, "[2001:db8::7]:51000", "[2001:db8::1]:25");
	n = v2_build(h, 0x21, 0x21, addr6, sizeof addr6, tlvs, sizeof tlvs, -1);
	check_valid(h, n, PROXY_DONE, 2, "[2001:db8::7]:51000", "[2001:db8::1]:25");
}

Test(proxy, v2_local_keeps_the_real_peer_whatever_its_address_block)
{
	unsigned char h[PROXY_HEADER_MAX];
	size_t n = v2_build(h, 0x20, 0x00, NULL, 0, NULL, 0, -1);

	cr_assert_eq(n, 16);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
	n = v2_build(h, 0x20, 0x11, addr4, sizeof addr4, NULL, 0, -1);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
	n = v2_build(h, 0x20, 0x11, addr4, sizeof addr4, tlvs, sizeof tlvs, -1);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
	n = v2_build(h, 0x20, 0x21, addr6, sizeof addr6, NULL, 0, -1);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
	n = v2_build(h, 0x20, 0x21, addr6, sizeof addr6, tlvs, sizeof tlvs, -1);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
	/* PROXY with AF_UNSPEC: "the receiver should ignore address information" */
	n = v2_build(h, 0x21, 0x00, NULL, 0, tlvs, sizeof tlvs, -1);
	check_valid(h, n, PROXY_LOCAL, 2, NULL, NULL);
}

Test(proxy, v2_up_to_the_payload_bound_is_accepted_and_past_it_refused)
{
	unsigned char h[PROXY_HEADER_MAX + 8];
	unsigned char pad[PROXY_V2_PAYLOAD_MAX];
	size_t tlen = PROXY_V2_PAYLOAD_MAX - sizeof addr4;

	memset(pad, 'p', sizeof pad);
	pad[0] = 0x04; /* one NOOP TLV filling the rest */
	pad[1] = (unsigned char)((tlen - 3) >> 8);
	pad[2] = (unsigned char)(tlen - 3);
	size_t n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, pad, tlen, -1);

	cr_assert_eq(n, PROXY_HEADER_MAX);
	check_valid(h, n, PROXY_DONE, 2, "203.0.113.7:51000", "127.0.0.1:25");
	/* one byte longer: refused as soon as the length field is there */
	pad[2]++;
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, pad, tlen + 1, -1);
	check_bad(h, 16);
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, 0xffff);
	check_bad(h, n);
}

Test(proxy, v2_bad_signature_version_command_and_family_are_refused)
{
	unsigned char h[PROXY_HEADER_MAX];
	size_t n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, -1);

	for (size_t i = 0; i < 12; i++) {
		h[i] ^= 0x20;
		check_bad(h, n);
		check_bad(h, i + 1); /* refused at the byte that differs */
		h[i] ^= 0x20;
	}
	static const unsigned bad_ver_cmd[] = {0x11, 0x31, 0x01, 0xf1, 0x22, 0x2f, 0x10, 0x30};
	static const unsigned bad_fam[] = {0x12, 0x22, 0x31, 0x32, 0x01, 0x02, 0x41, 0x13, 0x1f,
					   0xf1, 0x10, 0x20, 0x30};

	for (size_t i = 0; i < sizeof bad_ver_cmd / sizeof bad_ver_cmd[0]; i++) {
		h[12] = (unsigned char)bad_ver_cmd[i];
		check_bad(h, n);
		check_bad(h, 13);
	}
	h[12] = 0x21;
	for (size_t i = 0; i < sizeof bad_fam / sizeof bad_fam[0]; i++) {
		h[13] = (unsigned char)bad_fam[i];
		check_bad(h, n);
		check_bad(h, 14);
	}
	/* LOCAL takes any valid family (its block is ignored), but not an invalid one */
	h[12] = 0x20;
	h[13] = 0x31; /* AF_UNIX stream */
	struct proxy_info info;

	cr_assert_eq(parse_guarded(h, n, &info), PROXY_LOCAL);
	h[13] = 0x41;
	check_bad(h, n);
	h[13] = 0x13;
	check_bad(h, n);
}

Test(proxy, v2_length_mismatches_are_refused)
{
	unsigned char h[PROXY_HEADER_MAX];
	size_t n;

	/* shorter than the addresses */
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, 11);
	check_bad(h, 16);
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x21, addr6, sizeof addr6, NULL, 0, 35);
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x21, addr6, sizeof addr6, NULL, 0, 12); /* TCP6 sized as TCP4 */
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, 0);
	check_bad(h, n);
	/* TLVs that do not tile the rest: a truncated TLV head, a value past the end */
	static const unsigned char tlv_short_head[] = {0x04, 0x00};
	static const unsigned char tlv_overrun[] = {0x01, 0x00, 0x05, 's', 'm', 't', 'p'};
	static const unsigned char tlv_one_byte[] = {0x04};

	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, tlv_short_head, sizeof tlv_short_head, -1);
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, tlv_overrun, sizeof tlv_overrun, -1);
	check_bad(h, n);
	n = v2_build(h, 0x21, 0x21, addr6, sizeof addr6, tlv_one_byte, sizeof tlv_one_byte, -1);
	check_bad(h, n);
	/* a valid TLV list with one stray byte after it */
	unsigned char t[sizeof tlvs + 1];

	memcpy(t, tlvs, sizeof tlvs);
	t[sizeof tlvs] = 0x04;
	n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, t, sizeof t, -1);
	check_bad(h, n);
}

Test(proxy, v2_header_is_more_until_its_announced_length_has_arrived)
{
	unsigned char h[PROXY_HEADER_MAX];
	struct proxy_info info;
	/* announces 12 + 23 bytes of payload; only the addresses are sent so far */
	size_t n = v2_build(h, 0x21, 0x11, addr4, sizeof addr4, NULL, 0, sizeof addr4 + sizeof tlvs);

	cr_assert_eq(parse_guarded(h, n, &info), PROXY_MORE);
	memcpy(h + n, tlvs, sizeof tlvs);
	cr_assert_eq(parse_guarded(h, n + sizeof tlvs, &info), PROXY_DONE);
	cr_assert_eq(info.len, n + sizeof tlvs);
}
