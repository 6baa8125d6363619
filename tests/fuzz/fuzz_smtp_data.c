/*
 * fuzz_smtp_data — libFuzzer harness for server/smtp_data (the DATA scanner).
 *
 * Input: a chunk header (tests/fuzz/fuzz.h), then the bytes a client sends after 354. They are
 * fed in the fuzzer's chunks, each in a buffer of exactly its size, with an output buffer of
 * exactly len + SMTP_DATA_HOLD_MAX bytes, and everything is checked against a naive model of
 * RFC 5321 4.5.2 computed on the whole stream:
 *   - DATA ends at the first CRLF "." CRLF (counting the start of DATA as a CRLF) and nowhere
 *     else: never before a real one (no smuggling through bare CR/LF), never past it;
 *   - bytes consumed never exceed bytes given; a call that does not end DATA consumes all;
 *   - the output is the stream up to the terminator with each line-start '.' deleted (only
 *     one CR may still be held back when DATA has not ended);
 *   - the flags are exactly the bare LF / bare CR / NUL / 8-bit bytes seen;
 *   - after the end, a feed consumes nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/smtp_data.h"
#include "tests/fuzz/fuzz.h"

/* The bytes consumed with the terminator, or 0 when s[0..n) has none. */
static size_t
model_end(const char *s, size_t n)
{
	const char *t;

	if (n >= 3 && memcmp(s, ".\r\n", 3) == 0)
		return 3;
	t = memmem(s, n, "\r\n.\r\n", 5);
	return t != NULL ? (size_t)(t - s) + 5 : 0;
}

/* Unstuffs s[0..n) into out (n bytes of room); returns the length. */
static size_t
model_unstuff(const char *s, size_t n, char *out)
{
	size_t o = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && s[i] == '.') {
			bol = false;
			continue;
		}
		out[o++] = s[i];
		bol = s[i] == '\n' && i > 0 && s[i - 1] == '\r';
	}
	return o;
}

/* Flags of s[0..n); a CR in the last byte is not known to be bare yet. */
static uint32_t
model_flags(const char *s, size_t n)
{
	uint32_t f = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n' && (i == 0 || s[i - 1] != '\r'))
			f |= SMTP_DATA_BARE_LF;
		if (c == '\r' && i + 1 < n && s[i + 1] != '\n')
			f |= SMTP_DATA_BARE_CR;
		if (c == 0)
			f |= SMTP_DATA_NUL;
		if (c >= 0x80)
			f |= SMTP_DATA_8BIT;
	}
	return f;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_chunks chunks;
	struct smtp_data_scan scan;
	const char *s;
	char *out, *want;
	size_t n, fed = 0, out_len = 0, end, body, want_len;

	fuzz_chunks_init(&chunks, &data, &size);
	s = (const char *)data;
	n = size;
	out = malloc(n + SMTP_DATA_HOLD_MAX + 1);
	FUZZ_CHECK(out != NULL);
	smtp_data_scan_init(&scan);
	while (fed < n && !scan.done) {
		size_t len = fuzz_chunks_next(&chunks, n - fed);
		char *in = fuzz_dup(s + fed, len);
		char *o = malloc(len + SMTP_DATA_HOLD_MAX);
		size_t o_len = 0, used;

		FUZZ_CHECK(o != NULL);
		used = smtp_data_scan_feed(&scan, in, len, o, &o_len);
		FUZZ_CHECK(used <= len);
		FUZZ_CHECK(scan.done || used == len);
		FUZZ_CHECK(o_len <= len + SMTP_DATA_HOLD_MAX);
		FUZZ_CHECK(out_len + o_len <= n + SMTP_DATA_HOLD_MAX);
		memcpy(out + out_len, o, o_len);
		out_len += o_len;
		fed += used;
		FUZZ_CHECK(scan.in_bytes == fed && scan.out_bytes == out_len);
		free(o);
		free(in);
	}

	end = model_end(s, n);
	FUZZ_CHECK(scan.done == (end != 0));
	FUZZ_CHECK(fed == (scan.done ? end : n));
	body = scan.done ? end - 3 : n; /* the terminator's ".\r\n" is not message data */
	want = malloc(body + 1);
	FUZZ_CHECK(want != NULL);
	want_len = model_unstuff(s, body, want);
	if (scan.done) {
		FUZZ_CHECK(out_len == want_len && memcmp(out, want, want_len) == 0);
		FUZZ_CHECK(scan.flags == model_flags(s, body));
		/* What follows the terminator is the next command's, not DATA's. */
		if (fed < n) {
			size_t o_len = 0;
			FUZZ_CHECK(smtp_data_scan_feed(&scan, s + fed, n - fed, out, &o_len) == 0);
			FUZZ_CHECK(o_len == 0);
		}
	} else {
		FUZZ_CHECK(out_len <= want_len && want_len - out_len <= SMTP_DATA_HOLD_MAX);
		FUZZ_CHECK(memcmp(out, want, out_len) == 0);
		FUZZ_CHECK(scan.flags == model_flags(s, n));
	}
	free(want);
	free(out);
	return 0;
}
