/*
 * Unit tests for bench/bench_reply: a table of valid replies, each also fed cut at every byte
 * boundary and followed by another reply; a table of malformed ones; line-length limits; CRLF
 * and bare LF; and the EHLO keywords. Inputs sit at the very end of a mapping whose next page
 * is PROT_NONE, so reading one byte past them crashes the test.
 */
#include "bench/bench_reply.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/guard.h"

/* Parses src[0..len) placed against a guard page; out->p is rebased onto src. */
static long
parse_guarded(const char *src, size_t len, struct bench_reply *out)
{
	struct guard g = guard_place(src, len);
	long n = bench_reply_parse(g.p, len, out);

	if (n > 0) {
		cr_assert_eq(out->p, g.p, "the reply starts at buf");
		cr_assert_eq(out->len, (size_t)n);
		out->p = src;
	}
	guard_free(&g);
	return n;
}

static long
parse_str(const char *s, struct bench_reply *out)
{
	return parse_guarded(s, strlen(s), out);
}

/* ---- valid replies ---- */

struct valid_case {
	const char *in; /* exactly one reply */
	int code;
};

static const struct valid_case valid[] = {
    {"220 mx.test ESMTP ready\r\n", 220},
    {"250 2.0.0 Ok: queued as 1234\r\n", 250},
    {"354 End data with <CR><LF>.<CR><LF>\r\n", 354},
    {"221 2.0.0 Bye\r\n", 221},
    {"421 4.3.2 Service shutting down\r\n", 421},
    {"550 5.1.1 <nobody@x>: Recipient address rejected\r\n", 550},
    {"250\r\n", 250},
    {"250 \r\n", 250},
    {"250\n", 250},
    {"250 ok\n", 250},
    {"199 lowest first digit\r\n", 199},
    {"599 highest first digit\r\n", 599},
    {"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n", 250},
    {"250-mx.test\r\n250 8BITMIME\r\n", 250},
    {"250-\r\n250-\r\n250\r\n", 250},
    {"250-mx.test\n250-PIPELINING\r\n250 SIZE\n", 250},
    {"554-5.7.1 first line\r\n554-5.7.1 second line\r\n554 5.7.1 last\r\n", 554},
};

#define NVALID (sizeof(valid) / sizeof(valid[0]))

Test(bench_reply, every_valid_reply_parses_to_its_code_and_length)
{
	for (size_t i = 0; i < NVALID; i++) {
		struct bench_reply r;
		size_t len = strlen(valid[i].in);

		cr_assert_eq(parse_str(valid[i].in, &r), (long)len, "'%s'", valid[i].in);
		cr_assert_eq(r.code, valid[i].code, "'%s'", valid[i].in);
		cr_assert_eq(r.p, valid[i].in);
		cr_assert_eq(r.len, len);
	}
}

Test(bench_reply, a_reply_cut_at_every_byte_boundary_needs_more)
{
	for (size_t i = 0; i < NVALID; i++) {
		size_t len = strlen(valid[i].in);

		for (size_t cut = 0; cut < len; cut++) {
			struct bench_reply r = {.code = -7};

			cr_assert_eq(parse_guarded(valid[i].in, cut, &r), BENCH_REPLY_NEED_MORE,
				     "'%s' cut after %zu bytes", valid[i].in, cut);
			cr_assert_eq(r.code, -7, "out is not written before the reply is complete");
		}
	}
}

Test(bench_reply, a_reply_completed_over_two_reads_parses_like_one_read)
{
	for (size_t i = 0; i < NVALID; i++) {
		size_t len = strlen(valid[i].in);

		for (size_t cut = 1; cut < len; cut++) {
			char buf[256];
			struct bench_reply r;

			/* What a receive buffer holds: first read, NEED_MORE, then both reads. */
			memcpy(buf, valid[i].in, cut);
			cr_assert_eq(parse_guarded(buf, cut, &r), BENCH_REPLY_NEED_MORE);
			memcpy(buf + cut, valid[i].in + cut, len - cut);
			cr_assert_eq(parse_guarded(buf, len, &r), (long)len, "'%s' cut at %zu",
				     valid[i].in, cut);
			cr_assert_eq(r.code, valid[i].code);
		}
	}
}

Test(bench_reply, a_reply_followed_by_the_next_one_consumes_only_its_own_bytes)
{
	static const char *const next[] = {"250 next\r\n", "2", "354", "garbage\r\n"};

	for (size_t i = 0; i < NVALID; i++) {
		for (size_t j = 0; j < sizeof(next) / sizeof(next[0]); j++) {
			char buf[512];
			size_t len = strlen(valid[i].in);
			struct bench_reply r;

			snprintf(buf, sizeof(buf), "%s%s", valid[i].in, next[j]);
			cr_assert_eq(parse_str(buf, &r), (long)len, "'%s'", buf);
			cr_assert_eq(r.code, valid[i].code);
		}
	}
}

Test(bench_reply, several_replies_in_one_buffer_are_taken_one_call_at_a_time)
{
	static const char in[] = "220 mx ready\r\n"
				 "250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
				 "250 2.1.0 Ok\r\n"
				 "550 5.1.1 no such user\r\n"
				 "354 go ahead\r\n"
				 "250 2.0.0 queued\r\n"
				 "221 Bye";
	static const int codes[] = {220, 250, 250, 550, 354, 250};
	struct guard g = guard_place(in, sizeof(in) - 1);
	size_t off = 0;

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct bench_reply r;
		long n = bench_reply_parse(g.p + off, sizeof(in) - 1 - off, &r);

		cr_assert_gt(n, 0, "reply %zu", i);
		cr_assert_eq(r.code, codes[i], "reply %zu", i);
		cr_assert_eq(r.p, g.p + off);
		off += (size_t)n;
	}
	struct bench_reply r;

	cr_assert_eq(bench_reply_parse(g.p + off, sizeof(in) - 1 - off, &r), BENCH_REPLY_NEED_MORE,
		     "the 221 has no line end yet");
	cr_assert_eq(bench_reply_parse(g.p + sizeof(in) - 1, 0, &r), BENCH_REPLY_NEED_MORE,
		     "an empty buffer needs more");
	guard_free(&g);
}

/* ---- malformed replies ---- */

Test(bench_reply, mixed_codes_in_one_reply_are_an_error)
{
	static const char *const bad[] = {
	    "250-mx.test\r\n251 ok\r\n",
	    "250-mx.test\r\n250-SIZE\r\n550 no\r\n",
	    "220-hello\r\n250 ok\r\n",
	    "250-a\n251-b\n250 c\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bench_reply r;

		cr_assert_eq(parse_str(bad[i], &r), BENCH_REPLY_ERROR, "'%s'", bad[i]);
	}
}

Test(bench_reply, garbage_is_an_error_once_its_line_ends)
{
	static const char *const bad[] = {
	    "HTTP/1.1 400 Bad Request\r\n",
	    "hello\r\n",
	    "\r\n",
	    "\n",
	    "25\r\n",
	    "2\n",
	    "600 too high\r\n",
	    "099 too low\r\n",
	    "000 zero\r\n",
	    "2a0 letter\r\n",
	    "25x letter\r\n",
	    "250x no separator\r\n",
	    "2500 four digits\r\n",
	    "250\tTAB is not a separator\r\n",
	    " 250 leading space\r\n",
	    "250-ok\r\nnot a reply line\r\n",
	    "250-ok\r\n\r\n",
	    "250-ok\r\n25\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bench_reply r = {.code = -7};

		cr_assert_eq(parse_str(bad[i], &r), BENCH_REPLY_ERROR, "'%s'", bad[i]);
		cr_assert_eq(r.code, -7, "out is not written on error");
	}
}

/* A line of `len` bytes, LF included, starting "250 "; no NUL is added. */
static void
fill_line(char *buf, size_t len, const char *end)
{
	size_t elen = strlen(end);

	memcpy(buf, "250 ", 4);
	memset(buf + 4, 'x', len - 4 - elen);
	memcpy(buf + len - elen, end, elen);
}

Test(bench_reply, a_line_of_exactly_the_limit_is_accepted)
{
	static char buf[BENCH_REPLY_LINE_MAX];
	struct bench_reply r;

	fill_line(buf, sizeof(buf), "\r\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_LINE_MAX);
	cr_assert_eq(r.code, 250);
	fill_line(buf, sizeof(buf), "\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_LINE_MAX);
}

Test(bench_reply, an_over_long_line_is_an_error)
{
	static char buf[BENCH_REPLY_LINE_MAX + 1];
	struct bench_reply r;

	fill_line(buf, sizeof(buf), "\r\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_ERROR);
	fill_line(buf, sizeof(buf), "\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_ERROR);
}

Test(bench_reply, an_over_long_continuation_line_is_an_error)
{
	static char buf[8 + BENCH_REPLY_LINE_MAX + 1];
	struct bench_reply r;

	memcpy(buf, "250-ok\r\n", 8);
	fill_line(buf + 8, BENCH_REPLY_LINE_MAX + 1, "\r\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_ERROR);
	fill_line(buf + 8, BENCH_REPLY_LINE_MAX, "\r\n");
	cr_assert_eq(parse_guarded(buf, sizeof(buf) - 1, &r), (long)sizeof(buf) - 1);
}

Test(bench_reply, unended_bytes_beyond_the_line_limit_are_an_error_without_waiting)
{
	static char buf[BENCH_REPLY_LINE_MAX + 1];
	struct bench_reply r;

	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "250 ", 4);
	cr_assert_eq(parse_guarded(buf, BENCH_REPLY_LINE_MAX, &r), BENCH_REPLY_NEED_MORE,
		     "the limit itself may still end in a line end");
	cr_assert_eq(parse_guarded(buf, sizeof(buf), &r), BENCH_REPLY_ERROR);
}

/* ---- line ends ---- */

Test(bench_reply, crlf_ends_a_line_and_is_part_of_the_reply)
{
	struct bench_reply r;

	cr_assert_eq(parse_str("250 ok\r\n", &r), 8);
	cr_assert_eq(parse_str("250-a\r\n250 b\r\n", &r), 14);
}

Test(bench_reply, a_bare_lf_ends_a_line_too)
{
	struct bench_reply r;

	cr_assert_eq(parse_str("250 ok\n", &r), 7);
	cr_assert_eq(parse_str("250-a\n250 b\r\n", &r), 13);
	cr_assert_eq(r.code, 250);
}

Test(bench_reply, a_cr_alone_does_not_end_a_line)
{
	struct bench_reply r;

	cr_assert_eq(parse_str("250 ok\r", &r), BENCH_REPLY_NEED_MORE);
	cr_assert_eq(parse_str("250-a\r250 b\r", &r), BENCH_REPLY_NEED_MORE);
	cr_assert_eq(parse_str("250 a\rb\r\n", &r), 9, "a CR inside the text is text");
}

/* ---- EHLO keywords ---- */

static unsigned
caps_of(const char *s)
{
	struct bench_reply r;

	cr_assert_eq(parse_str(s, &r), (long)strlen(s), "'%s'", s);
	return bench_reply_ehlo_caps(&r);
}

Test(bench_reply, ehlo_keywords_are_found_on_the_lines_after_the_greeting)
{
	cr_assert_eq(caps_of("250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
			     "250 CHUNKING\r\n"),
		     BENCH_REPLY_CAP_PIPELINING | BENCH_REPLY_CAP_SIZE | BENCH_REPLY_CAP_CHUNKING);
	cr_assert_eq(caps_of("250-mx.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n"),
		     BENCH_REPLY_CAP_PIPELINING);
	cr_assert_eq(caps_of("250-mx.test\n250-chunking\n250 Size\n"),
		     BENCH_REPLY_CAP_CHUNKING | BENCH_REPLY_CAP_SIZE, "any case, bare LF");
}

Test(bench_reply, ehlo_greeting_line_and_lookalike_keywords_name_nothing)
{
	cr_assert_eq(caps_of("250 PIPELINING\r\n"), 0, "the first line is the greeting");
	cr_assert_eq(caps_of("250 mx.test\r\n"), 0);
	cr_assert_eq(caps_of("250-mx.test\r\n250-PIPELININGX\r\n250-XCHUNKING\r\n250 SIZ\r\n"), 0);
	cr_assert_eq(caps_of("250-mx.test\r\n250-\r\n250 \r\n"), 0);
}

Test(bench_reply, ehlo_keyword_scan_ends_at_a_bare_code_line)
{
	cr_assert_eq(caps_of("250-mx.test\r\n250-SIZE\r\n250\n"), BENCH_REPLY_CAP_SIZE);
	cr_assert_eq(caps_of("250-mx.test\r\n250\r\n"), 0);
}

Test(bench_reply, starttls_is_found_only_as_a_whole_keyword_after_the_greeting)
{
	cr_assert_eq(caps_of("250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 CHUNKING\r\n"),
		     BENCH_REPLY_CAP_PIPELINING | BENCH_REPLY_CAP_STARTTLS |
			 BENCH_REPLY_CAP_CHUNKING);
	cr_assert_eq(caps_of("250-mx.test\n250 starttls\n"), BENCH_REPLY_CAP_STARTTLS);
	cr_assert_eq(caps_of("250 STARTTLS\r\n"), 0, "the first line is the greeting");
	cr_assert_eq(caps_of("250-mx.test\r\n250-STARTTLSX\r\n250 XSTARTTLS\r\n"), 0);
}
