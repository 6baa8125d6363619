/*
 * dsn — builds a delivery status notification (a bounce or a delay warning) as a complete
 * RFC 5322 message: multipart/report (RFC 6522) with a delivery-status part (RFC 3464, the
 * SMTP form of RFC 3461). Pure: it formats into a malloc'ed buffer and does no I/O.
 *
 * The message has three parts, in this order (RFC 6522 section 3):
 *   1. text/plain; charset=utf-8 — a human-readable explanation, one paragraph per recipient
 *      with its remote reply;
 *   2. message/delivery-status — Reporting-MTA, X-Ringmx-Queue-ID and Arrival-Date, then per
 *      recipient Final-Recipient, Action, Status, Remote-MTA (when known), Diagnostic-Code
 *      (when known), Last-Attempt-Date and, for delays, Will-Retry-Until (when given);
 *   3. text/rfc822-headers — the original header section only (up to the first empty line),
 *      at most DSN_HEADERS_MAX bytes, cut at a line end. The body is never returned.
 *
 * Usage:
 *   struct dsn_rcpt r = {.addr = rcpt, .action = DSN_ACTION_FAILED, .status = "5.1.1",
 *                        .remote_mta = mx, .diagnostic = reply, .last_attempt_ms = t};
 *   struct dsn_params p = {.host = "mx.test", .sender = from, .qid = "0123456789abcdef",
 *                          .arrival_ms = arr, .now_ms = now, .kind = DSN_FAILURE,
 *                          .msg = msg, .msg_len = len, .rcpts = &r, .nrcpt = 1};
 *   size_t n;
 *   char *bounce = dsn_build(&p, &n);   // free() it
 *
 * The module does not decide the envelope. The caller sends the result with the null reverse
 * path MAIL FROM:<> (RFC 5321 section 4.5.5, RFC 3464 section 2) to p->sender, and never
 * builds a DSN for a message whose own sender is null (asserted: that would start a bounce
 * loop). When the original went with BODY=8BITMIME or SMTPUTF8, the caller sends the DSN with
 * the same parameters: 8-bit bytes in the original headers are kept as they are, a non-ASCII
 * (valid UTF-8) sender is written into To: and non-ASCII recipients into the text part as
 * UTF-8 (RFC 6532); a part holding 8-bit bytes is labelled Content-Transfer-Encoding: 8bit.
 * For an all-ASCII original everything the module writes is 7-bit ASCII.
 *
 * Untrusted text is sanitised, so a hostile remote reply or address cannot add a header,
 * end a part early or break a line limit:
 *   - diagnostic text: CR, LF and TAB become one space, runs of spaces collapse, every other
 *     byte outside printable ASCII (NUL, controls, DEL, 8-bit) becomes '?', and it is cut to
 *     DSN_DIAG_MAX bytes (ending in "...");
 *   - addresses: control bytes become '?'; the remote MTA name: anything but printable
 *     ASCII without spaces becomes '?'; both are cut to DSN_ADDR_MAX bytes.
 *     A recipient with non-ASCII bytes is written as "Final-Recipient: utf-8; " in the
 *     utf-8-addr-xtext form of RFC 6533 section 3 (each non-ASCII code point, '+', '=', '\'
 *     and space as \x{HEX}); one that is not valid UTF-8 stays "rfc822;" with '?' for the
 *     bad bytes;
 *   - a status that is not a RFC 3463 code (d.d{1,3}.d{1,3}, class 2, 4 or 5) becomes 5.0.0
 *     for "failed" and 4.0.0 for "delayed";
 *   - the boundary is chosen after the parts are built and is changed until it occurs nowhere
 *     in them (the first try is "=_ringmx_<qid>_<now>"; the next ones mix in a hash of the
 *     content, so no content can be made to contain them all);
 *   - every line ends in CRLF and holds at most DSN_LINE_MAX octets (RFC 5322 section 2.1.1
 *     allows 998): header fields are folded at spaces near 78 columns, and a run without a
 *     space longer than DSN_LINE_MAX is broken with CRLF SP. In the original headers, a bare
 *     CR or LF becomes CRLF, NUL becomes '?', and a longer line is broken the same way.
 *
 * Message-ID is <qid.now_ms.F|D@host>: unique as long as one message gets at most one DSN of
 * each kind per millisecond (the caller reports all recipients of an attempt in one DSN).
 * Dates are RFC 5322 section 3.3 date-times in UTC ("+0000"), independent of the locale.
 *
 * Limits: at most SPOOL_RCPT_MAX recipients; strings are taken with their lengths and may
 * hold any bytes. The host name and the qid come from our own configuration and spool, so
 * they are asserted (host: 1..255 bytes of printable ASCII without spaces; qid: 16 hex digits).
 *
 * Failure: dsn_build() returns NULL only when memory runs out (errno is ENOMEM).
 */
#ifndef RINGMX_DSN_H
#define RINGMX_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "queue/spool_record.h" /* struct spool_str */

#define DSN_HEADERS_MAX (64 * 1024) /* original header bytes returned in part 3 */
#define DSN_DIAG_MAX 1000	    /* diagnostic text bytes, after sanitising */
#define DSN_ADDR_MAX 1024	    /* address and remote MTA bytes, after sanitising */
#define DSN_LINE_MAX 990	    /* octets on one output line, CRLF not counted */

enum dsn_kind {
	DSN_FAILURE, /* "Undelivered Mail Returned to Sender" */
	DSN_DELAY,   /* "Delayed Mail (still being retried)" */
};

enum dsn_action {
	DSN_ACTION_FAILED,  /* Action: failed */
	DSN_ACTION_DELAYED, /* Action: delayed */
};

struct dsn_rcpt {
	struct spool_str addr; /* the recipient as given in RCPT TO, without <> */
	enum dsn_action action;
	const char *status;	     /* RFC 3463 code, e.g. "5.1.1" (NUL-terminated) */
	struct spool_str remote_mta; /* host that answered; empty when none was reached */
	struct spool_str diagnostic; /* its reply, e.g. "550 5.1.1 no such user"; may be empty */
	uint64_t last_attempt_ms;    /* ms since the epoch */
};

struct dsn_params {
	const char *host;	 /* reporting MTA, e.g. "mx.test" (NUL-terminated) */
	struct spool_str sender; /* the original envelope sender: the DSN goes there; not empty */
	const char *qid;	 /* the original queue id, 16 hex digits (NUL-terminated) */
	uint64_t arrival_ms;	 /* when the original was accepted, ms since the epoch */
	uint64_t now_ms;	 /* Date: of the DSN */
	uint64_t retry_until_ms; /* DSN_DELAY: Will-Retry-Until; 0 leaves it out */
	enum dsn_kind kind;
	const char *msg; /* the original message: CRLF lines, headers, empty line, body */
	size_t msg_len;
	const struct dsn_rcpt *rcpts;
	size_t nrcpt; /* 1..SPOOL_RCPT_MAX */
};

/*
 * Builds the DSN described by p. Returns a malloc'ed buffer the caller frees, holding
 * *len_out bytes followed by a NUL (not counted) for convenience; or NULL with errno ENOMEM.
 * Nothing in p is kept.
 */
char *dsn_build(const struct dsn_params *p, size_t *len_out);

#endif
