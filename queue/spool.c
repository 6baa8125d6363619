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
#include "queue/rec_buf.h"
#include "queue/spool_scan.h"

/* writev takes at most IOV_MAX pieces; a larger group waits for the next batch. */
#define SPOOL_BATCH_MAX 1024
/* Batches in flight at once: while one waits for its fdatasync, the next is written, so a
 * record never waits a whole sync behind records that happened to come first. */
#define SPOOL_BATCHES 2

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

struct spool_batch {
	struct spool_recs recs;
	struct iovec iov[SPOOL_BATCH_MAX];
	unsigned iov_first; /* first iovec not yet fully written */
	uint64_t off;       /* where the batch starts in the segment */
	size_t bytes, written;
	unsigned cqes_pending;
	int err;
	bool in_flight;
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
	uint64_t off; /* end of the space handed to batches: the next one starts here */
	uint64_t committed; /* bytes of this segment whose batches succeeded */
	bool broken;  /* a batch failed: start a new segment before the next */

	struct spool_recs queued;
	struct spool_batch batch[SPOOL_BATCHES];
	unsigned in_flight;

	struct spool_stats stats;
};

_Static_assert(SPOOL_BATCHES <= 4, "the batch index has two bits of user_data");

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
	ASSERT(sp->in_flight == 0);
	spool_recs_free(&sp->queued);
	for (unsigned i = 0; i < SPOOL_BATCHES; i++)
		spool_recs_free(&sp->batch[i].recs);
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
	return sp->in_flight > 0 || sp->queued.n > 0;
}

/* Opens the next segment. The directory is synced so the new name survives a power cut. */
static int
spool_segment_next(struct spool *sp)
{
	if (sp->fd >= 0) {
		close(sp->fd);
		sp->fd = -1;
		if (sp->committed == 0) {
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
	sp->committed = 0;
	sp->broken = false;
	sp->stats.segments_opened++;
	return 0;
}

static void
spool_submit(struct spool *sp, struct spool_batch *b, struct io_uring *ring, uint64_t ud_base)
{
	uint64_t ud = ud_base | ((uint64_t)(b - sp->batch) << 2);
	/* The write and its fdatasync must go in one submission, or the link is lost and the
	 * sync could run before the write: make room for both first (invariant 1). */
	if (io_uring_sq_space_left(ring) < 2)
		io_uring_submit(ring);
	ASSERT(io_uring_sq_space_left(ring) >= 2);
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	ASSERT(sqe != NULL);
	unsigned n = b->recs.n - b->iov_first;
	io_uring_prep_writev(sqe, sp->fd, b->iov + b->iov_first, n, b->off + b->written);
	io_uring_sqe_set_data64(sqe, ud | SPOOL_UD_WRITE);
	b->cqes_pending = 1;
	if (!sp->fsync)
		return;
	/* Linked: the fdatasync runs only after the whole write succeeded. */
	sqe->flags |= IOSQE_IO_LINK;
	sqe = io_uring_get_sqe(ring);
	ASSERT(sqe != NULL);
	io_uring_prep_fsync(sqe, sp->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, ud | SPOOL_UD_SYNC);
	b->cqes_pending = 2;
}

static void
spool_settle(struct spool *sp, struct spool_batch *b, spool_done_fn done, void *arg)
{
	int status = b->err;
	if (status == 0) {
		sp->committed += b->bytes;
		sp->stats.batches++;
		sp->stats.records += b->recs.n;
		sp->stats.bytes += b->bytes;
	} else {
		sp->broken = true;
		sp->stats.errors++;
	}
	b->in_flight = false;
	ASSERT(sp->in_flight > 0);
	sp->in_flight--;
	for (unsigned i = 0; i < b->recs.n; i++) {
		struct spool_rec *r = &b->recs.v[i];
		struct spool_done d = {.owner = r->owner, .seq = sp->seq, .off = r->off,
				       .rec = &r->buf, .len = r->len, .status = status};
		done(arg, &d);
		rec_buf_put(r->buf); /* unless the callback kept it */
		r->buf = NULL;
	}
	b->recs.n = 0;
}

/* Moves what is queued into batch b (at most SPOOL_BATCH_MAX records; the rest stay queued). */
static void
spool_batch_take(struct spool *sp, struct spool_batch *b)
{
	ASSERT(b->recs.n == 0 && !b->in_flight);
	struct spool_recs tmp = b->recs;
	b->recs = sp->queued;
	sp->queued = tmp;
	if (b->recs.n > SPOOL_BATCH_MAX) {
		for (unsigned i = SPOOL_BATCH_MAX; i < b->recs.n; i++)
			spool_append(sp, b->recs.v[i].buf, b->recs.v[i].len, b->recs.v[i].owner);
		b->recs.n = SPOOL_BATCH_MAX;
	}
	b->in_flight = true;
	b->err = 0;
	b->cqes_pending = 0;
	sp->in_flight++;
}

bool
spool_flush(struct spool *sp, struct io_uring *ring, uint64_t ud_base, spool_done_fn done,
	    void *arg)
{
	ASSERT((ud_base & 0xff) == 0);
	if (sp->queued.n == 0 || sp->in_flight == SPOOL_BATCHES)
		return false;
	bool rotate = sp->fd < 0 || sp->broken || sp->off >= sp->segment_size;
	if (rotate && sp->in_flight > 0)
		return false; /* the segment closes only once nothing is in flight on it */
	struct spool_batch *b = &sp->batch[0];
	while (b->in_flight)
		b++;
	if (rotate) {
		int rc = spool_segment_next(sp);
		if (rc < 0) {
			/* Fail what is queued now (451); try a new segment with the next batch. */
			sp->broken = true;
			spool_batch_take(sp, b);
			b->err = rc;
			spool_settle(sp, b, done, arg);
			return true;
		}
	}
	spool_batch_take(sp, b);
	b->off = sp->off;
	b->bytes = 0;
	for (unsigned i = 0; i < b->recs.n; i++) {
		struct spool_rec *r = &b->recs.v[i];
		r->off = b->off + b->bytes;
		b->iov[i] = (struct iovec){.iov_base = r->buf, .iov_len = r->len};
		b->bytes += r->len;
	}
	sp->off += b->bytes; /* the space is this batch's, whatever becomes of it */
	b->iov_first = 0;
	b->written = 0;
	spool_submit(sp, b, ring, ud_base);
	return true;
}

/* Advances the iovecs past n freshly written bytes (a short write). */
static void
spool_iov_advance(struct spool_batch *b, size_t n)
{
	b->written += n;
	while (n > 0) {
		struct iovec *v = &b->iov[b->iov_first];
		if (n < v->iov_len) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		b->iov_first++;
	}
}

void
spool_complete(struct spool *sp, struct io_uring *ring, uint64_t ud_base,
	       const struct io_uring_cqe *cqe, spool_done_fn done, void *arg)
{
	struct spool_batch *b = &sp->batch[(cqe->user_data >> 2) & 3];
	ASSERT(b < sp->batch + SPOOL_BATCHES && b->in_flight && b->cqes_pending > 0);
	unsigned sub = (unsigned)(cqe->user_data & 3);
	int res = cqe->res;
	if (sub == SPOOL_UD_WRITE) {
		if (res < 0 && b->err == 0)
			b->err = res;
		else if (res > 0)
			spool_iov_advance(b, (size_t)res);
		if (res == 0 && b->written < b->bytes && b->err == 0)
			b->err = -EIO; /* a zero-length write would loop forever */
	} else {
		ASSERT(sub == SPOOL_UD_SYNC);
		/* -ECANCELED only means the write before it was short: retried below. */
		if (res < 0 && res != -ECANCELED && b->err == 0)
			b->err = res;
	}
	if (--b->cqes_pending > 0)
		return;
	if (b->err == 0 && b->written < b->bytes) {
		spool_submit(sp, b, ring, ud_base); /* short write: the rest, then the sync again */
		return;
	}
	spool_settle(sp, b, done, arg);
}

uint32_t
spool_current_seq(const struct spool *sp)
{
	return sp->fd >= 0 ? sp->seq : 0;
}

int
spool_dirfd(const struct spool *sp)
{
	return sp->dirfd;
}

int
spool_segment_remove(int dirfd, uint32_t seq)
{
	char name[64];
	int rc = 0;
	snprintf(name, sizeof name, SPOOL_SEGMENT_FMT, seq);
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		rc = -errno;
	snprintf(name, sizeof name, SPOOL_DONE_FMT, seq);
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT && rc == 0)
		rc = -errno;
	return rc;
}

void
spool_stats_get(const struct spool *sp, struct spool_stats *out)
{
	*out = sp->stats;
}
