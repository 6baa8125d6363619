/*
 * auth_pool — password checks on worker threads; see auth_pool.h.
 *
 * The queue is a FIFO list under one mutex (workers wait on a condition variable); each inbox
 * is a lock-free stack (a worker pushes with a compare-and-swap, the owner takes the whole
 * stack with one exchange and reverses it), so a shard never waits on a lock a worker holds
 * while it runs a check.
 */
#include "server/auth_pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/assert.h"

_Static_assert(AUTH_POOL_THREADS_MAX * AUTH_POOL_QUEUE_PER_THREAD < 1u << 20, "a small queue");

struct auth_inbox {
	_Atomic(struct auth_job *) done; /* a stack, newest first */
	_Atomic int wake_fd;
};

struct auth_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct auth_job *head, *tail; /* waiting for a worker */
	unsigned queued, queue_max;
	bool stop;
	_Atomic unsigned pending; /* submitted, not yet taken */
	auth_pool_check_fn *check;
	pthread_t threads[AUTH_POOL_THREADS_MAX];
	unsigned nthreads;
	struct auth_inbox *inbox;
	unsigned ninboxes;
};

void
auth_pool_check_crypt(struct auth_job *job)
{
	job->ok = auth_password_check(job->hash, job->pass, job->pass_len);
	explicit_bzero(job->pass, sizeof job->pass);
}

static void
inbox_push(struct auth_inbox *ib, struct auth_job *job)
{
	struct auth_job *top = atomic_load_explicit(&ib->done, memory_order_relaxed);
	do {
		job->next = top;
	} while (!atomic_compare_exchange_weak_explicit(&ib->done, &top, job, memory_order_release,
							memory_order_relaxed));
	int fd = atomic_load_explicit(&ib->wake_fd, memory_order_relaxed);
	if (fd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(fd, &one, sizeof one);
		(void)w; /* an eventfd counter that is full already wakes its reader */
	}
}

static void *
worker_main(void *arg)
{
	struct auth_pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->head == NULL && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		struct auth_job *job = p->head;
		if (job == NULL) { /* stopping, and the queue is empty */
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		ASSERT(p->queued > 0);
		p->queued--;
		pthread_mutex_unlock(&p->mu);
		job->next = NULL;
		p->check(job);
		ASSERT(job->inbox < p->ninboxes);
		inbox_push(&p->inbox[job->inbox], job);
	}
}

struct auth_pool *
auth_pool_create(const struct auth_pool_params *prm, char *err, size_t err_len)
{
	ASSERT(prm->threads >= 1 && prm->threads <= AUTH_POOL_THREADS_MAX);
	ASSERT(prm->queue_max >= 1);
	ASSERT(prm->ninboxes >= 1 && prm->ninboxes <= AUTH_POOL_INBOXES_MAX);
	struct auth_pool *p = calloc(1, sizeof *p);
	struct auth_inbox *ib = calloc(prm->ninboxes, sizeof *ib);
	if (!p || !ib) {
		free(p);
		free(ib);
		snprintf(err, err_len, "out of memory for the password check pool");
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->queue_max = prm->queue_max;
	p->check = prm->check ? prm->check : auth_pool_check_crypt;
	p->inbox = ib;
	p->ninboxes = prm->ninboxes;
	for (unsigned i = 0; i < p->ninboxes; i++)
		atomic_init(&ib[i].wake_fd, -1);
	/* The workers take no signal: the daemon waits for them in one thread (sigwaitinfo). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < prm->threads; i++) {
		int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (rc != 0) {
			snprintf(err, err_len, "password check thread: pthread_create: %s",
				 strerror(rc));
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			auth_pool_destroy(p);
			return NULL;
		}
		p->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return p;
}

void
auth_pool_inbox_set_wake(struct auth_pool *pool, unsigned inbox, int wake_fd)
{
	ASSERT(inbox < pool->ninboxes);
	atomic_store_explicit(&pool->inbox[inbox].wake_fd, wake_fd, memory_order_relaxed);
}

int
auth_pool_submit(struct auth_pool *pool, unsigned inbox, struct auth_job *job)
{
	ASSERT(inbox < pool->ninboxes && job != NULL);
	ASSERT(job->pass_len <= SASL_PASSWORD_MAX && memchr(job->hash, '\0', sizeof job->hash));
	pthread_mutex_lock(&pool->mu);
	ASSERT(!pool->stop);
	if (pool->queued >= pool->queue_max) {
		pthread_mutex_unlock(&pool->mu);
		return -EAGAIN;
	}
	job->inbox = inbox;
	job->ok = false;
	job->next = NULL;
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	atomic_fetch_add_explicit(&pool->pending, 1, memory_order_relaxed);
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	return 0;
}

struct auth_job *
auth_pool_take(struct auth_pool *pool, unsigned inbox)
{
	ASSERT(inbox < pool->ninboxes);
	struct auth_job *j =
	    atomic_exchange_explicit(&pool->inbox[inbox].done, NULL, memory_order_acquire);
	struct auth_job *fifo = NULL;
	unsigned n = 0;
	while (j) { /* newest first: reversed, so the oldest comes first */
		struct auth_job *next = j->next;
		j->next = fifo;
		fifo = j;
		j = next;
		n++;
	}
	if (n > 0) {
		unsigned before =
		    atomic_fetch_sub_explicit(&pool->pending, n, memory_order_relaxed);
		ASSERT(before >= n);
	}
	return fifo;
}

unsigned
auth_pool_pending(struct auth_pool *pool)
{
	return atomic_load_explicit(&pool->pending, memory_order_relaxed);
}

static void
job_free(struct auth_job *job)
{
	explicit_bzero(job->pass, sizeof job->pass);
	free(job);
}

void
auth_pool_destroy(struct auth_pool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	/* No worker ran (a failed start): what was queued is dropped. */
	for (struct auth_job *j = pool->head, *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
	for (unsigned i = 0; i < pool->ninboxes; i++) {
		for (struct auth_job *j = auth_pool_take(pool, i), *next; j; j = next) {
			next = j->next;
			job_free(j);
		}
	}
	pthread_mutex_destroy(&pool->mu);
	pthread_cond_destroy(&pool->cv);
	free(pool->inbox);
	free(pool);
}
