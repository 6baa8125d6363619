/*
 * Unit tests of dns_packet: queries as ldns reads them back, answers built with ldns, and
 * malformed answers as byte arrays. Parsing runs on buffers that end at a PROT_NONE page.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dns/dns_packet.h"
#include "tests/unit/dns/dns_fixture.h"

static struct dns_answer *ans;

static void
setup(void)
{
	ans = dns_answer_new();
	cr_assert_not_null(ans);
}

static void
teardown(void)
{
	dns_answer_free(ans);
}

TestSuite(dns_packet, .init = setup, .fini = teardown);

/* Parses pkt[0..len) from a guarded copy. */
static int
parse(const uint8_t *pkt, size_t len, const char *qname, uint16_t qtype, uint16_t id)
{
	uint8_t *g = fx_guard_copy(pkt, len);
	int rc = dns_packet_parse(ans, g, len, qname, qtype, id);

	fx_guard_free(g, len);
	return rc;
}

static const struct fx_pkt mx_example = {
    .id = 0x1234,
    .qname = "example.test.",
    .qtype = DNS_TYPE_MX,
    .an = FX_LIST("example.test. 300 IN MX 20 mx2.example.test.",
		  "example.test. 200 IN MX 10 MX1.Example.Test."),
    .ad = FX_LIST("mx1.example.test. 60 IN A 192.0.2.1",
		  "mx1.example.test. 60 IN AAAA 2001:db8::1",
		  "mx2.example.test. 60 IN TXT \"ignored\""),
};

Test(dns_packet, query_has_our_id_rd_one_question_and_an_edns0_opt_of_1232_bytes)
{
	uint8_t buf[512];
	ldns_pkt *p = NULL;
	int n = dns_packet_query(buf, sizeof buf, "Example.TEST.", DNS_TYPE_MX, 0xbeef);

	cr_assert_gt(n, 0);
	cr_assert_eq(ldns_wire2pkt(&p, buf, (size_t)n), LDNS_STATUS_OK);
	cr_assert_eq(ldns_pkt_id(p), 0xbeef);
	cr_assert(ldns_pkt_rd(p));
	cr_assert_not(ldns_pkt_qr(p));
	cr_assert_eq(ldns_pkt_qdcount(p), 1);
	cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(p), 0)), LDNS_RR_TYPE_MX);
	cr_assert(ldns_pkt_edns(p));
	cr_assert_eq(ldns_pkt_edns_udp_size(p), 1232);
	ldns_pkt_free(p);
}

Test(dns_packet, query_refuses_bad_names_and_small_buffers)
{
	uint8_t buf[512];
	char long_label[80];

	memset(long_label, 'a', 70);
	strcpy(long_label + 70, ".test");
	cr_assert_eq(dns_packet_query(buf, sizeof buf, "a..test", DNS_TYPE_A, 1), -EINVAL);
	cr_assert_eq(dns_packet_query(buf, sizeof buf, "", DNS_TYPE_A, 1), -EINVAL);
	cr_assert_eq(dns_packet_query(buf, sizeof buf, "a b.test", DNS_TYPE_A, 1), -EINVAL);
	cr_assert_eq(dns_packet_query(buf, sizeof buf, long_label, DNS_TYPE_A, 1), -EINVAL);
	cr_assert_eq(dns_packet_query(buf, 20, "example.test", DNS_TYPE_A, 1), -ENOSPC);
}

Test(dns_packet, mx_answer_keeps_preferences_ttls_and_additional_addresses)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &mx_example);

	cr_assert_eq(parse(pkt, len, "example.test", DNS_TYPE_MX, 0x1234), 0);
	cr_assert_eq(ans->rcode, DNS_RCODE_NOERROR);
	cr_assert_not(ans->tc);
	cr_assert_eq(ans->nrr, 2);
	cr_assert_eq(ans->rr[0].pref, 20);
	cr_assert_str_eq(dns_answer_str(ans, ans->rr[0].target), "mx2.example.test");
	cr_assert_eq(ans->rr[0].ttl, 300);
	cr_assert_eq(ans->rr[1].pref, 10);
	cr_assert_str_eq(dns_answer_str(ans, ans->rr[1].target), "mx1.example.test");
	cr_assert_eq(ans->ttl_min, 200);
	cr_assert_str_eq(dns_answer_str(ans, ans->qname), "example.test");
	cr_assert_str_eq(dns_answer_str(ans, ans->canon), "example.test");
	cr_assert_eq(ans->nadd, 2);
	cr_assert_eq(ans->add[0].type, DNS_TYPE_A);
	cr_assert_arr_eq(ans->add[0].u.a, ((uint8_t[]){192, 0, 2, 1}), 4);
	cr_assert_eq(ans->add[1].type, DNS_TYPE_AAAA);
	cr_assert_eq(ans->add[1].u.aaaa[0], 0x20);
	cr_assert_eq(ans->add[1].u.aaaa[15], 1);
	cr_assert_str_eq(dns_answer_str(ans, ans->add[1].name), "mx1.example.test");
}

Test(dns_packet, answer_cut_at_every_byte_boundary_is_rejected_without_over_reading)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &mx_example);

	for (size_t cut = 0; cut < len; cut++) {
		int rc = parse(pkt, cut, "example.test", DNS_TYPE_MX, 0x1234);

		cr_assert_lt(rc, 0, "cut at %zu parsed", cut);
		cr_assert(rc == DNS_ERR_TRUNCATED || rc == DNS_ERR_MALFORMED, "cut %zu: %d", cut, rc);
		cr_assert_eq(ans->nrr, 0);
	}
}

Test(dns_packet, packet_shorter_than_a_header_is_truncated)
{
	static const uint8_t pkt[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0};

	cr_assert_eq(parse(pkt, sizeof pkt, "example.test", DNS_TYPE_MX, 0x1234),
		     DNS_ERR_TRUNCATED);
	cr_assert_eq(dns_packet_id(pkt, sizeof pkt), -1);
}

Test(dns_packet, answer_with_another_id_is_rejected)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &mx_example);

	cr_assert_eq(dns_packet_id(pkt, len), 0x1234);
	cr_assert_eq(parse(pkt, len, "example.test", DNS_TYPE_MX, 0x1235), DNS_ERR_ID);
}

Test(dns_packet, answer_to_another_name_type_or_question_count_is_a_wrong_question)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &mx_example);

	cr_assert_eq(parse(pkt, len, "other.test", DNS_TYPE_MX, 0x1234), DNS_ERR_QUESTION);
	cr_assert_eq(parse(pkt, len, "example.test", DNS_TYPE_A, 0x1234), DNS_ERR_QUESTION);
	cr_assert_eq(parse(pkt, len, "sub.example.test", DNS_TYPE_MX, 0x1234), DNS_ERR_QUESTION);
	/* qdcount 0: the question and everything after it read as absent sections */
	pkt[4] = 0;
	pkt[5] = 0;
	cr_assert_lt(parse(pkt, len, "example.test", DNS_TYPE_MX, 0x1234), 0);
}

Test(dns_packet, two_questions_are_a_wrong_question)
{
	/* Header qd=2 with the same question twice, nothing else. */
	static const uint8_t pkt[] = {0x12, 0x34, 0x81, 0x80, 0, 2, 0, 0, 0, 0, 0, 0,
				      1, 'a', 0, 0, 15, 0, 1, 1, 'a', 0, 0, 15, 0, 1};

	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_MX, 0x1234), DNS_ERR_QUESTION);
}

Test(dns_packet, question_name_is_compared_without_regard_to_case)
{
	uint8_t pkt[1024];
	struct fx_pkt f = mx_example;
	size_t len;

	f.qname = "ExAmPlE.TeSt.";
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "EXAMPLE.test.", DNS_TYPE_MX, 0x1234), 0);
	cr_assert_eq(ans->nrr, 2);
}

Test(dns_packet, packet_without_qr_is_not_a_response)
{
	uint8_t pkt[1024];
	struct fx_pkt f = mx_example;
	size_t len;

	f.qr_clear = true;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "example.test", DNS_TYPE_MX, 0x1234), DNS_ERR_NOT_RESPONSE);
}

Test(dns_packet, compression_pointer_loop_is_malformed)
{
	/* The answer's owner name at offset 19 is a pointer to offset 19. */
	static const uint8_t self[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
				       1, 'a', 0, 0, 1, 0, 1,
				       0xc0, 19, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};
	/* Two pointers to each other: offset 19 -> 21 -> 19. */
	static const uint8_t pair[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
				       1, 'a', 0, 0, 1, 0, 1,
				       0xc0, 21, 0xc0, 19, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4};
	/* The question's own name is a pointer to itself. */
	static const uint8_t question[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0,
					   0xc0, 12, 0, 1, 0, 1};

	cr_assert_eq(parse(self, sizeof self, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
	cr_assert_eq(parse(pair, sizeof pair, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
	cr_assert_eq(parse(question, sizeof question, "a", DNS_TYPE_A, 0x1234),
		     DNS_ERR_MALFORMED);
}

Test(dns_packet, compression_pointer_beyond_the_packet_is_malformed)
{
	static const uint8_t pkt[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
				      1, 'a', 0, 0, 1, 0, 1,
				      0xc0, 200, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};

	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
}

Test(dns_packet, counts_larger_than_the_packet_are_malformed)
{
	/* One answer present, five announced (and then 65535). */
	uint8_t pkt[] = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0,
			 1, 'a', 0, 0, 1, 0, 1,
			 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1};

	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
	pkt[6] = 0xff;
	pkt[7] = 0xff;
	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
	/* rdlength larger than what is left */
	pkt[6] = 0;
	pkt[7] = 1;
	pkt[30] = 40;
	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_A, 0x1234), DNS_ERR_MALFORMED);
	/* and the fixed packet parses, so the cases above failed for the reason given */
	pkt[30] = 4;
	cr_assert_eq(parse(pkt, sizeof pkt, "a", DNS_TYPE_A, 0x1234), 0);
	cr_assert_eq(ans->nrr, 1);
}

Test(dns_packet, cname_chain_is_followed_to_the_records_of_the_asked_type)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 7,
	    .qname = "alias.test.",
	    .qtype = DNS_TYPE_MX,
	    .an = FX_LIST("alias.test. 100 IN CNAME mid.test.", "mid.test. 50 IN CNAME real.test.",
			  "real.test. 300 IN MX 5 mx.real.test.",
			  "other.test. 300 IN MX 5 mx.other.test."),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "alias.test", DNS_TYPE_MX, 7), 0);
	cr_assert_eq(ans->cname_hops, 2);
	cr_assert_str_eq(dns_answer_str(ans, ans->canon), "real.test");
	cr_assert_eq(ans->nrr, 1);
	cr_assert_str_eq(dns_answer_str(ans, ans->rr[0].target), "mx.real.test");
	cr_assert_eq(ans->ttl_min, 50, "the chain's smallest TTL bounds the answer's");
}

Test(dns_packet, cname_loop_is_rejected)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 7,
	    .qname = "a.test.",
	    .qtype = DNS_TYPE_A,
	    .an = FX_LIST("a.test. 100 IN CNAME b.test.", "b.test. 100 IN CNAME a.test."),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "a.test", DNS_TYPE_A, 7), DNS_ERR_CNAME_CHAIN);
	cr_assert_eq(ans->nrr, 0);
}

Test(dns_packet, cname_chain_longer_than_the_bound_is_rejected_and_one_at_it_is_not)
{
	char rr[DNS_CNAME_CHAIN_MAX + 1][64];
	const char *list[DNS_CNAME_CHAIN_MAX + 3];
	uint8_t pkt[2048];
	struct fx_pkt f = {.id = 9, .qname = "c0.test.", .qtype = DNS_TYPE_A, .an = list};
	size_t len;

	for (int i = 0; i <= DNS_CNAME_CHAIN_MAX; i++) {
		snprintf(rr[i], sizeof rr[i], "c%d.test. 60 IN CNAME c%d.test.", i, i + 1);
		list[i] = rr[i];
	}
	/* DNS_CNAME_CHAIN_MAX links, then the address: accepted */
	list[DNS_CNAME_CHAIN_MAX] = "c8.test. 60 IN A 192.0.2.8";
	list[DNS_CNAME_CHAIN_MAX + 1] = NULL;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "c0.test", DNS_TYPE_A, 9), 0);
	cr_assert_eq(ans->cname_hops, DNS_CNAME_CHAIN_MAX);
	cr_assert_eq(ans->nrr, 1);
	/* one link more: refused */
	list[DNS_CNAME_CHAIN_MAX] = rr[DNS_CNAME_CHAIN_MAX];
	list[DNS_CNAME_CHAIN_MAX + 1] = "c9.test. 60 IN A 192.0.2.9";
	list[DNS_CNAME_CHAIN_MAX + 2] = NULL;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "c0.test", DNS_TYPE_A, 9), DNS_ERR_CNAME_CHAIN);
}

Test(dns_packet, truncated_answer_reports_tc)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {.id = 3, .qname = "big.test.", .qtype = DNS_TYPE_MX, .tc = true};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "big.test", DNS_TYPE_MX, 3), 0);
	cr_assert(ans->tc);
	cr_assert_eq(ans->nrr, 0);
}

Test(dns_packet, nxdomain_takes_its_negative_ttl_from_the_soa)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 4,
	    .qname = "nope.test.",
	    .qtype = DNS_TYPE_MX,
	    .rcode = DNS_RCODE_NXDOMAIN,
	    .ns = FX_LIST("test. 900 IN SOA ns.test. host.test. 1 3600 600 86400 120"),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "nope.test", DNS_TYPE_MX, 4), 0);
	cr_assert_eq(ans->rcode, DNS_RCODE_NXDOMAIN);
	cr_assert(ans->has_soa);
	cr_assert_eq(ans->neg_ttl, 120, "MINIMUM is the smaller");
	f.ns = FX_LIST("test. 30 IN SOA ns.test. host.test. 1 3600 600 86400 120");
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "nope.test", DNS_TYPE_MX, 4), 0);
	cr_assert_eq(ans->neg_ttl, 30, "the SOA's own TTL is the smaller");
}

Test(dns_packet, zero_ttl_is_kept_as_zero_and_a_ttl_with_the_top_bit_set_reads_as_zero)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 5,
	    .qname = "z.test.",
	    .qtype = DNS_TYPE_A,
	    .an = FX_LIST("z.test. 0 IN A 192.0.2.1", "z.test. 2147483648 IN A 192.0.2.2"),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "z.test", DNS_TYPE_A, 5), 0);
	cr_assert_eq(ans->nrr, 2);
	cr_assert_eq(ans->rr[0].ttl, 0);
	cr_assert_eq(ans->rr[1].ttl, 0, "RFC 2181 section 8");
	cr_assert_eq(ans->ttl_min, 0);
}

Test(dns_packet, records_beyond_the_bound_are_dropped_and_counted)
{
	char rr[DNS_ANSWER_RR_MAX + 5][64];
	const char *list[DNS_ANSWER_RR_MAX + 6];
	uint8_t pkt[4096];
	struct fx_pkt f = {.id = 6, .qname = "many.test.", .qtype = DNS_TYPE_A, .an = list};
	size_t len;

	for (int i = 0; i < DNS_ANSWER_RR_MAX + 5; i++) {
		snprintf(rr[i], sizeof rr[i], "many.test. 60 IN A 10.0.%d.%d", i / 200, i % 200);
		list[i] = rr[i];
	}
	list[DNS_ANSWER_RR_MAX + 5] = NULL;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "many.test", DNS_TYPE_A, 6), 0);
	cr_assert_eq(ans->nrr, DNS_ANSWER_RR_MAX);
	cr_assert_eq(ans->dropped, 5);
}

Test(dns_packet, null_mx_is_preference_0_and_the_root)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 8,
	    .qname = "nullmx.test.",
	    .qtype = DNS_TYPE_MX,
	    .an = FX_LIST("nullmx.test. 300 IN MX 0 ."),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);

	cr_assert_eq(parse(pkt, len, "nullmx.test", DNS_TYPE_MX, 8), 0);
	cr_assert_eq(ans->nrr, 1);
	cr_assert_eq(ans->rr[0].pref, 0);
	cr_assert_str_eq(dns_answer_str(ans, ans->rr[0].target), ".");
}

Test(dns_packet, tlsa_records_keep_usage_selector_type_and_data)
{
	uint8_t pkt[1024];
	struct fx_pkt f = {
	    .id = 10,
	    .qname = "_25._tcp.mx.test.",
	    .qtype = DNS_TYPE_TLSA,
	    .an = FX_LIST("_25._tcp.mx.test. 300 IN TLSA 3 1 1 "
			  "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
	};
	size_t len = fx_answer(pkt, sizeof pkt, &f);
	const uint8_t *data;

	cr_assert_eq(parse(pkt, len, "_25._tcp.mx.test", DNS_TYPE_TLSA, 10), 0);
	cr_assert_eq(ans->nrr, 1);
	cr_assert_eq(ans->rr[0].u.tlsa.usage, 3);
	cr_assert_eq(ans->rr[0].u.tlsa.selector, 1);
	cr_assert_eq(ans->rr[0].u.tlsa.mtype, 1);
	cr_assert_eq(ans->rr[0].u.tlsa.len, 32);
	data = (const uint8_t *)ans->strings + ans->rr[0].target;
	cr_assert_eq(data[0], 1);
	cr_assert_eq(data[31], 0x20);
}

static const struct fx_pkt tlsa_two = {
    .id = 11,
    .qname = "_25._tcp.mx.test.",
    .qtype = DNS_TYPE_TLSA,
    .ad_bit = true,
    .an = FX_LIST("_25._tcp.mx.test. 300 IN TLSA 3 1 1 "
		  "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
		  "_25._tcp.mx.test. 120 IN TLSA 2 0 2 "
		  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
		  "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),
};

Test(dns_packet, two_tlsa_records_keep_their_own_data_and_the_smaller_ttl_and_the_ad_bit)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &tlsa_two);
	const uint8_t *data;

	cr_assert_eq(parse(pkt, len, "_25._tcp.MX.test.", DNS_TYPE_TLSA, 11), 0);
	cr_assert_eq(ans->nrr, 2);
	cr_assert(ans->ad);
	cr_assert_eq(ans->ttl_min, 120);
	cr_assert_eq(ans->rr[1].u.tlsa.usage, 2);
	cr_assert_eq(ans->rr[1].u.tlsa.selector, 0);
	cr_assert_eq(ans->rr[1].u.tlsa.mtype, 2);
	cr_assert_eq(ans->rr[1].u.tlsa.len, 64);
	data = (const uint8_t *)ans->strings + ans->rr[1].target;
	cr_assert_eq(data[0], 0xa0);
	cr_assert_eq(data[63], 0xdf);
	data = (const uint8_t *)ans->strings + ans->rr[0].target;
	cr_assert_eq(data[31], 0x20);
}

Test(dns_packet, tlsa_answer_cut_at_every_byte_boundary_is_rejected_without_over_reading)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &tlsa_two);

	for (size_t cut = 0; cut < len; cut++) {
		int rc = parse(pkt, cut, "_25._tcp.mx.test", DNS_TYPE_TLSA, 11);

		cr_assert(rc == DNS_ERR_TRUNCATED || rc == DNS_ERR_MALFORMED, "cut %zu: %d", cut,
			  rc);
		cr_assert_eq(ans->nrr, 0);
	}
}

Test(dns_packet, an_answer_without_the_ad_bit_is_not_secure)
{
	uint8_t pkt[1024];
	struct fx_pkt f = tlsa_two;
	size_t len;

	f.ad_bit = false;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(parse(pkt, len, "_25._tcp.mx.test", DNS_TYPE_TLSA, 11), 0);
	cr_assert_not(ans->ad);
	cr_assert_eq(ans->nrr, 2);
}

Test(dns_packet, query_sets_the_ad_bit_to_ask_for_it_back)
{
	uint8_t buf[512];
	ldns_pkt *p = NULL;
	int n = dns_packet_query(buf, sizeof buf, "_25._tcp.mx.test", DNS_TYPE_TLSA, 7);

	cr_assert_gt(n, 0);
	cr_assert_eq(ldns_wire2pkt(&p, buf, (size_t)n), LDNS_STATUS_OK);
	cr_assert(ldns_pkt_ad(p));
	cr_assert_not(ldns_pkt_cd(p));
	ldns_pkt_free(p);
}

Test(dns_packet, a_copy_of_an_answer_is_exactly_its_used_size_and_equal)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, &mx_example);
	struct dns_answer *copy;

	cr_assert_eq(parse(pkt, len, "example.test", DNS_TYPE_MX, 0x1234), 0);
	cr_assert_lt(dns_answer_size(ans), sizeof(*ans) + DNS_ANSWER_STRINGS_MAX);
	copy = dns_answer_dup(ans);
	cr_assert_not_null(copy);
	cr_assert_str_eq(dns_answer_str(copy, copy->rr[1].target), "mx1.example.test");
	cr_assert_eq(memcmp(copy, ans, dns_answer_size(ans)), 0);
	dns_answer_free(copy);
}

Test(dns_packet, names_are_normalized_to_lower_case_without_the_final_dot)
{
	char out[256];

	cr_assert_eq(dns_name_normalize(out, sizeof out, "MX.Example.ORG."), 14);
	cr_assert_str_eq(out, "mx.example.org");
	cr_assert_eq(dns_name_normalize(out, sizeof out, "."), -EINVAL);
	cr_assert_eq(dns_name_normalize(out, sizeof out, ".a"), -EINVAL);
	cr_assert_str_eq(dns_packet_strerror(DNS_ERR_ID), "wrong query id");
}

/* ---- CNAME chase: dangling answers and joining the links ---------------------------------- */

/* A new answer parsed from f (asked for f->qname without its dot, id f->id). */
static struct dns_answer *
parsed(const struct fx_pkt *f)
{
	uint8_t pkt[1024];
	size_t len = fx_answer(pkt, sizeof pkt, f);
	struct dns_answer *a = dns_answer_new();
	char q[256];

	snprintf(q, sizeof q, "%s", f->qname);
	q[strlen(q) - 1] = '\0';
	cr_assert_eq(dns_packet_parse(a, pkt, len, q, f->qtype, f->id), 0);
	return a;
}

Test(dns_packet, a_cname_whose_target_is_not_in_the_answer_is_dangling)
{
	struct fx_pkt cname_only = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_MX,
				    .an = FX_LIST("alias.test. 100 IN CNAME real.other.")};
	struct fx_pkt with_soa = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_MX,
				  .an = FX_LIST("alias.test. 100 IN CNAME real.test."),
				  .ns = FX_LIST("test. 60 IN SOA ns.test. h.test. 1 2 3 4 30")};
	struct fx_pkt nxdomain = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_MX,
				  .rcode = DNS_RCODE_NXDOMAIN,
				  .an = FX_LIST("alias.test. 100 IN CNAME gone.other.")};
	struct fx_pkt complete = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_MX,
				  .an = FX_LIST("alias.test. 100 IN CNAME real.test.",
						"real.test. 100 IN MX 1 mx.test.")};
	struct dns_answer *a;

	a = parsed(&cname_only);
	cr_assert(dns_answer_dangling(a));
	cr_assert_str_eq(dns_answer_str(a, a->canon), "real.other");
	dns_answer_free(a);
	a = parsed(&with_soa);
	cr_assert_not(dns_answer_dangling(a), "an SOA says the target has no MX (RFC 2308 2.2)");
	dns_answer_free(a);
	a = parsed(&nxdomain);
	cr_assert_not(dns_answer_dangling(a), "NXDOMAIN is about the chain's end (RFC 6604)");
	dns_answer_free(a);
	a = parsed(&complete);
	cr_assert_not(dns_answer_dangling(a));
	dns_answer_free(a);
	a = parsed(&(struct fx_pkt){.id = 1, .qname = "plain.test.", .qtype = DNS_TYPE_MX});
	cr_assert_not(dns_answer_dangling(a), "NODATA without a CNAME");
	dns_answer_free(a);
}

Test(dns_packet, joining_a_chase_keeps_the_first_question_and_the_last_records)
{
	struct fx_pkt head_f = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_MX,
				.an = FX_LIST("alias.test. 100 IN CNAME mid.other.")};
	struct fx_pkt tail_f = {.id = 2, .qname = "mid.other.", .qtype = DNS_TYPE_MX,
				.an = FX_LIST("mid.other. 40 IN CNAME real.other.",
					      "real.other. 300 IN MX 7 mx.other."),
				.ad = FX_LIST("mx.other. 300 IN A 192.0.2.8")};
	struct dns_answer *head = parsed(&head_f), *tail = parsed(&tail_f);

	cr_assert_eq(dns_answer_chain(ans, head, tail), 0);
	cr_assert_not(ans->ad);
	cr_assert_str_eq(dns_answer_str(ans, ans->qname), "alias.test");
	cr_assert_str_eq(dns_answer_str(ans, ans->canon), "real.other");
	cr_assert_eq(ans->cname_hops, 2);
	cr_assert_eq(ans->nrr, 1);
	cr_assert_eq(ans->rr[0].pref, 7);
	cr_assert_str_eq(dns_answer_str(ans, ans->rr[0].target), "mx.other");
	cr_assert_eq(ans->nadd, 1);
	cr_assert_eq(ans->ttl_min, 40, "the smallest TTL of the whole chain");
	cr_assert_not(dns_answer_dangling(ans));
	dns_answer_free(head);
	dns_answer_free(tail);
}

Test(dns_packet, joining_keeps_the_head_ttl_when_it_is_the_smallest_and_nodata_at_the_end)
{
	struct fx_pkt head_f = {.id = 1, .qname = "alias.test.", .qtype = DNS_TYPE_A,
				.an = FX_LIST("alias.test. 5 IN CNAME empty.other.")};
	struct fx_pkt tail_f = {.id = 2, .qname = "empty.other.", .qtype = DNS_TYPE_A,
				.ns = FX_LIST("other. 60 IN SOA ns.other. h.other. 1 2 3 4 30")};
	struct dns_answer *head = parsed(&head_f), *tail = parsed(&tail_f);

	cr_assert_eq(dns_answer_chain(ans, head, tail), 0);
	cr_assert_eq(ans->nrr, 0);
	cr_assert(ans->has_soa);
	cr_assert_eq(ans->neg_ttl, 30);
	cr_assert_eq(ans->ttl_min, 5);
	cr_assert_eq(ans->cname_hops, 1);
	cr_assert_not(dns_answer_dangling(ans));
	dns_answer_free(head);
	dns_answer_free(tail);
}

Test(dns_packet, joining_links_longer_than_the_chain_bound_is_refused)
{
	char rr[DNS_CNAME_CHAIN_MAX][64];
	const char *list[DNS_CNAME_CHAIN_MAX + 1];
	struct fx_pkt head_f = {.id = 1, .qname = "c0.test.", .qtype = DNS_TYPE_A};
	struct fx_pkt tail_f = {.id = 2, .qname = "c5.test.", .qtype = DNS_TYPE_A};
	struct dns_answer *head, *tail;

	/* head: c0 -> c1 -> ... -> c5 (5 links); tail: c5 -> ... -> c9, then an address (4) */
	for (int i = 0; i < 5; i++) {
		snprintf(rr[i], sizeof rr[i], "c%d.test. 60 IN CNAME c%d.test.", i, i + 1);
		list[i] = rr[i];
	}
	list[5] = NULL;
	head_f.an = list;
	head = parsed(&head_f);
	for (int i = 5; i < 9; i++) {
		snprintf(rr[i - 5], sizeof rr[i - 5], "c%d.test. 60 IN CNAME c%d.test.", i, i + 1);
		list[i - 5] = rr[i - 5];
	}
	list[4] = "c9.test. 60 IN A 192.0.2.9";
	list[5] = NULL;
	tail_f.an = list;
	tail = parsed(&tail_f);
	cr_assert_eq(head->cname_hops + tail->cname_hops, 9);
	cr_assert_eq(dns_answer_chain(ans, head, tail), DNS_ERR_CNAME_CHAIN);
	dns_answer_free(head);
	dns_answer_free(tail);
}

Test(dns_packet, a_joined_chain_is_secure_only_when_every_link_is)
{
	struct fx_pkt head_f = {.id = 1, .qname = "_25._tcp.mx.test.", .qtype = DNS_TYPE_TLSA,
				.ad_bit = true,
				.an = FX_LIST("_25._tcp.mx.test. 100 IN CNAME tlsa.other.")};
	struct fx_pkt tail_f = {.id = 2, .qname = "tlsa.other.", .qtype = DNS_TYPE_TLSA,
				.ad_bit = true,
				.an = FX_LIST("tlsa.other. 300 IN TLSA 3 1 1 "
					      "0102030405060708090a0b0c0d0e0f10"
					      "1112131415161718191a1b1c1d1e1f20")};
	struct dns_answer *head = parsed(&head_f), *tail = parsed(&tail_f);

	cr_assert_eq(dns_answer_chain(ans, head, tail), 0);
	cr_assert(ans->ad);
	cr_assert_eq(ans->nrr, 1);
	cr_assert_eq(ans->rr[0].u.tlsa.len, 32);
	head->ad = false;
	cr_assert_eq(dns_answer_chain(ans, head, tail), 0);
	cr_assert_not(ans->ad, "an insecure link makes the chain insecure");
	dns_answer_free(head);
	dns_answer_free(tail);
}
