/*
 * bench_msg — ringmx-bench's generated messages and command lines; see bench_msg.h.
 */
#include "bench/bench_msg.h"
#include "bench/bench_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/assert.h"

_Static_assert(BENCH_MSG_LINE_BYTES >= 3 && BENCH_MSG_LINE_BYTES <= 78,
	       "a body line holds at least one byte and CRLF, and RFC 5322 2.1.1 asks for 78");

struct bench_msg_set {
	struct bench_msg msg[BENCH_SIZES_MAX];
	uint32_t weight_cum[BENCH_SIZES_MAX]; /* running sums of the size weights */
	uint32_t weight_total;
	unsigned n;
};

/* ---- messages ------------------------------------------------------------------------- */

/* RFC 5322 3.3 date in UTC without locale-dependent names. */
static size_t
msg_date(char *out, size_t cap, uint64_t date_s)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char mons[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)date_s;
	struct tm tm;

	gmtime_r(&t, &tm);
	return (size_t)snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
				tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
				tm.tm_min, tm.tm_sec);
}

void
bench_msg_build(char *buf, size_t size, uint64_t date_s)
{
	static const char fill[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char date[64];
	char hdr[BENCH_SIZE_MIN_BYTES];

	ASSERT(size >= BENCH_SIZE_MIN_BYTES);
	msg_date(date, sizeof(date), date_s);
	int n = snprintf(hdr, sizeof(hdr),
			 "From: ringmx-bench <bench@ringmx.test>\r\n"
			 "To: <user@localhost>\r\n"
			 "Subject: ringmx-bench %zu bytes\r\n"
			 "Date: %s\r\n"
			 "Message-ID: <ringmx-bench.%zu@ringmx.test>\r\n"
			 "\r\n",
			 size, date, size);
	/* The headers must leave room for one body line of at least 1 byte + CRLF. */
	ASSERT(n > 0 && (size_t)n + 3 <= size);
	memcpy(buf, hdr, (size_t)n);

	size_t off = (size_t)n, line = 0;

	while (off < size) {
		size_t left = size - off;
		size_t len = left < BENCH_MSG_LINE_BYTES ? left : BENCH_MSG_LINE_BYTES;

		/* A remainder of 1 or 2 bytes could not be a line of its own: shorten this one. */
		if (left - len == 1 || left - len == 2)
			len = left - 3;
		for (size_t i = 0; i < len - 2; i++)
			buf[off + i] = fill[(line + i) % (sizeof(fill) - 1)];
		buf[off + len - 2] = '\r';
		buf[off + len - 1] = '\n';
		off += len;
		line++;
	}
	ASSERT(off == size);
	memcpy(buf + size, ".\r\n", 3);
}

struct bench_msg_set *
bench_msg_set_new(const struct bench_size *sizes, unsigned n, uint64_t date_s, char *err,
		  size_t errlen)
{
	struct bench_msg_set *s = calloc(1, sizeof(*s));
	uint32_t cum = 0;

	ASSERT(n > 0 && n <= BENCH_SIZES_MAX);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->n = n;
	for (unsigned i = 0; i < n; i++) {
		size_t size = sizes[i].bytes;

		s->msg[i].data = malloc(size + 3);
		if (!s->msg[i].data) {
			snprintf(err, errlen, "out of memory for a %zu-byte message", size);
			bench_msg_set_free(s);
			return NULL;
		}
		bench_msg_build(s->msg[i].data, size, date_s);
		s->msg[i].len = size;
		cum += sizes[i].weight; /* <= 16 * BENCH_WEIGHT_MAX: no overflow */
		s->weight_cum[i] = cum;
	}
	s->weight_total = cum;
	ASSERT(cum > 0);
	return s;
}

void
bench_msg_set_free(struct bench_msg_set *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < BENCH_SIZES_MAX; i++)
		free(s->msg[i].data);
	free(s);
}

const struct bench_msg *
bench_msg_set_pick(const struct bench_msg_set *s, uint64_t r)
{
	if (s->n == 1)
		return &s->msg[0];
	uint32_t w = (uint32_t)(r % s->weight_total);
	unsigned i = 0;

	while (w >= s->weight_cum[i])
		i++;
	ASSERT(i < s->n);
	return &s->msg[i];
}

/* ---- command lines -------------------------------------------------------------------- */

size_t
bench_msg_cmd_size_max(const struct bench_opts *o)
{
	size_t mail = sizeof("MAIL FROM:<> SIZE=\r\n") + o->from_pat.max_len + BENCH_U64_DIGITS;
	size_t rcpt = sizeof("RCPT TO:<>\r\n") + o->to_pat.max_len;
	size_t last = sizeof("BDAT  LAST\r\n") + BENCH_U64_DIGITS;
	size_t group = mail + (size_t)o->rcpts * rcpt + last;
	size_t ehlo = sizeof("EHLO \r\n") + BENCH_HELO_MAX;

	return group > ehlo ? group : ehlo;
}

static size_t
cmd_put(char *out, const char *s, size_t len)
{
	memcpy(out, s, len);
	return len;
}

#define PUT(out, lit) cmd_put((out), (lit), sizeof(lit) - 1)

size_t
bench_msg_put_ehlo(char *out, const char *name)
{
	size_t n = PUT(out, "EHLO ");

	n += cmd_put(out + n, name, strlen(name));
	return n + PUT(out + n, "\r\n");
}

size_t
bench_msg_put_helo(char *out, const char *name)
{
	size_t n = PUT(out, "HELO ");

	n += cmd_put(out + n, name, strlen(name));
	return n + PUT(out + n, "\r\n");
}

size_t
bench_msg_put_mail(char *out, const struct bench_pattern *from, uint64_t seq, uint64_t size_bytes)
{
	size_t n = PUT(out, "MAIL FROM:<");

	n += bench_opts_pattern_expand(from, seq, 0, out + n);
	n += PUT(out + n, ">");
	if (size_bytes) {
		/* RFC 1870: declaring the size lets the server refuse early, as real clients do. */
		n += PUT(out + n, " SIZE=");
		n += bench_opts_u64_to_dec(size_bytes, out + n);
	}
	return n + PUT(out + n, "\r\n");
}

size_t
bench_msg_put_rcpt(char *out, const struct bench_pattern *to, uint64_t seq, unsigned rcpt)
{
	size_t n = PUT(out, "RCPT TO:<");

	n += bench_opts_pattern_expand(to, seq, rcpt, out + n);
	return n + PUT(out + n, ">\r\n");
}

size_t
bench_msg_put_bdat(char *out, uint64_t size_bytes)
{
	size_t n = PUT(out, "BDAT ");

	n += bench_opts_u64_to_dec(size_bytes, out + n);
	return n + PUT(out + n, " LAST\r\n");
}
