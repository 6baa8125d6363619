/*
 * fuzz_spool_record — libFuzzer harness for queue/spool_record (the spool record codec).
 *
 * The same input is used twice:
 *   1. As a segment tail: spool_record_decode() on it, and, when it starts with the magic, on
 *      a copy whose CRC is patched to match (so the fuzzer gets past the CRC into the envelope
 *      parser). A decoded record must lie inside the input, its strings inside its envelope,
 *      and spool_record_rcpt_next() must walk exactly nrcpt recipients up to the message.
 *   2. As an envelope: bytes 0..7 the qid, 8..15 the arrival time, 16 the flags, then fields
 *      split at NUL bytes: helo, client, from, the recipients, and the message last (strings
 *      cut at SPOOL_STR_MAX, at most ENV_RCPT_MAX recipients). It is encoded with
 *      spool_record_begin/finish into a buffer of exactly the record's size, decoded again
 *      and compared field by field; every proper prefix must decode as "truncated", and one
 *      flipped bit (outside the total-length field) as corrupt.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "queue/crc32c.h"
#include "queue/spool_record.h"
#include "tests/fuzz/fuzz.h"

#define ENV_RCPT_MAX 256
#define ENV_HEAD 17
/* Flags the round trip sets: any subset of the ones the writer knows. */
#define ENV_FLAGS (SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8 | SPOOL_F_BINARY | SPOOL_F_AUTH)

static uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void
check_view(const char *buf, size_t len, long r, const struct spool_record_view *v)
{
	const char *env = buf + SPOOL_RECORD_HEADER_SIZE;
	struct spool_str s;
	size_t off = 0;
	uint32_t n = 0;

	FUZZ_CHECK(r == 0 || r == -EBADMSG || r > 0);
	if (r <= 0)
		return;
	FUZZ_CHECK((size_t)r <= len && r >= SPOOL_RECORD_HEADER_SIZE + 6);
	FUZZ_CHECK(v->base == buf && v->total_len == (uint32_t)r);
	FUZZ_CHECK(v->nrcpt <= SPOOL_RCPT_MAX);
	FUZZ_CHECK(v->msg >= env && v->msg + v->msg_len == buf + r);
	FUZZ_CHECK(v->rcpt_area >= env && v->rcpt_area <= v->msg);
	FUZZ_CHECK(fuzz_within(v->helo.p, v->helo.len, env, (size_t)(v->msg - env)));
	FUZZ_CHECK(fuzz_within(v->client.p, v->client.len, env, (size_t)(v->msg - env)));
	FUZZ_CHECK(fuzz_within(v->from.p, v->from.len, env, (size_t)(v->msg - env)));
	FUZZ_CHECK(v->helo.len <= SPOOL_STR_MAX && v->client.len <= SPOOL_STR_MAX &&
		   v->from.len <= SPOOL_STR_MAX);
	/* Which flags are known is the decoder's to check (unit tests); here: read as written. */
	FUZZ_CHECK(v->flags == le32((const uint8_t *)buf + 32));
	while (spool_record_rcpt_next(v, &off, &s)) {
		FUZZ_CHECK(s.len <= SPOOL_STR_MAX);
		FUZZ_CHECK(fuzz_within(s.p, s.len, v->rcpt_area, (size_t)(v->msg - v->rcpt_area)));
		FUZZ_CHECK(++n <= v->nrcpt);
	}
	FUZZ_CHECK(n == v->nrcpt && v->rcpt_area + off == v->msg);
}

/* Part 1: the input as the bytes at a record's place in a segment. */
static void
fuzz_decode(const uint8_t *data, size_t size)
{
	struct spool_record_view v;
	char *copy = fuzz_dup(data, size);
	long r = spool_record_decode(copy, size, &v);
	uint32_t total;

	check_view(copy, size, r, &v);
	if (size >= 12 && le32(data) == SPOOL_RECORD_MAGIC) {
		total = le32(data + 8);
		if (total >= 8 && total <= size) {
			uint32_t crc = crc32c(0, copy + 8, total - 8);
			for (int i = 0; i < 4; i++)
				copy[4 + i] = (char)(crc >> (8 * i));
			r = spool_record_decode(copy, size, &v);
			check_view(copy, size, r, &v);
		}
	}
	free(copy);
}

static bool
str_eq(struct spool_str a, struct spool_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Cuts p[0..n) at the first NUL: *field gets the part before it, at most SPOOL_STR_MAX. */
static size_t
take_field(const char *p, size_t n, struct spool_str *field)
{
	const char *nul = memchr(p, '\0', n);
	size_t len = nul != NULL ? (size_t)(nul - p) : n;

	field->p = p;
	field->len = len < SPOOL_STR_MAX ? len : SPOOL_STR_MAX;
	return nul != NULL ? len + 1 : n;
}

static void
check_round_trip(const char *rec, size_t len, const struct spool_envelope *env,
		 struct spool_str msg)
{
	struct spool_record_view v;
	struct spool_str s;
	size_t off = 0;

	FUZZ_CHECK(spool_record_decode(rec, len, &v) == (long)len);
	check_view(rec, len, (long)len, &v);
	FUZZ_CHECK(v.qid == env->qid && v.arrival_ms == env->arrival_ms && v.flags == env->flags);
	FUZZ_CHECK(str_eq(v.helo, env->helo) && str_eq(v.client, env->client) &&
		   str_eq(v.from, env->from));
	FUZZ_CHECK(v.nrcpt == env->nrcpt);
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		FUZZ_CHECK(spool_record_rcpt_next(&v, &off, &s));
		FUZZ_CHECK(str_eq(s, env->rcpts[i]));
	}
	FUZZ_CHECK(!spool_record_rcpt_next(&v, &off, &s));
	FUZZ_CHECK(v.msg_len == msg.len && (msg.len == 0 || memcmp(v.msg, msg.p, msg.len) == 0));
}

/* A prefix of a record is a torn tail (0); a flipped bit outside total_len is corruption. */
static void
check_damage(const char *rec, size_t len, uint64_t choice)
{
	struct spool_record_view v;
	size_t cuts[] = {len - 1, SPOOL_RECORD_HEADER_SIZE, 12, 8, (size_t)(choice % len)};
	size_t pos = (size_t)(choice % len);
	char *bad;

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char *part = fuzz_dup(rec, cuts[i]);
		FUZZ_CHECK(spool_record_decode(part, cuts[i], &v) == 0);
		free(part);
	}
	if (pos >= 8 && pos < 12)
		return;
	bad = fuzz_dup(rec, len);
	bad[pos] ^= (char)(1u << (choice >> 32) % 8);
	FUZZ_CHECK(spool_record_decode(bad, len, &v) == -EBADMSG);
	free(bad);
}

/* Part 2: the input as an envelope and a message, through the writer and back. */
static void
fuzz_round_trip(const uint8_t *data, size_t size)
{
	struct spool_str rcpts[ENV_RCPT_MAX], msg = {NULL, 0};
	struct spool_envelope env;
	struct spool_str *fields[] = {&env.helo, &env.client, &env.from};
	const char *p = (const char *)data + ENV_HEAD;
	size_t n = size - ENV_HEAD, head, len;
	char *rec;

	FUZZ_CHECK(size >= ENV_HEAD);
	memset(&env, 0, sizeof(env));
	env.qid = le64(data);
	env.arrival_ms = le64(data + 8);
	env.flags = data[16] & ENV_FLAGS;
	env.rcpts = rcpts;
	for (size_t i = 0; i < 3; i++) {
		size_t used = take_field(p, n, fields[i]);
		p += used;
		n -= used;
	}
	while (n > 0) {
		struct spool_str field;
		size_t used;

		if (memchr(p, '\0', n) == NULL) { /* the last field: the message */
			msg = (struct spool_str){p, n};
			break;
		}
		used = take_field(p, n, &field);
		if (env.nrcpt < ENV_RCPT_MAX)
			rcpts[env.nrcpt++] = field;
		p += used;
		n -= used;
	}
	head = spool_record_envelope_size(&env);
	len = head + msg.len;
	rec = malloc(len);
	FUZZ_CHECK(rec != NULL);
	FUZZ_CHECK(spool_record_begin(rec, len, &env) == head);
	if (msg.len > 0)
		memcpy(rec + head, msg.p, msg.len);
	spool_record_finish(rec, len);
	check_round_trip(rec, len, &env, msg);
	check_damage(rec, len, env.qid ^ env.arrival_ms);
	free(rec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_decode(data, size);
	if (size >= ENV_HEAD)
		fuzz_round_trip(data, size);
	return 0;
}
