#include "server/conn_limits.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "server/assert.h"

static _Atomic unsigned conn_limits_conn_total;
static _Atomic uint32_t conn_limits_ip[CONN_LIMITS_IP_BUCKETS];

void
conn_limits_init(void)
{
	atomic_store(&conn_limits_conn_total, 0);
	for (unsigned i = 0; i < CONN_LIMITS_IP_BUCKETS; i++)
		atomic_store_explicit(&conn_limits_ip[i], 0, memory_order_relaxed);
}

static uint32_t
conn_limits_hash(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % CONN_LIMITS_IP_BUCKETS;
}

static uint32_t
conn_limits_bucket(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return conn_limits_hash((const uint8_t *)&in->sin_addr, 4);
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return conn_limits_hash(in6->sin6_addr.s6_addr + 12, 4);
	/* An IPv6 client controls its whole /64: count it as one address. */
	return conn_limits_hash(in6->sin6_addr.s6_addr, 8);
}

enum conn_limits_result
conn_limits_acquire(const struct sockaddr *sa, unsigned max_total, unsigned max_per_ip, bool exempt,
	       struct conn_limits_ticket *t)
{
	memset(t, 0, sizeof *t);
	unsigned n = atomic_fetch_add_explicit(&conn_limits_conn_total, 1, memory_order_relaxed);
	if (n >= max_total) {
		atomic_fetch_sub_explicit(&conn_limits_conn_total, 1, memory_order_relaxed);
		return CONN_LIMITS_TOTAL;
	}
	t->held = true;
	if (exempt || max_per_ip == 0)
		return CONN_LIMITS_OK;
	t->bucket = conn_limits_bucket(sa);
	uint32_t c = atomic_fetch_add_explicit(&conn_limits_ip[t->bucket], 1, memory_order_relaxed);
	if (c >= max_per_ip) {
		atomic_fetch_sub_explicit(&conn_limits_ip[t->bucket], 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&conn_limits_conn_total, 1, memory_order_relaxed);
		t->held = false;
		return CONN_LIMITS_PER_IP;
	}
	t->per_ip = true;
	return CONN_LIMITS_OK;
}

void
conn_limits_release(struct conn_limits_ticket *t)
{
	if (!t->held)
		return;
	if (t->per_ip) {
		ASSERT(atomic_load_explicit(&conn_limits_ip[t->bucket], memory_order_relaxed) > 0);
		atomic_fetch_sub_explicit(&conn_limits_ip[t->bucket], 1, memory_order_relaxed);
	}
	atomic_fetch_sub_explicit(&conn_limits_conn_total, 1, memory_order_relaxed);
	t->held = false;
	t->per_ip = false;
}

unsigned
conn_limits_total(void)
{
	return atomic_load_explicit(&conn_limits_conn_total, memory_order_relaxed);
}
