/*
 * Unit tests for server/auth_pool: every submitted check comes back to its own inbox with its
 * result and the password wiped, the inbox's eventfd is written, a full queue refuses with
 * -EAGAIN (and takes jobs again once a worker is free), and destroy frees what nobody took.
 */
#include "server/auth_pool.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* crypt("secret", "$6$saltsalt$") */
#define SHA512_SECRET                                                                          \
	"$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.P" \
	"q.H91p5hVO1"
#define WAIT_MS 20000 /* a bound for a hang, never a timing assertion */

static struct auth_job *
job_new(uint64_t owner, const char *hash, const char *pass)
{
	struct auth_job *j = calloc(1, sizeof *j);
	cr_assert_not_null(j);
	strcpy(j->hash, hash);
	j->pass_len = strlen(pass);
	memcpy(j->pass, pass, j->pass_len);
	j->owner = owner;
	return j;
}

static struct auth_pool *
pool_new(unsigned threads, unsigned queue_max, unsigned ninboxes, auth_pool_check_fn *check)
{
	char err[256] = "";
	struct auth_pool_params p = {.threads = threads, .queue_max = queue_max,
				     .ninboxes = ninboxes, .check = check};
	struct auth_pool *pool = auth_pool_create(&p, err, sizeof err);
	cr_assert_not_null(pool, "%s", err);
	return pool;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Takes from inbox until want jobs came back (into got[], in order), waiting on efd. */
static void
take_n(struct auth_pool *pool, unsigned inbox, int efd, struct auth_job **got, unsigned want)
{
	unsigned n = 0;
	uint64_t deadline = now_ms() + WAIT_MS;
	while (n < want) {
		struct pollfd pfd = {.fd = efd, .events = POLLIN};
		cr_assert(now_ms() < deadline, "only %u of %u checks came back", n, want);
		if (poll(&pfd, 1, 100) == 1) {
			uint64_t v;
			cr_assert_eq(read(efd, &v, sizeof v), (ssize_t)sizeof v);
			cr_assert_geq(v, 1);
		}
		for (struct auth_job *j = auth_pool_take(pool, inbox), *next; j; j = next) {
			next = j->next;
			cr_assert_lt(n, want, "more jobs than were submitted to inbox %u", inbox);
			got[n++] = j;
		}
	}
}

static bool
all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

Test(auth_pool, every_check_comes_back_to_its_inbox_with_its_result_and_the_password_wiped)
{
	enum { N = 24 };
	struct auth_pool *pool = pool_new(2, N, 2, NULL);
	int efd[2] = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
	cr_assert(efd[0] >= 0 && efd[1] >= 0);
	auth_pool_inbox_set_wake(pool, 0, efd[0]);
	auth_pool_inbox_set_wake(pool, 1, efd[1]);
	for (unsigned i = 0; i < N; i++) {
		const char *pass = i % 3 == 0 ? "secret" : "wrong";
		cr_assert_eq(auth_pool_submit(pool, i % 2, job_new(i, SHA512_SECRET, pass)), 0);
	}
	cr_assert_leq(auth_pool_pending(pool), N);
	struct auth_job *got[2][N / 2];
	for (unsigned inbox = 0; inbox < 2; inbox++) {
		take_n(pool, inbox, efd[inbox], got[inbox], N / 2);
		bool seen[N] = {false};
		for (unsigned k = 0; k < N / 2; k++) {
			struct auth_job *j = got[inbox][k];
			cr_assert_lt(j->owner, N);
			cr_assert_eq(j->owner % 2, inbox, "job %lu in inbox %u", j->owner, inbox);
			cr_assert_not(seen[j->owner], "job %lu came back twice", j->owner);
			seen[j->owner] = true;
			cr_assert_eq(j->ok, j->owner % 3 == 0, "job %lu", j->owner);
			cr_assert(all_zero(j->pass, sizeof j->pass),
				  "the password copy was not wiped");
			free(j);
		}
	}
	cr_assert_eq(auth_pool_pending(pool), 0);
	cr_assert_null(auth_pool_take(pool, 0));
	auth_pool_destroy(pool);
	close(efd[0]);
	close(efd[1]);
}

/* A check that blocks until the test opens the gate, and says when it has started. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static unsigned gate_started;

static void
gated_check(struct auth_job *job)
{
	pthread_mutex_lock(&gate_mu);
	gate_started++;
	pthread_cond_broadcast(&gate_cv);
	while (!gate_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	job->ok = job->owner == 7;
	explicit_bzero(job->pass, sizeof job->pass);
}

static void
gate_wait_started(unsigned n)
{
	pthread_mutex_lock(&gate_mu);
	while (gate_started < n)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

static void
gate_set(bool open)
{
	pthread_mutex_lock(&gate_mu);
	gate_open = open;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

Test(auth_pool, a_full_queue_refuses_with_eagain_and_takes_jobs_again_once_drained)
{
	struct auth_pool *pool = pool_new(1, 2, 1, gated_check);
	int efd = eventfd(0, EFD_CLOEXEC);
	auth_pool_inbox_set_wake(pool, 0, efd);
	gate_set(false);
	cr_assert_eq(auth_pool_submit(pool, 0, job_new(1, SHA512_SECRET, "a")), 0);
	gate_wait_started(1); /* the worker holds job 1: it no longer counts as queued */
	cr_assert_eq(auth_pool_submit(pool, 0, job_new(2, SHA512_SECRET, "b")), 0);
	cr_assert_eq(auth_pool_submit(pool, 0, job_new(3, SHA512_SECRET, "c")), 0);
	struct auth_job *refused = job_new(4, SHA512_SECRET, "d");
	cr_assert_eq(auth_pool_submit(pool, 0, refused), -EAGAIN);
	cr_assert_eq(refused->pass_len, 1, "a refused job is left untouched");
	cr_assert_eq(refused->pass[0], 'd');
	cr_assert_eq(auth_pool_pending(pool), 3);
	gate_set(true);
	struct auth_job *got[3];
	take_n(pool, 0, efd, got, 3);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(got[i]->owner, i + 1, "one worker: first in, first out");
		cr_assert_not(got[i]->ok);
		free(got[i]);
	}
	refused->owner = 7;
	cr_assert_eq(auth_pool_submit(pool, 0, refused), 0, "room again once the queue drained");
	take_n(pool, 0, efd, got, 1);
	cr_assert(got[0]->ok);
	free(got[0]);
	auth_pool_destroy(pool);
	close(efd);
}

Test(auth_pool, destroy_finishes_the_queue_and_frees_what_nobody_took)
{
	struct auth_pool *pool = pool_new(2, 16, 3, NULL);
	for (unsigned i = 0; i < 16; i++)
		cr_assert_eq(auth_pool_submit(pool, i % 3, job_new(i, SHA512_SECRET, "secret")), 0);
	/* nobody takes them, nobody is woken: destroy joins the workers and frees every job
	 * (the leak checker of the sanitizer build would report one left) */
	auth_pool_destroy(pool);
	auth_pool_destroy(NULL);
}

Test(auth_pool, the_crypt_check_tells_right_from_wrong_and_wipes_the_copy)
{
	struct auth_job *j = job_new(0, SHA512_SECRET, "secret");
	auth_pool_check_crypt(j);
	cr_assert(j->ok);
	cr_assert(all_zero(j->pass, sizeof j->pass));
	j->pass_len = 6;
	memcpy(j->pass, "Secret", 6);
	auth_pool_check_crypt(j);
	cr_assert_not(j->ok);
	j->pass_len = 0;
	auth_pool_check_crypt(j);
	cr_assert_not(j->ok, "an empty password never matches");
	free(j);
}
