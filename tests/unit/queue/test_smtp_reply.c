/*
 * Unit tests for queue/smtp_reply: a table of replies (single, multi-line, pipelined, bare LF,
 * every malformed form), each also fed cut at every byte boundary into two pieces and one byte
 * at a time, which must read exactly as the whole buffer does; enhanced status codes; EHLO
 * keywords; the line, line-count and text limits. Every piece sits at the very end of a
 * mapping whose next page is PROT_NONE, so reading one byte past it crashes the test.
 */
#include "queue/smtp_reply.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/guard.h"

#define REPLIES_MAX 8

/* What feeding a buffer gave: the replies in order, then MORE or BAD. */
struct outcome {
	struct smtp_reply rep[REPLIES_MAX];
	size_t nrep;
	bool bad;
	char bad_text[SMTP_REPLY_TEXT_MAX];
	size_t consumed; /* bytes reported used, over all calls */
};

/*
 * Feeds buf[0..len) cut at cuts[0..ncuts) (increasing, each in (0, len)), every piece in its
 * own guard buffer, calling again after each DONE as a client does. Stops at the first BAD.
 * When ehlo is set, smtp_reply_reader_expect_ehlo() is called before the first byte.
 */
static void
run_cuts(const char *buf, size_t len, const size_t *cuts, size_t ncuts, bool ehlo,
	 struct outcome *oc)
{
	struct smtp_reply_reader rd;
	size_t start = 0;

	memset(oc, 0, sizeof(*oc));
	smtp_reply_reader_init(&rd);
	if (ehlo)
		smtp_reply_reader_expect_ehlo(&rd);
	for (size_t c = 0; c <= ncuts && !oc->bad; c++) {
		size_t end = c < ncuts ? cuts[c] : len;
		size_t n = end - start, off = 0;
		struct guard g = guard_place(buf + start, n);

		while (!oc->bad) {
			struct smtp_reply rep;
			size_t used = (size_t)-1;
			enum smtp_reply_result res =
				smtp_reply_feed(&rd, n ? g.p + off : NULL, n - off, &used, &rep);

			cr_assert_leq(used, n - off);
			off += used;
			oc->consumed += used;
			if (res == SMTP_REPLY_MORE) {
				cr_assert_eq(off, n, "MORE must consume everything");
				break;
			}
			if (res == SMTP_REPLY_BAD) {
				oc->bad = true;
				cr_assert_eq(rep.code, 0);
				cr_assert_str_eq(rep.enh, "");
				strcpy(oc->bad_text, rep.text);
				break;
			}
			cr_assert_eq(res, SMTP_REPLY_DONE);
			cr_assert_gt(used, 0);
			cr_assert_lt(oc->nrep, REPLIES_MAX);
			oc->rep[oc->nrep++] = rep;
		}
		guard_free(&g);
		start = end;
	}
}

static void
run_whole(const char *buf, size_t len, bool ehlo, struct outcome *oc)
{
	run_cuts(buf, len, NULL, 0, ehlo, oc);
}

static bool
caps_eq(const struct smtp_caps *a, const struct smtp_caps *b)
{
	return a->pipelining == b->pipelining && a->chunking == b->chunking &&
	       a->starttls == b->starttls && a->eightbitmime == b->eightbitmime &&
	       a->smtputf8 == b->smtputf8 && a->size_present == b->size_present &&
	       a->dsn == b->dsn && a->binarymime == b->binarymime && a->size == b->size;
}

static bool
reply_eq(const struct smtp_reply *a, const struct smtp_reply *b)
{
	return a->code == b->code && a->nlines == b->nlines && a->truncated == b->truncated &&
	       strcmp(a->enh, b->enh) == 0 && strcmp(a->text, b->text) == 0 &&
	       caps_eq(&a->caps, &b->caps);
}

static void
assert_outcome_eq(const struct outcome *a, const struct outcome *b, const char *what)
{
	cr_assert_eq(a->nrep, b->nrep, "%s: %zu replies, want %zu", what, a->nrep, b->nrep);
	for (size_t i = 0; i < a->nrep; i++)
		cr_assert(reply_eq(&a->rep[i], &b->rep[i]), "%s: reply %zu (\"%s\" vs \"%s\")",
			  what, i, a->rep[i].text, b->rep[i].text);
	cr_assert_eq(a->bad, b->bad, "%s: bad", what);
	cr_assert_str_eq(a->bad_text, b->bad_text, "%s", what);
	cr_assert_eq(a->consumed, b->consumed, "%s: consumed %zu, want %zu", what, a->consumed,
		     b->consumed);
}

/* Every cut into two pieces, and one byte at a time, must read as the whole buffer does. */
static void
check_splits(const char *buf, size_t len, bool ehlo, const struct outcome *whole)
{
	struct outcome oc;
	char what[64];
	size_t *cuts = malloc(len * sizeof(*cuts) + 1);

	cr_assert(cuts != NULL);
	for (size_t k = 1; k < len; k++) {
		snprintf(what, sizeof(what), "cut at %zu", k);
		run_cuts(buf, len, &k, 1, ehlo, &oc);
		assert_outcome_eq(&oc, whole, what);
	}
	for (size_t k = 1; k < len; k++)
		cuts[k - 1] = k;
	run_cuts(buf, len, cuts, len ? len - 1 : 0, ehlo, &oc);
	assert_outcome_eq(&oc, whole, "one byte at a time");
	free(cuts);
}

struct want {
	int code;
	const char *enh;
	const char *text;
	unsigned nlines;
};

/* One table row: input bytes, the replies they must give, then MORE (bad NULL) or BAD. */
struct row {
	const char *in;
	size_t len;
	bool ehlo;
	size_t nrep;
	struct want want[4];
	const char *bad;
};

#define IN(s) .in = s, .len = sizeof(s) - 1

static void
check_row(const struct row *r)
{
	struct outcome whole;

	run_whole(r->in, r->len, r->ehlo, &whole);
	cr_assert_eq(whole.nrep, r->nrep, "\"%s\": %zu replies, want %zu", r->in, whole.nrep,
		     r->nrep);
	for (size_t i = 0; i < r->nrep; i++) {
		const struct smtp_reply *got = &whole.rep[i];
		const struct want *w = &r->want[i];

		cr_assert_eq(got->code, w->code, "\"%s\" reply %zu: code %d", r->in, i, got->code);
		cr_assert_str_eq(got->enh, w->enh ? w->enh : "", "\"%s\" reply %zu", r->in, i);
		cr_assert_str_eq(got->text, w->text, "\"%s\" reply %zu", r->in, i);
		cr_assert_eq(got->nlines, w->nlines, "\"%s\" reply %zu: %u lines", r->in, i,
			     got->nlines);
		cr_assert_not(got->truncated);
	}
	cr_assert_eq(whole.bad, r->bad != NULL, "\"%s\": bad is %d (%s)", r->in, whole.bad,
		     whole.bad_text);
	if (r->bad)
		cr_assert_str_eq(whole.bad_text, r->bad, "\"%s\"", r->in);
	else
		cr_assert_eq(whole.consumed, r->len);
	check_splits(r->in, r->len, r->ehlo, &whole);
}

static void
check_rows(const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_row(&rows[i]);
}

#define CHECK_ROWS(rows) check_rows((rows), sizeof(rows) / sizeof((rows)[0]))

#define R_MALFORMED "malformed reply line"
#define R_RANGE "reply code out of range"
#define R_DIFFERS "reply code differs between lines"
#define R_NUL "NUL byte in reply"
#define R_LONG "reply line too long"
#define R_LINES "too many reply lines"

Test(smtp_reply, single_and_multi_line_replies_read_the_same_however_they_are_cut)
{
	static const struct row rows[] = {
		{IN("220 mx.example.com ESMTP ready\r\n"), .nrep = 1,
		 .want = {{220, "", "mx.example.com ESMTP ready", 1}}},
		{IN("250 OK\r\n"), .nrep = 1, .want = {{250, "", "OK", 1}}},
		{IN("250\r\n"), .nrep = 1, .want = {{250, "", "", 1}}},
		{IN("250 \r\n"), .nrep = 1, .want = {{250, "", "", 1}}},
		{IN("200 x\r\n599 y\r\n"), .nrep = 2, .want = {{200, "", "x", 1}, {599, "", "y", 1}}},
		{IN("250-first\r\n250-second\r\n250 third\r\n"), .nrep = 1,
		 .want = {{250, "", "first second third", 3}}},
		{IN("250-\r\n250-a\r\n250 \r\n"), .nrep = 1, .want = {{250, "", "a", 3}}},
		{IN("250-a\r\n250\r\n"), .nrep = 1, .want = {{250, "", "a", 2}}},
		/* Bare LF ends a line too; a CR before it is part of the line end. */
		{IN("250 ok\n"), .nrep = 1, .want = {{250, "", "ok", 1}}},
		{IN("250-a\n250-b\r\n250 c\n"), .nrep = 1, .want = {{250, "", "a b c", 3}}},
		/* A CR anywhere else is a non-printable byte of the text. */
		{IN("250 ok\r\r\n"), .nrep = 1, .want = {{250, "", "ok?", 1}}},
		{IN("250 a\rb\r\n"), .nrep = 1, .want = {{250, "", "a?b", 1}}},
		{IN("250 caf\xc3\xa9\ttab\x7f\x01!\r\n"), .nrep = 1,
		 .want = {{250, "", "caf???tab?" "?!", 1}}},
		/* Incomplete: nothing yet, everything kept. */
		{IN("")},
		{IN("2")},
		{IN("221 bye")},
		{IN("221 bye\r")},
		{IN("250-a\r\n")},
		{IN("250-a\r\n250 b")},
		/* Pipelining (RFC 2920): several replies in one buffer, one per call. */
		{IN("250 2.1.0 Sender ok\r\n250 2.1.5 Recipient ok\r\n354 Go ahead\r\n"), .nrep = 3,
		 .want = {{250, "2.1.0", "Sender ok", 1},
			  {250, "2.1.5", "Recipient ok", 1},
			  {354, "", "Go ahead", 1}}},
		{IN("250 a\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n25"), .nrep = 2,
		 .want = {{250, "", "a", 1}, {550, "5.1.1", "no such user", 2}}},
		{IN("250 a\n250 b\n250 c\n250 d\n"), .nrep = 4,
		 .want = {{250, "", "a", 1}, {250, "", "b", 1}, {250, "", "c", 1}, {250, "", "d", 1}}},
		/* The enhanced code of the last line; every line's own is cut from the text. */
		{IN("550-5.1.1 The account\r\n550-5.1.1 does not exist\r\n550 5.1.1  https://x\r\n"),
		 .nrep = 1, .want = {{550, "5.1.1", "The account does not exist https://x", 3}}},
		{IN("250-2.0.0 a\r\n250 2.1.0 b\r\n"), .nrep = 1, .want = {{250, "2.1.0", "a b", 2}}},
		{IN("250-2.0.0 a\r\n250 b\r\n"), .nrep = 1, .want = {{250, "", "a b", 2}}},
		/* The EHLO reply, read as keywords while it passes. */
		{IN("250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
		    "250-STARTTLS\r\n250-8BITMIME\r\n250-smtputf8\r\n250-CHUNKING\r\n"
		    "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n250 2.1.0 ok\r\n"),
		 .ehlo = true, .nrep = 2,
		 .want = {{250, "",
			   "mx.example.com Hello PIPELINING SIZE 10240000 STARTTLS 8BITMIME "
			   "smtputf8 CHUNKING ENHANCEDSTATUSCODES DSN",
			   9},
			  {250, "2.1.0", "ok", 1}}},
	};
	CHECK_ROWS(rows);
}

Test(smtp_reply, malformed_replies_are_bad_wherever_they_are_cut)
{
	static const struct row rows[] = {
		{IN("250 a\0b\r\n"), .bad = R_NUL},
		{IN("250 a\r\n\0\r\n"), .nrep = 1, .want = {{250, "", "a", 1}}, .bad = R_NUL},
		{IN("\0"), .bad = NULL}, /* no line end yet: not looked at */
		{IN("\0\n"), .bad = R_NUL},
		{IN("\r\n"), .bad = R_MALFORMED},
		{IN("\n"), .bad = R_MALFORMED},
		{IN("25\r\n"), .bad = R_MALFORMED},
		{IN("2\n"), .bad = R_MALFORMED},
		{IN("2500 x\r\n"), .bad = R_MALFORMED},
		{IN("250_x\r\n"), .bad = R_MALFORMED},
		{IN("250\tx\r\n"), .bad = R_MALFORMED},
		{IN("abc ok\r\n"), .bad = R_MALFORMED},
		{IN("2a0 ok\r\n"), .bad = R_MALFORMED},
		{IN(" 250 ok\r\n"), .bad = R_MALFORMED},
		{IN("HTTP/1.1 400 Bad Request\r\n"), .bad = R_MALFORMED},
		{IN("250 ok\r\n25x\r\n"), .nrep = 1, .want = {{250, "", "ok", 1}}, .bad = R_MALFORMED},
		{IN("250-ok\r\nnot a reply\r\n"), .bad = R_MALFORMED},
		{IN("150 x\r\n"), .bad = R_RANGE},
		{IN("050 x\r\n"), .bad = R_RANGE},
		{IN("650 x\r\n"), .bad = R_RANGE},
		{IN("999\r\n"), .bad = R_RANGE},
		{IN("250-a\r\n251 b\r\n"), .bad = R_DIFFERS},
		{IN("250-a\r\n550 b\r\n"), .bad = R_DIFFERS},
		{IN("550-a\r\n550-b\r\n450 c\r\n"), .bad = R_DIFFERS},
	};
	CHECK_ROWS(rows);
}

Test(smtp_reply, bad_is_sticky_until_init)
{
	struct smtp_reply_reader rd;
	struct smtp_reply rep;
	size_t used;

	smtp_reply_reader_init(&rd);
	cr_assert_eq(smtp_reply_feed(&rd, "999 x\r\n", 7, &used, &rep), SMTP_REPLY_BAD);
	cr_assert_eq(used, 7);
	cr_assert_eq(smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep), SMTP_REPLY_BAD);
	cr_assert_eq(used, 0);
	cr_assert_str_eq(rep.text, R_RANGE);
	smtp_reply_reader_init(&rd);
	cr_assert_eq(smtp_reply_feed(&rd, "250 ok\r\n", 8, &used, &rep), SMTP_REPLY_DONE);
	cr_assert_eq(rep.code, 250);
}

Test(smtp_reply, more_leaves_out_untouched_and_done_fills_any_out)
{
	struct smtp_reply_reader rd;
	struct smtp_reply a, b;
	size_t used;

	smtp_reply_reader_init(&rd);
	memset(&a, 0x5a, sizeof(a));
	a.code = 777;
	cr_assert_eq(smtp_reply_feed(&rd, "250-x\r\n25", 9, &used, &a), SMTP_REPLY_MORE);
	cr_assert_eq(used, 9);
	cr_assert_eq(a.code, 777);
	cr_assert_eq(smtp_reply_feed(&rd, NULL, 0, &used, &a), SMTP_REPLY_MORE);
	cr_assert_eq(used, 0);
	cr_assert_eq(smtp_reply_feed(&rd, "0 y\r\n", 5, &used, &b), SMTP_REPLY_DONE);
	cr_assert_eq(used, 5);
	cr_assert_eq(b.code, 250);
	cr_assert_eq(b.nlines, 2);
	cr_assert_str_eq(b.text, "x y");
	cr_assert_not(b.truncated);
}

/* Reads one reply from a whole buffer; it must be DONE. */
static struct smtp_reply
read_one(const char *in, bool ehlo)
{
	struct outcome oc;

	run_whole(in, strlen(in), ehlo, &oc);
	cr_assert_not(oc.bad, "\"%s\": %s", in, oc.bad_text);
	cr_assert_eq(oc.nrep, 1, "\"%s\"", in);
	return oc.rep[0];
}

Test(smtp_reply, enhanced_status_codes_are_validated_against_rfc_3463)
{
	static const struct {
		const char *in, *enh, *text;
	} rows[] = {
		{"250 2.1.5 Ok\r\n", "2.1.5", "Ok"},
		{"250 2.1.5\r\n", "2.1.5", ""},
		{"250 2.0.0  Ok\r\n", "2.0.0", "Ok"},
		{"450 4.7.1 later\r\n", "4.7.1", "later"},
		{"550 5.123.456 x\r\n", "5.123.456", "x"},
		{"554 5.0.0\n", "5.0.0", ""},
		/* Class must equal the code's first digit, and 3xx have none. */
		{"250 5.1.1 x\r\n", "", "5.1.1 x"},
		{"550 2.0.0 x\r\n", "", "2.0.0 x"},
		{"354 3.0.0 go\r\n", "", "3.0.0 go"},
		{"354 2.0.0 go\r\n", "", "2.0.0 go"},
		/* Subject and detail are 1 to 3 digits; SP or the line end follows. */
		{"550 5.1234.5 x\r\n", "", "5.1234.5 x"},
		{"550 5.1.1234 x\r\n", "", "5.1.1234 x"},
		{"550 5..1 x\r\n", "", "5..1 x"},
		{"550 5.1. x\r\n", "", "5.1. x"},
		{"550 5.1 x\r\n", "", "5.1 x"},
		{"550 5.1\r\n", "", "5.1"},
		{"550 5.\r\n", "", "5."},
		{"550 5\r\n", "", "5"},
		{"550 .1.1 x\r\n", "", ".1.1 x"},
		{"550 5-1-1 x\r\n", "", "5-1-1 x"},
		{"550 5.1.1x\r\n", "", "5.1.1x"},
		{"550 5.1.1.1 x\r\n", "", "5.1.1.1 x"},
		{"550 5.1.1\tx\r\n", "", "5.1.1?x"},
		{"550 x 5.1.1\r\n", "", "x 5.1.1"},
		{"550  5.1.1 x\r\n", "", " 5.1.1 x"},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct smtp_reply rep = read_one(rows[i].in, false);

		cr_assert_str_eq(rep.enh, rows[i].enh, "\"%s\"", rows[i].in);
		cr_assert_str_eq(rep.text, rows[i].text, "\"%s\"", rows[i].in);
	}
}

Test(smtp_reply, ehlo_keywords_are_collected_case_insensitively)
{
	struct smtp_reply rep = read_one("250-mx.example.com Hello [192.0.2.1]\r\n"
					 "250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
					 "250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n"
					 "250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250-X-UNKNOWN a b\r\n"
					 "250 BINARYMIME\r\n",
					 true);

	cr_assert_eq(rep.code, 250);
	cr_assert_eq(rep.nlines, 11);
	cr_assert(rep.caps.pipelining && rep.caps.chunking && rep.caps.starttls);
	cr_assert(rep.caps.eightbitmime && rep.caps.smtputf8 && rep.caps.dsn);
	cr_assert(rep.caps.binarymime && rep.caps.size_present);
	cr_assert_eq(rep.caps.size, 10240000);

	rep = read_one("250-mx\r\n250-pipelining\r\n250-Size\r\n250-starttls\r\n250-8bitmime\r\n"
		       "250-SmtpUtf8\r\n250 chunking\r\n",
		       true);
	cr_assert(rep.caps.pipelining && rep.caps.chunking && rep.caps.starttls);
	cr_assert(rep.caps.eightbitmime && rep.caps.smtputf8 && rep.caps.size_present);
	cr_assert_not(rep.caps.dsn || rep.caps.binarymime);
	cr_assert_eq(rep.caps.size, 0);
}

Test(smtp_reply, ehlo_size_without_a_valid_number_means_no_limit)
{
	static const struct {
		const char *in;
		bool present;
		uint64_t size;
	} rows[] = {
		{"250-mx\r\n250 SIZE\r\n", true, 0},
		{"250-mx\r\n250 SIZE 0\r\n", true, 0},
		{"250-mx\r\n250 SIZE 1\r\n", true, 1},
		{"250-mx\r\n250 size   52428800\r\n", true, 52428800},
		{"250-mx\r\n250 SIZE 9999999999999999999\r\n", true, 9999999999999999999ull},
		{"250-mx\r\n250 SIZE 99999999999999999999\r\n", true, 0},
		{"250-mx\r\n250 SIZE abc\r\n", true, 0},
		{"250-mx\r\n250 SIZE 12x\r\n", true, 0},
		{"250-mx\r\n250 SIZE -5\r\n", true, 0},
		{"250-mx\r\n250 SIZE 100 extra\r\n", true, 100},
		{"250-mx\r\n250 SIZEX 5\r\n", false, 0},
		{"250-mx\r\n250 SIZ 5\r\n", false, 0},
		{"250 SIZE 5\r\n", false, 0},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct smtp_reply rep = read_one(rows[i].in, true);

		cr_assert_eq(rep.caps.size_present, rows[i].present, "\"%s\"", rows[i].in);
		cr_assert_eq(rep.caps.size, rows[i].size, "\"%s\"", rows[i].in);
	}
}

Test(smtp_reply, ehlo_keywords_need_the_flag_a_250_and_a_line_after_the_first)
{
	static const struct smtp_caps none;
	struct smtp_reply rep;

	/* Not asked for. */
	rep = read_one("250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n", false);
	cr_assert(caps_eq(&rep.caps, &none));
	/* Not a 250. */
	rep = read_one("502-mx\r\n502-PIPELINING\r\n502 CHUNKING\r\n", true);
	cr_assert(caps_eq(&rep.caps, &none));
	rep = read_one("251-mx\r\n251 PIPELINING\r\n", true);
	cr_assert(caps_eq(&rep.caps, &none));
	/* The first line is the server's name, not a keyword. */
	rep = read_one("250-PIPELINING\r\n250 CHUNKING\r\n", true);
	cr_assert_not(rep.caps.pipelining);
	cr_assert(rep.caps.chunking);
	rep = read_one("250 PIPELINING\r\n", true);
	cr_assert(caps_eq(&rep.caps, &none));
	/* Whole words only; parameters after a keyword do not matter. */
	rep = read_one("250-mx\r\n250-PIPELININGX\r\n250-PIPE\r\n250-XCHUNKING\r\n"
		       "250 STARTTLS now\r\n",
		       true);
	cr_assert_not(rep.caps.pipelining || rep.caps.chunking);
	cr_assert(rep.caps.starttls);
}

Test(smtp_reply, ehlo_flag_covers_only_the_next_reply)
{
	const char *in = "250-mx\r\n250 PIPELINING\r\n250-mx\r\n250 PIPELINING\r\n";
	struct outcome oc;

	run_whole(in, strlen(in), true, &oc);
	cr_assert_eq(oc.nrep, 2);
	cr_assert(oc.rep[0].caps.pipelining);
	cr_assert_not(oc.rep[1].caps.pipelining);
}

/* "250 " + fill bytes of 'a' + end, in a fresh malloc'd buffer; *len set. */
static char *
long_line(size_t fill, const char *end, size_t *len)
{
	size_t elen = strlen(end);
	char *s = malloc(4 + fill + elen + 1);

	cr_assert(s != NULL);
	memcpy(s, "250 ", 4);
	memset(s + 4, 'a', fill);
	memcpy(s + 4 + fill, end, elen + 1);
	*len = 4 + fill + elen;
	return s;
}

Test(smtp_reply, a_line_of_line_max_bytes_fits_one_more_is_bad)
{
	static const struct {
		size_t fill;
		const char *end;
		bool bad;
		size_t consumed;
	} rows[] = {
		{SMTP_REPLY_LINE_MAX - 6, "\r\n", false, SMTP_REPLY_LINE_MAX},
		{SMTP_REPLY_LINE_MAX - 5, "\r\n", true, SMTP_REPLY_LINE_MAX},
		{SMTP_REPLY_LINE_MAX - 5, "\n", false, SMTP_REPLY_LINE_MAX},
		{SMTP_REPLY_LINE_MAX - 4, "\n", true, SMTP_REPLY_LINE_MAX},
		/* No line end: bad as soon as LINE_MAX bytes are there, not before. */
		{SMTP_REPLY_LINE_MAX - 5, "\r", true, SMTP_REPLY_LINE_MAX},
		{SMTP_REPLY_LINE_MAX - 5, "", false, SMTP_REPLY_LINE_MAX - 1},
		{SMTP_REPLY_LINE_MAX - 4, "", true, SMTP_REPLY_LINE_MAX},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len;
		char *s = long_line(rows[i].fill, rows[i].end, &len);
		struct outcome oc;

		run_whole(s, len, false, &oc);
		cr_assert_eq(oc.bad, rows[i].bad, "row %zu", i);
		cr_assert_eq(oc.consumed, rows[i].consumed, "row %zu: consumed %zu", i, oc.consumed);
		if (oc.bad) {
			cr_assert_str_eq(oc.bad_text, R_LONG);
		} else if (*rows[i].end != '\0') {
			cr_assert_eq(oc.nrep, 1);
			cr_assert(oc.rep[0].truncated);
			cr_assert_eq(strlen(oc.rep[0].text), SMTP_REPLY_TEXT_MAX - 1);
		} else {
			cr_assert_eq(oc.nrep, 0);
		}
		check_splits(s, len, false, &oc);
		free(s);
	}
}

Test(smtp_reply, a_long_line_in_a_later_line_or_reply_is_bad_too)
{
	size_t len;
	char *tail = long_line(SMTP_REPLY_LINE_MAX, "\r\n", &len);
	char *s = malloc(len + 16);
	struct outcome oc;

	cr_assert(s != NULL);
	memcpy(s, "250-x\r\n", 7);
	memcpy(s + 7, tail, len);
	run_whole(s, len + 7, false, &oc);
	cr_assert(oc.bad);
	cr_assert_str_eq(oc.bad_text, R_LONG);
	cr_assert_eq(oc.consumed, 7 + SMTP_REPLY_LINE_MAX);
	memcpy(s, "250 x\r\n", 7);
	run_whole(s, len + 7, false, &oc);
	cr_assert(oc.bad);
	cr_assert_eq(oc.nrep, 1);
	free(tail);
	free(s);
}

Test(smtp_reply, a_huge_line_is_looked_at_no_further_than_line_max)
{
	size_t len;
	char *s = long_line(1 << 20, "\r\n", &len);
	struct smtp_reply_reader rd;
	struct smtp_reply rep;
	struct guard g = guard_place(s, len);
	size_t used;

	smtp_reply_reader_init(&rd);
	cr_assert_eq(smtp_reply_feed(&rd, g.p, len, &used, &rep), SMTP_REPLY_BAD);
	cr_assert_eq(used, SMTP_REPLY_LINE_MAX);
	guard_free(&g);
	free(s);
}

/* n lines "250-x", then `last` (may be ""), in a malloc'd string. */
static char *
many_lines(size_t n, const char *last)
{
	char *s = malloc(n * 7 + strlen(last) + 1);

	cr_assert(s != NULL);
	for (size_t i = 0; i < n; i++)
		memcpy(s + 7 * i, "250-x\r\n", 7);
	strcpy(s + 7 * n, last);
	return s;
}

Test(smtp_reply, a_reply_of_lines_max_lines_fits_one_more_is_bad)
{
	char *ok = many_lines(SMTP_REPLY_LINES_MAX - 1, "250 y\r\n");
	char *over = many_lines(SMTP_REPLY_LINES_MAX, "250 y\r\n");
	char *cont = many_lines(SMTP_REPLY_LINES_MAX, "");
	struct outcome oc;

	run_whole(ok, strlen(ok), false, &oc);
	cr_assert_not(oc.bad);
	cr_assert_eq(oc.nrep, 1);
	cr_assert_eq(oc.rep[0].nlines, SMTP_REPLY_LINES_MAX);
	cr_assert_eq(strlen(oc.rep[0].text), 2 * SMTP_REPLY_LINES_MAX - 1);
	check_splits(ok, strlen(ok), false, &oc);

	run_whole(over, strlen(over), false, &oc);
	cr_assert(oc.bad);
	cr_assert_str_eq(oc.bad_text, R_LINES);
	cr_assert_eq(oc.consumed, 7 * SMTP_REPLY_LINES_MAX);
	check_splits(over, strlen(over), false, &oc);

	/* Bad at the continuation line that makes LINES_MAX, before any more arrive. */
	run_whole(cont, strlen(cont), false, &oc);
	cr_assert(oc.bad);
	cr_assert_str_eq(oc.bad_text, R_LINES);
	free(ok);
	free(over);
	free(cont);
}

Test(smtp_reply, text_is_truncated_safely_at_text_max)
{
	const size_t cap = SMTP_REPLY_TEXT_MAX - 1;
	char buf[3 * SMTP_REPLY_LINE_MAX];
	struct smtp_reply rep;
	int n;

	/* Exactly cap bytes fit; one more is cut. */
	n = snprintf(buf, sizeof(buf), "250 %0*d\r\n", (int)cap, 0);
	cr_assert_lt((size_t)n, sizeof(buf));
	rep = read_one(buf, false);
	cr_assert_not(rep.truncated);
	cr_assert_eq(strlen(rep.text), cap);
	snprintf(buf, sizeof(buf), "250 %0*d\r\n", (int)cap + 1, 0);
	rep = read_one(buf, false);
	cr_assert(rep.truncated);
	cr_assert_eq(strlen(rep.text), cap);

	/* A joining SP needs room for a byte after it. */
	snprintf(buf, sizeof(buf), "250-%0*d\r\n250 c\r\n", (int)cap - 2, 0);
	rep = read_one(buf, false);
	cr_assert_not(rep.truncated);
	cr_assert_eq(strlen(rep.text), cap);
	cr_assert_eq(rep.text[cap - 2], ' ');
	cr_assert_eq(rep.text[cap - 1], 'c');
	snprintf(buf, sizeof(buf), "250-%0*d\r\n250 c\r\n", (int)cap - 1, 0);
	rep = read_one(buf, false);
	cr_assert(rep.truncated);
	cr_assert_eq(strlen(rep.text), cap - 1);

	/* Many lines: the text is a prefix of the joined lines, cut at cap. */
	char want[16 * 64];
	size_t wlen = 0, off = 0;
	for (int i = 0; i < 16; i++) {
		char line[64];
		int ll = snprintf(line, sizeof(line), "line %02d %s", i,
				  "abcdefghijklmnopqrstuvwxyzabcdefghijklmnop");
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "451%c4.3.0 %s\r\n",
					i == 15 ? ' ' : '-', line);
		if (wlen > 0)
			want[wlen++] = ' ';
		memcpy(want + wlen, line, (size_t)ll);
		wlen += (size_t)ll;
	}
	cr_assert_gt(wlen, cap);
	rep = read_one(buf, false);
	cr_assert(rep.truncated);
	cr_assert_str_eq(rep.enh, "4.3.0");
	cr_assert_eq(strlen(rep.text), cap);
	cr_assert_eq(memcmp(rep.text, want, cap), 0);
	struct outcome whole;
	run_whole(buf, off, false, &whole);
	check_splits(buf, off, false, &whole);
}
