#include "server/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF_SIZE 16384

static _Atomic int log_level_min = LOG_INFO;

static _Thread_local struct {
	char buf[LOG_BUF_SIZE];
	size_t len;
	size_t line_start;
	bool active;
	bool batched;
	int shard;
	time_t ts_sec;
	char ts_prefix[32]; /* "2026-11-24T20:31:13" for ts_sec */
} tl = {.shard = -1};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_set_level(enum log_level level)
{
	atomic_store_explicit(&log_level_min, (int)level, memory_order_relaxed);
}

void
log_thread_init(int shard, bool batched)
{
	tl.shard = shard;
	tl.batched = batched;
}

static void
log_write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			return; /* nowhere to report it */
		p += w;
		n -= (size_t)w;
	}
}

void
log_flush(void)
{
	log_write_all(tl.buf, tl.len);
	tl.len = 0;
}

static void
log_append(const char *p, size_t n)
{
	size_t room = LOG_BUF_SIZE - tl.len;
	/* Keep one byte for the newline; cut the line rather than overflow. */
	if (tl.len - tl.line_start + n > LOG_LINE_MAX)
		n = LOG_LINE_MAX > tl.len - tl.line_start ? LOG_LINE_MAX - (tl.len - tl.line_start) : 0;
	if (n + 1 > room)
		n = room > 1 ? room - 1 : 0;
	memcpy(tl.buf + tl.len, p, n);
	tl.len += n;
}

bool
log_start(enum log_level level, const char *event)
{
	if ((int)level < atomic_load_explicit(&log_level_min, memory_order_relaxed))
		return false;
	/* Make room for a whole line up front, so a line never straddles two writes. */
	if (LOG_BUF_SIZE - tl.len < LOG_LINE_MAX + 2)
		log_flush();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != tl.ts_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(tl.ts_prefix, sizeof tl.ts_prefix, "%Y-%m-%dT%H:%M:%S", &tm);
		tl.ts_sec = ts.tv_sec;
	}
	tl.line_start = tl.len;
	tl.active = true;
	char head[128];
	int n;
	if (tl.shard >= 0)
		n = snprintf(head, sizeof head, "ts=%s.%03ldZ level=%s shard=%d event=%s",
			     tl.ts_prefix, ts.tv_nsec / 1000000, level_names[level], tl.shard, event);
	else
		n = snprintf(head, sizeof head, "ts=%s.%03ldZ level=%s event=%s", tl.ts_prefix,
			     ts.tv_nsec / 1000000, level_names[level], event);
	log_append(head, (size_t)n);
	return true;
}

static bool
log_needs_quotes(const char *v, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			return true;
	}
	return false;
}

void
log_strn(const char *key, const char *val, size_t len)
{
	char tmp[LOG_LINE_MAX];
	size_t o = 0;
	tmp[o++] = ' ';
	size_t klen = strlen(key);
	memcpy(tmp + o, key, klen);
	o += klen;
	tmp[o++] = '=';
	if (!log_needs_quotes(val, len)) {
		log_append(tmp, o);
		log_append(val, len);
		return;
	}
	tmp[o++] = '"';
	for (size_t i = 0; i < len && o < sizeof tmp - 6; i++) {
		unsigned char c = (unsigned char)val[i];
		if (c == '"' || c == '\\') {
			tmp[o++] = '\\';
			tmp[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(tmp + o, 5, "\\x%02x", c);
		} else {
			tmp[o++] = (char)c;
		}
	}
	tmp[o++] = '"';
	log_append(tmp, o);
}

void
log_str(const char *key, const char *val)
{
	log_strn(key, val ? val : "", val ? strlen(val) : 0);
}

void
log_u64(const char *key, uint64_t val)
{
	char tmp[96];
	int n = snprintf(tmp, sizeof tmp, " %s=%llu", key, (unsigned long long)val);
	log_append(tmp, (size_t)n);
}

void
log_i64(const char *key, int64_t val)
{
	char tmp[96];
	int n = snprintf(tmp, sizeof tmp, " %s=%lld", key, (long long)val);
	log_append(tmp, (size_t)n);
}

void
log_qid_format(uint64_t qid, char buf[17])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 15; i >= 0; i--) {
		buf[i] = hex[qid & 0xf];
		qid >>= 4;
	}
	buf[16] = '\0';
}

void
log_qid(uint64_t qid)
{
	char q[17];
	log_qid_format(qid, q);
	log_strn("qid", q, 16);
}

void
log_finish(void)
{
	if (!tl.active)
		return;
	tl.buf[tl.len++] = '\n';
	tl.active = false;
	if (!tl.batched)
		log_flush();
}

void
log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	if (!log_start(level, event))
		return;
	char tmp[LOG_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	log_strn("msg", tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
	log_finish();
}
