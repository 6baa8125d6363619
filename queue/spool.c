#include "queue/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/spool_scan.h"

/* writev takes at most IOV_MAX pieces; a larger group waits for the next batch. */
#define SPOOL_BATCH_MAX 1024

struct spool_rec {
	char *buf;
	size_t len;
	uint64_t owner;
	uint64_t off; /* where it lands in the segment */
};

struct spool_recs {
	struct spool_rec *v;
	unsigned n, cap;
};

struct spool {
	char dir[PATH_MAX];
	int dirfd;
	unsigned shard;
	uint64_t segment_size;
	bool fsync;
	_Atomic uint32_t *next_seq;

	int fd;       /* current segment, -1 before the first batch */
	uint32_t seq;
	uint64_t off; /* end of the committed part of the segment */
	bool broken;  /* the last batch failed: start a new segment before the next */

	struct spool_recs queued;
	struct spool_recs batch;
	struct iovec iov[SPOOL_BATCH_MAX];
	unsigned iov_first;   /* first iovec not yet fully written */
	size_t batch_bytes, batch_written;
	unsigned cqes_pending;
	int batch_err;
	bool in_flight;

	struct spool_stats stats;
};

int
spool_dir_lock(const char *dir, char *err, size_t err_len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/ringmx.lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, err_len, "%s: the spool is in use by another ringmx (pid %s)",
				 dir, pid[0] ? pid : "unknown");
		else
			snprintf(err, err_len, "%s: cannot lock: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* The lock holds without the pid; the pid is only for the message above. */
	}
	return fd;
}

struct spool *
spool_open(const struct spool_params *p, char *err, size_t err_len)
{
	struct spool *sp = calloc(1, sizeof *sp);
	if (!sp) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	snprintf(sp->dir, sizeof sp->dir, "%s", p->dir);
	sp->shard = p->shard;
	sp->segment_size = p->segment_size;
	sp->fsync = p->fsync;
	sp->next_seq = p->next_seq;
	sp->fd = -1;
	sp->dirfd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0) {
		snprintf(err, err_len, "%s: cannot open spool directory: %s", p->dir, strerror(errno));
		free(sp);
		return NULL;
	}
	return sp;
}

static void
spool_recs_free(struct spool_recs *r)
{
	for (unsigned i = 0; i < r->n; i++)
		free(r->v[i].buf);
	free(r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}

void
spool_close(struct spool *sp)
{
	if (!sp)
		return;
	ASSERT(!sp->in_flight);
	spool_recs_free(&sp->queued);
	spool_recs_free(&sp->batch);
	if (sp->fd >= 0)
		close(sp->fd);
	close(sp->dirfd);
	free(sp);
}

void
spool_append(struct spool *sp, char *rec, size_t len, uint64_t owner)
{
	ASSERT(rec != NULL && len > 0);
	struct spool_recs *q = &sp->queued;
	if (q->n == q->cap) {
		unsigned cap = q->cap ? q->cap * 2 : 64;
		struct spool_rec *v = realloc(q->v, cap * sizeof *v);
		ASSERT(v != NULL); /* jemalloc; out of memory here is not survivable anyway */
		q->v = v;
		q->cap = cap;
	}
	q->v[q->n++] = (struct spool_rec){.buf = rec, .len = len, .owner = owner};
}

bool
spool_busy(const struct spool *sp)
{
	return sp->in_flight || sp->queued.n > 0;
}

/* Opens the next segment. The directory is synced so the new name survives a power cut. */
static int
spool_segment_next(struct spool *sp)
{
	if (sp->fd >= 0) {
		close(sp->fd);
		sp->fd = -1;
		if (sp->off == 0) {
			/* Nothing was ever committed to it (its first batch failed): drop it, so a
			 * full disk does not leave a trail of empty segments. */
			char old[64];
			snprintf(old, sizeof old, SPOOL_SEGMENT_FMT, sp->seq);
			unlinkat(sp->dirfd, old, 0);
		}
	}
	uint32_t seq = atomic_fetch_add(sp->next_seq, 1);
	char name[64];
	snprintf(name, sizeof name, SPOOL_SEGMENT_FMT, seq);
	int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (sp->fsync && fsync(sp->dirfd) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	sp->fd = fd;
	sp->seq = seq;
	sp->off = 0;
	sp->broken = false;
	sp->stats.segments_opened++;
	return 0;
}

static void
spool_submit(struct spool *sp, struct io_uring *ring, uint64_t ud_base)
{
	/* The write and its fdatasync must go in one submission, or the link is lost and the
	 * sync could run before the write: make room for both first (invariant 1). */
	if (io_uring_sq_space_left(ring) < 2)
		io_uring_submit(ring);
	ASSERT(io_uring_sq_space_left(ring) >= 2);
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	ASSERT(sqe != NULL);
	unsigned n = sp->batch.n - sp->iov_first;
	io_uring_prep_writev(sqe, sp->fd, sp->iov + sp->iov_first, n, sp->off + sp->batch_written);
	io_uring_sqe_set_data64(sqe, ud_base | SPOOL_UD_WRITE);
	sp->cqes_pending = 1;
	if (!sp->fsync)
		return;
	/* Linked: the fdatasync runs only after the whole write succeeded. */
	sqe->flags |= IOSQE_IO_LINK;
	sqe = io_uring_get_sqe(ring);
	ASSERT(sqe != NULL);
	io_uring_prep_fsync(sqe, sp->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, ud_base | SPOOL_UD_SYNC);
	sp->cqes_pending = 2;
}

static void spool_settle(struct spool *sp, spool_done_fn done, void *arg);

bool
spool_flush(struct spool *sp, struct io_uring *ring, uint64_t ud_base, spool_done_fn done,
	    void *arg)
{
	if (sp->in_flight || sp->queued.n == 0)
		return false;
	ASSERT((ud_base & 0xff) == 0);
	if (sp->fd < 0 || sp->broken || sp->off >= sp->segment_size) {
		int rc = spool_segment_next(sp);
		if (rc < 0) {
			/* Fail what is queued now (451), try a new segment with the next batch. */
			sp->broken = true;
			sp->batch_err = rc;
			struct spool_recs tmp = sp->batch;
			sp->batch = sp->queued;
			sp->queued = tmp;
			sp->queued.n = 0;
			sp->in_flight = true;
			sp->cqes_pending = 0;
			spool_settle(sp, done, arg);
			return true;
		}
	}
	/* Swap queued into the batch (keeping both arrays' capacity). */
	struct spool_recs tmp = sp->batch;
	sp->batch = sp->queued;
	sp->queued = tmp;
	sp->queued.n = 0;
	if (sp->batch.n > SPOOL_BATCH_MAX) {
		for (unsigned i = SPOOL_BATCH_MAX; i < sp->batch.n; i++)
			spool_append(sp, sp->batch.v[i].buf, sp->batch.v[i].len, sp->batch.v[i].owner);
		sp->batch.n = SPOOL_BATCH_MAX;
	}
	sp->batch_bytes = 0;
	for (unsigned i = 0; i < sp->batch.n; i++) {
		struct spool_rec *r = &sp->batch.v[i];
		r->off = sp->off + sp->batch_bytes;
		sp->iov[i] = (struct iovec){.iov_base = r->buf, .iov_len = r->len};
		sp->batch_bytes += r->len;
	}
	sp->iov_first = 0;
	sp->batch_written = 0;
	sp->batch_err = 0;
	sp->in_flight = true;
	spool_submit(sp, ring, ud_base);
	return true;
}

/* Advances the iovecs past n freshly written bytes (a short write). */
static void
spool_iov_advance(struct spool *sp, size_t n)
{
	sp->batch_written += n;
	while (n > 0) {
		struct iovec *v = &sp->iov[sp->iov_first];
		if (n < v->iov_len) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		sp->iov_first++;
	}
}

static void
spool_settle(struct spool *sp, spool_done_fn done, void *arg)
{
	int status = sp->batch_err;
	if (status == 0) {
		sp->off += sp->batch_bytes;
		sp->stats.batches++;
		sp->stats.records += sp->batch.n;
		sp->stats.bytes += sp->batch_bytes;
	} else {
		sp->broken = true;
		sp->stats.errors++;
	}
	sp->in_flight = false;
	for (unsigned i = 0; i < sp->batch.n; i++) {
		struct spool_rec *r = &sp->batch.v[i];
		done(arg, r->owner, r->off, status);
		free(r->buf);
		r->buf = NULL;
	}
	sp->batch.n = 0;
}

void
spool_complete(struct spool *sp, struct io_uring *ring, uint64_t ud_base,
	       const struct io_uring_cqe *cqe, spool_done_fn done, void *arg)
{
	ASSERT(sp->in_flight && sp->cqes_pending > 0);
	unsigned sub = (unsigned)(cqe->user_data & 0xff);
	int res = cqe->res;
	if (sub == SPOOL_UD_WRITE) {
		if (res < 0 && sp->batch_err == 0)
			sp->batch_err = res;
		else if (res > 0)
			spool_iov_advance(sp, (size_t)res);
		if (res == 0 && sp->batch_written < sp->batch_bytes && sp->batch_err == 0)
			sp->batch_err = -EIO; /* a zero-length write would loop forever */
	} else {
		ASSERT(sub == SPOOL_UD_SYNC);
		/* -ECANCELED only means the write before it was short: retried below. */
		if (res < 0 && res != -ECANCELED && sp->batch_err == 0)
			sp->batch_err = res;
	}
	if (--sp->cqes_pending > 0)
		return;
	if (sp->batch_err == 0 && sp->batch_written < sp->batch_bytes) {
		spool_submit(sp, ring, ud_base); /* short write: the rest, then the sync again */
		return;
	}
	spool_settle(sp, done, arg);
}

void
spool_stats_get(const struct spool *sp, struct spool_stats *out)
{
	*out = sp->stats;
}
