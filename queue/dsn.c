/*
 * dsn — formats delivery status notifications (the message layout is in dsn.h).
 *
 * The three parts are built first into their own buffers, so that the boundary can be chosen
 * knowing everything it must not collide with; then the top-level headers and the parts are
 * put together. All output goes through two writers: put_line() for lines we compose (folded
 * at spaces, hard-broken past DSN_LINE_MAX) and put_raw_line() for the original headers. Every
 * untrusted string goes through a sanitiser before either, so no CR, LF or NUL from outside
 * ever reaches the output except as a line end we write ourselves.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/assert.h"
#include "queue/dsn.h"

#define FOLD_COLS 78	/* RFC 5322 section 2.1.1: SHOULD be at most 78 characters */
#define BOUNDARY_MAX 70 /* RFC 2046 section 5.1.1 */
#define HOST_MAX 255
#define QID_LEN 16
#define PRINTF_MAX 512 /* holds the longest fixed-shape piece: a line with the host name */

_Static_assert(DSN_LINE_MAX <= 998, "RFC 5322 section 2.1.1 line limit");
_Static_assert(FOLD_COLS < DSN_LINE_MAX, "soft fold width below the hard limit");
_Static_assert(PRINTF_MAX > HOST_MAX + 100, "buf_printf() pieces with a host name");
_Static_assert(DSN_DIAG_MAX > 3 && DSN_ADDR_MAX > 3, "room for the cut marker");

/* A growing output buffer. After a failed allocation it ignores writes and stays failed. */
struct buf {
	char *p;
	size_t len;
	size_t cap;
	bool oom;
};

static bool
buf_reserve(struct buf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->cap - b->len >= n)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n) {
		ASSERT(cap <= SIZE_MAX / 2);
		cap *= 2;
	}
	char *np = realloc(b->p, cap);
	if (!np) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = cap;
	return true;
}

static void
buf_put(struct buf *b, const void *s, size_t n)
{
	if (n == 0 || !buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void
buf_putc(struct buf *b, char c)
{
	buf_put(b, &c, 1);
}

__attribute__((format(printf, 2, 3))) static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[PRINTF_MAX];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	ASSERT(n >= 0 && (size_t)n < sizeof tmp); /* only short, fixed-shape pieces come here */
	buf_put(b, tmp, (size_t)n);
}

/*
 * Writes s[0..n) (no CR, LF or NUL in it) as one logical line ending in CRLF. A line longer
 * than FOLD_COLS is folded at its last space before that column (the space is replaced by
 * CRLF + indent); a run without spaces is kept whole up to DSN_LINE_MAX octets and broken
 * there. Trailing spaces are dropped so that no continuation line is only whitespace, which
 * a header parser could take for the end of the header section.
 */
static void
put_line(struct buf *b, const char *s, size_t n, const char *indent)
{
	size_t ind = strlen(indent);
	bool first = true;

	ASSERT(ind < FOLD_COLS / 2);
	while (n > 0 && s[n - 1] == ' ')
		n--;
	for (;;) {
		size_t soft = FOLD_COLS - (first ? 0 : ind);
		size_t hard = DSN_LINE_MAX - (first ? 0 : ind);
		size_t cut = 0;

		if (n <= soft)
			break;
		for (size_t i = soft; i >= 1 && !cut; i--)
			if (s[i] == ' ' && i + 1 < n)
				cut = i;
		for (size_t i = soft + 1; i < n - 1 && i <= hard && !cut; i++)
			if (s[i] == ' ')
				cut = i;
		bool at_space = cut != 0;
		if (!at_space) {
			if (n <= hard)
				break;
			cut = hard;
		}
		buf_put(b, s, cut);
		buf_put(b, "\r\n", 2);
		buf_put(b, indent, ind);
		s += cut + at_space;
		n -= cut + at_space;
		first = false;
	}
	buf_put(b, s, n);
	buf_put(b, "\r\n", 2);
}

/* put_line() for a line composed in the scratch buffer, which it then empties. */
static void
put_scratch(struct buf *b, struct buf *scratch, const char *indent)
{
	if (!scratch->oom)
		put_line(b, scratch->p ? scratch->p : "", scratch->len, indent);
	else
		b->oom = true;
	scratch->len = 0;
}

/*
 * Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates, at
 * most U+10FFFF) with its code point in *cp; 0 when the bytes there are not one.
 */
static size_t
utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/*
 * Diagnostic text: CR, LF, TAB and space runs become one space, anything else outside
 * printable ASCII becomes '?', leading and trailing spaces go, at most DSN_DIAG_MAX bytes
 * (a cut one ends in "...").
 */
static void
sanitize_diag(struct buf *out, struct spool_str s)
{
	size_t start = out->len;
	bool space = true;

	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (out->len - start >= DSN_DIAG_MAX - 3) {
			buf_puts(out, "...");
			return;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (!space)
				buf_putc(out, ' ');
			space = true;
			continue;
		}
		buf_putc(out, c > 0x20 && c < 0x7f ? (char)c : '?');
		space = false;
	}
	while (out->len > start && out->p[out->len - 1] == ' ')
		out->len--;
}

/*
 * An address or host name: control bytes and DEL become '?'; 8-bit bytes are kept where they
 * form valid UTF-8 and utf8 is set, else '?'; at most DSN_ADDR_MAX bytes (cut at a character).
 */
static void
sanitize_addr(struct buf *out, struct spool_str s, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s.p;
	size_t start = out->len;

	for (size_t i = 0; i < s.len;) {
		uint32_t cp;
		size_t n = utf8 ? utf8_seq(u + i, s.len - i, &cp) : (u[i] < 0x80);

		if (out->len - start + (n ? n : 1) > DSN_ADDR_MAX)
			return;
		if (n == 1 && (u[i] < 0x20 || u[i] == 0x7f))
			buf_putc(out, '?');
		else if (n >= 1)
			buf_put(out, u + i, n);
		else
			buf_putc(out, '?');
		i += n ? n : 1;
	}
}

/* A host name (the remote MTA): printable ASCII without spaces, else '?'; DSN_ADDR_MAX bytes. */
static void
sanitize_host(struct buf *out, struct spool_str s)
{
	size_t n = s.len < DSN_ADDR_MAX ? s.len : DSN_ADDR_MAX;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s.p[i];

		buf_putc(out, c > 0x20 && c < 0x7f ? (char)c : '?');
	}
}

/* True when s is all printable ASCII (space included). */
static bool
is_printable_ascii(struct spool_str s)
{
	for (size_t i = 0; i < s.len; i++)
		if ((unsigned char)s.p[i] < 0x20 || (unsigned char)s.p[i] > 0x7e)
			return false;
	return true;
}

/* True when s is valid UTF-8 without control characters. */
static bool
is_clean_utf8(struct spool_str s)
{
	const unsigned char *u = (const unsigned char *)s.p;

	for (size_t i = 0; i < s.len;) {
		uint32_t cp;
		size_t n = utf8_seq(u + i, s.len - i, &cp);

		if (n == 0 || cp < 0x20 || cp == 0x7f)
			return false;
		i += n;
	}
	return true;
}

/*
 * The address of a Final-Recipient field, type included (RFC 3464 section 2.3.2). ASCII:
 * "rfc822; addr". Valid UTF-8: "utf-8; " + utf-8-addr-xtext (RFC 6533 section 3), where a
 * code point outside QCHAR ('!'..'~' less '+', '=' and '\') is written \x{HEX}. Anything
 * else: "rfc822; " with '?' for what cannot be written.
 */
static void
put_final_recipient(struct buf *out, struct spool_str a)
{
	const unsigned char *u = (const unsigned char *)a.p;

	if (is_printable_ascii(a) || !is_clean_utf8(a)) {
		buf_puts(out, "Final-Recipient: rfc822; ");
		sanitize_addr(out, a, false);
		return;
	}
	buf_puts(out, "Final-Recipient: utf-8; ");
	size_t start = out->len;
	for (size_t i = 0; i < a.len && out->len - start < DSN_ADDR_MAX;) {
		uint32_t cp;
		size_t n = utf8_seq(u + i, a.len - i, &cp);

		ASSERT(n > 0); /* is_clean_utf8() */
		if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' && cp != '\\')
			buf_putc(out, (char)cp);
		else
			buf_printf(out, cp < 0x100 ? "\\x{%02X}" : "\\x{%X}", (unsigned)cp);
		i += n;
	}
}

/* An RFC 5322 section 3.3 date-time in UTC, spelled out without the locale. */
static void
put_date(struct buf *b, uint64_t ms)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms / 1000 > (uint64_t)253402300799ull || !gmtime_r(&t, &tm)) {
		t = 0; /* past 9999-12-31: a corrupt time, not a date we can write */
		gmtime_r(&t, &tm);
	}
	buf_printf(b, "%s, %02d %s %04d %02d:%02d:%02d +0000", wday[tm.tm_wday], tm.tm_mday,
		   mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* RFC 3463 section 2: class "." subject "." detail, class 2, 4 or 5, up to 3 digits each. */
static bool
status_valid(const char *s)
{
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		int digits = 0;

		while (*s >= '0' && *s <= '9' && digits < 4) {
			s++;
			digits++;
		}
		if (digits < 1 || digits > 3)
			return false;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static const char *
rcpt_status(const struct dsn_rcpt *r)
{
	if (status_valid(r->status))
		return r->status;
	return r->action == DSN_ACTION_DELAYED ? "4.0.0" : "5.0.0";
}

/* The human-readable paragraph for one recipient, e.g. "<a@b>: host mx said: 550 ...". */
static void
put_rcpt_text(struct buf *b, struct buf *t, const struct dsn_rcpt *r)
{
	buf_putc(t, '<');
	sanitize_addr(t, r->addr, true);
	buf_puts(t, ">: ");
	if (r->remote_mta.len) {
		buf_puts(t, "host ");
		sanitize_host(t, r->remote_mta);
		buf_puts(t, r->diagnostic.len ? " said: " : ": ");
	}
	if (r->diagnostic.len)
		sanitize_diag(t, r->diagnostic);
	else
		buf_printf(t, "%s (status %s)",
			   r->action == DSN_ACTION_DELAYED ? "delivery is delayed"
							   : "delivery failed",
			   rcpt_status(r));
	put_scratch(b, t, "    ");
}

/* Part 1: the explanation for people. */
static void
build_text(struct buf *b, struct buf *t, const struct dsn_params *p, bool headers_cut)
{
	buf_printf(t, "This is the mail system at host %s.", p->host);
	put_scratch(b, t, "");
	buf_puts(b, "\r\n");
	if (p->kind == DSN_DELAY) {
		buf_puts(b,
			 "####################################################################\r\n"
			 "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
			 "####################################################################\r\n"
			 "\r\n");
		buf_puts(t, "Your message could not be delivered yet to the recipients below. "
			    "The mail system will keep trying");
		if (p->retry_until_ms) {
			buf_puts(t, " until ");
			put_date(t, p->retry_until_ms);
		}
		buf_putc(t, '.');
	} else {
		buf_puts(t, "I'm sorry to have to inform you that your message could not be "
			    "delivered to one or more recipients. It is not returned; its headers "
			    "are attached.");
	}
	put_scratch(b, t, "");
	buf_puts(b, "\r\n");
	if (headers_cut) {
		buf_printf(t,
			   "(The headers of your message are longer than %d bytes; only the "
			   "first lines are attached.)",
			   DSN_HEADERS_MAX);
		put_scratch(b, t, "");
		buf_puts(b, "\r\n");
	}
	for (size_t i = 0; i < p->nrcpt; i++) {
		if (i > 0)
			buf_puts(b, "\r\n");
		put_rcpt_text(b, t, &p->rcpts[i]);
	}
}

/* Part 2: the machine-readable report, RFC 3464 section 2.2 and 2.3. */
static void
build_status(struct buf *b, struct buf *t, const struct dsn_params *p)
{
	buf_printf(b, "Reporting-MTA: dns; %s\r\n", p->host);
	buf_printf(b, "X-Ringmx-Queue-ID: %s\r\n", p->qid);
	buf_puts(b, "Arrival-Date: ");
	put_date(b, p->arrival_ms);
	buf_puts(b, "\r\n");
	for (size_t i = 0; i < p->nrcpt; i++) {
		const struct dsn_rcpt *r = &p->rcpts[i];
		bool delayed = r->action == DSN_ACTION_DELAYED;

		buf_puts(b, "\r\n");
		put_final_recipient(t, r->addr);
		put_scratch(b, t, " ");
		buf_printf(b, "Action: %s\r\n", delayed ? "delayed" : "failed");
		buf_printf(b, "Status: %s\r\n", rcpt_status(r));
		if (r->remote_mta.len) {
			buf_puts(t, "Remote-MTA: dns; ");
			sanitize_host(t, r->remote_mta);
			put_scratch(b, t, " ");
		}
		if (r->diagnostic.len) {
			buf_puts(t, "Diagnostic-Code: smtp; ");
			sanitize_diag(t, r->diagnostic);
			put_scratch(b, t, " ");
		}
		buf_puts(b, "Last-Attempt-Date: ");
		put_date(b, r->last_attempt_ms);
		buf_puts(b, "\r\n");
		if (delayed && p->retry_until_ms) {
			buf_puts(b, "Will-Retry-Until: ");
			put_date(b, p->retry_until_ms);
			buf_puts(b, "\r\n");
		}
	}
}

/*
 * Length of the header section of msg: up to and including the line end before the first
 * empty line, or all of msg when it has none (a message without a body).
 */
static size_t
header_section_len(const char *msg, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (msg[i] == '\n' || (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n'))
			return i;
		const char *nl = memchr(msg + i, '\n', len - i);
		if (!nl)
			return len;
		i = (size_t)(nl - msg) + 1;
	}
	return len;
}

/* One original header line (no line end in it): NUL → '?', broken with CRLF SP when long. */
static void
put_raw_line(struct buf *b, const char *s, size_t n)
{
	size_t room = DSN_LINE_MAX;

	while (!b->oom) {
		size_t k = n < room ? n : room;

		for (size_t i = 0; i < k; i++)
			buf_putc(b, s[i] ? s[i] : '?');
		s += k;
		n -= k;
		buf_put(b, "\r\n", 2);
		if (n == 0)
			return;
		buf_putc(b, ' ');
		room = DSN_LINE_MAX - 1;
	}
}

/*
 * Part 3: the original header section, at most DSN_HEADERS_MAX bytes of it, cut after a line
 * end. CRLF, a bare LF and a bare CR each end a line and are written as CRLF. Returns true
 * when it was cut.
 */
static bool
build_headers(struct buf *b, const struct dsn_params *p)
{
	size_t len = header_section_len(p->msg, p->msg_len);
	bool cut = false;

	if (len > DSN_HEADERS_MAX) {
		const char *nl = memrchr(p->msg, '\n', DSN_HEADERS_MAX);

		len = nl ? (size_t)(nl - p->msg) + 1 : 0;
		cut = true;
	}
	for (size_t i = 0; i < len;) {
		size_t j = i;

		while (j < len && p->msg[j] != '\r' && p->msg[j] != '\n')
			j++;
		put_raw_line(b, p->msg + i, j - i);
		if (j < len && p->msg[j] == '\r' && j + 1 < len && p->msg[j + 1] == '\n')
			j++;
		i = j + 1;
	}
	return cut;
}

static bool
has_8bit(const struct buf *b)
{
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->p[i] >= 0x80)
			return true;
	return false;
}

static bool
buf_contains(const struct buf *b, const char *s)
{
	return b->len && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

static uint64_t
mix64(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * A boundary that occurs in none of the parts (RFC 2046 section 5.1.1: it MUST NOT appear in
 * the encapsulated material). The first try is predictable; the later ones depend on a hash
 * of all the content, so content cannot be crafted to hold them ahead of time, and each try
 * costs one pass over the parts.
 */
static void
choose_boundary(char out[BOUNDARY_MAX + 1], const struct dsn_params *p, struct buf *parts[3])
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	snprintf(out, BOUNDARY_MAX + 1, "=_ringmx_%s_%llx", p->qid, (unsigned long long)p->now_ms);
	for (uint64_t i = 0;; i++) {
		if (!buf_contains(parts[0], out) && !buf_contains(parts[1], out) &&
		    !buf_contains(parts[2], out))
			return;
		if (i == 0)
			for (int k = 0; k < 3; k++)
				for (size_t j = 0; j < parts[k]->len; j++)
					h = (h ^ (unsigned char)parts[k]->p[j]) * 0x100000001b3ull;
		snprintf(out, BOUNDARY_MAX + 1, "=_ringmx_%s_%016llx", p->qid,
			 (unsigned long long)mix64(h + i));
	}
}

/* The top-level header section and the empty line after it. */
static void
build_top(struct buf *b, struct buf *t, const struct dsn_params *p, const char *boundary)
{
	bool delay = p->kind == DSN_DELAY;

	buf_printf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", p->host);
	buf_puts(t, "To: <");
	sanitize_addr(t, p->sender, true);
	buf_putc(t, '>');
	put_scratch(b, t, " ");
	buf_printf(b, "Subject: %s\r\n",
		   delay ? "Delayed Mail (still being retried)"
			 : "Undelivered Mail Returned to Sender");
	buf_puts(b, "Date: ");
	put_date(b, p->now_ms);
	buf_puts(b, "\r\n");
	buf_printf(b, "Message-ID: <%s.%llu.%c@%s>\r\n", p->qid, (unsigned long long)p->now_ms,
		   delay ? 'D' : 'F', p->host);
	buf_puts(b, "Auto-Submitted: auto-replied\r\n"); /* RFC 3834 section 5 */
	buf_puts(b, "MIME-Version: 1.0\r\n");
	buf_printf(t,
		   "Content-Type: multipart/report; report-type=delivery-status; boundary=\"%s\"",
		   boundary);
	put_scratch(b, t, " ");
	buf_puts(b, "\r\n");
}

static void
put_part(struct buf *b, const char *boundary, const char *headers, const struct buf *body)
{
	buf_printf(b, "--%s\r\n", boundary);
	buf_puts(b, headers);
	if (has_8bit(body))
		buf_puts(b, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(b, "\r\n");
	buf_put(b, body->p, body->len);
	buf_puts(b, "\r\n"); /* this CRLF belongs to the delimiter (RFC 2046 section 5.1.1) */
}

static void
check_params(const struct dsn_params *p)
{
	size_t hl = strlen(p->host);

	ASSERT(hl >= 1 && hl <= HOST_MAX);
	for (size_t i = 0; i < hl; i++)
		ASSERT(p->host[i] > 0x20 && p->host[i] < 0x7f);
	ASSERT(strlen(p->qid) == QID_LEN && strspn(p->qid, "0123456789abcdefABCDEF") == QID_LEN);
	ASSERT(p->sender.p && p->sender.len > 0); /* never a DSN to the null sender */
	ASSERT(p->msg || p->msg_len == 0);
	ASSERT(p->kind == DSN_FAILURE || p->kind == DSN_DELAY);
	ASSERT(p->rcpts && p->nrcpt >= 1 && p->nrcpt <= SPOOL_RCPT_MAX);
	for (size_t i = 0; i < p->nrcpt; i++) {
		const struct dsn_rcpt *r = &p->rcpts[i];

		ASSERT(r->action == DSN_ACTION_FAILED || r->action == DSN_ACTION_DELAYED);
		ASSERT(r->status);
		ASSERT(r->addr.p || r->addr.len == 0);
		ASSERT(r->remote_mta.p || r->remote_mta.len == 0);
		ASSERT(r->diagnostic.p || r->diagnostic.len == 0);
	}
}

char *
dsn_build(const struct dsn_params *p, size_t *len_out)
{
	struct buf text = {0}, status = {0}, hdrs = {0}, scratch = {0}, out = {0};
	struct buf *parts[3] = {&text, &status, &hdrs};
	char boundary[BOUNDARY_MAX + 1];

	ASSERT(p && len_out);
	check_params(p);
	bool cut = build_headers(&hdrs, p);
	build_text(&text, &scratch, p, cut);
	build_status(&status, &scratch, p);
	choose_boundary(boundary, p, parts);

	build_top(&out, &scratch, p, boundary);
	buf_puts(&out, "This is a MIME-encapsulated message.\r\n\r\n");
	put_part(&out, boundary,
		 "Content-Description: Notification\r\n"
		 "Content-Type: text/plain; charset=utf-8\r\n",
		 &text);
	put_part(&out, boundary,
		 "Content-Description: Delivery report\r\n"
		 "Content-Type: message/delivery-status\r\n",
		 &status);
	put_part(&out, boundary,
		 "Content-Description: Undelivered Message Headers\r\n"
		 "Content-Type: text/rfc822-headers\r\n",
		 &hdrs);
	buf_printf(&out, "--%s--\r\n", boundary);
	buf_putc(&out, '\0');

	bool oom = text.oom || status.oom || hdrs.oom || scratch.oom || out.oom;
	free(text.p);
	free(status.p);
	free(hdrs.p);
	free(scratch.p);
	if (oom) {
		free(out.p);
		errno = ENOMEM;
		return NULL;
	}
	*len_out = out.len - 1;
	return out.p;
}
