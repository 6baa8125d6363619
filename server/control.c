#include "server/control.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "queue/ctl.h"
#include "server/assert.h"
#include "server/log.h"
#include "server/loop.h"
#include "server/shard.h"

#define CONTROL_BACKLOG 16
#define CONTROL_DRAIN_MS 100
#define CONTROL_DRAIN_MAX (1 << 20)

struct control {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;	     /* the listening socket */
	int stop_fd; /* an eventfd: readable once control_stop wants the thread to end */
	pthread_t thread;
	bool thread_started;
	struct shard *const *shards;
	unsigned nshards;
	char *scratch; /* one shard's answer, CTL_SHARD_ANSWER_MAX bytes */
};

/* Whether a process accepts connections on the unix socket at path. */
static bool
socket_is_live(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0;
	close(fd);
	return live;
}

/* Clears the way for bind: removes a stale socket; refuses a live one or a non-socket. */
static int
control_clear_path(const struct sockaddr_un *sun, char *err, size_t err_len)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) < 0) {
		int e = errno;
		if (e == ENOENT)
			return 0;
		snprintf(err, err_len, "control socket %s: %s", sun->sun_path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, err_len,
			 "control socket %s: the path exists and is not a socket "
			 "(remove it, or set [server] control_socket)",
			 sun->sun_path);
		return -EEXIST;
	}
	if (socket_is_live(sun)) {
		snprintf(err, err_len,
			 "control socket %s is in use by a running process (another "
			 "ringmx?); stop it, or set [server] control_socket",
			 sun->sun_path);
		return -EADDRINUSE;
	}
	if (unlink(sun->sun_path) < 0 && errno != ENOENT) {
		int e = errno;
		snprintf(err, err_len, "control socket %s: cannot remove the stale one: %s",
			 sun->sun_path, strerror(e));
		return -e;
	}
	return 0;
}

struct control *
control_open(const char *path, char *err, size_t err_len)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof sun.sun_path) {
		snprintf(err, err_len, "control socket %s: the path must be 1 to %zu bytes", path,
			 sizeof sun.sun_path - 1);
		return NULL;
	}
	memcpy(sun.sun_path, path, len + 1);
	if (control_clear_path(&sun, err, err_len) < 0)
		return NULL;
	struct control *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	memcpy(c->path, path, len + 1);
	c->stop_fd = -1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		snprintf(err, err_len, "control socket %s: socket: %s", path, strerror(errno));
		free(c);
		return NULL;
	}
	/* bind creates it with the umask's mode; chmod at once. Before the chmod only users the
	 * umask lets write to it could connect; the spool directory (0700) guards the default. */
	if (bind(c->fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		snprintf(err, err_len, "control socket %s: %s", path, strerror(errno));
		close(c->fd);
		free(c);
		return NULL;
	}
	if (chmod(path, 0600) < 0 || listen(c->fd, CONTROL_BACKLOG) < 0 ||
	    (c->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		snprintf(err, err_len, "control socket %s: %s", path, strerror(errno));
		control_stop(c);
		return NULL;
	}
	if (!(c->scratch = malloc(CTL_SHARD_ANSWER_MAX))) {
		snprintf(err, err_len, "control socket %s: out of memory", path);
		control_stop(c);
		return NULL;
	}
	return c;
}

/* Waits until fd is ready for events, or the stop or the deadline comes. True when ready. */
static bool
control_wait(struct control *c, int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		uint64_t now = loop_clock_ms();
		if (deadline_ms != UINT64_MAX && now >= deadline_ms)
			return false;
		int tmo = deadline_ms == UINT64_MAX ? -1 : (int)(deadline_ms - now);
		struct pollfd p[2] = {{.fd = fd, .events = events},
				      {.fd = c->stop_fd, .events = POLLIN}};
		int n = poll(p, 2, tmo);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[1].revents)
			return false;
		if (p[0].revents)
			return true;
	}
}

/* Reads the request line into req (NUL-terminated, without the '\n'). Returns its length, or
 * -1 (the client went away, or the daemon stops), -2 (too long) or -3 (too slow). */
static long
control_read(struct control *c, int fd, char *req, size_t cap)
{
	uint64_t deadline = loop_clock_ms() + CTL_TIMEOUT_MS;
	size_t len = 0;
	for (;;) {
		if (!control_wait(c, fd, POLLIN, deadline))
			return loop_clock_ms() >= deadline ? -3 : -1;
		ssize_t n = recv(fd, req + len, cap - 1 - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -1;
		char *nl = memchr(req + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			len = (size_t)(nl - req);
			break;
		}
		if (n == 0)
			break; /* no '\n': the line is what came before the end */
		if (len == cap - 1)
			return -2;
	}
	if (len > 0 && req[len - 1] == '\r')
		len--;
	req[len] = '\0';
	return (long)len;
}

static void
control_write(struct control *c, int fd, const char *p, size_t n)
{
	uint64_t deadline = loop_clock_ms() + CTL_TIMEOUT_MS;
	while (n > 0) {
		if (!control_wait(c, fd, POLLOUT, deadline))
			return;
		ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Reads what the client sent beyond its request, until it closes its side or is quiet for
 * CONTROL_DRAIN_MS: closing a unix socket with unread input resets it, and the client would
 * lose the answer. */
static void
control_drain(int fd)
{
	char buf[4096];
	size_t total = 0;
	while (total < CONTROL_DRAIN_MAX) {
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			total += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, CONTROL_DRAIN_MS) <= 0)
			return;
	}
}

static void
control_answer_error(struct control *c, int fd, bool json, const char *msg, bool usage)
{
	char out[2048];
	size_t n = ctl_error(json, msg, out, sizeof out);
	control_write(c, fd, out, n);
	if (usage && !json)
		control_write(c, fd, ctl_usage, strlen(ctl_usage));
}

/* Asks every shard; merges. Returns the merged answer (malloc'ed, *len bytes) or NULL with
 * err filled. */
static char *
control_ask(struct control *c, const struct ctl_req *r, const char *req, size_t *len, char *err,
	    size_t err_len)
{
	char **ans = calloc(c->nshards, sizeof *ans);
	size_t *alen = calloc(c->nshards, sizeof *alen);
	char *out = NULL;
	size_t total = 0;
	unsigned i;
	if (!ans || !alen) {
		snprintf(err, err_len, "out of memory");
		goto done;
	}
	for (i = 0; i < c->nshards; i++) {
		long n = shard_ctl(c->shards[i], req, c->scratch, CTL_SHARD_ANSWER_MAX);
		if (n < 0) {
			snprintf(err, err_len, "shard %u did not answer within %d s", i,
				 SHARD_CTL_TIMEOUT_MS / 1000);
			goto done;
		}
		if (!(ans[i] = malloc(n ? (size_t)n : 1))) {
			snprintf(err, err_len, "out of memory");
			goto done;
		}
		memcpy(ans[i], c->scratch, (size_t)n);
		alen[i] = (size_t)n;
		total += (size_t)n;
	}
	size_t cap = total + CTL_MERGE_EXTRA;
	if (!(out = malloc(cap))) {
		snprintf(err, err_len, "out of memory");
		goto done;
	}
	*len = ctl_merge(r, (const char *const *)ans, alen, c->nshards, out, cap);
done:
	for (i = 0; ans && i < c->nshards; i++)
		free(ans[i]);
	free(ans);
	free(alen);
	return out;
}

static void
control_serve(struct control *c, int fd)
{
	char req[CTL_REQ_MAX + 1], err[512];
	long n = control_read(c, fd, req, sizeof req);
	if (n == -2 || n == -3) {
		snprintf(err, sizeof err,
			 n == -2 ? "request too long (at most %d bytes)"
				 : "no request line within %d s",
			 n == -2 ? CTL_REQ_MAX : CTL_TIMEOUT_MS / 1000);
		log_msg(LOG_WARN, "ctl", "%s", err);
		control_answer_error(c, fd, false, err, false);
		return;
	}
	if (n < 0)
		return;
	struct ctl_req r;
	int rc = ctl_parse(req, (size_t)n, &r, err, sizeof err);
	if (log_start(rc == 0 ? LOG_INFO : LOG_WARN, "ctl")) {
		log_strn("request", req, (size_t)n);
		if (rc < 0)
			log_str("error", err);
		log_finish();
	}
	if (rc < 0) {
		control_answer_error(c, fd, r.json, err, true);
		return;
	}
	size_t len = 0;
	char *out = control_ask(c, &r, req, &len, err, sizeof err);
	if (!out) {
		log_msg(LOG_WARN, "ctl_failed", "%s", err);
		control_answer_error(c, fd, r.json, err, false);
		return;
	}
	control_write(c, fd, out, len);
	free(out);
}

static void *
control_main(void *arg)
{
	struct control *c = arg;
	log_thread_init(-1, false);
	while (control_wait(c, c->fd, POLLIN, UINT64_MAX)) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				log_msg(LOG_WARN, "ctl_accept", "%s", strerror(errno));
				usleep(100 * 1000); /* EMFILE and the like: do not spin */
			}
			continue;
		}
		control_serve(c, fd);
		shutdown(fd, SHUT_WR);
		control_drain(fd);
		close(fd);
	}
	return NULL;
}

int
control_start(struct control *c, struct shard *const *shards, unsigned nshards, char *err,
	      size_t err_len)
{
	ASSERT(nshards > 0);
	c->shards = shards;
	c->nshards = nshards;
	int rc = pthread_create(&c->thread, NULL, control_main, c);
	if (rc != 0) {
		snprintf(err, err_len, "control thread: %s", strerror(rc));
		return -rc;
	}
	c->thread_started = true;
	return 0;
}

void
control_stop(struct control *c)
{
	if (!c)
		return;
	if (c->thread_started) {
		uint64_t one = 1;
		ssize_t w = write(c->stop_fd, &one, sizeof one);
		(void)w;
		pthread_join(c->thread, NULL);
	}
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	free(c->scratch);
	free(c);
}
