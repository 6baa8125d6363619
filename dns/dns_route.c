/*
 * dns_route — see dns_route.h.
 */
#include "dns/dns_route.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "queue/assert.h"

bool
dns_route_addr_is_local(int family, const uint8_t *a)
{
	static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == AF_INET6) {
		if (memcmp(a, mapped, 12) == 0)
			return dns_route_addr_is_local(AF_INET, a + 12);
		if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
			return true; /* :: and ::1 */
		return a[0] == 0xff;
	}
	return a[0] == 0 || a[0] == 127 || a[0] >= 224;
}

static void
route_fail(struct dns_route *rt, enum dns_route_status st, const char *code, const char *reason)
{
	if (rt->status != DNS_ROUTE_OK)
		return; /* the first reason wins */
	rt->status = st;
	rt->code = code;
	rt->reason = reason;
}

/* Adds an address to host h, if it is wanted and there is room. */
static void
host_add(struct dns_route *rt, struct dns_route_host *h, const struct dns_rr *rr, bool cached)
{
	struct dns_route_addr *a;

	if (h->naddr == DNS_ROUTE_ADDRS_MAX)
		return;
	a = &h->addr[h->naddr++];
	a->family = rr->type == DNS_TYPE_A ? AF_INET : AF_INET6;
	memcpy(a->addr, rr->u.aaaa, rr->type == DNS_TYPE_A ? 4 : 16);
	a->ttl = rr->ttl;
	a->from_cache = cached;
	(void)rt;
}

/*
 * RFC 5321 section 5.1: when this host is one of the MX hosts (a host with one of our own
 * addresses), it "MUST discard all records with a preference >= its own", or it would send
 * the mail to itself or to a backup that sends it back. Drops those hosts; returns how many.
 */
static unsigned
route_drop_self(struct dns_route *rt)
{
	unsigned n = 0, dropped;

	rt->self_pref = -1;
	for (unsigned i = 0; i < rt->nhosts; i++) {
		const struct dns_route_host *h = &rt->hosts[i];

		for (unsigned k = 0; k < h->naddr; k++)
			if (dns_local_has(rt->p.local, h->addr[k].family, h->addr[k].addr) &&
			    (rt->self_pref < 0 || h->pref < rt->self_pref))
				rt->self_pref = h->pref;
	}
	if (rt->self_pref < 0)
		return 0;
	for (unsigned i = 0; i < rt->nhosts; i++)
		if (rt->hosts[i].pref < rt->self_pref)
			rt->hosts[n++] = rt->hosts[i]; /* n <= i: in place, order kept */
	dropped = rt->nhosts - n;
	rt->nhosts = n;
	return dropped;
}

/* Orders host h's addresses (preferred family first) and drops loopback/invalid ones unless
 * they are allowed. Returns how many it dropped. */
static unsigned
host_filter(const struct dns_route *rt, struct dns_route_host *h)
{
	struct dns_route_addr keep[DNS_ROUTE_ADDRS_MAX];
	int pf = rt->p.prefer == DNS_PREFER_IPV6 ? AF_INET6 : AF_INET;
	unsigned n = 0, dropped = 0;

	ASSERT(h->naddr <= DNS_ROUTE_ADDRS_MAX);
	for (int pass = 0; pass < 2; pass++)
		for (unsigned k = 0; k < h->naddr; k++) {
			struct dns_route_addr *a = &h->addr[k];

			if ((a->family == pf) != (pass == 0))
				continue;
			if (!rt->p.loopback_ok && dns_route_addr_is_local(a->family, a->addr)) {
				dropped++;
				continue;
			}
			keep[n++] = *a;
		}
	memcpy(h->addr, keep, n * sizeof keep[0]);
	h->naddr = n;
	return dropped;
}

/* Drops our own MX entries and unusable addresses, and decides the outcome once every lookup
 * is back. A failed address lookup of a host that is still in the route makes the outcome
 * temporary rather than a loop: that host may be fine once DNS is. */
static void
route_finish(struct dns_route *rt)
{
	unsigned total = 0, local = 0;
	bool temp = false;

	if (rt->status == DNS_ROUTE_OK)
		rt->self_dropped = route_drop_self(rt);
	for (unsigned i = 0; i < rt->nhosts && rt->status == DNS_ROUTE_OK; i++) {
		temp |= rt->hosts[i].err != 0;
		local += host_filter(rt, &rt->hosts[i]);
		total += rt->hosts[i].naddr;
	}
	if (rt->status == DNS_ROUTE_OK && total == 0) {
		if (temp)
			route_fail(rt, DNS_ROUTE_TEMPFAIL, "4.4.3", "address lookup failed");
		else if (rt->self_dropped > 0)
			route_fail(rt, DNS_ROUTE_PERMFAIL, "5.4.6",
				   "mail for the domain loops back to myself (we are its best MX)");
		else if (local > 0)
			route_fail(rt, DNS_ROUTE_PERMFAIL, "5.4.6",
				   "MX hosts resolve only to local or invalid addresses (mail loop)");
		else if (rt->implicit)
			route_fail(rt, DNS_ROUTE_PERMFAIL, "5.1.2", "no MX and no address records");
		else
			route_fail(rt, DNS_ROUTE_TEMPFAIL, "4.4.3", "MX hosts have no addresses");
	}
	rt->done(rt->arg, rt);
}

static void
route_release(struct dns_route *rt)
{
	ASSERT(rt->pending > 0);
	if (--rt->pending == 0)
		route_finish(rt);
}

static void
on_addr(void *arg, int status, const struct dns_answer *ans, bool from_cache)
{
	struct dns_route_sub *sub = arg;
	struct dns_route *rt = sub->rt;
	struct dns_route_host *h = &rt->hosts[sub->host];

	if (status < 0)
		h->err = status;
	else if (ans->rcode != DNS_RCODE_NOERROR && ans->rcode != DNS_RCODE_NXDOMAIN)
		h->err = 1;
	else
		for (unsigned i = 0; i < ans->nrr; i++)
			host_add(rt, h, &ans->rr[i], from_cache);
	route_release(rt);
}

/* Addresses for host h: from the MX answer's additional section, else two lookups. */
static void
host_addresses(struct dns_route *rt, unsigned hi, const struct dns_answer *mx, bool cached)
{
	static const uint16_t types[2] = {DNS_TYPE_A, DNS_TYPE_AAAA};
	struct dns_route_host *h = &rt->hosts[hi];

	for (unsigned i = 0; mx != NULL && i < mx->nadd; i++)
		if (strcmp(dns_answer_str(mx, mx->add[i].name), h->name) == 0)
			host_add(rt, h, &mx->add[i], cached);
	if (h->naddr > 0)
		return;
	for (unsigned t = 0; t < 2; t++) {
		int rc;

		h->sub[t] = (struct dns_route_sub){rt, (uint8_t)hi, types[t]};
		rt->pending++;
		rc = dns_resolver_lookup(rt->res, h->name, types[t], rt->now_ms, on_addr, &h->sub[t]);
		if (rc < 0) {
			h->err = rc;
			rt->pending--;
		}
	}
}

/* Sorts hosts by preference (stable), then shuffles each run of equal preferences. */
static void
hosts_order(struct dns_route *rt)
{
	struct dns_route_host tmp;

	for (unsigned i = 1; i < rt->nhosts; i++)
		for (unsigned k = i; k > 0 && rt->hosts[k - 1].pref > rt->hosts[k].pref; k--) {
			tmp = rt->hosts[k];
			rt->hosts[k] = rt->hosts[k - 1];
			rt->hosts[k - 1] = tmp;
		}
	for (unsigned s = 0, e; s < rt->nhosts; s = e) {
		for (e = s + 1; e < rt->nhosts && rt->hosts[e].pref == rt->hosts[s].pref; e++)
			;
		for (unsigned i = e - 1; i > s; i--) {
			unsigned j = s + dns_resolver_random(rt->res) % (i - s + 1);

			tmp = rt->hosts[i];
			rt->hosts[i] = rt->hosts[j];
			rt->hosts[j] = tmp;
		}
	}
}

/* Fills the host list from an MX answer; returns false when the route already failed. */
static bool
route_hosts(struct dns_route *rt, const struct dns_answer *ans)
{
	if (ans->nrr == 1 && ans->rr[0].pref == 0 &&
	    strcmp(dns_answer_str(ans, ans->rr[0].target), ".") == 0) {
		route_fail(rt, DNS_ROUTE_PERMFAIL, "5.1.10", "domain does not accept mail (null MX)");
		return false;
	}
	if (ans->nrr == 0) { /* RFC 5321 5.1: the domain is its own MX, preference 0 */
		rt->implicit = true;
		strcpy(rt->hosts[0].name, rt->domain);
		rt->nhosts = 1;
		return true;
	}
	for (unsigned i = 0; i < ans->nrr; i++) {
		const char *t = dns_answer_str(ans, ans->rr[i].target);
		struct dns_route_host *h;

		if (strcmp(t, ".") == 0 || strlen(t) >= sizeof h->name)
			continue; /* a "." among real MX hosts is ignored (RFC 7505 section 3) */
		if (rt->nhosts == DNS_ROUTE_HOSTS_MAX) { /* keep the most preferred */
			unsigned worst = 0;

			for (unsigned k = 1; k < rt->nhosts; k++)
				if (rt->hosts[k].pref > rt->hosts[worst].pref)
					worst = k;
			if (rt->hosts[worst].pref <= ans->rr[i].pref)
				continue;
			h = &rt->hosts[worst];
		} else {
			h = &rt->hosts[rt->nhosts++];
		}
		memset(h, 0, sizeof *h);
		strcpy(h->name, t);
		h->pref = ans->rr[i].pref;
		h->ttl = ans->rr[i].ttl;
	}
	hosts_order(rt);
	return true;
}

static void
on_mx(void *arg, int status, const struct dns_answer *ans, bool from_cache)
{
	struct dns_route *rt = arg;

	rt->pending++; /* hold: lookups started below may answer from the cache at once */
	rt->mx_from_cache = from_cache;
	if (status < 0)
		route_fail(rt, DNS_ROUTE_TEMPFAIL, "4.4.3",
			   status == -ETIMEDOUT ? "DNS timeout" : "DNS error");
	else if (ans->rcode == DNS_RCODE_NXDOMAIN)
		route_fail(rt, DNS_ROUTE_PERMFAIL, "5.1.2", "domain does not exist (NXDOMAIN)");
	else if (ans->rcode != DNS_RCODE_NOERROR)
		route_fail(rt, DNS_ROUTE_TEMPFAIL, "4.4.3", "DNS server failure");
	else if (route_hosts(rt, ans)) {
		rt->mx_ttl = ans->ttl_min;
		for (unsigned i = 0; i < rt->nhosts; i++)
			host_addresses(rt, i, rt->implicit ? NULL : ans, from_cache);
	}
	route_release(rt); /* the hold */
	route_release(rt); /* the MX lookup */
}

int
dns_route_resolve(struct dns_resolver *res, const char *domain,
		  const struct dns_route_params *p, uint64_t now_ms, dns_route_done_fn done,
		  void *arg)
{
	struct dns_route *rt = calloc(1, sizeof *rt);
	int rc;

	if (rt == NULL)
		return -ENOMEM;
	if (dns_name_normalize(rt->domain, sizeof rt->domain, domain) < 0) {
		free(rt);
		return -EINVAL;
	}
	rt->res = res;
	rt->p = *p;
	rt->now_ms = now_ms;
	rt->code = "";
	rt->reason = "ok";
	rt->self_pref = -1;
	rt->done = done;
	rt->arg = arg;
	rt->pending = 1;
	rc = dns_resolver_lookup(res, rt->domain, DNS_TYPE_MX, now_ms, on_mx, rt);
	if (rc < 0) {
		free(rt);
		return rc;
	}
	return 0;
}

void
dns_route_free(struct dns_route *rt)
{
	free(rt);
}
