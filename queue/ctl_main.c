/*
 * ringmxctl — asks a running ringmx about its queue, or acts on it, over the daemon's control
 * socket ([server] control_socket). The commands and their answers: docs/ringmxctl.md.
 *
 *   ringmxctl [-s SOCKET | -c CONFIG] [--json] COMMAND [ARGS]
 *
 * The request is checked here first (queue/ctl.h), so a mistyped command never reaches the
 * daemon. The answer goes to stdout as the daemon wrote it; a text error answer goes to stderr.
 * Exit status: 0 done, 1 the daemon answered an error or could not be reached, 2 usage.
 *
 *   ringmxctl passwd [USER]
 *
 * makes a line for the [auth] users file, with no daemon involved: it reads a password (twice,
 * without echo, from the terminal; one line from stdin when that is not a terminal) and prints
 * "USER:HASH" (yescrypt "$y$", or SHA-512 "$6$" where libcrypt has no yescrypt).
 */
#include <crypt.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "queue/ctl.h"
#include "server/config.h"
#include "server/sasl.h"

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
		"  passwd [USER]                  print USER:HASH for the [auth] users file\n"
		"                                 (reads the password; no daemon needed)\n"
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

/* ---- passwd --------------------------------------------------------------------------- */

/* Reads one line into buf (cap bytes) without its line end; false at EOF, on an error, or for a
 * line too long (then with a message). */
static bool
passwd_read_line(FILE *in, char *buf, size_t cap)
{
	if (!fgets(buf, (int)cap, in))
		return false;
	size_t n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(in)) {
		fprintf(stderr, "ringmxctl: the password is longer than %d bytes\n",
			SASL_PASSWORD_MAX);
		return false;
	}
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	return true;
}

/* Asks on the terminal with echo off; stdin is the terminal. The prompt comes after the echo is
 * off (TCSAFLUSH drops what was typed before it): what is typed after the prompt is kept. */
static bool
passwd_prompt(const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return false;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	fputs(prompt, stderr);
	fflush(stderr);
	bool ok = passwd_read_line(stdin, buf, cap);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return ok;
}

/* The password: twice from a terminal (they must match), once from a pipe. */
static bool
passwd_get(char *pw, size_t cap)
{
	if (!isatty(STDIN_FILENO)) {
		if (!passwd_read_line(stdin, pw, cap)) {
			fprintf(stderr, "ringmxctl: no password on stdin\n");
			return false;
		}
		return true;
	}
	char again[SASL_PASSWORD_MAX + 2];
	bool ok = passwd_prompt("Password: ", pw, cap) &&
		  passwd_prompt("Password again: ", again, sizeof again);
	if (ok && strcmp(pw, again) != 0) {
		fprintf(stderr, "ringmxctl: the two passwords differ\n");
		ok = false;
	}
	explicit_bzero(again, sizeof again);
	return ok;
}

/* The name must be usable in the users file: no ':' (the separator), no blank or control. */
static bool
passwd_user_ok(const char *user)
{
	if (!sasl_name_ok(user, strlen(user)))
		return false;
	for (const char *p = user; *p; p++) {
		if (*p == ':' || *p == ' ' || *p == '\t')
			return false;
	}
	return true;
}

static int
passwd_main(int argc, char **argv)
{
	const char *user = argc > 0 ? argv[0] : NULL;
	char pw[SASL_PASSWORD_MAX + 2], salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	if (argc > 1) {
		usage(stderr);
		return 2;
	}
	if (user && !passwd_user_ok(user)) {
		fprintf(stderr,
			"ringmxctl: a user name is 1 to %d bytes, with no ':', blank or control "
			"byte\n",
			SASL_NAME_MAX);
		return 2;
	}
	/* yescrypt where libcrypt has it (Debian's does), else SHA-512 */
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt) &&
	    !crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof salt)) {
		fprintf(stderr, "ringmxctl: libcrypt makes no salt: %s\n", strerror(errno));
		return 1;
	}
	if (!passwd_get(pw, sizeof pw))
		return 1;
	int rc = 1;
	cd = calloc(1, sizeof *cd);
	if (pw[0] == '\0') {
		fprintf(stderr, "ringmxctl: the password is empty\n");
	} else if (cd) {
		const char *hash = crypt_r(pw, salt, cd);
		if (!hash || hash[0] == '*') {
			fprintf(stderr, "ringmxctl: crypt failed: %s\n", strerror(errno));
		} else {
			printf("%s%s%s\n", user ? user : "", user ? ":" : "", hash);
			rc = fflush(stdout) == 0 ? 0 : 1;
		}
	}
	explicit_bzero(pw, sizeof pw);
	if (cd) {
		explicit_bzero(cd, sizeof *cd);
		free(cd);
	}
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "passwd") == 0)
		return passwd_main(argc - 2, argv + 2);
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
