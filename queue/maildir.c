/*
 * maildir — delivery into a Maildir (the steps and the file name are in maildir.h).
 *
 * The mailbox directory is opened once and everything inside it is reached relative to that
 * descriptor (openat, renameat2), so a path is resolved once per delivery and a mailbox that
 * is replaced by a symbolic link while we work cannot send the file elsewhere. Directories are
 * created only when the fast path finds them missing, which happens once per mailbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/assert.h"
#include "queue/maildir.h"

#define HOST_MAX 253 /* a DNS name */
#define QID_LEN 16
#define DIR_MODE 0700
#define FILE_MODE 0600

static const char *const SUBDIRS[] = {"tmp", "new", "cur"};

/* Deliveries by this process, for unique names (shard threads share it). */
static atomic_ulong maildir_seq;

_Static_assert(MAILDIR_WRITE_CHUNK >= 4096, "a useful write size");
/* The fixed part of a unique name takes about 90 bytes, so a host name longer than about 160
 * (or one with many '/' or ':', written as 4 bytes each) does not fit in NAME_MAX: checked at
 * run time, where it fails every delivery with ENAMETOOLONG and names the host. */

__attribute__((format(printf, 4, 5))) static int
fail(int code, char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	ASSERT(code < 0);
	if (err_len > 0) {
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return code;
}

int
maildir_name(const char *local, size_t len, char out[MAILDIR_NAME_MAX + 1])
{
	if (len == 0 || len > MAILDIR_NAME_MAX || local[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)local[i];

		if (c < 0x20 || c == 0x7f || c == '/')
			return -EINVAL;
		if (c == '.' && i + 1 < len && local[i + 1] == '.')
			return -EINVAL;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	out[len] = '\0';
	return 0;
}

/* An envelope address fit for a header line: no CR, LF or NUL. */
static bool
addr_ok(struct spool_str a)
{
	for (size_t i = 0; i < a.len; i++)
		if (a.p[i] == '\r' || a.p[i] == '\n' || a.p[i] == '\0')
			return false;
	return true;
}

/* fsync()s the directory dfd, or the one at path when dfd < 0. Returns 0 or -errno. */
static int
fsync_dir(int dfd, const char *path)
{
	int fd = dfd >= 0 ? dfd : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	if (dfd < 0)
		close(fd);
	return r;
}

/* Creates root (one level) when missing and fsyncs its parent. */
static int
make_root(const char *root, char *err, size_t err_len)
{
	char parent[PATH_MAX];
	size_t n = strlen(root);

	if (mkdir(root, DIR_MODE) < 0) {
		if (errno == EEXIST)
			return 0;
		return fail(-errno, err, err_len, "cannot create %s: %s", root, strerror(errno));
	}
	while (n > 1 && root[n - 1] == '/')
		n--;
	while (n > 0 && root[n - 1] != '/')
		n--;
	while (n > 1 && root[n - 1] == '/')
		n--;
	snprintf(parent, sizeof parent, "%.*s", (int)n, n ? root : ".");
	int r = fsync_dir(-1, parent);
	if (r < 0)
		return fail(r, err, err_len, "cannot sync %s: %s", parent, strerror(-r));
	return 0;
}

/* Creates tmp, new and cur in the mailbox mfd where missing, then fsyncs the mailbox. */
static int
make_subdirs(int mfd, const char *box, char *err, size_t err_len)
{
	for (size_t i = 0; i < sizeof SUBDIRS / sizeof SUBDIRS[0]; i++)
		if (mkdirat(mfd, SUBDIRS[i], DIR_MODE) < 0 && errno != EEXIST)
			return fail(-errno, err, err_len, "cannot create %s/%s: %s", box,
				    SUBDIRS[i], strerror(errno));
	int r = fsync_dir(mfd, NULL);
	if (r < 0)
		return fail(r, err, err_len, "cannot sync %s: %s", box, strerror(-r));
	return 0;
}

/*
 * Opens the mailbox directory box (root/name), creating root, it and its subdirectories when
 * it is missing. Returns the descriptor or -errno.
 */
static int
mailbox_open(const char *root, const char *box, char *err, size_t err_len)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd = open(box, flags);
	int r;

	if (fd >= 0)
		return fd;
	if (errno != ENOENT)
		return fail(-errno, err, err_len, "cannot open %s: %s", box, strerror(errno));
	if ((r = make_root(root, err, err_len)) < 0)
		return r;
	if (mkdir(box, DIR_MODE) == 0) {
		if ((r = fsync_dir(-1, root)) < 0)
			return fail(r, err, err_len, "cannot sync %s: %s", root, strerror(-r));
	} else if (errno != EEXIST) {
		return fail(-errno, err, err_len, "cannot create %s: %s", box, strerror(errno));
	}
	fd = open(box, flags);
	if (fd < 0)
		return fail(-errno, err, err_len, "cannot open %s: %s", box, strerror(errno));
	if ((r = make_subdirs(fd, box, err, err_len)) < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* Bytes of the file: the two header lines and the message with each CRLF made LF. */
static size_t
file_size(const struct maildir_params *p)
{
	size_t n = sizeof "Return-Path: <>\n" - 1 + p->sender.len + sizeof "Delivered-To: \n" - 1 +
		   p->rcpt.len + p->msg_len;
	const char *s = p->msg, *end = p->msg + p->msg_len;

	while (s < end && (s = memchr(s, '\n', (size_t)(end - s)))) {
		if (s > p->msg && s[-1] == '\r')
			n--;
		s++;
	}
	return n;
}

/* The unique file name (see maildir.h). Returns 0, or -ENAMETOOLONG. */
static int
unique_name(char out[NAME_MAX + 1], const struct maildir_params *p, size_t size)
{
	struct timespec ts;
	unsigned long seq = atomic_fetch_add_explicit(&maildir_seq, 1, memory_order_relaxed);
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(out, NAME_MAX + 1, "%lld.M%ldP%ldQ%s_%lu.", (long long)ts.tv_sec,
		     ts.tv_nsec / 1000, (long)getpid(), p->qid, seq);
	ASSERT(n > 0 && n < NAME_MAX);
	for (const char *h = p->host; *h; h++) {
		const char *enc = *h == '/' ? "\\057" : *h == ':' ? "\\072" : NULL;
		int k = enc ? snprintf(out + n, (size_t)(NAME_MAX + 1 - n), "%s", enc)
			    : snprintf(out + n, (size_t)(NAME_MAX + 1 - n), "%c", *h);
		if (k >= NAME_MAX + 1 - n)
			return -ENAMETOOLONG;
		n += k;
	}
	if (snprintf(out + n, (size_t)(NAME_MAX + 1 - n), ",S=%zu", size) >= NAME_MAX + 1 - n)
		return -ENAMETOOLONG;
	return 0;
}

/* Writes all of buf[0..n) to fd. Returns 0 or -errno. */
static int
write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copies len bytes of s to buf + off (s may be NULL when len is 0); returns the new end. */
static size_t
put(char *buf, size_t off, const char *s, size_t len)
{
	if (len)
		memcpy(buf + off, s, len);
	return off + len;
}

/*
 * Writes the header lines and the message (CRLF → LF) to fd through one buffer of at most
 * MAILDIR_WRITE_CHUNK bytes. Returns 0 or -errno (-ENOMEM, or the write's).
 */
static int
write_message(int fd, const struct maildir_params *p, size_t size)
{
	size_t cap = size < MAILDIR_WRITE_CHUNK ? size : MAILDIR_WRITE_CHUNK;
	size_t hdr = sizeof "Return-Path: <>\nDelivered-To: \n" - 1 + p->sender.len + p->rcpt.len;
	char *buf;
	size_t n = 0;
	int r = 0;

	ASSERT(hdr <= size);
	if (hdr > cap)
		cap = hdr; /* addresses are bounded by the spool (SPOOL_STR_MAX) */
	buf = malloc(cap ? cap : 1);
	if (!buf)
		return -ENOMEM;
	n = put(buf, 0, "Return-Path: <", 14);
	n = put(buf, n, p->sender.p, p->sender.len);
	n = put(buf, n, ">\nDelivered-To: ", 16);
	n = put(buf, n, p->rcpt.p, p->rcpt.len);
	n = put(buf, n, "\n", 1);
	ASSERT(n == hdr);
	for (size_t i = 0; i < p->msg_len && r == 0; i++) {
		char c = p->msg[i];

		if (c == '\r' && i + 1 < p->msg_len && p->msg[i + 1] == '\n')
			continue;
		if (n == cap) {
			r = write_all(fd, buf, n);
			n = 0;
		}
		buf[n++] = c;
	}
	if (r == 0)
		r = write_all(fd, buf, n);
	free(buf);
	return r;
}

/*
 * Creates tmp/<name> in the mailbox, writes and fsyncs it. Returns 0 or -errno; on failure
 * the file is gone.
 */
static int
write_tmp(int mfd, const char *box, const char *tmp, const struct maildir_params *p, size_t size,
	  char *err, size_t err_len)
{
	const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	int fd = openat(mfd, tmp, flags, FILE_MODE);
	int r;

	if (fd < 0 && errno == ENOENT) { /* a mailbox without tmp/ */
		if ((r = make_subdirs(mfd, box, err, err_len)) < 0)
			return r;
		fd = openat(mfd, tmp, flags, FILE_MODE);
	}
	if (fd < 0)
		return fail(-errno, err, err_len, "cannot create %s/%s: %s", box, tmp,
			    strerror(errno));
	r = write_message(fd, p, size);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		unlinkat(mfd, tmp, 0);
		return fail(r, err, err_len, "cannot write %s/%s: %s", box, tmp, strerror(-r));
	}
	return 0;
}

/* Moves tmp/<name> to new/<name> without replacing anything there. Returns 0 or -errno. */
static int
move_to_new(int mfd, const char *tmp, const char *new)
{
	if (renameat2(mfd, tmp, mfd, new, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* A file system without RENAME_NOREPLACE: the name is unique, a plain rename is safe. */
	return renameat(mfd, tmp, mfd, new) == 0 ? 0 : -errno;
}

/* Renames the written file into new/ and makes that durable. Returns 0 or -errno. */
static int
publish(int mfd, const char *box, const char *tmp, const char *new, char *err, size_t err_len)
{
	int r = move_to_new(mfd, tmp, new);

	if (r == -ENOENT) { /* a mailbox without new/ */
		if ((r = make_subdirs(mfd, box, err, err_len)) < 0) {
			unlinkat(mfd, tmp, 0);
			return r;
		}
		r = move_to_new(mfd, tmp, new);
	}
	if (r < 0) {
		unlinkat(mfd, tmp, 0);
		return fail(r, err, err_len, "cannot move %s/%s to new/: %s", box, tmp,
			    strerror(-r));
	}
	int nfd = openat(mfd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (nfd < 0 || fsync(nfd) < 0)
		r = -errno;
	if (nfd >= 0)
		close(nfd);
	if (r < 0) {
		/* Not known to be durable: take it back so that the retry does not duplicate it. */
		unlinkat(mfd, new, 0);
		return fail(r, err, err_len, "cannot sync %s/new: %s", box, strerror(-r));
	}
	return 0;
}

static void
check_params(const struct maildir_params *p)
{
	size_t hl;

	ASSERT(p->root && p->root[0]);
	ASSERT(p->host && p->qid);
	hl = strlen(p->host);
	ASSERT(hl >= 1 && hl <= HOST_MAX);
	for (size_t i = 0; i < hl; i++)
		ASSERT(p->host[i] > 0x20 && p->host[i] < 0x7f);
	ASSERT(strlen(p->qid) == QID_LEN && strspn(p->qid, "0123456789abcdefABCDEF") == QID_LEN);
	ASSERT(p->local.p || p->local.len == 0);
	ASSERT(p->sender.p || p->sender.len == 0);
	ASSERT(p->rcpt.p || p->rcpt.len == 0);
	ASSERT(p->msg || p->msg_len == 0);
	ASSERT(p->sender.len <= SPOOL_STR_MAX && p->rcpt.len <= SPOOL_STR_MAX);
}

int
maildir_deliver(const struct maildir_params *p, char *err, size_t err_len)
{
	char name[MAILDIR_NAME_MAX + 1], box[PATH_MAX];
	char uniq[NAME_MAX + 1], tmp[NAME_MAX + 5], new[NAME_MAX + 5];
	int r, mfd;

	ASSERT(p);
	check_params(p);
	if (maildir_name(p->local.p, p->local.len, name) < 0)
		return fail(-EINVAL, err, err_len, "invalid mailbox name");
	if (!addr_ok(p->sender) || !addr_ok(p->rcpt))
		return fail(-EINVAL, err, err_len, "envelope address holds CR, LF or NUL");
	if (snprintf(box, sizeof box, "%s/%s", p->root, name) >= (int)sizeof box)
		return fail(-ENAMETOOLONG, err, err_len, "%s/%s: path too long", p->root, name);

	size_t size = file_size(p);
	if ((r = unique_name(uniq, p, size)) < 0)
		return fail(r, err, err_len, "file name for host %s too long", p->host);
	snprintf(tmp, sizeof tmp, "tmp/%s", uniq);
	snprintf(new, sizeof new, "new/%s", uniq);

	if ((mfd = mailbox_open(p->root, box, err, err_len)) < 0)
		return mfd;
	r = write_tmp(mfd, box, tmp, p, size, err, err_len);
	if (r == 0)
		r = publish(mfd, box, tmp, new, err, err_len);
	close(mfd);
	return r;
}
