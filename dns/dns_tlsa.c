/*
 * dns_tlsa — see dns_tlsa.h.
 */
#include "dns/dns_tlsa.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/assert.h"

int
dns_tlsa_name(char *out, size_t cap, const char *host, uint16_t port)
{
	char raw[DNS_NAME_TEXT_MAX];
	int n;

	if (port == 0 || host == NULL || host[0] == '\0' || strcmp(host, ".") == 0)
		return -EINVAL;
	n = snprintf(raw, sizeof raw, "_%u._tcp.%s", (unsigned)port, host);
	if (n < 0 || (size_t)n >= sizeof raw)
		return -EINVAL;
	return dns_name_normalize(out, cap, raw);
}

const char *
dns_tlsa_status_name(enum dns_tlsa_status st)
{
	switch (st) {
	case DNS_TLSA_FOUND: return "found";
	case DNS_TLSA_NONE: return "none";
	case DNS_TLSA_TEMPFAIL: return "tempfail";
	}
	ASSERT(!"a dns_tlsa_status");
	return "";
}

/* Copies the TLSA records of ans (rcode NOERROR) into t. */
static void
tlsa_copy(struct dns_tlsa *t, const struct dns_answer *ans)
{
	size_t total = 0, off = 0;

	for (unsigned i = 0; i < ans->nrr; i++)
		if (ans->rr[i].type == DNS_TYPE_TLSA)
			total += ans->rr[i].u.tlsa.len;
	t->data = malloc(total > 0 ? total : 1);
	if (t->data == NULL) {
		t->status = DNS_TLSA_TEMPFAIL;
		t->err = -ENOMEM;
		return;
	}
	for (unsigned i = 0; i < ans->nrr; i++) {
		const struct dns_rr *rr = &ans->rr[i];
		struct dns_tlsa_rr *o;

		if (rr->type != DNS_TYPE_TLSA)
			continue;
		ASSERT(t->nrr < DNS_ANSWER_RR_MAX);
		ASSERT((size_t)rr->target + rr->u.tlsa.len <= ans->strings_len);
		o = &t->rr[t->nrr++];
		o->usage = rr->u.tlsa.usage;
		o->selector = rr->u.tlsa.selector;
		o->mtype = rr->u.tlsa.mtype;
		o->len = rr->u.tlsa.len;
		memcpy(t->data + off, ans->strings + rr->target, o->len);
		o->data = t->data + off;
		off += o->len;
	}
	ASSERT(off == total);
}

void
dns_tlsa_fill(struct dns_tlsa *t, int status, const struct dns_answer *ans, bool from_cache)
{
	t->from_cache = from_cache;
	if (status < 0) {
		t->status = DNS_TLSA_TEMPFAIL;
		t->err = status;
		return;
	}
	ASSERT(ans != NULL && ans->qtype == DNS_TYPE_TLSA);
	t->rcode = ans->rcode;
	t->secure = ans->ad;
	t->dropped = ans->dropped;
	if (ans->rcode == DNS_RCODE_NXDOMAIN ||
	    (ans->rcode == DNS_RCODE_NOERROR && ans->nrr == 0)) {
		/* RFC 7672 section 2.2: no TLSA records (a "secure" denial or not) means no DANE */
		t->status = DNS_TLSA_NONE;
		t->ttl = ans->has_soa ? ans->neg_ttl : 0;
		return;
	}
	if (ans->rcode != DNS_RCODE_NOERROR) {
		t->status = DNS_TLSA_TEMPFAIL;
		t->err = DNS_TLSA_ERR_RCODE;
		return;
	}
	t->status = DNS_TLSA_FOUND;
	t->ttl = ans->ttl_min;
	tlsa_copy(t, ans);
}

static void
on_answer(void *arg, int status, const struct dns_answer *ans, bool from_cache)
{
	struct dns_tlsa *t = arg;

	dns_tlsa_fill(t, status, ans, from_cache);
	t->done(t->arg, t);
}

int
dns_tlsa_lookup(struct dns_resolver *res, const char *host, uint16_t port, uint64_t now_ms,
		dns_tlsa_done_fn done, void *arg)
{
	struct dns_tlsa *t = calloc(1, sizeof *t);
	int rc;

	ASSERT(res != NULL && done != NULL);
	if (t == NULL)
		return -ENOMEM;
	if (dns_tlsa_name(t->name, sizeof t->name, host, port) < 0) {
		free(t);
		return -EINVAL;
	}
	t->done = done;
	t->arg = arg;
	rc = dns_resolver_lookup(res, t->name, DNS_TYPE_TLSA, now_ms, on_answer, t);
	if (rc < 0) {
		free(t);
		return rc;
	}
	return 0;
}

void
dns_tlsa_free(struct dns_tlsa *t)
{
	if (t == NULL)
		return;
	free(t->data);
	free(t);
}
