/*
 * dns_route — the delivery route of a mail domain: its MX hosts in the order to try, each with
 * its addresses, or why there is none (RFC 5321 section 5.1).
 *
 * Steps: MX lookup; hosts sorted by preference, equal preferences shuffled (RFC 5321 5.1:
 * "randomize them to spread the load"); each host's A and AAAA taken from the additional
 * section when it has them, otherwise queried (both families; `prefer` puts one first).
 * Outcomes:
 *   NXDOMAIN for the domain                     permanent, 5.1.2
 *   a null MX, "MX 0 ." alone (RFC 7505)        permanent, 5.1.10
 *   no MX record (NODATA)                       the domain itself is the implicit MX, pref 0
 *     ... and it has no address either          permanent, 5.1.2
 *   SERVFAIL/REFUSED, timeout, bad answer       temporary, 4.4.3
 *   MX hosts, but no address for any of them   temporary, 4.4.3 (DNS may be fixed meanwhile)
 *   an MX host with an address of this host (params.local): that host and every host of
 *     the same or a larger preference are dropped (RFC 5321 5.1: "MUST discard all records
 *     with a preference >= its own"); none left (we are the best MX, or the only one)
 *                                               permanent, 5.4.6 (mail loop)
 *   every address loopback or invalid (127/8, 0/8, multicast, ::, ::1) while loopback_ok is
 *     false                                     permanent, 5.4.6 (routing loop); otherwise
 *     such addresses are dropped from the route
 *   a host kept above whose address lookup failed, and no address left at all
 *                                               temporary, 4.4.3 (before the two above)
 *
 * Usage: dns_route_resolve(res, "example.org", &params, now_ms, on_route, arg); on_route gets a
 * struct dns_route it owns (free with dns_route_free); it may be called before
 * dns_route_resolve returns when every answer was in the cache.
 *
 * Limits: DNS_ROUTE_HOSTS_MAX hosts (the rest, by preference, are dropped), DNS_ROUTE_ADDRS_MAX
 * addresses per host. Lookups started from callbacks use the now_ms given at the start.
 *
 * Failure: dns_route_resolve returns 0 (on_route will be called exactly once) or -EINVAL (bad
 * domain), -ENOMEM, -EAGAIN (resolver full); then on_route is never called.
 */
#ifndef RINGMX_DNS_ROUTE_H
#define RINGMX_DNS_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "dns/dns_local.h"
#include "dns/dns_resolver.h"

#define DNS_ROUTE_HOSTS_MAX 16
#define DNS_ROUTE_ADDRS_MAX 8

enum dns_route_status { DNS_ROUTE_OK = 0, DNS_ROUTE_TEMPFAIL, DNS_ROUTE_PERMFAIL };
enum dns_route_prefer { DNS_PREFER_IPV4 = 0, DNS_PREFER_IPV6 };

struct dns_route_params {
	enum dns_route_prefer prefer;
	bool loopback_ok; /* keep loopback/invalid addresses (tests, internal next hops) */
	/* This host's own addresses (NULL: none known); must outlive the route's lookups. */
	const struct dns_local *local;
};

struct dns_route_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint32_t ttl;
	bool from_cache;
};

struct dns_route;
struct dns_route_sub {
	struct dns_route *rt;
	uint8_t host;
	uint16_t type;
};

struct dns_route_host {
	char name[256];
	uint16_t pref;
	uint32_t ttl;
	unsigned naddr;
	struct dns_route_addr addr[DNS_ROUTE_ADDRS_MAX];
	int err; /* a failed address lookup: -errno / DNS_ERR_*, or 1 for SERVFAIL-like */
	struct dns_route_sub sub[2];
};

struct dns_route {
	char domain[256];
	enum dns_route_status status;
	const char *code;   /* enhanced status code (RFC 3463), "" when OK */
	const char *reason; /* a short phrase for logs and bounces */
	bool implicit;      /* no MX: the domain itself */
	bool mx_from_cache;
	uint32_t mx_ttl;
	int self_pref;         /* the preference of our own best MX entry, or -1 */
	unsigned self_dropped; /* hosts dropped because of it (ourselves and less preferred) */
	unsigned nhosts;
	struct dns_route_host hosts[DNS_ROUTE_HOSTS_MAX];
	/* internal */
	struct dns_resolver *res;
	struct dns_route_params p;
	uint64_t now_ms;
	unsigned pending;
	void (*done)(void *arg, struct dns_route *rt);
	void *arg;
};

typedef void (*dns_route_done_fn)(void *arg, struct dns_route *rt);

int dns_route_resolve(struct dns_resolver *res, const char *domain,
		      const struct dns_route_params *p, uint64_t now_ms, dns_route_done_fn done,
		      void *arg);
void dns_route_free(struct dns_route *rt);

/* True for addresses never a real MX host: 0/8, 127/8, 224/4, 240/4, ::, ::1, ff00::/8, and
 * IPv4-mapped forms of the IPv4 ones. */
bool dns_route_addr_is_local(int family, const uint8_t *addr);

#endif
