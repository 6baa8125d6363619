/*
 * recover — start-up replay of the spool for delivery: which messages still have recipients
 * to deliver, and which segments hold them.
 *
 * It reads both streams of the spool directory: DIR/deferred/ first (copies of messages that
 * kept being deferred), then DIR itself, each segment in sequence order with its completion
 * log (queue/journal.h). A record's recipients listed in the log are done; a message with
 * none left is skipped, and so is a hot record whose qid was already found in the deferred
 * stream (the copy is newer). Every segment is reported with its home shard (sequence number
 * modulo the shard count: a restart may change the count) and the number of live messages in
 * it, so the home can remove it once they are delivered, or at once when there are none.
 *
 * Usage: recover_spool(dir, nshards, load, &ops, &st); ops.on_msg gets each live message as a
 * qmsg (home filled in) when load is true; without load only the counts are made.
 *
 * Failure: returns 0, or -errno when the spool directory cannot be read (damaged records are
 * reported through on_problem and skipped).
 */
#ifndef RINGMX_RECOVER_H
#define RINGMX_RECOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "queue/qmsg.h"

struct recover_ops {
	void (*on_msg)(void *arg, struct qmsg *m);
	void (*on_segment)(void *arg, unsigned stream, uint32_t seq, unsigned home, uint32_t live);
	void (*on_problem)(void *arg, const char *path, uint64_t offset, uint64_t skipped,
			   const char *what);
	void *arg;
};

struct recover_stats {
	uint64_t segments, records, messages, rcpts_pending, rcpts_done;
	uint64_t corrupt_regions, truncated_tails;
	uint32_t max_seq;
	uint64_t max_qid;
};

int recover_spool(const char *dir, unsigned nshards, bool load, const struct recover_ops *ops,
		  struct recover_stats *st);

#endif
