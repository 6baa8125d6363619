/*
 * dns_cache — a shard's DNS answer cache: positive and negative (RFC 2308) entries keyed by
 * (lower-cased name, type), TTLs respected with min/max clamps, bounded size, LRU eviction.
 *
 * One cache per shard and no locks: only its shard touches it. Time comes from the caller
 * (now_ms, any monotonic clock), so tests are deterministic.
 *
 * Usage:
 *   c = dns_cache_new(&(struct dns_cache_params){.entries_max = 10000, ...});
 *   if (dns_cache_get(c, "example.org", DNS_TYPE_MX, now_ms, &hit) != DNS_CACHE_MISS) use hit;
 *   else query, then dns_cache_put(c, ans, now_ms) with the parsed answer;
 *   on a failed query: dns_cache_note_error(c)   (counted for metrics; nothing is cached)
 *
 * What is stored (dns_cache_put), by the answer's rcode:
 *   NOERROR with records of the asked type: POSITIVE, for the smallest TTL of those records and
 *     of the CNAME chain that led to them;
 *   NOERROR without them: NODATA; NXDOMAIN: NXDOMAIN. Both for the negative TTL of RFC 2308
 *     section 5 (min of the SOA record's TTL and its MINIMUM) when the authority section had the
 *     SOA, else for neg_ttl_default_s; when the answer followed a CNAME chain (a dangling one,
 *     whose target the resolver asks for next, included), for no longer than the chain's
 *     smallest TTL, since the entry holds the chain;
 *   anything else (SERVFAIL, REFUSED, ...) and TC answers: not stored (-EAGAIN).
 *   Every TTL is then clamped to [min_ttl_s, max_ttl_s]. An entry is served while
 *   now_ms < stored_at + ttl * 1000: a TTL of 0 (with min_ttl_s == 0) is stored but expires at
 *   once, so the next lookup is a miss and queries again, as RFC 1035 section 3.2.1 asks.
 *   A put for a key that is present replaces it. When entries_max entries are present, the
 *   least recently used (stored or served) one is evicted first.
 *
 * Limits: entries_max entries, each one answer copy of at most dns_answer_size() bytes.
 *
 * Failure: dns_cache_new returns NULL (bad params or no memory); dns_cache_put returns
 * -EAGAIN (not cacheable), -EINVAL (a bad name) or -ENOMEM, and the cache is unchanged.
 */
#ifndef RINGMX_DNS_CACHE_H
#define RINGMX_DNS_CACHE_H

#include <stdint.h>

#include "dns/dns_packet.h"

#define DNS_CACHE_ENTRIES_LIMIT (1u << 24)

struct dns_cache;

struct dns_cache_params {
	uint32_t entries_max;       /* 1 .. DNS_CACHE_ENTRIES_LIMIT */
	uint32_t min_ttl_s;         /* clamp: no entry lives shorter (0: honour TTL 0) */
	uint32_t max_ttl_s;         /* clamp: no entry lives longer; >= min_ttl_s */
	uint32_t neg_ttl_default_s; /* negative answers without an SOA */
};

enum dns_cache_kind {
	DNS_CACHE_MISS = 0,
	DNS_CACHE_POSITIVE,
	DNS_CACHE_NODATA,
	DNS_CACHE_NXDOMAIN,
};

struct dns_cache_hit {
	enum dns_cache_kind kind;
	/* The stored answer: valid until the next dns_cache_put or dns_cache_free on c. */
	const struct dns_answer *ans;
	uint32_t ttl_left_s; /* whole seconds left, rounded up */
};

struct dns_cache_stats {
	uint64_t hits, misses, errors, inserts, evictions, expirations;
	uint32_t entries;
};

struct dns_cache *dns_cache_new(const struct dns_cache_params *p);
void dns_cache_free(struct dns_cache *c);

/* Looks name/type up at now_ms; fills *hit (kind MISS when absent or expired) and returns the
 * kind. Counts a hit or a miss; an expired entry is removed. */
enum dns_cache_kind dns_cache_get(struct dns_cache *c, const char *name, uint16_t type,
				  uint64_t now_ms, struct dns_cache_hit *hit);

/* Stores a copy of ans (from dns_packet_parse) under (its qname, its qtype). Returns the kind
 * stored (> 0) or -errno (see above). */
int dns_cache_put(struct dns_cache *c, const struct dns_answer *ans, uint64_t now_ms);

/* Counts a lookup that failed (timeout, SERVFAIL, malformed answer) for metrics. */
void dns_cache_note_error(struct dns_cache *c);

void dns_cache_stats_get(const struct dns_cache *c, struct dns_cache_stats *out);

#endif
