/*
 * spool_scan — replays the segment files of a spool directory (start-up recovery, tools).
 *
 * Segment files are named seg-NNNNNNNNNN.rmx (a 10-digit sequence number, unique across
 * shards) and are scanned in sequence order. Every record with a valid checksum is passed to
 * on_record. A torn or corrupt region is reported to on_problem and skipped: the scanner
 * resynchronises on the next offset that decodes as a valid record, so one bad write never
 * hides the records after it. Nothing is ever modified.
 *
 * Failure: spool_scan_dir() returns 0, or -errno when the directory cannot be read (a segment
 * that cannot be opened is reported through on_problem and skipped).
 */
#ifndef RINGMX_SPOOL_SCAN_H
#define RINGMX_SPOOL_SCAN_H

#include <stdint.h>
#include "queue/spool_record.h"

#define SPOOL_SEGMENT_FMT "seg-%010u.rmx"
/* A segment's completion log (queue/journal.h): the recipients done, written by delivery. */
#define SPOOL_DONE_FMT "seg-%010u.done"

struct spool_scan_stats {
	uint64_t segments;
	uint64_t records;
	uint64_t record_bytes;
	uint64_t corrupt_regions; /* bad records in the middle of a segment */
	uint64_t truncated_tails; /* a segment that ends inside a record */
	uint64_t skipped_bytes;
	uint32_t max_seq;         /* highest segment sequence number seen, 0 if none */
};

struct spool_scan_ops {
	void (*on_record)(void *arg, const char *path, uint64_t offset,
			  const struct spool_record_view *rec);
	void (*on_problem)(void *arg, const char *path, uint64_t offset, uint64_t skipped,
			   const char *what);
	void *arg;
};

int spool_scan_dir(const char *dir, const struct spool_scan_ops *ops, struct spool_scan_stats *st);

/* Parses a segment file name; returns true with *seq set when it is one. */
bool spool_segment_name_parse(const char *name, uint32_t *seq);

#endif
