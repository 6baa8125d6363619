/*
 * smtp_reply — the reader of SMTP replies; see smtp_reply.h for the contract.
 *
 * One memchr per line finds its LF, bounded by the room left in the line buffer, so a server
 * that never sends a line end costs at most SMTP_REPLY_LINE_MAX bytes. A line that arrives
 * whole in one chunk is parsed in place (the common case); only a line cut by a chunk end is
 * copied into the reader's buffer. The reply being built lives in the reader and is copied to
 * the caller's struct when its last line arrives, so the caller may pass any *out each time.
 */
#include "queue/smtp_reply.h"

#include <stddef.h>
#include <string.h>

#include "queue/assert.h"

/* "5.123.123": class, dot, up to 3 digits, dot, up to 3 digits. */
#define SMTP_ENH_LEN_MAX 9
#define SMTP_SIZE_DIGITS_MAX 19 /* 10^19 - 1 < 2^64 */

_Static_assert(SMTP_ENH_LEN_MAX < SMTP_REPLY_ENH_MAX, "enh fits with its NUL");
_Static_assert(SMTP_REPLY_LINE_MAX >= 512, "RFC 5321 4.5.3.1.5: reply lines up to 512 octets");
_Static_assert(SMTP_REPLY_TEXT_MAX >= 2, "room for one byte and the NUL");
_Static_assert(SMTP_REPLY_LINES_MAX >= 1, "a reply has a line");

/* ASCII only: <ctype.h> depends on the locale. */
static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline char
ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Case-insensitive comparison of s[0..len) with an upper-case literal. */
static bool
word_is(const char *s, size_t len, const char *upper)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (upper[i] == '\0' || ascii_upper(s[i]) != upper[i])
			return false;
	}
	return upper[i] == '\0';
}

static void
reply_reset(struct smtp_reply_reader *r)
{
	r->cur.code = 0;
	r->cur.nlines = 0;
	r->cur.truncated = false;
	r->cur.enh[0] = '\0';
	r->cur.text[0] = '\0';
	memset(&r->cur.caps, 0, sizeof(r->cur.caps));
	r->text_len = 0;
	r->ehlo = false;
}

void
smtp_reply_reader_init(struct smtp_reply_reader *r)
{
	ASSERT(r != NULL);
	memset(r, 0, sizeof(*r));
	reply_reset(r);
}

void
smtp_reply_reader_expect_ehlo(struct smtp_reply_reader *r)
{
	ASSERT(r != NULL);
	r->ehlo = true;
}

static enum smtp_reply_result
reply_bad(struct smtp_reply_reader *r, const char *reason, struct smtp_reply *out)
{
	size_t len = strlen(reason);

	ASSERT(len < sizeof(out->text));
	r->bad = true;
	r->bad_reason = reason;
	out->code = 0;
	out->nlines = r->cur.nlines;
	out->truncated = false;
	out->enh[0] = '\0';
	memcpy(out->text, reason, len + 1);
	memset(&out->caps, 0, sizeof(out->caps));
	return SMTP_REPLY_BAD;
}

/*
 * Parses an RFC 3463 status code at the start of s[0..len) whose class must be `cls` (the
 * reply code's first digit). Copies it NUL-terminated into enh and returns its length, or
 * returns 0 (enh untouched) when there is none. It must end the line or be followed by SP.
 */
static size_t
enh_parse(const char *s, size_t len, char cls, char enh[SMTP_REPLY_ENH_MAX])
{
	size_t i = 2;

	if (cls != '2' && cls != '4' && cls != '5')
		return 0;
	if (len < 5 || s[0] != cls || s[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t start = i;

		while (i < len && i - start < 3 && is_digit(s[i]))
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	ASSERT(i <= SMTP_ENH_LEN_MAX);
	memcpy(enh, s, i);
	enh[i] = '\0';
	return i;
}

/* One EHLO keyword line s[0..len) (RFC 5321 4.1.1.1 ehlo-line: keyword *(SP param)). */
static void
caps_line(struct smtp_caps *caps, const char *s, size_t len)
{
	static const struct {
		const char *keyword;
		size_t offset;
	} flags[] = {
		{"PIPELINING", offsetof(struct smtp_caps, pipelining)},
		{"CHUNKING", offsetof(struct smtp_caps, chunking)},
		{"STARTTLS", offsetof(struct smtp_caps, starttls)},
		{"8BITMIME", offsetof(struct smtp_caps, eightbitmime)},
		{"SMTPUTF8", offsetof(struct smtp_caps, smtputf8)},
		{"DSN", offsetof(struct smtp_caps, dsn)},
		{"BINARYMIME", offsetof(struct smtp_caps, binarymime)},
	};
	size_t k = 0;

	while (k < len && s[k] != ' ')
		k++;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (word_is(s, k, flags[i].keyword)) {
			*(bool *)((char *)caps + flags[i].offset) = true;
			return;
		}
	}
	if (!word_is(s, k, "SIZE"))
		return;
	/* RFC 1870 4: "SIZE" [SP number]; 0 or no number means no fixed maximum. */
	caps->size_present = true;
	caps->size = 0;
	while (k < len && s[k] == ' ')
		k++;
	uint64_t v = 0;
	size_t digits = 0;
	for (; k < len && is_digit(s[k]); k++, digits++) {
		if (digits == SMTP_SIZE_DIGITS_MAX)
			return;
		v = v * 10 + (uint64_t)(s[k] - '0');
	}
	if (k == len || s[k] == ' ')
		caps->size = v;
}

/* Appends one line's text to the reply's, SP-separated, non-printables as '?', bounded. */
static void
text_append(struct smtp_reply_reader *r, const char *s, size_t len)
{
	const size_t cap = SMTP_REPLY_TEXT_MAX - 1;
	char *t = r->cur.text;
	size_t n = r->text_len;

	if (len == 0)
		return;
	if (n > 0) {
		if (cap - n < 2) { /* no room for SP and one byte */
			r->cur.truncated = true;
			return;
		}
		t[n++] = ' ';
	}
	if (len > cap - n) {
		len = cap - n;
		r->cur.truncated = true;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		t[n + i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	n += len;
	t[n] = '\0';
	r->text_len = n;
}

/*
 * One complete line s[0..len), its line end stripped (len < SMTP_REPLY_LINE_MAX). Returns
 * SMTP_REPLY_DONE with *out filled when it was the reply's last line, SMTP_REPLY_MORE when
 * more lines follow, SMTP_REPLY_BAD when it breaks RFC 5321 4.2 or a limit.
 */
static enum smtp_reply_result
reader_line(struct smtp_reply_reader *r, const char *s, size_t len, struct smtp_reply *out)
{
	char enh[SMTP_REPLY_ENH_MAX] = "";

	if (memchr(s, '\0', len) != NULL)
		return reply_bad(r, "NUL byte in reply", out);
	/* RFC 5321 4.2: Reply-code [ SP textstring ] CRLF, or Reply-code "-" [ textstring ]. */
	if (len < 3 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) ||
	    (len > 3 && s[3] != ' ' && s[3] != '-'))
		return reply_bad(r, "malformed reply line", out);
	if (s[0] < '2' || s[0] > '5')
		return reply_bad(r, "reply code out of range", out);
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (r->cur.nlines > 0 && code != r->cur.code)
		return reply_bad(r, "reply code differs between lines", out);
	bool last = len == 3 || s[3] == ' ';
	if (!last && r->cur.nlines + 1 >= SMTP_REPLY_LINES_MAX)
		return reply_bad(r, "too many reply lines", out);
	r->cur.code = code;
	r->cur.nlines++;

	const char *text = len > 3 ? s + 4 : s + len;
	size_t tlen = len > 3 ? len - 4 : 0;
	if (r->ehlo && code == 250 && r->cur.nlines > 1)
		caps_line(&r->cur.caps, text, tlen);
	size_t elen = enh_parse(text, tlen, s[0], enh);
	if (elen > 0) {
		while (elen < tlen && text[elen] == ' ')
			elen++;
		text += elen;
		tlen -= elen;
	}
	text_append(r, text, tlen);
	if (!last)
		return SMTP_REPLY_MORE;
	memcpy(r->cur.enh, enh, sizeof(enh));
	*out = r->cur;
	reply_reset(r);
	return SMTP_REPLY_DONE;
}

enum smtp_reply_result
smtp_reply_feed(struct smtp_reply_reader *r, const char *p, size_t n, size_t *used,
		struct smtp_reply *out)
{
	size_t i = 0;

	ASSERT(r != NULL && used != NULL && out != NULL && (p != NULL || n == 0));
	if (r->bad) {
		*used = 0;
		return reply_bad(r, r->bad_reason, out);
	}
	while (i < n) {
		ASSERT(r->line_len < SMTP_REPLY_LINE_MAX);
		size_t room = SMTP_REPLY_LINE_MAX - r->line_len;
		size_t avail = n - i;
		size_t scan = avail < room ? avail : room;
		const char *lf = memchr(p + i, '\n', scan);

		if (lf == NULL) {
			if (avail >= room) {
				*used = i + scan;
				return reply_bad(r, "reply line too long", out);
			}
			memcpy(r->line + r->line_len, p + i, avail);
			r->line_len += avail;
			break;
		}
		size_t take = (size_t)(lf - (p + i)) + 1;
		const char *s = p + i;
		size_t len = take;
		if (r->line_len > 0) {
			memcpy(r->line + r->line_len, p + i, take);
			s = r->line;
			len = r->line_len + take;
			r->line_len = 0;
		}
		i += take;
		len--; /* the LF */
		if (len > 0 && s[len - 1] == '\r')
			len--;
		enum smtp_reply_result res = reader_line(r, s, len, out);
		if (res != SMTP_REPLY_MORE) {
			*used = i;
			return res;
		}
	}
	*used = n;
	return SMTP_REPLY_MORE;
}
