/*
 * fuzz_body_encode — libFuzzer harness for queue/body_encode (stored message → DATA bytes).
 *
 * Input: the stored message bytes (anything: a BDAT message may hold bare CR/LF and NULs).
 * Checks:
 *   - body_encode_data() writes exactly body_encode_data_size() bytes, at most 2 * len + 5,
 *     into a buffer of exactly that size;
 *   - the output holds CRLF "." CRLF only as its last five bytes (or is ".\r\n" alone), and no
 *     bare CR or LF: no server can find an end of DATA we did not send;
 *   - every output line holds at most 998 octets before its CRLF, a stuffed '.' included
 *     (RFC 5321 4.5.3.1.6), and one that starts with '.' starts with ".."; undoing the
 *     dot-stuffing gives back the message with each line end (CRLF, bare CR, bare LF) made
 *     CRLF, a final CRLF added when it had none, and each line broken by CRLF SP where its
 *     wire form reached 998 octets (the space counting in the next piece);
 *   - body_has_bare_newline() agrees with a byte-by-byte look at the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "queue/body_encode.h"
#include "tests/fuzz/fuzz.h"

/* The message with every line end made CRLF, a last one added and long lines broken
 * (2 * n + 2 bytes of room). */
static size_t
model_normalize(const char *m, size_t n, char *out)
{
	size_t o = 0, col = 0;

	for (size_t i = 0; i < n; i++) {
		if (col == 0 && m[i] == '.' && (o == 0 || out[o - 1] == '\n'))
			col = 1; /* stuffed on the wire */
		if (m[i] == '\r') {
			if (i + 1 < n && m[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			col = 0;
		} else if (m[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			col = 0;
		} else {
			if (col == 998) {
				memcpy(out + o, "\r\n ", 3);
				o += 3;
				col = 1;
			}
			out[o++] = m[i];
			col++;
		}
	}
	if (o > 0 && (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

/* Undoes dot-stuffing of the lines in e[0..n) (CRLF lines), checking their length; returns
 * the length. */
static size_t
model_unstuff(const char *e, size_t n, char *out)
{
	size_t o = 0, col = 0;
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && e[i] == '.') {
			FUZZ_CHECK(i + 1 < n && e[i + 1] == '.');
			i++;
			col = 1;
		}
		out[o++] = e[i];
		bol = e[i] == '\n';
		col = e[i] == '\r' || e[i] == '\n' ? 0 : col + 1;
		FUZZ_CHECK(col <= 998);
	}
	return o;
}

static bool
model_bare_newline(const char *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
			return true;
		if (m[i] == '\r' && (i + 1 == n || m[i + 1] != '\n'))
			return true;
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	size_t need = body_encode_data_size(msg, size), n, body, norm_len, plain_len;
	char *out, *norm, *plain;
	const char *t;

	FUZZ_CHECK(need >= 3 && need <= 2 * size + 5);
	out = malloc(need);
	FUZZ_CHECK(out != NULL);
	n = body_encode_data(msg, size, out);
	FUZZ_CHECK(n == need);
	FUZZ_CHECK(memcmp(out + n - 3, ".\r\n", 3) == 0);
	FUZZ_CHECK(n == 3 || (n >= 5 && out[n - 5] == '\r' && out[n - 4] == '\n'));
	/* CRLF "." CRLF, or "." CRLF at the very start, appears only at the end. */
	FUZZ_CHECK(n == 3 || memcmp(out, ".\r\n", 3) != 0);
	t = memmem(out, n, "\r\n.\r\n", 5);
	FUZZ_CHECK(n == 3 ? t == NULL : t == out + n - 5);
	FUZZ_CHECK(!body_has_bare_newline(out, n));
	FUZZ_CHECK(!model_bare_newline(out, n));

	body = n - 3;
	norm = malloc(2 * size + 2);
	plain = malloc(body + 1);
	FUZZ_CHECK(norm != NULL && plain != NULL);
	norm_len = model_normalize(msg, size, norm);
	plain_len = model_unstuff(out, body, plain);
	FUZZ_CHECK(plain_len == norm_len && memcmp(plain, norm, norm_len) == 0);

	FUZZ_CHECK(body_has_bare_newline(msg, size) == model_bare_newline(msg, size));
	free(plain);
	free(norm);
	free(out);
	return 0;
}
