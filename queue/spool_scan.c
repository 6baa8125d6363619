/*
 * spool_scan — walks the segment files of a spool directory and replays their records.
 *
 * Each segment is mapped read-only and decoded record by record. The scanner never trusts a
 * length it has not validated: when the bytes at an offset do not decode, it looks for the
 * next offset that holds a complete record with a good CRC, so that one torn or corrupt write
 * costs only the bytes it spoiled and never the acknowledged messages written after it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/spool_scan.h"

#define SPOOL_SEGMENT_NAME_LEN 18 /* "seg-" + 10 digits + ".rmx" */

bool
spool_segment_name_parse(const char *name, uint32_t *seq)
{
	uint64_t v = 0;

	ASSERT(name != NULL && seq != NULL);
	if (strlen(name) != SPOOL_SEGMENT_NAME_LEN || memcmp(name, "seg-", 4) != 0 ||
	    memcmp(name + 14, ".rmx", 4) != 0)
		return false;
	for (int i = 4; i < 14; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	/* Ten digits reach 9999999999; only what the writer's u32 sequence can produce counts. */
	if (v > UINT32_MAX)
		return false;
	*seq = (uint32_t)v;
	return true;
}

static void
spool_scan_problem(const struct spool_scan_ops *ops, const char *path, uint64_t offset,
		   uint64_t skipped, const char *what)
{
	if (ops->on_problem != NULL)
		ops->on_problem(ops->arg, path, offset, skipped, what);
}

/*
 * Returns the first offset in [from, size) where a complete, valid record starts, or size
 * when there is none. Only offsets holding the magic are tried; the decoder rejects most
 * false hits on their header alone, before any CRC is computed.
 */
static size_t
spool_scan_resync(const char *base, size_t size, size_t from)
{
	const unsigned char magic[4] = {
	    SPOOL_RECORD_MAGIC & 0xff,
	    (SPOOL_RECORD_MAGIC >> 8) & 0xff,
	    (SPOOL_RECORD_MAGIC >> 16) & 0xff,
	    SPOOL_RECORD_MAGIC >> 24,
	};
	struct spool_record_view v;

	while (from < size) {
		const char *hit = memmem(base + from, size - from, magic, sizeof(magic));

		if (hit == NULL)
			return size;
		from = (size_t)(hit - base);
		if (spool_record_decode(hit, size - from, &v) > 0)
			return from;
		from++;
	}
	return size;
}

/*
 * Decodes base[0..size), one segment's bytes. A region that does not decode is reported
 * once: as a truncated tail when it is a record cut short by the end of the file (a write
 * torn by a crash), as a corrupt record otherwise (bad bytes, or valid records after it).
 */
static void
spool_scan_bytes(const char *path, const char *base, size_t size, const struct spool_scan_ops *ops,
		 struct spool_scan_stats *st)
{
	size_t off = 0;

	while (off < size) {
		struct spool_record_view v;
		long r = spool_record_decode(base + off, size - off, &v);
		size_t next;
		bool tail;

		if (r > 0) {
			ASSERT((size_t)r <= size - off);
			st->records++;
			st->record_bytes += (uint64_t)r;
			if (ops->on_record != NULL)
				ops->on_record(ops->arg, path, off, &v);
			off += (size_t)r;
			continue;
		}
		next = spool_scan_resync(base, size, off + 1);
		tail = r == 0 && next == size;
		if (tail)
			st->truncated_tails++;
		else
			st->corrupt_regions++;
		st->skipped_bytes += next - off;
		spool_scan_problem(ops, path, off, next - off,
				   tail ? "truncated tail" : "corrupt record");
		off = next;
	}
}

/* Maps one segment and scans it; a segment that cannot be read is reported and skipped. */
static void
spool_scan_segment(int dfd, const char *dir, uint32_t seq, const struct spool_scan_ops *ops,
		   struct spool_scan_stats *st)
{
	char name[32], path[PATH_MAX], what[128];
	struct stat sb;
	void *base = NULL;
	int fd, n;

	snprintf(name, sizeof(name), SPOOL_SEGMENT_FMT, seq);
	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		spool_scan_problem(ops, name, 0, 0, "path too long, segment skipped");
		return;
	}
	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		snprintf(what, sizeof(what), "cannot read segment: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(what, sizeof(what), "not a regular file, segment skipped");
		goto fail;
	}
	if (sb.st_size > 0) {
		base = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (base == MAP_FAILED) {
			snprintf(what, sizeof(what), "cannot map segment: %s", strerror(errno));
			goto fail;
		}
	}
	close(fd); /* the mapping keeps the file's pages */
	st->segments++;
	spool_scan_bytes(path, base, (size_t)sb.st_size, ops, st);
	if (base != NULL)
		munmap(base, (size_t)sb.st_size);
	return;
fail:
	if (fd >= 0)
		close(fd);
	spool_scan_problem(ops, path, 0, 0, what);
}

static int
spool_scan_seq_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Collects the sequence numbers of the segment files in d, sorted; *seqs is the caller's. */
static int
spool_scan_list(DIR *d, uint32_t **seqs, size_t *nseq)
{
	uint32_t *v = NULL, seq;
	size_t n = 0, cap = 0;
	struct dirent *de;

	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL)
			break;
		if (!spool_segment_name_parse(de->d_name, &seq))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			uint32_t *nv = realloc(v, ncap * sizeof(*v));

			if (nv == NULL) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap = ncap;
		}
		v[n++] = seq;
	}
	if (errno != 0) {
		int err = errno;

		free(v);
		return -err;
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), spool_scan_seq_cmp);
	*seqs = v;
	*nseq = n;
	return 0;
}

int
spool_scan_dir(const char *dir, const struct spool_scan_ops *ops, struct spool_scan_stats *st)
{
	uint32_t *seqs = NULL;
	size_t nseq = 0;
	DIR *d;
	int r;

	ASSERT(dir != NULL && ops != NULL && st != NULL);
	memset(st, 0, sizeof(*st));
	d = opendir(dir);
	if (d == NULL)
		return -errno;
	r = spool_scan_list(d, &seqs, &nseq);
	if (r < 0) {
		closedir(d);
		return r;
	}
	for (size_t i = 0; i < nseq; i++) {
		/* A segment that cannot be read still holds its number: it must not be reused. */
		if (seqs[i] > st->max_seq)
			st->max_seq = seqs[i];
		spool_scan_segment(dirfd(d), dir, seqs[i], ops, st);
	}
	free(seqs);
	closedir(d);
	return 0;
}
