#include "queue/recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/journal.h"
#include "queue/spool_scan.h"

/* An open-addressing set of 64-bit keys (0 is stored apart). */
struct u64set {
	uint64_t *v;
	uint32_t mask, n;
	bool has_zero;
};

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static bool
u64set_grow(struct u64set *s)
{
	uint32_t cap = s->v ? (s->mask + 1) * 2 : 1024;
	uint64_t *v = calloc(cap, sizeof *v);
	if (!v)
		return false;
	for (uint32_t i = 0; s->v && i <= s->mask; i++) {
		if (!s->v[i])
			continue;
		uint32_t k = (uint32_t)mix64(s->v[i]) & (cap - 1);
		while (v[k])
			k = (k + 1) & (cap - 1);
		v[k] = s->v[i];
	}
	free(s->v);
	s->v = v;
	s->mask = cap - 1;
	return true;
}

static void
u64set_add(struct u64set *s, uint64_t key)
{
	if (key == 0) {
		s->has_zero = true;
		return;
	}
	if ((!s->v || (s->n + 1) * 2 > s->mask + 1) && !u64set_grow(s))
		return;
	uint32_t k = (uint32_t)mix64(key) & s->mask;
	while (s->v[k]) {
		if (s->v[k] == key)
			return;
		k = (k + 1) & s->mask;
	}
	s->v[k] = key;
	s->n++;
}

static bool
u64set_has(const struct u64set *s, uint64_t key)
{
	if (key == 0)
		return s->has_zero;
	if (!s->v)
		return false;
	uint32_t k = (uint32_t)mix64(key) & s->mask;
	while (s->v[k]) {
		if (s->v[k] == key)
			return true;
		k = (k + 1) & s->mask;
	}
	return false;
}

static void
u64set_clear(struct u64set *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

struct seg_live {
	uint32_t seq;
	uint32_t live;
};

struct rctx {
	const struct recover_ops *ops;
	struct recover_stats *st;
	unsigned nshards;
	bool load;
	unsigned stream;
	int dirfd;
	struct u64set qids;  /* messages already taken (deferred copies win) */
	struct u64set done;  /* the current segment's done (qid, rcpt) pairs, mixed */
	uint32_t cur_seq;
	bool have_cur;
	struct seg_live *segs;
	uint32_t nsegs;
};

static uint64_t
done_key(uint64_t qid, uint32_t rcpt)
{
	return mix64(qid ^ ((uint64_t)rcpt * 0x9e3779b97f4a7c15ull)) | 1;
}

static void
on_done_entry(void *arg, uint64_t qid, uint32_t rcpt)
{
	struct rctx *c = arg;
	u64set_add(&c->done, done_key(qid, rcpt));
}

static struct seg_live *
seg_of(struct rctx *c, uint32_t seq)
{
	uint32_t lo = 0, hi = c->nsegs;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (c->segs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nsegs && c->segs[lo].seq == seq ? &c->segs[lo] : NULL;
}

static void
on_record(void *arg, const char *path, uint64_t offset, const struct spool_record_view *v)
{
	struct rctx *c = arg;
	const char *base = strrchr(path, '/');
	uint32_t seq;
	if (!spool_segment_name_parse(base ? base + 1 : path, &seq))
		return;
	c->st->records++;
	if (v->qid > c->st->max_qid)
		c->st->max_qid = v->qid;
	if (!c->have_cur || c->cur_seq != seq) {
		u64set_clear(&c->done);
		journal_read(c->dirfd, seq, on_done_entry, c);
		c->cur_seq = seq;
		c->have_cur = true;
	}
	if (u64set_has(&c->qids, v->qid))
		return; /* a newer copy is in the deferred stream */
	uint32_t pending = 0;
	size_t off = 0;
	struct spool_str r;
	for (uint32_t i = 0; spool_record_rcpt_next(v, &off, &r); i++) {
		if (u64set_has(&c->done, done_key(v->qid, i)))
			c->st->rcpts_done++;
		else
			pending++;
	}
	/* Taken even when all done: a fully delivered deferred copy still hides the hot one. */
	u64set_add(&c->qids, v->qid);
	if (pending == 0)
		return;
	c->st->messages++;
	c->st->rcpts_pending += pending;
	struct seg_live *sl = seg_of(c, seq);
	if (sl)
		sl->live++;
	if (!c->load || !c->ops->on_msg)
		return;
	char *copy = malloc(v->total_len);
	if (!copy)
		return;
	memcpy(copy, v->base, v->total_len);
	struct qmsg *m = qmsg_new(copy, v->total_len, seq % c->nshards, (enum qmsg_stream)c->stream,
				  seq, offset);
	if (!m) {
		free(copy);
		return;
	}
	for (uint32_t i = 0; i < m->v.nrcpt; i++) {
		if (u64set_has(&c->done, done_key(v->qid, i))) {
			m->rdone[i] = 1;
			m->pending--;
		}
	}
	/* a message of the deferred stream waits without its body in memory: it is read back
	 * when its turn comes */
	if (c->stream == QMSG_DEFERRED)
		qmsg_body_drop(m);
	c->ops->on_msg(c->ops->arg, m);
}

/* Passes a damaged region on with the caller's arg (spool_scan's arg is our context). */
static void
on_scan_problem(void *arg, const char *path, uint64_t offset, uint64_t skipped, const char *what)
{
	struct rctx *c = arg;
	if (c->ops->on_problem)
		c->ops->on_problem(c->ops->arg, path, offset, skipped, what);
}

static int
seq_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct seg_live *)a)->seq, y = ((const struct seg_live *)b)->seq;
	return (x > y) - (x < y);
}

static int
recover_dir(struct rctx *c, const char *dir, unsigned stream)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return errno == ENOENT ? 0 : -errno;
	c->stream = stream;
	c->have_cur = false;
	c->nsegs = 0;
	free(c->segs);
	c->segs = NULL;
	uint32_t cap = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		uint32_t seq;
		if (!spool_segment_name_parse(de->d_name, &seq))
			continue;
		if (c->nsegs == cap) {
			cap = cap ? cap * 2 : 64;
			struct seg_live *v = realloc(c->segs, cap * sizeof *v);
			if (!v) {
				closedir(dp);
				return -ENOMEM;
			}
			c->segs = v;
		}
		c->segs[c->nsegs++] = (struct seg_live){.seq = seq};
		if (seq > c->st->max_seq)
			c->st->max_seq = seq;
	}
	closedir(dp);
	if (c->nsegs > 1)
		qsort(c->segs, c->nsegs, sizeof *c->segs, seq_cmp);
	c->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dirfd < 0)
		return -errno;
	struct spool_scan_ops sops = {.on_record = on_record, .on_problem = on_scan_problem,
				      .arg = c};
	struct spool_scan_stats ss;
	int rc = spool_scan_dir(dir, &sops, &ss);
	close(c->dirfd);
	c->dirfd = -1;
	u64set_clear(&c->done);
	if (rc < 0)
		return rc;
	c->st->segments += ss.segments;
	c->st->corrupt_regions += ss.corrupt_regions;
	c->st->truncated_tails += ss.truncated_tails;
	for (uint32_t i = 0; i < c->nsegs; i++)
		if (c->ops->on_segment)
			c->ops->on_segment(c->ops->arg, stream, c->segs[i].seq,
					   c->segs[i].seq % c->nshards, c->segs[i].live);
	return 0;
}

int
recover_spool(const char *dir, unsigned nshards, bool load, const struct recover_ops *ops,
	      struct recover_stats *st)
{
	memset(st, 0, sizeof *st);
	struct rctx c = {.ops = ops, .st = st, .nshards = nshards ? nshards : 1, .load = load,
			 .dirfd = -1};
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/deferred", dir);
	int rc = recover_dir(&c, path, QMSG_DEFERRED);
	if (rc == 0)
		rc = recover_dir(&c, dir, QMSG_HOT);
	u64set_clear(&c.qids);
	u64set_clear(&c.done);
	free(c.segs);
	return rc;
}
