/*
 * bench_reply — the pure SMTP reply parser of ringmx-bench; see bench_reply.h.
 */
#include "bench/bench_reply.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "server/assert.h"

_Static_assert(BENCH_REPLY_LINE_MAX >= 512, "RFC 5321 4.5.3.1.5 allows reply lines of 512");

/* The code that starts a complete line of line_len bytes (LF included), or -1. */
static int
reply_line_code(const char *l, size_t line_len)
{
	if (line_len < 4 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || line_len > BENCH_REPLY_LINE_MAX)
		return -1;
	return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
}

long
bench_reply_parse(const char *buf, size_t len, struct bench_reply *out)
{
	size_t off = 0;
	int first = -1;

	ASSERT(buf && out);
	for (;;) {
		const char *l = buf + off;
		const char *nl = memchr(l, '\n', len - off);

		if (!nl)
			return len - off > BENCH_REPLY_LINE_MAX ? BENCH_REPLY_ERROR
								: BENCH_REPLY_NEED_MORE;
		size_t line_len = (size_t)(nl - l) + 1;
		int code = reply_line_code(l, line_len);

		if (code < 0 || (first >= 0 && code != first))
			return BENCH_REPLY_ERROR;
		first = code;
		off += line_len;
		if (l[3] == '-')
			continue;
		if (l[3] != ' ' && l[3] != '\r' && l[3] != '\n')
			return BENCH_REPLY_ERROR;
		*out = (struct bench_reply){.code = code, .p = buf, .len = off};
		ASSERT(off <= len);
		return (long)off;
	}
}

static bool
reply_keyword_is(const char *kw, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(kw, want, len) == 0;
}

unsigned
bench_reply_ehlo_caps(const struct bench_reply *r)
{
	const char *end = r->p + r->len, *line = memchr(r->p, '\n', r->len);
	unsigned caps = 0;

	/* The first line greets; each further line is "250-KEYWORD params" or "250 KEYWORD". */
	while (line && ++line < end) {
		const char *kw = line + 4, *eol = memchr(line, '\n', (size_t)(end - line));
		size_t kwlen = 0;

		if (!eol || eol - line < 4)
			break;
		while (kw + kwlen < eol && kw[kwlen] != ' ' && kw[kwlen] != '\r')
			kwlen++;
		if (reply_keyword_is(kw, kwlen, "PIPELINING"))
			caps |= BENCH_REPLY_CAP_PIPELINING;
		if (reply_keyword_is(kw, kwlen, "CHUNKING"))
			caps |= BENCH_REPLY_CAP_CHUNKING;
		if (reply_keyword_is(kw, kwlen, "SIZE"))
			caps |= BENCH_REPLY_CAP_SIZE;
		if (reply_keyword_is(kw, kwlen, "STARTTLS"))
			caps |= BENCH_REPLY_CAP_STARTTLS;
		line = eol;
	}
	return caps;
}
