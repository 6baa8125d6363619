/*
 * limits — connection counts shared by all shards, without locks.
 *
 * One atomic counter for the whole server and a table of atomic per-address counters indexed
 * by a hash of the client address (IPv6 clients by their /64). Two addresses that share a
 * bucket share a count: the limit can only be hit early, never late, and the table is large
 * enough that this is rare. Shards call acquire at accept and release at close.
 *
 * Failure: limits_acquire returns LIMITS_OK or which limit was hit; nothing is counted then.
 */
#ifndef RINGMX_LIMITS_H
#define RINGMX_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define LIMITS_IP_BUCKETS 65536

enum limits_result { LIMITS_OK, LIMITS_TOTAL, LIMITS_PER_IP };

struct limits_ticket {
	uint32_t bucket;
	bool per_ip; /* counted in a bucket */
	bool held;
};

void limits_init(void);
enum limits_result limits_acquire(const struct sockaddr *sa, unsigned max_total,
				  unsigned max_per_ip, bool exempt, struct limits_ticket *t);
void limits_release(struct limits_ticket *t);
unsigned limits_total(void);

#endif
