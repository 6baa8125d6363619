/*
 * Unit tests of the spool record codec and of CRC-32C. Decoding runs on buffers that end at a
 * PROT_NONE page, so an over-read crashes the test even without AddressSanitizer.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "queue/crc32c.h"
#include "queue/spool_record.h"
#include "tests/unit/queue/spool_fixture.h"

/* Field offsets from the layout in spool_record.h. */
#define OFF_CRC 4
#define OFF_TOTAL_LEN 8
#define OFF_VERSION 12
#define OFF_TYPE 14
#define OFF_FLAGS 32
#define OFF_MSG_OFF 36
#define OFF_MSG_LEN 40
#define OFF_NRCPT 44

/* CRC-32C of bytes [8, 60) of the golden record below, from a bitwise Python CRC. */
#define GOLDEN_CRC 0x6be2b6a7u

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic, so a failing iteration can be replayed. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void
put32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

static void
put16(char *p, uint16_t v)
{
	p[0] = (char)v;
	p[1] = (char)(v >> 8);
}

static uint32_t
get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* Recomputes the CRC after a test edits a field, so that the edit reaches the checks behind it. */
static void
refresh_crc(char *rec, size_t len)
{
	uint32_t total = get32(rec + OFF_TOTAL_LEN);

	if (total > len)
		total = (uint32_t)len;
	if (total >= OFF_TOTAL_LEN)
		put32(rec + OFF_CRC, crc32c(0, rec + OFF_TOTAL_LEN, total - OFF_TOTAL_LEN));
}

/*
 * Decodes a copy of rec that ends at a guard page, then unmaps it: only the scalar fields of
 * *v may be looked at afterwards (the slices point into the unmapped copy).
 */
static long
decode_guarded(const char *rec, size_t len, struct spool_record_view *v)
{
	struct guard_buf g = guard_buf_new(len > 0 ? len : 1);
	long r = spool_record_decode(guard_buf_put(&g, rec, len), len, v);

	guard_buf_free(&g);
	return r;
}

/* ---- CRC-32C ---- */

Test(crc32c, known_vectors_match_the_standard)
{
	/* "123456789" is the catalogue check value; the 32-byte ones are RFC 3720 B.4. */
	unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];

	for (int i = 0; i < 32; i++) {
		ones[i] = 0xff;
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(crc32c(0, "", 0), 0u);
	cr_assert_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
	cr_assert_eq(crc32c(0, ones, 32), 0x62A8AB43u);
	cr_assert_eq(crc32c(0, inc, 32), 0x46DD794Eu);
	cr_assert_eq(crc32c(0, dec, 32), 0x113FDB5Cu);
	cr_assert_eq(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(crc32c_sw(0, inc, 32), 0x46DD794Eu);
}

Test(crc32c, hardware_and_software_paths_agree)
{
	static unsigned char buf[4096 + 8];
	uint64_t seed = 0xC0FFEE;

	if (!crc32c_hw_available())
		cr_skip_test("this CPU has no SSE4.2 crc32 instruction");
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rng_next(&seed);
	/* Every misalignment, every tail length, and lengths across the 8-byte step. */
	for (size_t align = 0; align < 8; align++) {
		for (size_t len = 0; len <= 1100; len++) {
			uint32_t init = (uint32_t)rng_next(&seed);

			cr_assert_eq(crc32c_hw(0, buf + align, len), crc32c_sw(0, buf + align, len),
				     "align %zu len %zu", align, len);
			cr_assert_eq(crc32c_hw(init, buf + align, len),
				     crc32c_sw(init, buf + align, len));
		}
	}
	cr_assert_eq(crc32c_hw(0, buf, sizeof(buf)), crc32c_sw(0, buf, sizeof(buf)));
	cr_assert_eq(crc32c_hw(0, "123456789", 9), 0xE3069283u);
}

Test(crc32c, the_three_chain_blocks_join_to_the_same_checksum)
{
	/* crc32c_hw runs three chains over 3 x 256 and 3 x 4096-byte blocks and joins them:
	 * lengths at, around and well past those block boundaries, at odd alignments. */
	static unsigned char buf[3 * 3 * 4096 + 1008]; /* the longest edge + 7 of misalignment */
	static const size_t edges[] = {767,	 768,	  769,	   1535,    1536,	1537,
				       12287, 12288, 12289, 12288 + 768, 24576 + 767, 36864 + 999};
	uint64_t seed = 0xBADC0DE;

	if (!crc32c_hw_available())
		cr_skip_test("this CPU has no SSE4.2 crc32 instruction");
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rng_next(&seed);
	for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
		for (size_t align = 0; align < 3; align++) {
			uint32_t init = (uint32_t)rng_next(&seed);
			size_t len = edges[e];

			cr_assert_eq(crc32c_hw(init, buf + align, len),
				     crc32c_sw(init, buf + align, len), "align %zu len %zu", align,
				     len);
		}
	}
	for (int i = 0; i < 200; i++) {
		size_t len = (size_t)(rng_next(&seed) % (sizeof(buf) - 8));
		size_t align = (size_t)(rng_next(&seed) % 8);

		cr_assert_eq(crc32c_hw(0, buf + align, len), crc32c_sw(0, buf + align, len),
			     "align %zu len %zu", align, len);
	}
}

Test(crc32c, a_checksum_can_be_continued_piece_by_piece)
{
	static const char text[] = "The quick brown fox jumps over the lazy dog, twice over.";
	size_t n = sizeof(text) - 1;
	uint32_t whole = crc32c(0, text, n);

	for (size_t cut = 0; cut <= n; cut++) {
		cr_assert_eq(crc32c(crc32c(0, text, cut), text + cut, n - cut), whole);
		cr_assert_eq(crc32c_sw(crc32c_sw(0, text, cut), text + cut, n - cut), whole);
	}
}

/* ---- encoding ---- */

Test(spool_record, round_trip_keeps_every_field)
{
	static const struct spool_str rcpts[] = {S("a@example.org"), S("b@example.net"),
						 S("\"odd, quoted\"@example.com")};
	static const char msg[] = "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n";
	struct spool_envelope env = {
	    .qid = 0xfedcba9876543210ull,
	    .arrival_ms = 1717171717171ull,
	    .flags = SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8 | SPOOL_F_BINARY | SPOOL_F_AUTH,
	    .helo = S("client.example"),
	    .client = S("[2001:db8::1]"),
	    .from = S("sender@example.com"),
	    .rcpts = rcpts,
	    .nrcpt = 3,
	};
	char buf[512];
	size_t total = fixture_record(buf, sizeof(buf), &env, msg, sizeof(msg) - 1);
	struct guard_buf g = guard_buf_new(total);
	char *rec = guard_buf_put(&g, buf, total);
	struct spool_record_view v;
	struct spool_str s;
	size_t it = 0;

	cr_assert_eq(spool_record_decode(rec, total, &v), (long)total);
	cr_assert_eq(v.qid, env.qid);
	cr_assert_eq(v.arrival_ms, env.arrival_ms);
	cr_assert_eq(v.flags, env.flags);
	cr_assert_eq(v.total_len, total);
	cr_assert_eq(v.helo.len, env.helo.len);
	cr_assert_arr_eq(v.helo.p, env.helo.p, env.helo.len);
	cr_assert_arr_eq(v.client.p, env.client.p, env.client.len);
	cr_assert_eq(v.from.len, env.from.len);
	cr_assert_arr_eq(v.from.p, env.from.p, env.from.len);
	cr_assert_eq(v.nrcpt, 3);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert(spool_record_rcpt_next(&v, &it, &s));
		cr_assert_eq(s.len, rcpts[i].len);
		cr_assert_arr_eq(s.p, rcpts[i].p, s.len);
	}
	cr_assert_not(spool_record_rcpt_next(&v, &it, &s));
	cr_assert_eq(v.msg_len, sizeof(msg) - 1);
	cr_assert_arr_eq(v.msg, msg, v.msg_len);
	cr_assert_eq(v.msg + v.msg_len, rec + total);
	guard_buf_free(&g);
}

Test(spool_record, null_sender_with_no_recipients_and_no_message_round_trips)
{
	struct spool_envelope env = {.qid = 1};
	char buf[128];
	size_t total = fixture_record(buf, sizeof(buf), &env, "", 0);
	struct spool_record_view v;
	struct spool_str s;
	size_t it = 0;

	cr_assert_eq(total, SPOOL_RECORD_HEADER_SIZE + 6);
	cr_assert_eq(decode_guarded(buf, total, &v), (long)total);
	cr_assert_eq(spool_record_decode(buf, total, &v), (long)total);
	cr_assert_eq(v.from.len, 0);
	cr_assert_eq(v.helo.len, 0);
	cr_assert_eq(v.nrcpt, 0);
	cr_assert_eq(v.msg_len, 0);
	cr_assert_not(spool_record_rcpt_next(&v, &it, &s));
}

Test(spool_record, strings_at_the_limit_and_many_recipients_round_trip)
{
	enum { N = 1000 };
	static char big[SPOOL_STR_MAX];
	static struct spool_str rcpts[N];
	static char names[N][16];
	struct spool_envelope env = {.qid = 7, .helo = {big, SPOOL_STR_MAX}, .from = {big, 1}};
	size_t cap = 64 * 1024, total, it = 0;
	char *buf = malloc(cap);
	struct spool_record_view v;
	struct spool_str s;

	memset(big, 'h', sizeof(big));
	for (int i = 0; i < N; i++) {
		rcpts[i].len = (size_t)snprintf(names[i], sizeof(names[i]), "u%d@x", i);
		rcpts[i].p = names[i];
	}
	rcpts[N - 1] = (struct spool_str){big, SPOOL_STR_MAX};
	env.rcpts = rcpts;
	env.nrcpt = N;
	total = fixture_record(buf, cap, &env, "m", 1);
	cr_assert_eq(total, spool_record_envelope_size(&env) + 1);
	cr_assert_eq(decode_guarded(buf, total, &v), (long)total);
	cr_assert_eq(spool_record_decode(buf, total, &v), (long)total);
	for (int i = 0; i < N; i++) {
		cr_assert(spool_record_rcpt_next(&v, &it, &s));
		cr_assert_eq(s.len, rcpts[i].len, "recipient %d", i);
	}
	cr_assert_not(spool_record_rcpt_next(&v, &it, &s));
	cr_assert_eq(v.helo.len, SPOOL_STR_MAX);
	free(buf);
}

Test(spool_record, layout_is_little_endian_byte_for_byte)
{
	static const struct spool_str rcpts[] = {S("r")};
	struct spool_envelope env = {
	    .qid = 0x0102030405060708ull,
	    .arrival_ms = 0x1112131415161718ull,
	    .flags = SPOOL_F_SMTPUTF8 | SPOOL_F_BINARY,
	    .helo = S("h"),
	    .client = S("c"),
	    .from = S(""),
	    .rcpts = rcpts,
	    .nrcpt = 1,
	};
	/* Written out by hand from the header comment; the CRC from an independent bitwise CRC. */
	static const unsigned char want[60] = {
	    0x52, 0x4d, 0x58, 0x31, 0x00, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00,
	    0x01, 0x00, 0x01, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
	    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, 0x06, 0x00, 0x00, 0x00,
	    0x3b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	    0x01, 0x00, 'h',  0x01, 0x00, 'c',	0x00, 0x00, 0x01, 0x00, 'r',  'M',
	};
	unsigned char golden[60];
	char buf[64];

	memcpy(golden, want, sizeof(golden));
	put32((char *)golden + OFF_CRC, GOLDEN_CRC);
	cr_assert_eq(spool_record_envelope_size(&env), 59);
	cr_assert_eq(fixture_record(buf, sizeof(buf), &env, "M", 1), 60);
	cr_assert_arr_eq(buf, golden, sizeof(golden));
}

Test(spool_record, decode_takes_only_its_own_record_from_a_longer_buffer)
{
	char buf[1024];
	size_t a = fixture_simple_record(buf, sizeof(buf), 1, "first\r\n");
	size_t b = fixture_simple_record(buf + a, sizeof(buf) - a, 2, "second message\r\n");
	struct spool_record_view v;

	cr_assert_eq(decode_guarded(buf, a + b, &v), (long)a);
	cr_assert_eq(v.qid, 1);
	cr_assert_eq(decode_guarded(buf + a, b, &v), (long)b);
	cr_assert_eq(v.qid, 2);
}

Test(spool_record, records_decode_at_any_alignment)
{
	char rec[512], buf[520];
	size_t n = fixture_simple_record(rec, sizeof(rec), 42, "hello\r\n");
	struct spool_record_view v;

	for (size_t a = 0; a < 8; a++) {
		memcpy(buf + a, rec, n);
		cr_assert_eq(spool_record_decode(buf + a, n, &v), (long)n);
		cr_assert_eq(v.qid, 42);
	}
}

/* ---- corruption ---- */

Test(spool_record, bad_checksum_is_reported_as_corrupt)
{
	char rec[512];
	size_t n = fixture_simple_record(rec, sizeof(rec), 9, "payload\r\n");
	struct spool_record_view v;

	/* One flipped bit anywhere the CRC covers, or in the CRC itself, is caught. */
	for (size_t i = OFF_CRC; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			rec[i] ^= (char)(1 << bit);
			cr_assert_eq(decode_guarded(rec, n, &v), -EBADMSG, "byte %zu bit %d", i,
				     bit);
			rec[i] ^= (char)(1 << bit);
		}
	}
	cr_assert_eq(decode_guarded(rec, n, &v), (long)n);
}

Test(spool_record, bad_magic_version_or_type_is_corrupt)
{
	static const size_t offs[] = {0, 3, OFF_VERSION, OFF_VERSION + 1, OFF_TYPE, OFF_TYPE + 1};
	char rec[512];
	size_t n = fixture_simple_record(rec, sizeof(rec), 9, "x");
	struct spool_record_view v;

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		rec[offs[i]] ^= 0x40;
		refresh_crc(rec, n);
		cr_assert_eq(decode_guarded(rec, n, &v), -EBADMSG, "offset %zu", offs[i]);
		rec[offs[i]] ^= 0x40;
	}
}

/* Each edit makes the envelope or the lengths lie, with a CRC that matches the lie. */
static void
expect_corrupt_after(void (*edit)(char *rec, size_t n), const char *what)
{
	char rec[512];
	size_t n = fixture_simple_record(rec, sizeof(rec), 9, "message\r\n");
	struct spool_record_view v;

	edit(rec, n);
	refresh_crc(rec, n);
	cr_assert_eq(decode_guarded(rec, n, &v), -EBADMSG, "%s", what);
}

static void
edit_helo_len_huge(char *r, size_t n)
{
	(void)n;
	put16(r + 48, 0xffff);
}
static void
edit_helo_len_over_max(char *r, size_t n)
{
	(void)n;
	put16(r + 48, SPOOL_STR_MAX + 1);
}
static void
edit_nrcpt_plus_one(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_NRCPT, 3);
}
static void
edit_nrcpt_minus_one(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_NRCPT, 1);
}
static void
edit_nrcpt_over_max(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_NRCPT, SPOOL_RCPT_MAX + 1);
}
static void
edit_unknown_flag(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_FLAGS, 1u << 7);
}
static void
edit_total_small(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_TOTAL_LEN, 47);
}
static void
edit_total_huge(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_TOTAL_LEN, 0xffffffffu);
}

static void
edit_msg_off_past_end(char *r, size_t n)
{
	put32(r + OFF_MSG_OFF, (uint32_t)n + 1);
}

static void
edit_msg_len_disagrees(char *r, size_t n)
{
	(void)n;
	put32(r + OFF_MSG_LEN, get32(r + OFF_MSG_LEN) + 1);
}

/* A gap between envelope and message: lengths still add up, the envelope does not. */
static void
edit_gap_before_message(char *r, size_t n)
{
	put32(r + OFF_MSG_OFF, get32(r + OFF_MSG_OFF) + 1);
	put32(r + OFF_MSG_LEN, (uint32_t)n - get32(r + OFF_MSG_OFF));
}

static void
edit_last_rcpt_runs_into_message(char *r, size_t n)
{
	uint32_t msg_off = get32(r + OFF_MSG_OFF);

	(void)n;
	/* The last recipient is "bob@example.net" (15 bytes), its length just before it. */
	put16(r + msg_off - 17, 16);
}

Test(spool_record, lying_lengths_are_corrupt_even_with_a_matching_checksum)
{
	expect_corrupt_after(edit_helo_len_huge, "helo length 0xffff");
	expect_corrupt_after(edit_helo_len_over_max, "helo length over SPOOL_STR_MAX");
	expect_corrupt_after(edit_nrcpt_plus_one, "one recipient more than stored");
	expect_corrupt_after(edit_nrcpt_minus_one, "one recipient less than stored");
	expect_corrupt_after(edit_nrcpt_over_max, "nrcpt over SPOOL_RCPT_MAX");
	expect_corrupt_after(edit_unknown_flag, "unknown flag");
	expect_corrupt_after(edit_total_small, "total_len below the header size");
	expect_corrupt_after(edit_total_huge, "total_len over SPOOL_RECORD_MAX");
	expect_corrupt_after(edit_msg_off_past_end, "message offset past the end");
	expect_corrupt_after(edit_msg_len_disagrees, "message length disagrees with total_len");
	expect_corrupt_after(edit_gap_before_message, "gap between envelope and message");
	expect_corrupt_after(edit_last_rcpt_runs_into_message, "recipient runs into the message");
}

/* Built by hand, since the writer refuses it: SPOOL_RCPT_MAX + 1 empty recipients. */
Test(spool_record, more_recipients_than_the_limit_is_corrupt_even_when_they_fit)
{
	static const struct spool_str empty[SPOOL_RCPT_MAX];
	struct spool_envelope env = {.rcpts = empty, .nrcpt = SPOOL_RCPT_MAX};
	size_t env_size = spool_record_envelope_size(&env), total = env_size + 2 + 1;
	char *rec = calloc(1, total);
	struct spool_record_view v;

	cr_assert_eq(fixture_record(rec, total, &env, "m", 1), env_size + 1);
	cr_assert_eq(spool_record_decode(rec, env_size + 1, &v), (long)(env_size + 1));
	/* One more empty recipient (two zero bytes) where the message was, then the message. */
	rec[env_size] = 0;
	rec[env_size + 1] = 0;
	rec[env_size + 2] = 'm';
	put32(rec + OFF_NRCPT, SPOOL_RCPT_MAX + 1);
	put32(rec + OFF_MSG_OFF, (uint32_t)env_size + 2);
	put32(rec + OFF_TOTAL_LEN, (uint32_t)total);
	refresh_crc(rec, total);
	cr_assert_eq(spool_record_decode(rec, total, &v), -EBADMSG);
	/* The same bytes with the count in range decode: only the limit rejected them. */
	put32(rec + OFF_NRCPT, SPOOL_RCPT_MAX);
	put32(rec + OFF_MSG_OFF, (uint32_t)env_size);
	put32(rec + OFF_MSG_LEN, 3);
	refresh_crc(rec, total);
	cr_assert_eq(spool_record_decode(rec, total, &v), (long)total);
	free(rec);
}

Test(spool_record, fewer_than_eight_bytes_are_truncated_whatever_they_hold)
{
	static const char junk[8] = "\xff\x00RMX1\x01";
	struct spool_record_view v;

	for (size_t n = 0; n < 8; n++)
		cr_assert_eq(decode_guarded(junk, n, &v), 0, "len %zu", n);
	cr_assert_eq(spool_record_decode(NULL, 0, &v), 0);
}

Test(spool_record, every_truncation_point_returns_zero_or_ebadmsg)
{
	char rec[512], bad[512];
	size_t n = fixture_simple_record(rec, sizeof(rec), 5, "truncate me\r\n");
	struct guard_buf g = guard_buf_new(n);
	struct spool_record_view v;

	/* A valid record cut anywhere is simply not there yet. */
	for (size_t cut = 0; cut < n; cut++)
		cr_assert_eq(spool_record_decode(guard_buf_put(&g, rec, cut), cut, &v), 0,
			     "cut %zu", cut);
	cr_assert_eq(spool_record_decode(guard_buf_put(&g, rec, n), n, &v), (long)n);
	/* A bad version is seen as soon as it is there; a bad CRC only once all bytes are. */
	memcpy(bad, rec, n);
	bad[OFF_VERSION] = 9;
	for (size_t cut = 0; cut <= n; cut++)
		cr_assert_eq(spool_record_decode(guard_buf_put(&g, bad, cut), cut, &v),
			     cut < OFF_TYPE + 2 ? 0 : -EBADMSG, "cut %zu", cut);
	memcpy(bad, rec, n);
	bad[n - 1] ^= 1;
	for (size_t cut = 0; cut <= n; cut++)
		cr_assert_eq(spool_record_decode(guard_buf_put(&g, bad, cut), cut, &v),
			     cut < n ? 0 : -EBADMSG, "cut %zu", cut);
	guard_buf_free(&g);
}

/* ---- fuzz-like mutation ---- */

static const uint32_t interesting32[] = {
    0,	    1,	     2,		 47,	      48,	   54,		55,	     0x7fff,
    0xffff, 0x10000, 0x7fffffff, 0x80000000u, 0x80000001u, 0xfffffffeu, 0xffffffffu,
};
static const uint16_t interesting16[] = {0, 1, 2, 3, 0x7f, 0x80, 0xff, 4095, 4096, 4097, 0xffff};

/* Applies one random edit: a byte, a bit, a length field, or a whole run of bytes. */
static void
mutate(char *rec, size_t n, uint64_t *seed)
{
	static const size_t fields[] = {OFF_TOTAL_LEN, OFF_FLAGS, OFF_MSG_OFF, OFF_MSG_LEN,
					OFF_NRCPT};
	size_t pos = (size_t)(rng_next(seed) % n);
	uint64_t r = rng_next(seed);

	switch (r % 5) {
	case 0:
		rec[pos] = (char)(r >> 8);
		break;
	case 1:
		rec[pos] ^= (char)(1 << ((r >> 8) % 8));
		break;
	case 2:
		put32(rec + fields[(r >> 8) % 5],
		      (r >> 16) & 1 ? interesting32[(r >> 20) % 15] : (uint32_t)(r >> 32));
		break;
	case 3:
		if (pos + 2 <= n)
			put16(rec + pos, interesting16[(r >> 8) % 11]);
		break;
	default:
		for (size_t i = pos; i < n && i < pos + (r >> 8) % 32; i++)
			rec[i] = (char)rng_next(seed);
		break;
	}
}

/* What decode hands back must lie inside the bytes it was given, and agree with itself. */
static void
check_view(const char *buf, long r, const struct spool_record_view *v)
{
	volatile unsigned char sink = 0;
	struct spool_str s;
	size_t it = 0;
	uint32_t count = 0;

	cr_assert_eq(v->total_len, (uint32_t)r);
	cr_assert(v->msg >= buf + SPOOL_RECORD_HEADER_SIZE && v->msg + v->msg_len == buf + r);
	cr_assert(v->helo.p >= buf && v->helo.p + v->helo.len <= v->msg);
	cr_assert(v->client.p >= buf && v->client.p + v->client.len <= v->msg);
	cr_assert(v->from.p >= buf && v->from.p + v->from.len <= v->msg);
	while (spool_record_rcpt_next(v, &it, &s)) {
		cr_assert(s.p >= buf && s.p + s.len <= v->msg && s.len <= SPOOL_STR_MAX);
		for (size_t i = 0; i < s.len; i++)
			sink ^= (unsigned char)s.p[i];
		count++;
	}
	cr_assert_eq(count, v->nrcpt);
	for (uint32_t i = 0; i < v->msg_len; i++)
		sink ^= (unsigned char)v->msg[i];
	(void)sink;
}

Test(spool_record, bogus_lengths_never_read_out_of_bounds)
{
	enum { ITERATIONS = 200000 };
	char rec[512], m[600];
	size_t n = fixture_simple_record(rec, sizeof(rec), 77, "Subject: fuzz\r\n\r\nbody\r\n");
	struct guard_buf g = guard_buf_new(sizeof(m));
	uint64_t seed = 0x5eed5eed5eedull;
	unsigned accepted = 0, corrupt = 0, truncated = 0;

	for (int iter = 0; iter < ITERATIONS; iter++) {
		size_t len = n + (size_t)(rng_next(&seed) % 64); /* sometimes bytes follow */
		int edits = 1 + (int)(rng_next(&seed) % 4);
		struct spool_record_view v;
		const char *p;
		long r;

		memcpy(m, rec, n);
		for (size_t i = n; i < len; i++)
			m[i] = (char)rng_next(&seed);
		for (int e = 0; e < edits; e++)
			mutate(m, len, &seed);
		/* Half the time the CRC is made to match, so the edit reaches the envelope checks.
		 */
		if (rng_next(&seed) & 1)
			refresh_crc(m, len);
		if (rng_next(&seed) % 4 == 0)
			len = (size_t)(rng_next(&seed) % (len + 1)); /* and cut short */
		p = guard_buf_put(&g, m, len);
		r = spool_record_decode(p, len, &v);
		cr_assert(r == 0 || r == -EBADMSG || (r > 0 && (size_t)r <= len),
			  "iteration %d: r=%ld len=%zu", iter, r, len);
		if (r > 0) {
			check_view(p, r, &v);
			accepted++;
		}
		corrupt += r == -EBADMSG;
		truncated += r == 0;
	}
	/* The mutations must reach every outcome, or this test proves little. */
	cr_assert_gt(accepted, 1000);
	cr_assert_gt(corrupt, 1000);
	cr_assert_gt(truncated, 1000);
	guard_buf_free(&g);
}

/* ---- the writer's assertions: a bug in the caller aborts, it never writes a bad record ---- */

Test(spool_record, writer_aborts_on_a_string_over_the_limit, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	static char big[SPOOL_STR_MAX + 1];
	struct spool_envelope env = {.helo = {big, sizeof(big)}};
	static char buf[2 * SPOOL_STR_MAX];

	spool_record_begin(buf, sizeof(buf), &env);
}

Test(spool_record, writer_aborts_on_too_many_recipients, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	static const struct spool_str one[] = {S("a@b")};
	struct spool_envelope env = {.rcpts = one, .nrcpt = SPOOL_RCPT_MAX + 1};

	spool_record_envelope_size(&env);
}

Test(spool_record, writer_aborts_when_the_buffer_is_too_small, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	struct spool_envelope env = {.from = S("someone@example.com")};
	char buf[SPOOL_RECORD_HEADER_SIZE];

	spool_record_begin(buf, sizeof(buf), &env);
}

Test(spool_record, finish_aborts_on_a_buffer_that_begin_did_not_write, .signal = SIGABRT,
     .init = cr_redirect_stderr)
{
	char buf[128] = {0};

	spool_record_finish(buf, sizeof(buf));
}
