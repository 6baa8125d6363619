/*
 * Unit tests for server/smtp_data: dot-unstuffing, the CRLF "." CRLF terminator, every bare
 * LF / bare CR smuggling variant, and identical results whatever the input cuts are. Every
 * result is also checked against ref_scan(), a deliberately naive reading of RFC 5321 4.5.2
 * that splits the whole stream at CRLFs. Input and output buffers end at a PROT_NONE page, so
 * an over-read or an over-write crashes the test.
 */
#include "server/smtp_data.h"

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STREAM_MAX 4096

/* Two mappings, each followed by a PROT_NONE page: one for input, one for output. */
static char *guard_in_end, *guard_out_end;

static char *
guard_region(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data = (len + page - 1) / page * page;
	char *base =
	    mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert(base != MAP_FAILED);
	cr_assert_eq(mprotect(base + data, page, PROT_NONE), 0);
	return base + data;
}

static void
guards_init(void)
{
	if (guard_in_end == NULL) {
		guard_in_end = guard_region(STREAM_MAX);
		guard_out_end = guard_region(STREAM_MAX + SMTP_DATA_HOLD_MAX);
	}
}

struct result {
	char out[STREAM_MAX + SMTP_DATA_HOLD_MAX];
	size_t out_len;
	size_t consumed;
	uint32_t flags;
	bool done;
};

/*
 * The oracle: split the stream at CRLFs; a line "." ends it; any other line starting with '.'
 * loses the '.'. An unfinished last line shows what the scanner must have written so far: a
 * lone "." or ".\r" is still pending, a trailing CR elsewhere is already written. Flags are a
 * per-byte look at the consumed input, where a CR in the last consumed byte is not yet bare.
 */
static void
ref_scan(const char *in, size_t len, struct result *r)
{
	size_t i = 0, j, start;

	memset(r, 0, sizeof(*r));
	while (i < len) {
		for (j = i; j + 1 < len && !(in[j] == '\r' && in[j + 1] == '\n'); j++)
			;
		if (j + 1 >= len) {
			bool pending = len - i == 1
					   ? in[i] == '.'
					   : len - i == 2 && in[i] == '.' && in[i + 1] == '\r';
			start = in[i] == '.' ? i + 1 : i;
			if (!pending) {
				memcpy(r->out + r->out_len, in + start, len - start);
				r->out_len += len - start;
			}
			i = len;
			break;
		}
		if (j == i + 1 && in[i] == '.') {
			i = j + 2;
			r->done = true;
			break;
		}
		start = in[i] == '.' ? i + 1 : i;
		memcpy(r->out + r->out_len, in + start, j + 2 - start);
		r->out_len += j + 2 - start;
		i = j + 2;
	}
	r->consumed = i;
	for (size_t k = 0; k < i; k++) {
		unsigned char c = (unsigned char)in[k];
		if (c == '\n' && (k == 0 || in[k - 1] != '\r'))
			r->flags |= SMTP_DATA_BARE_LF;
		if (c == '\r' && k + 1 < i && in[k + 1] != '\n')
			r->flags |= SMTP_DATA_BARE_CR;
		if (c == '\0')
			r->flags |= SMTP_DATA_NUL;
		if (c >= 0x80)
			r->flags |= SMTP_DATA_8BIT;
	}
}

/* Returns the next chunk size, 1..remaining. */
typedef size_t (*chunker)(size_t remaining, void *ctx);

/* Feeds the stream in chunks, each placed against the guard pages, and collects the output. */
static void
scan_split(const char *in, size_t len, chunker next, void *ctx, struct result *r)
{
	struct smtp_data_scan s;
	size_t off = 0;

	guards_init();
	cr_assert(len <= STREAM_MAX);
	memset(r, 0, sizeof(*r));
	smtp_data_scan_init(&s);
	while (off < len && !s.done) {
		size_t n = next(len - off, ctx), w = 7, used;
		char *gin = guard_in_end - n, *gout = guard_out_end - (n + SMTP_DATA_HOLD_MAX);

		cr_assert(n >= 1 && n <= len - off);
		memcpy(gin, in + off, n);
		used = smtp_data_scan_feed(&s, gin, n, gout, &w);
		w -= 7; /* *out_len is added to, not set */
		cr_assert(used == n || (s.done && used < n), "used %zu of %zu", used, n);
		cr_assert(w <= used + 1, "wrote %zu for %zu consumed", w, used);
		memcpy(r->out + r->out_len, gout, w);
		r->out_len += w;
		off += used;
	}
	r->consumed = off;
	r->flags = s.flags;
	r->done = s.done;
	cr_assert_eq(s.in_bytes, off);
	cr_assert_eq(s.out_bytes, r->out_len);
}

static size_t
chunk_all(size_t remaining, void *ctx)
{
	(void)ctx;
	return remaining;
}

static size_t
chunk_one(size_t remaining, void *ctx)
{
	(void)remaining;
	(void)ctx;
	return 1;
}

/* ctx: a list of cut offsets ending in SIZE_MAX; each call moves to the next cut. */
struct cuts {
	size_t at[3];
	size_t pos, i;
};

static size_t
chunk_cuts(size_t remaining, void *ctx)
{
	struct cuts *c = ctx;
	size_t n = remaining;

	while (c->at[c->i] != SIZE_MAX && c->at[c->i] <= c->pos)
		c->i++;
	if (c->at[c->i] != SIZE_MAX && c->at[c->i] - c->pos < remaining)
		n = c->at[c->i] - c->pos;
	c->pos += n;
	return n;
}

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: fixed seed, same corpus on every run */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static size_t
chunk_random(size_t remaining, void *ctx)
{
	return 1 + (size_t)(rng_next(ctx) % remaining);
}

static void
assert_same(const struct result *a, const struct result *b, const char *what)
{
	cr_assert_eq(a->consumed, b->consumed, "%s: consumed %zu vs %zu", what, a->consumed,
		     b->consumed);
	cr_assert_eq(a->done, b->done, "%s: done", what);
	cr_assert_eq(a->flags, b->flags, "%s: flags %#x vs %#x", what, a->flags, b->flags);
	cr_assert_eq(a->out_len, b->out_len, "%s: out_len %zu vs %zu", what, a->out_len,
		     b->out_len);
	cr_assert(memcmp(a->out, b->out, a->out_len) == 0, "%s: output differs", what);
}

/* One shot, byte at a time and every two-way cut all agree with the oracle. */
static void
check_stream(const char *in, size_t len, struct result *want)
{
	static struct result got;

	ref_scan(in, len, want);
	scan_split(in, len, chunk_all, NULL, &got);
	assert_same(&got, want, "one shot");
	scan_split(in, len, chunk_one, NULL, &got);
	assert_same(&got, want, "byte at a time");
	for (size_t k = 1; k < len; k++) {
		struct cuts c = {{k, SIZE_MAX, SIZE_MAX}, 0, 0};
		scan_split(in, len, chunk_cuts, &c, &got);
		assert_same(&got, want, "two pieces");
	}
}

#define STREAM(s) s, sizeof(s) - 1

static void
check_message(const char *in, size_t len, const char *out, size_t out_len, uint32_t flags)
{
	static struct result r;

	check_stream(in, len, &r);
	cr_assert(r.done, "\"%s\" did not end", in);
	cr_assert_eq(r.consumed, len, "\"%s\" ended early, after %zu bytes", in, r.consumed);
	cr_assert_eq(r.out_len, out_len, "\"%s\": output length %zu", in, r.out_len);
	cr_assert(memcmp(r.out, out, out_len) == 0, "\"%s\": output differs", in);
	cr_assert_eq(r.flags, flags, "\"%s\": flags %#x, want %#x", in, r.flags, flags);
}

#define MESSAGE(in, out, flags) check_message(STREAM(in), STREAM(out), (flags))

Test(smtp_data, dot_stuffed_lines_lose_their_first_dot)
{
	MESSAGE("..x\r\n.\r\n", ".x\r\n", 0);
	MESSAGE("a\r\n...\r\n.\r\n", "a\r\n..\r\n", 0);
	MESSAGE("..\r\n.\r\n", ".\r\n", 0);
	MESSAGE(". x\r\n.\r\n", " x\r\n", 0);
	MESSAGE("a.b\r\n.c\r\n.\r\n", "a.b\r\nc\r\n", 0);
	MESSAGE("x\r\n\r\n..\r\n\r\n.\r\n", "x\r\n\r\n.\r\n\r\n", 0);
}

Test(smtp_data, a_terminator_at_the_very_start_is_an_empty_message)
{
	MESSAGE(".\r\n", "", 0);
}

Test(smtp_data, bytes_after_the_terminator_are_left_unconsumed)
{
	static const char in[] = "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
	static struct result r;
	struct smtp_data_scan s;
	char out[64];
	size_t w = 0;

	check_stream(STREAM(in), &r);
	cr_assert(r.done);
	cr_assert_eq(r.consumed, sizeof(in) - 1 - strlen("QUIT\r\n"));

	smtp_data_scan_init(&s);
	cr_assert_eq(smtp_data_scan_feed(&s, in, sizeof(in) - 1, out, &w), r.consumed);
	cr_assert(s.done);
	cr_assert_eq(smtp_data_scan_feed(&s, "more\r\n", 6, out, &w), 0, "done consumes nothing");
	cr_assert_eq(w, strlen("Subject: x\r\n\r\nbody\r\n"));
}

Test(smtp_data, terminator_cut_at_every_point_matches_one_shot)
{
	static const char in[] = "From: a@b\r\nSubject: dots\r\n\r\n..leading\r\n.\r\n"
				 "a line longer than sixteen bytes\r\n..\r\n.\r\nNOOP\r\n";
	static struct result want, got;
	size_t len = sizeof(in) - 1;

	check_stream(in, len, &want);
	cr_assert(want.done);
	/* Three pieces too: the second cut may fall inside the terminator as well. */
	for (size_t i = 1; i < len; i++) {
		for (size_t j = i + 1; j < len; j++) {
			struct cuts c = {{i, j, SIZE_MAX}, 0, 0};
			scan_split(in, len, chunk_cuts, &c, &got);
			assert_same(&got, &want, "three pieces");
		}
	}
}

Test(smtp_data, bare_lf_and_bare_cr_never_end_data_and_are_flagged)
{
	const uint32_t lf = SMTP_DATA_BARE_LF, cr = SMTP_DATA_BARE_CR, nul = SMTP_DATA_NUL;

	/* A '.' after a bare LF or CR is not at a line start: kept, and not an end. */
	MESSAGE("\n.\n\r\n.\r\n", "\n.\n\r\n", lf);
	MESSAGE("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", lf);
	MESSAGE("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", lf);
	MESSAGE("a\n.\r\n.\r\n", "a\n.\r\n", lf);
	MESSAGE("a\r\n\n.\r\n.\r\n", "a\r\n\n.\r\n", lf);
	MESSAGE("a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", cr);
	MESSAGE("a\r.\r\r\n.\r\n", "a\r.\r\r\n", cr);
	/* A '.' at a real line start followed by a bare LF or CR: deleted (4.5.2), not an end. */
	MESSAGE("a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", lf);
	MESSAGE("a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", cr);
	MESSAGE("a\r\n.\r.\r\n.\r\n", "a\r\n\r.\r\n", cr);
	MESSAGE("a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", cr);
	/* NUL next to the dot. */
	MESSAGE("a\r\n.\0\r\n.\r\n", "a\r\n\0\r\n", nul);
	MESSAGE("a\r\n\0.\r\n.\r\n", "a\r\n\0.\r\n", nul);
	MESSAGE("a\r\n.\r\0\n.\r\n.\r\n", "a\r\n\r\0\n.\r\n", cr | lf | nul);
	/* A real CRLF after a bare CR or LF is still a line end, so these do end. */
	MESSAGE("a\r\r\n.\r\n", "a\r\r\n", cr);
	MESSAGE("a\n\r\n.\r\n", "a\n\r\n", lf);
}

Test(smtp_data, smuggled_terminators_never_end_data)
{
	static const struct {
		const char *s;
		size_t len;
		bool flagged; /* false: just unfinished, nothing bare yet */
	} tails[] = {
		{STREAM("\n.\n"), true},
		{STREAM("\n.\r\n"), true},
		{STREAM("\r\n.\n"), true},
		{STREAM("\r.\r\n"), true},
		{STREAM("\r\n.\r"), false},
		{STREAM("\r\n.\rX"), true},
		{STREAM("\r\n\0.\r\n"), true},
		{STREAM("\r\n.\0\r\n"), true},
		{STREAM("\r\0\n.\r\n"), true},
	};
	static struct result r;
	char in[64];

	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		memcpy(in, "body", 4);
		memcpy(in + 4, tails[i].s, tails[i].len);
		check_stream(in, 4 + tails[i].len, &r);
		cr_assert(!r.done, "tail %zu ended DATA", i);
		cr_assert_eq(r.consumed, 4 + tails[i].len);
		cr_assert_eq(r.flags != 0, tails[i].flagged, "tail %zu flags %#x", i, r.flags);
	}
}

Test(smtp_data, flags_are_exact_on_short_and_long_lines)
{
	static const unsigned char odd[] = {'\0', 0x80, 0xff, '\r', '\n'};
	static const uint32_t flag[] = {SMTP_DATA_NUL, SMTP_DATA_8BIT, SMTP_DATA_8BIT,
					SMTP_DATA_BARE_CR, SMTP_DATA_BARE_LF};
	static struct result r;
	char in[128];

	/* Every line length around the 16-byte vector width, the odd byte at every position. */
	for (size_t len = 1; len <= 50; len++) {
		memset(in, 'x', len);
		memcpy(in + len, "\r\n.\r\n", 5);
		check_stream(in, len + 5, &r);
		cr_assert_eq(r.flags, 0, "clean line of %zu bytes flagged %#x", len, r.flags);
		for (size_t at = 0; at < len; at++) {
			for (size_t k = 0; k < sizeof(odd); k++) {
				memset(in, 'x', len);
				in[at] = (char)odd[k];
				memcpy(in + len, "\r\n.\r\n", 5);
				check_stream(in, len + 5, &r);
				cr_assert_eq(r.flags, flag[k], "len %zu at %zu byte %#x: %#x", len,
					     at, odd[k], r.flags);
				cr_assert(r.done);
			}
		}
	}
}

/* Random streams over an alphabet rich in '.', CR, LF and NUL, with lines of every length. */
static size_t
random_stream(uint64_t *seed, char *buf, size_t max)
{
	static const char *const tok[] = {"\r\n", ".", "\r", "\n", "\r\n.", "..", "\xc3\xa9"};
	size_t n = 0, want = (size_t)(rng_next(seed) % max);

	while (n + 40 < want) {
		uint64_t x = rng_next(seed);
		size_t t = (size_t)(x % 10);
		if (t < 7) {
			size_t l = strlen(tok[t]);
			memcpy(buf + n, tok[t], l);
			n += l;
		} else if (t == 7) {
			buf[n++] = '\0';
		} else {
			size_t l = (size_t)((x >> 8) % 40);
			memset(buf + n, 'a' + (int)((x >> 16) % 26), l);
			n += l;
		}
	}
	/* Rarely, a real terminator part-way, so leftovers get tested too. */
	if (rng_next(seed) % 4 == 0 && n + 5 < max) {
		memcpy(buf + n, "\r\n.\r\n", 5);
		n += 5;
	}
	return n;
}

Test(smtp_data, byte_at_a_time_and_random_cuts_match_one_shot_on_a_random_corpus)
{
	static char in[2048];
	static struct result want, got;
	uint64_t seed = 0x5eed5eed2024ull, cut_seed = 42;
	size_t ended = 0;

	for (int i = 0; i < 3000; i++) {
		size_t len = random_stream(&seed, in, sizeof(in));
		ref_scan(in, len, &want);
		ended += want.done;
		scan_split(in, len, chunk_all, NULL, &got);
		assert_same(&got, &want, "one shot");
		scan_split(in, len, chunk_one, NULL, &got);
		assert_same(&got, &want, "byte at a time");
		for (int k = 0; k < 4; k++) {
			scan_split(in, len, chunk_random, &cut_seed, &got);
			assert_same(&got, &want, "random cuts");
		}
	}
	cr_assert(ended > 100, "the corpus should end DATA sometimes (%zu)", ended);
}

/*
 * Mostly ordinary text: long CRLF lines, the input the 16-byte bulk path copies without the
 * per-line state machine, with a rare odd byte (a line-start '.', bare CR or LF, NUL, 8-bit,
 * a terminator) at a random point of a line, so that every position within a vector and every
 * stop of the bulk path is met.
 */
static size_t
text_stream(uint64_t *seed, char *buf, size_t max)
{
	static const char *const odd[] = {".", "\r", "\n", "\r\n.", "\r\n.\r\n", "\r\r\n",
					  "\n.", "\xc3\xa9", "\r\n..", "\r\n.\n"};
	size_t n = 0, want = 64 + (size_t)(rng_next(seed) % (max - 64));

	while (n + 220 < want) {
		uint64_t x = rng_next(seed);
		size_t l = (size_t)(x % 200), at = n + (size_t)((x >> 50) % (l + 1));
		for (size_t i = 0; i < l; i++)
			buf[n + i] = (char)('!' + (int)(((x >> 8) + i * 7) % 90));
		n += l;
		/* Rare enough that most streams hold one odd thing or none, so the flags of a
		 * stream say whether that one was seen. */
		if ((x >> 40) % 24 == 0) {
			const char *t = odd[(x >> 44) % (sizeof(odd) / sizeof(odd[0]))];
			size_t tl = strlen(t);
			memmove(buf + at + tl, buf + at, n - at);
			memcpy(buf + at, t, tl);
			n += tl;
		} else if ((x >> 40) % 200 == 1) {
			buf[n++] = '\0';
		}
		memcpy(buf + n, "\r\n", 2);
		n += 2;
	}
	return n;
}

Test(smtp_data, text_with_rare_odd_bytes_matches_the_oracle_however_it_is_cut)
{
	static char in[STREAM_MAX];
	static struct result want, got;
	uint64_t seed = 0x7e47ull, cut_seed = 7;
	size_t ended = 0, flagged = 0;

	for (int i = 0; i < 1500; i++) {
		size_t len = text_stream(&seed, in, sizeof(in));
		ref_scan(in, len, &want);
		ended += want.done;
		flagged += want.flags != 0;
		scan_split(in, len, chunk_all, NULL, &got);
		assert_same(&got, &want, "one shot");
		if (i % 8 == 0) {
			scan_split(in, len, chunk_one, NULL, &got);
			assert_same(&got, &want, "byte at a time");
		}
		for (int k = 0; k < 4; k++) {
			scan_split(in, len, chunk_random, &cut_seed, &got);
			assert_same(&got, &want, "random cuts");
		}
	}
	cr_assert(ended > 50 && ended < 1000, "the corpus should end DATA sometimes (%zu)", ended);
	cr_assert(flagged > 100 && flagged < 1000, "odd bytes in some streams only (%zu)", flagged);
}

Test(smtp_data, counters_add_up_over_feeds)
{
	struct smtp_data_scan s;
	char out[32];
	size_t w = 0;

	smtp_data_scan_init(&s);
	cr_assert_eq(smtp_data_scan_feed(&s, "ab\r\n.", 5, out, &w), 5);
	cr_assert_eq(w, 4);
	cr_assert_eq(smtp_data_scan_feed(&s, "\r", 1, out + w, &w), 1);
	cr_assert_eq(w, 4, "the CR after a line-start dot is held back");
	cr_assert_eq(smtp_data_scan_feed(&s, "x\r\n.\r\n", 6, out + w, &w), 6);
	cr_assert(s.done);
	cr_assert_eq(w, 8);
	cr_assert(memcmp(out, "ab\r\n\rx\r\n", 8) == 0);
	cr_assert_eq(s.in_bytes, 12);
	cr_assert_eq(s.out_bytes, 8);
	cr_assert_eq(s.flags, SMTP_DATA_BARE_CR);
	cr_assert_eq(smtp_data_scan_feed(&s, "", 0, out, &w), 0);
}
