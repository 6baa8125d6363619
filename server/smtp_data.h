/*
 * smtp_data — the pure DATA scanner (RFC 5321 4.1.1.4, 4.5.2).
 *
 * Feeds the bytes that follow a 354 reply, in as many pieces as they arrive, and writes the
 * message with dot-stuffing removed into the caller's output buffer. The only end of DATA is
 * CRLF "." CRLF, where the first CRLF is the end of the previous line or the start of DATA.
 * A bare LF or a bare CR (one not part of CRLF) never ends a line and never ends DATA
 * (SMTP smuggling); it is copied through unchanged and reported in scan->flags so the session
 * can apply its policy (reject by default).
 *
 * Usage:
 *   struct smtp_data_scan s; smtp_data_scan_init(&s);
 *   loop: n = smtp_data_scan_feed(&s, in, len, out, &out_len);  // see Memory for out's size
 *         in += n; len -= n; if (s.done) break;
 *
 * Memory: no allocation. Output is never longer than the input consumed, plus at most
 * SMTP_DATA_HOLD_MAX bytes held back from earlier calls (a line start that could still turn
 * out to be the terminator), so `out` needs room for len + SMTP_DATA_HOLD_MAX; it must not
 * overlap `in`.
 * The terminator ".\r\n" itself is not written; the last line's CRLF is.
 */
#ifndef RINGMX_SMTP_DATA_H
#define RINGMX_SMTP_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define SMTP_DATA_HOLD_MAX 3

enum smtp_data_flag {
	SMTP_DATA_BARE_LF = 1u << 0, /* an LF not preceded by CR */
	SMTP_DATA_BARE_CR = 1u << 1, /* a CR not followed by LF */
	SMTP_DATA_NUL = 1u << 2,     /* a NUL byte */
	SMTP_DATA_8BIT = 1u << 3,    /* a byte >= 0x80 */
};

struct smtp_data_scan {
	uint32_t state; /* private */
	uint32_t flags; /* enum smtp_data_flag, accumulated */
	bool done;      /* the terminator was consumed */
	uint64_t in_bytes;  /* bytes consumed so far, terminator included */
	uint64_t out_bytes; /* bytes written so far */
};

void smtp_data_scan_init(struct smtp_data_scan *scan);

/*
 * Consumes input up to and including the terminator. Writes unstuffed message bytes to out
 * and adds their count to *out_len. Returns the number of input bytes consumed: all of len,
 * unless the terminator was found, in which case scan->done is set and the bytes after the
 * terminator (the next pipelined command) are left unconsumed.
 */
size_t smtp_data_scan_feed(struct smtp_data_scan *scan, const char *in, size_t len, char *out,
			   size_t *out_len);

#endif
