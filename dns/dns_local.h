/*
 * dns_local — the set of this host's own addresses, for mail-loop detection in dns_route
 * (RFC 5321 section 5.1: an MX host that is ourselves must not be delivered to).
 *
 * The caller fills a set once at start and passes it to every route (dns_route_params.local):
 * the addresses of the host's interfaces (dns_local_add_interfaces, getifaddrs), the addresses
 * the server listens on, and any an operator declares (a NAT's public address, a proxy's).
 * Addresses are compared as binary: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4
 * address. The set is a plain value (no allocation); shards may share one read-only.
 *
 * Usage:
 *   struct dns_local local = {0};
 *   dns_local_add_interfaces(&local);             each non-loopback interface address
 *   dns_local_add_text(&local, "192.0.2.9");      a listen or declared address
 *   rp.local = &local; dns_route_resolve(res, domain, &rp, ...);
 *
 * Loopback addresses (127/8, ::1) are not taken from the interfaces: dns_route refuses them as
 * loopback anyway unless loopback_ok is set, and with loopback_ok (tests, an internal next hop
 * on another port) they are wanted. A loopback address added by dns_local_add or
 * dns_local_add_text is kept and checked like any other.
 *
 * Limits: DNS_LOCAL_ADDRS_MAX addresses (duplicates are stored once).
 *
 * Failure: the add functions return -ENOSPC when the set is full (it keeps what it had before
 * the call's first address that did not fit), -EINVAL for text that is not an IPv4 or IPv6
 * address, -EAFNOSUPPORT for another family; dns_local_add_interfaces returns -errno when
 * getifaddrs fails.
 */
#ifndef RINGMX_DNS_LOCAL_H
#define RINGMX_DNS_LOCAL_H

#include <stdbool.h>
#include <stdint.h>

#define DNS_LOCAL_ADDRS_MAX 256

struct dns_local_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

struct dns_local {
	unsigned n;
	struct dns_local_addr a[DNS_LOCAL_ADDRS_MAX];
};

/* Adds one address (4 bytes for AF_INET, 16 for AF_INET6). Returns 1 when added, 0 when it
 * was there already, or -errno. */
int dns_local_add(struct dns_local *l, int family, const void *addr);

/* Adds "192.0.2.9" or "2001:db8::9" (no brackets, no port). Returns as dns_local_add. */
int dns_local_add_text(struct dns_local *l, const char *text);

/* Adds the IPv4 and IPv6 addresses of every interface that is up, except loopback ones.
 * Returns how many were new, or -errno. */
int dns_local_add_interfaces(struct dns_local *l);

/* True when addr (4 or 16 bytes by family) is in the set; l may be NULL (an empty set). */
bool dns_local_has(const struct dns_local *l, int family, const uint8_t *addr);

#endif
