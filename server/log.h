/*
 * log — one logfmt line per event on stderr: `ts=... level=... shard=... event=... k=v ...`.
 *
 * Lines are built in a per-thread buffer. Shard threads call log_flush() once per loop turn,
 * so a burst of events costs one write(2); other threads write each line at log_finish().
 * Values that hold spaces, quotes, '=' or control bytes are quoted and escaped.
 *
 * Usage:
 *   if (log_start(LOG_INFO, "connect")) { log_str("client", ip); log_u64("conn", id); log_finish(); }
 *
 * Limits: a line is cut at LOG_LINE_MAX bytes. Failure: write errors on stderr are ignored.
 */
#ifndef RINGMX_LOG_H
#define RINGMX_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

#define LOG_LINE_MAX 2048

void log_set_level(enum log_level level);
/* Names this thread in every line (shard=N); batched says whether it flushes once a turn. */
void log_thread_init(int shard, bool batched);

bool log_start(enum log_level level, const char *event);
void log_str(const char *key, const char *val);
void log_strn(const char *key, const char *val, size_t len);
void log_u64(const char *key, uint64_t val);
void log_i64(const char *key, int64_t val);
void log_qid(uint64_t qid);
void log_finish(void);
void log_flush(void);

/* Formats a qid as 16 lower-case hex digits into buf (17 bytes). */
void log_qid_format(uint64_t qid, char buf[17]);

/* Convenience for one-off messages outside the hot path: event with a msg="..." field. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
