#include "queue/qmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/spool_scan.h"

/* Records (bodies) in memory, every shard's together: what [queue] memory_limit bounds. */
static _Atomic uint64_t body_bytes;

static void
bytes_add(size_t n)
{
	atomic_fetch_add_explicit(&body_bytes, n, memory_order_relaxed);
}

static void
bytes_sub(size_t n)
{
	atomic_fetch_sub_explicit(&body_bytes, n, memory_order_relaxed);
}

uint64_t
qmsg_body_bytes(void)
{
	return atomic_load_explicit(&body_bytes, memory_order_relaxed);
}

/* Re-points a slice of the record at the same bytes in the envelope copy. */
static void
rebase(struct spool_str *s, const char *rec, const char *env)
{
	if (s->p)
		s->p = env + (s->p - rec);
}

struct qmsg *
qmsg_new(char *rec, size_t len, unsigned home, enum qmsg_stream stream, uint32_t seq,
	 uint64_t off)
{
	struct qmsg *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	if (spool_record_decode(rec, len, &m->v) <= 0)
		goto fail;
	m->msg_off = (uint32_t)(m->v.msg - rec);
	m->env = malloc(m->msg_off);
	m->rcpt = malloc((m->v.nrcpt ? m->v.nrcpt : 1) * sizeof *m->rcpt);
	m->rdone = calloc(m->v.nrcpt ? m->v.nrcpt : 1, 1);
	if (!m->env || !m->rcpt || !m->rdone)
		goto fail;
	size_t o = 0;
	for (uint32_t i = 0; i < m->v.nrcpt; i++)
		if (!spool_record_rcpt_next(&m->v, &o, &m->rcpt[i]))
			goto fail;
	/* the envelope lives apart from the body, so the body can go */
	memcpy(m->env, rec, m->msg_off);
	rebase(&m->v.helo, rec, m->env);
	rebase(&m->v.client, rec, m->env);
	rebase(&m->v.from, rec, m->env);
	m->v.rcpt_area = m->env + (m->v.rcpt_area - rec);
	m->v.base = m->env;
	for (uint32_t i = 0; i < m->v.nrcpt; i++)
		rebase(&m->rcpt[i], rec, m->env);
	atomic_init(&m->refs, 1);
	atomic_flag_clear(&m->lock);
	m->home = (uint16_t)home;
	m->stream = (uint8_t)stream;
	m->seq = seq;
	m->off = off;
	m->rec = rec;
	m->rec_len = len;
	m->v.msg = rec + m->msg_off;
	m->pending = m->v.nrcpt;
	bytes_add(len);
	return m;
fail:
	free(m->env);
	free(m->rcpt);
	free(m->rdone);
	free(m);
	return NULL;
}

void
qmsg_unref(struct qmsg *m)
{
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (m->rec)
		bytes_sub(m->rec_len);
	free(m->rec);
	free(m->env);
	free(m->rcpt);
	free(m->rdone);
	free(m);
}

static void
body_lock(struct qmsg *m)
{
	while (atomic_flag_test_and_set_explicit(&m->lock, memory_order_acquire))
		;
}

static void
body_unlock(struct qmsg *m)
{
	atomic_flag_clear_explicit(&m->lock, memory_order_release);
}

/* Reads the record back from its segment and checks it is this message's. */
static char *
body_load(const struct qmsg *m, const int dirfd[2])
{
	char name[64];
	snprintf(name, sizeof name, SPOOL_SEGMENT_FMT, m->seq);
	int fd = openat(dirfd[m->stream], name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	char *rec = malloc(m->rec_len);
	ssize_t n = rec ? pread(fd, rec, m->rec_len, (off_t)m->off) : -1;
	close(fd);
	struct spool_record_view v;
	if (n != (ssize_t)m->rec_len || spool_record_decode(rec, m->rec_len, &v) <= 0 ||
	    v.qid != m->v.qid || v.msg_len != m->v.msg_len) {
		free(rec);
		return NULL;
	}
	return rec;
}

const char *
qmsg_body_get(struct qmsg *m, const int dirfd[2])
{
	body_lock(m);
	if (!m->rec) {
		/* the read happens under the lock: rare (a deferred message's retry), and another
		 * shard wanting the same body waits for it rather than reading it twice */
		m->rec = body_load(m, dirfd);
		if (!m->rec) {
			body_unlock(m);
			return NULL;
		}
		bytes_add(m->rec_len);
	}
	m->body_refs++;
	const char *p = m->rec + m->msg_off;
	body_unlock(m);
	return p;
}

void
qmsg_body_put(struct qmsg *m)
{
	body_lock(m);
	if (m->body_refs > 0 && --m->body_refs == 0 && m->spilled && m->rec) {
		free(m->rec);
		m->rec = NULL;
		bytes_sub(m->rec_len);
	}
	body_unlock(m);
}

void
qmsg_body_drop(struct qmsg *m)
{
	body_lock(m);
	m->spilled = true;
	if (m->body_refs == 0 && m->rec) {
		free(m->rec);
		m->rec = NULL;
		bytes_sub(m->rec_len);
	}
	body_unlock(m);
}

bool
qmsg_spilled(struct qmsg *m)
{
	body_lock(m);
	bool r = m->spilled;
	body_unlock(m);
	return r;
}

void
qmsg_relocate(struct qmsg *m, enum qmsg_stream stream, uint32_t seq, uint64_t off)
{
	body_lock(m);
	m->stream = (uint8_t)stream;
	m->seq = seq;
	m->off = off;
	body_unlock(m);
}

bool
qmsg_body_loaded(struct qmsg *m)
{
	body_lock(m);
	bool r = m->rec != NULL;
	body_unlock(m);
	return r;
}

struct spool_str
qmsg_rcpt_domain(const struct qmsg *m, uint32_t i)
{
	struct spool_str r = m->rcpt[i];
	const char *at = memrchr(r.p, '@', r.len);
	if (!at)
		return (struct spool_str){r.p + r.len, 0};
	return (struct spool_str){at + 1, r.len - (size_t)(at + 1 - r.p)};
}
