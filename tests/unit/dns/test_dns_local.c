/*
 * Unit tests of dns_local: the set of this host's own addresses that dns_route checks MX hosts
 * against (RFC 5321 section 5.1 loop detection).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "dns/dns_local.h"

static struct dns_local local; /* large: not on the stack */

static void
setup(void)
{
	memset(&local, 0, sizeof local);
}

TestSuite(dns_local, .init = setup);

static bool
has(const char *text)
{
	uint8_t a[16];

	if (inet_pton(AF_INET, text, a) == 1)
		return dns_local_has(&local, AF_INET, a);
	cr_assert_eq(inet_pton(AF_INET6, text, a), 1, "%s", text);
	return dns_local_has(&local, AF_INET6, a);
}

Test(dns_local, added_addresses_are_found_and_others_are_not)
{
	cr_assert_eq(dns_local_add_text(&local, "192.0.2.9"), 1);
	cr_assert_eq(dns_local_add_text(&local, "2001:db8::9"), 1);
	cr_assert(has("192.0.2.9"));
	cr_assert(has("2001:db8::9"));
	cr_assert_not(has("192.0.2.10"));
	cr_assert_not(has("2001:db8::a"));
	cr_assert_not(has("::"));
	cr_assert_eq(local.n, 2);
}

Test(dns_local, an_ipv4_mapped_ipv6_address_is_the_ipv4_address)
{
	cr_assert_eq(dns_local_add_text(&local, "192.0.2.9"), 1);
	cr_assert(has("::ffff:192.0.2.9"));
	cr_assert_eq(dns_local_add_text(&local, "::ffff:198.51.100.1"), 1);
	cr_assert(has("198.51.100.1"));
	cr_assert_eq(dns_local_add_text(&local, "198.51.100.1"), 0, "the same address");
	cr_assert_eq(local.n, 2);
}

Test(dns_local, duplicates_are_stored_once)
{
	cr_assert_eq(dns_local_add_text(&local, "2001:db8::9"), 1);
	cr_assert_eq(dns_local_add_text(&local, "2001:DB8:0::9"), 0);
	cr_assert_eq(local.n, 1);
}

Test(dns_local, bad_text_and_other_families_are_refused)
{
	uint8_t a[16] = {0};

	cr_assert_eq(dns_local_add_text(&local, "not-an-address"), -EINVAL);
	cr_assert_eq(dns_local_add_text(&local, "192.0.2.9:25"), -EINVAL);
	cr_assert_eq(dns_local_add_text(&local, "[2001:db8::9]"), -EINVAL);
	cr_assert_eq(dns_local_add_text(&local, ""), -EINVAL);
	cr_assert_eq(dns_local_add(&local, AF_UNIX, a), -EAFNOSUPPORT);
	cr_assert_not(dns_local_has(&local, AF_UNIX, a));
	cr_assert_eq(local.n, 0);
}

Test(dns_local, a_full_set_refuses_more_and_keeps_what_it_has)
{
	for (unsigned i = 0; i < DNS_LOCAL_ADDRS_MAX; i++) {
		uint8_t a[4] = {10, 0, (uint8_t)(i >> 8), (uint8_t)i};

		cr_assert_eq(dns_local_add(&local, AF_INET, a), 1);
	}
	cr_assert_eq(dns_local_add_text(&local, "192.0.2.9"), -ENOSPC);
	cr_assert_eq(dns_local_add_text(&local, "10.0.0.7"), 0, "present: not an error");
	cr_assert_eq(local.n, DNS_LOCAL_ADDRS_MAX);
	cr_assert(has("10.0.0.255"));
	cr_assert_not(has("192.0.2.9"));
}

Test(dns_local, no_set_has_no_address)
{
	uint8_t a[4] = {192, 0, 2, 9};

	cr_assert_not(dns_local_has(NULL, AF_INET, a));
}

Test(dns_local, interface_addresses_leave_out_loopback_ones)
{
	int n = dns_local_add_interfaces(&local);

	cr_assert_geq(n, 0, "getifaddrs: %s", strerror(-n));
	cr_assert_eq((unsigned)n, local.n);
	cr_assert_not(has("127.0.0.1"));
	cr_assert_not(has("::1"));
	cr_assert_eq(dns_local_add_interfaces(&local), 0, "a second time adds nothing new");
}
