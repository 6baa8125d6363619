#include "queue/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/crc32c.h"
#include "queue/spool_scan.h"

#define JOURNAL_FILES_MAX 4096 /* open logs per shard; the slot is in user_data */
#define JOURNAL_SALT 0x4a524e4cu /* "JRNL": an all-zero region is not a valid entry */

struct jbuf {
	char *p;
	size_t len, cap;
};

struct jfile {
	bool used;
	bool forgotten;
	uint8_t stream;
	uint32_t seq;
	int fd;
	uint64_t off;
	struct jbuf queued, inflight;
	unsigned cqes;
	int err;
};

struct journal {
	int dirfd[2];
	bool fsync;
	struct jfile *files;
	unsigned nfiles, cap;
	unsigned inflight;
	struct journal_stats stats;
};

struct journal *
journal_new(const struct journal_params *p)
{
	struct journal *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->dirfd[0] = p->dirfd[0];
	j->dirfd[1] = p->dirfd[1];
	j->fsync = p->fsync;
	return j;
}

static void
jfile_close(struct jfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->queued.p);
	free(f->inflight.p);
	memset(f, 0, sizeof *f);
	f->fd = -1;
}

void
journal_free(struct journal *j)
{
	if (!j)
		return;
	for (unsigned i = 0; i < j->nfiles; i++)
		if (j->files[i].used)
			jfile_close(&j->files[i]);
	free(j->files);
	free(j);
}

static struct jfile *
journal_file(struct journal *j, unsigned stream, uint32_t seq, bool create)
{
	struct jfile *free_slot = NULL;
	for (unsigned i = 0; i < j->nfiles; i++) {
		struct jfile *f = &j->files[i];
		if (!f->used) {
			if (!free_slot)
				free_slot = f;
			continue;
		}
		if (f->seq == seq && f->stream == stream && !f->forgotten)
			return f;
	}
	if (!create)
		return NULL;
	if (!free_slot) {
		if (j->nfiles == j->cap) {
			unsigned cap = j->cap ? j->cap * 2 : 16;
			if (cap > JOURNAL_FILES_MAX)
				return NULL;
			struct jfile *v = realloc(j->files, cap * sizeof *v);
			if (!v)
				return NULL;
			j->files = v;
			j->cap = cap;
		}
		free_slot = &j->files[j->nfiles++];
	}
	memset(free_slot, 0, sizeof *free_slot);
	free_slot->used = true;
	free_slot->stream = (uint8_t)stream;
	free_slot->seq = seq;
	free_slot->fd = -1;
	return free_slot;
}

void
journal_add(struct journal *j, unsigned stream, uint32_t seq, uint64_t qid, uint32_t rcpt)
{
	struct jfile *f = journal_file(j, stream, seq, true);
	if (!f) {
		j->stats.errors++;
		return;
	}
	struct jbuf *b = &f->queued;
	if (b->len + JOURNAL_ENTRY_SIZE > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		char *p = realloc(b->p, cap);
		if (!p) {
			j->stats.errors++;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	unsigned char *e = (unsigned char *)b->p + b->len;
	for (int i = 0; i < 4; i++)
		e[4 + i] = (unsigned char)(rcpt >> (8 * i));
	for (int i = 0; i < 8; i++)
		e[8 + i] = (unsigned char)(qid >> (8 * i));
	uint32_t crc = crc32c(JOURNAL_SALT, e + 4, 12);
	for (int i = 0; i < 4; i++)
		e[i] = (unsigned char)(crc >> (8 * i));
	b->len += JOURNAL_ENTRY_SIZE;
	j->stats.entries++;
}

static int
jfile_open(struct journal *j, struct jfile *f)
{
	char name[64];
	snprintf(name, sizeof name, SPOOL_DONE_FMT, f->seq);
	int fd = openat(j->dirfd[f->stream], name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* A torn tail from before a crash: start at an entry boundary after it. */
	f->off = ((uint64_t)st.st_size + JOURNAL_ENTRY_SIZE - 1) / JOURNAL_ENTRY_SIZE *
		 JOURNAL_ENTRY_SIZE;
	f->fd = fd;
	return 0;
}

void
journal_flush(struct journal *j, struct io_uring *ring, uint64_t ud_base)
{
	for (unsigned i = 0; i < j->nfiles; i++) {
		struct jfile *f = &j->files[i];
		if (!f->used || f->cqes > 0 || f->queued.len == 0 || f->forgotten)
			continue;
		if (f->fd < 0 && jfile_open(j, f) < 0) {
			j->stats.errors++;
			f->queued.len = 0;
			continue;
		}
		struct jbuf tmp = f->inflight;
		f->inflight = f->queued;
		f->queued = tmp;
		f->queued.len = 0;
		f->err = 0;
		if (io_uring_sq_space_left(ring) < 2)
			io_uring_submit(ring);
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		ASSERT(sqe != NULL);
		uint64_t ud = ud_base | ((uint64_t)i << 2);
		io_uring_prep_write(sqe, f->fd, f->inflight.p, (unsigned)f->inflight.len, f->off);
		io_uring_sqe_set_data64(sqe, ud | 1);
		f->off += f->inflight.len;
		f->cqes = 1;
		if (j->fsync) {
			sqe->flags |= IOSQE_IO_LINK;
			sqe = io_uring_get_sqe(ring);
			ASSERT(sqe != NULL);
			io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
			io_uring_sqe_set_data64(sqe, ud | 2);
			f->cqes = 2;
		}
		j->inflight++;
		j->stats.batches++;
	}
}

void
journal_complete(struct journal *j, const struct io_uring_cqe *cqe)
{
	unsigned i = (unsigned)((cqe->user_data >> 2) & ((1u << (JOURNAL_UD_BITS - 2)) - 1));
	ASSERT(i < j->nfiles);
	struct jfile *f = &j->files[i];
	ASSERT(f->used && f->cqes > 0);
	bool is_write = (cqe->user_data & 3) == 1;
	if (cqe->res < 0 && cqe->res != -ECANCELED)
		f->err = cqe->res;
	else if (is_write && (size_t)cqe->res != f->inflight.len && f->err == 0)
		f->err = -EIO; /* short: the next batch starts past the hole; entries lost */
	if (--f->cqes > 0)
		return;
	j->inflight--;
	if (f->err)
		j->stats.errors++;
	f->inflight.len = 0;
	if (f->forgotten)
		jfile_close(f);
}

void
journal_forget(struct journal *j, unsigned stream, uint32_t seq)
{
	struct jfile *f = journal_file(j, stream, seq, false);
	if (!f)
		return;
	if (f->cqes > 0) {
		f->forgotten = true;
		f->queued.len = 0;
		return;
	}
	jfile_close(f);
}

bool
journal_busy(const struct journal *j)
{
	if (j->inflight > 0)
		return true;
	for (unsigned i = 0; i < j->nfiles; i++)
		if (j->files[i].used && j->files[i].queued.len > 0 && !j->files[i].forgotten)
			return true;
	return false;
}

void
journal_stats_get(const struct journal *j, struct journal_stats *out)
{
	*out = j->stats;
}

long
journal_read(int dirfd, uint32_t seq, void (*fn)(void *arg, uint64_t qid, uint32_t rcpt),
	     void *arg)
{
	char name[64];
	snprintf(name, sizeof name, SPOOL_DONE_FMT, seq);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	long n = 0;
	unsigned char buf[JOURNAL_ENTRY_SIZE * 1024];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t o = 0; o + JOURNAL_ENTRY_SIZE <= r; o += JOURNAL_ENTRY_SIZE) {
			const unsigned char *e = buf + o;
			uint32_t crc = 0, rcpt = 0;
			uint64_t qid = 0;
			for (int i = 0; i < 4; i++) {
				crc |= (uint32_t)e[i] << (8 * i);
				rcpt |= (uint32_t)e[4 + i] << (8 * i);
			}
			for (int i = 0; i < 8; i++)
				qid |= (uint64_t)e[8 + i] << (8 * i);
			if (crc32c(JOURNAL_SALT, e + 4, 12) != crc)
				continue;
			fn(arg, qid, rcpt);
			n++;
		}
		/* reads are whole multiples of the entry size except at a torn end */
		if (r % JOURNAL_ENTRY_SIZE)
			break;
	}
	close(fd);
	return n;
}
