/*
 * bench_opts — ringmx-bench's command line: parsing and validation, no I/O.
 *
 * bench_opts_parse() fills a struct bench_opts from argv ("--name value" or "--name=value").
 * The pieces it is built from are public so that they are unit-tested on their own: byte
 * sizes with k/m suffixes, weighted size lists ("1k:50,10k:40,100k:10"), host:port, and
 * address patterns with {n} (global message sequence number) and {r} (recipient index,
 * 1-based) placeholders, compiled once and expanded without allocation on the hot path.
 *
 * Usage:
 *   struct bench_opts o;
 *   char err[256];
 *   int rc = bench_opts_parse(&o, argc, argv, err, sizeof err);
 *   rc: 0 run, BENCH_OPTS_HELP print bench_opts_usage(), -EINVAL usage error (err says
 *       which).
 *
 * Limits: the BENCH_*_MAX constants below; each is checked with a message naming the option.
 * String fields (from, to, helo) point into argv and live as long as it does.
 *
 * Failure: functions return 0 on success, -EINVAL on bad input with err filled (when given).
 */
#ifndef RINGMX_BENCH_OPTS_H
#define RINGMX_BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_SIZES_MAX 16		  /* entries in a weighted --size list */
#define BENCH_SIZE_MIN_BYTES 256	  /* room for the generated headers */
#define BENCH_SIZE_MAX_BYTES (256u << 20) /* one message */
#define BENCH_WEIGHT_MAX 1000000u
#define BENCH_RCPTS_MAX 1000 /* RFC 5321 4.5.3.1.8 asks servers for 100 */
#define BENCH_CONNECTIONS_MAX 1000000u
#define BENCH_THREADS_MAX 1024u
#define BENCH_PATTERN_MAX 256 /* bytes in --from / --to before expansion */
#define BENCH_PATTERN_SEGS_MAX 16
#define BENCH_HELO_MAX 255 /* RFC 1035 name length */
#define BENCH_HOST_MAX 255
#define BENCH_BUSY_POLL_MAX_US 100000
#define BENCH_TIMEOUT_MAX_S 3600.0
#define BENCH_U64_DIGITS 20 /* decimal digits of UINT64_MAX */

/* Writes the decimal digits of v (no NUL) to out, which has room for BENCH_U64_DIGITS;
 * returns their count. Allocation-free, for the per-message command writers. */
size_t bench_opts_u64_to_dec(uint64_t v, char *out);

#define BENCH_OPTS_HELP 1

struct bench_size {
	uint64_t bytes;
	uint32_t weight;
};

enum bench_pattern_kind {
	BENCH_PATTERN_LITERAL,
	BENCH_PATTERN_SEQ,  /* {n} */
	BENCH_PATTERN_RCPT, /* {r} */
};

/* A compiled address pattern: literal slices of the source string and placeholders. */
struct bench_pattern {
	unsigned nseg;
	size_t max_len; /* longest expansion, in bytes */
	struct bench_pattern_seg {
		enum bench_pattern_kind kind;
		const char *p; /* literal only; points into the source string */
		size_t len;
	} seg[BENCH_PATTERN_SEGS_MAX];
};

struct bench_opts {
	char host[BENCH_HOST_MAX + 1]; /* without the brackets of an IPv6 literal */
	char port[6];
	unsigned threads;     /* 0: one per CPU it may run on, decided by the caller */
	unsigned connections; /* default 10 */
	uint64_t messages;    /* measured messages; 0 in --duration mode */
	double duration_s;    /* 0 in --messages mode */
	double warmup_s;      /* default 0 */
	struct bench_size sizes[BENCH_SIZES_MAX];
	unsigned nsizes;       /* >= 1 */
	unsigned rcpts;	       /* default 1 */
	uint64_t per_conn;     /* messages per connection; 0 = whole run */
	double rate;	       /* messages/s over all threads; 0 = closed loop */
	double timeout_s;      /* per reply, default 30 */
	unsigned busy_poll_us; /* poll before sleeping after a busy turn; 0 = never */
	bool pipelining;
	bool pipelining_envelope; /* with pipelining: nothing pipelined behind the message's "." */
	bool chunking;
	bool starttls; /* RFC 3207 on every connection; the server's certificate is not checked */
	bool json;
	const char *from; /* pattern, may be "" (null reverse-path) */
	const char *to;	  /* pattern */
	const char *helo;
	struct bench_pattern from_pat;
	struct bench_pattern to_pat;
};

void bench_opts_defaults(struct bench_opts *o);
int bench_opts_parse(struct bench_opts *o, int argc, char *const argv[], char *err, size_t errlen);
const char *bench_opts_usage(void);

/* "4096", "4k", "10M": bytes (k = 1024). Rejects signs, junk, overflow. */
int bench_opts_parse_bytes(const char *s, uint64_t *out);

/*
 * "4k" or "1k:50,10k:40,100k:10" (weight defaults to 1): up to BENCH_SIZES_MAX entries,
 * each size in [BENCH_SIZE_MIN_BYTES, BENCH_SIZE_MAX_BYTES], each weight in [1, WEIGHT_MAX].
 */
int bench_opts_parse_sizes(const char *s, struct bench_size *out, unsigned *n, char *err,
			   size_t errlen);

/* "host:port", "1.2.3.4:25" or "[::1]:25"; the host is copied without brackets. */
int bench_opts_parse_server(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/*
 * Compiles an address pattern. Allowed: printable ASCII except space, '<', '>' and '"'; '{'
 * only as "{n}" or (when allow_rcpt) "{r}". out keeps pointers into s.
 */
int bench_opts_pattern_compile(const char *s, bool allow_rcpt, struct bench_pattern *out, char *err,
			       size_t errlen);

/* Writes the expansion (no NUL) to out, which has room for p->max_len bytes; returns length. */
size_t bench_opts_pattern_expand(const struct bench_pattern *p, uint64_t n, unsigned r, char *out);

#endif
