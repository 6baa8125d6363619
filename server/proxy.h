/*
 * proxy — the pure parser of HAProxy's PROXY protocol header, versions 1 and 2
 * (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
 *
 * A proxy in front of ringmx (HAProxy with `send-proxy` or `send-proxy-v2`) opens each
 * connection with one header that says who its client is; the SMTP (or TLS) bytes follow. This
 * module reads that header in place in the caller's buffer: no allocation, no I/O, no replies.
 * The connection decides what to do (server/conn.c: wait, replace the peer address, close).
 *
 * Usage: call proxy_parse() on everything received so far, from the first byte, each time more
 * arrives. PROXY_MORE: keep the bytes and wait. PROXY_DONE / PROXY_LOCAL: the header is
 * out->len bytes; what follows it is the client's. PROXY_BAD: close the connection.
 *
 * What is accepted:
 *   v1: "PROXY TCP4 a.b.c.d a.b.c.d sport dport\r\n", the same with TCP6 and IPv6 addresses,
 *       and "PROXY UNKNOWN[ anything]\r\n"; at most PROXY_V1_MAX bytes, CRLF included. Single
 *       spaces, ports 0..65535 in decimal without leading zeros, addresses in their canonical
 *       text (no leading zeros in IPv4), the address family matching TCP4 / TCP6.
 *   v2: the 12-byte signature, version 2, command LOCAL or PROXY, and for PROXY the families
 *       TCP over IPv4 or IPv6 (AF_UNSPEC is taken like LOCAL, as the specification allows), a
 *       payload of at most PROXY_V2_PAYLOAD_MAX bytes whose TLVs, if any, tile it exactly.
 *       TLV contents are not interpreted (nor is a CRC32C TLV checked).
 *
 * Limits: a header is at most PROXY_HEADER_MAX bytes; PROXY_MORE is only ever returned for
 * fewer bytes than that, so a caller that keeps what it is given until the header is complete
 * keeps less than PROXY_HEADER_MAX bytes. Input that cannot begin a valid header is PROXY_BAD
 * as soon as the offending byte is there (an SMTP client talking first is refused at once).
 *
 * Failure: proxy_parse returns PROXY_BAD with out->error naming the problem (a static string).
 */
#ifndef RINGMX_PROXY_H
#define RINGMX_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 107           /* the v1 line, "PROXY" to CRLF */
#define PROXY_V2_FIXED 16          /* signature, version/command, family, length */
#define PROXY_V2_PAYLOAD_MAX 512   /* addresses (36 for TCP6) and TLVs; the rest is refused */
#define PROXY_HEADER_MAX (PROXY_V2_FIXED + PROXY_V2_PAYLOAD_MAX)

enum proxy_result {
	PROXY_BAD = -1,  /* malformed: out->error says why */
	PROXY_MORE = 0,  /* a valid prefix so far: wait for more bytes */
	PROXY_DONE = 1,  /* out->src / out->dst hold the client's and the proxy's addresses */
	PROXY_LOCAL = 2, /* v2 LOCAL, v2 AF_UNSPEC or v1 UNKNOWN: keep the real peer address */
};

struct proxy_info {
	size_t len;                  /* DONE, LOCAL: bytes of the header, CRLF / TLVs included */
	int version;                 /* 1 or 2, once known */
	struct sockaddr_storage src; /* DONE: the client (AF_INET or AF_INET6, port set) */
	struct sockaddr_storage dst; /* DONE: the address the client connected to */
	const char *error;           /* BAD: a short reason, e.g. "bad signature" */
};

/* Parses the header at the start of p[0..n). Returns a proxy_result; see above. */
enum proxy_result proxy_parse(const char *p, size_t n, struct proxy_info *out);

#endif
