/*
 * dns_resolver — a shard's asynchronous stub resolver on the shard's own io_uring, with the
 * shard's dns_cache in front of it.
 *
 * Like queue/spool, it knows nothing of the loop that owns the ring: it only gets SQEs from it
 * (submitting when the SQ is full) and the owner routes back every CQE whose user_data has the
 * resolver's ud_base in its top bits. The owner also calls dns_resolver_tick() once per loop turn
 * (timeouts are checked there, so a turn should not sleep longer than it is willing to be late).
 *
 * Each query uses its own UDP socket bound to port 0 (a random source port from the kernel)
 * and connect()ed to the server (the kernel drops datagrams from anyone else), and a random
 * 16-bit ID (getrandom). An answer must match ID and question (dns_packet_parse); one that does
 * not is dropped, counted, and the query goes on waiting. A TC answer is asked again over TCP
 * to the same server. A timeout, a network error, SERVFAIL or REFUSED moves to the next server;
 * there are `attempts` rounds over all servers. Concurrent lookups of one (name, type) coalesce
 * into one query with several waiters.
 *
 * An answer that ends in a CNAME whose target it does not answer (dns_answer_dangling: an
 * authoritative server whose zone does not hold the target) is chased: the resolver asks for
 * the target, through the cache and coalescing like any lookup, up to DNS_RESOLVER_CHASE_MAX
 * follow-up queries and DNS_CNAME_CHAIN_MAX links in all; a name asked for twice (a loop
 * across answers) or a longer chain ends the lookup with DNS_ERR_CNAME_CHAIN. Each link is
 * cached under its own name; the callback gets the joined chain (dns_answer_chain), with
 * from_cache true only when every link came from the cache.
 *
 * Usage:
 *   r = dns_resolver_new(&params, ring, ud_base, err, sizeof err);
 *   dns_resolver_lookup(r, "example.org", DNS_TYPE_MX, now_ms, on_answer, arg);
 *   each loop turn: dns_resolver_tick(r, now_ms); for our CQEs: dns_resolver_complete(r, cqe, now)
 *
 * The callback gets status 0 with an answer (check ans->rcode: NOERROR with or without records,
 * NXDOMAIN, or SERVFAIL/REFUSED when every attempt gave that), or -ETIMEDOUT, or another -errno
 * or DNS_ERR_* code with ans NULL. ans is valid only during the callback. A cache hit calls it
 * before dns_resolver_lookup returns, with from_cache true. Callbacks may start new lookups.
 *
 * Limits: queries_max queries in flight (more get -EAGAIN), DNS_RESOLVER_WAITERS_MAX waiters
 * per query, DNS_RESOLVER_SERVERS_MAX servers.
 *
 * Failure: dns_resolver_new returns NULL with err filled (bad server list, no servers, no
 * memory). dns_resolver_lookup returns 0 when the callback was called or will be called once,
 * or -EINVAL (bad name), -EAGAIN (too many queries or waiters), -ENOMEM; then it never is.
 */
#ifndef RINGMX_DNS_RESOLVER_H
#define RINGMX_DNS_RESOLVER_H

#include <liburing.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns/dns_cache.h"
#include "dns/dns_packet.h"

#define DNS_RESOLVER_SERVERS_MAX 8
#define DNS_RESOLVER_WAITERS_MAX 64
/* Follow-up queries for one lookup's CNAME chain (the chain itself: DNS_CNAME_CHAIN_MAX). */
#define DNS_RESOLVER_CHASE_MAX 4
#define DNS_RESOLVER_QUERIES_LIMIT 65536
/* dns_resolver uses the low DNS_RESOLVER_UD_BITS of user_data; ud_base's must be zero. */
#define DNS_RESOLVER_UD_BITS 40

struct dns_resolver;

struct dns_resolver_params {
	const char *servers;      /* "addr[:port] [v6addr]:port ..."; NULL or "": resolv_conf */
	const char *resolv_conf;  /* NULL: /etc/resolv.conf */
	uint32_t timeout_ms;      /* per attempt; > 0 */
	unsigned attempts;        /* rounds over all servers; >= 1 */
	unsigned queries_max;     /* in flight; 1 .. DNS_RESOLVER_QUERIES_LIMIT */
	struct dns_cache_params cache;
};

typedef void (*dns_resolver_done_fn)(void *arg, int status, const struct dns_answer *ans,
				     bool from_cache);

struct dns_resolver *dns_resolver_new(const struct dns_resolver_params *p, struct io_uring *ring,
				      uint64_t ud_base, char *err, size_t err_len);
/* Closes every socket; pending lookups are dropped without callbacks. Their CQEs may still
 * come: the owner drops CQEs with our ud_base after this. */
void dns_resolver_free(struct dns_resolver *r);

/* Parses one server, "1.2.3.4", "1.2.3.4:5353", "2001:db8::1" or "[::1]:5353" (port 53 when
 * none), as the servers list is read; for config checks. Returns 0 or -EINVAL. */
int dns_resolver_server_parse(const char *text, struct sockaddr_storage *out, socklen_t *len);

int dns_resolver_lookup(struct dns_resolver *r, const char *name, uint16_t type, uint64_t now_ms,
			dns_resolver_done_fn done, void *arg);

/* Fails attempts whose deadline has passed (and starts the next). */
void dns_resolver_tick(struct dns_resolver *r, uint64_t now_ms);

/* Handles one CQE whose user_data has our ud_base. */
void dns_resolver_complete(struct dns_resolver *r, const struct io_uring_cqe *cqe,
			   uint64_t now_ms);

/* True while any query is in flight. */
bool dns_resolver_busy(const struct dns_resolver *r);

/* A random 32-bit number from the resolver's getrandom pool (for shuffling). */
uint32_t dns_resolver_random(struct dns_resolver *r);

struct dns_resolver_stats {
	uint64_t lookups, coalesced, queries_sent, tcp_fallbacks, timeouts, dropped_answers,
	    server_failures, cname_chases, errors;
	struct dns_cache_stats cache;
};
void dns_resolver_stats_get(const struct dns_resolver *r, struct dns_resolver_stats *out);

#endif
