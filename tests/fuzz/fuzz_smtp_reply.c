/*
 * fuzz_smtp_reply — libFuzzer harness for queue/smtp_reply (the outbound reply reader).
 *
 * Input: one byte whose bit k % 8 says whether reply k is read as an EHLO reply
 * (smtp_reply_reader_expect_ehlo before it), then a chunk header (tests/fuzz/fuzz.h), then
 * the bytes a server sends. They are read twice: in the fuzzer's chunks, each in a buffer of
 * exactly its size, and all at once. Checks:
 *   - the contract of smtp_reply.h on every result: *used within what was given, MORE only
 *     with all of it used, a DONE reply's code in 200..599, 1..SMTP_REPLY_LINES_MAX lines,
 *     printable NUL-terminated text under SMTP_REPLY_TEXT_MAX, an enhanced code of the
 *     reply's class or none, caps only on an EHLO 250; BAD with code 0, and sticky;
 *   - both readings give the same replies and the same end (the cuts never matter).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "queue/smtp_reply.h"
#include "tests/fuzz/fuzz.h"

#define REPLIES_MAX 256 /* both readings stop there: more is not more coverage */

/* What is compared of a reply: all of it, with its text as a hash. */
struct digest {
	int code;
	unsigned nlines;
	bool truncated;
	char enh[SMTP_REPLY_ENH_MAX];
	uint64_t text_hash;
	struct smtp_caps caps;
};

struct outcome {
	struct digest rep[REPLIES_MAX]; /* the DONE replies, then the BAD one */
	size_t nrep;
	bool bad;
};

static void
digest_of(const struct smtp_reply *rep, struct digest *d)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */

	memset(d, 0, sizeof(*d));
	d->code = rep->code;
	d->nlines = rep->nlines;
	d->truncated = rep->truncated;
	memcpy(d->enh, rep->enh, sizeof(d->enh));
	for (const char *t = rep->text; *t != '\0'; t++)
		h = (h ^ (unsigned char)*t) * 1099511628211ull;
	d->text_hash = h;
	d->caps = rep->caps;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "c.d.d", each of subject and detail 1 to 3 digits. */
static bool
enh_ok(const char *e, int code)
{
	size_t i = 2;

	if (e[0] == '\0')
		return true;
	if (e[0] != '0' + code / 100 || e[1] != '.')
		return false;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (is_digit(e[i]) && i - start < 3)
			i++;
		if (i == start || e[i] != (part == 0 ? '.' : '\0'))
			return false;
		i++;
	}
	return true;
}

static void
check_reply(const struct smtp_reply *rep, bool ehlo, enum smtp_reply_result res)
{
	size_t tlen = strnlen(rep->text, sizeof(rep->text));
	static const struct smtp_caps none;

	FUZZ_CHECK(tlen < sizeof(rep->text));
	for (size_t i = 0; i < tlen; i++)
		FUZZ_CHECK(rep->text[i] >= 0x20 && rep->text[i] < 0x7f);
	if (res == SMTP_REPLY_BAD) {
		FUZZ_CHECK(rep->code == 0 && rep->enh[0] == '\0' && tlen > 0);
		return;
	}
	FUZZ_CHECK(rep->code >= 200 && rep->code <= 599);
	FUZZ_CHECK(rep->nlines >= 1 && rep->nlines <= SMTP_REPLY_LINES_MAX);
	FUZZ_CHECK(strnlen(rep->enh, sizeof(rep->enh)) < sizeof(rep->enh));
	FUZZ_CHECK(enh_ok(rep->enh, rep->code));
	FUZZ_CHECK(!rep->truncated || tlen >= SMTP_REPLY_TEXT_MAX - 2);
	if (!(ehlo && rep->code == 250))
		FUZZ_CHECK(memcmp(&rep->caps, &none, sizeof(none)) == 0);
	if (!rep->caps.size_present)
		FUZZ_CHECK(rep->caps.size == 0);
}

/* Feeds p[0..n) in the given chunks (all at once when chunks is NULL) and records the end. */
static void
read_all(const char *p, size_t n, uint8_t ehlo_mask, struct fuzz_chunks *chunks,
	 struct smtp_reply_reader *rd, struct outcome *oc)
{
	size_t fed = 0;

	smtp_reply_reader_init(rd);
	oc->nrep = 0;
	oc->bad = false;
	if (ehlo_mask & 1)
		smtp_reply_reader_expect_ehlo(rd);
	while (fed < n && !oc->bad) {
		size_t len = chunks != NULL ? fuzz_chunks_next(chunks, n - fed) : n - fed;
		char *in = fuzz_dup(p + fed, len);
		size_t off = 0;

		while (off < len) {
			struct smtp_reply rep_buf, *rep = &rep_buf;
			bool ehlo = ehlo_mask >> (oc->nrep % 8) & 1;
			size_t used = SIZE_MAX;
			enum smtp_reply_result res =
			    smtp_reply_feed(rd, in + off, len - off, &used, rep);

			FUZZ_CHECK(used <= len - off);
			if (res == SMTP_REPLY_MORE) {
				FUZZ_CHECK(used == len - off);
				break;
			}
			check_reply(rep, ehlo, res);
			digest_of(rep, &oc->rep[oc->nrep]);
			off += used;
			if (res == SMTP_REPLY_BAD) {
				struct smtp_reply again;
				oc->bad = true;
				oc->nrep++;
				/* Sticky: consumes nothing and says the same. */
				FUZZ_CHECK(smtp_reply_feed(rd, in + off, len - off, &used,
							   &again) == SMTP_REPLY_BAD);
				FUZZ_CHECK(used == 0 && strcmp(again.text, rep->text) == 0);
				break;
			}
			FUZZ_CHECK(res == SMTP_REPLY_DONE && used > 0);
			if (++oc->nrep == REPLIES_MAX) {
				oc->bad = true; /* both readings stop at the same reply */
				break;
			}
			if (ehlo_mask >> (oc->nrep % 8) & 1)
				smtp_reply_reader_expect_ehlo(rd);
		}
		fed += len;
		free(in);
	}
}

static void
check_same(const struct outcome *a, const struct outcome *b)
{
	FUZZ_CHECK(a->nrep == b->nrep && a->bad == b->bad);
	for (size_t i = 0; i < a->nrep; i++) {
		const struct digest *x = &a->rep[i], *y = &b->rep[i];
		FUZZ_CHECK(x->code == y->code && x->nlines == y->nlines);
		FUZZ_CHECK(x->truncated == y->truncated && x->text_hash == y->text_hash);
		FUZZ_CHECK(strcmp(x->enh, y->enh) == 0);
		FUZZ_CHECK(memcmp(&x->caps, &y->caps, sizeof(x->caps)) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_reader *rd;
	struct outcome *chunked, *whole;
	struct fuzz_chunks chunks;
	uint8_t ehlo_mask;

	if (size == 0)
		return 0;
	ehlo_mask = data[0];
	data++;
	size--;
	fuzz_chunks_init(&chunks, &data, &size);
	rd = malloc(sizeof(*rd));
	chunked = malloc(sizeof(*chunked));
	whole = malloc(sizeof(*whole));
	FUZZ_CHECK(rd != NULL && chunked != NULL && whole != NULL);
	read_all((const char *)data, size, ehlo_mask, &chunks, rd, chunked);
	read_all((const char *)data, size, ehlo_mask, NULL, rd, whole);
	check_same(chunked, whole);
	free(whole);
	free(chunked);
	free(rd);
	return 0;
}
