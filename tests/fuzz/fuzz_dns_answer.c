/*
 * fuzz_dns_answer — libFuzzer harness for dns/dns_packet (checking and parsing DNS answers).
 *
 * Input: one selector byte, then a datagram as a resolver would receive it. The selector says
 * which question the answer is checked against:
 *   bits 0-1  0, 1: the datagram's own question and ID (so the fuzzer reaches the record
 *             parsing without guessing them); 2: a name and type from the tables below with
 *             the datagram's ID; 3: the same with a fixed ID (mostly a wrong one)
 *   bits 2-4  the type (tables), bits 5-7 the name (tables)
 * On success it checks the answer's bounds (records, additional addresses, CNAME hops, the
 * string arena: every offset inside it and NUL-terminated), that kept records are of the asked
 * type at the canonical name, that the question is the one asked, the TTL rules, that
 * dns_answer_dup() copies it exactly, and, for a dangling CNAME, dns_answer_chain() onto a copy
 * of itself. On failure it checks the answer was left empty and the error has a name.
 */
#include <ldns/ldns.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dns/dns_packet.h"
#include "tests/fuzz/fuzz.h"

static const uint16_t qtypes[] = {DNS_TYPE_MX,	  DNS_TYPE_A,	DNS_TYPE_AAAA, DNS_TYPE_TLSA,
				  DNS_TYPE_CNAME, DNS_TYPE_SOA, DNS_TYPE_MX,   DNS_TYPE_A};
static const char *const qnames[] = {
    "multi.test", "mx1.multi.test", "_25._tcp.mx1.multi.test.",
    "alias.test", "out.test",	    "EXAMPLE.org",
    "cloop.test", "a..b",
};

static void
check_str(const struct dns_answer *ans, uint16_t off)
{
	FUZZ_CHECK(off < ans->strings_len);
	FUZZ_CHECK(memchr(ans->strings + off, '\0', ans->strings_len - off) != NULL);
	FUZZ_CHECK(dns_answer_str(ans, off) == ans->strings + off);
}

static void
check_rr(const struct dns_answer *ans, const struct dns_rr *rr)
{
	check_str(ans, rr->name);
	FUZZ_CHECK(rr->ttl <= 0x7fffffffu);
	switch (rr->type) {
	case DNS_TYPE_MX:
	case DNS_TYPE_CNAME:
		check_str(ans, rr->target);
		break;
	case DNS_TYPE_TLSA:
		FUZZ_CHECK((size_t)rr->target + rr->u.tlsa.len <= ans->strings_len);
		break;
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA:
		break;
	default:
		FUZZ_CHECK(!"a record of a type we do not keep");
	}
}

static void
check_answer(const struct dns_answer *ans, const char *qname, uint16_t qtype)
{
	char norm[256];
	const char *canon;
	struct dns_answer *copy;

	FUZZ_CHECK(ans->qtype == qtype);
	FUZZ_CHECK(ans->strings_len <= DNS_ANSWER_STRINGS_MAX);
	FUZZ_CHECK(ans->nrr <= DNS_ANSWER_RR_MAX && ans->nadd <= DNS_ANSWER_ADD_MAX);
	FUZZ_CHECK(ans->cname_hops <= DNS_CNAME_CHAIN_MAX);
	FUZZ_CHECK(!ans->has_soa || ans->neg_ttl <= 0x7fffffffu);
	FUZZ_CHECK(ans->qtype != DNS_TYPE_CNAME || ans->cname_hops == 0);
	FUZZ_CHECK(dns_name_normalize(norm, sizeof(norm), qname) > 0);
	check_str(ans, ans->qname);
	FUZZ_CHECK(strcmp(dns_answer_str(ans, ans->qname), norm) == 0);
	check_str(ans, ans->canon);
	canon = dns_answer_str(ans, ans->canon);
	for (uint16_t i = 0; i < ans->nrr; i++) {
		FUZZ_CHECK(ans->rr[i].type == qtype);
		check_rr(ans, &ans->rr[i]);
		FUZZ_CHECK(strcmp(dns_answer_str(ans, ans->rr[i].name), canon) == 0);
		FUZZ_CHECK(ans->ttl_min <= ans->rr[i].ttl);
	}
	for (uint16_t i = 0; i < ans->nadd; i++) {
		FUZZ_CHECK(ans->add[i].type == DNS_TYPE_A || ans->add[i].type == DNS_TYPE_AAAA);
		check_rr(ans, &ans->add[i]);
	}
	copy = dns_answer_dup(ans);
	FUZZ_CHECK(copy != NULL);
	FUZZ_CHECK(dns_answer_size(copy) == dns_answer_size(ans));
	FUZZ_CHECK(memcmp(copy, ans, dns_answer_size(ans)) == 0);
	if (dns_answer_dangling(ans)) {
		struct dns_answer *out = dns_answer_new();
		int rc;

		FUZZ_CHECK(out != NULL);
		rc = dns_answer_chain(out, ans, copy);
		FUZZ_CHECK(rc == 0 || rc == DNS_ERR_CNAME_CHAIN || rc == DNS_ERR_NOMEM);
		if (rc == 0) {
			FUZZ_CHECK(out->cname_hops == 2 * ans->cname_hops);
			check_str(out, out->qname);
			FUZZ_CHECK(strcmp(dns_answer_str(out, out->qname), norm) == 0);
			FUZZ_CHECK(out->strings_len <= DNS_ANSWER_STRINGS_MAX);
		}
		dns_answer_free(out);
	}
	dns_answer_free(copy);
}

/* The datagram's own question as text (malloc'ed by ldns) and type, or NULL. */
static char *
own_question(const uint8_t *wire, size_t len, uint16_t *qtype)
{
	ldns_pkt *pkt = NULL;
	char *name = NULL;

	if (ldns_wire2pkt(&pkt, wire, len) != LDNS_STATUS_OK)
		return NULL;
	if (ldns_pkt_question(pkt) != NULL && ldns_rr_list_rr_count(ldns_pkt_question(pkt)) > 0) {
		const ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(pkt), 0);
		name = ldns_rdf2str(ldns_rr_owner(q));
		*qtype = (uint16_t)ldns_rr_get_type(q);
	}
	ldns_pkt_free(pkt);
	return name;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_answer *ans;
	const uint8_t *wire;
	char *own = NULL;
	const char *qname;
	uint16_t qtype, id;
	uint8_t sel;
	int rc;

	if (size == 0)
		return 0;
	sel = data[0];
	wire = (const uint8_t *)fuzz_dup(data + 1, size - 1); /* exactly its size, for ASan */
	size--;
	qtype = qtypes[(sel >> 2) & 7];
	qname = qnames[sel >> 5];
	id = dns_packet_id(wire, size) >= 0 ? (uint16_t)dns_packet_id(wire, size) : 0;
	if ((sel & 3) < 2) {
		own = own_question(wire, size, &qtype);
		if (own != NULL)
			qname = own;
	} else if ((sel & 3) == 3) {
		id = 0x2a2a;
	}
	ans = dns_answer_new();
	FUZZ_CHECK(ans != NULL);
	rc = dns_packet_parse(ans, wire, size, qname, qtype, id);
	if (rc == 0) {
		check_answer(ans, qname, qtype);
	} else {
		FUZZ_CHECK(rc < 0 && strcmp(dns_packet_strerror(rc), "unknown error") != 0);
		FUZZ_CHECK(ans->nrr == 0 && ans->nadd == 0 && ans->strings_len == 0);
		FUZZ_CHECK(ans->qtype == qtype);
	}
	dns_answer_free(ans);
	free(own);
	free((void *)wire);
	return 0;
}
