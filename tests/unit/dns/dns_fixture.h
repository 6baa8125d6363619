/*
 * dns_fixture — builds answer packets for the DNS unit tests with ldns (valid ones; the
 * malformed ones are byte arrays in the tests themselves).
 */
#ifndef RINGMX_TESTS_DNS_FIXTURE_H
#define RINGMX_TESTS_DNS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ldns/ldns.h>

struct fx_pkt {
	uint16_t id;
	const char *qname; /* the question's name */
	uint16_t qtype;
	uint8_t rcode;
	bool tc;
	bool ad_bit; /* the AD bit: a validating resolver's "secure" */
	bool qr_clear; /* build a query-looking packet */
	const char *const *an, *const *ns, *const *ad; /* NULL-terminated lists of RRs as text */
};

static inline void
fx_push(ldns_pkt *pkt, ldns_pkt_section sec, const char *const *rrs)
{
	for (; rrs != NULL && *rrs != NULL; rrs++) {
		ldns_rr *rr = NULL;

		cr_assert_eq(ldns_rr_new_frm_str(&rr, *rrs, 3600, NULL, NULL), LDNS_STATUS_OK, "%s",
			     *rrs);
		cr_assert(ldns_pkt_push_rr(pkt, sec, rr));
	}
}

/* Writes the packet into out; returns its length. */
static inline size_t
fx_answer(uint8_t *out, size_t cap, const struct fx_pkt *f)
{
	ldns_pkt *pkt = ldns_pkt_new();
	ldns_rr *q = ldns_rr_new();
	ldns_rdf *owner = NULL;
	uint8_t *wire = NULL;
	size_t len = 0;

	cr_assert_not_null(pkt);
	ldns_pkt_set_id(pkt, f->id);
	ldns_pkt_set_qr(pkt, !f->qr_clear);
	ldns_pkt_set_rd(pkt, true);
	ldns_pkt_set_ra(pkt, true);
	ldns_pkt_set_tc(pkt, f->tc);
	ldns_pkt_set_ad(pkt, f->ad_bit);
	ldns_pkt_set_rcode(pkt, f->rcode);
	cr_assert_eq(ldns_str2rdf_dname(&owner, f->qname), LDNS_STATUS_OK);
	ldns_rr_set_owner(q, owner);
	ldns_rr_set_type(q, (ldns_rr_type)f->qtype);
	ldns_rr_set_class(q, LDNS_RR_CLASS_IN);
	ldns_rr_set_question(q, true);
	cr_assert(ldns_pkt_push_rr(pkt, LDNS_SECTION_QUESTION, q));
	fx_push(pkt, LDNS_SECTION_ANSWER, f->an);
	fx_push(pkt, LDNS_SECTION_AUTHORITY, f->ns);
	fx_push(pkt, LDNS_SECTION_ADDITIONAL, f->ad);
	cr_assert_eq(ldns_pkt2wire(&wire, pkt, &len), LDNS_STATUS_OK);
	cr_assert_leq(len, cap);
	memcpy(out, wire, len);
	free(wire);
	ldns_pkt_free(pkt);
	return len;
}

/* A copy of src[0..n) that ends right where a PROT_NONE page begins, so an over-read crashes.
 * Free with fx_guard_free(p, n). */
static inline uint8_t *
fx_guard_copy(const void *src, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), data = (n + page - 1) / page * page + page;
	uint8_t *map = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

	cr_assert_neq(map, MAP_FAILED);
	cr_assert_eq(mprotect(map + data, page, PROT_NONE), 0);
	memcpy(map + data - n, src, n);
	return map + data - n;
}

static inline void
fx_guard_free(uint8_t *p, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), data = (n + page - 1) / page * page + page;

	munmap(p + n - data, data + page);
}

#define FX_LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

#endif
