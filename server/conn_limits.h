/*
 * conn_limits — connection counts shared by all shards, without locks.
 *
 * One atomic counter for the whole server and a table of atomic per-address counters indexed
 * by a hash of the client address (IPv6 clients by their /64). Two addresses that share a
 * bucket share a count: the limit can only be hit early, never late, and the table is large
 * enough that this is rare. Shards call acquire at accept and release at close.
 *
 * Failure: conn_limits_acquire returns CONN_LIMITS_OK or which limit was hit; nothing is counted then.
 */
#ifndef RINGMX_CONN_LIMITS_H
#define RINGMX_CONN_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONN_LIMITS_IP_BUCKETS 65536

enum conn_limits_result { CONN_LIMITS_OK, CONN_LIMITS_TOTAL, CONN_LIMITS_PER_IP };

struct conn_limits_ticket {
	uint32_t bucket;
	bool per_ip; /* counted in a bucket */
	bool held;
};

void conn_limits_init(void);
enum conn_limits_result conn_limits_acquire(const struct sockaddr *sa, unsigned max_total,
				  unsigned max_per_ip, bool exempt, struct conn_limits_ticket *t);
void conn_limits_release(struct conn_limits_ticket *t);
unsigned conn_limits_total(void);

#endif
