#include "server/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
listen_open(const struct sockaddr *sa, socklen_t len, const char *name, int backlog, char *err,
	    size_t err_len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_len, "listen %s: socket: %s", name, strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
		int e = errno;
		snprintf(err, err_len, "listen %s: setsockopt: %s", name, strerror(e));
		close(fd);
		return -e;
	}
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		snprintf(err, err_len, "listen %s: %s", name, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

void
listen_addr_text(const struct sockaddr *sa, char *buf, size_t len, unsigned *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)len);
		if (port)
			*port = ntohs(in->sin_port);
		return;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)len);
		if (port)
			*port = ntohs(in6->sin6_port);
		return;
	}
	snprintf(buf, len, "unknown");
	if (port)
		*port = 0;
}
