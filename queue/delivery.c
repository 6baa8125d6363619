#include "queue/delivery.h"

#include <arpa/inet.h>
/* Diagnostics and relay names are cut to their buffers on purpose: a remote's reply text is
 * bounded wherever it is kept. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/delivery_impl.h"
#include "queue/dsn.h"
#include "queue/maildir.h"
#include "queue/rec_buf.h"
#include "queue/spool_scan.h"
#include "queue/spsc.h"
#include "server/log.h"

#define MESH_RING_SIZE 65536
#define DLV_CONNS_MAX 65536        /* outbound connections per shard */
#define DLV_LOCAL_PER_TURN 256     /* local deliveries per loop turn (they block) */
#define DLV_ROUTE_TTL_MS 60000     /* a domain's route is looked up again after this */
#define DLV_RESOLVING_MAX 4096
#define DLV_SITE_POLL_MS 100       /* a site whose shared connection count is full */
#define DLV_MOVE_AFTER_ATTEMPTS 2  /* deferred this often: copied out of the hot segments */


/* ---- small helpers ------------------------------------------------------------------ */

uint64_t
dlv_now(const struct delivery *d)
{
	return d->loop->now_ms;
}

uint64_t
dlv_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t
hash_lower(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 16777619u;
	}
	return h;
}

static void
lower_copy(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++) {
		char c = src[i];
		dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	dst[n] = '\0';
	if (n > 0 && dst[n - 1] == '.')
		dst[n - 1] = '\0';
}

static void
qid_text(uint64_t qid, char buf[17])
{
	log_qid_format(qid, buf);
}

/* ---- the mesh ------------------------------------------------------------------------ */

struct delivery_mesh *
delivery_mesh_new(unsigned nshards)
{
	struct delivery_mesh *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->n = nshards;
	m->wake_fd = malloc(nshards * sizeof *m->wake_fd);
	m->ring = calloc((size_t)nshards * nshards, sizeof *m->ring);
	m->site_slots = calloc(MESH_SITE_SLOTS, sizeof *m->site_slots);
	if (!m->wake_fd || !m->ring || !m->site_slots)
		goto fail;
	for (unsigned i = 0; i < nshards * nshards; i++)
		if (!(m->ring[i] = spsc_new(MESH_RING_SIZE)))
			goto fail;
	for (unsigned i = 0; i < nshards; i++)
		m->wake_fd[i] = -1;
	return m;
fail:
	delivery_mesh_free(m);
	return NULL;
}

void
delivery_mesh_free(struct delivery_mesh *m)
{
	if (!m)
		return;
	if (m->ring)
		for (unsigned i = 0; i < m->n * m->n; i++)
			spsc_free(m->ring[i]);
	free(m->ring);
	free(m->wake_fd);
	free(m->site_slots);
	free(m);
}

void
delivery_mesh_set_wake(struct delivery_mesh *m, unsigned shard, int eventfd)
{
	m->wake_fd[shard] = eventfd;
}

static void
xsend(struct delivery *d, unsigned to, struct xmsg *x)
{
	x->next = NULL;
	if (d->out_head[to] == NULL && spsc_push(d->mesh->ring[d->shard * d->nshards + to], x)) {
		if (to != d->shard)
			d->wake_peer[to] = true;
		return;
	}
	/* the ring is full: keep order, retry each turn */
	if (d->out_tail[to])
		d->out_tail[to]->next = x;
	else
		d->out_head[to] = x;
	d->out_tail[to] = x;
}

static void
xsend_flush(struct delivery *d)
{
	for (unsigned to = 0; to < d->nshards; to++) {
		struct spsc *q = d->mesh->ring[d->shard * d->nshards + to];
		while (d->out_head[to] && spsc_push(q, d->out_head[to])) {
			d->out_head[to] = d->out_head[to]->next;
			if (to != d->shard)
				d->wake_peer[to] = true;
		}
		if (!d->out_head[to])
			d->out_tail[to] = NULL;
		if (d->wake_peer[to]) {
			d->wake_peer[to] = false;
			uint64_t one = 1;
			ssize_t w = write(d->mesh->wake_fd[to], &one, sizeof one);
			(void)w;
		}
	}
}

/* ---- home: segments ------------------------------------------------------------------- */

static struct dlv_segment *
seg_find(struct delivery *d, unsigned stream, uint32_t seq, bool create)
{
	for (uint32_t i = 0; i < d->nsegs; i++)
		if (d->segs[i].seq == seq && d->segs[i].stream == stream)
			return &d->segs[i];
	if (!create)
		return NULL;
	if (d->nsegs == d->segs_cap) {
		uint32_t cap = d->segs_cap ? d->segs_cap * 2 : 16;
		struct dlv_segment *v = realloc(d->segs, cap * sizeof *v);
		if (!v)
			return NULL;
		d->segs = v;
		d->segs_cap = cap;
	}
	d->segs[d->nsegs] = (struct dlv_segment){.stream = (uint8_t)stream, .seq = seq};
	return &d->segs[d->nsegs++];
}

/* Removes a segment once nothing in it is live and nothing more will be written to it. */
static void
seg_maybe_remove(struct delivery *d, struct dlv_segment *sg)
{
	if (sg->live > 0)
		return;
	struct spool *sp = sg->stream == QMSG_HOT ? d->spool : d->dspool;
	if (sp && sg->seq == spool_current_seq(sp))
		return; /* still open: removed once the spool moves on */
	int rc = spool_segment_remove(d->dirfd[sg->stream], sg->seq);
	journal_forget(d->journal, sg->stream, sg->seq);
	if (log_start(rc == 0 ? LOG_INFO : LOG_WARN, "segment_removed")) {
		char name[64];
		snprintf(name, sizeof name, SPOOL_SEGMENT_FMT, sg->seq);
		log_str("segment", name);
		if (rc < 0)
			log_str("error", strerror(-rc));
		log_finish();
	}
	*sg = d->segs[--d->nsegs];
}

static void
seg_check_rolled(struct delivery *d)
{
	uint32_t cur = spool_current_seq(d->spool);
	uint32_t dcur = d->dspool ? spool_current_seq(d->dspool) : 0;
	if (cur == d->last_hot_seq && dcur == d->last_deferred_seq)
		return;
	d->last_hot_seq = cur;
	d->last_deferred_seq = dcur;
	for (uint32_t i = 0; i < d->nsegs;) {
		struct dlv_segment *sg = &d->segs[i];
		uint32_t before = d->nsegs;
		if (sg->live == 0)
			seg_maybe_remove(d, sg);
		if (d->nsegs == before)
			i++;
	}
}

/* Home: a message has no recipient left. */
static void
home_msg_done(struct delivery *d, struct qmsg *m)
{
	struct dlv_segment *sg = seg_find(d, m->stream, m->seq, false);
	if (sg) {
		ASSERT(sg->live > 0);
		sg->live--;
		seg_maybe_remove(d, sg);
	}
	d->queued_msgs--;
	if (d->spill_at == m)
		d->spill_at = m->next; /* older, and looked at already (or NULL: from the tail) */
	if (d->home_oldest == m)
		d->home_oldest = m->prev;
	if (m->prev)
		m->prev->next = m->next;
	else
		d->home_msgs = m->next;
	if (m->next)
		m->next->prev = m->prev;
	qmsg_unref(m); /* the home's reference */
}

static void
home_rcpt_done(struct delivery *d, struct qmsg *m, uint32_t idx)
{
	if (m->rdone[idx])
		return;
	m->rdone[idx] = 1;
	journal_add(d->journal, m->stream, m->seq, m->v.qid, idx);
	ASSERT(m->pending > 0);
	if (--m->pending == 0)
		home_msg_done(d, m);
}

/* ---- home: handing recipients to their owners -------------------------------------------- */

static unsigned
domain_owner(const struct delivery *d, const char *dom, size_t n)
{
	return hash_lower(dom, n) % d->nshards;
}

struct rgroup {
	uint32_t idx;
	uint32_t hash;
};

static int
rgroup_cmp(const void *a, const void *b, void *arg)
{
	const struct qmsg *sort_msg = arg;
	const struct rgroup *x = a, *y = b;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	struct spool_str dx = qmsg_rcpt_domain(sort_msg, x->idx);
	struct spool_str dy = qmsg_rcpt_domain(sort_msg, y->idx);
	if (dx.len != dy.len)
		return dx.len < dy.len ? -1 : 1;
	int c = strncasecmp(dx.p, dy.p, dx.len);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static struct dlv_job *
job_new(struct qmsg *m, const uint32_t *idx, uint32_t n)
{
	struct dlv_job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->x.kind = X_JOB;
	j->ridx = malloc(n * sizeof *j->ridx);
	j->state = calloc(n, 1);
	if (!j->ridx || !j->state) {
		free(j->ridx);
		free(j->state);
		free(j);
		return NULL;
	}
	memcpy(j->ridx, idx, n * sizeof *idx);
	j->n = n;
	j->m = m;
	qmsg_ref(m);
	struct spool_str dom = qmsg_rcpt_domain(m, idx[0]);
	lower_copy(j->domain, sizeof j->domain, dom.p, dom.len);
	return j;
}

static void
job_free(struct dlv_job *j)
{
	qmsg_unref(j->m);
	free(j->ridx);
	free(j->state);
	free(j);
}

/* Home: hands every recipient still pending to its domain's owner. */
static void
home_dispatch(struct delivery *d, struct qmsg *m)
{
	uint32_t n = 0;
	struct rgroup *g = malloc((m->v.nrcpt ? m->v.nrcpt : 1) * sizeof *g);
	uint32_t *idx = malloc((m->v.nrcpt ? m->v.nrcpt : 1) * sizeof *idx);
	if (!g || !idx) {
		free(g);
		free(idx);
		log_msg(LOG_ERROR, "dispatch_failed", "out of memory; the message waits for a restart");
		return;
	}
	for (uint32_t i = 0; i < m->v.nrcpt; i++) {
		if (m->rdone[i])
			continue;
		struct spool_str dom = qmsg_rcpt_domain(m, i);
		g[n++] = (struct rgroup){.idx = i, .hash = hash_lower(dom.p, dom.len)};
	}
	qsort_r(g, n, sizeof *g, rgroup_cmp, m);
	for (uint32_t a = 0; a < n;) {
		uint32_t b = a + 1;
		struct spool_str da = qmsg_rcpt_domain(m, g[a].idx);
		while (b < n) {
			struct spool_str db = qmsg_rcpt_domain(m, g[b].idx);
			if (g[b].hash != g[a].hash || db.len != da.len ||
			    strncasecmp(db.p, da.p, da.len) != 0)
				break;
			b++;
		}
		for (uint32_t k = a; k < b; k++)
			idx[k - a] = g[k].idx;
		struct dlv_job *j = job_new(m, idx, b - a);
		if (j)
			xsend(d, domain_owner(d, da.p, da.len), &j->x);
		else
			log_msg(LOG_ERROR, "dispatch_failed", "out of memory");
		a = b;
	}
	free(g);
	free(idx);
}

/*
 * [queue] memory_limit: when the bodies in memory (every shard's) pass the limit, this home
 * drops the bodies of its oldest waiting messages, oldest first, until they are 1/8 below it.
 * A spilled message is read back from its spool segment for each delivery attempt (usually
 * from the page cache) and its body freed after it. The walk resumes where it stopped, so each
 * message is looked at once.
 */
static void
home_spill(struct delivery *d)
{
	uint64_t limit = d->cfg->memory_limit;
	if (limit == 0 || qmsg_body_bytes() <= limit)
		return;
	uint64_t target = limit - limit / 8;
	unsigned n = 0;
	uint64_t bytes = 0, before = qmsg_body_bytes();
	struct qmsg *m = d->spill_at ? d->spill_at->prev : d->home_oldest;
	while (m && qmsg_body_bytes() > target) {
		if (!m->moving && !qmsg_spilled(m)) {
			qmsg_body_drop(m);
			n++;
			bytes += m->rec_len;
		}
		d->spill_at = m;
		m = m->prev;
	}
	d->spilled_msgs += n;
	if (n > 0 && log_start(LOG_INFO, "bodies_spilled")) {
		log_u64("messages", n);
		log_u64("bytes", bytes);
		log_u64("in_memory_before", before);
		log_u64("in_memory", qmsg_body_bytes());
		log_u64("limit", limit);
		log_finish();
	}
}

static void
home_take(struct delivery *d, struct qmsg *m)
{
	struct dlv_segment *sg = seg_find(d, m->stream, m->seq, true);
	if (sg)
		sg->live++;
	d->queued_msgs++;
	m->prev = NULL;
	m->next = d->home_msgs;
	if (m->next)
		m->next->prev = m;
	else
		d->home_oldest = m;
	d->home_msgs = m;
	if (m->pending == 0) {
		home_msg_done(d, m);
		return;
	}
	home_dispatch(d, m);
	home_spill(d);
}

void
delivery_accept(struct delivery *d, const struct spool_done *sd)
{
	if (!d->cfg->deliver_enabled)
		return;
	/* A small message is kept in a buffer of its own size; the session's record buffer (32
	 * KiB, see rec_buf.h) stays with the spool, which gives it back to the cache. */
	char *copy = sd->len <= REC_BUF_SIZE / 2 ? malloc(sd->len) : NULL;
	if (copy)
		memcpy(copy, *sd->rec, sd->len);
	struct qmsg *m = qmsg_new(copy ? copy : *sd->rec, sd->len, d->shard, QMSG_HOT, sd->seq,
				  sd->off);
	if (!m) {
		free(copy);
		log_msg(LOG_ERROR, "accept_failed", "cannot keep a committed message in memory; "
			"it is delivered after a restart");
		return;
	}
	if (!copy)
		*sd->rec = NULL; /* ours now */
	home_take(d, m);
}

void
delivery_adopt(struct delivery *d, struct qmsg *m)
{
	home_take(d, m);
}

void
delivery_adopt_segment(struct delivery *d, unsigned stream, uint32_t seq, uint32_t live)
{
	struct dlv_segment *sg = seg_find(d, stream, seq, true);
	if (!sg)
		return;
	(void)live; /* counted as the messages are adopted */
	if (sg->live == 0)
		seg_maybe_remove(d, sg);
}

/* ---- home: outcomes and bounces ----------------------------------------------------------- */

struct dlv_bounce;
static void home_moved(struct delivery *d, struct dlv_bounce *b, const struct spool_done *sd);

static void
report_free(struct dlv_report *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		free(r->e[i].diag);
		free(r->e[i].remote);
	}
	qmsg_unref(r->m);
	free(r);
}

/* Builds the bounce for the failed entries of r and spools it; they are marked done once it
 * is on disk (delivery_spool_done), so a crash in between bounces them again, never loses. */
static void
home_dsn(struct delivery *d, struct dlv_report *r, uint32_t nfailed, bool warning)
{
	struct qmsg *m = r->m;
	struct dsn_rcpt *dr = calloc(nfailed, sizeof *dr);
	struct dlv_bounce *b = malloc(sizeof *b + nfailed * sizeof b->idx[0]);
	char qid[17];
	qid_text(m->v.qid, qid);
	if (!dr || !b) {
		free(dr);
		free(b);
		log_msg(LOG_ERROR, "bounce_failed", "out of memory for the bounce of %s", qid);
		return;
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n; i++) {
		struct dlv_report_entry *e = &r->e[i];
		if ((warning ? !e->warn : !e->failed) || m->rdone[e->idx])
			continue;
		dr[k] = (struct dsn_rcpt){
		    .addr = m->rcpt[e->idx],
		    .action = warning ? DSN_ACTION_DELAYED : DSN_ACTION_FAILED,
		    .status = e->status,
		    .remote_mta = {e->remote ? e->remote : "", e->remote ? strlen(e->remote) : 0},
		    .diagnostic = {e->diag ? e->diag : "", e->diag ? strlen(e->diag) : 0},
		    .last_attempt_ms = r->when_ms,
		};
		b->idx[k++] = e->idx;
	}
	b->n = k;
	/* the original headers go into the report; without the body (unreadable) it still goes */
	const char *body = qmsg_body_get(m, d->dirfd);
	struct dsn_params p = {
	    .host = d->cfg->hostname,
	    .sender = m->v.from,
	    .qid = qid,
	    .arrival_ms = m->v.arrival_ms,
	    .now_ms = dlv_wall_ms(),
	    .retry_until_ms = warning ? m->v.arrival_ms + d->cfg->max_lifetime * 1000 : 0,
	    .kind = warning ? DSN_DELAY : DSN_FAILURE,
	    .msg = body ? body : "",
	    .msg_len = body ? m->v.msg_len : 0,
	    .rcpts = dr,
	    .nrcpt = k,
	};
	size_t dlen = 0;
	char *dsn = k ? dsn_build(&p, &dlen) : NULL;
	if (body)
		qmsg_body_put(m);
	free(dr);
	if (!dsn) {
		free(b);
		if (k)
			log_msg(LOG_ERROR, "bounce_failed", "cannot build the bounce of %s", qid);
		return;
	}
	/* the record: from <>, to the original sender */
	struct spool_str rcpt = m->v.from;
	struct spool_envelope env = {
	    .qid = d->qid_next(d->arg),
	    .arrival_ms = dlv_wall_ms(),
	    .flags = 0,
	    .helo = {d->cfg->hostname, strlen(d->cfg->hostname)},
	    .client = {"localhost", 9},
	    .from = {"", 0},
	    .rcpts = &rcpt,
	    .nrcpt = 1,
	};
	size_t hdr = spool_record_envelope_size(&env);
	char *rec = malloc(hdr + dlen);
	if (!rec) {
		free(dsn);
		free(b);
		log_msg(LOG_ERROR, "bounce_failed", "out of memory for the bounce of %s", qid);
		return;
	}
	size_t off = spool_record_begin(rec, hdr + dlen, &env);
	memcpy(rec + off, dsn, dlen);
	free(dsn);
	spool_record_finish(rec, off + dlen);
	b->id = ++d->bounce_id;
	b->m = m;
	b->move = false;
	b->warning = warning;
	qmsg_ref(m);
	if (!warning)
		m->bouncing += k;
	d->dsn_inflight++;
	/* the spool hands the owner back: it is b itself (user pointers fit in 62 bits) */
	spool_append(d->spool, rec, off + dlen, DELIVERY_OWNER_BIT | (uint64_t)(uintptr_t)b);
}

void
delivery_spool_done(struct delivery *d, const struct spool_done *sd)
{
	struct dlv_bounce *b = (struct dlv_bounce *)(uintptr_t)(sd->owner & ~DELIVERY_OWNER_BIT);
	ASSERT(d->dsn_inflight > 0);
	d->dsn_inflight--;
	if (b->move) {
		home_moved(d, b, sd);
		qmsg_unref(b->m);
		free(b);
		return;
	}
	struct qmsg *m = b->m;
	char qid[17], bqid[17];
	qid_text(m->v.qid, qid);
	if (!b->warning)
		m->bouncing -= b->n;
	if (sd->status != 0) {
		/* not on disk: the recipients stay undone and bounce again after a restart */
		log_msg(LOG_ERROR, "bounce_failed", "spooling the bounce of %s: %s", qid,
			strerror(-sd->status));
	} else {
		struct qmsg *bm = qmsg_new(*sd->rec, sd->len, d->shard, QMSG_HOT, sd->seq, sd->off);
		if (bm) {
			*sd->rec = NULL;
			qid_text(bm->v.qid, bqid);
			if (log_start(LOG_INFO, b->warning ? "delay_warning_queued" : "bounce_queued")) {
				log_strn("qid", qid, 16);
				log_strn("bounce_qid", bqid, 16);
				log_strn("to", m->v.from.p, m->v.from.len);
				log_u64("recipients", b->n);
				log_finish();
			}
		}
		for (uint32_t i = 0; !b->warning && i < b->n; i++)
			home_rcpt_done(d, m, b->idx[i]);
		if (bm)
			home_take(d, bm);
	}
	qmsg_unref(m);
	free(b);
}

/*
 * A message that keeps being deferred is copied into the deferred stream (DIR/deferred), so
 * that its hot segment can go once the rest of it is delivered: one dead domain pins nothing.
 * The copy is the same record (same qid, same recipient order); once it is on disk the
 * recipients already done are written to the copy's completion log and the message's
 * location moves there. Recovery prefers the deferred copy of a qid.
 */
static void
home_move(struct delivery *d, struct qmsg *m)
{
	if (m->stream != QMSG_HOT || m->moving || !d->dspool)
		return;
	const char *body = qmsg_body_get(m, d->dirfd);
	char *copy = body ? malloc(m->rec_len) : NULL;
	struct dlv_bounce *b = copy ? calloc(1, sizeof *b) : NULL;
	if (!copy || !b) {
		if (body)
			qmsg_body_put(m);
		free(copy);
		free(b);
		return; /* stays in the hot segment: correct, only less tidy */
	}
	memcpy(copy, body - m->msg_off, m->rec_len);
	qmsg_body_put(m);
	b->id = ++d->bounce_id;
	b->m = m;
	b->move = true;
	qmsg_ref(m);
	m->moving = true;
	d->dsn_inflight++;
	spool_append(d->dspool, copy, m->rec_len, DELIVERY_OWNER_BIT | (uint64_t)(uintptr_t)b);
}

static void
home_moved(struct delivery *d, struct dlv_bounce *b, const struct spool_done *sd)
{
	struct qmsg *m = b->m;
	char qid[17];
	qid_text(m->v.qid, qid);
	m->moving = false;
	if (sd->status != 0) {
		log_msg(LOG_WARN, "move_failed", "copying %s to the deferred stream: %s (it stays "
			"in its segment)", qid, strerror(-sd->status));
		return;
	}
	/* the copy's log first: every recipient already done */
	for (uint32_t i = 0; i < m->v.nrcpt; i++)
		if (m->rdone[i])
			journal_add(d->journal, QMSG_DEFERRED, sd->seq, m->v.qid, i);
	struct dlv_segment *nsg = seg_find(d, QMSG_DEFERRED, sd->seq, true);
	if (m->pending == 0)
		return; /* finished meanwhile: the copy is all done, nothing moves */
	struct dlv_segment *old = seg_find(d, m->stream, m->seq, false);
	uint32_t old_seq = m->seq;
	/* and the old segment's log: the hot record is finished (its recipients moved), so a
	 * restart never brings it back after the copy was delivered and removed */
	for (uint32_t i = 0; i < m->v.nrcpt; i++)
		if (!m->rdone[i])
			journal_add(d->journal, QMSG_HOT, old_seq, m->v.qid, i);
	qmsg_relocate(m, QMSG_DEFERRED, sd->seq, sd->off);
	/* waiting costs no memory for the body from now: it is read back for each attempt */
	qmsg_body_drop(m);
	if (nsg)
		nsg->live++;
	if (old) {
		ASSERT(old->live > 0);
		old->live--;
		seg_maybe_remove(d, old);
	}
	if (log_start(LOG_INFO, "moved_to_deferred")) {
		char a[64], b2[64];
		snprintf(a, sizeof a, SPOOL_SEGMENT_FMT, old_seq);
		snprintf(b2, sizeof b2, "deferred/" SPOOL_SEGMENT_FMT, sd->seq);
		log_strn("qid", qid, 16);
		log_str("from", a);
		log_str("to", b2);
		log_u64("recipients_pending", m->pending);
		log_finish();
	}
}

static void
home_report(struct delivery *d, struct dlv_report *r)
{
	struct qmsg *m = r->m;
	uint32_t nfailed = 0, nwarn = 0;
	bool move = false;
	for (uint32_t i = 0; i < r->n; i++) {
		struct dlv_report_entry *e = &r->e[i];
		if (e->failed && m->v.from.len > 0)
			nfailed++;
		if (e->warn && !m->warned && !m->rdone[e->idx])
			nwarn++;
		if (e->deferred)
			move = true;
	}
	/* the report's own reference keeps m alive while home_rcpt_done drops the home's */
	if (nfailed)
		home_dsn(d, r, nfailed, false);
	if (nwarn) {
		m->warned = true;
		home_dsn(d, r, nwarn, true);
	}
	for (uint32_t i = 0; i < r->n; i++) {
		struct dlv_report_entry *e = &r->e[i];
		if (e->deferred)
			continue;
		/* a failure with a sender waits for its bounce to be on disk */
		if (!e->failed || m->v.from.len == 0)
			home_rcpt_done(d, m, e->idx);
	}
	if (move && m->pending > 0)
		home_move(d, m);
	report_free(r);
}

/* ---- owner: recipients' outcomes --------------------------------------------------------- */

void
dlv_rcpt_result(struct delivery *d, struct dlv_job *j, uint32_t i, enum rcpt_state st,
		const char *status, const char *diag, const char *relay, const char *remote)
{
	ASSERT(i < j->n);
	j->state[i] = (uint8_t)st;
	struct qmsg *m = j->m;
	struct spool_str rc = m->rcpt[j->ridx[i]];
	const char *ev = st == R_DELIVERED ? "delivered" : st == R_FAILED ? "bounced" : "deferred";
	struct dlv_domain *dom = j->dom;
	if (dom) {
		if (st == R_DELIVERED)
			dom->delivered++;
		else if (st == R_FAILED)
			dom->bounced++;
		else
			dom->deferred_n++;
		if (st != R_DELIVERED && diag)
			snprintf(dom->last_error, sizeof dom->last_error, "%s", diag);
	}
	if (log_start(st == R_DELIVERED ? LOG_INFO : LOG_WARN, ev)) {
		log_qid(m->v.qid);
		log_strn("rcpt", rc.p, rc.len);
		log_str("relay", relay);
		log_str("dsn", status);
		if (diag)
			log_str("reply", diag);
		log_u64("attempts", j->attempts + 1);
		uint64_t now = dlv_wall_ms();
		log_u64("delay_ms", now > m->v.arrival_ms ? now - m->v.arrival_ms : 0);
		if (st == R_DEFERRED) {
			unsigned next = config_retry_delay(d->cfg, j->attempts + 1);
			log_u64("retry_s", next);
		}
		log_finish();
	}
	bool notice_move = false, notice_warn = false;
	if (st == R_DEFERRED) {
		/* a message that keeps being deferred leaves the hot segments; a warning is due
		 * once it waited warn_after */
		notice_move = j->attempts + 1 == DLV_MOVE_AFTER_ATTEMPTS && m->stream == QMSG_HOT;
		uint64_t warn = d->cfg->warn_after * 1000;
		notice_warn = warn > 0 && !j->warned && dlv_wall_ms() >= m->v.arrival_ms + warn &&
			      m->v.from.len > 0;
		if (notice_warn && i + 1 == j->n)
			j->warned = true;
		if (!notice_move && !notice_warn)
			return;
	} else if (st != R_DELIVERED && st != R_FAILED) {
		return;
	}
	if (!j->rep) {
		j->rep = calloc(1, sizeof *j->rep + j->n * sizeof j->rep->e[0]);
		if (!j->rep)
			return; /* out of memory: the recipient is delivered again after a restart */
		j->rep->x.kind = X_REPORT;
		j->rep->m = m;
		qmsg_ref(m);
	}
	struct dlv_report_entry *e = &j->rep->e[j->rep->n++];
	e->idx = j->ridx[i];
	e->failed = st == R_FAILED;
	e->deferred = st == R_DEFERRED;
	e->warn = notice_warn;
	snprintf(e->status, sizeof e->status, "%s", status);
	if (e->failed || e->warn) {
		e->diag = diag ? strdup(diag) : NULL;
		e->remote = remote && remote[0] ? strdup(remote) : NULL;
	}
	j->rep->when_ms = dlv_wall_ms();
}

static void dom_schedule(struct delivery *d, struct dlv_domain *dom, struct dlv_job *j);
static void job_fail_all(struct delivery *d, struct dlv_job *j, enum rcpt_state st,
			 const char *status, const char *diag, const char *relay);
static void dom_ready_push(struct delivery *d, struct dlv_domain *dom, struct dlv_job *j,
			   bool front);

static void
job_send_report(struct delivery *d, struct dlv_job *j)
{
	if (!j->rep)
		return;
	struct dlv_report *r = j->rep;
	j->rep = NULL;
	xsend(d, r->m->home, &r->x);
}

void
dlv_job_done(struct delivery *d, struct dlv_job *j, uint32_t ntx, const char *relay,
	     bool site_trouble)
{
	(void)relay;
	(void)site_trouble;
	job_send_report(d, j);
	uint32_t keep = 0;
	bool deferred = false;
	for (uint32_t i = 0; i < j->n; i++) {
		uint8_t st = i < ntx ? j->state[i] : R_PENDING;
		if (st == R_DELIVERED || st == R_FAILED)
			continue;
		if (st == R_DEFERRED)
			deferred = true;
		j->ridx[keep] = j->ridx[i];
		j->state[keep] = R_PENDING;
		keep++;
	}
	j->n = keep;
	if (keep == 0) {
		job_free(j);
		return;
	}
	if (deferred) {
		j->attempts++;
		dom_schedule(d, j->dom, j);
	} else {
		dom_ready_push(d, j->dom, j, true);
	}
}

/* Fails every recipient of a job with one status (route failures, expiry). */
static void
job_fail_all(struct delivery *d, struct dlv_job *j, enum rcpt_state st, const char *status,
	     const char *diag, const char *relay)
{
	for (uint32_t i = 0; i < j->n; i++)
		dlv_rcpt_result(d, j, i, st, status, diag, relay, NULL);
	uint32_t n = j->n;
	dlv_job_done(d, j, n, relay, false);
}

static bool
job_expired(const struct delivery *d, const struct dlv_job *j, uint64_t now_wall)
{
	return now_wall >= j->m->v.arrival_ms + d->cfg->max_lifetime * 1000;
}

static void
job_expire(struct delivery *d, struct dlv_job *j)
{
	char diag[DLV_DIAG_MAX];
	snprintf(diag, sizeof diag, "message expired after %llu s in the queue%s%s",
		 (unsigned long long)d->cfg->max_lifetime, j->dom && j->dom->last_error[0] ? ": " : "",
		 j->dom ? j->dom->last_error : "");
	job_fail_all(d, j, R_FAILED, "4.4.7", diag, "none");
}

/* ---- owner: domains ---------------------------------------------------------------------- */

static void dom_timer_fire(struct timer *t);
static void site_mark_ready(struct delivery *d, struct dlv_domain *dom);

static void
dom_mark(struct delivery *d, struct dlv_domain *dom)
{
	if (dom->dirty)
		return;
	if (d->ndirty_dom == d->dirty_dom_cap) {
		uint32_t cap = d->dirty_dom_cap ? d->dirty_dom_cap * 2 : 64;
		struct dlv_domain **v = realloc(d->dirty_dom, cap * sizeof *v);
		if (!v)
			return;
		d->dirty_dom = v;
		d->dirty_dom_cap = cap;
	}
	dom->dirty = true;
	d->dirty_dom[d->ndirty_dom++] = dom;
}

static struct dlv_domain *
dom_get(struct delivery *d, const char *name)
{
	uint32_t h = hash_lower(name, strlen(name));
	struct dlv_domain **bucket = &d->dom_tab[h & d->dom_mask];
	for (struct dlv_domain *x = *bucket; x; x = x->hnext)
		if (strcmp(x->name, name) == 0)
			return x;
	struct dlv_domain *x = calloc(1, sizeof *x);
	if (!x)
		return NULL;
	snprintf(x->name, sizeof x->name, "%s", name);
	x->d = d;
	x->timer.fn = dom_timer_fire;
	x->tokens = 1;
	x->tokens_ms = dlv_now(d);
	x->hnext = *bucket;
	*bucket = x;
	d->ndom++;
	if (d->ndom > (d->dom_mask + 1) * 2) {
		/* grow: rehash into twice the buckets */
		uint32_t nb = (d->dom_mask + 1) * 2;
		struct dlv_domain **tab = calloc(nb, sizeof *tab);
		if (tab) {
			for (uint32_t i = 0; i <= d->dom_mask; i++) {
				struct dlv_domain *y = d->dom_tab[i], *nx;
				for (; y; y = nx) {
					nx = y->hnext;
					uint32_t hy = hash_lower(y->name, strlen(y->name)) & (nb - 1);
					y->hnext = tab[hy];
					tab[hy] = y;
				}
			}
			free(d->dom_tab);
			d->dom_tab = tab;
			d->dom_mask = nb - 1;
		}
	}
	return x;
}

static void
dom_ready_push(struct delivery *d, struct dlv_domain *dom, struct dlv_job *j, bool front)
{
	j->next = NULL;
	if (front) {
		j->next = dom->ready_head;
		dom->ready_head = j;
		if (!dom->ready_tail)
			dom->ready_tail = j;
	} else {
		if (dom->ready_tail)
			dom->ready_tail->next = j;
		else
			dom->ready_head = j;
		dom->ready_tail = j;
	}
	dom->nready++;
	dom_mark(d, dom);
}

static struct dlv_job *
dom_ready_pop(struct dlv_domain *dom)
{
	struct dlv_job *j = dom->ready_head;
	if (!j)
		return NULL;
	dom->ready_head = j->next;
	if (!dom->ready_head)
		dom->ready_tail = NULL;
	dom->nready--;
	j->next = NULL;
	return j;
}

/* the scheduled queue: a binary min-heap on due_ms */
static void
heap_swap(struct dlv_domain *dom, uint32_t a, uint32_t b)
{
	struct dlv_job *t = dom->sched[a];
	dom->sched[a] = dom->sched[b];
	dom->sched[b] = t;
	dom->sched[a]->heap_idx = a;
	dom->sched[b]->heap_idx = b;
}

static void
heap_push(struct dlv_domain *dom, struct dlv_job *j)
{
	if (dom->nsched == dom->sched_cap) {
		uint32_t cap = dom->sched_cap ? dom->sched_cap * 2 : 16;
		struct dlv_job **v = realloc(dom->sched, cap * sizeof *v);
		ASSERT(v != NULL);
		dom->sched = v;
		dom->sched_cap = cap;
	}
	uint32_t i = dom->nsched++;
	dom->sched[i] = j;
	j->heap_idx = i;
	while (i > 0 && dom->sched[(i - 1) / 2]->due_ms > dom->sched[i]->due_ms) {
		heap_swap(dom, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct dlv_job *
heap_pop(struct dlv_domain *dom)
{
	if (dom->nsched == 0)
		return NULL;
	struct dlv_job *top = dom->sched[0];
	dom->nsched--;
	if (dom->nsched > 0) {
		dom->sched[0] = dom->sched[dom->nsched];
		dom->sched[0]->heap_idx = 0;
		uint32_t i = 0;
		for (;;) {
			uint32_t l = 2 * i + 1, r = l + 1, m = i;
			if (l < dom->nsched && dom->sched[l]->due_ms < dom->sched[m]->due_ms)
				m = l;
			if (r < dom->nsched && dom->sched[r]->due_ms < dom->sched[m]->due_ms)
				m = r;
			if (m == i)
				break;
			heap_swap(dom, i, m);
			i = m;
		}
	}
	return top;
}

static void
dom_timer_update(struct delivery *d, struct dlv_domain *dom)
{
	if (dom->nsched == 0) {
		if (dom->timer.armed && dom->nready == 0)
			timer_disarm(&d->loop->wheel, &dom->timer);
		return;
	}
	uint64_t due = dom->sched[0]->due_ms;
	if (!dom->timer.armed || dom->timer.expire_ms > due)
		timer_arm(&d->loop->wheel, &dom->timer, due);
}

static void
dom_schedule(struct delivery *d, struct dlv_domain *dom, struct dlv_job *j)
{
	uint64_t now = dlv_now(d);
	uint64_t delay = (uint64_t)config_retry_delay(d->cfg, j->attempts) * 1000;
	/* never past the expiry: the job is bounced then, wherever it waits */
	uint64_t wall = dlv_wall_ms();
	uint64_t expire = j->m->v.arrival_ms + d->cfg->max_lifetime * 1000;
	uint64_t left = expire > wall ? expire - wall : 0;
	if (delay > left)
		delay = left;
	if (dom->site && dom->site->backoff_until_ms > now + delay)
		delay = dom->site->backoff_until_ms - now;
	j->due_ms = now + delay;
	heap_push(dom, j);
	dom_timer_update(d, dom);
}

/* Moves due jobs to the ready queue; expired ones bounce. */
static void
dom_due(struct delivery *d, struct dlv_domain *dom)
{
	uint64_t now = dlv_now(d), wall = dlv_wall_ms();
	while (dom->nsched > 0 && dom->sched[0]->due_ms <= now) {
		struct dlv_job *j = heap_pop(dom);
		if (job_expired(d, j, wall))
			job_expire(d, j);
		else
			dom_ready_push(d, dom, j, false);
	}
	dom_timer_update(d, dom);
}

static void
dom_timer_fire(struct timer *t)
{
	struct dlv_domain *dom = (struct dlv_domain *)((char *)t - offsetof(struct dlv_domain, timer));
	struct delivery *d = dom->d;
	dom_due(d, dom);
	if (dom->nready > 0)
		dom_mark(d, dom);
}

/* Rate: a token bucket of one message, filled at the domain's rate. */
static bool
dom_rate_take(struct delivery *d, struct dlv_domain *dom)
{
	const struct config_domain_policy *pol = config_policy_find(d->cfg, dom->name);
	if (pol->rate_per_hour == 0)
		return true;
	uint64_t now = dlv_now(d);
	double per_ms = (double)pol->rate_per_hour / 3600000.0;
	dom->tokens += (double)(now - dom->tokens_ms) * per_ms;
	dom->tokens_ms = now;
	if (dom->tokens > 1)
		dom->tokens = 1;
	if (dom->tokens >= 1) {
		dom->tokens -= 1;
		return true;
	}
	uint64_t wait = (uint64_t)((1 - dom->tokens) / per_ms) + 1;
	if (!dom->timer.armed || dom->timer.expire_ms > now + wait)
		timer_arm(&d->loop->wheel, &dom->timer, now + wait);
	return false;
}

/* ---- owner: sites ---------------------------------------------------------------------- */

static void site_timer_fire(struct timer *t);

void
dlv_site_mark(struct dlv_site *s)
{
	struct delivery *d = s->d;
	if (s->dirty)
		return;
	if (d->ndirty_site == d->dirty_site_cap) {
		uint32_t cap = d->dirty_site_cap ? d->dirty_site_cap * 2 : 64;
		struct dlv_site **v = realloc(d->dirty_site, cap * sizeof *v);
		if (!v)
			return;
		d->dirty_site = v;
		d->dirty_site_cap = cap;
	}
	s->dirty = true;
	d->dirty_site[d->ndirty_site++] = s;
}

/* The mesh-wide connection counter of a site key (a lock-free insert-only hash table). */
static struct mesh_site_slot *
mesh_site_slot(struct delivery_mesh *m, const char *key)
{
	static struct mesh_site_slot overflow; /* a full table: sites share one counter */
	uint64_t h = 1469598103934665603ull;
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	if (h == 0)
		h = 1;
	for (uint32_t i = 0; i < MESH_SITE_SLOTS; i++) {
		struct mesh_site_slot *sl = &m->site_slots[(h + i) & (MESH_SITE_SLOTS - 1)];
		uint64_t k = atomic_load_explicit(&sl->key, memory_order_acquire);
		if (k == h)
			return sl;
		if (k == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&sl->key, &zero, h) || zero == h)
				return sl;
		}
	}
	return &overflow;
}

/* A site is a set of MX hosts and a TLS policy: domains that ask more of TLS than "optional"
 * never share connections with domains that ask less (a connection made under `tls =
 * optional` is no place for mail of a `tls = dane` domain). Names the site key in `key`. */
static const char *
site_key(char *key, size_t cap, const char *hosts, enum config_tls_policy tls)
{
	static const char *const names[] = {
	    [CONFIG_TLS_OPTIONAL] = "", [CONFIG_TLS_REQUIRED] = " tls=required",
	    [CONFIG_TLS_NONE] = " tls=none", [CONFIG_TLS_VERIFY] = " tls=verify",
	    [CONFIG_TLS_DANE] = " tls=dane",
	};
	snprintf(key, cap, "%s%s", hosts, names[tls]);
	return key;
}

static enum config_tls_policy
dom_tls(const struct delivery *d, const struct dlv_domain *dom)
{
	return config_policy_find(d->cfg, dom->name)->tls;
}

static struct dlv_site *
site_get(struct delivery *d, const char *hosts, enum config_tls_policy tls, bool *created)
{
	char key[sizeof ((struct dlv_site *)0)->key];
	site_key(key, sizeof key, hosts, tls);
	uint32_t h = hash_lower(key, strlen(key));
	struct dlv_site **bucket = &d->site_tab[h & d->site_mask];
	*created = false;
	for (struct dlv_site *x = *bucket; x; x = x->hnext)
		if (strcmp(x->key, key) == 0)
			return x;
	struct dlv_site *x = calloc(1, sizeof *x);
	if (!x)
		return NULL;
	snprintf(x->key, sizeof x->key, "%s", key);
	x->d = d;
	x->timer.fn = site_timer_fire;
	struct mesh_site_slot *sl = mesh_site_slot(d->mesh, key);
	x->gconns = &sl->conns;
	x->gstarved = &sl->starved;
	x->hnext = *bucket;
	*bucket = x;
	d->nsite++;
	*created = true;
	return x;
}

/* The ring of domains with ready jobs: the site's domains array, served round robin. */
struct site_ring {
	struct dlv_domain **v;
	uint32_t n, cap, next;
};

static struct site_ring *
site_ring(struct dlv_site *s)
{
	return (struct site_ring *)s->ring;
}

static void
site_ring_add(struct dlv_site *s, struct dlv_domain *dom)
{
	if (dom->in_site_ring)
		return;
	struct site_ring *r = site_ring(s);
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return;
		s->ring = (struct dlv_domain *)r;
	}
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? r->cap * 2 : 8;
		struct dlv_domain **v = realloc(r->v, cap * sizeof *v);
		if (!v)
			return;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = dom;
	dom->in_site_ring = true;
}

static void
site_mark_ready(struct delivery *d, struct dlv_domain *dom)
{
	(void)d;
	if (!dom->site)
		return;
	site_ring_add(dom->site, dom);
	dlv_site_mark(dom->site);
}

struct dlv_job *
dlv_site_take(struct dlv_site *s)
{
	struct delivery *d = s->d;
	struct site_ring *r = site_ring(s);
	if (!r || d->held || d->stopping)
		return NULL;
	uint64_t wall = dlv_wall_ms();
	for (uint32_t tries = 0; r->n > 0 && tries < r->n;) {
		if (r->next >= r->n)
			r->next = 0;
		struct dlv_domain *dom = r->v[r->next];
		if (dom->nready == 0 || dom->site != s) {
			dom->in_site_ring = false;
			r->v[r->next] = r->v[--r->n];
			continue;
		}
		if (dom->suspended || !dom_rate_take(d, dom)) {
			r->next++;
			tries++;
			continue;
		}
		struct dlv_job *j = dom_ready_pop(dom);
		if (job_expired(d, j, wall)) {
			dom->tokens += 1; /* not sent: the token is not spent */
			job_expire(d, j);
			continue;
		}
		r->next++;
		return j;
	}
	return NULL;
}

void
dlv_site_ok(struct dlv_site *s)
{
	s->fail_streak = 0;
	s->backoff_until_ms = 0;
	s->backoff_reason[0] = '\0';
}

void
dlv_site_failed(struct dlv_site *s, const char *status, const char *reason)
{
	struct delivery *d = s->d;
	uint64_t now = dlv_now(d);
	s->fail_streak++;
	uint64_t delay = (uint64_t)config_retry_delay(d->cfg, s->fail_streak) * 1000;
	s->backoff_until_ms = now + delay;
	snprintf(s->backoff_reason, sizeof s->backoff_reason, "%s", reason);
	timer_arm(&d->loop->wheel, &s->timer, s->backoff_until_ms);
	if (log_start(LOG_WARN, "site_backoff")) {
		log_str("site", s->key);
		log_u64("for_s", delay / 1000);
		log_u64("failures", s->fail_streak);
		log_str("reason", reason);
		log_finish();
	}
	/* what waits for the site is deferred with the site's reason: logged per recipient,
	 * and scheduled for the retry (never before the backoff ends) */
	struct site_ring *r = site_ring(s);
	if (!r)
		return;
	for (uint32_t i = 0; i < r->n; i++) {
		struct dlv_domain *dom = r->v[i];
		if (dom->site != s)
			continue;
		struct dlv_job *j;
		uint32_t n = dom->nready;
		while (n-- > 0 && (j = dom_ready_pop(dom)))
			job_fail_all(d, j, R_DEFERRED, status, reason, "none");
		dom_timer_update(d, dom);
	}
}

static void
site_timer_fire(struct timer *t)
{
	struct dlv_site *s = (struct dlv_site *)((char *)t - offsetof(struct dlv_site, timer));
	dlv_site_mark(s);
}

/* Starts connections the site's waiting work can use, and gives idle ones work. */
static void
site_run(struct delivery *d, struct dlv_site *s)
{
	s->dirty = false;
	if (d->held || d->stopping)
		return;
	if (s->backoff_until_ms > dlv_now(d))
		return;
	struct site_ring *r = site_ring(s);
	uint64_t waiting = 0;
	if (r)
		for (uint32_t i = 0; i < r->n; i++)
			if (r->v[i]->site == s && !r->v[i]->suspended)
				waiting += r->v[i]->nready;
	if (waiting == 0)
		return;
	unsigned connecting = 0;
	for (struct dlv_conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next; /* a kick may close c */
		if (c->st == OC_IDLE) {
			smtp_out_kick(c);
			if (waiting > 0)
				waiting--;
		} else if (c->st < OC_READY) {
			connecting++;
		}
	}
	unsigned max = s->pol->max_connections;
	while (s->nconn < max && waiting > connecting && d->nconn_free > 0) {
		/* the limit holds across shards: take a place in the site's shared count */
		if (atomic_fetch_add(s->gconns, 1) >= max) {
			atomic_fetch_sub(s->gconns, 1);
			atomic_store(s->gstarved, 1);
			/* another shard holds the site's connections: look again soon (a place
			 * frees when one of them closes, which this shard is not told of) */
			if (!s->timer.armed)
				timer_arm(&d->loop->wheel, &s->timer, dlv_now(d) + DLV_SITE_POLL_MS);
			break;
		}
		if (!smtp_out_open(d, s))
			break;
		connecting++;
	}
}

/* ---- owner: routes ------------------------------------------------------------------------ */

static void
addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf,
			  (socklen_t)len);
	else
		snprintf(buf, len, "unix");
}

static bool
site_add_addr(struct dlv_site *s, int family, const void *addr, unsigned port, const char *host)
{
	if (s->naddr >= DLV_SITE_ADDRS_MAX)
		return false;
	struct dlv_addr *a = &s->addr[s->naddr];
	memset(a, 0, sizeof *a);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, addr, 4);
		a->len = sizeof *sin;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, addr, 16);
		a->len = sizeof *sin6;
	}
	snprintf(a->host, sizeof a->host, "%s", host);
	addr_text(&a->sa, a->text, sizeof a->text);
	s->naddr++;
	return true;
}

/* Every job waiting in a domain gets one outcome (a route that failed). */
static void
dom_fail_ready(struct delivery *d, struct dlv_domain *dom, bool perm, const char *status,
	       const char *diag)
{
	struct dlv_job *j;
	while ((j = dom_ready_pop(dom)))
		job_fail_all(d, j, perm ? R_FAILED : R_DEFERRED, status, diag, "none");
}

static void
dom_attach(struct delivery *d, struct dlv_domain *dom, struct dlv_site *s)
{
	if (dom->site != s) {
		if (dom->site)
			dom->site->ndomains--;
		s->ndomains++;
		dom->site = s;
		dom->in_site_ring = false;
	}
	if (!s->pol) {
		s->pol = config_policy_find(d->cfg, dom->name);
		snprintf(s->pol_domain, sizeof s->pol_domain, "%s", dom->name);
	}
	dom->route = DR_SITE;
	dom->route_until_ms = dlv_now(d) + DLV_ROUTE_TTL_MS;
	dom->cfg_gen = d->cfg_gen;
	dom_mark(d, dom);
}

struct route_ctx {
	struct delivery *d;
	char domain[256];
	struct config_hop hop; /* CONFIG_HOP_MX: MX of the domain; SMTP/LMTP: of hop.host */
};

static void
route_done(void *arg, struct dns_route *rt)
{
	struct route_ctx *rc = arg;
	struct delivery *d = rc->d;
	d->resolving--;
	struct dlv_domain *dom = dom_get(d, rc->domain);
	if (!dom) {
		dns_route_free(rt);
		free(rc);
		return;
	}
	dom->route = DR_NONE;
	if (rt->status != DNS_ROUTE_OK) {
		char diag[DLV_DIAG_MAX];
		snprintf(diag, sizeof diag, "%s: %s", rt->domain, rt->reason);
		bool perm = rt->status == DNS_ROUTE_PERMFAIL;
		dom_fail_ready(d, dom, perm, rt->code, diag);
		dns_route_free(rt);
		free(rc);
		return;
	}
	bool lmtp = rc->hop.kind == CONFIG_HOP_LMTP;
	unsigned port = rc->hop.kind == CONFIG_HOP_MX ? 25 : rc->hop.port;
	char key[512];
	size_t o = (size_t)snprintf(key, sizeof key, "%s:", lmtp ? "lmtp" : "smtp");
	/* the MX set, by preference, names sorted within a preference by dns_route's shuffle
	 * is not stable: sort a copy of the names for the key */
	const char *names[DNS_ROUTE_HOSTS_MAX];
	unsigned nn = 0;
	for (unsigned i = 0; i < rt->nhosts; i++)
		names[nn++] = rt->hosts[i].name;
	for (unsigned i = 1; i < nn; i++)
		for (unsigned k = i; k > 0 && strcasecmp(names[k - 1], names[k]) > 0; k--) {
			const char *t = names[k];
			names[k] = names[k - 1];
			names[k - 1] = t;
		}
	for (unsigned i = 0; i < nn && o < sizeof key; i++)
		o += (size_t)snprintf(key + o, sizeof key - o, "%s%s", i ? "," : "", names[i]);
	if (o < sizeof key)
		snprintf(key + o, sizeof key - o, ":%u", port);
	bool created;
	struct dlv_site *s = site_get(d, key, dom_tls(d, dom), &created);
	if (!s) {
		dom_fail_ready(d, dom, false, "4.3.0", "out of memory");
		dns_route_free(rt);
		free(rc);
		return;
	}
	/* the addresses, refreshed with every lookup */
	s->naddr = 0;
	s->lmtp = lmtp;
	for (unsigned i = 0; i < rt->nhosts; i++)
		for (unsigned k = 0; k < rt->hosts[i].naddr; k++)
			site_add_addr(s, rt->hosts[i].addr[k].family, rt->hosts[i].addr[k].addr, port,
				      rt->hosts[i].name);
	dns_route_free(rt);
	free(rc);
	if (s->naddr == 0) {
		dom_fail_ready(d, dom, false, "4.4.3", "no address for the route");
		return;
	}
	dom_attach(d, dom, s);
}

/* A named hop in brackets ("smtp:[relay.example]:25"): its A records, no MX lookup. */
static void
hop_addr_done(void *arg, int status, const struct dns_answer *ans, bool from_cache)
{
	(void)from_cache;
	struct route_ctx *rc = arg;
	struct delivery *d = rc->d;
	d->resolving--;
	struct dlv_domain *dom = dom_get(d, rc->domain);
	if (!dom) {
		free(rc);
		return;
	}
	dom->route = DR_NONE;
	if (status != 0 || !ans || ans->rcode != DNS_RCODE_NOERROR || ans->nrr == 0) {
		char diag[DLV_DIAG_MAX];
		snprintf(diag, sizeof diag, "cannot resolve the next hop %s: %s", rc->hop.host,
			 status != 0 ? (status == -ETIMEDOUT ? "timeout" : "lookup failed")
			 : ans->rcode == DNS_RCODE_NXDOMAIN ? "no such name"
			 : ans->rcode != DNS_RCODE_NOERROR ? "server failure"
							   : "no address");
		/* a configured next hop that does not resolve is the operator's to fix: defer */
		dom_fail_ready(d, dom, false, "4.4.3", diag);
		free(rc);
		return;
	}
	char key[512];
	config_hop_text(&rc->hop, key, sizeof key);
	bool created;
	struct dlv_site *s = site_get(d, key, dom_tls(d, dom), &created);
	if (!s) {
		dom_fail_ready(d, dom, false, "4.3.0", "out of memory");
		free(rc);
		return;
	}
	s->naddr = 0;
	s->lmtp = rc->hop.kind == CONFIG_HOP_LMTP;
	for (unsigned i = 0; i < ans->nrr; i++)
		if (ans->rr[i].type == DNS_TYPE_A)
			site_add_addr(s, AF_INET, ans->rr[i].u.a, rc->hop.port, rc->hop.host);
	free(rc);
	if (s->naddr == 0) {
		dom_fail_ready(d, dom, false, "4.4.3", "no address for the next hop");
		return;
	}
	dom_attach(d, dom, s);
}

/* A site for a hop with an address literal or a unix socket: no DNS. */
static struct dlv_site *
site_for_literal(struct delivery *d, const struct dlv_domain *dom, const struct config_hop *hop)
{
	char key[512];
	config_hop_text(hop, key, sizeof key);
	uint8_t a[16];
	int family = 0;
	if (!hop->unix_socket) {
		if (inet_pton(AF_INET, hop->host, a) == 1)
			family = AF_INET;
		else if (inet_pton(AF_INET6, hop->host, a) == 1)
			family = AF_INET6;
		else
			return NULL;
	}
	bool created;
	struct dlv_site *s = site_get(d, key, dom_tls(d, dom), &created);
	if (!s || !created)
		return s;
	s->lmtp = hop->kind == CONFIG_HOP_LMTP;
	if (hop->unix_socket) {
		struct dlv_addr *ad = &s->addr[0];
		struct sockaddr_un *sun = (struct sockaddr_un *)&ad->sa;
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof sun->sun_path, "%s", hop->host);
		ad->len = sizeof *sun;
		snprintf(ad->host, sizeof ad->host, "%s", hop->host);
		snprintf(ad->text, sizeof ad->text, "unix");
		s->naddr = 1;
	} else {
		site_add_addr(s, family, a, hop->port, hop->host);
	}
	return s;
}

static void
dom_route(struct delivery *d, struct dlv_domain *dom)
{
	const struct config *cfg = d->cfg;
	struct config_hop hop = {.kind = CONFIG_HOP_MX};
	const struct config_transport *t = config_transport_find(cfg, dom->name);
	if (t) {
		hop = t->hop;
	} else if (dom->name[0] == '\0' ||
		   config_domain_is_local(cfg, dom->name, strlen(dom->name))) {
		/* no domain at all is "postmaster" (RFC 5321 4.5.1), accepted only as local */
		if (cfg->local_kind == CONFIG_LOCAL_MAILDIR)
			hop.kind = CONFIG_HOP_MAILDIR;
		else if (cfg->local_kind == CONFIG_LOCAL_DISCARD)
			hop.kind = CONFIG_HOP_DISCARD;
		else
			hop = cfg->local_hop;
	} else if (cfg->relayhost.kind != CONFIG_HOP_MX) {
		hop = cfg->relayhost;
	}
	dom->cfg_gen = d->cfg_gen;
	if (hop.kind == CONFIG_HOP_MAILDIR || hop.kind == CONFIG_HOP_DISCARD) {
		dom->route = hop.kind == CONFIG_HOP_MAILDIR ? DR_LOCAL : DR_DISCARD;
		dom->route_until_ms = UINT64_MAX;
		if (dom->site)
			dom->site->ndomains--;
		dom->site = NULL;
		return;
	}
	if (hop.kind != CONFIG_HOP_MX) {
		struct dlv_site *s = site_for_literal(d, dom, &hop);
		if (s) {
			dom_attach(d, dom, s);
			return;
		}
	}
	if (d->resolving >= DLV_RESOLVING_MAX)
		return; /* the domain stays dirty and tries again next turn */
	struct route_ctx *rc = calloc(1, sizeof *rc);
	if (!rc)
		return;
	rc->d = d;
	snprintf(rc->domain, sizeof rc->domain, "%s", dom->name);
	rc->hop = hop;
	struct dns_route_params rp = {
	    .prefer = cfg->dns_prefer == CONFIG_DNS_PREFER_IPV6 ? DNS_PREFER_IPV6 : DNS_PREFER_IPV4,
	    .loopback_ok = cfg->loopback_mx,
	    .local = d->local,
	};
	dom->route = DR_RESOLVING;
	d->resolving++;
	const char *name = hop.kind == CONFIG_HOP_MX ? dom->name : hop.host;
	int rc2 = hop.kind != CONFIG_HOP_MX && hop.no_mx
			  ? dns_resolver_lookup(d->res, name, DNS_TYPE_A, dlv_now(d), hop_addr_done, rc)
			  : dns_route_resolve(d->res, name, &rp, dlv_now(d), route_done, rc);
	if (rc2 < 0) {
		d->resolving--;
		dom->route = DR_NONE;
		free(rc);
		char diag[DLV_DIAG_MAX];
		snprintf(diag, sizeof diag, "cannot resolve %s: %s", name,
			 rc2 == -EINVAL ? "not a valid domain name" : strerror(-rc2));
		dom_fail_ready(d, dom, rc2 == -EINVAL, rc2 == -EINVAL ? "5.1.2" : "4.4.3", diag);
	}
}

/* ---- owner: local delivery --------------------------------------------------------------- */

static unsigned
local_run(struct delivery *d, struct dlv_domain *dom, unsigned budget)
{
	unsigned done = 0;
	struct dlv_job *j;
	uint64_t wall = dlv_wall_ms();
	while (done < budget && (j = dom_ready_pop(dom))) {
		done++;
		if (job_expired(d, j, wall)) {
			job_expire(d, j);
			continue;
		}
		struct qmsg *m = j->m;
		const char *body = dom->route == DR_DISCARD ? NULL : qmsg_body_get(m, d->dirfd);
		for (uint32_t i = 0; i < j->n; i++) {
			struct spool_str rc = m->rcpt[j->ridx[i]];
			if (dom->route != DR_DISCARD && !body) {
				dlv_rcpt_result(d, j, i, R_DEFERRED, "4.3.0",
						"cannot read the message back from the spool", "maildir",
						NULL);
				continue;
			}
			if (dom->route == DR_DISCARD) {
				dlv_rcpt_result(d, j, i, R_DELIVERED, "2.0.0", "discarded", "discard",
						NULL);
				continue;
			}
			const char *at = memrchr(rc.p, '@', rc.len);
			size_t llen = at ? (size_t)(at - rc.p) : rc.len;
			char err[256] = "";
			char qid[17];
			qid_text(m->v.qid, qid);
			struct maildir_params mp = {
			    .root = d->cfg->maildir_root,
			    .local = {rc.p, llen},
			    .sender = m->v.from,
			    .rcpt = rc,
			    .msg = body,
			    .msg_len = m->v.msg_len,
			    .host = d->cfg->hostname,
			    .qid = qid,
			};
			int r = maildir_deliver(&mp, err, sizeof err);
			if (r == 0)
				dlv_rcpt_result(d, j, i, R_DELIVERED, "2.0.0", "delivered to Maildir",
						"maildir", NULL);
			else if (r == -EINVAL)
				dlv_rcpt_result(d, j, i, R_FAILED, "5.1.3", err, "maildir", NULL);
			else
				dlv_rcpt_result(d, j, i, R_DEFERRED, "4.3.0", err, "maildir", NULL);
		}
		if (body)
			qmsg_body_put(m);
		uint32_t n = j->n;
		dlv_job_done(d, j, n, dom->route == DR_DISCARD ? "discard" : "maildir", false);
	}
	return done;
}

/* ---- the loop's side ------------------------------------------------------------------- */

static void
owner_take_job(struct delivery *d, struct dlv_job *j)
{
	struct dlv_domain *dom = dom_get(d, j->domain);
	if (!dom) {
		job_free(j); /* out of memory: delivered after a restart */
		return;
	}
	j->dom = dom;
	if (dom->nready == 0 && dom->nsched == 0)
		dom->oldest_ms = j->m->v.arrival_ms;
	dom_ready_push(d, dom, j, false);
}

static void
drain_rings(struct delivery *d)
{
	for (unsigned from = 0; from < d->nshards; from++) {
		struct spsc *q = d->mesh->ring[from * d->nshards + d->shard];
		struct xmsg *x;
		unsigned budget = 65536;
		while (budget-- > 0 && (x = spsc_pop(q))) {
			if (x->kind == X_JOB)
				owner_take_job(d, (struct dlv_job *)x);
			else
				home_report(d, (struct dlv_report *)x);
		}
	}
}

static void
domains_run(struct delivery *d)
{
	unsigned local_budget = DLV_LOCAL_PER_TURN;
	uint32_t n = d->ndirty_dom;
	for (uint32_t i = 0; i < n; i++) {
		struct dlv_domain *dom = d->dirty_dom[i];
		dom->dirty = false;
		if (dom->nready == 0 || d->held || d->stopping)
			continue;
		uint64_t now = dlv_now(d);
		if (dom->route != DR_RESOLVING &&
		    (dom->route == DR_NONE || dom->cfg_gen != d->cfg_gen || now >= dom->route_until_ms))
			dom_route(d, dom);
		switch (dom->route) {
		case DR_LOCAL:
		case DR_DISCARD:
			if (!dom->suspended)
				local_budget -= local_run(d, dom, local_budget);
			if (dom->nready > 0 && local_budget == 0)
				dom_mark(d, dom); /* the rest next turn */
			break;
		case DR_SITE:
			if (dom->site->backoff_until_ms > now) {
				/* the site is backed off: wait in the scheduled queue, where expiry
				 * is watched, until the backoff ends */
				struct dlv_job *j;
				while ((j = dom_ready_pop(dom))) {
					j->due_ms = dom->site->backoff_until_ms;
					heap_push(dom, j);
				}
				dom_timer_update(d, dom);
				break;
			}
			site_mark_ready(d, dom);
			break;
		case DR_NONE:
			dom_mark(d, dom); /* could not start a lookup: next turn */
			break;
		default:
			break;
		}
	}
	/* keep what was marked while we ran */
	if (n > 0) {
		memmove(d->dirty_dom, d->dirty_dom + n, (d->ndirty_dom - n) * sizeof *d->dirty_dom);
		d->ndirty_dom -= n;
	}
}

static void
sites_run(struct delivery *d)
{
	uint32_t n = d->ndirty_site;
	for (uint32_t i = 0; i < n; i++)
		site_run(d, d->dirty_site[i]);
	if (n > 0) {
		memmove(d->dirty_site, d->dirty_site + n,
			(d->ndirty_site - n) * sizeof *d->dirty_site);
		d->ndirty_site -= n;
	}
}

static void
dspool_done(void *arg, const struct spool_done *sd)
{
	delivery_spool_done(arg, sd);
}

void
delivery_before_wait(struct delivery *d)
{
	dns_resolver_tick(d->res, dlv_now(d));
	drain_rings(d);
	seg_check_rolled(d);
	domains_run(d);
	sites_run(d);
	if (d->dspool)
		spool_flush(d->dspool, &d->loop->ring, (uint64_t)d->op_dspool << 56, dspool_done, d);
	journal_flush(d->journal, &d->loop->ring, (uint64_t)d->op_journal << 56);
	xsend_flush(d);
}

void
delivery_complete(struct delivery *d, const struct io_uring_cqe *cqe)
{
	unsigned op = loop_ud_op(cqe->user_data);
	if (op == d->op_dns)
		dns_resolver_complete(d->res, cqe, dlv_now(d));
	else if (op == d->op_journal)
		journal_complete(d->journal, cqe);
	else if (op == d->op_out)
		smtp_out_complete(d, cqe);
	else if (op == d->op_dspool && d->dspool)
		spool_complete(d->dspool, &d->loop->ring, (uint64_t)d->op_dspool << 56, cqe,
			       dspool_done, d);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int
open_dir(const char *path, bool create, char *err, size_t err_len)
{
	if (create)
		mkdir(path, 0700);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
	return fd;
}

struct delivery *
delivery_new(const struct delivery_params *p, char *err, size_t err_len)
{
	struct delivery *d = calloc(1, sizeof *d);
	if (!d) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	d->shard = p->shard;
	d->mesh = p->mesh;
	d->nshards = p->mesh->n;
	d->loop = p->loop;
	d->cfg = p->cfg;
	d->cfg_gen = 1;
	d->spool = p->spool;
	d->local = p->local;
	d->op_dns = p->op_dns;
	d->op_out = p->op_out;
	d->op_journal = p->op_journal;
	d->qid_next = p->qid_next;
	d->date = p->date;
	d->arg = p->arg;
	d->held = p->cfg->hold;
	d->dirfd[0] = d->dirfd[1] = -1;
	const struct config *cfg = p->cfg;
	char path[PATH_MAX + 16];
	d->dirfd[QMSG_HOT] = open_dir(cfg->spool_dir, false, err, err_len);
	snprintf(path, sizeof path, "%s/deferred", cfg->spool_dir);
	if (d->dirfd[QMSG_HOT] < 0 ||
	    (d->dirfd[QMSG_DEFERRED] = open_dir(path, true, err, err_len)) < 0)
		goto fail;
	struct spool_params dsp = {
	    .dir = path,
	    .shard = p->shard,
	    .segment_size = cfg->segment_size,
	    .fsync = cfg->fsync,
	    .next_seq = p->next_seq,
	};
	d->dspool = p->next_seq ? spool_open(&dsp, err, err_len) : NULL;
	if (p->next_seq && !d->dspool)
		goto fail;
	d->op_dspool = p->op_dspool;
	d->journal = journal_new(&(struct journal_params){
	    .dirfd = {d->dirfd[0], d->dirfd[1]}, .fsync = cfg->fsync});
	d->out_head = calloc(d->nshards, sizeof *d->out_head);
	d->out_tail = calloc(d->nshards, sizeof *d->out_tail);
	d->wake_peer = calloc(d->nshards, sizeof *d->wake_peer);
	d->dom_mask = 1023;
	d->dom_tab = calloc(d->dom_mask + 1, sizeof *d->dom_tab);
	d->site_mask = 1023;
	d->site_tab = calloc(d->site_mask + 1, sizeof *d->site_tab);
	d->nconns_cap = DLV_CONNS_MAX;
	d->conns = calloc(d->nconns_cap, sizeof *d->conns);
	d->conn_free = malloc(d->nconns_cap * sizeof *d->conn_free);
	if (!d->journal || !d->out_head || !d->out_tail || !d->wake_peer || !d->dom_tab ||
	    !d->site_tab || !d->conns || !d->conn_free) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < d->nconns_cap; i++)
		d->conn_free[i] = d->nconns_cap - 1 - i;
	d->nconn_free = d->nconns_cap;
	struct dns_resolver_params rp = {
	    .servers = cfg->dns_resolvers,
	    .timeout_ms = cfg->dns_timeout_ms,
	    .attempts = cfg->dns_attempts,
	    .queries_max = 4096,
	    .cache = {.entries_max = cfg->dns_cache_size,
		      .min_ttl_s = cfg->dns_min_ttl,
		      .max_ttl_s = cfg->dns_max_ttl,
		      .neg_ttl_default_s = 300},
	};
	d->res = dns_resolver_new(&rp, &p->loop->ring, (uint64_t)p->op_dns << 56, err, err_len);
	if (!d->res)
		goto fail;
	char tls_err[200];
	d->tls_ctx = tls_client_ctx_new(cfg->tls_ca_file, tls_err, sizeof tls_err);
	if (!d->tls_ctx && log_start(LOG_WARN, "tls_client")) {
		log_str("error", tls_err);
		log_str("effect", "outbound mail goes in the clear, and to destinations with tls = "
			"required, verify or dane (where TLSA records exist) not at all");
		log_finish();
	}
	return d;
fail:
	delivery_free(d);
	return NULL;
}

void
delivery_config(struct delivery *d, const struct config *cfg)
{
	d->cfg = cfg;
	d->cfg_gen++;
	/* site limits are looked up again */
	for (uint32_t i = 0; i <= d->site_mask; i++)
		for (struct dlv_site *s = d->site_tab ? d->site_tab[i] : NULL; s; s = s->hnext)
			s->pol = s->pol_domain[0] ? config_policy_find(cfg, s->pol_domain)
						  : &cfg->policy_default;
}

void
delivery_stop(struct delivery *d)
{
	d->stopping = true;
	for (uint32_t i = 0; i < d->nconns_cap; i++)
		if (d->conns && d->conns[i])
			smtp_out_shutdown(d->conns[i]);
}

void
delivery_stop_force(struct delivery *d)
{
	for (uint32_t i = 0; i < d->nconns_cap; i++)
		if (d->conns && d->conns[i])
			smtp_out_abort(d->conns[i]);
}

bool
delivery_busy(const struct delivery *d)
{
	return d->nconns_open > 0 || journal_busy(d->journal) || d->dsn_inflight > 0 ||
	       (d->dspool && spool_busy(d->dspool));
}

static void
dom_free_jobs(struct dlv_domain *dom)
{
	struct dlv_job *j;
	while ((j = dom_ready_pop(dom)))
		job_free(j);
	for (uint32_t i = 0; i < dom->nsched; i++)
		job_free(dom->sched[i]);
	free(dom->sched);
}

static void
xmsg_free(struct xmsg *x)
{
	if (x->kind == X_JOB)
		job_free((struct dlv_job *)x);
	else
		report_free((struct dlv_report *)x);
}

void
delivery_free(struct delivery *d)
{
	if (!d)
		return;
	if (d->conns) {
		for (uint32_t i = 0; i < d->nconns_cap; i++) {
			struct dlv_conn *c = d->conns[i];
			if (!c)
				continue;
			if (c->fd >= 0)
				close(c->fd);
			if (c->job && c->body)
				qmsg_body_put(c->job->m);
			if (c->job)
				job_free(c->job);
			free(c->out);
			free(c->out_retired);
			free(c->exp);
			free(c);
		}
	}
	if (d->dom_tab) {
		for (uint32_t i = 0; i <= d->dom_mask; i++) {
			struct dlv_domain *x = d->dom_tab[i], *nx;
			for (; x; x = nx) {
				nx = x->hnext;
				dom_free_jobs(x);
				free(x);
			}
		}
	}
	if (d->site_tab) {
		for (uint32_t i = 0; i <= d->site_mask; i++) {
			struct dlv_site *x = d->site_tab[i], *nx;
			for (; x; x = nx) {
				nx = x->hnext;
				struct site_ring *r = site_ring(x);
				if (r)
					free(r->v);
				free(r);
				free(x);
			}
		}
	}
	spool_close(d->dspool); /* settled before: the shard waits for delivery_busy */
	/* what is still in the rings to us, or waiting to go out */
	if (d->mesh && d->mesh->ring) {
		for (unsigned from = 0; from < d->nshards; from++) {
			struct spsc *q = d->mesh->ring[from * d->nshards + d->shard];
			struct xmsg *x;
			while ((x = spsc_pop(q)))
				xmsg_free(x);
		}
	}
	for (unsigned to = 0; d->out_head && to < d->nshards; to++) {
		struct xmsg *x = d->out_head[to], *nx;
		for (; x; x = nx) {
			nx = x->next;
			xmsg_free(x);
		}
	}
	/* messages the home still holds */
	while (d->home_msgs) {
		struct qmsg *m = d->home_msgs;
		d->home_msgs = m->next;
		qmsg_unref(m);
	}
	dns_resolver_free(d->res);
	tls_client_ctx_free(d->tls_ctx);
	journal_free(d->journal);
	for (int i = 0; i < 2; i++)
		if (d->dirfd[i] >= 0)
			close(d->dirfd[i]);
	free(d->out_head);
	free(d->out_tail);
	free(d->wake_peer);
	free(d->dom_tab);
	free(d->site_tab);
	free(d->conns);
	free(d->conn_free);
	free(d->dirty_dom);
	free(d->dirty_site);
	free(d->segs);
	free(d);
}

/* ---- for delivery_ctl.c (ringmxctl) ----------------------------------------------------- */

struct dlv_domain *
dlv_domain_get(struct delivery *d, const char *name)
{
	return dom_get(d, name);
}

void
dlv_domain_mark(struct delivery *d, struct dlv_domain *dom)
{
	dom_mark(d, dom);
}

unsigned
dlv_domain_owner(const struct delivery *d, const char *name)
{
	return domain_owner(d, name, strlen(name));
}

void
dlv_send(struct delivery *d, unsigned to, struct xmsg *x)
{
	xsend(d, to, x);
}

void
dlv_job_free(struct dlv_job *j)
{
	job_free(j);
}
