/*
 * fuzz_smtp_parse — libFuzzer harness for server/smtp_parse (the command parser).
 *
 * Input: one byte choosing max_line, then a buffer of pipelined command lines. Every command in
 * it is parsed as the session does (smtp_session.c command_feed): parse, advance by what was
 * consumed, skip the rest of a line reported too long. For each command it checks the
 * contract of smtp_parse.h (consumed bytes end at the first LF, slices inside the line,
 * BAD exactly when an error is set, no control byte in an accepted line, a path within its
 * 256-octet bound, AUTH's mechanism and initial response where RFC 4954 4 puts them and
 * nowhere else), walks the ESMTP parameters and splits the path as the session does, and
 * checks that the line parses the same on its own, in a buffer of exactly its size, and is
 * incomplete without its LF.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/smtp_parse.h"
#include "tests/fuzz/fuzz.h"

static const size_t max_lines[] = {2, 3, 16, 64, 512, 1000, 2048, 4096};

static bool
line_has_ctl(struct smtp_slice s)
{
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

/* Walks MAIL/RCPT parameters like mail_params() in smtp_session.c. */
static void
check_params(const struct smtp_cmd *cmd)
{
	struct smtp_param prm;
	size_t pos = 0, last = 0;
	int r, n = 0;

	while ((r = smtp_param_next(cmd->params, &pos, &prm)) > 0) {
		FUZZ_CHECK(pos > last || n == 0);
		FUZZ_CHECK(pos <= cmd->params.len);
		FUZZ_CHECK(prm.key.len > 0 &&
			   fuzz_within(prm.key.p, prm.key.len, cmd->params.p, cmd->params.len));
		FUZZ_CHECK(fuzz_within(prm.value.p, prm.value.len, cmd->params.p, cmd->params.len));
		FUZZ_CHECK((prm.value.p == NULL) == (prm.value.len == 0));
		(void)smtp_slice_eq(prm.key, "SIZE");
		(void)smtp_slice_eq(prm.value, "8BITMIME");
		if (smtp_slice_eq(prm.key, "ORCPT") || smtp_slice_eq(prm.key, "ENVID"))
			(void)smtp_xtext_valid(prm.value);
		last = pos;
		FUZZ_CHECK(++n <= (int)cmd->params.len);
	}
	FUZZ_CHECK(r == 0 || r == -1);
}

static void
check_path(const struct smtp_cmd *cmd)
{
	struct smtp_slice local, domain;
	bool utf8 = false;

	FUZZ_CHECK(fuzz_within(cmd->path.p, cmd->path.len, cmd->arg.p, cmd->arg.len));
	FUZZ_CHECK(fuzz_within(cmd->params.p, cmd->params.len, cmd->arg.p, cmd->arg.len));
	FUZZ_CHECK(cmd->path.len <= 256 - 2); /* RFC 5321 4.5.3.1.3, "<" ">" included */
	FUZZ_CHECK(cmd->verb == SMTP_VERB_MAIL || cmd->path.len > 0);
	for (size_t i = 0; i < cmd->path.len; i++)
		utf8 |= (unsigned char)cmd->path.p[i] >= 0x80;
	FUZZ_CHECK(utf8 == cmd->path_utf8);
	if (smtp_path_domain(cmd->path, &local, &domain)) {
		FUZZ_CHECK(local.p == cmd->path.p);
		FUZZ_CHECK(local.len + 1 + domain.len == cmd->path.len);
		FUZZ_CHECK(local.p[local.len] == '@');
	} else {
		FUZZ_CHECK(local.p == cmd->path.p && local.len == cmd->path.len);
		FUZZ_CHECK(domain.len == 0);
	}
	check_params(cmd);
}

/*
 * "AUTH" SP mechanism [SP initial-response] (RFC 4954 4): the mechanism opens the argument and
 * is 1 to 20 of A-Z a-z 0-9 '-' '_' (RFC 4422 3.1); a response is the rest of the argument after
 * blanks, one token with no blank in it; without one, the argument is the mechanism alone.
 */
static void
check_auth(const struct smtp_cmd *cmd)
{
	struct smtp_slice m = cmd->auth_mech, resp = cmd->auth_resp;

	FUZZ_CHECK(m.p == cmd->arg.p && m.len >= 1 && m.len <= 20 && m.len <= cmd->arg.len);
	for (size_t i = 0; i < m.len; i++) {
		char ch = m.p[i];
		FUZZ_CHECK((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_');
	}
	if (resp.len == 0) {
		FUZZ_CHECK(m.len == cmd->arg.len);
		return;
	}
	FUZZ_CHECK(fuzz_within(resp.p, resp.len, cmd->arg.p, cmd->arg.len));
	FUZZ_CHECK(resp.p + resp.len == cmd->arg.p + cmd->arg.len);
	FUZZ_CHECK(resp.p > m.p + m.len); /* at least one blank between */
	for (const char *q = m.p + m.len; q < resp.p; q++)
		FUZZ_CHECK(*q == ' ' || *q == '\t');
	FUZZ_CHECK(memchr(resp.p, ' ', resp.len) == NULL && memchr(resp.p, '\t', resp.len) == NULL);
}

static void
check_cmd(const char *buf, size_t r, const struct smtp_cmd *cmd)
{
	bool bare_lf = r < 2 || buf[r - 2] != '\r';

	FUZZ_CHECK(cmd->line.p == buf && cmd->line.len == r - (bare_lf ? 1 : 2));
	FUZZ_CHECK(fuzz_within(cmd->arg.p, cmd->arg.len, cmd->line.p, cmd->line.len));
	FUZZ_CHECK(cmd->verb < SMTP_VERB_COUNT && cmd->bad_verb < SMTP_VERB_COUNT);
	if (cmd->verb != SMTP_VERB_AUTH) /* the AUTH slices are AUTH's alone */
		FUZZ_CHECK(cmd->auth_mech.len == 0 && cmd->auth_resp.len == 0);
	if (cmd->verb == SMTP_VERB_BAD) {
		FUZZ_CHECK(cmd->error != SMTP_ERR_NONE);
		FUZZ_CHECK(cmd->bad_verb != SMTP_VERB_BAD);
		FUZZ_CHECK(cmd->path.len == 0 && cmd->params.len == 0 && cmd->bdat_size == 0);
		FUZZ_CHECK((cmd->error == SMTP_ERR_BARE_LF) == bare_lf);
		return;
	}
	FUZZ_CHECK(cmd->error == SMTP_ERR_NONE && !bare_lf);
	FUZZ_CHECK(!line_has_ctl(cmd->line));
	switch (cmd->verb) {
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		check_path(cmd);
		break;
	case SMTP_VERB_BDAT:
		FUZZ_CHECK(cmd->bdat_size <= SMTP_BDAT_SIZE_MAX);
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		FUZZ_CHECK(cmd->arg.len > 0);
		break;
	case SMTP_VERB_AUTH:
		FUZZ_CHECK(cmd->arg.len > 0);
		check_auth(cmd);
		break;
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		FUZZ_CHECK(cmd->arg.len == 0);
		break;
	default:
		break;
	}
}

/* The line alone, in a buffer of exactly its size: same result; without its LF: incomplete. */
static void
check_alone(const char *buf, size_t r, size_t max_line, const struct smtp_cmd *cmd)
{
	char *copy = fuzz_dup(buf, r);
	struct smtp_cmd again;
	long r2 = smtp_parse_command(copy, r, max_line, &again);

	FUZZ_CHECK(r2 == (long)r);
	FUZZ_CHECK(again.verb == cmd->verb && again.error == cmd->error &&
		   again.bad_verb == cmd->bad_verb);
	FUZZ_CHECK(again.arg.len == cmd->arg.len && again.arg.p - copy == cmd->arg.p - buf);
	FUZZ_CHECK(again.path.len == cmd->path.len && again.params.len == cmd->params.len);
	FUZZ_CHECK(again.bdat_size == cmd->bdat_size && again.bdat_last == cmd->bdat_last);
	FUZZ_CHECK(again.auth_mech.len == cmd->auth_mech.len &&
		   (cmd->auth_mech.len == 0 || again.auth_mech.p - copy == cmd->auth_mech.p - buf));
	FUZZ_CHECK(again.auth_resp.len == cmd->auth_resp.len &&
		   (cmd->auth_resp.len == 0 || again.auth_resp.p - copy == cmd->auth_resp.p - buf));
	FUZZ_CHECK(smtp_parse_command(copy, r - 1, max_line, &again) == 0);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data + 1;
	size_t n, max_line;

	if (size == 0)
		return 0;
	max_line = max_lines[data[0] % (sizeof(max_lines) / sizeof(max_lines[0]))];
	n = size - 1;
	while (n > 0) {
		struct smtp_cmd cmd;
		long r = smtp_parse_command(p, n, max_line, &cmd);

		if (r == 0) {
			FUZZ_CHECK(n < max_line && memchr(p, '\n', n) == NULL);
			break;
		}
		if (r == SMTP_PARSE_TOO_LONG) {
			/* The session answers 500 and skips to the next LF. */
			const char *lf = memchr(p, '\n', n);

			FUZZ_CHECK(n >= max_line && memchr(p, '\n', max_line) == NULL);
			if (lf == NULL)
				break;
			n -= (size_t)(lf - p) + 1;
			p = lf + 1;
			continue;
		}
		FUZZ_CHECK(r > 0 && (size_t)r <= n && (size_t)r <= max_line);
		FUZZ_CHECK(p[r - 1] == '\n' && memchr(p, '\n', (size_t)r - 1) == NULL);
		check_cmd(p, (size_t)r, &cmd);
		check_alone(p, (size_t)r, max_line, &cmd);
		p += r;
		n -= (size_t)r;
	}
	return 0;
}
