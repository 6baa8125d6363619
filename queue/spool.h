/*
 * spool — a shard's writer into the log-structured spool, with group commit.
 *
 * Each shard owns one spool: an open segment file it appends records to. Finished records
 * are queued with spool_append(); once per loop turn spool_flush() turns everything queued
 * into ONE writev and ONE fdatasync, linked on the shard's io_uring. Only when that
 * fdatasync completes does spool_complete() report each record as committed, which is when
 * the session may send its 250 (DESIGN.md invariant 1). While a batch is in flight, new
 * records wait for the next one. A segment past segment_size is closed and a new one begun.
 *
 * Usage:
 *   sp = spool_open(&params, err, sizeof err);
 *   spool_append(sp, rec, len, owner);          // takes ownership of rec (malloc'ed)
 *   spool_flush(sp, ring, ud, on_done, arg);     // before each wait: queues SQEs if due
 *   on a CQE whose user_data has the spool's op: spool_complete(sp, cqe, on_done, arg)
 *
 * Failure: a failed or short write, or a failed fdatasync, reports every record of the batch
 * with status -errno (the session answers 451) and moves to a new segment, so the bad region
 * never sits in front of later records. spool_open returns NULL with err filled.
 */
#ifndef RINGMX_SPOOL_H
#define RINGMX_SPOOL_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool;

struct spool_params {
	const char *dir;
	unsigned shard;
	uint64_t segment_size;
	bool fsync;
	_Atomic uint32_t *next_seq; /* shared by all shards: the next segment sequence number */
};

/* The two sub-operations spool_flush puts into user_data (caller's ud | sub). */
#define SPOOL_UD_WRITE 1u
#define SPOOL_UD_SYNC 2u

/* What a settled record reports. The callback may keep the record's bytes: it sets *d->rec to
 * NULL and frees them itself later (delivery keeps committed messages in memory). */
struct spool_done {
	uint64_t owner;
	uint32_t seq;     /* the segment the record went to (meaningless when status != 0) */
	uint64_t off;     /* where it starts in that segment */
	char **rec;       /* the record, still owned by the spool unless the callback takes it */
	size_t len;
	int status;       /* 0, or -errno: not stored */
};
typedef void (*spool_done_fn)(void *arg, const struct spool_done *d);

/*
 * Locks the spool directory for this process (an flock on DIR/ringmx.lock holding our pid),
 * so that a second ringmx on the same spool refuses to start instead of interleaving segments.
 * Returns the lock fd (keep it open for the life of the process) or -errno with err filled.
 */
int spool_dir_lock(const char *dir, char *err, size_t err_len);

struct spool *spool_open(const struct spool_params *p, char *err, size_t err_len);
void spool_close(struct spool *sp);

/* Queues a finished record (see spool_record_finish) for the next batch. */
void spool_append(struct spool *sp, char *rec, size_t len, uint64_t owner);

/* Starts a batch if records are queued and none is in flight. ud_base's low 8 bits must be
 * zero: the spool ORs SPOOL_UD_WRITE / SPOOL_UD_SYNC into them. Returns true if it did.
 * When no segment can be opened the batch fails at once: done is called with -errno. */
bool spool_flush(struct spool *sp, struct io_uring *ring, uint64_t ud_base, spool_done_fn done,
		 void *arg);

/* Handles a completion of ours; calls done once per record once its batch is settled. */
void spool_complete(struct spool *sp, struct io_uring *ring, uint64_t ud_base,
		    const struct io_uring_cqe *cqe, spool_done_fn done, void *arg);

/* The segment records go to now (0 before the first batch). A segment whose number is lower
 * is closed: nothing more is ever written to it. */
uint32_t spool_current_seq(const struct spool *sp);

/* Removes segment seq and its completion log (seg-N.rmx, seg-N.done) from dir. Returns 0 or
 * -errno (-ENOENT is not an error). */
int spool_segment_remove(int dirfd, uint32_t seq);

/* The open directory fd of the spool (for spool_segment_remove). */
int spool_dirfd(const struct spool *sp);

/* True while records are queued or a batch is in flight (graceful stop waits for this). */
bool spool_busy(const struct spool *sp);

struct spool_stats {
	uint64_t batches, records, bytes, errors, segments_opened;
};
void spool_stats_get(const struct spool *sp, struct spool_stats *out);

#endif
