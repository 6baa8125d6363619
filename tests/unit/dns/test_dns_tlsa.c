/*
 * Unit tests of dns_tlsa: the _PORT._tcp name and the classification of a resolver result
 * (dns_tlsa_fill) on answers parsed from ldns-built packets.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dns/dns_packet.h"
#include "dns/dns_tlsa.h"
#include "tests/unit/dns/dns_fixture.h"

#define SOA "test. 600 IN SOA ns.test. h.test. 1 3600 600 86400 45"

/* An answer for _25._tcp.mx.test TLSA, parsed from f (its qname and id are set here). */
static struct dns_answer *
tlsa_answer(struct fx_pkt f)
{
	uint8_t pkt[2048];
	size_t len;
	struct dns_answer *a = dns_answer_new();

	cr_assert_not_null(a);
	f.id = 42;
	f.qname = "_25._tcp.mx.test.";
	f.qtype = DNS_TYPE_TLSA;
	len = fx_answer(pkt, sizeof pkt, &f);
	cr_assert_eq(dns_packet_parse(a, pkt, len, "_25._tcp.mx.test", DNS_TYPE_TLSA, 42), 0);
	return a;
}

/* A zeroed result, as dns_tlsa_lookup makes one. */
static struct dns_tlsa *
result(void)
{
	struct dns_tlsa *t = calloc(1, sizeof *t);

	cr_assert_not_null(t);
	cr_assert_gt(dns_tlsa_name(t->name, sizeof t->name, "mx.test", 25), 0);
	return t;
}

Test(dns_tlsa, the_name_is_underscore_port_underscore_tcp_and_the_host_in_lower_case)
{
	char out[256], longhost[300];

	cr_assert_eq(dns_tlsa_name(out, sizeof out, "MX1.Example.ORG.", 25), 24);
	cr_assert_str_eq(out, "_25._tcp.mx1.example.org");
	cr_assert_gt(dns_tlsa_name(out, sizeof out, "mx.test", 65535), 0);
	cr_assert_str_eq(out, "_65535._tcp.mx.test");
	cr_assert_eq(dns_tlsa_name(out, sizeof out, "mx.test", 0), -EINVAL);
	cr_assert_eq(dns_tlsa_name(out, sizeof out, "", 25), -EINVAL);
	cr_assert_eq(dns_tlsa_name(out, sizeof out, ".", 25), -EINVAL);
	cr_assert_eq(dns_tlsa_name(out, sizeof out, "a..test", 25), -EINVAL);
	memset(longhost, 'a', 250); /* fits alone (with dots), not with "_25._tcp." */
	for (int i = 60; i < 250; i += 61)
		longhost[i] = '.';
	longhost[250] = '\0';
	cr_assert_eq(dns_tlsa_name(out, sizeof out, longhost, 25), -EINVAL);
}

Test(dns_tlsa, records_are_found_with_their_fields_a_copy_of_their_data_and_the_rrset_ttl)
{
	struct dns_answer *a = tlsa_answer((struct fx_pkt){
	    .ad_bit = true,
	    .an = FX_LIST("_25._tcp.mx.test. 300 IN TLSA 3 1 1 "
			  "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
			  "_25._tcp.mx.test. 200 IN TLSA 2 0 0 30820122300d06"),
	});
	struct dns_tlsa *t = result();

	dns_tlsa_fill(t, 0, a, true);
	memset(a->strings, 0, a->strings_len); /* the result must not point into the answer */
	dns_answer_free(a);
	cr_assert_eq(t->status, DNS_TLSA_FOUND);
	cr_assert_str_eq(dns_tlsa_status_name(t->status), "found");
	cr_assert_eq(t->err, 0);
	cr_assert_eq(t->ttl, 200);
	cr_assert(t->from_cache);
	cr_assert(t->secure);
	cr_assert_eq(t->nrr, 2);
	cr_assert_eq(t->rr[0].usage, 3);
	cr_assert_eq(t->rr[0].selector, 1);
	cr_assert_eq(t->rr[0].mtype, 1);
	cr_assert_eq(t->rr[0].len, 32);
	cr_assert_eq(t->rr[0].data[0], 0x01);
	cr_assert_eq(t->rr[0].data[31], 0x20);
	cr_assert_eq(t->rr[1].usage, 2);
	cr_assert_eq(t->rr[1].mtype, 0);
	cr_assert_eq(t->rr[1].len, 7);
	cr_assert_arr_eq(t->rr[1].data, ((uint8_t[]){0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06}), 7);
	dns_tlsa_free(t);
}

Test(dns_tlsa, nodata_and_nxdomain_are_no_tlsa_with_the_negative_ttl_not_an_error)
{
	struct dns_answer *nodata = tlsa_answer((struct fx_pkt){.ns = FX_LIST(SOA)});
	struct dns_answer *nx =
	    tlsa_answer((struct fx_pkt){.rcode = DNS_RCODE_NXDOMAIN, .ns = FX_LIST(SOA)});
	struct dns_answer *bare = tlsa_answer((struct fx_pkt){.rcode = DNS_RCODE_NXDOMAIN});
	struct dns_answer *in[3] = {nodata, nx, bare};
	uint32_t ttl[3] = {45, 45, 0}; /* min(SOA TTL, MINIMUM); 0 without an SOA */

	for (int i = 0; i < 3; i++) {
		struct dns_tlsa *t = result();

		dns_tlsa_fill(t, 0, in[i], false);
		cr_assert_eq(t->status, DNS_TLSA_NONE, "%d", i);
		cr_assert_str_eq(dns_tlsa_status_name(t->status), "none");
		cr_assert_eq(t->err, 0);
		cr_assert_eq(t->nrr, 0);
		cr_assert_eq(t->ttl, ttl[i], "%d", i);
		cr_assert_not(t->secure);
		dns_tlsa_free(t);
		dns_answer_free(in[i]);
	}
}

Test(dns_tlsa, servfail_and_resolver_errors_are_temporary_failures)
{
	struct dns_answer *sf = tlsa_answer((struct fx_pkt){.rcode = DNS_RCODE_SERVFAIL});
	struct dns_tlsa *t = result();

	dns_tlsa_fill(t, 0, sf, false);
	cr_assert_eq(t->status, DNS_TLSA_TEMPFAIL);
	cr_assert_eq(t->err, DNS_TLSA_ERR_RCODE);
	cr_assert_eq(t->rcode, DNS_RCODE_SERVFAIL);
	dns_tlsa_free(t);
	dns_answer_free(sf);
	for (int i = 0; i < 3; i++) {
		static const int errs[3] = {-ETIMEDOUT, DNS_ERR_MALFORMED, DNS_ERR_CNAME_CHAIN};

		t = result();
		dns_tlsa_fill(t, errs[i], NULL, false);
		cr_assert_eq(t->status, DNS_TLSA_TEMPFAIL);
		cr_assert_str_eq(dns_tlsa_status_name(t->status), "tempfail");
		cr_assert_eq(t->err, errs[i]);
		cr_assert_eq(t->nrr, 0);
		dns_tlsa_free(t);
	}
}
