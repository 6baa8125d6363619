/*
 * dns_local — see dns_local.h.
 */
#include "dns/dns_local.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "queue/assert.h"

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The canonical form: an IPv4-mapped IPv6 address becomes AF_INET. */
static void
canonical(struct dns_local_addr *out, int family, const uint8_t *addr)
{
	memset(out, 0, sizeof *out);
	if (family == AF_INET6 && memcmp(addr, mapped_prefix, 12) == 0) {
		out->family = AF_INET;
		memcpy(out->addr, addr + 12, 4);
		return;
	}
	out->family = family;
	memcpy(out->addr, addr, family == AF_INET ? 4 : 16);
}

bool
dns_local_has(const struct dns_local *l, int family, const uint8_t *addr)
{
	struct dns_local_addr c;

	if (l == NULL || (family != AF_INET && family != AF_INET6))
		return false;
	ASSERT(l->n <= DNS_LOCAL_ADDRS_MAX);
	canonical(&c, family, addr);
	for (unsigned i = 0; i < l->n; i++)
		if (l->a[i].family == c.family && memcmp(l->a[i].addr, c.addr, 16) == 0)
			return true;
	return false;
}

int
dns_local_add(struct dns_local *l, int family, const void *addr)
{
	ASSERT(l != NULL && addr != NULL);
	ASSERT(l->n <= DNS_LOCAL_ADDRS_MAX);
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	if (dns_local_has(l, family, addr))
		return 0;
	if (l->n == DNS_LOCAL_ADDRS_MAX)
		return -ENOSPC;
	canonical(&l->a[l->n++], family, addr);
	return 1;
}

int
dns_local_add_text(struct dns_local *l, const char *text)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, text, a) == 1)
		return dns_local_add(l, AF_INET, a);
	if (inet_pton(AF_INET6, text, a) == 1)
		return dns_local_add(l, AF_INET6, a);
	return -EINVAL;
}

/* 127/8 and ::1, also in their mapped form. */
static bool
is_loopback(int family, const uint8_t *a)
{
	static const uint8_t one[16] = {[15] = 1};

	if (family == AF_INET6 && memcmp(a, mapped_prefix, 12) == 0)
		return a[12] == 127;
	if (family == AF_INET6)
		return memcmp(a, one, 16) == 0;
	return a[0] == 127;
}

int
dns_local_add_interfaces(struct dns_local *l)
{
	struct ifaddrs *list, *i;
	int added = 0, rc = 0;

	if (getifaddrs(&list) < 0)
		return -errno;
	for (i = list; i != NULL && rc >= 0; i = i->ifa_next) {
		const void *sa = i->ifa_addr;
		const uint8_t *a;
		int family;

		if (sa == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		family = i->ifa_addr->sa_family;
		if (family == AF_INET)
			a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		else if (family == AF_INET6)
			a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		else
			continue;
		if (is_loopback(family, a))
			continue;
		rc = dns_local_add(l, family, a);
		added += rc > 0;
	}
	freeifaddrs(list);
	return rc < 0 ? rc : added;
}
