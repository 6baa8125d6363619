/*
 * bench_reply — ringmx-bench's pure SMTP reply parser (RFC 5321 4.2) and the EHLO keywords
 * the client acts on. No allocation, no I/O: the client decides what a reply means.
 *
 * A reply is one or more lines with the same three-digit code: "xyz-text" continues it,
 * "xyz text" or a bare "xyz" ends it. bench_reply_parse() reads the one reply that starts at
 * buf and points the result into buf; several replies in one read are taken one call at a
 * time, and a reply cut anywhere (over several reads) asks for more bytes.
 *
 * Usage:
 *   struct bench_reply r;
 *   long n = bench_reply_parse(buf, len, &r);
 *   n > 0: r is a reply of n bytes at buf; call again at buf + n for the next one.
 *   n == BENCH_REPLY_NEED_MORE: append bytes and call again from the same buf.
 *   n == BENCH_REPLY_ERROR: not an SMTP reply; the dialogue cannot go on.
 *   caps = bench_reply_ehlo_caps(&r);     on the reply to EHLO
 *
 * Lenient where counting does not suffer: LF alone ends a line as CRLF does, and the text
 * after the code is not checked. Strict where it does: the first digit is 1..5, the fourth
 * byte is '-', ' ', CR or LF, every line of a reply has the same code.
 *
 * Limits: a line is at most BENCH_REPLY_LINE_MAX bytes, its line end included (RFC 5321
 * 4.5.3.1.5 says 512; we are lenient). The number of lines is not bounded here: the caller's
 * buffer bounds the whole reply (a reply that fills it without ending is the caller's error).
 * Bytes past buf + len are never read.
 *
 * Failure: bench_reply_parse() returns BENCH_REPLY_NEED_MORE (0) when no complete reply is
 * there yet and BENCH_REPLY_ERROR (-1) for a malformed one; *out is written only on success.
 * bench_reply_ehlo_caps() cannot fail: what it does not recognise it ignores.
 */
#ifndef RINGMX_BENCH_REPLY_H
#define RINGMX_BENCH_REPLY_H

#include <stddef.h>

#define BENCH_REPLY_LINE_MAX 1000
#define BENCH_REPLY_NEED_MORE 0L
#define BENCH_REPLY_ERROR (-1L)

/* EHLO keywords (RFC 5321 4.1.1.1), as bits of bench_reply_ehlo_caps(). */
#define BENCH_REPLY_CAP_PIPELINING 1u /* RFC 2920 */
#define BENCH_REPLY_CAP_CHUNKING 2u   /* RFC 3030 */
#define BENCH_REPLY_CAP_SIZE 4u	      /* RFC 1870 */
#define BENCH_REPLY_CAP_STARTTLS 8u   /* RFC 3207 */

/* One complete reply; p points into the caller's buffer. */
struct bench_reply {
	int code;      /* 100..599 */
	const char *p; /* the reply's first byte */
	size_t len;    /* every line with its line end; what bench_reply_parse() returned */
};

/*
 * Parses the reply that starts at buf[0], of which len bytes are there. Returns its length
 * in bytes (> 0) and fills *out, or BENCH_REPLY_NEED_MORE, or BENCH_REPLY_ERROR: a line that
 * does not start with a code, a line longer than BENCH_REPLY_LINE_MAX (or more than that many
 * bytes with no line end yet), a code that changes within the reply, or a fourth byte other
 * than '-', ' ', CR or LF.
 */
long bench_reply_parse(const char *buf, size_t len, struct bench_reply *out);

/*
 * The BENCH_REPLY_CAP_* keywords named on the lines after the first of a 250 reply to EHLO
 * (matched case-insensitively; a keyword ends at ' ', CR or LF, so "SIZE 10240000" counts).
 * Stops at the first line with fewer than four bytes before its LF.
 */
unsigned bench_reply_ehlo_caps(const struct bench_reply *r);

#endif
