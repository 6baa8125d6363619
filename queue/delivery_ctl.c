/*
 * delivery_ctl — ringmxctl's requests, run on the shard thread against its delivery: what the
 * owner side holds (domains, ready and scheduled jobs, jobs in a transaction now), what the
 * home side holds (show), and the actions (flush, delete, hold, release, suspend, resume).
 * The answer is one shard's part in the tagged-line form of queue/ctl.h; the daemon merges.
 */
#include "queue/delivery.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "queue/assert.h"
#include "queue/ctl.h"
#include "queue/delivery_impl.h"
#include "queue/spool_scan.h"
#include "server/log.h"

#define CTL_SHOW_RCPTS_MAX 1000 /* recipients listed by show */
#define CTL_ROW_RCPTS_MAX 100	/* recipients listed in a JSON job row */

enum job_where { JOB_READY, JOB_DEFERRED, JOB_ACTIVE };

static const char *const where_names[] = {
    [JOB_READY] = "ready", [JOB_DEFERRED] = "deferred", [JOB_ACTIVE] = "active"};

/* One request: its clock, the domains it looks at and the jobs in a transaction now. */
struct ctl_ctx {
	struct delivery *d;
	const struct ctl_req *r;
	struct ctl_buf *b;
	uint64_t now_ms, wall_ms;
	struct dlv_domain **doms; /* sorted by name; only r->domain when it is set */
	uint32_t ndoms;
	struct dlv_job **active; /* sorted by domain */
	uint32_t nactive;
	/* counters for the C line */
	uint64_t c_domains, c_ready, c_deferred, c_active, c_oldest_s, c_jobs, c_rcpts, c_busy;
	uint64_t oldest_arrival_ms; /* of the domain being looked at */
};

static uint64_t
age_s(const struct ctl_ctx *x, uint64_t arrival_ms)
{
	return x->wall_ms > arrival_ms ? (x->wall_ms - arrival_ms) / 1000 : 0;
}

/* Seconds until a monotonic deadline, rounded up; 0 once it passed. */
static uint64_t
left_s(const struct ctl_ctx *x, uint64_t until_ms)
{
	return until_ms > x->now_ms ? (until_ms - x->now_ms + 999) / 1000 : 0;
}

/* s (n bytes) made printable into dst, for a printf column. */
static const char *
text_copy(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	dst[n] = '\0';
	return dst;
}

/* ---- what the request looks at ---------------------------------------------------------- */

static int
dom_cmp(const void *a, const void *b)
{
	const struct dlv_domain *x = *(struct dlv_domain *const *)a;
	const struct dlv_domain *y = *(struct dlv_domain *const *)b;
	return strcmp(x->name, y->name);
}

static int
active_cmp(const void *a, const void *b)
{
	const struct dlv_job *x = *(struct dlv_job *const *)a;
	const struct dlv_job *y = *(struct dlv_job *const *)b;
	if (x->dom != y->dom)
		return (uintptr_t)x->dom < (uintptr_t)y->dom ? -1 : 1;
	return 0;
}

/* Fills the context; false when out of memory. */
static bool
ctx_init(struct ctl_ctx *x, struct delivery *d, const struct ctl_req *r, struct ctl_buf *b)
{
	memset(x, 0, sizeof *x);
	x->d = d;
	x->r = r;
	x->b = b;
	x->now_ms = dlv_now(d);
	x->wall_ms = dlv_wall_ms();
	x->doms = malloc((d->ndom ? d->ndom : 1) * sizeof *x->doms);
	if (!x->doms)
		return false;
	for (uint32_t i = 0; i <= d->dom_mask; i++)
		for (struct dlv_domain *dom = d->dom_tab[i]; dom; dom = dom->hnext)
			if (r->domain[0] == '\0' || strcmp(dom->name, r->domain) == 0)
				x->doms[x->ndoms++] = dom;
	qsort(x->doms, x->ndoms, sizeof *x->doms, dom_cmp);
	uint32_t n = 0;
	for (uint32_t i = 0; i < d->nconns_cap; i++)
		n += d->conns[i] && d->conns[i]->job;
	x->active = malloc((n ? n : 1) * sizeof *x->active);
	if (!x->active) {
		free(x->doms);
		return false;
	}
	for (uint32_t i = 0; i < d->nconns_cap && x->nactive < n; i++)
		if (d->conns[i] && d->conns[i]->job)
			x->active[x->nactive++] = d->conns[i]->job;
	qsort(x->active, x->nactive, sizeof *x->active, active_cmp);
	return true;
}

static void
ctx_fini(struct ctl_ctx *x)
{
	free(x->doms);
	free(x->active);
}

/* The jobs of dom in a transaction now: active[*lo .. *hi). */
static void
active_range(const struct ctl_ctx *x, const struct dlv_domain *dom, uint32_t *lo, uint32_t *hi)
{
	uint32_t a = 0, b = x->nactive;
	while (a < b) {
		uint32_t mid = a + (b - a) / 2;
		if ((uintptr_t)x->active[mid]->dom < (uintptr_t)dom)
			a = mid + 1;
		else
			b = mid;
	}
	*lo = a;
	while (a < x->nactive && x->active[a]->dom == dom)
		a++;
	*hi = a;
}

typedef void (*job_fn)(struct ctl_ctx *x, struct dlv_job *j, enum job_where w);

/* Calls fn for every job of dom: ready, scheduled, in a transaction. fn must not move them. */
static void
dom_each_job(struct ctl_ctx *x, struct dlv_domain *dom, job_fn fn)
{
	for (struct dlv_job *j = dom->ready_head; j; j = j->next)
		fn(x, j, JOB_READY);
	for (uint32_t i = 0; i < dom->nsched; i++)
		fn(x, dom->sched[i], JOB_DEFERRED);
	uint32_t lo, hi;
	active_range(x, dom, &lo, &hi);
	for (uint32_t i = lo; i < hi; i++)
		fn(x, x->active[i], JOB_ACTIVE);
}

static void counters_line(struct ctl_ctx *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The C line: the verb's counters; the tables add held and truncated, hold and release held. */
static void
counters_line(struct ctl_ctx *x, const char *fmt, ...)
{
	char body[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof body, fmt, ap);
	va_end(ap);
	enum ctl_verb v = x->r->verb;
	ctl_buf_printf(x->b, "%c%s", CTL_TAG_COUNTERS, body);
	if (v == CTL_QUEUE || v == CTL_LIST || v == CTL_SHOW || v == CTL_HOLD || v == CTL_RELEASE)
		ctl_buf_printf(x->b, " held=%d", x->d->held);
	if (v == CTL_QUEUE || v == CTL_LIST || v == CTL_SHOW)
		ctl_buf_printf(x->b, " truncated=%d", x->b->cut);
	ctl_buf_put(x->b, "\n", 1);
}

/* ---- queue ------------------------------------------------------------------------------ */

static const char *
route_name(enum dom_route r)
{
	switch (r) {
	case DR_NONE:
		return "none";
	case DR_RESOLVING:
		return "resolving";
	case DR_SITE:
		return "site";
	case DR_LOCAL:
		return "maildir";
	case DR_DISCARD:
		return "discard";
	}
	return "?";
}

static void
oldest_of(struct ctl_ctx *x, struct dlv_job *j, enum job_where w)
{
	(void)w;
	if (j->m->v.arrival_ms < x->oldest_arrival_ms)
		x->oldest_arrival_ms = j->m->v.arrival_ms;
}

static void
queue_row_json(struct ctl_ctx *x, const struct dlv_domain *dom, uint32_t nactive, uint64_t age,
	       uint64_t backoff)
{
	struct ctl_buf *b = x->b;
	const struct dlv_site *s = dom->site;
	ctl_buf_printf(b, "{\"domain\":");
	ctl_buf_json(b, dom->name, strlen(dom->name));
	ctl_buf_printf(b,
		       ",\"shard\":%u,\"ready\":%u,\"deferred\":%u,\"active\":%u,\"oldest_s\":%llu,"
		       "\"suspended\":%s,\"route\":\"%s\",\"site\":",
		       x->d->shard, dom->nready, dom->nsched, nactive, (unsigned long long)age,
		       dom->suspended ? "true" : "false", route_name(dom->route));
	if (s)
		ctl_buf_json(b, s->key, strlen(s->key));
	else
		ctl_buf_printf(b, "null");
	ctl_buf_printf(b, ",\"backoff_s\":%llu,\"backoff_reason\":", (unsigned long long)backoff);
	if (backoff)
		ctl_buf_json(b, s->backoff_reason, strlen(s->backoff_reason));
	else
		ctl_buf_printf(b, "null");
	ctl_buf_printf(b, ",\"last_error\":");
	if (dom->last_error[0])
		ctl_buf_json(b, dom->last_error, strlen(dom->last_error));
	else
		ctl_buf_printf(b, "null");
	ctl_buf_printf(b, ",\"delivered\":%llu,\"deferrals\":%llu,\"bounced\":%llu}",
		       (unsigned long long)dom->delivered, (unsigned long long)dom->deferred_n,
		       (unsigned long long)dom->bounced);
}

static void
queue_row_text(struct ctl_ctx *x, const struct dlv_domain *dom, uint32_t nactive, uint64_t age,
	       uint64_t backoff)
{
	struct ctl_buf *b = x->b;
	char name[CTL_DOMAIN_MAX + 1], ag[16], bo[16] = "-";
	ctl_duration(ag, age);
	if (backoff)
		ctl_duration(bo, backoff);
	ctl_buf_printf(b, "%-30s %6u %8u %6u %8s %8s %-9s ",
		       text_copy(name, sizeof name, dom->name, strlen(dom->name)), dom->nready,
		       dom->nsched, nactive, ag, bo, dom->suspended ? "suspended" : "-");
	ctl_buf_text(b, dom->last_error, strlen(dom->last_error));
	const char *reason = backoff ? dom->site->backoff_reason : "";
	if (reason[0] && strcmp(reason, dom->last_error) != 0) {
		ctl_buf_printf(b, "%s(backoff: ", dom->last_error[0] ? " " : "");
		ctl_buf_text(b, reason, strlen(reason));
		ctl_buf_printf(b, ")");
	}
}

static void
ctl_queue(struct ctl_ctx *x)
{
	if (!x->r->json)
		ctl_buf_printf(x->b, "%c%-30s %6s %8s %6s %8s %8s %-9s %s\n", CTL_TAG_HEADER,
			       "DOMAIN", "READY", "DEFERRED", "ACTIVE", "OLDEST", "BACKOFF",
			       "STATE", "LAST ERROR");
	for (uint32_t i = 0; i < x->ndoms; i++) {
		struct dlv_domain *dom = x->doms[i];
		uint32_t lo, hi;
		active_range(x, dom, &lo, &hi);
		uint32_t nactive = hi - lo;
		if (dom->nready + dom->nsched + nactive == 0 && !dom->suspended)
			continue;
		x->oldest_arrival_ms = UINT64_MAX;
		dom_each_job(x, dom, oldest_of);
		uint64_t age =
		    x->oldest_arrival_ms == UINT64_MAX ? 0 : age_s(x, x->oldest_arrival_ms);
		uint64_t backoff = dom->site ? left_s(x, dom->site->backoff_until_ms) : 0;
		x->c_domains++;
		x->c_ready += dom->nready;
		x->c_deferred += dom->nsched;
		x->c_active += nactive;
		if (age > x->c_oldest_s)
			x->c_oldest_s = age;
		size_t mark = ctl_buf_row_begin(x->b, CTL_TAG_ROW);
		if (x->r->json)
			queue_row_json(x, dom, nactive, age, backoff);
		else
			queue_row_text(x, dom, nactive, age, backoff);
		ctl_buf_row_end(x->b, mark);
	}
	counters_line(x,
		      "domains=%llu ready=%llu deferred=%llu active=%llu oldest_s=%llu "
		      "body_bytes=%llu memory_limit=%llu spilled=%llu",
		      (unsigned long long)x->c_domains, (unsigned long long)x->c_ready,
		      (unsigned long long)x->c_deferred, (unsigned long long)x->c_active,
		      (unsigned long long)x->c_oldest_s, (unsigned long long)qmsg_body_bytes(),
		      (unsigned long long)x->d->cfg->memory_limit,
		      (unsigned long long)x->d->spilled_msgs);
}

/* ---- list, and the jobs of show ---------------------------------------------------------- */

static void
job_header(struct ctl_ctx *x)
{
	if (!x->r->json)
		ctl_buf_printf(x->b, "%c%-16s %-28s %5s %8s %-8s %8s %8s  %s\n", CTL_TAG_HEADER,
			       "QID", "DOMAIN", "RCPTS", "ATTEMPTS", "STATE", "NEXT", "AGE",
			       "SENDER");
}

static bool
sender_matches(const struct ctl_req *r, const struct qmsg *m)
{
	if (!r->has_sender)
		return true;
	size_t n = strlen(r->sender);
	return m->v.from.len == n && strncasecmp(m->v.from.p, r->sender, n) == 0;
}

static void
job_row(struct ctl_ctx *x, struct dlv_job *j, enum job_where w)
{
	const struct qmsg *m = j->m;
	struct ctl_buf *b = x->b;
	char qid[17];
	log_qid_format(m->v.qid, qid);
	/* a ready job waits for its site's backoff, if any */
	const struct dlv_site *s = j->dom ? j->dom->site : NULL;
	uint64_t next = w == JOB_DEFERRED     ? left_s(x, j->due_ms)
			: w == JOB_READY && s ? left_s(x, s->backoff_until_ms)
					      : 0;
	uint64_t age = age_s(x, m->v.arrival_ms);
	x->c_jobs++;
	x->c_rcpts += j->n;
	size_t mark = ctl_buf_row_begin(b, CTL_TAG_ROW);
	if (x->r->json) {
		ctl_buf_printf(b, "{\"qid\":\"%s\",\"domain\":", qid);
		ctl_buf_json(b, j->domain, strlen(j->domain));
		ctl_buf_printf(b, ",\"sender\":");
		ctl_buf_json(b, m->v.from.p, m->v.from.len);
		ctl_buf_printf(b, ",\"nrcpt\":%u,\"rcpts\":[", j->n);
		for (uint32_t i = 0; i < j->n && i < CTL_ROW_RCPTS_MAX; i++) {
			struct spool_str a = m->rcpt[j->ridx[i]];
			if (i)
				ctl_buf_put(b, ",", 1);
			ctl_buf_json(b, a.p, a.len);
		}
		ctl_buf_printf(b,
			       "],\"attempts\":%u,\"state\":\"%s\",\"next_s\":%llu,\"age_s\":%llu,"
			       "\"shard\":%u}",
			       j->attempts, where_names[w], (unsigned long long)next,
			       (unsigned long long)age, x->d->shard);
	} else {
		char dom[CTL_DOMAIN_MAX + 1], nx[16] = "-", ag[16];
		if (w != JOB_ACTIVE)
			ctl_duration(nx, next);
		ctl_duration(ag, age);
		ctl_buf_printf(b, "%s %-28s %5u %8u %-8s %8s %8s  <", qid,
			       text_copy(dom, sizeof dom, j->domain, strlen(j->domain)), j->n,
			       j->attempts, where_names[w], nx, ag);
		ctl_buf_text(b, m->v.from.p, m->v.from.len);
		ctl_buf_put(b, ">", 1);
	}
	ctl_buf_row_end(b, mark);
}

static void
list_job(struct ctl_ctx *x, struct dlv_job *j, enum job_where w)
{
	if (sender_matches(x->r, j->m))
		job_row(x, j, w);
}

static void
ctl_list(struct ctl_ctx *x)
{
	job_header(x);
	for (uint32_t i = 0; i < x->ndoms; i++)
		dom_each_job(x, x->doms[i], list_job);
	counters_line(x, "jobs=%llu rcpts=%llu", (unsigned long long)x->c_jobs,
		      (unsigned long long)x->c_rcpts);
}

/* ---- show -------------------------------------------------------------------------------- */

static void
show_home_text(struct ctl_ctx *x, const struct qmsg *m)
{
	struct ctl_buf *b = x->b;
	const struct spool_record_view *v = &m->v;
	char qid[17], when[32], ag[16], seg[64];
	log_qid_format(v->qid, qid);
	time_t t = (time_t)(v->arrival_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	ctl_duration(ag, age_s(x, v->arrival_ms));
	snprintf(seg, sizeof seg, SPOOL_SEGMENT_FMT, m->seq);
	ctl_buf_printf(b, "Mqid:        %s\nMfrom:       <", qid);
	ctl_buf_text(b, v->from.p, v->from.len);
	ctl_buf_printf(b, ">\nMarrival:    %s (%s ago)\nMsize:       %u bytes\nMclient:     ", when,
		       ag, v->msg_len);
	ctl_buf_text(b, v->client.p, v->client.len);
	ctl_buf_printf(b, " (helo ");
	ctl_buf_text(b, v->helo.p, v->helo.len);
	ctl_buf_printf(b, ")\nMspool:      %s%s/%s (home shard %u)\n", x->d->cfg->spool_dir,
		       m->stream == QMSG_DEFERRED ? "/deferred" : "", seg, m->home);
	ctl_buf_printf(b, "Mrecipients: %u, %u pending\n", v->nrcpt, m->pending);
	for (uint32_t i = 0; i < v->nrcpt && i < CTL_SHOW_RCPTS_MAX; i++) {
		ctl_buf_printf(b, "M  %-8s ", m->rdone[i] ? "done" : "pending");
		ctl_buf_text(b, m->rcpt[i].p, m->rcpt[i].len);
		ctl_buf_put(b, "\n", 1);
	}
	if (v->nrcpt > CTL_SHOW_RCPTS_MAX)
		ctl_buf_printf(b, "M  (%u more)\n", v->nrcpt - CTL_SHOW_RCPTS_MAX);
}

static void
show_home_json(struct ctl_ctx *x, const struct qmsg *m)
{
	struct ctl_buf *b = x->b;
	const struct spool_record_view *v = &m->v;
	char qid[17], seg[64];
	log_qid_format(v->qid, qid);
	snprintf(seg, sizeof seg, SPOOL_SEGMENT_FMT, m->seq);
	ctl_buf_printf(b, "M{\"qid\":\"%s\",\"from\":", qid);
	ctl_buf_json(b, v->from.p, v->from.len);
	ctl_buf_printf(b, ",\"arrival_ms\":%llu,\"age_s\":%llu,\"size\":%u,\"client\":",
		       (unsigned long long)v->arrival_ms,
		       (unsigned long long)age_s(x, v->arrival_ms), v->msg_len);
	ctl_buf_json(b, v->client.p, v->client.len);
	ctl_buf_printf(b, ",\"helo\":");
	ctl_buf_json(b, v->helo.p, v->helo.len);
	ctl_buf_printf(b,
		       ",\"home_shard\":%u,\"stream\":\"%s\",\"segment\":\"%s\",\"nrcpt\":%u,"
		       "\"pending\":%u,\"recipients\":[",
		       m->home, m->stream == QMSG_DEFERRED ? "deferred" : "hot", seg, v->nrcpt,
		       m->pending);
	for (uint32_t i = 0; i < v->nrcpt && i < CTL_SHOW_RCPTS_MAX; i++) {
		ctl_buf_printf(b, "%s{\"addr\":", i ? "," : "");
		ctl_buf_json(b, m->rcpt[i].p, m->rcpt[i].len);
		ctl_buf_printf(b, ",\"done\":%s}", m->rdone[i] ? "true" : "false");
	}
	ctl_buf_printf(b, "]}\n");
}

static void
show_job(struct ctl_ctx *x, struct dlv_job *j, enum job_where w)
{
	if (j->m->v.qid == x->r->qid)
		job_row(x, j, w);
}

static void
ctl_show(struct ctl_ctx *x)
{
	for (const struct qmsg *m = x->d->home_msgs; m; m = m->next) {
		if (m->v.qid != x->r->qid)
			continue;
		size_t mark = x->b->len;
		if (x->r->json)
			show_home_json(x, m);
		else
			show_home_text(x, m);
		if (x->b->over || x->b->len > x->b->limit) {
			x->b->len = mark;
			x->b->over = false;
			ctl_buf_printf(x->b, "%cthe message's envelope is too large to show\n",
				       CTL_TAG_ERROR);
		}
		break;
	}
	job_header(x);
	for (uint32_t i = 0; i < x->ndoms; i++)
		dom_each_job(x, x->doms[i], show_job);
	counters_line(x, "jobs=%llu rcpts=%llu", (unsigned long long)x->c_jobs,
		      (unsigned long long)x->c_rcpts);
}

/* ---- flush ------------------------------------------------------------------------------- */

static int
due_cmp(const void *a, const void *b)
{
	const struct dlv_job *x = *(struct dlv_job *const *)a;
	const struct dlv_job *y = *(struct dlv_job *const *)b;
	return x->due_ms < y->due_ms ? -1 : (x->due_ms > y->due_ms);
}

/* Appends j to dom's ready queue (its end). */
static void
ready_append(struct dlv_domain *dom, struct dlv_job *j)
{
	j->next = NULL;
	if (dom->ready_tail)
		dom->ready_tail->next = j;
	else
		dom->ready_head = j;
	dom->ready_tail = j;
	dom->nready++;
}

static void
ctl_flush(struct ctl_ctx *x)
{
	struct delivery *d = x->d;
	uint64_t jobs = 0, domains = 0, sites = 0;
	for (uint32_t i = 0; i < x->ndoms; i++) {
		struct dlv_domain *dom = x->doms[i];
		if (dom->nsched > 0) {
			/* the heap's array, in due order, to the ready queue's end */
			qsort(dom->sched, dom->nsched, sizeof *dom->sched, due_cmp);
			for (uint32_t k = 0; k < dom->nsched; k++)
				ready_append(dom, dom->sched[k]);
			jobs += dom->nsched;
			domains++;
			dom->nsched = 0;
		}
		if (dom->nready == 0)
			continue;
		struct dlv_site *s = dom->site;
		if (s && s->backoff_until_ms > x->now_ms) {
			dlv_site_ok(s);
			if (s->timer.armed)
				timer_disarm(&d->loop->wheel, &s->timer);
			sites++;
		}
		if (s)
			dlv_site_mark(s);
		dlv_domain_mark(d, dom);
	}
	counters_line(x, "jobs=%llu domains=%llu backoffs_cleared=%llu", (unsigned long long)jobs,
		      (unsigned long long)domains, (unsigned long long)sites);
}

/* ---- delete ------------------------------------------------------------------------------ */

static bool
delete_matches(const struct ctl_req *r, const struct dlv_job *j)
{
	return r->has_qid ? j->m->v.qid == r->qid : true; /* --domain: ctx holds that domain only */
}

/* Records the job's recipients as done at the home, without a bounce (a report whose entries
 * are all delivered), logs each, frees the job. False when out of memory (the job stays). */
static bool
job_delete(struct ctl_ctx *x, struct dlv_job *j)
{
	struct qmsg *m = j->m;
	struct dlv_report *rep = calloc(1, sizeof *rep + j->n * sizeof rep->e[0]);
	if (!rep)
		return false;
	rep->x.kind = X_REPORT;
	rep->m = m;
	qmsg_ref(m);
	rep->when_ms = x->wall_ms;
	for (uint32_t i = 0; i < j->n; i++) {
		struct dlv_report_entry *e = &rep->e[rep->n++];
		e->idx = j->ridx[i];
		e->failed = false;
		snprintf(e->status, sizeof e->status, "2.0.0");
		struct spool_str rc = m->rcpt[j->ridx[i]];
		if (log_start(LOG_INFO, "deleted")) {
			log_qid(m->v.qid);
			log_strn("rcpt", rc.p, rc.len);
			log_str("domain", j->domain);
			log_str("by", "ringmxctl");
			log_finish();
		}
	}
	x->c_jobs++;
	x->c_rcpts += j->n;
	dlv_send(x->d, m->home, &rep->x);
	dlv_job_free(j);
	return true;
}

static void
heap_sift_down(struct dlv_domain *dom, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < dom->nsched && dom->sched[l]->due_ms < dom->sched[m]->due_ms)
			m = l;
		if (r < dom->nsched && dom->sched[r]->due_ms < dom->sched[m]->due_ms)
			m = r;
		if (m == i)
			return;
		struct dlv_job *t = dom->sched[i];
		dom->sched[i] = dom->sched[m];
		dom->sched[m] = t;
		dom->sched[i]->heap_idx = i;
		dom->sched[m]->heap_idx = m;
		i = m;
	}
}

static void
dom_delete(struct ctl_ctx *x, struct dlv_domain *dom)
{
	/* the ready queue, relinked without the deleted */
	struct dlv_job *j = dom->ready_head, *nx;
	dom->ready_head = dom->ready_tail = NULL;
	dom->nready = 0;
	for (; j; j = nx) {
		nx = j->next;
		if (!delete_matches(x->r, j) || !job_delete(x, j))
			ready_append(dom, j);
	}
	/* the scheduled heap, kept in place and made a heap again */
	uint32_t keep = 0;
	for (uint32_t i = 0; i < dom->nsched; i++) {
		j = dom->sched[i];
		if (!delete_matches(x->r, j) || !job_delete(x, j)) {
			dom->sched[keep] = j;
			j->heap_idx = keep++;
		}
	}
	dom->nsched = keep;
	for (uint32_t i = keep / 2; i-- > 0;)
		heap_sift_down(dom, i);
	if (dom->nready == 0 && dom->nsched == 0 && dom->timer.armed)
		timer_disarm(&x->d->loop->wheel, &dom->timer);
}

/* Jobs in a transaction now are not touched: their recipients are counted as busy (delete
 * again once the attempt is over). */
static void
ctl_delete(struct ctl_ctx *x)
{
	for (uint32_t i = 0; i < x->ndoms; i++) {
		dom_delete(x, x->doms[i]);
		uint32_t lo, hi;
		active_range(x, x->doms[i], &lo, &hi);
		for (uint32_t k = lo; k < hi; k++)
			if (delete_matches(x->r, x->active[k]))
				x->c_busy += x->active[k]->n;
	}
	counters_line(x, "jobs=%llu rcpts=%llu busy=%llu", (unsigned long long)x->c_jobs,
		      (unsigned long long)x->c_rcpts, (unsigned long long)x->c_busy);
}

/* ---- hold, release, suspend, resume ---------------------------------------------------------- */

static void
ctl_hold(struct ctl_ctx *x, bool hold)
{
	struct delivery *d = x->d;
	d->held = hold;
	uint64_t domains = 0;
	if (!hold) {
		for (uint32_t i = 0; i < x->ndoms; i++) {
			if (x->doms[i]->nready > 0) {
				dlv_domain_mark(d, x->doms[i]);
				domains++;
			}
		}
	}
	if (hold)
		counters_line(x, "%s", "");
	else
		counters_line(x, "domains=%llu", (unsigned long long)domains);
}

static void
ctl_suspend(struct ctl_ctx *x, bool suspend)
{
	struct delivery *d = x->d;
	uint64_t n = 0;
	if (dlv_domain_owner(d, x->r->domain) == d->shard) {
		struct dlv_domain *dom = dlv_domain_get(d, x->r->domain);
		if (!dom) {
			ctl_buf_printf(x->b, "%cout of memory\n", CTL_TAG_ERROR);
			return;
		}
		dom->suspended = suspend;
		if (!suspend && dom->nready > 0)
			dlv_domain_mark(d, dom);
		n = 1;
	}
	counters_line(x, "%s=%llu", suspend ? "suspended" : "resumed", (unsigned long long)n);
}

/* ---- the request ------------------------------------------------------------------------- */

size_t
delivery_ctl(struct delivery *d, const char *req, char *out, size_t cap)
{
	ASSERT(cap > CTL_BUF_RESERVE);
	struct ctl_buf b;
	ctl_buf_init(&b, out, cap);
	struct ctl_req r;
	char err[256];
	if (ctl_parse(req, strlen(req), &r, err, sizeof err) < 0) {
		ctl_buf_printf(&b, "%c%s\n", CTL_TAG_ERROR, err);
		return b.len;
	}
	struct ctl_ctx x;
	if (!ctx_init(&x, d, &r, &b)) {
		ctl_buf_printf(&b, "%cout of memory\n", CTL_TAG_ERROR);
		return b.len;
	}
	switch (r.verb) {
	case CTL_QUEUE:
		ctl_queue(&x);
		break;
	case CTL_LIST:
		ctl_list(&x);
		break;
	case CTL_SHOW:
		ctl_show(&x);
		break;
	case CTL_FLUSH:
		ctl_flush(&x);
		break;
	case CTL_DELETE:
		ctl_delete(&x);
		break;
	case CTL_HOLD:
	case CTL_RELEASE:
		ctl_hold(&x, r.verb == CTL_HOLD);
		break;
	case CTL_SUSPEND:
	case CTL_RESUME:
		ctl_suspend(&x, r.verb == CTL_SUSPEND);
		break;
	}
	ctx_fini(&x);
	return b.len;
}
