/*
 * Unit tests of the DSN builder. Every report built here goes through a small MIME check in C
 * (line ends and lengths, the boundary on its own lines, three parts with the right types);
 * one is also read back by Python's email package when /usr/bin/python3 is there.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/dsn.h"

#define STR(lit) ((struct spool_str){(lit), sizeof(lit) - 1})
#define QID "0123456789abcdef"
#define NOW_MS 1700000000123ull /* Tue, 14 Nov 2023 22:13:20 UTC */
#define MAX_PARTS 8
#define BOUNDARY0 "=_ringmx_" QID "_18bcfe5687b" /* the first boundary tried for QID, NOW_MS */

static const char MSG[] = "Received: from client.example.com\r\n"
			  "From: Alice <alice@example.com>\r\n"
			  "To: bob@example.org\r\n"
			  "Subject: hello\r\n"
			  "Message-ID: <m1@example.com>\r\n"
			  "\r\n"
			  "SECRET BODY LINE 1\r\n"
			  "line 2\r\n";

struct part {
	const char *hdr, *body;
	size_t hdr_len, body_len;
};

struct mime {
	const char *top;
	size_t top_len;
	char boundary[128];
	struct part parts[MAX_PARTS];
	int nparts;
	bool closed;
};

static struct dsn_rcpt
rcpt_failed(const char *addr, const char *mta, const char *diag)
{
	return (struct dsn_rcpt){
	    .addr = {addr, strlen(addr)},
	    .action = DSN_ACTION_FAILED,
	    .status = "5.1.1",
	    .remote_mta = {mta, strlen(mta)},
	    .diagnostic = {diag, strlen(diag)},
	    .last_attempt_ms = NOW_MS - 1000,
	};
}

static struct dsn_params
params(const struct dsn_rcpt *r, size_t n, const char *msg, size_t msg_len)
{
	return (struct dsn_params){
	    .host = "mx.test",
	    .sender = STR("alice@example.com"),
	    .qid = QID,
	    .arrival_ms = NOW_MS - 3600 * 1000,
	    .now_ms = NOW_MS,
	    .kind = DSN_FAILURE,
	    .msg = msg,
	    .msg_len = msg_len,
	    .rcpts = r,
	    .nrcpt = n,
	};
}

/* Every line ends in CRLF and holds fewer than 998 octets; no bare CR, LF or NUL anywhere. */
static void
check_lines(const char *s, size_t len)
{
	size_t line = 0;

	cr_assert_geq(len, 2);
	cr_assert(s[len - 2] == '\r' && s[len - 1] == '\n', "the message ends in CRLF");
	for (size_t i = 0; i < len; i++) {
		cr_assert_neq(s[i], '\0', "NUL at %zu", i);
		if (s[i] == '\r') {
			cr_assert(i + 1 < len && s[i + 1] == '\n', "bare CR at %zu", i);
			cr_assert_lt(i - line, 998, "line at %zu is %zu octets", line, i - line);
			line = i + 2;
			i++;
		} else {
			cr_assert_neq(s[i], '\n', "bare LF at %zu", i);
		}
	}
}

/* The unfolded value of the first field called name in a header block, or false. */
static bool
header_get(const char *h, size_t len, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < len;) {
		const char *eol = memmem(h + i, len - i, "\r\n", 2);
		size_t end = eol ? (size_t)(eol - h) : len;

		if (end - i > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':') {
			size_t o = 0, j = i + nl + 1;

			while (j < end && h[j] == ' ')
				j++;
			for (;;) {
				for (; j < end && o + 1 < cap; j++)
					out[o++] = h[j];
				if (end + 2 >= len || (h[end + 2] != ' ' && h[end + 2] != '\t'))
					break;
				j = end + 2; /* unfold: drop the CRLF, keep the space */
				eol = memmem(h + j, len - j, "\r\n", 2);
				end = eol ? (size_t)(eol - h) : len;
			}
			out[o] = '\0';
			return true;
		}
		i = end + 2;
	}
	return false;
}

/* Splits a multipart message into its parts (RFC 2046 section 5.1.1). */
static void
mime_parse(const char *s, size_t len, struct mime *m)
{
	char ct[2048];
	const char *sep = memmem(s, len, "\r\n\r\n", 4);

	memset(m, 0, sizeof *m);
	check_lines(s, len);
	cr_assert_not_null(sep, "top-level header section ends");
	m->top = s;
	m->top_len = (size_t)(sep - s) + 2;
	cr_assert(header_get(m->top, m->top_len, "Content-Type", ct, sizeof ct));
	cr_assert(strncmp(ct, "multipart/report;", 17) == 0, "Content-Type: %s", ct);
	cr_assert_not_null(strstr(ct, "report-type=delivery-status"));
	const char *b = strstr(ct, "boundary=\"");
	cr_assert_not_null(b);
	b += 10;
	const char *q = strchr(b, '"');
	cr_assert(q && q > b && q - b <= 70);
	memcpy(m->boundary, b, (size_t)(q - b));

	size_t bl = strlen(m->boundary);
	struct part *cur = NULL;
	for (size_t i = (size_t)(sep - s) + 4; i < len && !m->closed;) {
		const char *eol = memmem(s + i, len - i, "\r\n", 2);
		size_t end = (size_t)(eol - s);
		bool delim = end - i >= bl + 2 && s[i] == '-' && s[i + 1] == '-' &&
			     memcmp(s + i + 2, m->boundary, bl) == 0;

		if (delim) {
			size_t rest = end - i - 2 - bl;
			cr_assert(rest == 0 ||
				      (rest == 2 && s[end - 1] == '-' && s[end - 2] == '-'),
				  "a line starting with the boundary is a delimiter");
			if (cur) /* the CRLF before the delimiter is the delimiter's */
				cur->body_len = i >= 2 ? i - 2 - (size_t)(cur->body - s) : 0;
			if (rest == 2) {
				m->closed = true;
			} else {
				cr_assert_lt(m->nparts, MAX_PARTS);
				cur = &m->parts[m->nparts++];
				const char *hs = memmem(s + end + 2, len - end - 2, "\r\n\r\n", 4);
				const char *he = s + end + 2;
				if (he[0] == '\r' && he[1] == '\n')
					hs = he - 2; /* no part headers */
				cr_assert_not_null(hs);
				cur->hdr = s + end + 2;
				cur->hdr_len = (size_t)(hs - cur->hdr) + 2;
				cur->body = hs + 4;
				i = (size_t)(cur->body - s);
				continue;
			}
		}
		i = end + 2;
	}
	cr_assert(m->closed, "the close delimiter is there");
}

static void
part_type(const struct mime *m, int i, char *out, size_t cap)
{
	cr_assert(header_get(m->parts[i].hdr, m->parts[i].hdr_len, "Content-Type", out, cap));
}

static bool
contains(const char *s, size_t len, const char *what)
{
	return memmem(s, len, what, strlen(what)) != NULL;
}

/* Builds and checks p; the caller frees the result. */
static char *
build_checked(const struct dsn_params *p, size_t *len, struct mime *m)
{
	char *out = dsn_build(p, len);
	char ct[256];

	cr_assert_not_null(out);
	cr_assert_eq(strlen(out), *len, "NUL-terminated, no NUL inside");
	mime_parse(out, *len, m);
	cr_assert_eq(m->nparts, 3);
	part_type(m, 0, ct, sizeof ct);
	cr_assert_str_eq(ct, "text/plain; charset=utf-8");
	part_type(m, 1, ct, sizeof ct);
	cr_assert_str_eq(ct, "message/delivery-status");
	part_type(m, 2, ct, sizeof ct);
	cr_assert_str_eq(ct, "text/rfc822-headers");
	return out;
}

/* The per-recipient block number i (1-based; 0 is the per-message one) of the status part. */
static void
status_block(const struct mime *m, int i, const char **p, size_t *len)
{
	const char *s = m->parts[1].body, *end = s + m->parts[1].body_len;

	for (int k = 0; k < i; k++) {
		const char *sep = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
		cr_assert_not_null(sep, "block %d", k + 1);
		s = sep + 4;
	}
	const char *sep = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
	*p = s;
	*len = sep ? (size_t)(sep - s) + 2 : (size_t)(end - s);
}

static void
expect_field(const char *blk, size_t len, const char *name, const char *value)
{
	char v[4096];

	cr_assert(header_get(blk, len, name, v, sizeof v), "%s is there", name);
	cr_assert_str_eq(v, value, "%s", name);
}

Test(dsn, output_is_a_multipart_report_with_three_parts_in_order)
{
	struct dsn_rcpt r =
	    rcpt_failed("bob@example.org", "mx.example.org", "550 5.1.1 no such user");
	struct dsn_params p = params(&r, 1, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	cr_assert_str_eq(m.boundary, BOUNDARY0);
	free(out);
}

Test(dsn, top_level_headers_name_the_sender_and_the_reporting_mta)
{
	struct dsn_rcpt r =
	    rcpt_failed("bob@example.org", "mx.example.org", "550 5.1.1 no such user");
	struct dsn_params p = params(&r, 1, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	expect_field(m.top, m.top_len, "From", "Mail Delivery System <MAILER-DAEMON@mx.test>");
	expect_field(m.top, m.top_len, "To", "<alice@example.com>");
	expect_field(m.top, m.top_len, "Subject", "Undelivered Mail Returned to Sender");
	expect_field(m.top, m.top_len, "Date", "Tue, 14 Nov 2023 22:13:20 +0000");
	expect_field(m.top, m.top_len, "Message-ID", "<" QID ".1700000000123.F@mx.test>");
	expect_field(m.top, m.top_len, "Auto-Submitted", "auto-replied");
	expect_field(m.top, m.top_len, "MIME-Version", "1.0");
	cr_assert(!contains(out, len, "Content-Transfer-Encoding"), "all 7-bit");
	free(out);
}

Test(dsn, each_recipient_has_its_delivery_status_fields)
{
	struct dsn_rcpt r[2] = {
	    rcpt_failed("bob@example.org", "mx.example.org", "550 5.1.1 no such user"),
	    rcpt_failed("carol@example.net", "", ""),
	};
	r[1].status = "5.4.4";
	r[1].last_attempt_ms = 0;
	struct dsn_params p = params(r, 2, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len, bl;
	const char *blk;
	char v[256];
	char *out = build_checked(&p, &len, &m);

	status_block(&m, 0, &blk, &bl);
	expect_field(blk, bl, "Reporting-MTA", "dns; mx.test");
	expect_field(blk, bl, "X-Ringmx-Queue-ID", QID);
	expect_field(blk, bl, "Arrival-Date", "Tue, 14 Nov 2023 21:13:20 +0000");
	status_block(&m, 1, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "rfc822; bob@example.org");
	expect_field(blk, bl, "Action", "failed");
	expect_field(blk, bl, "Status", "5.1.1");
	expect_field(blk, bl, "Remote-MTA", "dns; mx.example.org");
	expect_field(blk, bl, "Diagnostic-Code", "smtp; 550 5.1.1 no such user");
	expect_field(blk, bl, "Last-Attempt-Date", "Tue, 14 Nov 2023 22:13:19 +0000");
	cr_assert(!header_get(blk, bl, "Will-Retry-Until", v, sizeof v));
	status_block(&m, 2, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "rfc822; carol@example.net");
	expect_field(blk, bl, "Status", "5.4.4");
	expect_field(blk, bl, "Last-Attempt-Date", "Thu, 01 Jan 1970 00:00:00 +0000");
	cr_assert(!header_get(blk, bl, "Remote-MTA", v, sizeof v), "unknown MTA left out");
	cr_assert(!header_get(blk, bl, "Diagnostic-Code", v, sizeof v), "no reply left out");
	cr_assert(contains(m.parts[0].body, m.parts[0].body_len,
			   "<bob@example.org>: host mx.example.org said: 550 5.1.1 no such user"));
	cr_assert(contains(m.parts[0].body, m.parts[0].body_len,
			   "<carol@example.net>: delivery failed (status 5.4.4)"));
	free(out);
}

Test(dsn, delay_warning_says_delayed_and_when_retries_end)
{
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "mx.example.org", "451 4.3.0 try later");
	r.action = DSN_ACTION_DELAYED;
	r.status = "4.3.0";
	struct dsn_params p = params(&r, 1, MSG, sizeof MSG - 1);
	p.kind = DSN_DELAY;
	p.retry_until_ms = NOW_MS + 4 * 86400 * 1000ull;
	struct mime m;
	size_t len, bl;
	const char *blk;
	char *out = build_checked(&p, &len, &m);

	expect_field(m.top, m.top_len, "Subject", "Delayed Mail (still being retried)");
	expect_field(m.top, m.top_len, "Message-ID", "<" QID ".1700000000123.D@mx.test>");
	status_block(&m, 1, &blk, &bl);
	expect_field(blk, bl, "Action", "delayed");
	expect_field(blk, bl, "Status", "4.3.0");
	expect_field(blk, bl, "Will-Retry-Until", "Sat, 18 Nov 2023 22:13:20 +0000");
	cr_assert(contains(m.parts[0].body, m.parts[0].body_len, "THIS IS A WARNING ONLY"));
	free(out);
}

Test(dsn, original_headers_are_returned_but_never_the_body)
{
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len;
	const char *hdr_end = strstr(MSG, "\r\n\r\n") + 2;
	char *out = build_checked(&p, &len, &m);

	cr_assert_eq(m.parts[2].body_len, (size_t)(hdr_end - MSG));
	cr_assert(memcmp(m.parts[2].body, MSG, m.parts[2].body_len) == 0);
	cr_assert(!contains(out, len, "SECRET BODY"));
	cr_assert(!contains(out, len, "line 2"));
	free(out);
}

Test(dsn, hostile_diagnostic_cannot_add_headers_or_end_a_part)
{
	/* The predicted first boundary, in the reply and in the original headers. */
	static const char diag[] = "550 go away\r\nX-Injected: yes\r\n\r\n"
				   "--" BOUNDARY0 "--\r\n\0tail\x7f\x80\x1b[0m";
	static const char msg[] = "Subject: --" BOUNDARY0 "\r\n\r\nbody\r\n";
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "mx.evil\r\nX-Evil: 1", "");
	r.diagnostic = (struct spool_str){diag, sizeof diag - 1};
	struct dsn_params p = params(&r, 1, msg, sizeof msg - 1);
	struct mime m;
	size_t len, bl;
	const char *blk;
	char v[2048];
	char *out = build_checked(&p, &len, &m);

	cr_assert_str_neq(m.boundary, BOUNDARY0);
	cr_assert(!contains(out, len, "\r\nX-Injected"));
	cr_assert(!contains(out, len, "\r\nX-Evil"));
	status_block(&m, 1, &blk, &bl);
	cr_assert(header_get(blk, bl, "Diagnostic-Code", v, sizeof v));
	cr_assert_str_eq(v, "smtp; 550 go away X-Injected: yes --" BOUNDARY0 "-- ?tail???[0m");
	expect_field(blk, bl, "Remote-MTA", "dns; mx.evil??X-Evil:?1");
	free(out);
}

Test(dsn, long_unbroken_text_is_folded_below_the_line_limit)
{
	static char diag[5000], addr[3000], msg[9000];
	memset(diag, 'd', sizeof diag - 1);
	memset(addr, 'a', sizeof addr - 1);
	memcpy(addr + sizeof addr - 10, "@ex.org", 8);
	strcpy(msg, "X-Long: ");
	memset(msg + 8, 'h', 6000);
	strcpy(msg + 6008, "\r\nSubject: s\r\n\r\nbody\r\n");
	struct dsn_rcpt r = rcpt_failed(addr, "mx.example.org", diag);
	struct dsn_params p = params(&r, 1, msg, strlen(msg));
	p.sender = (struct spool_str){addr, strlen(addr)};
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m); /* checks every line */

	cr_assert(contains(m.parts[2].body, m.parts[2].body_len, "\r\nSubject: s\r\n"));
	cr_assert(contains(out, len, "...\r\n"), "the diagnostic is cut at DSN_DIAG_MAX");
	free(out);
}

Test(dsn, message_without_an_empty_line_is_all_headers)
{
	static const char msg[] = "Subject: x\r\nFrom: y";
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, msg, sizeof msg - 1);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	cr_assert_eq(m.parts[2].body_len, sizeof msg - 1 + 2);
	cr_assert(memcmp(m.parts[2].body, "Subject: x\r\nFrom: y\r\n", m.parts[2].body_len) == 0);
	free(out);
}

Test(dsn, empty_message_gives_an_empty_headers_part)
{
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, NULL, 0);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	cr_assert_eq(m.parts[2].body_len, 0);
	free(out);

	p = params(&r, 1, "\r\nbody only\r\n", 13);
	out = build_checked(&p, &len, &m);
	cr_assert_eq(m.parts[2].body_len, 0);
	cr_assert(!contains(out, len, "body only"));
	free(out);
}

Test(dsn, many_recipients_are_all_reported)
{
	enum { N = 2000 };
	static struct dsn_rcpt r[N];
	static char addrs[N][32];
	for (int i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof addrs[i], "user%04d@example.org", i);
		r[i] = rcpt_failed(addrs[i], "mx.example.org", "550 5.1.1 no such user");
	}
	struct dsn_params p = params(r, N, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len, bl, count = 0;
	const char *blk;
	char *out = build_checked(&p, &len, &m);

	for (const char *s = out; (s = strstr(s, "Final-Recipient: rfc822; user")); s++)
		count++;
	cr_assert_eq(count, N);
	status_block(&m, N, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "rfc822; user1999@example.org");
	free(out);
}

Test(dsn, headers_longer_than_the_limit_are_cut_at_a_line_end)
{
	size_t cap = 2 * DSN_HEADERS_MAX, n = 0;
	char *msg = malloc(cap + 64);
	cr_assert_not_null(msg);
	for (int i = 0; n < cap; i++)
		n += (size_t)sprintf(msg + n, "X-Pad-%05d: %s\r\n", i,
				     "0123456789abcdefghijklmnopq");
	n += (size_t)sprintf(msg + n, "\r\nbody\r\n");
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, msg, n);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	cr_assert_leq(m.parts[2].body_len, DSN_HEADERS_MAX);
	cr_assert_gt(m.parts[2].body_len, DSN_HEADERS_MAX - 64);
	cr_assert(memcmp(m.parts[2].body, msg, m.parts[2].body_len) == 0);
	cr_assert(memcmp(m.parts[2].body + m.parts[2].body_len - 2, "\r\n", 2) == 0);
	cr_assert(contains(m.parts[0].body, m.parts[0].body_len, "only the first lines"));
	free(out);
	free(msg);
}

Test(dsn, bare_line_ends_and_nul_in_original_headers_are_normalised)
{
	static const char msg[] = "A: 1\nB: 2\rC: \0x\r\n\nbody\r\n";
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, msg, sizeof msg - 1);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);

	cr_assert_eq(m.parts[2].body_len, 19);
	cr_assert(memcmp(m.parts[2].body, "A: 1\r\nB: 2\r\nC: ?x\r\n", 19) == 0);
	cr_assert(!contains(out, len, "body"));
	free(out);
}

Test(dsn, non_ascii_recipient_is_written_as_utf8_xtext)
{
	struct dsn_rcpt r[3] = {
	    rcpt_failed("j\xc3\xb6rg+x@example.de", "", ""),
	    rcpt_failed("a\377b@example.de", "", ""), /* not UTF-8 */
	    rcpt_failed("\xe2\x82\xac=@example.de", "", ""),
	};
	struct dsn_params p = params(r, 3, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len, bl;
	const char *blk;
	char v[128];
	char *out = build_checked(&p, &len, &m);

	status_block(&m, 1, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "utf-8; j\\x{F6}rg\\x{2B}x@example.de");
	status_block(&m, 2, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "rfc822; a?b@example.de");
	status_block(&m, 3, &blk, &bl);
	expect_field(blk, bl, "Final-Recipient", "utf-8; \\x{20AC}\\x{3D}@example.de");
	/* The text part keeps the UTF-8 and says so; the report part stays 7-bit. */
	cr_assert(contains(m.parts[0].body, m.parts[0].body_len, "<j\xc3\xb6rg+x@example.de>"));
	cr_assert(header_get(m.parts[0].hdr, m.parts[0].hdr_len, "Content-Transfer-Encoding", v,
			     sizeof v));
	cr_assert_str_eq(v, "8bit");
	cr_assert(!header_get(m.parts[1].hdr, m.parts[1].hdr_len, "Content-Transfer-Encoding", v,
			      sizeof v));
	free(out);
}

Test(dsn, eight_bit_original_headers_mark_their_part_8bit)
{
	static const char msg[] = "Subject: Gr\303\274\303\237e\r\n\r\nbody\r\n";
	struct dsn_rcpt r = rcpt_failed("bob@example.org", "", "");
	struct dsn_params p = params(&r, 1, msg, sizeof msg - 1);
	struct mime m;
	size_t len;
	char v[64];
	char *out = build_checked(&p, &len, &m);

	cr_assert(header_get(m.parts[2].hdr, m.parts[2].hdr_len, "Content-Transfer-Encoding", v,
			     sizeof v));
	cr_assert_str_eq(v, "8bit");
	cr_assert(!header_get(m.parts[0].hdr, m.parts[0].hdr_len, "Content-Transfer-Encoding", v,
			      sizeof v));
	free(out);
}

Test(dsn, invalid_status_is_replaced_by_the_class_default)
{
	static const char *const bad[] = {"5.1", "", "3.1.1", "5.1.1 x", "5.1234.1", "5..1", "x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct dsn_rcpt r[2] = {rcpt_failed("a@example.org", "", ""),
					rcpt_failed("b@example.org", "", "")};
		r[0].status = r[1].status = bad[i];
		r[1].action = DSN_ACTION_DELAYED;
		struct dsn_params p = params(r, 2, MSG, sizeof MSG - 1);
		struct mime m;
		size_t len, bl;
		const char *blk;
		char *out = build_checked(&p, &len, &m);

		status_block(&m, 1, &blk, &bl);
		expect_field(blk, bl, "Status", "5.0.0");
		status_block(&m, 2, &blk, &bl);
		expect_field(blk, bl, "Status", "4.0.0");
		free(out);
	}
	struct dsn_rcpt r = rcpt_failed("a@example.org", "", "");
	r.status = "2.123.999";
	struct dsn_params p = params(&r, 1, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len, bl;
	const char *blk;
	char *out = build_checked(&p, &len, &m);
	status_block(&m, 1, &blk, &bl);
	expect_field(blk, bl, "Status", "2.123.999");
	free(out);
}

/* Python's email package, as a second opinion on the structure. */
static const char PY_CHECK[] =
    "import email, email.policy, sys\n"
    "m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)\n"
    "assert m.get_content_type() == 'multipart/report', m.get_content_type()\n"
    "assert m.get_param('report-type') == 'delivery-status'\n"
    "p = m.get_payload()\n"
    "t = [x.get_content_type() for x in p]\n"
    "assert t == ['text/plain', 'message/delivery-status', 'text/rfc822-headers'], t\n"
    "ds = p[1].get_payload()\n"
    "assert len(ds) == 3, len(ds)\n"
    "assert ds[0]['Reporting-MTA'] == 'dns; mx.test', ds[0]['Reporting-MTA']\n"
    "assert ds[1]['Final-Recipient'] == 'rfc822; bob@example.org', ds[1]['Final-Recipient']\n"
    "assert ds[2]['Action'] == 'failed' and ds[2]['Status'] == '5.1.1'\n"
    "assert 'SECRET' not in p[2].get_content()\n"
    "assert 'Subject: hello' in p[2].get_content()\n"
    "bad = [(x.get_content_type(), x.defects) for x in m.walk() if x.defects]\n"
    "assert not bad, bad\n";

Test(dsn, python_email_parser_reads_a_multipart_report)
{
	if (access("/usr/bin/python3", X_OK) != 0)
		cr_skip_test("/usr/bin/python3 is not installed");
	struct dsn_rcpt r[2] = {
	    rcpt_failed("bob@example.org", "mx.example.org", "550 5.1.1 no such user"),
	    rcpt_failed("carol@example.org", "", "554 5.7.1\r\n--=_x\r\nX: y"),
	};
	struct dsn_params p = params(r, 2, MSG, sizeof MSG - 1);
	struct mime m;
	size_t len;
	char *out = build_checked(&p, &len, &m);
	char path[] = "/tmp/ringmx-dsn-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, out, len), (ssize_t)len);
	close(fd);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl("/usr/bin/python3", "python3", "-c", PY_CHECK, path, (char *)NULL);
		_exit(127);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	unlink(path);
	free(out);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python3 email check failed (%d)", st);
}

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic, so a failing iteration can be replayed. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Bytes that stress folding and sanitising: line ends, NUL, spaces, dashes, 8-bit. */
static size_t
random_text(uint64_t *s, char *out, size_t max)
{
	static const char alphabet[] = "\r\n\0 \t-=_ab.:@\x80\xc3\xa9\xff";
	size_t n = rng_next(s) % max;

	for (size_t i = 0; i < n; i++) {
		uint64_t x = rng_next(s);
		out[i] = x % 4 ? (char)('a' + x % 26) : alphabet[(x >> 8) % (sizeof alphabet - 1)];
	}
	return n;
}

Test(dsn, random_hostile_input_always_gives_a_well_formed_report)
{
	static char diag[3000], addr[1500], mta[300], msg[4000];
	uint64_t s = 0x9e3779b97f4a7c15ull;

	for (int it = 0; it < 300; it++) {
		struct dsn_rcpt r[2] = {rcpt_failed("bob@example.org", "", ""),
					rcpt_failed("carol@example.org", "", "")};
		r[0].diagnostic = (struct spool_str){diag, random_text(&s, diag, sizeof diag)};
		r[0].addr = (struct spool_str){addr, random_text(&s, addr, sizeof addr)};
		r[0].remote_mta = (struct spool_str){mta, random_text(&s, mta, sizeof mta)};
		struct dsn_params p = params(r, 2, msg, random_text(&s, msg, sizeof msg));
		p.kind = it % 2 ? DSN_DELAY : DSN_FAILURE;
		struct mime m;
		size_t len;
		char *out = build_checked(&p, &len, &m); /* lines, boundary, three parts */

		cr_assert(contains(m.parts[1].body, m.parts[1].body_len,
				   "\r\n\r\nFinal-Recipient: rfc822; carol@example.org\r\n"),
			  "iteration %d: the second recipient's block is intact", it);
		free(out);
	}
}
