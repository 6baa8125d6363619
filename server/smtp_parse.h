/*
 * smtp_parse — the pure SMTP command parser (RFC 5321, 1869, 2920, 3030, 4954, 6152, 6531).
 *
 * Reads one command line in place in the caller's buffer and returns slices into it: no
 * allocation, no I/O, no replies. The session decides what to answer. Pipelined input is
 * handled by calling smtp_parse_command() again on what follows the consumed bytes.
 *
 * Limits: a line longer than `max_line` bytes (CRLF included) is reported as
 * SMTP_PARSE_TOO_LONG so the caller can bound what it buffers.
 *
 * Failure: smtp_parse_command() returns 0 when no complete line is there yet; a malformed
 * line is consumed and reported through cmd->verb == SMTP_VERB_BAD with cmd->error set.
 */
#ifndef RINGMX_SMTP_PARSE_H
#define RINGMX_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

struct smtp_slice {
	const char *p;
	size_t len;
};

enum smtp_verb {
	SMTP_VERB_BAD = 0, /* malformed line; see cmd->error */
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_EXPN,
	SMTP_VERB_ETRN,
	SMTP_VERB_HTTP,    /* GET, POST, HEAD, PUT, CONNECT, OPTIONS: not SMTP at all */
	SMTP_VERB_UNKNOWN, /* well-formed line, verb we do not know */
	SMTP_VERB_COUNT
};

enum smtp_parse_error {
	SMTP_ERR_NONE = 0,
	SMTP_ERR_BARE_LF,      /* line ended in LF without CR (RFC 5321 2.3.8) */
	SMTP_ERR_BAD_CHAR,     /* NUL, bare CR or another control byte in the line */
	SMTP_ERR_SYNTAX,       /* verb known, arguments malformed (e.g. "MAIL FROM" without ':') */
	SMTP_ERR_PATH,         /* MAIL/RCPT path is not a valid <path> (RFC 5321 4.1.2) */
	SMTP_ERR_ARG_MISSING,  /* HELO/EHLO without a domain, BDAT without a size, AUTH without
	                          a mechanism */
	SMTP_ERR_ARG_UNWANTED, /* DATA/RSET/QUIT with arguments */
	SMTP_ERR_BDAT_SIZE,    /* BDAT size not a number, or above SMTP_BDAT_SIZE_MAX */
};

/* What a complete line parsed to. All slices point into the caller's buffer. */
struct smtp_cmd {
	enum smtp_verb verb;
	enum smtp_parse_error error; /* set when verb == SMTP_VERB_BAD */
	enum smtp_verb bad_verb;     /* for SMTP_VERB_BAD: the verb it tried to be, if known
	                                (SMTP_VERB_UNKNOWN if not) */
	struct smtp_slice line;      /* the whole line without CRLF (or bare LF) */
	struct smtp_slice arg;       /* text after the verb, blanks (SP, TAB) around it stripped */
	/* MAIL FROM:<path> params / RCPT TO:<path> params */
	struct smtp_slice path;      /* mailbox without the angle brackets and source route;
	                                empty for "<>" */
	struct smtp_slice params;    /* ESMTP parameters after the path, may be empty */
	bool path_utf8;              /* path contains bytes >= 0x80 (needs SMTPUTF8) */
	/* BDAT size [LAST] */
	uint64_t bdat_size;
	bool bdat_last;
	/* AUTH mechanism [initial-response] (RFC 4954 4) */
	struct smtp_slice auth_mech; /* 1 to 20 of A-Z a-z 0-9 - _ (RFC 4422 3.1) */
	struct smtp_slice auth_resp; /* the initial response as sent: base64, or "=" for an empty
	                                one (len 0 when there is none); not decoded */
};

#define SMTP_BDAT_SIZE_MAX ((uint64_t)1 << 40)

#define SMTP_PARSE_TOO_LONG (-1)

/*
 * Parses the first line in buf[0..len).
 * Returns the number of bytes consumed (> 0, CRLF included) with *cmd filled;
 * 0 when there is no complete line yet and len < max_line;
 * SMTP_PARSE_TOO_LONG when no line end was found within max_line bytes (so len >= max_line).
 * An empty line parses as SMTP_VERB_UNKNOWN. max_line must be >= 2.
 * A line that ends in a bare LF is consumed and reported as SMTP_ERR_BARE_LF.
 */
long smtp_parse_command(const char *buf, size_t len, size_t max_line, struct smtp_cmd *cmd);

/*
 * Reads one line that is not a command (an AUTH continuation line, RFC 4954 4) from
 * buf[0..len), with smtp_parse_command's return values and bounds. On a line, *line is that
 * line without its CRLF and *error is SMTP_ERR_NONE, SMTP_ERR_BARE_LF or SMTP_ERR_BAD_CHAR
 * (the same byte rules as a command line).
 */
long smtp_parse_line(const char *buf, size_t len, size_t max_line, struct smtp_slice *line,
		     enum smtp_parse_error *error);

/* One ESMTP parameter: "KEY" or "KEY=VALUE" (RFC 5321 4.1.2 esmtp-param). */
struct smtp_param {
	struct smtp_slice key;
	struct smtp_slice value; /* len 0 and p NULL when there is no '=' */
};

/*
 * Iterates over the parameters in `params` (as left by smtp_parse_command), starting at
 * *pos (0 at first). Returns 1 with *out filled, 0 at the end, -1 on a malformed parameter.
 */
int smtp_param_next(struct smtp_slice params, size_t *pos, struct smtp_param *out);

/* Case-insensitive comparison of a slice with a NUL-terminated ASCII string. */
bool smtp_slice_eq(struct smtp_slice s, const char *lit);

/*
 * Splits a mailbox "local@domain" at its last '@' outside a quoted local part.
 * Returns true with domain filled (may be an address literal "[...]"), false when there is
 * no '@' (e.g. "postmaster"); then *local is the whole path and *domain is empty.
 */
bool smtp_path_domain(struct smtp_slice path, struct smtp_slice *local, struct smtp_slice *domain);

/*
 * Validates (does not decode) an xtext value (RFC 3461 4): bytes 33..126 except '+' and '=',
 * or "+XX" with XX two upper-case hex digits. Returns false on anything else.
 */
bool smtp_xtext_valid(struct smtp_slice value);

#endif
