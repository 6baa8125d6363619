#include "queue/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/assert.h"

const char ctl_usage[] =
    "commands:\n"
    "  queue                          domains with mail waiting, with counts\n"
    "  list [domain D] [sender S]     the waiting jobs, one per message and domain\n"
    "  show QID                       one message: envelope, recipients, jobs\n"
    "  flush [DOMAIN]                 retry deferred mail now (all, or one domain)\n"
    "  delete QID                     remove a message's waiting recipients (no bounce)\n"
    "  delete --domain D              remove every waiting recipient of a domain (no bounce)\n"
    "  hold | release                 stop / resume all delivery\n"
    "  suspend DOMAIN | resume DOMAIN stop / resume delivery to one domain\n"
    "  (a leading --json asks for a JSON answer)\n";

static const char *const verb_names[] = {
    [CTL_QUEUE] = "queue",     [CTL_LIST] = "list",	  [CTL_SHOW] = "show",
    [CTL_FLUSH] = "flush",     [CTL_DELETE] = "delete",	  [CTL_HOLD] = "hold",
    [CTL_RELEASE] = "release", [CTL_SUSPEND] = "suspend", [CTL_RESUME] = "resume",
};

const char *
ctl_verb_name(enum ctl_verb v)
{
	ASSERT(v >= CTL_QUEUE && v <= CTL_RESUME);
	return verb_names[v];
}

/* ---- parsing ---------------------------------------------------------------------------- */

#define CTL_WORDS_MAX 8

struct word {
	const char *p;
	size_t n;
};

static bool
word_is(const struct word *w, const char *s)
{
	return w->n == strlen(s) && memcmp(w->p, s, w->n) == 0;
}

/* A domain as the queues name it: lower case, no trailing dot, printable, no '@'. */
static int
parse_domain(const struct word *w, char *out, char *err, size_t err_len)
{
	size_t n = w->n;
	if (n > 0 && w->p[n - 1] == '.')
		n--;
	if (n == 0 || n > CTL_DOMAIN_MAX) {
		snprintf(err, err_len, "not a domain: '%.*s'", (int)(w->n > 64 ? 64 : w->n), w->p);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)w->p[i];
		if (c <= ' ' || c == 0x7f || c == '@' || c == '"' || c == '\\') {
			snprintf(err, err_len, "not a domain: '%.*s'", (int)(n > 64 ? 64 : n),
				 w->p);
			return -EINVAL;
		}
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	out[n] = '\0';
	return 0;
}

static int
parse_qid(const struct word *w, uint64_t *qid, char *err, size_t err_len)
{
	uint64_t v = 0;
	bool ok = w->n == 16;
	for (size_t i = 0; ok && i < 16; i++) {
		char c = w->p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			ok = false;
		if (ok)
			v = v << 4 | d;
	}
	if (!ok) {
		snprintf(err, err_len, "not a queue id (16 hex digits): '%.*s'",
			 (int)(w->n > 64 ? 64 : w->n), w->p);
		return -EINVAL;
	}
	*qid = v;
	return 0;
}

static int
parse_sender(const struct word *w, struct ctl_req *r, char *err, size_t err_len)
{
	struct word a = *w;
	if (word_is(&a, "<>")) {
		a.n = 0;
	} else if (a.n >= 2 && a.p[0] == '<' && a.p[a.n - 1] == '>') {
		a.p++;
		a.n -= 2;
	}
	if (a.n > CTL_ADDR_MAX) {
		snprintf(err, err_len, "sender is longer than %d bytes", CTL_ADDR_MAX);
		return -EINVAL;
	}
	memcpy(r->sender, a.p, a.n);
	r->sender[a.n] = '\0';
	r->has_sender = true;
	return 0;
}

static int
parse_list(const struct word *w, unsigned n, struct ctl_req *r, char *err, size_t err_len)
{
	for (unsigned i = 0; i < n; i += 2) {
		if (i + 1 >= n) {
			snprintf(err, err_len, "list: '%.*s' needs a value", (int)w[i].n, w[i].p);
			return -EINVAL;
		}
		if (word_is(&w[i], "domain") && r->domain[0] == '\0') {
			if (parse_domain(&w[i + 1], r->domain, err, err_len) < 0)
				return -EINVAL;
		} else if (word_is(&w[i], "sender") && !r->has_sender) {
			if (parse_sender(&w[i + 1], r, err, err_len) < 0)
				return -EINVAL;
		} else {
			snprintf(err, err_len, "list takes [domain D] [sender S], each once");
			return -EINVAL;
		}
	}
	return 0;
}

/* The arguments of one verb: w[0..n) after the verb. */
static int
parse_args(const struct word *w, unsigned n, struct ctl_req *r, char *err, size_t err_len)
{
	const char *name = ctl_verb_name(r->verb);
	switch (r->verb) {
	case CTL_QUEUE:
	case CTL_HOLD:
	case CTL_RELEASE:
		if (n == 0)
			return 0;
		snprintf(err, err_len, "%s takes no arguments", name);
		return -EINVAL;
	case CTL_LIST:
		return parse_list(w, n, r, err, err_len);
	case CTL_SHOW:
		if (n == 1) {
			r->has_qid = true;
			return parse_qid(&w[0], &r->qid, err, err_len);
		}
		snprintf(err, err_len, "show takes one queue id");
		return -EINVAL;
	case CTL_FLUSH:
		if (n == 0)
			return 0;
		if (n == 1)
			return parse_domain(&w[0], r->domain, err, err_len);
		snprintf(err, err_len, "flush takes at most one domain");
		return -EINVAL;
	case CTL_DELETE:
		if (n == 1 && w[0].p[0] != '-') {
			r->has_qid = true;
			return parse_qid(&w[0], &r->qid, err, err_len);
		}
		if (n == 2 && word_is(&w[0], "--domain"))
			return parse_domain(&w[1], r->domain, err, err_len);
		snprintf(err, err_len, "delete takes a queue id, or --domain D");
		return -EINVAL;
	case CTL_SUSPEND:
	case CTL_RESUME:
		if (n == 1)
			return parse_domain(&w[0], r->domain, err, err_len);
		snprintf(err, err_len, "%s takes one domain", name);
		return -EINVAL;
	}
	ASSERT(!"a verb without arguments rules");
	return -EINVAL;
}

int
ctl_parse(const char *line, size_t len, struct ctl_req *r, char *err, size_t err_len)
{
	struct word w[CTL_WORDS_MAX];
	unsigned n = 0;
	memset(r, 0, sizeof *r);
	for (size_t i = 0; i < len;) {
		if (line[i] == ' ' || line[i] == '\t') {
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		if (n == CTL_WORDS_MAX) {
			snprintf(err, err_len, "too many words");
			return -EINVAL;
		}
		w[n++] = (struct word){line + start, i - start};
	}
	unsigned first = 0;
	if (n > 0 && word_is(&w[0], "--json")) {
		r->json = true;
		first = 1;
	}
	if (first == n) {
		snprintf(err, err_len, "no command");
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)line[i] < ' ' && line[i] != '\t') {
			snprintf(err, err_len, "control bytes in the request");
			return -EINVAL;
		}
	}
	for (unsigned v = CTL_QUEUE; v <= CTL_RESUME; v++)
		if (word_is(&w[first], verb_names[v]))
			r->verb = (enum ctl_verb)v;
	if (r->verb == 0) {
		snprintf(err, err_len, "unknown command '%.*s'",
			 (int)(w[first].n > 64 ? 64 : w[first].n), w[first].p);
		return -EINVAL;
	}
	return parse_args(w + first + 1, n - first - 1, r, err, err_len);
}

/* ---- the bounded writer ----------------------------------------------------------------- */

void
ctl_buf_init(struct ctl_buf *b, char *p, size_t cap)
{
	*b = (struct ctl_buf){.p = p, .cap = cap};
	b->limit = cap > CTL_BUF_RESERVE ? cap - CTL_BUF_RESERVE : cap / 2;
}

void
ctl_buf_put(struct ctl_buf *b, const char *s, size_t n)
{
	if (n > b->cap - b->len) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void
ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t room = b->cap - b->len;
	int n = vsnprintf(b->p + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		b->over = true;
		return;
	}
	b->len += (size_t)n;
}

/* The length of a valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t k;
	uint32_t cp;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		k = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		k = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		k = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

void
ctl_buf_json(struct ctl_buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	ctl_buf_put(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			ctl_buf_put(b, e, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			ctl_buf_printf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			ctl_buf_put(b, s + i, 1);
			i++;
		} else {
			size_t k = utf8_len(u + i, n - i);
			if (k) {
				ctl_buf_put(b, s + i, k);
				i += k;
			} else {
				ctl_buf_put(b, "\\ufffd", 6);
				i++;
			}
		}
	}
	ctl_buf_put(b, "\"", 1);
}

void
ctl_buf_text(struct ctl_buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char o = c < 0x20 || c == 0x7f ? '?' : (char)c;
		ctl_buf_put(b, &o, 1);
	}
}

size_t
ctl_buf_row_begin(struct ctl_buf *b, enum ctl_tag tag)
{
	size_t mark = b->len;
	char t = (char)tag;
	ctl_buf_put(b, &t, 1);
	return mark;
}

bool
ctl_buf_row_end(struct ctl_buf *b, size_t mark)
{
	ctl_buf_put(b, "\n", 1);
	if (!b->over && b->len <= b->limit && !b->cut)
		return true;
	b->len = mark;
	b->over = false;
	b->cut = true;
	return false;
}

void
ctl_duration(char buf[16], uint64_t s)
{
	if (s < 60)
		snprintf(buf, 16, "%llus", (unsigned long long)s);
	else if (s < 3600)
		snprintf(buf, 16, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, 16, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else
		snprintf(buf, 16, "%llud%02lluh", (unsigned long long)(s / 86400 % 100000),
			 (unsigned long long)(s % 86400 / 3600));
}

/* ---- merging ------------------------------------------------------------------------------ */

struct counter {
	char name[32];
	uint64_t v;
};

struct line {
	const char *p; /* the payload, after the tag */
	size_t n;
};

struct merge {
	const struct ctl_req *r;
	struct line error, header;
	bool has_error, has_header;
	struct line *rows;
	size_t nrows, rows_cap;
	struct line *msgs;
	size_t nmsg;
	bool has_msg;
	struct counter c[CTL_COUNTERS_MAX];
	unsigned nc;
};

static bool
counter_is_max(const char *name)
{
	/* body_bytes and memory_limit are the process's, said by every shard alike */
	return strcmp(name, "held") == 0 || strcmp(name, "oldest_s") == 0 ||
	       strcmp(name, "body_bytes") == 0 || strcmp(name, "memory_limit") == 0;
}

static bool
counter_is_bool(const char *name)
{
	return strcmp(name, "held") == 0 || strcmp(name, "truncated") == 0;
}

static void
merge_counters(struct merge *m, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		size_t k = i;
		while (i < n && p[i] != '=' && p[i] != ' ')
			i++;
		if (i >= n || p[i] != '=' || i - k == 0 || i - k >= sizeof m->c[0].name) {
			while (i < n && p[i] != ' ')
				i++;
			continue;
		}
		size_t klen = i - k;
		uint64_t v = 0;
		for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
			v = v * 10 + (uint64_t)(p[i] - '0');
		unsigned c = 0;
		while (c < m->nc &&
		       !(strlen(m->c[c].name) == klen && memcmp(m->c[c].name, p + k, klen) == 0))
			c++;
		if (c == m->nc) {
			if (m->nc == CTL_COUNTERS_MAX)
				continue;
			memcpy(m->c[c].name, p + k, klen);
			m->c[c].name[klen] = '\0';
			m->c[c].v = 0;
			m->nc++;
		}
		if (counter_is_max(m->c[c].name))
			m->c[c].v = v > m->c[c].v ? v : m->c[c].v;
		else
			m->c[c].v += v;
	}
}

static void
merge_line(struct merge *m, const char *p, size_t n, bool first_msg_shard)
{
	if (n == 0)
		return;
	struct line l = {p + 1, n - 1};
	switch (p[0]) {
	case CTL_TAG_ERROR:
		if (!m->has_error) {
			m->error = l;
			m->has_error = true;
		}
		break;
	case CTL_TAG_HEADER:
		if (!m->has_header) {
			m->header = l;
			m->has_header = true;
		}
		break;
	case CTL_TAG_ROW:
		if (m->nrows < m->rows_cap)
			m->rows[m->nrows++] = l;
		break;
	case CTL_TAG_MESSAGE:
		if (first_msg_shard && m->nmsg < m->rows_cap)
			m->msgs[m->nmsg++] = l;
		break;
	case CTL_TAG_COUNTERS:
		merge_counters(m, l.p, l.n);
		break;
	default:
		break; /* not ours: left out */
	}
}

static int
line_cmp(const void *a, const void *b)
{
	const struct line *x = a, *y = b;
	size_t n = x->n < y->n ? x->n : y->n;
	int c = memcmp(x->p, y->p, n);
	if (c)
		return c;
	return x->n < y->n ? -1 : (x->n > y->n);
}

static uint64_t
counter_get(const struct merge *m, const char *name)
{
	for (unsigned i = 0; i < m->nc; i++)
		if (strcmp(m->c[i].name, name) == 0)
			return m->c[i].v;
	return 0;
}

/* "LABEL: k=v ...": booleans only when true (held is said apart when skip_held). */
static void
out_counters_text(struct ctl_buf *b, const struct merge *m, const char *label, bool skip_held)
{
	ctl_buf_printf(b, "%s:", label);
	for (unsigned i = 0; i < m->nc; i++) {
		if (skip_held && strcmp(m->c[i].name, "held") == 0)
			continue;
		if (counter_is_bool(m->c[i].name) && strcmp(m->c[i].name, "held") != 0) {
			if (m->c[i].v)
				ctl_buf_printf(b, " (%s)", m->c[i].name);
			continue;
		}
		ctl_buf_printf(b, " %s=%llu", m->c[i].name, (unsigned long long)m->c[i].v);
	}
	ctl_buf_put(b, "\n", 1);
}

static void
out_counters_json(struct ctl_buf *b, const struct merge *m, bool skip_held, bool comma)
{
	for (unsigned i = 0; i < m->nc; i++) {
		if (skip_held && strcmp(m->c[i].name, "held") == 0)
			continue;
		ctl_buf_printf(b, "%s\"%s\":", comma ? "," : "", m->c[i].name);
		if (counter_is_bool(m->c[i].name))
			ctl_buf_printf(b, "%s", m->c[i].v ? "true" : "false");
		else
			ctl_buf_printf(b, "%llu", (unsigned long long)m->c[i].v);
		comma = true;
	}
}

static void
out_rows_json(struct ctl_buf *b, const struct merge *m, const char *name)
{
	ctl_buf_printf(b, "\"%s\":[", name);
	for (size_t i = 0; i < m->nrows; i++) {
		if (i)
			ctl_buf_put(b, ",", 1);
		ctl_buf_put(b, m->rows[i].p, m->rows[i].n);
	}
	ctl_buf_put(b, "]", 1);
}

static void
out_rows_text(struct ctl_buf *b, const struct merge *m)
{
	if (m->has_header) {
		ctl_buf_put(b, m->header.p, m->header.n);
		ctl_buf_put(b, "\n", 1);
	}
	for (size_t i = 0; i < m->nrows; i++) {
		ctl_buf_put(b, m->rows[i].p, m->rows[i].n);
		ctl_buf_put(b, "\n", 1);
	}
}

static void
out_table(struct ctl_buf *b, const struct merge *m)
{
	bool queue = m->r->verb == CTL_QUEUE;
	if (m->r->json) {
		ctl_buf_printf(b, "{\"held\":%s,", counter_get(m, "held") ? "true" : "false");
		out_rows_json(b, m, queue ? "domains" : "jobs");
		ctl_buf_put(b, ",\"total\":{", 10);
		out_counters_json(b, m, true, false);
		ctl_buf_put(b, "}}\n", 3);
		return;
	}
	if (counter_get(m, "held"))
		ctl_buf_printf(b, "delivery is held (ringmxctl release resumes it)\n");
	out_rows_text(b, m);
	out_counters_text(b, m, "total", true);
}

static void
out_show(struct ctl_buf *b, const struct merge *m)
{
	if (m->r->json) {
		ctl_buf_put(b, "{\"message\":", 11);
		ctl_buf_put(b, m->msgs[0].p, m->msgs[0].n);
		ctl_buf_put(b, ",", 1);
		out_rows_json(b, m, "jobs");
		ctl_buf_put(b, "}\n", 2);
		return;
	}
	for (size_t i = 0; i < m->nmsg; i++) {
		ctl_buf_put(b, m->msgs[i].p, m->msgs[i].n);
		ctl_buf_put(b, "\n", 1);
	}
	if (m->nrows == 0) {
		ctl_buf_printf(b, "jobs: none waiting\n");
		return;
	}
	ctl_buf_printf(b, "jobs:\n");
	out_rows_text(b, m);
}

static void
out_action(struct ctl_buf *b, const struct merge *m)
{
	const char *name = ctl_verb_name(m->r->verb);
	if (m->r->json) {
		ctl_buf_printf(b, "{\"command\":\"%s\"", name);
		out_counters_json(b, m, false, true);
		ctl_buf_put(b, "}\n", 2);
		return;
	}
	out_counters_text(b, m, name, false);
}

size_t
ctl_merge(const struct ctl_req *r, const char *const *ans, const size_t *len, unsigned n, char *out,
	  size_t cap)
{
	struct merge m = {.r = r};
	size_t lines = 0;
	for (unsigned s = 0; s < n; s++)
		for (size_t i = 0; i < len[s]; i++)
			lines += ans[s][i] == '\n';
	m.rows_cap = lines;
	m.rows = malloc((lines ? lines : 1) * sizeof *m.rows);
	m.msgs = malloc((lines ? lines : 1) * sizeof *m.msgs);
	if (!m.rows || !m.msgs) {
		free(m.rows);
		free(m.msgs);
		return ctl_error(r->json, "out of memory", out, cap);
	}
	for (unsigned s = 0; s < n; s++) {
		bool first_msg_shard = !m.has_msg;
		const char *p = ans[s], *end = ans[s] + len[s];
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
			if (ln > 0 && p[0] == CTL_TAG_MESSAGE)
				m.has_msg = true;
			merge_line(&m, p, ln, first_msg_shard);
			p += ln + (nl != NULL);
		}
	}
	size_t written;
	if (m.has_error) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%.*s", (int)m.error.n, m.error.p);
		written = ctl_error(r->json, msg, out, cap);
	} else if (r->verb == CTL_SHOW && !m.has_msg) {
		char msg[64];
		snprintf(msg, sizeof msg, "no message %016llx in the queue",
			 (unsigned long long)r->qid);
		written = ctl_error(r->json, msg, out, cap);
	} else if (r->verb == CTL_DELETE && r->has_qid && counter_get(&m, "rcpts") == 0 &&
		   counter_get(&m, "busy") == 0) {
		char msg[64];
		snprintf(msg, sizeof msg, "no message %016llx waiting in the queue",
			 (unsigned long long)r->qid);
		written = ctl_error(r->json, msg, out, cap);
	} else {
		qsort(m.rows, m.nrows, sizeof *m.rows, line_cmp);
		struct ctl_buf b;
		ctl_buf_init(&b, out, cap);
		if (r->verb == CTL_QUEUE || r->verb == CTL_LIST)
			out_table(&b, &m);
		else if (r->verb == CTL_SHOW)
			out_show(&b, &m);
		else
			out_action(&b, &m);
		written = b.len;
	}
	free(m.rows);
	free(m.msgs);
	return written;
}

size_t
ctl_error(bool json, const char *msg, char *out, size_t cap)
{
	struct ctl_buf b;
	ctl_buf_init(&b, out, cap);
	if (json) {
		ctl_buf_put(&b, "{\"error\":", 9);
		ctl_buf_json(&b, msg, strlen(msg));
		ctl_buf_put(&b, "}\n", 2);
	} else {
		ctl_buf_printf(&b, "error: ");
		ctl_buf_text(&b, msg, strlen(msg));
		ctl_buf_put(&b, "\n", 1);
	}
	return b.len;
}
