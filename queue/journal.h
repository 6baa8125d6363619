/*
 * journal — the completion logs of a shard's spool segments: which recipients are done.
 *
 * Every segment seg-N.rmx has a sidecar seg-N.done, an append-only file of 16-byte entries
 * (qid, recipient index), one per recipient whose outcome is final (delivered, bounced with
 * its bounce spooled, expired, deleted, or moved to the deferred stream). Entries of one loop
 * turn are group-committed: one write and one linked fdatasync per file with new entries.
 * Because a segment's completion log sits beside it and is removed with it, nothing has to be
 * compacted: a segment and its log go together once every recipient in the segment is done.
 *
 * On start-up, journal_read() lists a segment's done entries; replay skips those recipients.
 * A torn tail (a crash mid-write) loses at most the entries of the last batch: those
 * recipients are delivered again (a duplicate, never a loss).
 *
 * Entry: u32 crc32c over the next 12 bytes, u32 recipient index, u64 qid (little-endian).
 *
 * Usage:
 *   j = journal_new(&(struct journal_params){.dirfd = {hot, deferred}, .fsync = true});
 *   journal_add(j, stream, seq, qid, rcpt);      // any time
 *   before each wait: journal_flush(j, ring, ud_base); CQEs with ud_base: journal_complete()
 *   journal_forget(j, stream, seq);              // the segment was removed
 *
 * Failure: a failed write or sync is logged by the caller through the returned count of
 * errors (journal_stats); the entries are lost, which only means a duplicate after a crash.
 */
#ifndef RINGMX_JOURNAL_H
#define RINGMX_JOURNAL_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define JOURNAL_ENTRY_SIZE 16
/* journal uses the low JOURNAL_UD_BITS of user_data; ud_base's must be zero. */
#define JOURNAL_UD_BITS 24

struct journal;

struct journal_params {
	int dirfd[2]; /* per stream (queue/qmsg.h enum qmsg_stream) */
	bool fsync;
};

struct journal *journal_new(const struct journal_params *p);
void journal_free(struct journal *j);
void journal_add(struct journal *j, unsigned stream, uint32_t seq, uint64_t qid, uint32_t rcpt);
/* Submits one write (+ fdatasync) per file with entries, unless it has a batch in flight. */
void journal_flush(struct journal *j, struct io_uring *ring, uint64_t ud_base);
void journal_complete(struct journal *j, const struct io_uring_cqe *cqe);
/* The segment is gone: close its log once nothing is in flight on it; drop queued entries. */
void journal_forget(struct journal *j, unsigned stream, uint32_t seq);
bool journal_busy(const struct journal *j);

struct journal_stats {
	uint64_t entries, batches, errors;
};
void journal_stats_get(const struct journal *j, struct journal_stats *out);

/* Reads seg-N.done in dirfd: calls fn for every entry with a valid checksum. Returns the
 * number of entries, or -errno (-ENOENT: no log, nothing done). */
long journal_read(int dirfd, uint32_t seq, void (*fn)(void *arg, uint64_t qid, uint32_t rcpt),
		  void *arg);

#endif
