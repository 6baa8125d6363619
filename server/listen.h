/*
 * listen — opens one listening socket for an address, with SO_REUSEPORT so that every shard
 * binds its own socket to the same address and the kernel spreads connections over them.
 * TCP_NODELAY is set on the listener and inherited by accepted sockets: replies are already
 * coalesced per turn, so Nagle would only add delay.
 *
 * Failure: listen_open returns the fd, or -errno with err naming the address.
 */
#ifndef RINGMX_LISTEN_H
#define RINGMX_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

int listen_open(const struct sockaddr *sa, socklen_t len, const char *name, int backlog,
		char *err, size_t err_len);

/* Formats an address as "1.2.3.4" or "2001:db8::1" (no port); IPv4-mapped shown as IPv4. */
void listen_addr_text(const struct sockaddr *sa, char *buf, size_t len, unsigned *port);

#endif
