/*
 * dns_tlsa — the TLSA RRset of an SMTP server, for DANE in outbound TLS (RFC 6698, RFC 7672).
 *
 * dns_tlsa_lookup asks the resolver (so through its cache and coalescing, keyed by name and
 * type like every answer, and through CNAME chases) for the TLSA records of _PORT._tcp.HOST
 * and hands the caller an owned struct dns_tlsa:
 *   NOERROR with TLSA records        DNS_TLSA_FOUND: the records (usage, selector, matching
 *                                    type, data) in answer order, ttl = the RRset's TTL
 *   NXDOMAIN, or NOERROR without     DNS_TLSA_NONE: the host publishes no TLSA ("no TLSA" is
 *     TLSA records (NODATA)          not an error); ttl = the negative TTL when the answer
 *                                    had the SOA, else 0
 *   SERVFAIL/REFUSED, timeout,       DNS_TLSA_TEMPFAIL: err says which (the -errno/DNS_ERR_*
 *     malformed answer, CNAME loop   of the resolver, or DNS_TLSA_ERR_RCODE with rcode)
 * Records are reported as received, also with usages, selectors or matching types the caller
 * does not support (RFC 7672 section 3.1: those are "unusable", which is the caller's call).
 *
 * DNSSEC: ringmx does not validate. `secure` is the AD bit of the answer (set on every link of
 * a CNAME chain), which means something only when the resolver is a validating one the host
 * trusts over a trusted path (a local unbound on 127.0.0.1); RFC 7672 section 2.2 lets DANE use
 * TLSA records only when they are secure. Without AD the caller must treat the RRset as absent.
 *
 * Usage:
 *   dns_tlsa_lookup(res, "mx1.example.org", 25, now_ms, on_tlsa, arg);
 *   on_tlsa(arg, t): use t->status, t->rr[0..nrr) while needed; dns_tlsa_free(t).
 * on_tlsa may be called before dns_tlsa_lookup returns (a cache hit).
 *
 * Limits: DNS_ANSWER_RR_MAX records (the answer's own bound; the rest are counted in `dropped`),
 * their data within the answer's DNS_ANSWER_STRINGS_MAX-byte arena.
 *
 * Failure: dns_tlsa_lookup returns 0 (done will be called exactly once) or -EINVAL (bad host,
 * port 0, or a name over 253 octets), -ENOMEM, -EAGAIN (resolver full); then it never is.
 * dns_tlsa_name returns -EINVAL for the same bad input.
 */
#ifndef RINGMX_DNS_TLSA_H
#define RINGMX_DNS_TLSA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns_resolver.h"

#define DNS_TLSA_ERR_RCODE 1 /* err for a SERVFAIL-like rcode (see rcode) */

enum dns_tlsa_status { DNS_TLSA_FOUND = 0, DNS_TLSA_NONE, DNS_TLSA_TEMPFAIL };

struct dns_tlsa_rr {
	uint8_t usage;    /* 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE */
	uint8_t selector; /* 0 full certificate, 1 SubjectPublicKeyInfo */
	uint8_t mtype;    /* 0 exact, 1 SHA2-256, 2 SHA2-512 */
	uint16_t len;
	const uint8_t *data; /* len bytes, owned by the struct dns_tlsa */
};

struct dns_tlsa {
	char name[256]; /* _PORT._tcp.host, lower case, no final dot */
	enum dns_tlsa_status status;
	int err;       /* TEMPFAIL: -errno, DNS_ERR_*, or DNS_TLSA_ERR_RCODE; else 0 */
	uint8_t rcode; /* of the answer, when there was one */
	uint32_t ttl;  /* seconds, see above */
	bool from_cache;
	bool secure;      /* the answer's AD bit (see above) */
	uint32_t dropped; /* records the packet layer could not keep */
	unsigned nrr;
	struct dns_tlsa_rr rr[DNS_ANSWER_RR_MAX];
	/* internal */
	uint8_t *data;
	void (*done)(void *arg, struct dns_tlsa *t);
	void *arg;
};

typedef void (*dns_tlsa_done_fn)(void *arg, struct dns_tlsa *t);

/* Writes "_PORT._tcp.host" (lower case, no final dot) into out. Returns its length or -EINVAL. */
int dns_tlsa_name(char *out, size_t cap, const char *host, uint16_t port);

int dns_tlsa_lookup(struct dns_resolver *res, const char *host, uint16_t port, uint64_t now_ms,
		    dns_tlsa_done_fn done, void *arg);
void dns_tlsa_free(struct dns_tlsa *t);

/*
 * The classification above, on its own (what dns_tlsa_lookup does with the resolver's result;
 * public for tests): fills t, which is zeroed except for name, from status and ans as a
 * dns_resolver_done_fn gets them, copying the records' data into t (freed by dns_tlsa_free).
 * Out of memory makes t a TEMPFAIL with err -ENOMEM.
 */
void dns_tlsa_fill(struct dns_tlsa *t, int status, const struct dns_answer *ans, bool from_cache);

/* "found", "none" or "tempfail". */
const char *dns_tlsa_status_name(enum dns_tlsa_status st);

#endif
