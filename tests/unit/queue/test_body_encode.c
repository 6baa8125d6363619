/*
 * Unit tests for queue/body_encode: a table of inputs and their exact DATA encoding (dot
 * stuffing, bare CR and LF, the final CRLF, the terminator), the "\r\n.\r\n" sequence only
 * at the end, body_has_bare_newline, and a randomized check against a byte-at-a-time reference
 * and a reference un-stuffer. Input and output each end where a PROT_NONE page starts, so
 * reading past the message or writing past body_encode_data_size() bytes crashes the test.
 */
#include "queue/body_encode.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/guard.h"

/*
 * Encodes msg[0..len) from a guard buffer into a guard buffer of exactly the announced size;
 * returns a malloc'd copy of the output (NUL added) and its length in *olen.
 */
static char *
encode_guarded(const char *msg, size_t len, size_t *olen)
{
	struct guard in = guard_place(msg, len);
	size_t need = body_encode_data_size(len ? in.p : NULL, len);
	char *fill = malloc(need + 1);

	cr_assert(fill != NULL);
	memset(fill, 0x5a, need);
	struct guard out = guard_place(fill, need);
	size_t n = body_encode_data(len ? in.p : NULL, len, out.p);

	cr_assert_eq(n, need, "size %zu, wrote %zu", need, n);
	cr_assert_leq(n, 2 * len + 5);
	memcpy(fill, out.p, n);
	fill[n] = '\0';
	guard_free(&out);
	guard_free(&in);
	*olen = n;
	return fill;
}

static bool
bare_guarded(const char *msg, size_t len)
{
	struct guard g = guard_place(msg, len);
	bool b = body_has_bare_newline(len ? g.p : NULL, len);

	guard_free(&g);
	return b;
}

/* The obvious byte-at-a-time encoder the fast one must agree with. col counts the octets of
 * the output line so far, a stuffed '.' included: the 999th breaks the line with CRLF SP. */
static size_t
ref_encode(const char *m, size_t len, char *out)
{
	size_t o = 0, col = 0;
	bool bol = true;

	for (size_t i = 0; i < len; i++) {
		if (bol && m[i] == '.') {
			out[o++] = '.';
			col = 1;
		}
		bol = false;
		if (m[i] == '\r' || m[i] == '\n') {
			if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			bol = true;
			col = 0;
		} else {
			if (col == BODY_LINE_MAX) {
				memcpy(out + o, "\r\n ", 3);
				o += 3;
				col = 1;
			}
			out[o++] = m[i];
			col++;
		}
	}
	if (len > 0 && !bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* Every line end of m as CRLF, plus a CRLF when m is not empty and lacks a final one; a line
 * over BODY_LINE_MAX octets (BODY_LINE_MAX - 1 when it starts with '.', which is stuffed)
 * broken by CRLF SP (the space counted in the next piece). */
static size_t
ref_normalize(const char *m, size_t len, char *out)
{
	size_t o = 0, col = 0;

	for (size_t i = 0; i < len; i++) {
		if (col == 0 && m[i] == '.' && (o == 0 || out[o - 1] == '\n'))
			col = 1; /* the stuffed dot, on the wire */
		if (m[i] == '\r' || m[i] == '\n') {
			if (m[i] == '\r' && i + 1 < len && m[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			col = 0;
		} else {
			if (col == BODY_LINE_MAX) {
				memcpy(out + o, "\r\n ", 3);
				o += 3;
				col = 1;
			}
			out[o++] = m[i];
			col++;
		}
	}
	if (len > 0 && m[len - 1] != '\r' && m[len - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

/*
 * The receiving side (RFC 5321 4.5.2): splits enc into CRLF lines, which must hold no other
 * CR or LF and at most 998 octets (4.5.3.1.6, a stuffed '.' counted); ends at the first
 * line "."; removes one leading '.' from the others. The "." line must be the last bytes of
 * enc. Returns the length of the decoded message in out.
 */
static size_t
ref_unstuff(const char *enc, size_t len, char *out)
{
	size_t i = 0, o = 0;

	for (;;) {
		size_t e = i;

		while (e < len && enc[e] != '\r' && enc[e] != '\n')
			e++;
		cr_assert(e + 1 < len && enc[e] == '\r' && enc[e + 1] == '\n',
			  "bare CR or LF, or no line end, at %zu", e);
		if (e - i == 1 && enc[i] == '.') {
			cr_assert_eq(e + 2, len, "terminator before the end");
			return o;
		}
		cr_assert_leq(e - i, 998, "a line of %zu octets at %zu", e - i, i);
		if (enc[i] == '.')
			i++;
		memcpy(out + o, enc + i, e - i);
		o += e - i;
		memcpy(out + o, "\r\n", 2);
		o += 2;
		i = e + 2;
	}
}

/* "\r\n.\r\n" (or a leading ".\r\n") appears only as the terminator. */
static void
assert_single_terminator(const char *enc, size_t len)
{
	const char *t = memmem(enc, len, "\r\n.\r\n", 5);

	if (len >= 5 && memcmp(enc, ".\r\n", 3) == 0 && len != 3)
		cr_assert_fail("message starts with an unstuffed \".\" line");
	if (len == 3) {
		cr_assert_eq(memcmp(enc, ".\r\n", 3), 0);
		return;
	}
	cr_assert_not_null(t);
	cr_assert_eq((size_t)(t - enc), len - 5, "terminator at %zu of %zu", (size_t)(t - enc),
		     len);
}

/* Full check of one input: exact output (if given), reference, un-stuffing, terminator. */
static void
check_one(const char *msg, size_t len, const char *want, size_t want_len)
{
	size_t olen;
	char *enc = encode_guarded(msg, len, &olen);
	char *ref = malloc(2 * len + 6), *dec = malloc(2 * len + 6), *norm = malloc(2 * len + 6);

	cr_assert(ref && dec && norm);
	if (want != NULL) {
		cr_assert_eq(olen, want_len, "\"%s\": %zu bytes, want %zu", msg, olen, want_len);
		cr_assert_eq(memcmp(enc, want, olen), 0, "\"%s\" gave \"%s\"", msg, enc);
	}
	size_t rlen = ref_encode(msg, len, ref);
	cr_assert_eq(olen, rlen);
	cr_assert_eq(memcmp(enc, ref, olen), 0);
	size_t dlen = ref_unstuff(enc, olen, dec);
	size_t nlen = ref_normalize(msg, len, norm);
	cr_assert_eq(dlen, nlen);
	cr_assert_eq(memcmp(dec, norm, dlen), 0);
	assert_single_terminator(enc, olen);
	free(enc);
	free(ref);
	free(dec);
	free(norm);
}

struct row {
	const char *in;
	size_t len;
	const char *out;
	size_t out_len;
};

#define ROW(i, o) {i, sizeof(i) - 1, o, sizeof(o) - 1}

static void
check_rows(const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_one(rows[i].in, rows[i].len, rows[i].out, rows[i].out_len);
}

#define CHECK_ROWS(rows) check_rows((rows), sizeof(rows) / sizeof((rows)[0]))

Test(body_encode, an_empty_message_is_just_the_terminator)
{
	static const struct row rows[] = {
		ROW("", ".\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, crlf_messages_pass_unchanged_with_the_terminator_added)
{
	static const struct row rows[] = {
		ROW("a\r\n", "a\r\n.\r\n"),
		ROW("\r\n", "\r\n.\r\n"),
		ROW("Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n.\r\n"),
		ROW("a.b\r\nc.\r\n", "a.b\r\nc.\r\n.\r\n"),
		ROW("\r\n\r\n\r\n", "\r\n\r\n\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, a_final_crlf_is_added_when_missing)
{
	static const struct row rows[] = {
		ROW("a", "a\r\n.\r\n"),
		ROW("a\r\nb", "a\r\nb\r\n.\r\n"),
		ROW("x y z", "x y z\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, lines_starting_with_a_dot_get_one_more)
{
	static const struct row rows[] = {
		ROW(".", "..\r\n.\r\n"),
		ROW(".a\r\n", "..a\r\n.\r\n"),
		ROW("..\r\n", "...\r\n.\r\n"),
		ROW("a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\r\n.b\r\n.\r\n", "a\r\n..b\r\n..\r\n.\r\n"),
		ROW("a\r\n.", "a\r\n..\r\n.\r\n"),
		ROW(".\r\n.\r\n", "..\r\n..\r\n.\r\n"),
		ROW("a.\r\n", "a.\r\n.\r\n"),
		ROW(" .\r\n", " .\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, bare_lf_and_bare_cr_become_crlf)
{
	static const struct row rows[] = {
		ROW("\n", "\r\n.\r\n"),
		ROW("\r", "\r\n.\r\n"),
		ROW("a\nb", "a\r\nb\r\n.\r\n"),
		ROW("a\rb", "a\r\nb\r\n.\r\n"),
		ROW("a\n", "a\r\n.\r\n"),
		ROW("a\r", "a\r\n.\r\n"),
		ROW("\r\r\n", "\r\n\r\n.\r\n"),
		ROW("\n\r", "\r\n\r\n.\r\n"),
		ROW("\n\r\n", "\r\n\r\n.\r\n"),
		ROW("\r\r", "\r\n\r\n.\r\n"),
		ROW("\n\n", "\r\n\r\n.\r\n"),
		ROW("a\r\r\nb", "a\r\n\r\nb\r\n.\r\n"),
		/* A dot after a bare line end starts a line too. */
		ROW("a\n.b", "a\r\n..b\r\n.\r\n"),
		ROW("a\r.b", "a\r\n..b\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, a_message_end_inside_the_body_never_leaves_unstuffed)
{
	/* The SMTP smuggling forms: what some server might take for "<CRLF>.<CRLF>". */
	static const struct row rows[] = {
		ROW("a\r\n.\r\nMAIL FROM:<x>\r\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"),
		ROW("a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\r.\rb", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\r\n.\nb", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\r\n.\rb", "a\r\n..\r\nb\r\n.\r\n"),
		ROW("a\r\n.\r", "a\r\n..\r\n.\r\n"),
		ROW("a\r\n.\r\n", "a\r\n..\r\n.\r\n"),
		ROW(".\r\n", "..\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_encode, nul_and_high_bytes_pass_through)
{
	static const struct row rows[] = {
		ROW("\0\r\n", "\0\r\n.\r\n"),
		ROW("\xff.\xfe\r\n.\x80", "\xff.\xfe\r\n..\x80\r\n.\r\n"),
	};
	CHECK_ROWS(rows);
}

Test(body_has_bare_newline, finds_cr_or_lf_outside_a_crlf_pair)
{
	static const struct {
		const char *in;
		size_t len;
		bool bare;
	} rows[] = {
		{"", 0, false},
		{"a", 1, false},
		{"a\r\n", 3, false},
		{"\r\n\r\n", 4, false},
		{"a\r\nb\r\nc", 7, false},
		{"\n", 1, true},
		{"\r", 1, true},
		{"a\r", 2, true},
		{"a\nb", 3, true},
		{"\r\r\n", 3, true},
		{"\n\r\n", 3, true},
		{"a\n\r", 3, true},
		{"a\r\nb\n", 6, true},
		{"a\r\nb\rc\r\n", 8, true},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_assert_eq(bare_guarded(rows[i].in, rows[i].len), rows[i].bare, "row %zu", i);
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

/* A byte drawn mostly from the ones that matter: CR, LF, '.', plus a letter or any byte. */
static char
rng_byte(uint64_t *s)
{
	uint64_t r = rng_next(s) >> 32;

	switch (r % 10) {
	case 0:
	case 1:
		return '\r';
	case 2:
	case 3:
		return '\n';
	case 4:
	case 5:
		return '.';
	case 6:
		return (char)(r >> 8);
	default:
		return 'a';
	}
}

static bool
ref_bare(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
			return true;
		if (m[i] == '\r' && (i + 1 == len || m[i + 1] != '\n'))
			return true;
	}
	return false;
}

Test(body_encode, random_messages_match_the_reference_and_unstuff_to_the_input)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char msg[96];

	for (int iter = 0; iter < 4000; iter++) {
		size_t len = (size_t)(rng_next(&seed) >> 32) % sizeof(msg);

		for (size_t i = 0; i < len; i++)
			msg[i] = rng_byte(&seed);
		check_one(msg, len, NULL, 0);
		cr_assert_eq(bare_guarded(msg, len), ref_bare(msg, len), "iteration %d", iter);
	}
}

/* prefix, n copies of c, then rest (NUL-terminated); returns the length. */
static size_t
long_line(char *buf, const char *prefix, size_t n, char c, const char *rest)
{
	size_t p = strlen(prefix);

	memcpy(buf, prefix, p);
	memset(buf + p, c, n);
	strcpy(buf + p + n, rest);
	return p + n + strlen(rest);
}

Test(body_encode, lines_over_998_octets_are_broken_by_crlf_space)
{
	/* A line of prefix + n x c + rest, and its encoding, built the same way. */
	static const struct {
		const char *why, *in_pre;
		size_t in_n;
		const char *in_rest, *out_pre;
		size_t out_n;
		const char *out_rest;
	} rows[] = {
	    {"998 octets: the limit itself, unchanged", "", 998, "\r\n", "", 998, "\r\n.\r\n"},
	    {"999: 998, CRLF SP, the last one", "", 999, "\r\n", "", 998, "\r\n x\r\n.\r\n"},
	    /* The stuffed dot counts (RFC 5321 4.5.3.1.6 does not, some receivers do). */
	    {"a dotted 997 is 998 on the wire", ".", 996, "\r\n", "..", 996, "\r\n.\r\n"},
	    {"a dotted 998 breaks", ".", 997, "\r\n", "..", 996, "\r\n x\r\n.\r\n"},
	    {"a bare LF ends a long line", "", 1000, "\n", "", 998, "\r\n xx\r\n.\r\n"},
	    {"a bare CR ends a long line", "", 999, "\rf", "", 998, "\r\n x\r\nf\r\n.\r\n"},
	};
	static char in[4096], want[4096];

	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		size_t n = long_line(in, rows[r].in_pre, rows[r].in_n, 'x', rows[r].in_rest);
		size_t w = long_line(want, rows[r].out_pre, rows[r].out_n, 'x', rows[r].out_rest);
		cr_log_info("%s", rows[r].why);
		check_one(in, n, want, w);
	}
	/* 2,500 octets with no line end: 998 + SP 997 + SP 505 (the space counts). */
	size_t n = long_line(in, "", 2500, 'c', "");
	size_t w = long_line(want, "", 998, 'c', "\r\n ");
	w += long_line(want + w, "", 997, 'c', "\r\n ");
	w += long_line(want + w, "", 505, 'c', "\r\n.\r\n");
	check_one(in, n, want, w);
}

/* Sparse line ends (of the three kinds), so lines of every length around BODY_LINE_MAX and
 * its multiples meet the reference, a dot often opening them. */
Test(body_encode, random_long_lines_match_the_reference_and_unstuff_to_the_input)
{
	uint64_t seed = 0x10ce5eedull;
	static char msg[6000];

	for (int iter = 0; iter < 400; iter++) {
		size_t len = (size_t)(rng_next(&seed) >> 32) % sizeof(msg);
		unsigned gap = 200 + (unsigned)(rng_next(&seed) % 2400);

		for (size_t i = 0; i < len; i++) {
			uint64_t r = rng_next(&seed) >> 32;
			msg[i] = r % gap == 0 ? "\r\n"[r / gap % 2] : r % 97 == 0 ? '.' : 'x';
		}
		check_one(msg, len, NULL, 0);
	}
}

Test(body_encode, long_runs_of_bare_line_ends_and_long_lines_are_handled)
{
	size_t len = 1 << 18;
	char *msg = malloc(len);

	cr_assert(msg != NULL);
	/* All bare CR: each one a line end, found once each (linear, not quadratic). */
	memset(msg, '\r', len);
	check_one(msg, len, NULL, 0);
	/* Alternating ".\r": every line is a lone dot, stuffed. */
	for (size_t i = 0; i < len; i++)
		msg[i] = (i & 1) ? '\r' : '.';
	check_one(msg, len, NULL, 0);
	/* One long line without a line end, and one with CRLF lines of a base64 width. */
	memset(msg, 'x', len);
	check_one(msg, len, NULL, 0);
	for (size_t i = 0; i < len; i++)
		msg[i] = i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : 'Q';
	cr_assert_not(body_has_bare_newline(msg, len - len % 78));
	check_one(msg, len, NULL, 0);
	free(msg);
}
