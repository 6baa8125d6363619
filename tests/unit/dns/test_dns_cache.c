/*
 * Unit tests of dns_cache: answers come from dns_packet_parse on ldns-built packets, and time
 * is a plain number, so expiry is exact.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dns/dns_cache.h"
#include "dns/dns_packet.h"
#include "tests/unit/dns/dns_fixture.h"

#define T0 1000000ull /* any start time: the cache only compares */

static struct dns_cache *
cache_new(uint32_t entries_max, uint32_t min_ttl, uint32_t max_ttl)
{
	struct dns_cache_params p = {
	    .entries_max = entries_max,
	    .min_ttl_s = min_ttl,
	    .max_ttl_s = max_ttl,
	    .neg_ttl_default_s = 60,
	};
	struct dns_cache *c = dns_cache_new(&p);

	cr_assert_not_null(c);
	return c;
}

/* Parses a packet built from f into a new answer. */
static struct dns_answer *
answer(const struct fx_pkt *f)
{
	uint8_t pkt[2048];
	size_t len = fx_answer(pkt, sizeof pkt, f);
	struct dns_answer *a = dns_answer_new();

	cr_assert_not_null(a);
	cr_assert_eq(dns_packet_parse(a, pkt, len, f->qname, f->qtype, f->id), 0);
	return a;
}

/* An answer of one A record for name with the given TTL. */
static struct dns_answer *
a_answer(const char *name, uint32_t ttl)
{
	char rr[128];
	struct fx_pkt f = {.id = 1, .qname = name, .qtype = DNS_TYPE_A, .an = FX_LIST(rr)};

	snprintf(rr, sizeof rr, "%s %u IN A 192.0.2.1", name, ttl);
	return answer(&f);
}

static void
put(struct dns_cache *c, struct dns_answer *a, uint64_t now_ms, int kind)
{
	cr_assert_eq(dns_cache_put(c, a, now_ms), kind);
	dns_answer_free(a);
}

static enum dns_cache_kind
get(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms)
{
	struct dns_cache_hit hit;

	return dns_cache_get(c, name, type, now_ms, &hit);
}

Test(dns_cache, positive_entry_is_a_hit_within_its_ttl_and_a_miss_after)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct dns_cache_hit hit;
	struct dns_cache_stats st;

	put(c, a_answer("h.test.", 300), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(dns_cache_get(c, "h.test", DNS_TYPE_A, T0 + 1500, &hit), DNS_CACHE_POSITIVE);
	cr_assert_eq(hit.ans->nrr, 1);
	cr_assert_eq(hit.ans->rr[0].u.a[3], 1);
	cr_assert_eq(hit.ttl_left_s, 299, "298.5 s left, rounded up");
	cr_assert_eq(get(c, "h.test", DNS_TYPE_A, T0 + 299999), DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "h.test", DNS_TYPE_A, T0 + 300000), DNS_CACHE_MISS);
	cr_assert_eq(get(c, "h.test", DNS_TYPE_A, T0 + 1), DNS_CACHE_MISS, "expired is removed");
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.hits, 2);
	cr_assert_eq(st.misses, 2);
	cr_assert_eq(st.expirations, 1);
	cr_assert_eq(st.entries, 0);
	dns_cache_free(c);
}

Test(dns_cache, lookup_ignores_case_and_the_final_dot_but_not_the_type)
{
	struct dns_cache *c = cache_new(16, 0, 86400);

	put(c, a_answer("Mixed.Test.", 300), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "MIXED.test.", DNS_TYPE_A, T0), DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "mixed.test", DNS_TYPE_AAAA, T0), DNS_CACHE_MISS);
	cr_assert_eq(get(c, "other.test", DNS_TYPE_A, T0), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, nxdomain_is_cached_for_the_negative_ttl_of_the_soa)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt f = {
	    .id = 2,
	    .qname = "nope.test.",
	    .qtype = DNS_TYPE_MX,
	    .rcode = DNS_RCODE_NXDOMAIN,
	    .ns = FX_LIST("test. 900 IN SOA ns.test. host.test. 1 3600 600 86400 120"),
	};

	put(c, answer(&f), T0, DNS_CACHE_NXDOMAIN);
	cr_assert_eq(get(c, "nope.test", DNS_TYPE_MX, T0 + 119999), DNS_CACHE_NXDOMAIN);
	cr_assert_eq(get(c, "nope.test", DNS_TYPE_MX, T0 + 120000), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, nodata_is_cached_and_without_an_soa_for_the_default_negative_ttl)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt f = {
	    .id = 2,
	    .qname = "nomx.test.",
	    .qtype = DNS_TYPE_MX,
	    .ns = FX_LIST("test. 900 IN SOA ns.test. host.test. 1 3600 600 86400 30"),
	};
	struct fx_pkt bare = {.id = 2, .qname = "bare.test.", .qtype = DNS_TYPE_MX};

	put(c, answer(&f), T0, DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "nomx.test", DNS_TYPE_MX, T0 + 29999), DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "nomx.test", DNS_TYPE_MX, T0 + 30000), DNS_CACHE_MISS);
	put(c, answer(&bare), T0, DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "bare.test", DNS_TYPE_MX, T0 + 59999), DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "bare.test", DNS_TYPE_MX, T0 + 60000), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, servfail_and_truncated_answers_are_not_cached)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt sf = {.id = 2, .qname = "sf.test.", .qtype = DNS_TYPE_MX, .rcode = 2};
	struct fx_pkt tc = {.id = 2, .qname = "tc.test.", .qtype = DNS_TYPE_MX, .tc = true};
	struct dns_cache_stats st;

	put(c, answer(&sf), T0, -EAGAIN);
	put(c, answer(&tc), T0, -EAGAIN);
	dns_cache_note_error(c);
	cr_assert_eq(get(c, "sf.test", DNS_TYPE_MX, T0), DNS_CACHE_MISS);
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.entries, 0);
	cr_assert_eq(st.inserts, 0);
	cr_assert_eq(st.errors, 1);
	dns_cache_free(c);
}

Test(dns_cache, least_recently_used_entry_is_evicted_first)
{
	struct dns_cache *c = cache_new(3, 0, 86400);
	struct dns_cache_stats st;

	put(c, a_answer("a.test.", 300), T0, DNS_CACHE_POSITIVE);
	put(c, a_answer("b.test.", 300), T0 + 1, DNS_CACHE_POSITIVE);
	put(c, a_answer("c.test.", 300), T0 + 2, DNS_CACHE_POSITIVE);
	/* a is used, so b is now the least recently used */
	cr_assert_eq(get(c, "a.test", DNS_TYPE_A, T0 + 3), DNS_CACHE_POSITIVE);
	put(c, a_answer("d.test.", 300), T0 + 4, DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "b.test", DNS_TYPE_A, T0 + 5), DNS_CACHE_MISS);
	cr_assert_eq(get(c, "a.test", DNS_TYPE_A, T0 + 5), DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "d.test", DNS_TYPE_A, T0 + 5), DNS_CACHE_POSITIVE);
	/* order now (old to new): c, a, d */
	put(c, a_answer("e.test.", 300), T0 + 6, DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "c.test", DNS_TYPE_A, T0 + 7), DNS_CACHE_MISS);
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.evictions, 2);
	cr_assert_eq(st.entries, 3);
	dns_cache_free(c);
}

Test(dns_cache, put_of_a_present_key_replaces_it_without_evicting)
{
	struct dns_cache *c = cache_new(2, 0, 86400);
	struct dns_cache_hit hit;
	struct dns_cache_stats st;

	put(c, a_answer("a.test.", 300), T0, DNS_CACHE_POSITIVE);
	put(c, a_answer("b.test.", 300), T0, DNS_CACHE_POSITIVE);
	put(c, a_answer("a.test.", 10), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(dns_cache_get(c, "a.test", DNS_TYPE_A, T0, &hit), DNS_CACHE_POSITIVE);
	cr_assert_eq(hit.ttl_left_s, 10);
	cr_assert_eq(get(c, "b.test", DNS_TYPE_A, T0), DNS_CACHE_POSITIVE);
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.evictions, 0);
	cr_assert_eq(st.entries, 2);
	dns_cache_free(c);
}

Test(dns_cache, ttls_are_clamped_by_min_ttl_and_max_ttl)
{
	struct dns_cache *c = cache_new(16, 5, 3600);
	struct dns_cache_hit hit;

	put(c, a_answer("short.test.", 1), T0, DNS_CACHE_POSITIVE);
	put(c, a_answer("long.test.", 604800), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(dns_cache_get(c, "short.test", DNS_TYPE_A, T0 + 4999, &hit),
		     DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "short.test", DNS_TYPE_A, T0 + 5000), DNS_CACHE_MISS);
	cr_assert_eq(dns_cache_get(c, "long.test", DNS_TYPE_A, T0, &hit), DNS_CACHE_POSITIVE);
	cr_assert_eq(hit.ttl_left_s, 3600);
	cr_assert_eq(get(c, "long.test", DNS_TYPE_A, T0 + 3600000), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, zero_ttl_is_stored_but_expires_at_once)
{
	struct dns_cache *c = cache_new(16, 0, 3600);
	struct dns_cache_stats st;

	put(c, a_answer("zero.test.", 0), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "zero.test", DNS_TYPE_A, T0), DNS_CACHE_MISS);
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.inserts, 1);
	cr_assert_eq(st.expirations, 1);
	dns_cache_free(c);
}

Test(dns_cache, zero_ttl_is_raised_to_min_ttl)
{
	struct dns_cache *c = cache_new(16, 2, 3600);

	put(c, a_answer("zero.test.", 0), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "zero.test", DNS_TYPE_A, T0 + 1999), DNS_CACHE_POSITIVE);
	cr_assert_eq(get(c, "zero.test", DNS_TYPE_A, T0 + 2000), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, positive_ttl_is_the_smallest_of_the_records_and_the_cname_chain)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt f = {
	    .id = 3,
	    .qname = "alias.test.",
	    .qtype = DNS_TYPE_MX,
	    .an = FX_LIST("alias.test. 40 IN CNAME real.test.", "real.test. 300 IN MX 5 mx.test."),
	};
	struct dns_cache_hit hit;

	put(c, answer(&f), T0, DNS_CACHE_POSITIVE);
	cr_assert_eq(dns_cache_get(c, "alias.test", DNS_TYPE_MX, T0, &hit), DNS_CACHE_POSITIVE);
	cr_assert_eq(hit.ttl_left_s, 40);
	cr_assert_str_eq(dns_answer_str(hit.ans, hit.ans->canon), "real.test");
	dns_cache_free(c);
}

Test(dns_cache, bad_parameters_are_refused)
{
	struct dns_cache_params zero = {.entries_max = 0, .max_ttl_s = 10};
	struct dns_cache_params inverted = {.entries_max = 4, .min_ttl_s = 10, .max_ttl_s = 5};

	cr_assert_null(dns_cache_new(&zero));
	cr_assert_null(dns_cache_new(&inverted));
}

Test(dns_cache, many_entries_stay_within_the_bound)
{
	struct dns_cache *c = cache_new(50, 0, 86400);
	struct dns_cache_stats st;
	char name[64];

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof name, "n%d.test.", i);
		put(c, a_answer(name, 300), T0 + (uint64_t)i, DNS_CACHE_POSITIVE);
	}
	dns_cache_stats_get(c, &st);
	cr_assert_eq(st.entries, 50);
	cr_assert_eq(st.evictions, 150);
	cr_assert_eq(get(c, "n149.test", DNS_TYPE_A, T0 + 300), DNS_CACHE_MISS);
	cr_assert_eq(get(c, "n150.test", DNS_TYPE_A, T0 + 300), DNS_CACHE_POSITIVE);
	dns_cache_free(c);
}

Test(dns_cache, a_dangling_cname_lives_no_longer_than_the_cname_ttl)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt f = {
	    .id = 3,
	    .qname = "alias.test.",
	    .qtype = DNS_TYPE_MX,
	    .an = FX_LIST("alias.test. 20 IN CNAME real.other."),
	};
	struct dns_cache_hit hit;

	/* no SOA: without the CNAME rule this would live neg_ttl_default_s (60 s) */
	put(c, answer(&f), T0, DNS_CACHE_NODATA);
	cr_assert_eq(dns_cache_get(c, "alias.test", DNS_TYPE_MX, T0 + 19999, &hit),
		     DNS_CACHE_NODATA);
	cr_assert(dns_answer_dangling(hit.ans), "the hit is chased again by the resolver");
	cr_assert_eq(get(c, "alias.test", DNS_TYPE_MX, T0 + 20000), DNS_CACHE_MISS);
	dns_cache_free(c);
}

Test(dns_cache, nodata_after_a_cname_lives_the_smaller_of_the_chain_and_negative_ttl)
{
	struct dns_cache *c = cache_new(16, 0, 86400);
	struct fx_pkt f = {
	    .id = 3,
	    .qname = "alias.test.",
	    .qtype = DNS_TYPE_MX,
	    .an = FX_LIST("alias.test. 10 IN CNAME real.test."),
	    .ns = FX_LIST("test. 600 IN SOA ns.test. h.test. 1 2 3 4 30"),
	};

	put(c, answer(&f), T0, DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "alias.test", DNS_TYPE_MX, T0 + 9999), DNS_CACHE_NODATA);
	cr_assert_eq(get(c, "alias.test", DNS_TYPE_MX, T0 + 10000), DNS_CACHE_MISS);
	dns_cache_free(c);
}
