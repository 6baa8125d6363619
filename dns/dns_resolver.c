/*
 * dns_resolver — see dns_resolver.h.
 *
 * user_data layout (low DNS_RESOLVER_UD_BITS bits): slot (20 bits) | generation (16) | op (4).
 * A slot's generation changes whenever its socket is closed, so a late completion of an old
 * socket's operation (cancelled, or raced with a timeout) is recognised and dropped.
 */
#include "dns/dns_resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "queue/assert.h"

#define UDP_BUF 4096
#define TCP_BUF (2 + 65535)
#define SLOT_BITS 20
#define GEN_BITS 16
_Static_assert(SLOT_BITS + GEN_BITS + 4 == DNS_RESOLVER_UD_BITS, "user_data layout");
_Static_assert(DNS_RESOLVER_QUERIES_LIMIT <= (1u << SLOT_BITS), "slot fits user_data");

enum op { OP_SEND = 1, OP_RECV, OP_CONNECT, OP_CANCEL };
enum state { Q_FREE, Q_UDP, Q_TCP };

struct waiter {
	dns_resolver_done_fn done;
	void *arg;
	bool raw; /* a chase's own lookup: gets a dangling answer as it is */
};

/* A lookup whose answer ended in a dangling CNAME: the follow-up queries of its chain. */
struct chase {
	struct chase *prev, *next; /* the resolver's list, freed with it */
	struct dns_resolver *r;
	dns_resolver_done_fn done;
	void *arg;
	uint16_t type;
	bool all_cached;
	uint64_t now_ms;
	unsigned nasked;
	char asked[DNS_RESOLVER_CHASE_MAX + 1][256]; /* the names queried, for loop detection */
	struct dns_answer *acc, *tmp; /* the chain so far; scratch for the next join */
};

struct server {
	struct sockaddr_storage sa;
	socklen_t len;
};

struct query {
	uint8_t state;
	uint8_t pending; /* bit per op in flight on fd */
	uint16_t gen;
	int fd;
	uint16_t id, qtype;
	unsigned tries, first_server, server;
	uint64_t deadline_ms;
	char name[256];
	uint8_t out[2 + 512]; /* 2-byte TCP length prefix, then the query */
	uint16_t out_len;
	uint8_t *in; /* UDP_BUF bytes; TCP_BUF while over TCP */
	size_t in_len;
	unsigned nwaiters;
	struct waiter waiters[DNS_RESOLVER_WAITERS_MAX];
};

struct dns_resolver {
	struct io_uring *ring;
	uint64_t ud_base;
	struct dns_resolver_params p;
	struct server servers[DNS_RESOLVER_SERVERS_MAX];
	unsigned nservers, next_server, active;
	struct query *q;
	struct dns_cache *cache;
	struct dns_answer *scratch;
	struct chase *chases;
	uint32_t rnd[64];
	unsigned rnd_left;
	struct dns_resolver_stats st;
};


uint32_t
dns_resolver_random(struct dns_resolver *r)
{
	if (r->rnd_left == 0) {
		ssize_t n = getrandom(r->rnd, sizeof r->rnd, 0);

		ASSERT(n == (ssize_t)sizeof r->rnd); /* the urandom pool is never short here */
		r->rnd_left = 64;
	}
	return r->rnd[--r->rnd_left];
}

/* Parses "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353" into s. */
static int
server_parse(struct server *s, const char *tok)
{
	char host[64];
	unsigned long port = 53;
	const char *colon = strrchr(tok, ':');
	size_t hl;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&s->sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->sa;
	char *end;

	memset(s, 0, sizeof *s);
	if (tok[0] == '[') {
		const char *rb = strchr(tok, ']');

		if (rb == NULL || (rb[1] != '\0' && rb[1] != ':'))
			return -EINVAL;
		hl = (size_t)(rb - tok - 1);
		if (hl >= sizeof host)
			return -EINVAL;
		memcpy(host, tok + 1, hl);
		host[hl] = '\0';
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else if (colon != NULL && strchr(tok, ':') != colon) {
		colon = NULL; /* a bare IPv6 address */
		snprintf(host, sizeof host, "%s", tok);
	} else {
		hl = colon ? (size_t)(colon - tok) : strlen(tok);
		if (hl >= sizeof host)
			return -EINVAL;
		memcpy(host, tok, hl);
		host[hl] = '\0';
	}
	if (colon != NULL) {
		port = strtoul(colon + 1, &end, 10);
		if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		s->len = sizeof *v4;
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		s->len = sizeof *v6;
	} else {
		return -EINVAL;
	}
	return 0;
}

int
dns_resolver_server_parse(const char *text, struct sockaddr_storage *out, socklen_t *len)
{
	struct server s;

	if (server_parse(&s, text) < 0)
		return -EINVAL;
	*out = s.sa;
	*len = s.len;
	return 0;
}

static int
servers_from_list(struct dns_resolver *r, const char *list, char *err, size_t err_len)
{
	char buf[1024], *save = NULL;

	if (strlen(list) >= sizeof buf) {
		snprintf(err, err_len, "resolver list too long");
		return -EINVAL;
	}
	strcpy(buf, list);
	for (char *t = strtok_r(buf, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
		if (r->nservers == DNS_RESOLVER_SERVERS_MAX) {
			snprintf(err, err_len, "more than %d resolvers", DNS_RESOLVER_SERVERS_MAX);
			return -EINVAL;
		}
		if (server_parse(&r->servers[r->nservers], t) < 0) {
			snprintf(err, err_len, "bad resolver address '%s' (addr[:port])", t);
			return -EINVAL;
		}
		r->nservers++;
	}
	return 0;
}

static int
servers_from_resolv_conf(struct dns_resolver *r, const char *path, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	char line[512], addr[128];

	if (f == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof line, f) && r->nservers < DNS_RESOLVER_SERVERS_MAX) {
		if (sscanf(line, " nameserver %127s", addr) == 1 &&
		    server_parse(&r->servers[r->nservers], addr) == 0)
			r->nservers++;
	}
	fclose(f);
	return 0;
}

struct dns_resolver *
dns_resolver_new(const struct dns_resolver_params *p, struct io_uring *ring, uint64_t ud_base,
		 char *err, size_t err_len)
{
	struct dns_resolver *r;
	const char *rc_path = p->resolv_conf ? p->resolv_conf : "/etc/resolv.conf";
	int rc;

	ASSERT((ud_base & ((1ull << DNS_RESOLVER_UD_BITS) - 1)) == 0);
	if (p->timeout_ms == 0 || p->attempts == 0 || p->queries_max == 0 ||
	    p->queries_max > DNS_RESOLVER_QUERIES_LIMIT) {
		snprintf(err, err_len, "bad resolver parameters (timeout, attempts, queries_max)");
		return NULL;
	}
	r = calloc(1, sizeof *r);
	if (r == NULL) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	r->ring = ring;
	r->ud_base = ud_base;
	r->p = *p;
	r->p.servers = NULL;
	r->p.resolv_conf = NULL;
	if (p->servers != NULL && p->servers[0] != '\0')
		rc = servers_from_list(r, p->servers, err, err_len);
	else
		rc = servers_from_resolv_conf(r, rc_path, err, err_len);
	if (rc == 0 && r->nservers == 0) {
		snprintf(err, err_len, "no name servers (%s)", p->servers ? p->servers : rc_path);
		rc = -EINVAL;
	}
	r->q = rc == 0 ? calloc(p->queries_max, sizeof *r->q) : NULL;
	r->cache = r->q ? dns_cache_new(&p->cache) : NULL;
	r->scratch = r->cache ? dns_answer_new() : NULL;
	if (r->scratch == NULL) {
		if (rc == 0)
			snprintf(err, err_len, "out of memory or bad cache parameters");
		dns_resolver_free(r);
		return NULL;
	}
	for (unsigned i = 0; i < p->queries_max; i++)
		r->q[i].fd = -1;
	return r;
}

static uint64_t
ud_make(const struct dns_resolver *r, const struct query *q, enum op op)
{
	uint64_t slot = (uint64_t)(q - r->q);

	return r->ud_base | slot << (GEN_BITS + 4) | (uint64_t)q->gen << 4 | op;
}

static struct io_uring_sqe *
sqe_get(struct dns_resolver *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r->ring);

	if (sqe == NULL) {
		io_uring_submit(r->ring);
		sqe = io_uring_get_sqe(r->ring);
	}
	ASSERT(sqe != NULL); /* the SQ was just emptied */
	return sqe;
}

/* Cancels what is in flight on q's socket, closes it and moves to a new generation. */
static void
query_close(struct dns_resolver *r, struct query *q)
{
	for (unsigned op = OP_SEND; op <= OP_CONNECT; op++) {
		if (q->pending & (1u << op)) {
			struct io_uring_sqe *sqe = sqe_get(r);

			io_uring_prep_cancel64(sqe, ud_make(r, q, (enum op)op), 0);
			io_uring_sqe_set_data64(sqe, ud_make(r, q, OP_CANCEL));
		}
	}
	q->pending = 0;
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->gen++;
}

static void
sqe_recv(struct dns_resolver *r, struct query *q)
{
	struct io_uring_sqe *sqe = sqe_get(r);
	size_t cap = q->state == Q_TCP ? TCP_BUF : UDP_BUF;

	io_uring_prep_recv(sqe, q->fd, q->in + q->in_len, cap - q->in_len, 0);
	io_uring_sqe_set_data64(sqe, ud_make(r, q, OP_RECV));
	q->pending |= 1u << OP_RECV;
}

static void
sqe_send(struct dns_resolver *r, struct query *q)
{
	struct io_uring_sqe *sqe = sqe_get(r);
	bool tcp = q->state == Q_TCP;

	io_uring_prep_send(sqe, q->fd, tcp ? q->out : q->out + 2, q->out_len + (tcp ? 2u : 0u),
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(r, q, OP_SEND));
	q->pending |= 1u << OP_SEND;
	r->st.queries_sent++;
}

/* Opens a socket of the server's family, bound to port 0. Returns the fd or -errno. */
static int
socket_open(const struct server *s, int type)
{
	struct sockaddr_storage any;
	int fd = socket(s->sa.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&any, 0, sizeof any);
	any.ss_family = s->sa.ss_family; /* port 0: the kernel picks a random ephemeral port */
	if (bind(fd, (struct sockaddr *)&any, s->len) < 0 ||
	    (type == SOCK_DGRAM && connect(fd, (const struct sockaddr *)&s->sa, s->len) < 0)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/* Starts one UDP attempt at the next server with a new ID and socket. */
static int
attempt_udp(struct dns_resolver *r, struct query *q, uint64_t now_ms)
{
	const struct server *s;
	int n;

	q->server = (q->first_server + q->tries) % r->nservers;
	q->tries++;
	s = &r->servers[q->server];
	q->id = (uint16_t)dns_resolver_random(r);
	n = dns_packet_query(q->out + 2, sizeof q->out - 2, q->name, q->qtype, q->id);
	if (n < 0)
		return n;
	q->out_len = (uint16_t)n;
	q->fd = socket_open(s, SOCK_DGRAM);
	if (q->fd < 0)
		return q->fd;
	q->state = Q_UDP;
	q->in_len = 0;
	q->deadline_ms = now_ms + r->p.timeout_ms;
	sqe_send(r, q);
	sqe_recv(r, q);
	return 0;
}

/* Asks the same server again over TCP (RFC 7766), after a TC answer. */
static int
attempt_tcp(struct dns_resolver *r, struct query *q, uint64_t now_ms)
{
	const struct server *s = &r->servers[q->server];
	struct io_uring_sqe *sqe;
	uint8_t *big;

	query_close(r, q);
	big = malloc(TCP_BUF);
	if (big == NULL)
		return -ENOMEM;
	free(q->in);
	q->in = big;
	q->fd = socket_open(s, SOCK_STREAM);
	if (q->fd < 0)
		return q->fd;
	q->state = Q_TCP;
	q->in_len = 0;
	q->out[0] = (uint8_t)(q->out_len >> 8);
	q->out[1] = (uint8_t)q->out_len;
	q->deadline_ms = now_ms + r->p.timeout_ms;
	r->st.tcp_fallbacks++;
	sqe = sqe_get(r);
	io_uring_prep_connect(sqe, q->fd, (const struct sockaddr *)&s->sa, s->len);
	io_uring_sqe_set_data64(sqe, ud_make(r, q, OP_CONNECT));
	q->pending |= 1u << OP_CONNECT;
	return 0;
}

static void deliver(struct dns_resolver *r, const struct waiter *w, int status,
		    const struct dns_answer *ans, bool from_cache, uint64_t now_ms);

/* Ends q: caches a good answer, frees the slot, then calls every waiter. */
static void
query_finish(struct dns_resolver *r, struct query *q, int status, struct dns_answer *ans,
	     uint64_t now_ms)
{
	struct waiter w[DNS_RESOLVER_WAITERS_MAX];
	unsigned nw = q->nwaiters;

	if (status == 0 && (ans->rcode == DNS_RCODE_NOERROR || ans->rcode == DNS_RCODE_NXDOMAIN))
		(void)dns_cache_put(r->cache, ans, now_ms); /* -EAGAIN: not cacheable */
	if (status != 0 || (ans->rcode != DNS_RCODE_NOERROR && ans->rcode != DNS_RCODE_NXDOMAIN)) {
		dns_cache_note_error(r->cache);
		r->st.errors++;
	}
	memcpy(w, q->waiters, nw * sizeof w[0]);
	query_close(r, q);
	free(q->in);
	q->in = NULL;
	q->state = Q_FREE;
	q->nwaiters = 0;
	ASSERT(r->active > 0);
	r->active--;
	for (unsigned i = 0; i < nw; i++)
		deliver(r, &w[i], status, status == 0 ? ans : NULL, false, now_ms);
}

static void
attempt_next(struct dns_resolver *r, struct query *q, int err, uint64_t now_ms)
{
	query_close(r, q);
	while (q->tries < r->p.attempts * r->nservers) {
		int rc = attempt_udp(r, q, now_ms);

		if (rc == 0)
			return;
		query_close(r, q);
		err = rc;
	}
	query_finish(r, q, err, NULL, now_ms);
}

/* Handles a complete answer in q->in[0..len). */
static void
answer_handle(struct dns_resolver *r, struct query *q, const uint8_t *wire, size_t len,
	      uint64_t now_ms)
{
	struct dns_answer *ans = r->scratch;
	int rc = dns_packet_parse(ans, wire, len, q->name, q->qtype, q->id);

	if (rc == DNS_ERR_CNAME_CHAIN || rc == DNS_ERR_NOMEM) {
		query_finish(r, q, rc, NULL, now_ms);
		return;
	}
	if (rc < 0) {
		/* Spoofed, stray or broken: drop it and keep waiting (over TCP the stream is
		 * spent, so that attempt fails). */
		r->st.dropped_answers++;
		if (q->state == Q_UDP)
			sqe_recv(r, q);
		else
			attempt_next(r, q, rc, now_ms);
		return;
	}
	if (ans->tc && q->state == Q_UDP) {
		rc = attempt_tcp(r, q, now_ms);
		if (rc < 0)
			attempt_next(r, q, rc, now_ms);
		return;
	}
	if (ans->rcode != DNS_RCODE_NOERROR && ans->rcode != DNS_RCODE_NXDOMAIN) {
		r->st.server_failures++;
		if (q->tries < r->p.attempts * r->nservers) {
			attempt_next(r, q, -EAGAIN, now_ms);
			return;
		}
	}
	query_finish(r, q, 0, ans, now_ms);
}

static void
on_recv(struct dns_resolver *r, struct query *q, int res, uint64_t now_ms)
{
	size_t need;

	if (res < 0 || (res == 0 && q->state == Q_TCP)) {
		attempt_next(r, q, res < 0 ? res : -ECONNRESET, now_ms);
		return;
	}
	if (q->state == Q_UDP) {
		answer_handle(r, q, q->in, (size_t)res, now_ms);
		return;
	}
	q->in_len += (size_t)res;
	need = q->in_len >= 2 ? 2 + ((size_t)q->in[0] << 8 | q->in[1]) : SIZE_MAX;
	if (q->in_len < need) {
		sqe_recv(r, q);
		return;
	}
	answer_handle(r, q, q->in + 2, need - 2, now_ms);
}

void
dns_resolver_complete(struct dns_resolver *r, const struct io_uring_cqe *cqe, uint64_t now_ms)
{
	uint64_t ud = cqe->user_data;
	enum op op = (enum op)(ud & 0xf);
	uint64_t slot = (ud >> (GEN_BITS + 4)) & ((1u << SLOT_BITS) - 1);
	uint16_t gen = (uint16_t)(ud >> 4);
	struct query *q;

	ASSERT((ud & ~((1ull << DNS_RESOLVER_UD_BITS) - 1)) == r->ud_base);
	if (op == OP_CANCEL || slot >= r->p.queries_max)
		return;
	q = &r->q[slot];
	if (q->state == Q_FREE || q->gen != gen)
		return; /* a closed socket's late completion */
	q->pending &= (uint8_t) ~(1u << op);
	switch (op) {
	case OP_SEND:
		if (cqe->res < 0 || (unsigned)cqe->res < q->out_len + (q->state == Q_TCP ? 2u : 0u))
			attempt_next(r, q, cqe->res < 0 ? cqe->res : -EIO, now_ms);
		break;
	case OP_RECV:
		on_recv(r, q, cqe->res, now_ms);
		break;
	case OP_CONNECT:
		if (cqe->res < 0) {
			attempt_next(r, q, cqe->res, now_ms);
			break;
		}
		sqe_send(r, q);
		sqe_recv(r, q);
		break;
	default:
		ASSERT(!"unknown resolver op");
	}
}

void
dns_resolver_tick(struct dns_resolver *r, uint64_t now_ms)
{
	for (unsigned i = 0; i < r->p.queries_max && r->active > 0; i++) {
		struct query *q = &r->q[i];

		if (q->state != Q_FREE && now_ms >= q->deadline_ms) {
			r->st.timeouts++;
			attempt_next(r, q, -ETIMEDOUT, now_ms);
		}
	}
}

static struct query *
query_find(struct dns_resolver *r, const char *name, uint16_t type)
{
	for (unsigned i = 0; i < r->p.queries_max; i++) {
		struct query *q = &r->q[i];

		if (q->state != Q_FREE && q->qtype == type && strcmp(q->name, name) == 0)
			return q;
	}
	return NULL;
}

static int
lookup_start(struct dns_resolver *r, const char *name, uint16_t type, uint64_t now_ms,
	     const struct waiter *w)
{
	char norm[256];
	struct dns_cache_hit hit;
	struct query *q;

	if (dns_name_normalize(norm, sizeof norm, name) < 0)
		return -EINVAL;
	r->st.lookups++;
	if (dns_cache_get(r->cache, norm, type, now_ms, &hit) != DNS_CACHE_MISS) {
		deliver(r, w, 0, hit.ans, true, now_ms);
		return 0;
	}
	q = query_find(r, norm, type);
	if (q != NULL) {
		if (q->nwaiters == DNS_RESOLVER_WAITERS_MAX)
			return -EAGAIN;
		q->waiters[q->nwaiters++] = *w;
		r->st.coalesced++;
		return 0;
	}
	if (r->active == r->p.queries_max)
		return -EAGAIN;
	q = NULL;
	for (unsigned i = 0; i < r->p.queries_max && q == NULL; i++)
		if (r->q[i].state == Q_FREE)
			q = &r->q[i];
	ASSERT(q != NULL);
	q->in = malloc(UDP_BUF);
	if (q->in == NULL)
		return -ENOMEM;
	strcpy(q->name, norm);
	q->qtype = type;
	q->tries = 0;
	q->first_server = r->next_server++ % r->nservers;
	q->waiters[0] = *w;
	q->nwaiters = 1;
	q->state = Q_UDP; /* busy from here: attempt_next may finish it */
	r->active++;
	attempt_next(r, q, -EIO, now_ms);
	return 0;
}

int
dns_resolver_lookup(struct dns_resolver *r, const char *name, uint16_t type, uint64_t now_ms,
		    dns_resolver_done_fn done, void *arg)
{
	return lookup_start(r, name, type, now_ms, &(struct waiter){done, arg, false});
}

/* ---- CNAME chase ----------------------------------------------------------------------- */

/* Ends c with status; a failure of the chase itself (not of a lookup it made, which counted
 * its own) is counted as an error. */
static void
chase_end(struct chase *c, int status, bool own_error)
{
	struct dns_resolver *r = c->r;

	if (own_error)
		r->st.errors++;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		r->chases = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->done(c->arg, status, status == 0 ? c->acc : NULL, c->all_cached);
	dns_answer_free(c->acc);
	dns_answer_free(c->tmp);
	free(c);
}

static void on_chase(void *arg, int status, const struct dns_answer *ans, bool from_cache);

/* Asks for the end of c's chain so far, unless that would loop or go past the bound. */
static void
chase_step(struct chase *c)
{
	const char *target = dns_answer_str(c->acc, c->acc->canon);
	int rc;

	for (unsigned i = 0; i < c->nasked; i++)
		if (strcmp(c->asked[i], target) == 0) {
			chase_end(c, DNS_ERR_CNAME_CHAIN, true); /* a loop across answers */
			return;
		}
	if (c->nasked == DNS_RESOLVER_CHASE_MAX + 1 || strlen(target) >= sizeof c->asked[0]) {
		chase_end(c, DNS_ERR_CNAME_CHAIN, true);
		return;
	}
	strcpy(c->asked[c->nasked++], target);
	c->r->st.cname_chases++;
	rc = lookup_start(c->r, target, c->type, c->now_ms, &(struct waiter){on_chase, c, true});
	if (rc < 0)
		chase_end(c, rc, true);
}

static void
on_chase(void *arg, int status, const struct dns_answer *ans, bool from_cache)
{
	struct chase *c = arg;
	struct dns_answer *t;
	int rc;

	if (status < 0) {
		chase_end(c, status, false);
		return;
	}
	rc = dns_answer_chain(c->tmp, c->acc, ans);
	if (rc < 0) {
		chase_end(c, rc, true);
		return;
	}
	t = c->acc;
	c->acc = c->tmp;
	c->tmp = t;
	c->all_cached &= from_cache;
	if (dns_answer_dangling(c->acc))
		chase_step(c);
	else
		chase_end(c, 0, false);
}

/* Starts the chase of a dangling answer for waiter w; on failure w gets the error. */
static void
chase_start(struct dns_resolver *r, const struct waiter *w, const struct dns_answer *ans,
	    bool from_cache, uint64_t now_ms)
{
	struct chase *c = calloc(1, sizeof *c);

	if (c != NULL) {
		c->acc = dns_answer_new();
		c->tmp = dns_answer_new();
	}
	if (c == NULL || c->acc == NULL || c->tmp == NULL) {
		if (c != NULL) {
			dns_answer_free(c->acc);
			dns_answer_free(c->tmp);
		}
		free(c);
		r->st.errors++;
		w->done(w->arg, -ENOMEM, NULL, false);
		return;
	}
	memcpy(c->acc, ans, dns_answer_size(ans));
	c->r = r;
	c->done = w->done;
	c->arg = w->arg;
	c->type = ans->qtype;
	c->all_cached = from_cache;
	c->now_ms = now_ms;
	strcpy(c->asked[c->nasked++], dns_answer_str(ans, ans->qname));
	c->next = r->chases;
	if (c->next != NULL)
		c->next->prev = c;
	r->chases = c;
	chase_step(c);
}

/* Hands an outcome to a waiter: a dangling CNAME is chased first (unless the waiter is a
 * chase itself, which goes on with it). */
static void
deliver(struct dns_resolver *r, const struct waiter *w, int status, const struct dns_answer *ans,
	bool from_cache, uint64_t now_ms)
{
	if (status == 0 && !w->raw && dns_answer_dangling(ans))
		chase_start(r, w, ans, from_cache, now_ms);
	else
		w->done(w->arg, status, ans, from_cache);
}

bool
dns_resolver_busy(const struct dns_resolver *r)
{
	return r->active > 0;
}

void
dns_resolver_stats_get(const struct dns_resolver *r, struct dns_resolver_stats *out)
{
	*out = r->st;
	dns_cache_stats_get(r->cache, &out->cache);
}

void
dns_resolver_free(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	for (unsigned i = 0; r->q != NULL && i < r->p.queries_max; i++) {
		if (r->q[i].state != Q_FREE && r->q[i].fd >= 0)
			close(r->q[i].fd);
		free(r->q[i].in);
	}
	free(r->q);
	while (r->chases != NULL) {
		struct chase *c = r->chases;

		r->chases = c->next;
		dns_answer_free(c->acc);
		dns_answer_free(c->tmp);
		free(c);
	}
	dns_cache_free(r->cache);
	dns_answer_free(r->scratch);
	free(r);
}
