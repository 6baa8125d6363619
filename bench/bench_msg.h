/*
 * bench_msg — what ringmx-bench writes to the server: the generated messages, the weighted
 * choice among them, and the command lines of a session (EHLO/HELO, MAIL, RCPT, BDAT) with
 * their --from / --to patterns expanded. Pure: no I/O, and nothing is allocated after
 * bench_msg_set_new().
 *
 * Usage:
 *   struct bench_msg_set *s = bench_msg_set_new(o->sizes, o->nsizes, time(NULL), err, errlen);
 *   const struct bench_msg *m = bench_msg_set_pick(s, random_u64);   per transaction
 *   char *cbuf = malloc(bench_msg_cmd_size_max(o));                  once per connection
 *   n = bench_msg_put_mail(cbuf, &o->from_pat, seq, m->len);
 *   n += bench_msg_put_rcpt(cbuf + n, &o->to_pat, seq, 1);
 *   write cbuf[0..n); after 354, write m->data[0..m->len + 3) (the message and ".\r\n").
 *   bench_msg_set_free(s);
 *
 * A message is exactly the requested number of bytes: RFC 5322 headers (the same for every
 * message of a size), a blank line, then CRLF lines of at most BENCH_MSG_LINE_BYTES bytes.
 * No line starts with '.', so the message needs no dot-stuffing (RFC 5321 4.5.2).
 *
 * Limits: sizes in [BENCH_SIZE_MIN_BYTES, BENCH_SIZE_MAX_BYTES], at most BENCH_SIZES_MAX of
 * them; a command buffer of bench_msg_cmd_size_max() bytes holds the largest group of
 * commands one write carries (MAIL with SIZE=, --rcpts RCPTs, BDAT; or EHLO).
 *
 * Failure: bench_msg_set_new() returns NULL with err filled when memory runs out. The
 * bench_msg_put_* functions cannot fail: they return the number of bytes written (no NUL).
 */
#ifndef RINGMX_BENCH_MSG_H
#define RINGMX_BENCH_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "bench/bench_opts.h"

#define BENCH_MSG_LINE_BYTES 76 /* CRLF included; RFC 5322 2.1.1 recommends 78 at most */

struct bench_msg {
	char *data; /* the message, then ".\r\n" so that DATA sends it in one piece */
	size_t len; /* message bytes, without the terminating ".\r\n" */
};

/* The messages of a run, one per size, built once and then shared read-only by threads. */
struct bench_msg_set;

/*
 * Builds one message of exactly `size` bytes into buf, which has room for size + 3 bytes:
 * ".\r\n" is appended after the message. size >= BENCH_SIZE_MIN_BYTES. date_s (seconds
 * since the epoch) goes into the Date header.
 */
void bench_msg_build(char *buf, size_t size, uint64_t date_s);

/* One message per entry of sizes[0..n), 1 <= n <= BENCH_SIZES_MAX, weights summed in order. */
struct bench_msg_set *bench_msg_set_new(const struct bench_size *sizes, unsigned n, uint64_t date_s,
					char *err, size_t errlen);
void bench_msg_set_free(struct bench_msg_set *s);

/*
 * The message that the random number r picks, each with probability weight / total. With a
 * single size that one, whatever r is. The result lives as long as the set.
 */
const struct bench_msg *bench_msg_set_pick(const struct bench_msg_set *s, uint64_t r);

/* Bytes a command buffer needs for the largest write of commands with these options. */
size_t bench_msg_cmd_size_max(const struct bench_opts *o);

/* "EHLO name\r\n" / "HELO name\r\n"; name is at most BENCH_HELO_MAX bytes. */
size_t bench_msg_put_ehlo(char *out, const char *name);
size_t bench_msg_put_helo(char *out, const char *name);

/*
 * "MAIL FROM:<from>\r\n" with {n} = seq; with " SIZE=size_bytes" (RFC 1870) before the CRLF
 * when size_bytes is not 0. out has room for the MAIL share of bench_msg_cmd_size_max().
 */
size_t bench_msg_put_mail(char *out, const struct bench_pattern *from, uint64_t seq,
			  uint64_t size_bytes);

/* "RCPT TO:<to>\r\n" with {n} = seq and {r} = rcpt, the recipient's 1-based index. */
size_t bench_msg_put_rcpt(char *out, const struct bench_pattern *to, uint64_t seq, unsigned rcpt);

/* "BDAT size_bytes LAST\r\n" (RFC 3030 2): the whole message as one chunk. */
size_t bench_msg_put_bdat(char *out, uint64_t size_bytes);

#endif
