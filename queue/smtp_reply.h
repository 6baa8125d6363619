/*
 * smtp_reply — the pure reader of SMTP/LMTP replies from a remote server (RFC 5321 4.2), for
 * the outbound client (pure: no I/O, no allocation).
 *
 * A reply is one or more lines "ddd-text" ending with one line "ddd text" (or just "ddd"),
 * every line with the same code. The reader is fed the bytes as they arrive, in chunks cut
 * anywhere (mid line, between CR and LF); it keeps at most one partial line of its own, so
 * the caller never has to keep bytes it fed. Several pipelined replies in one chunk are read
 * one per call (RFC 2920): on SMTP_REPLY_DONE the caller feeds again from p + *used.
 *
 * What a reply gives (struct smtp_reply):
 *   code   the three-digit reply code, 200..599.
 *   enh    the RFC 3463 enhanced status code of the LAST line ("2.1.5"), "" when that line has
 *          none or a malformed one: class "2"/"4"/"5" equal to the first digit of the code,
 *          subject and detail of 1 to 3 digits each, then SP or the line end.
 *   text   the text of ALL lines joined with one SP (a bounce then quotes the whole
 *          explanation, which servers spread over several lines), each line without its code,
 *          separator and leading enhanced status code (with the SPs after it); bytes outside
 *          0x20..0x7e become '?', so text is safe to log and to quote in a DSN. Truncated to
 *          SMTP_REPLY_TEXT_MAX - 1 bytes (then `truncated` is set); always NUL-terminated.
 *   nlines the number of lines, 1..SMTP_REPLY_LINES_MAX.
 *   caps   the EHLO keywords (RFC 5321 4.1.1.1), only when smtp_reply_reader_expect_ehlo()
 *          was called before the reply and its code is 250; all zero otherwise. The first line
 *          (the server's name) is not a keyword; keywords are matched case-insensitively as the
 *          line's first word; unknown ones are ignored. "SIZE n" gives size_present and size n
 *          (RFC 1870); "SIZE", "SIZE 0" or a value that is not a number of at most 19 digits
 *          gives size 0, meaning no limit advertised.
 *
 * Lines end in CRLF; a bare LF is accepted as a line end too (many servers), with a CR right
 * before it stripped. A CR anywhere else is an ordinary (non-printable) byte.
 *
 * Usage:
 *   struct smtp_reply_reader rd;   // one per connection, lives with the session
 *   struct smtp_reply rep;
 *   smtp_reply_reader_init(&rd);
 *   smtp_reply_reader_expect_ehlo(&rd);          // only before feeding the EHLO reply
 *   while (n > 0) {
 *           size_t used;
 *           enum smtp_reply_result res = smtp_reply_feed(&rd, p, n, &used, &rep);
 *           p += used, n -= used;
 *           if (res == SMTP_REPLY_MORE) break;   // all n bytes kept, wait for more
 *           if (res == SMTP_REPLY_BAD) ...       // defer the message, close the connection
 *           ... act on rep (rep.code, rep.enh, rep.text, rep.caps) ...
 *   }
 *
 * Limits: a line is at most SMTP_REPLY_LINE_MAX bytes with its line end, a reply at most
 * SMTP_REPLY_LINES_MAX lines; the reader holds SMTP_REPLY_LINE_MAX bytes of line buffer.
 *
 * Failure: smtp_reply_feed() returns SMTP_REPLY_BAD, with code 0, enh "" and a short reason
 * in out->text, for a line over SMTP_REPLY_LINE_MAX, a reply over SMTP_REPLY_LINES_MAX lines,
 * a NUL byte, a line that does not start with three digits followed by SP, '-' or the line
 * end, a first digit outside 2..5, or a code that differs from the reply's first line. The
 * reader then stays BAD (each later call returns SMTP_REPLY_BAD, consuming nothing) until
 * smtp_reply_reader_init(); the caller treats it as a temporary failure and closes the
 * connection. Nothing a server sends makes it read out of bounds or abort.
 */
#ifndef RINGMX_SMTP_REPLY_H
#define RINGMX_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX 2048 /* bytes of one line, CRLF included */
#define SMTP_REPLY_LINES_MAX 128 /* lines of one reply */
#define SMTP_REPLY_TEXT_MAX 512  /* bytes of smtp_reply.text, NUL included */
#define SMTP_REPLY_ENH_MAX 16    /* bytes of smtp_reply.enh, NUL included */

enum smtp_reply_result {
	SMTP_REPLY_MORE, /* every byte consumed, no reply complete yet: feed more */
	SMTP_REPLY_DONE, /* one reply in *out; *used bytes consumed, feed the rest again */
	SMTP_REPLY_BAD,  /* malformed or over a limit; reason in out->text */
};

/* EHLO keywords the client acts on (RFC 2920, 3030, 3207, 6152, 6531, 1870, 3461). */
struct smtp_caps {
	bool pipelining, chunking, starttls, eightbitmime, smtputf8, size_present, dsn, binarymime;
	uint64_t size; /* SIZE limit in bytes; 0 = no limit advertised */
};

struct smtp_reply {
	int code;       /* 200..599; 0 with SMTP_REPLY_BAD */
	unsigned nlines;
	bool truncated; /* text was cut at SMTP_REPLY_TEXT_MAX - 1 bytes */
	char enh[SMTP_REPLY_ENH_MAX];
	char text[SMTP_REPLY_TEXT_MAX];
	struct smtp_caps caps;
};

/* State across feeds. Its fields are private to smtp_reply.c. */
struct smtp_reply_reader {
	struct smtp_reply cur; /* the reply being read */
	size_t text_len;       /* strlen(cur.text) */
	size_t line_len;       /* bytes of a partial line held in line[] */
	bool ehlo;             /* the next reply to complete is the EHLO reply */
	bool bad;              /* sticky SMTP_REPLY_BAD */
	const char *bad_reason;
	char line[SMTP_REPLY_LINE_MAX];
};

/* Makes r ready for a new connection (and clears a BAD state). */
void smtp_reply_reader_init(struct smtp_reply_reader *r);

/*
 * Marks the next reply to complete as the EHLO reply, so its keywords are collected into
 * out->caps as its lines pass (no copy of the reply is kept). Cleared when that reply ends.
 */
void smtp_reply_reader_expect_ehlo(struct smtp_reply_reader *r);

/*
 * Reads p[0..n) (p may be NULL when n is 0), stopping at the end of the first complete reply.
 * Returns SMTP_REPLY_DONE with *out filled and *used the bytes consumed up to the end of that
 * reply; SMTP_REPLY_MORE with *used == n when no reply is complete yet (a partial line is kept
 * in r, *out is untouched); SMTP_REPLY_BAD with *out holding the reason (see above), *used the
 * bytes looked at. The caller owns p; nothing points into it after the call.
 */
enum smtp_reply_result smtp_reply_feed(struct smtp_reply_reader *r, const char *p, size_t n,
				       size_t *used, struct smtp_reply *out);

#endif
