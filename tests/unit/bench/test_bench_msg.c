/*
 * Unit tests for bench/bench_msg: generated messages (exact size, CRLF lines of bounded
 * length, no line starting with '.', the terminating ".\r\n", headers) for every size over a
 * range and a few large ones; the weighted choice of a message; and the command lines with
 * {n} and {r} expanded, including the worst case against bench_msg_cmd_size_max(). Output
 * buffers end where an inaccessible page starts, so writing one byte too many crashes.
 */
#include "bench/bench_msg.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RFC5322_LINE_MAX 78 /* RFC 5322 2.1.1: SHOULD be at most 78 bytes, CRLF excluded */

static char err[256];

/* A writable buffer of len bytes that ends exactly where an inaccessible page starts. */
struct guard {
	char *base;
	size_t map_len;
	char *p;
};

static struct guard
guard_alloc(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (len + page - 1) / page + 1;
	struct guard g;

	g.map_len = (data_pages + 1) * page;
	g.base = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(g.base != MAP_FAILED);
	cr_assert_eq(mprotect(g.base + data_pages * page, page, PROT_NONE), 0);
	g.p = g.base + data_pages * page - len;
	return g;
}

static void
guard_free(struct guard *g)
{
	munmap(g->base, g->map_len);
}

/* ---- messages ---- */

/*
 * Checks m[0..size) is a message as bench_msg.h promises, followed by ".\r\n": every line
 * ends in CRLF (no bare CR or LF), none starts with '.', headers and body lines are at most
 * RFC5322_LINE_MAX bytes and body lines at most BENCH_MSG_LINE_BYTES with their CRLF, and
 * exactly one empty line separates the headers from a body of at least one line.
 */
static void
check_message(const char *m, size_t size)
{
	size_t off = 0, empty = 0, body_lines = 0;

	cr_assert_eq(memcmp(m + size, ".\r\n", 3), 0, "size %zu: no .CRLF after the message", size);
	while (off < size) {
		const char *eol = memchr(m + off, '\n', size - off);

		cr_assert(eol, "size %zu: bytes after the last line end", size);
		size_t len = (size_t)(eol - (m + off)) + 1;

		cr_assert_geq(len, 2, "size %zu: bare LF at %zu", size, off);
		cr_assert_eq(m[off + len - 2], '\r', "size %zu: bare LF at %zu", size, off);
		cr_assert_null(memchr(m + off, '\r', len - 2), "size %zu: bare CR", size);
		cr_assert_neq(m[off], '.', "size %zu: a line starts with '.' at %zu", size, off);
		cr_assert_leq(len - 2, RFC5322_LINE_MAX, "size %zu: line at %zu too long", size,
			      off);
		if (len == 2)
			empty++;
		else if (empty)
			cr_assert_leq(len, BENCH_MSG_LINE_BYTES, "size %zu: body line", size);
		body_lines += empty > 0 && len > 2;
		off += len;
	}
	cr_assert_eq(off, size);
	cr_assert_eq(empty, 1, "size %zu: %zu empty lines", size, empty);
	cr_assert_gt(body_lines, 0, "size %zu: no body", size);
}

static void
check_build(size_t size)
{
	struct guard g = guard_alloc(size + 3);

	bench_msg_build(g.p, size, 1700000000);
	check_message(g.p, size);
	guard_free(&g);
}

Test(bench_msg, message_is_exactly_the_requested_size_for_every_size_up_to_8k)
{
	for (size_t size = BENCH_SIZE_MIN_BYTES; size <= 8192; size++)
		check_build(size);
}

Test(bench_msg, large_messages_are_exactly_the_requested_size)
{
	static const size_t sizes[] = {65535,	       65536,	       65537,
				       1 << 20,	       (1 << 20) + 1,  (1 << 20) + 2,
				       (1 << 20) + 75, (1 << 20) + 76, (1 << 20) + 77};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		check_build(sizes[i]);
}

Test(bench_msg, message_has_the_documented_headers_and_a_fixed_date)
{
	static char buf[4096 + 3];

	bench_msg_build(buf, 4096, 1700000000);
	buf[4096] = '\0';
	cr_assert_eq(strncmp(buf, "From: ringmx-bench <bench@ringmx.test>\r\n", 40), 0);
	cr_assert(strstr(buf, "\r\nTo: <user@localhost>\r\n"));
	cr_assert(strstr(buf, "\r\nSubject: ringmx-bench 4096 bytes\r\n"));
	cr_assert(strstr(buf, "\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "%s", buf);
	cr_assert(strstr(buf, "\r\nMessage-ID: <ringmx-bench.4096@ringmx.test>\r\n\r\n"));
}

Test(bench_msg, the_same_size_and_date_give_the_same_bytes)
{
	static char a[1000 + 3], b[1000 + 3];

	bench_msg_build(a, 1000, 0);
	bench_msg_build(b, 1000, 0);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
	cr_assert(strstr(a, "\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
}

/* ---- the set of messages ---- */

Test(bench_msg, set_builds_one_valid_message_per_size)
{
	static const struct bench_size sizes[] = {{256, 1}, {1024, 2}, {10000, 3}};
	struct bench_msg_set *s = bench_msg_set_new(sizes, 3, 1700000000, err, sizeof(err));
	size_t seen[3] = {0};

	cr_assert_not_null(s, "%s", err);
	for (uint64_t r = 0; r < 6; r++) {
		const struct bench_msg *m = bench_msg_set_pick(s, r);

		check_message(m->data, m->len);
		for (unsigned i = 0; i < 3; i++)
			seen[i] += m->len == sizes[i].bytes;
	}
	cr_assert(seen[0] == 1 && seen[1] == 2 && seen[2] == 3);
	bench_msg_set_free(s);
}

Test(bench_msg, set_picks_each_size_in_proportion_to_its_weight)
{
	static const struct bench_size sizes[] = {{1024, 1}, {2048, 3}};
	struct bench_msg_set *s = bench_msg_set_new(sizes, 2, 0, err, sizeof(err));

	cr_assert_not_null(s, "%s", err);
	cr_assert_eq(bench_msg_set_pick(s, 0)->len, 1024);
	cr_assert_eq(bench_msg_set_pick(s, 1)->len, 2048);
	cr_assert_eq(bench_msg_set_pick(s, 3)->len, 2048);
	cr_assert_eq(bench_msg_set_pick(s, 4)->len, 1024, "r is taken modulo the total weight");
	cr_assert_eq(bench_msg_set_pick(s, UINT64_MAX)->len, 2048, "UINT64_MAX %% 4 == 3");
	cr_assert_eq(bench_msg_set_pick(s, 5), bench_msg_set_pick(s, 1), "one copy per size");
	bench_msg_set_free(s);
}

Test(bench_msg, set_with_one_size_always_picks_it)
{
	static const struct bench_size sizes[] = {{4096, 7}};
	struct bench_msg_set *s = bench_msg_set_new(sizes, 1, 0, err, sizeof(err));
	const struct bench_msg *m;

	cr_assert_not_null(s, "%s", err);
	m = bench_msg_set_pick(s, 0);
	cr_assert_eq(m->len, 4096);
	cr_assert_eq(bench_msg_set_pick(s, 12345), m);
	cr_assert_eq(bench_msg_set_pick(s, UINT64_MAX), m);
	bench_msg_set_free(s);
	bench_msg_set_free(NULL);
}

/* ---- command lines ---- */

static struct bench_pattern
pattern(const char *s, bool allow_rcpt)
{
	struct bench_pattern p;

	cr_assert_eq(bench_opts_pattern_compile(s, allow_rcpt, &p, err, sizeof(err)), 0, "%s", err);
	return p;
}

/* The NUL-terminated result of a bench_msg_put_* call that wrote n bytes into buf. */
static const char *
cmd_str(char *buf, size_t n)
{
	buf[n] = '\0';
	return buf;
}

Test(bench_msg, mail_expands_n_and_adds_size_only_when_asked)
{
	struct bench_pattern from = pattern("s{n}@a.test", false);
	char buf[512];

	cr_assert_str_eq(cmd_str(buf, bench_msg_put_mail(buf, &from, 42, 0)),
			 "MAIL FROM:<s42@a.test>\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_mail(buf, &from, 0, 4096)),
			 "MAIL FROM:<s0@a.test> SIZE=4096\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_mail(buf, &from, UINT64_MAX, UINT64_MAX)),
			 "MAIL FROM:<s18446744073709551615@a.test> SIZE=18446744073709551615\r\n");
}

Test(bench_msg, mail_with_an_empty_pattern_sends_the_null_path)
{
	struct bench_pattern from = pattern("", false);
	char buf[64];

	cr_assert_str_eq(cmd_str(buf, bench_msg_put_mail(buf, &from, 9, 0)), "MAIL FROM:<>\r\n");
}

Test(bench_msg, rcpt_expands_n_as_the_sequence_and_r_as_the_recipient)
{
	struct bench_pattern to = pattern("r{r}.{n}@b.test", true);
	struct bench_pattern def = pattern("user{n}@localhost", true);
	char buf[512];

	cr_assert_str_eq(cmd_str(buf, bench_msg_put_rcpt(buf, &to, 7, 3)),
			 "RCPT TO:<r3.7@b.test>\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_rcpt(buf, &to, 123456, 1000)),
			 "RCPT TO:<r1000.123456@b.test>\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_rcpt(buf, &def, 0, 1)),
			 "RCPT TO:<user0@localhost>\r\n");
}

Test(bench_msg, bdat_ehlo_and_helo_are_single_crlf_lines)
{
	char buf[512];

	cr_assert_str_eq(cmd_str(buf, bench_msg_put_bdat(buf, 4096)), "BDAT 4096 LAST\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_bdat(buf, 0)), "BDAT 0 LAST\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_bdat(buf, BENCH_SIZE_MAX_BYTES)),
			 "BDAT 268435456 LAST\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_ehlo(buf, "client.test")),
			 "EHLO client.test\r\n");
	cr_assert_str_eq(cmd_str(buf, bench_msg_put_helo(buf, "client.test")),
			 "HELO client.test\r\n");
}

/* The longest pattern allowed: 15 placeholders (one of them {r} if allowed), then letters. */
static void
longest_pattern(char *out, bool with_rcpt)
{
	size_t n = 0;

	for (int i = 0; i < BENCH_PATTERN_SEGS_MAX - 1; i++, n += 3)
		memcpy(out + n, with_rcpt && i == 0 ? "{r}" : "{n}", 3);
	memset(out + n, 'a', BENCH_PATTERN_MAX - n);
	out[BENCH_PATTERN_MAX] = '\0';
}

Test(bench_msg, the_largest_group_of_commands_fits_cmd_size_max)
{
	static char from_s[BENCH_PATTERN_MAX + 1], to_s[BENCH_PATTERN_MAX + 1];
	static char helo[BENCH_HELO_MAX + 1];
	struct bench_opts o;

	memset(&o, 0, sizeof(o));
	longest_pattern(from_s, false);
	longest_pattern(to_s, true);
	o.from_pat = pattern(from_s, false);
	o.to_pat = pattern(to_s, true);
	o.rcpts = BENCH_RCPTS_MAX;

	size_t max = bench_msg_cmd_size_max(&o), n;
	struct guard g = guard_alloc(max);

	n = bench_msg_put_mail(g.p, &o.from_pat, UINT64_MAX, UINT64_MAX);
	for (unsigned r = 1; r <= o.rcpts; r++)
		n += bench_msg_put_rcpt(g.p + n, &o.to_pat, UINT64_MAX, r);
	n += bench_msg_put_bdat(g.p + n, UINT64_MAX);
	cr_assert_leq(n, max);

	memset(helo, 'h', BENCH_HELO_MAX);
	cr_assert_leq(bench_msg_put_ehlo(g.p, helo), max);
	guard_free(&g);
}
