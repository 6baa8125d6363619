/*
 * Unit tests for server/smtp_parse: a table of every verb and every malformed form, each input
 * also fed cut at every byte boundary, pipelined batches, line-length limits, ESMTP parameters
 * and xtext. Inputs sit at the very end of a mapping whose next page is PROT_NONE, so reading
 * one byte past them crashes the test.
 */
#include "server/smtp_parse.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_LINE 512

#include "tests/unit/guard.h"

static long
parse_guarded(const char *src, size_t len, size_t max_line, struct smtp_cmd *cmd)
{
	struct guard g = guard_place(src, len);
	long n = smtp_parse_command(g.p, len, max_line, cmd);

	/* Rebase the slices onto src so they stay valid after the guard goes. */
	if (n > 0) {
		struct smtp_slice *s[] = {&cmd->line,	   &cmd->arg,	    &cmd->path,
					  &cmd->params,	   &cmd->auth_mech, &cmd->auth_resp};
		for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
			if (s[i]->p != NULL) {
				cr_assert(s[i]->p >= g.p && s[i]->p + s[i]->len <= g.p + n);
				s[i]->p = src + (s[i]->p - g.p);
			}
		}
	}
	guard_free(&g);
	return n;
}

static bool
slice_is(struct smtp_slice s, const char *want)
{
	return s.len == strlen(want) && (s.len == 0 || memcmp(s.p, want, s.len) == 0);
}

#define assert_slice(s, want)                                                                  \
	cr_assert(slice_is((s), (want)), "%s is \"%.*s\", want \"%s\"", #s, (int)(s).len,      \
		  (s).p ? (s).p : "", (want))

static bool
cmd_same(const struct smtp_cmd *a, const struct smtp_cmd *b)
{
	return a->verb == b->verb && a->error == b->error && a->bad_verb == b->bad_verb &&
	       a->line.len == b->line.len && !memcmp(a->line.p, b->line.p, a->line.len) &&
	       a->arg.len == b->arg.len && !memcmp(a->arg.p, b->arg.p, a->arg.len) &&
	       a->path.len == b->path.len &&
	       (!a->path.len || !memcmp(a->path.p, b->path.p, a->path.len)) &&
	       a->params.len == b->params.len &&
	       (!a->params.len || !memcmp(a->params.p, b->params.p, a->params.len)) &&
	       a->path_utf8 == b->path_utf8 && a->bdat_size == b->bdat_size &&
	       a->bdat_last == b->bdat_last;
}

/* One table row: an input line (CRLF included) and what it must parse to. */
struct row {
	const char *in;
	size_t len;
	enum smtp_verb verb;
	enum smtp_parse_error error;
	enum smtp_verb bad_verb;
	const char *arg;    /* NULL: not checked */
	const char *path;   /* NULL: not checked */
	const char *params; /* NULL: not checked */
	bool utf8;
	uint64_t bdat_size;
	bool bdat_last;
};

#define OK(s, v, ...) {.in = s, .len = sizeof(s) - 1, .verb = SMTP_VERB_##v, __VA_ARGS__}
#define BAD(s, e, bv)                                                                          \
	{.in = s, .len = sizeof(s) - 1, .error = SMTP_ERR_##e, .bad_verb = SMTP_VERB_##bv}

/*
 * Each valid row is also fed as every shorter prefix, which must give 0 (need more). Each row
 * is parsed in a guard buffer, so the parser may not read past the LF it found.
 */
static void
check_row(const struct row *r)
{
	struct smtp_cmd cmd;
	long n;

	for (size_t k = 0; k < r->len; k++) {
		cr_assert_eq(parse_guarded(r->in, k, MAX_LINE, &cmd), 0, "prefix %zu of \"%s\"", k,
			     r->in);
	}
	n = parse_guarded(r->in, r->len, MAX_LINE, &cmd);
	cr_assert_eq(n, (long)r->len, "\"%s\": consumed %ld", r->in, n);
	cr_assert_eq(cmd.verb, r->verb, "\"%s\": verb %d, want %d", r->in, cmd.verb, r->verb);
	cr_assert_eq(cmd.error, r->error, "\"%s\": error %d, want %d", r->in, cmd.error, r->error);
	if (r->verb == SMTP_VERB_BAD) {
		cr_assert_eq(cmd.bad_verb, r->bad_verb, "\"%s\": bad_verb %d, want %d", r->in,
			     cmd.bad_verb, r->bad_verb);
		cr_assert_eq(cmd.path.len, 0);
		cr_assert_eq(cmd.params.len, 0);
		return;
	}
	if (r->arg)
		assert_slice(cmd.arg, r->arg);
	if (r->path)
		assert_slice(cmd.path, r->path);
	if (r->params)
		assert_slice(cmd.params, r->params);
	cr_assert_eq(cmd.path_utf8, r->utf8, "\"%s\": path_utf8", r->in);
	cr_assert_eq(cmd.bdat_size, r->bdat_size, "\"%s\": bdat_size", r->in);
	cr_assert_eq(cmd.bdat_last, r->bdat_last, "\"%s\": bdat_last", r->in);
}

static void
check_rows(const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_row(&rows[i]);
}

#define CHECK_ROWS(rows) check_rows((rows), sizeof(rows) / sizeof((rows)[0]))

Test(smtp_parse, every_verb_parses_case_insensitively_with_its_argument)
{
	static const struct row rows[] = {
		OK("HELO example.com\r\n", HELO, .arg = "example.com"),
		OK("helo x\r\n", HELO, .arg = "x"),
		OK("EHLO [192.0.2.1]\r\n", EHLO, .arg = "[192.0.2.1]"),
		OK("EhLo\texample.com \t\r\n", EHLO, .arg = "example.com"),
		OK("EHLO  two words\r\n", EHLO, .arg = "two words"),
		OK("MAIL FROM:<a@b.example>\r\n", MAIL, .path = "a@b.example", .params = ""),
		OK("RCPT TO:<c@d.example>\r\n", RCPT, .path = "c@d.example", .params = ""),
		OK("DATA\r\n", DATA, .arg = ""),
		OK("data\r\n", DATA, .arg = ""),
		OK("DATA \r\n", DATA, .arg = ""),
		OK("RSET\r\n", RSET, .arg = ""),
		OK("QUIT\r\n", QUIT, .arg = ""),
		OK("StartTLS\r\n", STARTTLS, .arg = ""),
		OK("NOOP\r\n", NOOP, .arg = ""),
		OK("NOOP whatever you like\r\n", NOOP, .arg = "whatever you like"),
		OK("HELP\r\n", HELP, .arg = ""),
		OK("help MAIL\r\n", HELP, .arg = "MAIL"),
		OK("VRFY user\r\n", VRFY, .arg = "user"),
		OK("EXPN staff\r\n", EXPN, .arg = "staff"),
		OK("ETRN example.com\r\n", ETRN, .arg = "example.com"),
		OK("AUTH PLAIN AGJvYgBwdw==\r\n", AUTH, .arg = "PLAIN AGJvYgBwdw=="),
		OK("BDAT 0\r\n", BDAT, .arg = "0"),
		OK("NOOP caf\xc3\xa9\r\n", NOOP, .arg = "caf\xc3\xa9"),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, http_methods_followed_by_a_space_are_http)
{
	static const struct row rows[] = {
		OK("GET / HTTP/1.1\r\n", HTTP, .arg = "/ HTTP/1.1"),
		OK("POST /x HTTP/1.0\r\n", HTTP, .arg = NULL),
		OK("HEAD /\r\n", HTTP, .arg = NULL),
		OK("PUT /\r\n", HTTP, .arg = NULL),
		OK("CONNECT mx.example:25 HTTP/1.1\r\n", HTTP, .arg = NULL),
		OK("OPTIONS * HTTP/1.1\r\n", HTTP, .arg = NULL),
		OK("get /\r\n", HTTP, .arg = NULL),
		OK("GET\r\n", UNKNOWN, .arg = NULL),
		OK("GETX /\r\n", UNKNOWN, .arg = NULL),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, a_verb_must_be_followed_by_a_blank_or_the_line_end)
{
	static const struct row rows[] = {
		OK("MAILFROM:<a@b>\r\n", UNKNOWN, .arg = NULL),
		OK("QUIT.\r\n", UNKNOWN, .arg = NULL),
		OK("STARTTLSX\r\n", UNKNOWN, .arg = NULL),
		OK("HEL\r\n", UNKNOWN, .arg = NULL),
		OK("XCLIENT ADDR=1.2.3.4\r\n", UNKNOWN, .arg = "ADDR=1.2.3.4"),
		OK(" MAIL FROM:<a@b>\r\n", UNKNOWN, .arg = NULL),
		OK("\r\n", UNKNOWN, .arg = ""), /* an empty line is an unknown command */
		OK("  \r\n", UNKNOWN, .arg = ""),
		OK("MAIL\tFROM:<a@b>\r\n", MAIL, .path = "a@b"),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, mail_and_rcpt_paths_follow_rfc5321_and_keep_params)
{
	static const struct row rows[] = {
		OK("mail from:<a@b>\r\n", MAIL, .path = "a@b", .params = ""),
		OK("MAIL FROM: <a@b>\r\n", MAIL, .path = "a@b", .params = ""),
		OK("MAIL FROM:\t <a@b>\r\n", MAIL, .path = "a@b", .params = ""),
		OK("MAIL FROM:<>\r\n", MAIL, .path = "", .params = ""),
		OK("MAIL FROM:<> SIZE=123 BODY=8BITMIME SMTPUTF8\r\n", MAIL,
		   .path = "", .params = "SIZE=123 BODY=8BITMIME SMTPUTF8"),
		OK("MAIL FROM:<a@b>   SIZE=1  \r\n", MAIL, .path = "a@b", .params = "SIZE=1"),
		OK("MAIL FROM:<\"john doe\"@example.com>\r\n", MAIL,
		   .path = "\"john doe\"@example.com"),
		OK("MAIL FROM:<\"a\\\"b>c\"@example.com>\r\n", MAIL,
		   .path = "\"a\\\"b>c\"@example.com"),
		OK("MAIL FROM:<\"\"@example.com>\r\n", MAIL, .path = "\"\"@example.com"),
		OK("MAIL FROM:<a@[192.0.2.1]>\r\n", MAIL, .path = "a@[192.0.2.1]"),
		OK("MAIL FROM:<a@[IPv6:2001:db8::1]>\r\n", MAIL, .path = "a@[IPv6:2001:db8::1]"),
		OK("MAIL FROM:<a@[ipv6:::ffff:192.0.2.1]>\r\n", MAIL, .arg = NULL),
		OK("MAIL FROM:<@a.example,@b.example:user@dom.example>\r\n", MAIL,
		   .path = "user@dom.example"),
		OK("RCPT TO:<@relay.example:c@d> NOTIFY=NEVER\r\n", RCPT,
		   .path = "c@d", .params = "NOTIFY=NEVER"),
		OK("MAIL FROM:<a.b.c@d-e.f_g.example>\r\n", MAIL, .path = "a.b.c@d-e.f_g.example"),
		OK("MAIL FROM:<!#$%&'*+-/=?^_`{|}~@x.example>\r\n", MAIL,
		   .path = "!#$%&'*+-/=?^_`{|}~@x.example"),
		OK("rcpt to:<Postmaster>\r\n", RCPT, .path = "Postmaster", .params = ""),
		OK("RCPT TO:<POSTMASTER> NOTIFY=NEVER\r\n", RCPT,
		   .path = "POSTMASTER", .params = "NOTIFY=NEVER"),
		OK("RCPT TO:<c@d> ORCPT=rfc822;c+40d\r\n", RCPT,
		   .path = "c@d", .params = "ORCPT=rfc822;c+40d"),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, utf8_paths_are_accepted_and_flagged)
{
	static const struct row rows[] = {
		OK("MAIL FROM:<用户@例子.广告> SMTPUTF8\r\n", MAIL,
		   .path = "用户@例子.广告", .params = "SMTPUTF8", .utf8 = true),
		OK("RCPT TO:<\"ü x\"@example.com>\r\n", RCPT,
		   .path = "\"ü x\"@example.com", .params = "", .utf8 = true),
		OK("RCPT TO:<a@bücher.example>\r\n", RCPT,
		   .path = "a@bücher.example", .params = "", .utf8 = true),
		/* 8-bit bytes in the route only: the path itself is ASCII. */
		OK("RCPT TO:<@bücher.example:a@b>\r\n", RCPT, .path = "a@b", .params = ""),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, malformed_mail_and_rcpt_keywords_are_syntax_errors)
{
	static const struct row rows[] = {
		BAD("MAIL\r\n", SYNTAX, MAIL),
		BAD("MAIL FROM\r\n", SYNTAX, MAIL),
		BAD("MAIL FROM <a@b>\r\n", SYNTAX, MAIL),
		BAD("MAIL FROM :<a@b>\r\n", SYNTAX, MAIL),
		BAD("MAIL TO:<a@b>\r\n", SYNTAX, MAIL),
		BAD("RCPT FROM:<a@b>\r\n", SYNTAX, RCPT),
		BAD("RCPT\r\n", SYNTAX, RCPT),
		BAD("MAIL FROM:<a@b>SIZE=1\r\n", SYNTAX, MAIL),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, malformed_paths_are_path_errors)
{
	static const struct row rows[] = {
		BAD("MAIL FROM:\r\n", PATH, MAIL),
		BAD("MAIL FROM:a@b\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b SIZE=1\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a b@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:< a@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a\t@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a..b@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<.a@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a.@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b..c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@.b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b.>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a(b@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@b<c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<\"unterminated@b>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<\"a\"b@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<\"a\tb\"@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<\"a\\\tb\"@c>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[1.2.3]>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[256.1.1.1]>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[IPv6:zz::1]>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[IPv6:]>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[x-tag:stuff]>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[1.2.3.4>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<a@[1.2.3.4]x>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<postmaster>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<user>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<<a@b>>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<@a,b:c@d>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<@a:>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<@a>\r\n", PATH, MAIL),
		BAD("MAIL FROM:<@a,@:c@d>\r\n", PATH, MAIL),
		BAD("RCPT TO:<>\r\n", PATH, RCPT),
		BAD("RCPT TO:<user>\r\n", PATH, RCPT),
		BAD("RCPT TO:<@a.example:postmaster>\r\n", PATH, RCPT),
		BAD("RCPT TO:<\"postmaster\">\r\n", PATH, RCPT),
		BAD("RCPT TO:<postmasters>\r\n", PATH, RCPT),
	};
	CHECK_ROWS(rows);
}

/* Builds "MAIL FROM:<aaa...@b.example>\r\n" whose path is `octets` long, brackets included. */
static size_t
long_path_line(char *buf, size_t octets)
{
	const char *tail = "@b.example>\r\n";
	size_t local = octets - 2 - strlen("@b.example");
	size_t n = (size_t)sprintf(buf, "MAIL FROM:<");

	memset(buf + n, 'a', local);
	n += local;
	n += (size_t)sprintf(buf + n, "%s", tail);
	return n;
}

Test(smtp_parse, a_path_over_256_octets_is_a_path_error)
{
	char buf[400];
	struct smtp_cmd cmd;
	size_t n = long_path_line(buf, 256);

	cr_assert_eq(parse_guarded(buf, n, MAX_LINE, &cmd), (long)n);
	cr_assert_eq(cmd.verb, SMTP_VERB_MAIL);
	cr_assert_eq(cmd.path.len, 254);

	n = long_path_line(buf, 257);
	cr_assert_eq(parse_guarded(buf, n, MAX_LINE, &cmd), (long)n);
	cr_assert_eq(cmd.verb, SMTP_VERB_BAD);
	cr_assert_eq(cmd.error, SMTP_ERR_PATH);
}

Test(smtp_parse, helo_ehlo_vrfy_expn_etrn_auth_need_an_argument)
{
	static const struct row rows[] = {
		BAD("HELO\r\n", ARG_MISSING, HELO), BAD("HELO \r\n", ARG_MISSING, HELO),
		BAD("EHLO\r\n", ARG_MISSING, EHLO), BAD("ehlo \t \r\n", ARG_MISSING, EHLO),
		BAD("VRFY\r\n", ARG_MISSING, VRFY), BAD("EXPN\r\n", ARG_MISSING, EXPN),
		BAD("ETRN\r\n", ARG_MISSING, ETRN), BAD("AUTH\r\n", ARG_MISSING, AUTH),
	};
	CHECK_ROWS(rows);
}

/* AUTH mechanism [initial-response] (RFC 4954 4), each form also cut at every byte. */
static void
check_auth(const char *in, const char *mech, const char *resp)
{
	struct row r = {.in = in, .len = strlen(in), .verb = SMTP_VERB_AUTH};
	struct smtp_cmd cmd;

	check_row(&r);
	cr_assert_eq(parse_guarded(in, strlen(in), MAX_LINE, &cmd), (long)strlen(in));
	assert_slice(cmd.auth_mech, mech);
	assert_slice(cmd.auth_resp, resp);
}

Test(smtp_parse, auth_splits_the_mechanism_from_its_initial_response)
{
	check_auth("AUTH PLAIN\r\n", "PLAIN", "");
	check_auth("auth login\r\n", "login", "");
	check_auth("AUTH PLAIN AGJvYgBwdw==\r\n", "PLAIN", "AGJvYgBwdw==");
	check_auth("AUTH LOGIN =\r\n", "LOGIN", "=");
	check_auth("AUTH\tSCRAM-SHA-256 \t biws \r\n", "SCRAM-SHA-256", "biws");
	check_auth("AUTH X_ABCDEFGHIJKLMNOPQR\r\n", "X_ABCDEFGHIJKLMNOPQR", ""); /* 20 chars */
	/* not base64: the session decodes it and answers 501 5.5.2 */
	check_auth("AUTH PLAIN !!!\r\n", "PLAIN", "!!!");
}

Test(smtp_parse, auth_with_a_bad_mechanism_or_two_responses_is_a_syntax_error)
{
	static const struct row rows[] = {
		BAD("AUTH PLAIN a b\r\n", SYNTAX, AUTH),
		BAD("AUTH PL@IN\r\n", SYNTAX, AUTH),
		BAD("AUTH =\r\n", SYNTAX, AUTH),
		BAD("AUTH X_ABCDEFGHIJKLMNOPQRS\r\n", SYNTAX, AUTH), /* 21 chars */
		BAD("AUTH \r\n", ARG_MISSING, AUTH),
	};
	struct smtp_cmd cmd;

	CHECK_ROWS(rows);
	cr_assert_eq(parse_guarded("AUTH PLAIN a b\r\n", 16, MAX_LINE, &cmd), 16);
	cr_assert_eq(cmd.auth_mech.len, 0);
	cr_assert_eq(cmd.auth_resp.len, 0);
}

/* smtp_parse_line: an AUTH continuation line, with the bounds and byte rules of a command. */
static long
line_guarded(const char *src, size_t len, size_t max_line, struct smtp_slice *line,
	     enum smtp_parse_error *err)
{
	struct guard g = guard_place(src, len);
	long n = smtp_parse_line(g.p, len, max_line, line, err);

	if (n > 0) {
		cr_assert(line->p >= g.p && line->p + line->len <= g.p + n);
		line->p = src + (line->p - g.p);
	}
	guard_free(&g);
	return n;
}

Test(smtp_parse, a_response_line_is_read_whole_with_the_command_byte_rules)
{
#define LINE(in, line, err) {in, sizeof(in) - 1, line, sizeof(line) - 1, SMTP_ERR_##err}
	static const struct {
		const char *in;
		size_t len;
		const char *line;
		size_t line_len;
		enum smtp_parse_error err;
	} rows[] = {
		LINE("AGJvYgBwdw==\r\n", "AGJvYgBwdw==", NONE),
		LINE("*\r\n", "*", NONE),
		LINE("\r\n", "", NONE),
		LINE("HELO x y\r\n", "HELO x y", NONE), /* not parsed as a verb */
		LINE("abc\n", "abc", BARE_LF),
		LINE("a\0b\r\n", "a\0b", BAD_CHAR),
		LINE("a\rb\r\n", "a\rb", BAD_CHAR),
	};
#undef LINE
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct smtp_slice line;
		enum smtp_parse_error err;

		for (size_t k = 0; k < rows[i].len; k++)
			cr_assert_eq(line_guarded(rows[i].in, k, MAX_LINE, &line, &err), 0,
				     "row %zu cut at %zu", i, k);
		cr_assert_eq(line_guarded(rows[i].in, rows[i].len, MAX_LINE, &line, &err),
			     (long)rows[i].len, "row %zu", i);
		cr_assert_eq(err, rows[i].err, "row %zu: error %d", i, err);
		cr_assert_eq(line.len, rows[i].line_len, "row %zu: line length %zu", i, line.len);
		cr_assert_eq(memcmp(line.p, rows[i].line, line.len), 0, "row %zu", i);
	}
}

Test(smtp_parse, a_response_line_without_an_end_within_max_line_is_too_long)
{
	char big[MAX_LINE + 8];
	struct smtp_slice line;
	enum smtp_parse_error err;

	memset(big, 'A', sizeof big);
	cr_assert_eq(line_guarded(big, MAX_LINE - 1, MAX_LINE, &line, &err), 0);
	cr_assert_eq(line_guarded(big, MAX_LINE, MAX_LINE, &line, &err), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(line_guarded(big, sizeof big, MAX_LINE, &line, &err), SMTP_PARSE_TOO_LONG);
}

Test(smtp_parse, data_rset_quit_starttls_refuse_arguments)
{
	static const struct row rows[] = {
		BAD("DATA x\r\n", ARG_UNWANTED, DATA),
		BAD("RSET now\r\n", ARG_UNWANTED, RSET),
		BAD("QUIT please\r\n", ARG_UNWANTED, QUIT),
		BAD("STARTTLS x\r\n", ARG_UNWANTED, STARTTLS),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, bdat_takes_digits_up_to_the_limit_and_an_optional_last)
{
	static const struct row rows[] = {
		OK("BDAT 0\r\n", BDAT, .arg = NULL),
		OK("BDAT 1000 LAST\r\n", BDAT, .bdat_size = 1000, .bdat_last = true),
		OK("bdat 5 last\r\n", BDAT, .bdat_size = 5, .bdat_last = true),
		OK("BDAT 5 \t LaSt \r\n", BDAT, .bdat_size = 5, .bdat_last = true),
		OK("BDAT 1099511627776\r\n", BDAT, .bdat_size = (uint64_t)1 << 40),
		OK("BDAT 0000000000042\r\n", BDAT, .bdat_size = 42),
		BAD("BDAT\r\n", ARG_MISSING, BDAT),
		BAD("BDAT x\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT LAST\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT 12x\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT -1\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT +1\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT 1099511627777\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT 00000000000042\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT 99999999999999999999999999\r\n", BDAT_SIZE, BDAT),
		BAD("BDAT 5 LASTX\r\n", SYNTAX, BDAT),
		BAD("BDAT 5 LAST x\r\n", SYNTAX, BDAT),
		BAD("BDAT 5 FIRST\r\n", SYNTAX, BDAT),
		BAD("BDAT 5 6\r\n", SYNTAX, BDAT),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, bare_lf_line_ends_are_consumed_and_reported)
{
	static const struct row rows[] = {
		BAD("QUIT\n", BARE_LF, QUIT),
		BAD("\n", BARE_LF, UNKNOWN),
		BAD("MAIL FROM:<a@b>\n", BARE_LF, MAIL),
		BAD("GET / HTTP/1.0\n", BARE_LF, HTTP),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, nul_bare_cr_and_control_bytes_are_bad_chars)
{
	static const struct row rows[] = {
		BAD("NOOP\0x\r\n", BAD_CHAR, UNKNOWN), /* "NOOP\0x" is not the verb NOOP */
		BAD("NOOP \0\r\n", BAD_CHAR, NOOP),
		BAD("NOOP \x01\r\n", BAD_CHAR, NOOP),
		BAD("NOOP a\rb\r\n", BAD_CHAR, NOOP),
		BAD("QUIT\r\r\n", BAD_CHAR, UNKNOWN),
		BAD("\rQUIT\r\n", BAD_CHAR, UNKNOWN),
		BAD("NOOP \x7f\r\n", BAD_CHAR, NOOP),
		BAD("NOOP \x1b[31m\r\n", BAD_CHAR, NOOP),
		BAD("MAIL FROM:<a@b>\r\r\n", BAD_CHAR, MAIL),
		BAD("MAIL FROM:<\"a\x01\"@b>\r\n", BAD_CHAR, MAIL),
		OK("NOOP a\tb\r\n", NOOP, .arg = "a\tb"),
		OK("NOOP \x80\xff\r\n", NOOP, .arg = "\x80\xff"),
	};
	CHECK_ROWS(rows);
}

Test(smtp_parse, no_line_end_within_max_line_is_too_long)
{
	struct smtp_cmd cmd;

	/* max_line counts the CRLF: a 10-byte line fits a max_line of 10. */
	cr_assert_eq(parse_guarded("12345678\r\n", 10, 10, &cmd), 10);
	cr_assert_eq(cmd.verb, SMTP_VERB_UNKNOWN);
	cr_assert_eq(parse_guarded("123456789\r\n", 11, 10, &cmd), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(parse_guarded("123456789", 9, 10, &cmd), 0);
	cr_assert_eq(parse_guarded("12345678\r", 9, 10, &cmd), 0);
	cr_assert_eq(parse_guarded("123456789\r", 10, 10, &cmd), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(parse_guarded("1234567890", 10, 10, &cmd), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(parse_guarded("123456789012\r\n", 14, 10, &cmd), SMTP_PARSE_TOO_LONG);
	/* Only the first line counts: a long second line is for the next call. */
	cr_assert_eq(parse_guarded("QUIT\r\n1234567890123\r\n", 21, 10, &cmd), 6);
	cr_assert_eq(cmd.verb, SMTP_VERB_QUIT);
	cr_assert_eq(parse_guarded("", 0, 10, &cmd), 0);
}

Test(smtp_parse, too_long_scans_no_further_than_max_line)
{
	size_t len = 70000;
	char *big = malloc(len);
	struct smtp_cmd cmd;
	struct guard g;

	cr_assert(big != NULL);
	memset(big, 'x', len);
	g = guard_place(big, len);
	cr_assert_eq(smtp_parse_command(g.p, len, MAX_LINE, &cmd), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(smtp_parse_command(g.p, len, len, &cmd), SMTP_PARSE_TOO_LONG);
	cr_assert_eq(smtp_parse_command(g.p, len, len + 1, &cmd), 0);
	guard_free(&g);
	free(big);
}

/* Parses every complete line of buf, appends the commands to out; returns bytes consumed. */
static size_t
parse_all(const char *buf, size_t len, struct smtp_cmd *out, size_t *n_out)
{
	size_t off = 0;
	long n;

	while ((n = smtp_parse_command(buf + off, len - off, MAX_LINE, &out[*n_out])) > 0) {
		off += (size_t)n;
		(*n_out)++;
	}
	cr_assert_eq(n, 0);
	cr_assert_null(memchr(buf + off, '\n', len - off), "a complete line was left unparsed");
	return off;
}

/*
 * A pipelined batch (RFC 2920) arriving in two reads cut at byte k: the first read yields the
 * complete lines only, the unconsumed tail is kept (as the session's partial-line buffer
 * does) and parsed with the second read; the result must equal the one-shot parse.
 */
static void
check_pipelined(const char *batch)
{
	size_t len = strlen(batch);
	struct smtp_cmd whole[16], cut[16];
	size_t n_whole = 0;
	char joined[512];

	cr_assert_eq(parse_all(batch, len, whole, &n_whole), len);
	for (size_t k = 0; k <= len; k++) {
		size_t n_cut = 0, used, tail;
		struct guard a = guard_place(batch, k), b;

		used = parse_all(a.p, k, cut, &n_cut);
		for (size_t i = 0; i < n_cut; i++)
			cr_assert(cmd_same(&cut[i], &whole[i]), "cut at %zu: command %zu", k, i);
		tail = k - used;
		memcpy(joined, batch + used, len - used);
		b = guard_place(joined, len - used);
		cr_assert_eq(parse_all(b.p, len - used, cut, &n_cut), len - used);
		cr_assert_eq(n_cut, n_whole, "cut at %zu (tail %zu)", k, tail);
		for (size_t i = 0; i < n_whole; i++)
			cr_assert(cmd_same(&cut[i], &whole[i]), "cut at %zu: command %zu", k, i);
		guard_free(&a);
		guard_free(&b);
	}
}

Test(smtp_parse, pipelined_batch_cut_at_every_byte_parses_identically)
{
	check_pipelined("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
	check_pipelined("MAIL FROM:<> SIZE=10\r\nRCPT TO:<postmaster>\r\nBDAT 10 LAST\r\n");
	check_pipelined("NOOP\r\nRCPT TO:<>\r\nQUIT\n\r\nGET / HTTP/1.0\r\nRSET\r\n");
}

Test(smtp_parse, params_iterate_keys_and_values)
{
	static const char line[] = "MAIL FROM:<a@b> SIZE=123  BODY=8BITMIME SMTPUTF8\r\n";
	struct smtp_cmd cmd;
	struct smtp_param prm;
	size_t pos = 0;

	cr_assert_eq(parse_guarded(line, sizeof(line) - 1, MAX_LINE, &cmd), (long)sizeof(line) - 1);
	cr_assert_eq(smtp_param_next(cmd.params, &pos, &prm), 1);
	assert_slice(prm.key, "SIZE");
	assert_slice(prm.value, "123");
	cr_assert_eq(smtp_param_next(cmd.params, &pos, &prm), 1);
	cr_assert(smtp_slice_eq(prm.key, "body"));
	cr_assert(smtp_slice_eq(prm.value, "8bitmime"));
	cr_assert_eq(smtp_param_next(cmd.params, &pos, &prm), 1);
	assert_slice(prm.key, "SMTPUTF8");
	cr_assert_null(prm.value.p);
	cr_assert_eq(prm.value.len, 0);
	cr_assert_eq(smtp_param_next(cmd.params, &pos, &prm), 0);
	cr_assert_eq(smtp_param_next(cmd.params, &pos, &prm), 0);
}

static int
param_count(const char *s)
{
	struct smtp_slice params = {s, strlen(s)};
	struct smtp_param prm;
	size_t pos = 0;
	int n = 0, r;

	while ((r = smtp_param_next(params, &pos, &prm)) == 1)
		n++;
	return r < 0 ? -1 : n;
}

Test(smtp_parse, params_reject_malformed_keys_and_values)
{
	cr_assert_eq(param_count(""), 0);
	cr_assert_eq(param_count("   "), 0);
	cr_assert_eq(param_count("X-Y=z ORCPT=rfc822;a+40b NOTIFY=SUCCESS,FAILURE"), 3);
	cr_assert_eq(param_count("SIZE=1\t BODY=7BIT"), 2);
	cr_assert_eq(param_count("2ND=x"), 1);
	cr_assert_eq(param_count("KEY=caf\xc3\xa9"), 1);
	cr_assert_eq(param_count("=x"), -1);
	cr_assert_eq(param_count("SIZE="), -1);
	cr_assert_eq(param_count("SIZE==1"), -1);
	cr_assert_eq(param_count("A=b=c"), -1);
	cr_assert_eq(param_count("-X"), -1);
	cr_assert_eq(param_count("K_Y=1"), -1);
	cr_assert_eq(param_count("SIZE=1 BAD!"), -1);
	cr_assert_eq(param_count("KEY=a\x01"), -1);
}

Test(smtp_parse, slice_eq_is_case_insensitive_and_length_exact)
{
	struct smtp_slice s = {"8BitMime", 8};

	cr_assert(smtp_slice_eq(s, "8BITMIME"));
	cr_assert(!smtp_slice_eq(s, "8BITMIM"));
	cr_assert(!smtp_slice_eq(s, "8BITMIMEX"));
	cr_assert(smtp_slice_eq((struct smtp_slice){NULL, 0}, ""));
}

Test(smtp_parse, path_domain_splits_at_the_last_unquoted_at)
{
	struct smtp_slice local, domain;

	cr_assert(smtp_path_domain((struct smtp_slice){"a@b.example", 11}, &local, &domain));
	assert_slice(local, "a");
	assert_slice(domain, "b.example");
	cr_assert(smtp_path_domain((struct smtp_slice){"\"x@y\"@c", 7}, &local, &domain));
	assert_slice(local, "\"x@y\"");
	assert_slice(domain, "c");
	cr_assert(smtp_path_domain((struct smtp_slice){"a@[192.0.2.1]", 13}, &local, &domain));
	assert_slice(domain, "[192.0.2.1]");
	cr_assert(!smtp_path_domain((struct smtp_slice){"postmaster", 10}, &local, &domain));
	assert_slice(local, "postmaster");
	cr_assert(!smtp_path_domain((struct smtp_slice){"\"a@b\"", 5}, &local, &domain));
	cr_assert(!smtp_path_domain((struct smtp_slice){"", 0}, &local, &domain));
}

static bool
xtext(const char *s)
{
	return smtp_xtext_valid((struct smtp_slice){s, strlen(s)});
}

Test(smtp_parse, xtext_allows_printable_ascii_and_upper_hex_escapes)
{
	cr_assert(xtext(""));
	cr_assert(xtext("rfc822;a+40b.example"));
	cr_assert(xtext("+2B+3D"));
	cr_assert(xtext("~!\"#"));
	cr_assert(!xtext("+2b"));
	cr_assert(!xtext("+4"));
	cr_assert(!xtext("+"));
	cr_assert(!xtext("a+G0"));
	cr_assert(!xtext("a=b"));
	cr_assert(!xtext("a b"));
	cr_assert(!xtext("caf\xc3\xa9"));
	cr_assert(!xtext("a\x7f"));
}
