#include "queue/qmsg.h"

#include <stdlib.h>
#include <string.h>

struct qmsg *
qmsg_new(char *rec, size_t len, unsigned home, enum qmsg_stream stream, uint32_t seq)
{
	struct qmsg *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	if (spool_record_decode(rec, len, &m->v) <= 0)
		goto fail;
	m->rcpt = malloc((m->v.nrcpt ? m->v.nrcpt : 1) * sizeof *m->rcpt);
	m->rdone = calloc(m->v.nrcpt ? m->v.nrcpt : 1, 1);
	if (!m->rcpt || !m->rdone)
		goto fail;
	size_t off = 0;
	for (uint32_t i = 0; i < m->v.nrcpt; i++)
		if (!spool_record_rcpt_next(&m->v, &off, &m->rcpt[i]))
			goto fail;
	atomic_init(&m->refs, 1);
	m->home = (uint16_t)home;
	m->stream = (uint8_t)stream;
	m->seq = seq;
	m->rec = rec;
	m->rec_len = len;
	m->pending = m->v.nrcpt;
	return m;
fail:
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
	free(m->rec);
	free(m->rcpt);
	free(m->rdone);
	free(m);
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
