/*
 * ringmxctl — asks a running ringmx about its queue, or acts on it, over the daemon's control
 * socket ([server] control_socket). The commands and their answers: docs/ringmxctl.md.
 *
 *   ringmxctl [-s SOCKET | -c CONFIG] [--json] COMMAND [ARGS]
 *
 * The request is checked here first (queue/ctl.h), so a mistyped command never reaches the
 * daemon. The answer goes to stdout as the daemon wrote it; a text error answer goes to stderr.
 * Exit status: 0 done, 1 the daemon answered an error or could not be reached, 2 usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "queue/ctl.h"
#include "server/config.h"

#define CTL_MAIN_ANSWER_TIMEOUT_S 30 /* the daemon gives each shard 5 s: this is plenty */

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: ringmxctl [-s SOCKET | -c CONFIG] [--json] COMMAND [ARGS]\n"
		"Asks a running ringmx about its queue, or acts on it.\n"
		"  -s SOCKET  the daemon's control socket\n"
		"  -c CONFIG  read [server] control_socket from this config file\n"
		"             (without either: the embedded default config's, "
		"./var/spool/ringmx.ctl)\n"
		"  --json     answer in JSON (one object)\n"
		"  -h, --help print this help\n"
		"%s"
		"Exit status: 0 done, 1 the daemon answered an error or is not running, 2 usage.\n",
		ctl_usage);
}

/* The socket's path from -s, -c or the embedded default config; false with a message. */
static bool
socket_path(const char *sock, const char *conf, char *path, size_t cap)
{
	if (sock) {
		snprintf(path, cap, "%s", sock);
		return true;
	}
	char err[1024];
	struct config *cfg =
	    conf ? config_load_file(conf, err, sizeof err) : config_load_default(err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "ringmxctl: %s\n", err);
		return false;
	}
	snprintf(path, cap, "%s", cfg->control_socket);
	config_free(cfg);
	return true;
}

static int
connect_to(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr,
			"ringmxctl: %s: longer than a unix socket path may be (%zu bytes)\n", path,
			sizeof sun.sun_path - 1);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		fprintf(stderr, "ringmxctl: cannot connect to %s: %s (is ringmx running?)\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct timeval tv = {.tv_sec = CTL_MAIN_ANSWER_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

static bool
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Reads the whole answer (malloc'ed, NUL-terminated); NULL with a message. */
static char *
read_answer(int fd, const char *path, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (cap - n < 4096) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "ringmxctl: reading the answer from %s: %s\n", path,
				errno == EAGAIN ? "no answer in time" : strerror(errno));
			free(buf);
			return NULL;
		}
		if (r == 0) {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	free(buf);
	fprintf(stderr, "ringmxctl: out of memory\n");
	return NULL;
}

/* Joins the command words into a request line ("--json queue\n"); false with a message. */
static bool
build_request(char **words, int n, bool json, char *req, size_t cap)
{
	size_t len = 0;
	if (json)
		len += (size_t)snprintf(req, cap, "--json ");
	for (int i = 0; i < n; i++) {
		if (strpbrk(words[i], " \t\r\n") || words[i][0] == '\0') {
			fprintf(stderr,
				"ringmxctl: an argument may not be empty nor hold spaces: "
				"'%s'\n",
				words[i]);
			return false;
		}
		size_t w = strlen(words[i]);
		if (len + w + 2 > cap) {
			fprintf(stderr, "ringmxctl: the request is longer than %d bytes\n",
				CTL_REQ_MAX);
			return false;
		}
		if (i)
			req[len++] = ' ';
		memcpy(req + len, words[i], w);
		len += w;
	}
	req[len] = '\0';
	return true;
}

int
main(int argc, char **argv)
{
	const char *sock = NULL, *conf = NULL;
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc && !conf) {
			sock = argv[++i];
		} else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc && !sock) {
			conf = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i < argc - 1 && strcmp(argv[argc - 1], "--json") == 0) { /* also taken at the end */
		json = true;
		argc--;
	}
	char req[CTL_REQ_MAX];
	struct ctl_req r;
	char err[256];
	if (i == argc || !build_request(argv + i, argc - i, json, req, sizeof req - 1)) {
		usage(stderr);
		return 2;
	}
	if (ctl_parse(req, strlen(req), &r, err, sizeof err) < 0) {
		fprintf(stderr, "ringmxctl: %s\n", err);
		usage(stderr);
		return 2;
	}
	char path[PATH_MAX];
	if (!socket_path(sock, conf, path, sizeof path))
		return 1;
	int fd = connect_to(path);
	if (fd < 0)
		return 1;
	strcat(req, "\n");
	if (!send_all(fd, req, strlen(req))) {
		fprintf(stderr, "ringmxctl: sending to %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	size_t len;
	char *ans = read_answer(fd, path, &len);
	close(fd);
	if (!ans)
		return 1;
	if (len == 0) {
		fprintf(stderr, "ringmxctl: %s closed the connection without an answer\n", path);
		free(ans);
		return 1;
	}
	bool failed = strncmp(ans, "error:", 6) == 0 || strncmp(ans, "{\"error\"", 8) == 0;
	fwrite(ans, 1, len, failed && !json ? stderr : stdout);
	free(ans);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "ringmxctl: writing the answer: %s\n", strerror(errno));
		return 1;
	}
	return failed ? 1 : 0;
}
