/*
 * bench_opts — ringmx-bench option parsing; see bench_opts.h.
 */
#include "bench/bench_opts.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_DEFAULT_CONNECTIONS 10
#define BENCH_DEFAULT_MESSAGES 10000
#define BENCH_DEFAULT_SIZE_BYTES 4096
#define BENCH_DEFAULT_TIMEOUT_S 30.0
#define BENCH_DEFAULT_FROM "bench@ringmx.test"
#define BENCH_DEFAULT_TO "user{n}@localhost"
#define BENCH_DEFAULT_HELO "ringmx-bench.test"

static const char bench_usage[] =
    "usage: ringmx-bench --server HOST:PORT [options]\n"
    "\n"
    "  --server HOST:PORT     target: 1.2.3.4:25, [::1]:25 or name:25 (required)\n"
    "  --threads T            client threads, each with its own io_uring\n"
    "                         (default: one per CPU it may run on)\n"
    "  --connections C        concurrent connections, spread over threads (default 10)\n"
    "  --messages M           measured messages to send (default 10000)\n"
    "  --duration S           or: send for S seconds (not with --messages)\n"
    "  --warmup S             seconds sent first and left out of the results (default 0)\n"
    "  --size SPEC            message size: 4096, 4k, 1m, or weighted 1k:50,10k:40,100k:10\n"
    "                         (default 4k; k = 1024)\n"
    "  --rcpts R              recipients per message (default 1)\n"
    "  --per-conn K           messages per connection, then QUIT and reconnect;\n"
    "                         0 = keep it for the whole run (default 0)\n"
    "  --pipelining           MAIL, RCPTs and DATA in one write (RFC 2920) when offered,\n"
    "                         and the next transaction's behind the message's \".\"\n"
    "  --pipelining-envelope  the same, but the next transaction waits for the message's\n"
    "                         final reply (for servers that refuse commands behind \".\")\n"
    "  --chunking             BDAT n LAST instead of DATA (RFC 3030) when offered\n"
    "  --rate R               open loop: R messages/s in all; latency is measured from\n"
    "                         each message's intended start (default: closed loop)\n"
    "  --from PATTERN         MAIL FROM address (default " BENCH_DEFAULT_FROM ")\n"
    "  --to PATTERN           RCPT TO address (default " BENCH_DEFAULT_TO ")\n"
    "                         {n}: global message number, {r}: recipient index (1..R)\n"
    "  --helo NAME            EHLO name (default " BENCH_DEFAULT_HELO ")\n"
    "  --timeout S            seconds to wait for each reply (default 30)\n"
    "  --busy-poll US         after a busy turn, poll this long before sleeping (default 0)\n"
    "  --json                 print the report as one JSON object\n"
    "  --starttls             STARTTLS (RFC 3207) on every connection, then EHLO again and\n"
    "                         the mail encrypted; the certificate is not verified; a server\n"
    "                         that does not offer it, or a failed handshake, is an error\n"
    "  -h, --help             this text\n";

enum bench_opt_id {
	OPT_SERVER,
	OPT_THREADS,
	OPT_CONNECTIONS,
	OPT_MESSAGES,
	OPT_DURATION,
	OPT_WARMUP,
	OPT_SIZE,
	OPT_RCPTS,
	OPT_PER_CONN,
	OPT_PIPELINING,
	OPT_PIPELINING_ENVELOPE,
	OPT_CHUNKING,
	OPT_RATE,
	OPT_FROM,
	OPT_TO,
	OPT_HELO,
	OPT_JSON,
	OPT_STARTTLS,
	OPT_TIMEOUT,
	OPT_BUSY_POLL,
	OPT_HELP,
};

static const struct bench_opt_def {
	const char *name;
	enum bench_opt_id id;
	bool has_arg;
} bench_opt_defs[] = {
    {"--server", OPT_SERVER, true},
    {"--threads", OPT_THREADS, true},
    {"--connections", OPT_CONNECTIONS, true},
    {"--messages", OPT_MESSAGES, true},
    {"--duration", OPT_DURATION, true},
    {"--warmup", OPT_WARMUP, true},
    {"--size", OPT_SIZE, true},
    {"--rcpts", OPT_RCPTS, true},
    {"--per-conn", OPT_PER_CONN, true},
    {"--pipelining", OPT_PIPELINING, false},
    {"--pipelining-envelope", OPT_PIPELINING_ENVELOPE, false},
    {"--chunking", OPT_CHUNKING, false},
    {"--rate", OPT_RATE, true},
    {"--from", OPT_FROM, true},
    {"--to", OPT_TO, true},
    {"--helo", OPT_HELO, true},
    {"--json", OPT_JSON, false},
    {"--starttls", OPT_STARTTLS, false},
    {"--timeout", OPT_TIMEOUT, true},
    {"--busy-poll", OPT_BUSY_POLL, true},
    {"--help", OPT_HELP, false},
    {"-h", OPT_HELP, false},
};

static int
bench_opts_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Decimal digits only: no sign, no spaces, no empty string, no overflow. */
static int
bench_opts_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* A non-negative, finite number of seconds (or messages/s), optionally followed by 's'. */
static int
bench_opts_parse_real(const char *s, double *out)
{
	char *end;

	if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);

	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	if (*end == 's')
		end++;
	if (*end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int
bench_opts_parse_bytes(const char *s, uint64_t *out)
{
	size_t len = strlen(s);
	uint64_t mult = 1, v;

	if (len > 0) {
		switch (s[len - 1]) {
		case 'k':
		case 'K':
			mult = 1024;
			len--;
			break;
		case 'm':
		case 'M':
			mult = 1024 * 1024;
			len--;
			break;
		default:
			break;
		}
	}
	if (bench_opts_parse_u64(s, len, &v) < 0 || v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

/* One "SIZE[:WEIGHT]" item of a --size list, given as a slice. */
static int
bench_opts_parse_size_item(const char *s, size_t len, struct bench_size *out, char *err,
			   size_t errlen)
{
	char buf[64];
	const char *colon = memchr(s, ':', len);
	size_t size_len = colon ? (size_t)(colon - s) : len;
	uint64_t weight = 1;

	if (size_len == 0 || size_len >= sizeof(buf))
		return bench_opts_fail(err, errlen, "--size: bad entry '%.*s'", (int)len, s);
	memcpy(buf, s, size_len);
	buf[size_len] = '\0';
	if (bench_opts_parse_bytes(buf, &out->bytes) < 0)
		return bench_opts_fail(err, errlen,
				       "--size: '%s' is not a size (like 4096, 4k, 1m)", buf);
	if (out->bytes < BENCH_SIZE_MIN_BYTES || out->bytes > BENCH_SIZE_MAX_BYTES)
		return bench_opts_fail(err, errlen, "--size: %s is outside %u..%u bytes", buf,
				       BENCH_SIZE_MIN_BYTES, BENCH_SIZE_MAX_BYTES);
	if (colon) {
		const char *w = colon + 1;
		size_t wlen = len - size_len - 1;

		if (bench_opts_parse_u64(w, wlen, &weight) < 0 || weight == 0 ||
		    weight > BENCH_WEIGHT_MAX)
			return bench_opts_fail(err, errlen, "--size: weight '%.*s' must be 1..%u",
					       (int)wlen, w, BENCH_WEIGHT_MAX);
	}
	out->weight = (uint32_t)weight;
	return 0;
}

int
bench_opts_parse_sizes(const char *s, struct bench_size *out, unsigned *n, char *err, size_t errlen)
{
	unsigned count = 0;

	if (*s == '\0')
		return bench_opts_fail(err, errlen, "--size: empty");
	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);

		if (count == BENCH_SIZES_MAX)
			return bench_opts_fail(err, errlen, "--size: more than %d entries",
					       BENCH_SIZES_MAX);
		if (len == 0)
			return bench_opts_fail(err, errlen, "--size: empty entry in the list");
		int rc = bench_opts_parse_size_item(s, len, &out[count], err, errlen);

		if (rc < 0)
			return rc;
		count++;
		if (!comma)
			break;
		s = comma + 1;
	}
	*n = count;
	return 0;
}

static bool
bench_opts_host_ok(const char *h, size_t len, bool bracketed)
{
	if (len == 0 || len > BENCH_HOST_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c <= ' ' || c >= 0x7f || c == '[' || c == ']' || (c == ':' && !bracketed))
			return false;
	}
	return true;
}

int
bench_opts_parse_server(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *h = s, *colon;
	size_t hlen;
	bool bracketed = s[0] == '[';

	if (bracketed) {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (!bench_opts_host_ok(h, hlen, bracketed) || hlen >= hostlen)
		return -EINVAL;

	const char *p = colon + 1;
	size_t plen = strlen(p);
	uint64_t pv;

	if (plen >= portlen || bench_opts_parse_u64(p, plen, &pv) < 0 || pv == 0 || pv > 65535)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, plen + 1);
	return 0;
}

static int
bench_opts_pattern_add(struct bench_pattern *out, enum bench_pattern_kind kind, const char *p,
		       size_t len)
{
	if (out->nseg == BENCH_PATTERN_SEGS_MAX)
		return -EINVAL;
	out->seg[out->nseg++] = (struct bench_pattern_seg){.kind = kind, .p = p, .len = len};
	out->max_len += kind == BENCH_PATTERN_LITERAL ? len : BENCH_U64_DIGITS;
	return 0;
}

int
bench_opts_pattern_compile(const char *s, bool allow_rcpt, struct bench_pattern *out, char *err,
			   size_t errlen)
{
	size_t len = strlen(s), lit = 0;

	memset(out, 0, sizeof(*out));
	if (len > BENCH_PATTERN_MAX)
		return bench_opts_fail(err, errlen, "'%.32s...' is longer than %d bytes", s,
				       BENCH_PATTERN_MAX);
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = (unsigned char)s[i];
		enum bench_pattern_kind kind = BENCH_PATTERN_LITERAL;

		if (c == '{' && s[i + 1] == 'n' && s[i + 2] == '}')
			kind = BENCH_PATTERN_SEQ;
		else if (c == '{' && s[i + 1] == 'r' && s[i + 2] == '}' && allow_rcpt)
			kind = BENCH_PATTERN_RCPT;
		else if (c == '{' || c == '}')
			return bench_opts_fail(err, errlen, "'%s': only {n}%s may use braces", s,
					       allow_rcpt ? " and {r}" : "");
		else if (c != '\0' && (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"'))
			return bench_opts_fail(
			    err, errlen, "'%s': byte 0x%02x is not allowed in an address", s, c);
		if (kind == BENCH_PATTERN_LITERAL && c != '\0')
			continue;
		/* End of a literal run: at a placeholder or at the end of the string. */
		if (i > lit && bench_opts_pattern_add(out, BENCH_PATTERN_LITERAL, s + lit, i - lit))
			return bench_opts_fail(err, errlen, "'%s': too many placeholders", s);
		if (kind != BENCH_PATTERN_LITERAL) {
			if (bench_opts_pattern_add(out, kind, NULL, 0))
				return bench_opts_fail(err, errlen, "'%s': too many placeholders",
						       s);
			i += 2;
		}
		lit = i + 1;
	}
	return 0;
}

size_t
bench_opts_u64_to_dec(uint64_t v, char *out)
{
	char tmp[BENCH_U64_DIGITS];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

size_t
bench_opts_pattern_expand(const struct bench_pattern *p, uint64_t n, unsigned r, char *out)
{
	size_t len = 0;

	for (unsigned i = 0; i < p->nseg; i++) {
		const struct bench_pattern_seg *s = &p->seg[i];

		switch (s->kind) {
		case BENCH_PATTERN_LITERAL:
			memcpy(out + len, s->p, s->len);
			len += s->len;
			break;
		case BENCH_PATTERN_SEQ:
			len += bench_opts_u64_to_dec(n, out + len);
			break;
		case BENCH_PATTERN_RCPT:
			len += bench_opts_u64_to_dec(r, out + len);
			break;
		}
	}
	return len;
}

void
bench_opts_defaults(struct bench_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connections = BENCH_DEFAULT_CONNECTIONS;
	o->messages = BENCH_DEFAULT_MESSAGES;
	o->sizes[0] = (struct bench_size){.bytes = BENCH_DEFAULT_SIZE_BYTES, .weight = 1};
	o->nsizes = 1;
	o->rcpts = 1;
	o->timeout_s = BENCH_DEFAULT_TIMEOUT_S;
	o->from = BENCH_DEFAULT_FROM;
	o->to = BENCH_DEFAULT_TO;
	o->helo = BENCH_DEFAULT_HELO;
}

const char *
bench_opts_usage(void)
{
	return bench_usage;
}

/* An unsigned option value in [min, max]. */
static int
bench_opts_uint_arg(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *out,
		    char *err, size_t errlen)
{
	if (bench_opts_parse_u64(v, strlen(v), out) < 0 || *out < min || *out > max)
		return bench_opts_fail(err, errlen, "%s: '%s' is not a whole number in %llu..%llu",
				       name, v, (unsigned long long)min, (unsigned long long)max);
	return 0;
}

static int
bench_opts_real_arg(const char *name, const char *v, bool zero_ok, double max, double *out,
		    char *err, size_t errlen)
{
	if (bench_opts_parse_real(v, out) < 0 || (*out == 0 && !zero_ok) || *out > max)
		return bench_opts_fail(err, errlen, "%s: '%s' is not a number %s %g", name, v,
				       zero_ok ? "in 0 .." : "above 0, at most", max);
	return 0;
}

static int
bench_opts_helo_arg(struct bench_opts *o, const char *v, char *err, size_t errlen)
{
	size_t len = strlen(v);

	if (len == 0 || len > BENCH_HELO_MAX)
		return bench_opts_fail(err, errlen, "--helo: name must be 1..%d bytes",
				       BENCH_HELO_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
			return bench_opts_fail(err, errlen,
					       "--helo: '%s' has a space or "
					       "control byte",
					       v);
	o->helo = v;
	return 0;
}

/* Numeric options, split from bench_opts_apply() to keep each switch short. */
static int
bench_opts_apply_number(struct bench_opts *o, enum bench_opt_id id, const char *name, const char *v,
			char *err, size_t errlen)
{
	uint64_t u;
	int rc;

	switch (id) {
	case OPT_THREADS:
		rc = bench_opts_uint_arg(name, v, 1, BENCH_THREADS_MAX, &u, err, errlen);
		o->threads = (unsigned)u;
		return rc;
	case OPT_CONNECTIONS:
		rc = bench_opts_uint_arg(name, v, 1, BENCH_CONNECTIONS_MAX, &u, err, errlen);
		o->connections = (unsigned)u;
		return rc;
	case OPT_MESSAGES:
		return bench_opts_uint_arg(name, v, 1, UINT64_MAX / 2, &o->messages, err, errlen);
	case OPT_RCPTS:
		rc = bench_opts_uint_arg(name, v, 1, BENCH_RCPTS_MAX, &u, err, errlen);
		o->rcpts = (unsigned)u;
		return rc;
	case OPT_PER_CONN:
		return bench_opts_uint_arg(name, v, 0, UINT64_MAX / 2, &o->per_conn, err, errlen);
	case OPT_DURATION:
		return bench_opts_real_arg(name, v, false, 1e7, &o->duration_s, err, errlen);
	case OPT_WARMUP:
		return bench_opts_real_arg(name, v, true, 1e7, &o->warmup_s, err, errlen);
	case OPT_RATE:
		return bench_opts_real_arg(name, v, false, 1e9, &o->rate, err, errlen);
	case OPT_TIMEOUT:
		return bench_opts_real_arg(name, v, false, BENCH_TIMEOUT_MAX_S, &o->timeout_s, err,
					   errlen);
	case OPT_BUSY_POLL:
		rc = bench_opts_uint_arg(name, v, 0, BENCH_BUSY_POLL_MAX_US, &u, err, errlen);
		o->busy_poll_us = (unsigned)u;
		return rc;
	default:
		return bench_opts_fail(err, errlen, "%s: not a numeric option", name);
	}
}

/* Applies one option; v is NULL for flags. */
static int
bench_opts_apply(struct bench_opts *o, enum bench_opt_id id, const char *name, const char *v,
		 char *err, size_t errlen)
{
	switch (id) {
	case OPT_SERVER:
		if (bench_opts_parse_server(v, o->host, sizeof(o->host), o->port, sizeof(o->port)))
			return bench_opts_fail(err, errlen,
					       "--server: '%s' is not HOST:PORT "
					       "(IPv6 as [addr]:port)",
					       v);
		return 0;
	case OPT_SIZE:
		return bench_opts_parse_sizes(v, o->sizes, &o->nsizes, err, errlen);
	case OPT_FROM:
		o->from = v;
		return 0;
	case OPT_TO:
		o->to = v;
		return 0;
	case OPT_HELO:
		return bench_opts_helo_arg(o, v, err, errlen);
	case OPT_PIPELINING:
		o->pipelining = true;
		return 0;
	case OPT_PIPELINING_ENVELOPE:
		o->pipelining = o->pipelining_envelope = true;
		return 0;
	case OPT_CHUNKING:
		o->chunking = true;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_STARTTLS:
		o->starttls = true;
		return 0;
	case OPT_HELP:
		return BENCH_OPTS_HELP;
	default:
		return bench_opts_apply_number(o, id, name, v, err, errlen);
	}
}

static const struct bench_opt_def *
bench_opts_lookup(const char *arg, size_t name_len)
{
	for (size_t i = 0; i < sizeof(bench_opt_defs) / sizeof(bench_opt_defs[0]); i++) {
		const struct bench_opt_def *d = &bench_opt_defs[i];

		if (strlen(d->name) == name_len && memcmp(d->name, arg, name_len) == 0)
			return d;
	}
	return NULL;
}

/* Checks that need every option: exclusive pairs, required ones, pattern compilation. */
static int
bench_opts_finish(struct bench_opts *o, bool seen_messages, bool seen_duration, char *err,
		  size_t errlen)
{
	if (o->host[0] == '\0')
		return bench_opts_fail(err, errlen, "--server HOST:PORT is required");
	if (seen_messages && seen_duration)
		return bench_opts_fail(err, errlen, "--messages and --duration exclude each other");
	if (seen_duration)
		o->messages = 0;
	if (bench_opts_pattern_compile(o->from, false, &o->from_pat, err, errlen) < 0)
		return -EINVAL;
	if (o->to[0] == '\0')
		return bench_opts_fail(err, errlen, "--to: the recipient pattern is empty");
	if (bench_opts_pattern_compile(o->to, true, &o->to_pat, err, errlen) < 0)
		return -EINVAL;
	return 0;
}

int
bench_opts_parse(struct bench_opts *o, int argc, char *const argv[], char *err, size_t errlen)
{
	bool seen_messages = false, seen_duration = false;

	bench_opts_defaults(o);
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *eq = strchr(arg, '=');
		size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
		const struct bench_opt_def *d = bench_opts_lookup(arg, name_len);
		const char *v = NULL;

		if (!d)
			return bench_opts_fail(err, errlen, "unknown option '%s' (see --help)",
					       arg);
		if (d->has_arg && eq)
			v = eq + 1;
		else if (d->has_arg && i + 1 < argc)
			v = argv[++i];
		else if (d->has_arg)
			return bench_opts_fail(err, errlen, "%s needs a value", d->name);
		else if (eq)
			return bench_opts_fail(err, errlen, "%s takes no value", d->name);
		seen_messages |= d->id == OPT_MESSAGES;
		seen_duration |= d->id == OPT_DURATION;

		int rc = bench_opts_apply(o, d->id, d->name, v, err, errlen);

		if (rc != 0)
			return rc;
	}
	return bench_opts_finish(o, seen_messages, seen_duration, err, errlen);
}
