/*
 * body_encode — the DATA encoding of a stored message; see body_encode.h for the contract.
 *
 * One walk serves both the size and the encoding (out NULL: count only), so the two cannot
 * disagree. It keeps the position of the next CR and of the next LF, each found by memchr and
 * searched again only once the walk has passed it, so every byte is scanned at most once per
 * kind: a CRLF message costs two memchr calls and one memcpy per line, and a message full of
 * bare CRs stays linear. Whichever of the two comes first ends the current line, and
 * put_line() breaks one over BODY_LINE_MAX octets.
 */
#include "queue/body_encode.h"

#include <string.h>

#include "queue/assert.h"

/* Position of the first c in msg[from..len), or len. */
static inline size_t
next_of(const char *msg, size_t from, size_t len, char c)
{
	const char *q = memchr(msg + from, c, len - from);

	return q != NULL ? (size_t)(q - msg) : len;
}

static inline void
put(char *out, size_t *o, const char *s, size_t n)
{
	if (out != NULL)
		memcpy(out + *o, s, n);
	*o += n;
}

/* One line's octets (no line end): room of them at most (BODY_LINE_MAX, less a stuffed '.'
 * already written), then CRLF SPACE and the rest, the space counting in the next piece. */
static void
put_line(char *out, size_t *o, const char *s, size_t n, size_t room)
{
	while (n > room) {
		put(out, o, s, room);
		put(out, o, "\r\n ", 3);
		s += room;
		n -= room;
		room = BODY_LINE_MAX - 1;
	}
	put(out, o, s, n);
}

static size_t
body_encode_walk(const char *msg, size_t len, char *out)
{
	size_t o = 0, i = 0;
	size_t cr = 0, lf = 0; /* next CR and LF at or after i, or len; searched lazily */
	bool searched = false;

	ASSERT(len <= BODY_ENCODE_LEN_MAX);
	ASSERT(msg != NULL || len == 0);
	while (i < len) {
		if (!searched || cr < i)
			cr = next_of(msg, i, len, '\r');
		if (!searched || lf < i)
			lf = next_of(msg, i, len, '\n');
		searched = true;
		/* RFC 5321 4.5.2: a line that starts with a period gets one more. */
		size_t room = BODY_LINE_MAX;
		if (msg[i] == '.') {
			put(out, &o, ".", 1);
			room--;
		}
		if (cr < lf) { /* CRLF, or a bare CR: one line end either way */
			put_line(out, &o, msg + i, cr - i, room);
			i = cr + 1;
			if (i < len && msg[i] == '\n')
				i++;
		} else if (lf < len) { /* a bare LF */
			put_line(out, &o, msg + i, lf - i, room);
			i = lf + 1;
		} else { /* the last line has no line end: add one */
			put_line(out, &o, msg + i, len - i, room);
			i = len;
		}
		put(out, &o, "\r\n", 2);
	}
	put(out, &o, ".\r\n", 3);
	ASSERT(o <= 2 * len + 5);
	return o;
}

size_t
body_encode_data_size(const char *msg, size_t len)
{
	return body_encode_walk(msg, len, NULL);
}

size_t
body_encode_data(const char *msg, size_t len, char *out)
{
	ASSERT(out != NULL);
	return body_encode_walk(msg, len, out);
}

bool
body_has_bare_newline(const char *msg, size_t len)
{
	const char *p, *end = msg + len;

	ASSERT(msg != NULL || len == 0);
	if (len == 0)
		return false;
	for (p = msg; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++) {
		if (p == msg || p[-1] != '\r')
			return true;
	}
	for (p = msg; (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++) {
		if (p + 1 == end || p[1] != '\n')
			return true;
	}
	return false;
}
