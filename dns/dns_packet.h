/*
 * dns_packet — building DNS queries and checking and parsing answers, with ldns. Pure: no I/O.
 *
 * A query is one question with RD and AD set (AD asks a validating resolver to say whether the
 * answer is DNSSEC-secure, RFC 6840 section 5.7) and an EDNS0 OPT record advertising a
 * 1232-byte UDP payload (the DNS flag day 2020 size, which avoids IP fragmentation). An answer
 * is accepted only if its ID is ours, QR is set, the opcode is QUERY and it carries exactly our
 * question (name compared case-insensitively, same type and class); otherwise it is dropped,
 * so that a spoofed or stray datagram never reaches the cache. What is kept of an accepted
 * answer is copied into a small owned struct dns_answer: rcode, TC, AD, the records of the
 * asked type at the end of the CNAME chain, the chain's canonical name, the additional
 * section's A/AAAA, and the negative TTL (RFC 2308 section 5: the smaller of the SOA record's
 * TTL and its MINIMUM field).
 *
 * Usage:
 *   len = dns_packet_query(buf, sizeof buf, "example.org", DNS_TYPE_MX, id);
 *   ans = dns_answer_new();
 *   rc = dns_packet_parse(ans, wire, wire_len, "example.org", DNS_TYPE_MX, id);
 *   if (rc == 0 && ans->tc) retry over TCP; ... dns_answer_free(ans);
 *
 * Limits (each a named constant below): DNS_ANSWER_RR_MAX answer records and
 * DNS_ANSWER_ADD_MAX additional addresses are kept (the rest are counted in `dropped`);
 * names are at most 255 octets on the wire (ldns enforces it) and are kept lower-cased in
 * presentation form without the final dot; a CNAME chain inside one answer may be at most
 * DNS_CNAME_CHAIN_MAX links long, a longer chain or a loop is an error; names and TLSA data
 * share a DNS_ANSWER_STRINGS_MAX-byte arena per answer.
 *
 * Failure: dns_packet_query returns -EINVAL for a bad name, -ENOSPC when buf is too small,
 * -ENOMEM. dns_packet_parse returns one of the DNS_ERR_* codes below (all negative); the
 * answer is then left empty. dns_answer_new returns NULL when out of memory.
 */
#ifndef RINGMX_DNS_PACKET_H
#define RINGMX_DNS_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_EDNS_UDP_SIZE 1232
#define DNS_HEADER_SIZE 12
#define DNS_NAME_WIRE_MAX 255
/* Presentation form: every octet may become a 4-char \DDD escape; plus the NUL. */
#define DNS_NAME_TEXT_MAX (4 * DNS_NAME_WIRE_MAX + 1)
#define DNS_CNAME_CHAIN_MAX 8
#define DNS_ANSWER_RR_MAX 32
#define DNS_ANSWER_ADD_MAX 16
#define DNS_ANSWER_STRINGS_MAX 8192

/* Record types and rcodes we use (numbers from the IANA registry). */
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_SOA 6
#define DNS_TYPE_MX 15
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_TLSA 52
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3

/* What dns_packet_parse returns for an answer it does not accept. */
#define DNS_ERR_TRUNCATED (-1001)    /* shorter than the 12-byte header */
#define DNS_ERR_ID (-1002)           /* not our query ID */
#define DNS_ERR_NOT_RESPONSE (-1003) /* QR clear, or an opcode other than QUERY */
#define DNS_ERR_QUESTION (-1004)     /* not exactly one question, or not ours */
#define DNS_ERR_MALFORMED (-1005)    /* ldns cannot parse it: compression loop, counts beyond
					the packet, bad label or rdata */
#define DNS_ERR_CNAME_CHAIN (-1006)  /* a CNAME loop, or a chain over DNS_CNAME_CHAIN_MAX */
#define DNS_ERR_NOMEM (-1007)

/* One kept record. Names (and TLSA data) are offsets into the answer's string arena. */
struct dns_rr {
	uint16_t type;
	uint16_t pref; /* MX preference */
	uint32_t ttl;  /* seconds, as received */
	uint16_t name; /* owner name */
	uint16_t target; /* MX exchange or CNAME target; TLSA data */
	union {
		uint8_t a[4];
		uint8_t aaaa[16];
		struct {
			uint8_t usage, selector, mtype;
			uint16_t len;
		} tlsa;
	} u;
};

struct dns_answer {
	uint16_t qtype;
	uint8_t rcode;
	bool tc; /* truncated: ask again over TCP */
	bool aa;
	bool ad;            /* AD: the (validating) resolver says the data is DNSSEC-secure */
	uint8_t cname_hops; /* CNAME links followed inside this answer */
	bool has_soa;       /* authority section had the zone's SOA (negative answers) */
	uint32_t neg_ttl;   /* RFC 2308: min(SOA TTL, SOA MINIMUM), when has_soa */
	uint32_t ttl_min;   /* the smallest TTL of the kept answer records and the CNAME chain */
	uint32_t dropped;   /* records not kept: over the bounds, unsupported, or malformed */
	uint16_t qname;     /* the question, as asked */
	uint16_t canon;     /* the end of the CNAME chain (== qname without CNAMEs) */
	uint16_t nrr, nadd;
	struct dns_rr rr[DNS_ANSWER_RR_MAX];   /* records of qtype at canon, in answer order */
	struct dns_rr add[DNS_ANSWER_ADD_MAX]; /* A/AAAA from the additional section */
	uint16_t strings_len;
	char strings[]; /* DNS_ANSWER_STRINGS_MAX bytes in a parse buffer; fewer in a copy */
};

/* A parse buffer with a full arena (free with dns_answer_free). */
struct dns_answer *dns_answer_new(void);
void dns_answer_free(struct dns_answer *ans);
/* Bytes that ans really uses; a copy of that many bytes is a complete answer. */
size_t dns_answer_size(const struct dns_answer *ans);
/* A malloc'ed copy of exactly dns_answer_size bytes, or NULL. */
struct dns_answer *dns_answer_dup(const struct dns_answer *ans);
/* A string of the arena, at off (an rr's name/target, or qname/canon). */
const char *dns_answer_str(const struct dns_answer *ans, uint16_t off);

/*
 * True for an answer that ends in a CNAME whose target this packet does not answer: NOERROR,
 * no records of the asked type, at least one CNAME link, and no SOA in the authority section
 * (with the SOA, RFC 2308 section 2.2, the server says the chain's end has no such records).
 * An authoritative server answers so when the target is outside its zone: the resolver asks
 * again for ans->canon.
 */
bool dns_answer_dangling(const struct dns_answer *ans);

/*
 * Joins two links of a CNAME chase into out (from dns_answer_new; it may be neither input):
 * head is a dangling answer, tail the answer for head's canon. out gets head's question, the
 * rest from tail; cname_hops is the sum, ttl_min the smallest TTL of the whole chain and the
 * records. Returns 0, DNS_ERR_CNAME_CHAIN when the joined chain is over DNS_CNAME_CHAIN_MAX,
 * or DNS_ERR_NOMEM when the names do not fit the arena.
 */
int dns_answer_chain(struct dns_answer *out, const struct dns_answer *head,
		     const struct dns_answer *tail);

/*
 * Writes a query for name/type with the given ID into buf. name is in presentation form, with
 * or without the final dot. Returns the packet length, or -errno (see above).
 */
int dns_packet_query(uint8_t *buf, size_t cap, const char *name, uint16_t type, uint16_t id);

/*
 * Reads the query ID of a packet, or -1 when it is shorter than a header; lets a resolver find
 * the query a datagram claims to answer before it parses the rest.
 */
int dns_packet_id(const uint8_t *wire, size_t len);

/*
 * Checks wire[0..len) against our question (qname, qtype, class IN, id) and parses it into ans
 * (which must come from dns_answer_new; it is reset first). Returns 0, or a DNS_ERR_* code.
 * A TC answer returns 0 with ans->tc set: the caller retries over TCP and must not cache it.
 */
int dns_packet_parse(struct dns_answer *ans, const uint8_t *wire, size_t len, const char *qname,
		     uint16_t qtype, uint16_t id);

/* Lower-cases name into out (without the final dot). Returns its length, or -EINVAL when it
 * is empty, too long, or has an empty label. */
int dns_name_normalize(char *out, size_t cap, const char *name);

/* A short English name for a DNS_ERR_* code (for logs). */
const char *dns_packet_strerror(int err);

#endif
