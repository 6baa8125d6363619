/*
 * delivery_impl — what delivery.c (queues, sites, home accounting) and smtp_out.c (one
 * outbound connection) share. Not for use outside queue/.
 */
#ifndef RINGMX_DELIVERY_IMPL_H
#define RINGMX_DELIVERY_IMPL_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "dns/dns_resolver.h"
#include "dns/dns_route.h"
#include "dns/dns_tlsa.h"
#include "queue/delivery.h"
#include "queue/journal.h"
#include "queue/qmsg.h"
#include "queue/smtp_reply.h"
#include "queue/tls_client.h"
#include "server/config.h"
#include "server/loop.h"
#include "server/timer.h"

#define DLV_SITE_ADDRS_MAX 32
#define DLV_DIAG_MAX 300
#define DLV_RELAY_MAX 300

/* ---- messages between shards ---- */

enum xmsg_kind { X_JOB = 1, X_REPORT };

struct xmsg {
	uint8_t kind;
	struct xmsg *next; /* a sender's overflow list while a ring is full */
};

/* One recipient's result within a job's attempt. */
enum rcpt_state { R_PENDING = 0, R_ACCEPTED, R_DELIVERED, R_DEFERRED, R_FAILED };

/* A message's recipients for one domain, at the owner shard. */
struct dlv_job {
	struct xmsg x;
	struct qmsg *m;
	struct dlv_domain *dom;     /* owner side */
	struct dlv_job *next;       /* ready list */
	uint64_t due_ms;            /* scheduled queue */
	uint32_t heap_idx;
	unsigned attempts;
	bool warned;                /* the delay warning was asked for */
	uint32_t n;                 /* recipients left */
	uint32_t *ridx;             /* indices into m->rcpt */
	uint8_t *state;             /* enum rcpt_state, during an attempt */
	struct dlv_report *rep;     /* final outcomes of the attempt, for the home */
	char domain[256];           /* lower case */
};

/* Final outcomes, owner to home. */
struct dlv_report_entry {
	uint32_t idx;
	bool failed;
	bool deferred;              /* not final: a notice (move the message out, warn the sender) */
	bool warn;                  /* deferred past [queue] warn_after: a delay DSN is due */
	char status[12];            /* RFC 3463 */
	char *diag;                 /* the remote reply or our reason (failed only) */
	char *remote;               /* the remote host name (failed only; may be NULL) */
};

struct dlv_report {
	struct xmsg x;
	struct qmsg *m;
	uint64_t when_ms;           /* wall clock of the last attempt */
	uint32_t n;
	struct dlv_report_entry e[];
};

/* ---- owner side ---- */

enum dom_route { DR_NONE = 0, DR_RESOLVING, DR_SITE, DR_LOCAL, DR_DISCARD };

struct dlv_domain {
	char name[256];
	struct dlv_domain *hnext;   /* hash chain */
	struct delivery *d;
	enum dom_route route;
	uint64_t route_until_ms;    /* re-resolve after this */
	uint64_t cfg_gen;           /* the config its route was decided with */
	struct dlv_site *site;
	struct dlv_job *ready_head, *ready_tail;
	uint32_t nready;
	struct dlv_job **sched;     /* min-heap by due_ms */
	uint32_t nsched, sched_cap;
	struct timer timer;         /* the scheduled queue's top, or the next rate token */
	bool in_site_ring;
	struct dlv_domain *ring_next; /* the site's ring of domains with ready jobs */
	bool dirty;                 /* on the delivery's list of domains to look at */
	bool suspended;
	double tokens;              /* rate: at most 1 */
	uint64_t tokens_ms;
	uint64_t oldest_ms;         /* arrival of the oldest job seen waiting (approximate) */
	uint64_t delivered, deferred_n, bounced;
	char last_error[DLV_DIAG_MAX];
};

struct dlv_addr {
	struct sockaddr_storage sa;
	socklen_t len;
	char host[256];             /* the MX host name (or the hop's host) */
	char text[INET6_ADDRSTRLEN + 8];
};

struct dlv_site {
	char key[512];
	struct dlv_site *hnext;
	struct delivery *d;
	bool lmtp;
	unsigned naddr;
	struct dlv_addr addr[DLV_SITE_ADDRS_MAX];
	unsigned next_addr;         /* where the next connection starts trying */
	unsigned nconn, nbusy;      /* connections, and those in a transaction or connecting */
	struct dlv_conn *conns;     /* all of them */
	struct dlv_domain *ring;    /* domains with ready jobs (circular, this is the next) */
	unsigned ndomains;          /* domains pointing here */
	uint64_t backoff_until_ms;
	unsigned fail_streak;
	char backoff_reason[DLV_DIAG_MAX];
	struct timer timer;         /* end of backoff */
	_Atomic uint32_t *gconns;   /* connections of this site in all shards (the mesh's) */
	_Atomic uint32_t *gstarved; /* set by a shard that could not get a connection */
	bool dirty;
	uint64_t sessions, transactions;
	const struct config_domain_policy *pol; /* limits, from the first domain that made it */
	char pol_domain[256];
};

enum conn_state {
	OC_CONNECT = 1, OC_BANNER, OC_EHLO, OC_HELO, OC_TLSA, OC_STARTTLS, OC_TLSHAKE, /* before a transaction */
	OC_READY, OC_IDLE, OC_TXN, OC_BODY,
	OC_QUIT, OC_CLOSING,
};

/* What the replies of a transaction answer, in order. */
enum expect { EX_MAIL = 1, EX_RCPT, EX_DATA, EX_BODY, EX_RSET, EX_QUIT };

#define DLV_EXPECT_MAX 1100 /* MAIL + max_recipients RCPT + DATA + body + RSET */

struct dlv_conn {
	struct delivery *d;
	struct dlv_site *site;
	struct dlv_conn *next;      /* site's list */
	uint32_t slot, gen;
	int fd;
	enum conn_state st;
	uint8_t ops;                /* io_uring operations in flight */
	bool recv_armed, send_armed, cancel_sent;
	bool in_cqe;                /* a completion of ours is being handled */
	unsigned addr_i, addr_tries;
	struct dlv_addr *addr;
	struct smtp_reply_reader rr;
	struct smtp_caps caps;
	bool esmtp;
	char in[4096];
	char *out;
	char *out_retired;          /* a buffer a send in flight still reads */
	size_t out_len, out_sent, out_cap;
	struct timer timer;
	uint64_t deadline_ms;
	unsigned transactions;
	struct dlv_job *job;        /* the transaction's job */
	const char *body;           /* its message's body, held (qmsg_body_get) for the transaction */
	uint32_t ntx;               /* recipients in this transaction (job->ridx[0..ntx)) */
	uint32_t naccepted;
	uint16_t *exp;              /* expected replies: enum expect */
	uint32_t nexp, exp_head;
	uint32_t rcpt_reply;        /* RCPT replies seen */
	uint32_t body_replies;      /* LMTP: final replies seen */
	bool mail_failed;
	bool data_go;               /* DATA got 354 */
	bool pipelined;
	uint32_t unsent_from;       /* non-pipelined: commands built but not sent (index in exp) */
	char diag[DLV_DIAG_MAX];
	char status[12];
	/* TLS (after STARTTLS): plaintext goes through tls, ciphertext leaves from cout */
	struct tls_client *tls;
	bool tls_done;              /* the handshake is complete */
	bool send_tls;              /* the send in flight is from cout */
	bool drop_input;            /* discard the rest of this read (after the 220 to STARTTLS) */
	char *cout;
	size_t cout_len, cout_sent, cout_cap;
	/* tls = dane: the TLSA records of tlsa_host, looked up while connecting (OC_TLSA waits) */
	struct dns_tlsa *tlsa;
	bool tlsa_pending;
	int tlsa_err;               /* the lookup could not start: -errno */
	uint32_t tlsa_seq;          /* which lookup is the current one */
	char tlsa_host[256];
	uint8_t tls_need;           /* enum tls_need (smtp_out.c), settled after EHLO */
};

/* ---- the delivery ---- */

struct dlv_bounce {
	uint64_t id;
	struct qmsg *m;
	bool move;                  /* not a bounce: m's copy into the deferred stream */
	bool warning;               /* a delay DSN: nothing is marked done when it is on disk */
	uint32_t n;
	uint32_t idx[];
};

struct dlv_segment {
	uint8_t stream;
	uint32_t seq;
	uint32_t live;
};

/* A site's connection count across shards: domains of one site may be owned by different
 * shards, each with a pool, and max_connections holds for all of them together. */
struct mesh_site_slot {
	_Atomic uint64_t key; /* hash of the site key; 0 = free */
	_Atomic uint32_t conns;
	_Atomic uint32_t starved; /* a shard found the count full: idle connections should go */
};

#define MESH_SITE_SLOTS 16384

struct delivery_mesh {
	unsigned n;
	int *wake_fd;
	struct spsc **ring; /* [from * n + to] */
	struct mesh_site_slot *site_slots;
};

struct delivery {
	unsigned shard, nshards;
	struct delivery_mesh *mesh;
	struct loop *loop;
	const struct config *cfg;
	uint64_t cfg_gen;
	struct spool *spool;
	const struct dns_local *local;
	unsigned op_dns, op_out, op_journal, op_dspool;
	struct spool *dspool;       /* the deferred stream: DIR/deferred */
	uint64_t (*qid_next)(void *arg);
	const char *(*date)(void *arg);
	void *arg;
	struct dns_resolver *res;
	struct ssl_ctx_st *tls_ctx; /* outbound STARTTLS; NULL: none (logged at start) */
	struct journal *journal;
	int dirfd[2];

	/* cross-shard */
	struct xmsg **out_head, **out_tail; /* per peer: overflow while its ring is full */
	bool *wake_peer;

	/* owner */
	struct dlv_domain **dom_tab;
	uint32_t dom_mask, ndom;
	struct dlv_site **site_tab;
	uint32_t site_mask, nsite;
	struct dlv_domain **dirty_dom;
	uint32_t ndirty_dom, dirty_dom_cap;
	struct dlv_site **dirty_site;
	uint32_t ndirty_site, dirty_site_cap;
	struct dlv_conn **conns;
	uint32_t nconns_cap, conn_gen;
	uint32_t *conn_free;
	uint32_t nconn_free;
	uint32_t nconns_open;
	unsigned resolving;
	bool held;
	bool stopping;

	/* home */
	uint32_t dsn_inflight;      /* bounces, warnings and moves waiting for their spool */
	uint64_t bounce_id;
	struct dlv_segment *segs;
	uint32_t nsegs, segs_cap;
	uint32_t last_hot_seq, last_deferred_seq;
	uint64_t queued_msgs;
	struct qmsg *home_msgs;     /* every message this home holds, newest first */
	struct qmsg *home_oldest;   /* its tail */
	struct qmsg *spill_at;      /* [queue] memory_limit: the newest message looked at so far
				     * (it and every older one were spilled or skipped) */
	uint64_t spilled_msgs;
};

/* delivery.c, for smtp_out.c */
struct dlv_job *dlv_site_take(struct dlv_site *s);
/* The transaction's recipients are settled (state R_DELIVERED/R_DEFERRED/R_FAILED); relay
 * says where it went. The job goes back to the queues or away. */
void dlv_job_done(struct delivery *d, struct dlv_job *j, uint32_t ntx, const char *relay,
		  bool site_trouble);
/* Recipient i of the job's transaction got its outcome for this attempt (logged here). */
void dlv_rcpt_result(struct delivery *d, struct dlv_job *j, uint32_t i, enum rcpt_state st,
		     const char *status, const char *diag, const char *relay, const char *remote);
/* The site failed before a transaction: back it off; what waits for it is deferred with
 * status and reason. */
void dlv_site_failed(struct dlv_site *s, const char *status, const char *reason);
void dlv_site_ok(struct dlv_site *s);
void dlv_site_mark(struct dlv_site *s);
uint64_t dlv_now(const struct delivery *d);
/* Wall clock, ms since the epoch (arrival times, expiry). */
uint64_t dlv_wall_ms(void);

/* delivery.c, for delivery_ctl.c: the domain of that name (lower case), made if new (NULL: out
 * of memory); marking it to be looked at this turn; the shard that owns a domain; sending a
 * job or a report to a shard (the mesh, in order); freeing a job. */
struct dlv_domain *dlv_domain_get(struct delivery *d, const char *name);
void dlv_domain_mark(struct delivery *d, struct dlv_domain *dom);
unsigned dlv_domain_owner(const struct delivery *d, const char *name);
void dlv_send(struct delivery *d, unsigned to, struct xmsg *x);
void dlv_job_free(struct dlv_job *j);

/* smtp_out.c */
struct dlv_conn *smtp_out_open(struct delivery *d, struct dlv_site *s);
/* An idle connection: start the next transaction now, if the site has work. */
void smtp_out_kick(struct dlv_conn *c);
void smtp_out_complete(struct delivery *d, const struct io_uring_cqe *cqe);
void smtp_out_shutdown(struct dlv_conn *c);
/* Closes now: what the transaction had open is deferred (delivered again after a restart). */
void smtp_out_abort(struct dlv_conn *c);

#endif
