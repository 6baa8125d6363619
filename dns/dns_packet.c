/*
 * dns_packet — see dns_packet.h. ldns does the wire format; this file decides what to trust.
 */
#include "dns/dns_packet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "queue/assert.h"

_Static_assert(DNS_ANSWER_STRINGS_MAX <= UINT16_MAX, "arena offsets are 16-bit");
_Static_assert(DNS_CNAME_CHAIN_MAX < 256, "cname_hops is 8-bit");

#define TTL_MAX_SANE 0x7fffffffu /* RFC 2181 section 8: a TTL with the top bit set means 0 */

struct dns_answer *
dns_answer_new(void)
{
	struct dns_answer *ans = calloc(1, sizeof(*ans) + DNS_ANSWER_STRINGS_MAX);

	return ans;
}

void
dns_answer_free(struct dns_answer *ans)
{
	free(ans);
}

size_t
dns_answer_size(const struct dns_answer *ans)
{
	return sizeof(*ans) + ans->strings_len;
}

struct dns_answer *
dns_answer_dup(const struct dns_answer *ans)
{
	size_t n = dns_answer_size(ans);
	struct dns_answer *copy = malloc(n);

	if (copy != NULL)
		memcpy(copy, ans, n);
	return copy;
}

const char *
dns_answer_str(const struct dns_answer *ans, uint16_t off)
{
	ASSERT(off < ans->strings_len);
	return ans->strings + off;
}

static void answer_reset(struct dns_answer *ans, uint16_t qtype);

/* Appends n bytes (and a NUL when text) to the arena; returns the offset or -1 when full. */
static int
arena_put(struct dns_answer *ans, const void *p, size_t n, bool text)
{
	size_t need = n + (text ? 1 : 0);
	int off = ans->strings_len;

	if (need > (size_t)DNS_ANSWER_STRINGS_MAX - ans->strings_len)
		return -1;
	memcpy(ans->strings + off, p, n);
	if (text)
		ans->strings[off + n] = '\0';
	ans->strings_len = (uint16_t)(off + need);
	return off;
}

bool
dns_answer_dangling(const struct dns_answer *ans)
{
	return ans->rcode == DNS_RCODE_NOERROR && ans->nrr == 0 && ans->cname_hops > 0 &&
	       !ans->has_soa && ans->qtype != DNS_TYPE_CNAME;
}

int
dns_answer_chain(struct dns_answer *out, const struct dns_answer *head,
		 const struct dns_answer *tail)
{
	const char *qname = dns_answer_str(head, head->qname);
	unsigned hops = (unsigned)head->cname_hops + tail->cname_hops;
	uint32_t ttl = head->ttl_min;
	int off;

	ASSERT(out != head && out != tail && dns_answer_dangling(head));
	ASSERT(tail->qtype == head->qtype);
	if (hops > DNS_CNAME_CHAIN_MAX)
		return DNS_ERR_CNAME_CHAIN;
	if ((tail->nrr > 0 || tail->cname_hops > 0) && tail->ttl_min < ttl)
		ttl = tail->ttl_min;
	memcpy(out, tail, dns_answer_size(tail));
	off = arena_put(out, qname, strlen(qname), true);
	if (off < 0) {
		answer_reset(out, head->qtype);
		return DNS_ERR_NOMEM;
	}
	out->qname = (uint16_t)off;
	out->cname_hops = (uint8_t)hops;
	out->ttl_min = ttl;
	out->aa = head->aa && tail->aa;
	out->ad = head->ad && tail->ad; /* a chain is secure only when every link is */
	out->dropped += head->dropped;
	return 0;
}

const char *
dns_packet_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case DNS_ERR_TRUNCATED:
		return "truncated packet";
	case DNS_ERR_ID:
		return "wrong query id";
	case DNS_ERR_NOT_RESPONSE:
		return "not a response";
	case DNS_ERR_QUESTION:
		return "wrong question";
	case DNS_ERR_MALFORMED:
		return "malformed packet";
	case DNS_ERR_CNAME_CHAIN:
		return "CNAME loop or chain too long";
	case DNS_ERR_NOMEM:
		return "out of memory";
	default:
		return "unknown error";
	}
}

int
dns_name_normalize(char *out, size_t cap, const char *name)
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n + 1 > cap)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (c == '.' && (i == 0 || name[i - 1] == '.'))
			return -EINVAL; /* an empty label */
		if ((unsigned char)c <= ' ' || c == 0x7f)
			return -EINVAL;
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return (int)n;
}

/*
 * Writes a wire-format (uncompressed, as ldns keeps it) domain name as lower-case presentation
 * text without the final dot; the root is ".". Returns the text length, or -1 if malformed.
 */
static int
dname_text(const ldns_rdf *rdf, char *out, size_t cap)
{
	const uint8_t *p = ldns_rdf_data(rdf);
	size_t len = ldns_rdf_size(rdf), i = 0, o = 0;

	ASSERT(cap >= DNS_NAME_TEXT_MAX);
	if (ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME || len == 0 || len > DNS_NAME_WIRE_MAX)
		return -1;
	while (i < len && p[i] != 0) {
		size_t lab = p[i++];

		if (lab > 63 || i + lab >= len)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t k = 0; k < lab; k++, i++) {
			unsigned char c = p[i];

			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
			if (c == '.' || c == '\\') {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else if (c <= ' ' || c >= 0x7f) {
				o += (size_t)snprintf(out + o, cap - o, "\\%03u", c);
			} else {
				out[o++] = (char)c;
			}
		}
	}
	if (o == 0)
		out[o++] = '.';
	out[o] = '\0';
	ASSERT(o < cap);
	return (int)o;
}

int
dns_packet_query(uint8_t *buf, size_t cap, const char *name, uint16_t type, uint16_t id)
{
	char norm[256];
	ldns_rdf *dname;
	ldns_pkt *pkt;
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	ldns_status st;

	if (dns_name_normalize(norm, sizeof norm, name) < 0)
		return -EINVAL;
	if (ldns_str2rdf_dname(&dname, norm) != LDNS_STATUS_OK)
		return -EINVAL;
	pkt = ldns_pkt_query_new(dname, (ldns_rr_type)type, LDNS_RR_CLASS_IN, LDNS_RD);
	if (pkt == NULL) {
		ldns_rdf_deep_free(dname);
		return -ENOMEM;
	}
	ldns_pkt_set_id(pkt, id);
	ldns_pkt_set_ad(pkt, true); /* RFC 6840 5.7: we want the AD bit back (DANE needs it) */
	ldns_pkt_set_edns_udp_size(pkt, DNS_EDNS_UDP_SIZE);
	st = ldns_pkt2wire(&wire, pkt, &wire_len);
	ldns_pkt_free(pkt);
	if (st != LDNS_STATUS_OK)
		return st == LDNS_STATUS_MEM_ERR ? -ENOMEM : -EINVAL;
	if (wire_len > cap) {
		free(wire);
		return -ENOSPC;
	}
	memcpy(buf, wire, wire_len);
	free(wire);
	return (int)wire_len;
}

int
dns_packet_id(const uint8_t *wire, size_t len)
{
	if (len < DNS_HEADER_SIZE)
		return -1;
	return (int)((unsigned)wire[0] << 8 | wire[1]);
}

static uint32_t
rr_ttl(const ldns_rr *rr)
{
	uint32_t ttl = ldns_rr_ttl(rr);

	return ttl > TTL_MAX_SANE ? 0 : ttl;
}

/* Fills out's rdata from rr; returns false if the rdata is not what the type needs. */
static bool
rr_rdata(struct dns_answer *ans, struct dns_rr *out, const ldns_rr *rr)
{
	char text[DNS_NAME_TEXT_MAX];
	const ldns_rdf *f0 = ldns_rr_rdf(rr, 0);
	int off;

	switch (out->type) {
	case DNS_TYPE_A:
		if (f0 == NULL || ldns_rr_rd_count(rr) != 1 || ldns_rdf_size(f0) != 4)
			return false;
		memcpy(out->u.a, ldns_rdf_data(f0), 4);
		return true;
	case DNS_TYPE_AAAA:
		if (f0 == NULL || ldns_rr_rd_count(rr) != 1 || ldns_rdf_size(f0) != 16)
			return false;
		memcpy(out->u.aaaa, ldns_rdf_data(f0), 16);
		return true;
	case DNS_TYPE_MX:
		if (ldns_rr_rd_count(rr) != 2 || ldns_rdf_size(f0) != 2 ||
		    dname_text(ldns_rr_rdf(rr, 1), text, sizeof text) < 0)
			return false;
		out->pref = ldns_rdf2native_int16(f0);
		break;
	case DNS_TYPE_CNAME:
		if (ldns_rr_rd_count(rr) != 1 || dname_text(f0, text, sizeof text) < 0)
			return false;
		break;
	case DNS_TYPE_TLSA:
		if (ldns_rr_rd_count(rr) != 4 || ldns_rdf_size(ldns_rr_rdf(rr, 3)) > UINT16_MAX)
			return false;
		out->u.tlsa.usage = ldns_rdf2native_int8(f0);
		out->u.tlsa.selector = ldns_rdf2native_int8(ldns_rr_rdf(rr, 1));
		out->u.tlsa.mtype = ldns_rdf2native_int8(ldns_rr_rdf(rr, 2));
		out->u.tlsa.len = (uint16_t)ldns_rdf_size(ldns_rr_rdf(rr, 3));
		off = arena_put(ans, ldns_rdf_data(ldns_rr_rdf(rr, 3)), out->u.tlsa.len, false);
		if (off < 0)
			return false;
		out->target = (uint16_t)off;
		return true;
	default:
		return false;
	}
	off = arena_put(ans, text, strlen(text), true);
	if (off < 0)
		return false;
	out->target = (uint16_t)off;
	return true;
}

/* Copies one ldns record into out (owner, TTL, rdata). Returns false when it cannot. */
static bool
rr_keep(struct dns_answer *ans, struct dns_rr *out, const ldns_rr *rr)
{
	char text[DNS_NAME_TEXT_MAX];
	int off;

	memset(out, 0, sizeof *out);
	out->type = (uint16_t)ldns_rr_get_type(rr);
	out->ttl = rr_ttl(rr);
	if (dname_text(ldns_rr_owner(rr), text, sizeof text) < 0)
		return false;
	off = arena_put(ans, text, strlen(text), true);
	if (off < 0)
		return false;
	out->name = (uint16_t)off;
	return rr_rdata(ans, out, rr);
}

/* Checks header bits and the question. Returns 0 or a DNS_ERR_* code. */
static int
check_question(const ldns_pkt *pkt, const char *qname, uint16_t qtype)
{
	const ldns_rr_list *q = ldns_pkt_question(pkt);
	const ldns_rr *rr;
	ldns_rdf *ours;
	int cmp;

	if (!ldns_pkt_qr(pkt) || ldns_pkt_get_opcode(pkt) != LDNS_PACKET_QUERY)
		return DNS_ERR_NOT_RESPONSE;
	if (ldns_pkt_qdcount(pkt) != 1 || q == NULL || ldns_rr_list_rr_count(q) != 1)
		return DNS_ERR_QUESTION;
	rr = ldns_rr_list_rr(q, 0);
	if (ldns_rr_get_type(rr) != qtype || ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
		return DNS_ERR_QUESTION;
	if (ldns_str2rdf_dname(&ours, qname) != LDNS_STATUS_OK)
		return DNS_ERR_QUESTION;
	cmp = ldns_dname_compare(ldns_rr_owner(rr), ours); /* case-insensitive */
	ldns_rdf_deep_free(ours);
	return cmp == 0 ? 0 : DNS_ERR_QUESTION;
}

static void
ttl_note(struct dns_answer *ans, uint32_t ttl)
{
	if (ans->nrr == 0 && ans->cname_hops == 0)
		ans->ttl_min = ttl;
	else if (ttl < ans->ttl_min)
		ans->ttl_min = ttl;
}

/*
 * Follows the CNAME chain from the question's name inside the answer section (RFC 1034
 * section 3.6.2). Returns the chain's end (owned by pkt) or NULL on a loop or too long a chain.
 */
static const ldns_rdf *
follow_cnames(struct dns_answer *ans, const ldns_pkt *pkt, const ldns_rdf *start)
{
	const ldns_rr_list *an = ldns_pkt_answer(pkt);
	const ldns_rdf *cur = start;
	size_t n = an ? ldns_rr_list_rr_count(an) : 0;
	bool found = true;

	if (ans->qtype == DNS_TYPE_CNAME)
		return cur;
	while (found) {
		found = false;
		for (size_t i = 0; i < n; i++) {
			const ldns_rr *rr = ldns_rr_list_rr(an, i);

			if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_CNAME ||
			    ldns_rr_rd_count(rr) != 1 ||
			    ldns_dname_compare(ldns_rr_owner(rr), cur) != 0)
				continue;
			if (ans->cname_hops == DNS_CNAME_CHAIN_MAX)
				return NULL; /* a loop ends here too: it never stops linking */
			ttl_note(ans, rr_ttl(rr));
			ans->cname_hops++;
			cur = ldns_rr_rdf(rr, 0);
			found = true;
			break;
		}
	}
	return cur;
}

static void
keep_answers(struct dns_answer *ans, const ldns_pkt *pkt, const ldns_rdf *canon)
{
	const ldns_rr_list *an = ldns_pkt_answer(pkt);
	size_t n = an ? ldns_rr_list_rr_count(an) : 0;

	for (size_t i = 0; i < n; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);

		if (ldns_rr_get_type(rr) != ans->qtype ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN ||
		    ldns_dname_compare(ldns_rr_owner(rr), canon) != 0)
			continue;
		if (ans->nrr == DNS_ANSWER_RR_MAX || !rr_keep(ans, &ans->rr[ans->nrr], rr)) {
			ans->dropped++;
			continue;
		}
		ttl_note(ans, ans->rr[ans->nrr].ttl);
		ans->nrr++;
	}
}

static void
keep_additional_and_soa(struct dns_answer *ans, const ldns_pkt *pkt)
{
	const ldns_rr_list *ad = ldns_pkt_additional(pkt);
	const ldns_rr_list *ns = ldns_pkt_authority(pkt);
	size_t n = ad ? ldns_rr_list_rr_count(ad) : 0;

	for (size_t i = 0; i < n; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ad, i);
		ldns_rr_type t = ldns_rr_get_type(rr);

		if ((t != LDNS_RR_TYPE_A && t != LDNS_RR_TYPE_AAAA) ||
		    ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
			continue;
		if (ans->nadd == DNS_ANSWER_ADD_MAX || !rr_keep(ans, &ans->add[ans->nadd], rr)) {
			ans->dropped++;
			continue;
		}
		ans->nadd++;
	}
	n = ns ? ldns_rr_list_rr_count(ns) : 0;
	for (size_t i = 0; i < n && !ans->has_soa; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ns, i);
		const ldns_rdf *min;

		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) != 7)
			continue;
		min = ldns_rr_rdf(rr, 6);
		if (ldns_rdf_size(min) != 4)
			continue;
		/* RFC 2308 section 5: the negative TTL is the smaller of the SOA's TTL and MINIMUM. */
		ans->neg_ttl = ldns_rdf2native_int32(min);
		if (ans->neg_ttl > TTL_MAX_SANE)
			ans->neg_ttl = 0;
		if (rr_ttl(rr) < ans->neg_ttl)
			ans->neg_ttl = rr_ttl(rr);
		ans->has_soa = true;
	}
}

static void
answer_reset(struct dns_answer *ans, uint16_t qtype)
{
	memset(ans, 0, sizeof *ans);
	ans->qtype = qtype;
}

int
dns_packet_parse(struct dns_answer *ans, const uint8_t *wire, size_t len, const char *qname,
		 uint16_t qtype, uint16_t id)
{
	char text[DNS_NAME_TEXT_MAX], norm[256];
	const ldns_rdf *canon;
	ldns_pkt *pkt = NULL;
	ldns_status st;
	int rc, off;

	ASSERT(ans != NULL && wire != NULL && qname != NULL);
	answer_reset(ans, qtype);
	if (dns_name_normalize(norm, sizeof norm, qname) < 0)
		return DNS_ERR_QUESTION;
	if (len < DNS_HEADER_SIZE)
		return DNS_ERR_TRUNCATED;
	if (dns_packet_id(wire, len) != id)
		return DNS_ERR_ID;
	st = ldns_wire2pkt(&pkt, wire, len);
	if (st != LDNS_STATUS_OK)
		return st == LDNS_STATUS_MEM_ERR ? DNS_ERR_NOMEM : DNS_ERR_MALFORMED;
	rc = check_question(pkt, norm, qtype);
	if (rc != 0)
		goto out;
	ans->rcode = (uint8_t)ldns_pkt_get_rcode(pkt);
	ans->tc = ldns_pkt_tc(pkt);
	ans->aa = ldns_pkt_aa(pkt);
	ans->ad = ldns_pkt_ad(pkt);
	ans->qname = (uint16_t)arena_put(ans, norm, strlen(norm), true); /* offset 0: fits */
	canon = follow_cnames(ans, pkt, ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(pkt), 0)));
	if (canon == NULL) {
		rc = DNS_ERR_CNAME_CHAIN;
		goto out;
	}
	if (dname_text(canon, text, sizeof text) < 0 ||
	    (off = arena_put(ans, text, strlen(text), true)) < 0) {
		rc = DNS_ERR_MALFORMED;
		goto out;
	}
	ans->canon = (uint16_t)off;
	keep_answers(ans, pkt, canon);
	keep_additional_and_soa(ans, pkt);
out:
	ldns_pkt_free(pkt);
	if (rc != 0)
		answer_reset(ans, qtype);
	return rc;
}
