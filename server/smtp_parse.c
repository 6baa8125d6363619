/*
 * smtp_parse — the pure SMTP command parser; see smtp_parse.h for the contract.
 *
 * One memchr finds the line end (the hot path), one short loop checks the line's bytes, then a
 * verb table lookup and one small handler per verb family. Everything else is slices into the
 * caller's buffer. It is liberal where RFC 5321 allows (blanks around arguments, spaces after
 * "FROM:", TAB as a blank) and strict where laxness is dangerous (line ends, control bytes,
 * the <path> grammar).
 */
#include "server/smtp_parse.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>

#include "server/assert.h"

/* RFC 5321 4.5.3.1.3: a reverse-path or forward-path is at most 256 octets, "<" ">" included. */
#define SMTP_PATH_MAX_OCTETS 256
#define SMTP_BDAT_DIGITS_MAX 13
#define SMTP_VERB_NAME_MAX 8 /* "STARTTLS" */
#define SMTP_AUTH_MECH_MAX 20 /* RFC 4422 3.1: sasl-mech = 1*20mech-char */

_Static_assert(SMTP_BDAT_SIZE_MAX <= 9999999999999ull, "a valid BDAT size fits in 13 digits");
_Static_assert(SMTP_VERB_BAD == 0, "a zeroed smtp_cmd has no verb");

struct smtp_verb_name {
	char name[SMTP_VERB_NAME_MAX + 1];
	enum smtp_verb verb;
};

/* HTTP methods are recognised so the session can drop a browser or proxy probe at once. */
static const struct smtp_verb_name smtp_verbs[] = {
	{"HELO", SMTP_VERB_HELO},
	{"EHLO", SMTP_VERB_EHLO},
	{"MAIL", SMTP_VERB_MAIL},
	{"RCPT", SMTP_VERB_RCPT},
	{"DATA", SMTP_VERB_DATA},
	{"BDAT", SMTP_VERB_BDAT},
	{"RSET", SMTP_VERB_RSET},
	{"NOOP", SMTP_VERB_NOOP},
	{"QUIT", SMTP_VERB_QUIT},
	{"VRFY", SMTP_VERB_VRFY},
	{"HELP", SMTP_VERB_HELP},
	{"STARTTLS", SMTP_VERB_STARTTLS},
	{"AUTH", SMTP_VERB_AUTH},
	{"EXPN", SMTP_VERB_EXPN},
	{"ETRN", SMTP_VERB_ETRN},
	{"GET", SMTP_VERB_HTTP},
	{"POST", SMTP_VERB_HTTP},
	{"HEAD", SMTP_VERB_HTTP},
	{"PUT", SMTP_VERB_HTTP},
	{"CONNECT", SMTP_VERB_HTTP},
	{"OPTIONS", SMTP_VERB_HTTP},
};

/* ASCII-only classes: <ctype.h> depends on the locale and misclassifies bytes >= 0x80. */
static inline bool
is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static inline bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline unsigned char
ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* RFC 5321 4.1.2 atext, plus UTF8-non-ascii bytes (RFC 6531 3.3). */
static bool
is_local_char(unsigned char c)
{
	return is_alnum(c) || c >= 0x80 || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Let-dig / Ldh-str (RFC 5321 4.1.2), '_' tolerated as Postfix does, U-labels (RFC 6531). */
static bool
is_label_char(unsigned char c)
{
	return is_alnum(c) || c == '-' || c == '_' || c >= 0x80;
}

/* RFC 5321 4.1.2 esmtp-value: %d33-60 / %d62-126, plus UTF-8 for SMTPUTF8 (RFC 6531 3.3). */
static inline bool
is_param_value_char(unsigned char c)
{
	return (c >= 33 && c <= 126 && c != '=') || c >= 0x80;
}

static inline bool
is_upper_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

static bool
mem_eq_nocase(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ascii_upper((unsigned char)a[i]) != ascii_upper((unsigned char)b[i]))
			return false;
	}
	return true;
}

static inline const char *
skip_blanks(const char *p, const char *end)
{
	while (p < end && is_blank((unsigned char)*p))
		p++;
	return p;
}

static inline struct smtp_slice
slice_of(const char *from, const char *to)
{
	ASSERT(from <= to);
	return (struct smtp_slice){from, (size_t)(to - from)};
}

static void
cmd_bad(struct smtp_cmd *cmd, enum smtp_parse_error error)
{
	ASSERT(cmd->verb != SMTP_VERB_BAD && error != SMTP_ERR_NONE);
	cmd->bad_verb = cmd->verb;
	cmd->verb = SMTP_VERB_BAD;
	cmd->error = error;
	cmd->path = (struct smtp_slice){NULL, 0};
	cmd->params = (struct smtp_slice){NULL, 0};
	cmd->path_utf8 = false;
	cmd->bdat_size = 0;
	cmd->bdat_last = false;
	cmd->auth_mech = (struct smtp_slice){NULL, 0};
	cmd->auth_resp = (struct smtp_slice){NULL, 0};
}

/*
 * Only TAB and bytes >= 0x80 (SMTPUTF8) may appear besides printable ASCII. A bare CR or a NUL
 * inside a command is how line-end confusion attacks start; nothing legitimate sends them.
 */
static bool
line_bytes_ok(const char *p, const char *end)
{
	for (; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

/* Finds the verb token; HTTP methods count only when followed by a blank ("GET /"). */
static enum smtp_verb
verb_lookup(const char *tok, size_t len, bool followed_by_blank)
{
	if (len == 0 || len > SMTP_VERB_NAME_MAX)
		return SMTP_VERB_UNKNOWN;
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		const struct smtp_verb_name *v = &smtp_verbs[i];
		if (v->name[len] != '\0' || !mem_eq_nocase(tok, v->name, len))
			continue;
		if (v->verb == SMTP_VERB_HTTP && !followed_by_blank)
			return SMTP_VERB_UNKNOWN;
		return v->verb;
	}
	return SMTP_VERB_UNKNOWN;
}

/* Splits cmd->line into the verb and its argument, blanks around the argument stripped. */
static void
line_split(struct smtp_cmd *cmd)
{
	const char *p = cmd->line.p, *end = p + cmd->line.len;
	const char *tok = p;

	while (p < end && !is_blank((unsigned char)*p))
		p++;
	cmd->verb = verb_lookup(tok, (size_t)(p - tok), p < end);
	p = skip_blanks(p, end);
	while (end > p && is_blank((unsigned char)end[-1]))
		end--;
	cmd->arg = slice_of(p, end);
}

/*
 * Dot-separated runs of `in_run` bytes (RFC 5321 4.1.2 Dot-string, Domain). Every run must be
 * non-empty, which rejects an empty string, a leading or trailing dot and consecutive dots.
 * Returns the end of the match or NULL.
 */
static const char *
scan_dotted(const char *p, const char *end, bool (*in_run)(unsigned char))
{
	for (;;) {
		const char *run = p;
		while (p < end && in_run((unsigned char)*p))
			p++;
		if (p == run)
			return NULL;
		if (p == end || *p != '.')
			return p;
		p++;
	}
}

/* RFC 5321 4.1.2 Quoted-string with UTF-8 in qtextSMTP (RFC 6531 3.3); p is at the '"'. */
static const char *
scan_quoted(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p + 1;
		if (c == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (++p == end || (unsigned char)*p < 32 || (unsigned char)*p > 126)
				return NULL;
		} else if (c < 32 || c == 127) {
			return NULL;
		}
	}
	return NULL;
}

/*
 * address-literal (RFC 5321 4.1.3): "[" IPv4 "]" or "[IPv6:" IPv6 "]". General-address-literal
 * tags are refused: none is registered besides IPv6, and nothing legitimate sends one.
 */
static const char *
scan_literal(const char *p, const char *end)
{
	char text[INET6_ADDRSTRLEN + 1];
	unsigned char addr[16];
	const char *close = memchr(p, ']', (size_t)(end - p));
	const char *s = p + 1;
	int family = AF_INET;

	if (close == NULL)
		return NULL;
	if (close - s > 5 && mem_eq_nocase(s, "IPv6:", 5)) {
		family = AF_INET6;
		s += 5;
	}
	if ((size_t)(close - s) >= sizeof(text))
		return NULL;
	memcpy(text, s, (size_t)(close - s));
	text[close - s] = '\0';
	return inet_pton(family, text, addr) == 1 ? close + 1 : NULL;
}

/*
 * A-d-l ":" (RFC 5321 4.1.2). Appendix C: servers MUST accept source routes and MAY ignore
 * them, which we do; only the mailbox after the ':' is kept.
 */
static const char *
scan_route(const char *p, const char *end)
{
	for (;;) {
		if (p == end || *p != '@')
			return NULL;
		p = scan_dotted(p + 1, end, is_label_char);
		if (p == NULL || p == end)
			return NULL;
		if (*p == ':')
			return p + 1;
		if (*p != ',')
			return NULL;
		p++;
	}
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), or "Postmaster" (RFC 5321 4.1.1.3). */
static const char *
scan_mailbox(const char *p, const char *end, bool postmaster_ok)
{
	const char *local = p;

	if (p < end && *p == '"')
		p = scan_quoted(p, end);
	else
		p = scan_dotted(p, end, is_local_char);
	if (p == NULL)
		return NULL;
	if (p < end && *p == '@') {
		p++;
		if (p < end && *p == '[')
			return scan_literal(p, end);
		return scan_dotted(p, end, is_label_char);
	}
	if (postmaster_ok && p - local == 10 && mem_eq_nocase(local, "postmaster", 10))
		return p;
	return NULL;
}

/*
 * Parses "<" [ A-d-l ":" ] Mailbox ">" or "<>" (RFC 5321 4.1.2) starting at p. The scan never
 * looks past SMTP_PATH_MAX_OCTETS, so a longer path fails for want of its '>'.
 * Returns true with *path (route stripped) and *after (just past the '>') set.
 */
static bool
path_parse(const char *p, const char *end, bool rcpt, struct smtp_slice *path, const char **after)
{
	const char *q, *mailbox;
	bool route;

	if ((size_t)(end - p) > SMTP_PATH_MAX_OCTETS)
		end = p + SMTP_PATH_MAX_OCTETS;
	if (p == end || *p != '<')
		return false;
	q = p + 1;
	if (q < end && *q == '>') {
		/* The null reverse-path (RFC 5321 4.5.5) is for MAIL only. */
		*path = slice_of(q, q);
		*after = q + 1;
		return !rcpt;
	}
	route = q < end && *q == '@';
	if (route && (q = scan_route(q, end)) == NULL)
		return false;
	mailbox = q;
	q = scan_mailbox(q, end, rcpt && !route);
	if (q == NULL || q == end || *q != '>')
		return false;
	*path = slice_of(mailbox, q);
	*after = q + 1;
	return true;
}

static bool
slice_has_8bit(struct smtp_slice s)
{
	for (size_t i = 0; i < s.len; i++) {
		if ((unsigned char)s.p[i] >= 0x80)
			return true;
	}
	return false;
}

/* "MAIL FROM:<path> [params]" / "RCPT TO:<path> [params]" (RFC 5321 4.1.1.2, 4.1.1.3). */
static void
parse_mail_rcpt(struct smtp_cmd *cmd, bool rcpt)
{
	const char *kw = rcpt ? "TO:" : "FROM:";
	size_t kw_len = strlen(kw);
	const char *p = cmd->arg.p, *end = p + cmd->arg.len, *after;

	if (cmd->arg.len < kw_len || !mem_eq_nocase(p, kw, kw_len)) {
		cmd_bad(cmd, SMTP_ERR_SYNTAX);
		return;
	}
	/* No space belongs after the ':', but clients send one; Postfix accepts it too. */
	p = skip_blanks(p + kw_len, end);
	if (!path_parse(p, end, rcpt, &cmd->path, &after)) {
		cmd_bad(cmd, SMTP_ERR_PATH);
		return;
	}
	/* Parameters are separated from the path by SP (RFC 5321 4.1.1.2). */
	if (after < end && !is_blank((unsigned char)*after)) {
		cmd_bad(cmd, SMTP_ERR_SYNTAX);
		return;
	}
	cmd->params = slice_of(skip_blanks(after, end), end);
	cmd->path_utf8 = slice_has_8bit(cmd->path);
}

/* "BDAT" SP chunk-size [ SP end-marker ] (RFC 3030 2). */
static void
parse_bdat(struct smtp_cmd *cmd)
{
	const char *p = cmd->arg.p, *end = p + cmd->arg.len, *digits = p;
	uint64_t size = 0;

	if (p == end) {
		cmd_bad(cmd, SMTP_ERR_ARG_MISSING);
		return;
	}
	for (; p < end && !is_blank((unsigned char)*p); p++) {
		if (!is_digit((unsigned char)*p) || p - digits == SMTP_BDAT_DIGITS_MAX) {
			cmd_bad(cmd, SMTP_ERR_BDAT_SIZE);
			return;
		}
		size = size * 10 + (uint64_t)(*p - '0');
	}
	if (size > SMTP_BDAT_SIZE_MAX) {
		cmd_bad(cmd, SMTP_ERR_BDAT_SIZE);
		return;
	}
	p = skip_blanks(p, end);
	if (p < end && !(end - p == 4 && mem_eq_nocase(p, "LAST", 4))) {
		cmd_bad(cmd, SMTP_ERR_SYNTAX);
		return;
	}
	cmd->bdat_size = size;
	cmd->bdat_last = p < end;
}

/*
 * "AUTH" SP sasl-mech [ SP initial-response ] (RFC 4954 4). The mechanism is 1 to 20 characters
 * (RFC 4422 3.1; lower case tolerated); the response is one token, left for the session to
 * decode so that it can answer a bad one with 501 5.5.2.
 */
static void
parse_auth(struct smtp_cmd *cmd)
{
	const char *p = cmd->arg.p, *end = p + cmd->arg.len, *mech = p;

	while (p < end && (is_alnum((unsigned char)*p) || *p == '-' || *p == '_'))
		p++;
	if (p == mech || p - mech > SMTP_AUTH_MECH_MAX ||
	    (p < end && !is_blank((unsigned char)*p))) {
		cmd_bad(cmd, SMTP_ERR_SYNTAX);
		return;
	}
	cmd->auth_mech = slice_of(mech, p);
	p = skip_blanks(p, end);
	for (const char *q = p; q < end; q++) {
		if (is_blank((unsigned char)*q)) {
			cmd_bad(cmd, SMTP_ERR_SYNTAX);
			return;
		}
	}
	cmd->auth_resp = slice_of(p, end);
}

/* One handler per verb family; checking what the verb may do in this state is the session's. */
static void
parse_args(struct smtp_cmd *cmd)
{
	switch (cmd->verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		parse_mail_rcpt(cmd, cmd->verb == SMTP_VERB_RCPT);
		break;
	case SMTP_VERB_BDAT:
		parse_bdat(cmd);
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
	case SMTP_VERB_ETRN:
		if (cmd->arg.len == 0)
			cmd_bad(cmd, SMTP_ERR_ARG_MISSING);
		break;
	case SMTP_VERB_AUTH:
		if (cmd->arg.len == 0)
			cmd_bad(cmd, SMTP_ERR_ARG_MISSING);
		else
			parse_auth(cmd);
		break;
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		if (cmd->arg.len != 0)
			cmd_bad(cmd, SMTP_ERR_ARG_UNWANTED);
		break;
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
	case SMTP_VERB_HTTP:
	case SMTP_VERB_UNKNOWN:
		break;
	default:
		ASSERT(!"verb_lookup returned an impossible verb");
	}
}

long
smtp_parse_line(const char *buf, size_t len, size_t max_line, struct smtp_slice *line,
		enum smtp_parse_error *error)
{
	size_t window = len < max_line ? len : max_line;
	const char *lf, *end;

	ASSERT(line != NULL && error != NULL && (buf != NULL || len == 0));
	ASSERT(max_line >= 2 && max_line <= (size_t)LONG_MAX);
	lf = window ? memchr(buf, '\n', window) : NULL;
	if (lf == NULL)
		return len >= max_line ? SMTP_PARSE_TOO_LONG : 0;
	end = lf > buf && lf[-1] == '\r' ? lf - 1 : lf;
	*line = slice_of(buf, end);
	if (end == lf)
		*error = SMTP_ERR_BARE_LF; /* RFC 5321 2.3.8: only CRLF ends a line */
	else if (!line_bytes_ok(buf, end))
		*error = SMTP_ERR_BAD_CHAR;
	else
		*error = SMTP_ERR_NONE;
	return (long)(lf - buf) + 1;
}

long
smtp_parse_command(const char *buf, size_t len, size_t max_line, struct smtp_cmd *cmd)
{
	struct smtp_slice line;
	enum smtp_parse_error error;
	long r;

	ASSERT(cmd != NULL);
	r = smtp_parse_line(buf, len, max_line, &line, &error);
	if (r <= 0)
		return r;
	memset(cmd, 0, sizeof(*cmd));
	cmd->line = line;
	line_split(cmd);
	if (error != SMTP_ERR_NONE)
		cmd_bad(cmd, error);
	else
		parse_args(cmd);
	return r;
}

int
smtp_param_next(struct smtp_slice params, size_t *pos, struct smtp_param *out)
{
	const char *p, *end, *key, *value;

	ASSERT(pos != NULL && out != NULL && *pos <= params.len);
	if (params.len == 0)
		return 0;
	end = params.p + params.len;
	p = skip_blanks(params.p + *pos, end);
	if (p == end) {
		*pos = params.len;
		return 0;
	}
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") (RFC 5321 4.1.2) */
	key = p;
	if (!is_alnum((unsigned char)*p))
		return -1;
	while (p < end && (is_alnum((unsigned char)*p) || *p == '-'))
		p++;
	out->key = slice_of(key, p);
	out->value = (struct smtp_slice){NULL, 0};
	if (p < end && *p == '=') {
		value = ++p;
		while (p < end && is_param_value_char((unsigned char)*p))
			p++;
		if (p == value)
			return -1;
		out->value = slice_of(value, p);
	}
	if (p < end && !is_blank((unsigned char)*p))
		return -1;
	*pos = (size_t)(p - params.p);
	return 1;
}

bool
smtp_slice_eq(struct smtp_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && mem_eq_nocase(s.p, lit, n);
}

bool
smtp_path_domain(struct smtp_slice path, struct smtp_slice *local, struct smtp_slice *domain)
{
	const char *p = path.p, *end = p + path.len, *from = p, *at;

	ASSERT(local != NULL && domain != NULL);
	*local = path;
	*domain = (struct smtp_slice){NULL, 0};
	if (path.len == 0)
		return false;
	/* An '@' inside a quoted local part ("a@b"@c) is not the separator. */
	if (*p == '"') {
		from = scan_quoted(p, end);
		if (from == NULL)
			return false;
	}
	at = memrchr(from, '@', (size_t)(end - from));
	if (at == NULL)
		return false;
	*local = slice_of(p, at);
	*domain = slice_of(at + 1, end);
	return true;
}

bool
smtp_xtext_valid(struct smtp_slice value)
{
	const unsigned char *p = (const unsigned char *)value.p;

	for (size_t i = 0; i < value.len; i++) {
		if (p[i] == '+') {
			/* hexchar = "+" 2(upper-case hex digit) (RFC 3461 4) */
			if (value.len - i < 3 || !is_upper_hex(p[i + 1]) || !is_upper_hex(p[i + 2]))
				return false;
			i += 2;
		} else if (p[i] < 33 || p[i] > 126 || p[i] == '=') {
			return false;
		}
	}
	return true;
}
