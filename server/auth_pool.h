/*
 * auth_pool — password checks (crypt_r, slow on purpose) on a few worker threads shared by all
 * shards, so that a check never stalls a shard's loop and the other connections on it.
 *
 * A shard fills a job (a copy of the hash and of the password; nothing in it points into a
 * connection) and submits it with its inbox number; a worker runs the check, wipes the password
 * copy, puts the job in that inbox (a lock-free list) and writes 1 to the inbox's eventfd, on
 * which the shard keeps a read armed. The shard takes its finished jobs on its own thread and
 * finds their connection by the owner id it stored (slot and generation): a connection that is
 * gone, or has moved on, drops the result.
 *
 * Usage:
 *   struct auth_pool *p = auth_pool_create(&(struct auth_pool_params){.threads = 2,
 *                                          .queue_max = 16, .ninboxes = nshards}, err, len);
 *   auth_pool_inbox_set_wake(p, shard_id, wake_fd);        // before the first submit
 *   job = malloc(sizeof *job + ...); fill job->hash, pass, pass_len, owner;
 *   if (auth_pool_submit(p, shard_id, job) < 0) ... 454, free(job) ...
 *   // on the eventfd's completion, on the shard's thread:
 *   for (j = auth_pool_take(p, shard_id); j; j = next) { next = j->next; ... j->ok ...; }
 *   auth_pool_destroy(p);                                  // after every shard has stopped
 *
 * Limits: AUTH_POOL_THREADS_MAX workers; at most queue_max jobs wait for a worker (those that a
 * worker runs and those already done do not count), so a flood of AUTH attempts costs bounded
 * memory and gets a temporary failure instead.
 *
 * Ownership: the submitter allocates a job with malloc, as one block that starts with struct
 * auth_job (it may embed it first in a larger struct of its own); the pool holds it from a
 * successful submit until auth_pool_take hands it back, then the taker frees it. What is still
 * queued or in an inbox at auth_pool_destroy is checked or dropped, wiped and freed there.
 *
 * Failure: auth_pool_create returns NULL with err filled; auth_pool_submit returns -EAGAIN when
 * queue_max jobs are waiting (the job stays the caller's).
 */
#ifndef RINGMX_AUTH_POOL_H
#define RINGMX_AUTH_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/auth.h"
#include "server/sasl.h"

#define AUTH_POOL_THREADS_MAX 64
#define AUTH_POOL_QUEUE_PER_THREAD 8 /* the daemon's queue_max: this many per worker */
#define AUTH_POOL_INBOXES_MAX 256    /* one per shard */

struct auth_pool;

struct auth_job {
	/* in: set by the submitter */
	char hash[AUTH_HASH_MAX];         /* NUL-terminated crypt(3) hash */
	char pass[SASL_PASSWORD_MAX + 1]; /* wiped by the check */
	size_t pass_len;
	uint64_t owner; /* the submitter's, untouched by the pool */
	/* out: set by the check */
	bool ok; /* pass is the password of hash */
	/* the pool's */
	unsigned inbox;
	struct auth_job *next; /* in a queue, an inbox, or the list auth_pool_take returns */
};

/* The check a worker runs; it must set job->ok and wipe job->pass. */
typedef void auth_pool_check_fn(struct auth_job *job);

struct auth_pool_params {
	unsigned threads;   /* 1..AUTH_POOL_THREADS_MAX */
	unsigned queue_max; /* at least 1 */
	unsigned ninboxes;  /* 1..AUTH_POOL_INBOXES_MAX */
	auth_pool_check_fn *check; /* NULL: auth_pool_check_crypt (tests give their own) */
};

/* The default check: auth_password_check (crypt_r) of pass against hash, then the wipe. */
void auth_pool_check_crypt(struct auth_job *job);

/* Starts the workers. Returns the pool, or NULL with err filled. */
struct auth_pool *auth_pool_create(const struct auth_pool_params *p, char *err, size_t err_len);
/* Where a job put in inbox goes wakes its owner: an eventfd (or -1: nobody is woken; the owner
 * polls auth_pool_take). Set before the first submit to that inbox. */
void auth_pool_inbox_set_wake(struct auth_pool *pool, unsigned inbox, int wake_fd);
/* Thread-safe. Queues job for a worker; its result goes to inbox. Returns 0, or -EAGAIN when
 * queue_max jobs are already waiting (the job stays the caller's, untouched). */
int auth_pool_submit(struct auth_pool *pool, unsigned inbox, struct auth_job *job);
/* The jobs done for inbox since the last call, oldest first, linked by ->next (NULL: none). To
 * be called by the inbox's one owner thread. */
struct auth_job *auth_pool_take(struct auth_pool *pool, unsigned inbox);
/* Jobs submitted and not yet taken back, across all inboxes (tests, shutdown). */
unsigned auth_pool_pending(struct auth_pool *pool);
/* Lets the workers finish what is queued, joins them and frees the pool with every job not
 * taken (wiped). No submit may run concurrently or after. NULL is ignored. */
void auth_pool_destroy(struct auth_pool *pool);

#endif
