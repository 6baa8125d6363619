/*
 * ringmx-bench — SMTP load generator: parses options, resolves the server, runs one
 * bench_client per thread, shows progress on a terminal, and prints the report (text or
 * JSON). See bench/README.md for every option and field.
 *
 * Exit status: 0 the run completed (rejections included), 1 nothing could be sent or the run
 * stopped early (server unreachable, interrupted, set-up failure), 2 usage error.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_client.h"
#include "bench/bench_opts.h"
#include "bench/hist.h"
#include "server/assert.h"
#include "server/config.h"

#define EXIT_USAGE 2
#define PROGRESS_POLL_NS 100000000u /* how often main looks for finished threads */
#define FD_SPARE 64		    /* descriptors besides the connections */

struct bench_run {
	struct bench_opts opts;
	struct bench_plan plan;
	unsigned nthreads;
	struct bench_client **clients;
	pthread_t *tids;
	struct bench_stats total;
	struct hist *eod, *txn;
	double elapsed_s;
	bool interrupted;
};

static struct bench_plan *g_plan; /* for the signal handler only */

static void
on_signal(int sig)
{
	(void)sig;
	/* atomic_bool is lock-free here, so this store is async-signal-safe. */
	if (g_plan)
		atomic_store_explicit(&g_plan->stop, true, memory_order_relaxed);
}

static int
resolve(const struct bench_opts *o, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	int rc = getaddrinfo(o->host, o->port, &hints, &res);

	if (rc != 0) {
		fprintf(stderr, "ringmx-bench: cannot resolve '%s': %s\n", o->host,
			gai_strerror(rc));
		return -1;
	}
	ASSERT(res->ai_addrlen <= sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Connections need descriptors: raise the soft limit as far as the hard one allows. */
static int
raise_fd_limit(unsigned connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)connections + FD_SPARE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return 0;
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want) {
		fprintf(stderr,
			"ringmx-bench: %u connections need %llu descriptors; the limit is "
			"%llu (ulimit -n)\n",
			connections, (unsigned long long)want, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static void
server_name(const struct bench_opts *o, char *out, size_t cap)
{
	bool v6 = strchr(o->host, ':') != NULL;

	snprintf(out, cap, "%s%s%s:%s", v6 ? "[" : "", o->host, v6 ? "]" : "", o->port);
}

/* Thread i's share of n when n is spread over `parts` in proportion to its connections. */
static uint64_t
share(uint64_t n, unsigned conns_before, unsigned conns_i, unsigned conns_total)
{
	unsigned __int128 a = (unsigned __int128)n * conns_before / conns_total;
	unsigned __int128 b = (unsigned __int128)n * (conns_before + conns_i) / conns_total;

	return (uint64_t)(b - a);
}

static int
run_setup(struct bench_run *r)
{
	const struct bench_opts *o = &r->opts;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];
	unsigned before = 0;

	if (resolve(o, &ss, &sslen) < 0 || raise_fd_limit(o->connections) < 0)
		return -1;
	if (bench_client_plan_init(&r->plan, o, (struct sockaddr *)&ss, sslen, r->nthreads, err,
				   sizeof(err)) < 0) {
		fprintf(stderr, "ringmx-bench: %s\n", err);
		return -1;
	}
	r->clients = calloc(r->nthreads, sizeof(*r->clients));
	r->tids = calloc(r->nthreads, sizeof(*r->tids));
	r->eod = hist_new();
	r->txn = hist_new();
	if (!r->clients || !r->tids || !r->eod || !r->txn) {
		fprintf(stderr, "ringmx-bench: out of memory\n");
		return -1;
	}
	for (unsigned i = 0; i < r->nthreads; i++) {
		unsigned conns = o->connections / r->nthreads + (i < o->connections % r->nthreads);
		uint64_t quota = share(o->messages, before, conns, o->connections);
		double rate = o->rate * conns / o->connections;

		r->clients[i] = bench_client_new(&r->plan, i, conns, quota, rate, err, sizeof(err));
		if (!r->clients[i]) {
			fprintf(stderr, "ringmx-bench: %s\n", err);
			return -1;
		}
		before += conns;
	}
	return 0;
}

static void
run_teardown(struct bench_run *r)
{
	for (unsigned i = 0; r->clients && i < r->nthreads; i++)
		bench_client_free(r->clients[i]);
	free(r->clients);
	free(r->tids);
	hist_free(r->eod);
	hist_free(r->txn);
	bench_client_plan_free(&r->plan);
}

static void
progress_line(const struct bench_run *r, uint64_t now_ns, uint64_t *last_accepted,
	      uint64_t *last_ns)
{
	struct bench_progress sum = {0}, p;

	for (unsigned i = 0; i < r->nthreads; i++) {
		bench_client_progress(r->clients[i], &p);
		sum.sent += p.sent;
		sum.accepted += p.accepted;
		sum.rejected += p.rejected;
		sum.errored += p.errored;
	}
	double dt = (double)(now_ns - *last_ns) / 1e9;
	double rate = dt > 0 ? (double)(sum.accepted - *last_accepted) / dt : 0;

	printf("\r[%4.0fs] sent %llu  accepted %llu  rejected %llu  errored %llu  %.0f msgs/s  ",
	       (double)(now_ns - r->plan.t0_ns) / 1e9, (unsigned long long)sum.sent,
	       (unsigned long long)sum.accepted, (unsigned long long)sum.rejected,
	       (unsigned long long)sum.errored, rate);
	fflush(stdout);
	*last_accepted = sum.accepted;
	*last_ns = now_ns;
}

/* Starts the threads with signals blocked (main handles them), waits, shows progress. */
static int
run_threads(struct bench_run *r)
{
	bool tty = isatty(STDOUT_FILENO);
	sigset_t all, old;
	unsigned started = 0, joined = 0;
	uint64_t last_accepted = 0, last_ns, next_tick;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r->plan.t0_ns = bench_client_now_ns();
	for (; started < r->nthreads; started++)
		if (pthread_create(&r->tids[started], NULL, bench_client_run, r->clients[started]))
			break;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started < r->nthreads) {
		fprintf(stderr, "ringmx-bench: pthread_create failed\n");
		atomic_store(&r->plan.stop, true);
	}
	last_ns = r->plan.t0_ns;
	next_tick = last_ns + 1000000000u;
	bool *done = calloc(started ? started : 1, sizeof(*done));

	ASSERT(done);
	while (joined < started) {
		struct timespec ts = {.tv_nsec = PROGRESS_POLL_NS};

		nanosleep(&ts, NULL);
		for (unsigned i = 0; i < started; i++) {
			if (!done[i] && pthread_tryjoin_np(r->tids[i], NULL) == 0) {
				done[i] = true;
				joined++;
			}
		}
		uint64_t now = bench_client_now_ns();

		if (tty && now >= next_tick && joined < started) {
			progress_line(r, now, &last_accepted, &last_ns);
			next_tick += 1000000000u;
		}
	}
	free(done);
	if (tty && r->plan.t0_ns + 1000000000u <= last_ns)
		printf("\r\033[K");
	return started == r->nthreads ? 0 : -1;
}

static void
run_merge(struct bench_run *r)
{
	uint64_t start = r->plan.t0_ns + r->plan.warmup_ns, end;

	for (unsigned i = 0; i < r->nthreads; i++) {
		bench_client_stats_add(&r->total, bench_client_stats(r->clients[i]));
		hist_merge(r->eod, bench_client_hist_eod(r->clients[i]));
		hist_merge(r->txn, bench_client_hist_txn(r->clients[i]));
	}
	end = r->total.t_last_ns ? r->total.t_last_ns : bench_client_now_ns();
	r->elapsed_s = end > start ? (double)(end - start) / 1e9 : 0;
	r->interrupted = atomic_load(&r->plan.stop);
}

/* ---- reports -------------------------------------------------------------------------- */

static double
rate_per_s(double n, double elapsed_s)
{
	return elapsed_s > 0 ? n / elapsed_s : 0;
}

static void
json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

static void
json_latency(const char *name, const struct hist *h)
{
	printf("\"%s\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}", name,
	       (double)hist_percentile(h, 50) / 1e3, (double)hist_percentile(h, 90) / 1e3,
	       (double)hist_percentile(h, 99) / 1e3, (double)hist_percentile(h, 99.9) / 1e3,
	       (double)hist_max(h) / 1e3);
}

static void
json_config(const struct bench_run *r)
{
	const struct bench_opts *o = &r->opts;
	char server[BENCH_HOST_MAX + 16];

	server_name(o, server, sizeof(server));
	printf("\"config\":{\"server\":");
	json_string(server);
	printf(",\"threads\":%u,\"connections\":%u,", r->nthreads, o->connections);
	if (o->messages)
		printf("\"messages\":%llu,\"duration_s\":null,", (unsigned long long)o->messages);
	else
		printf("\"messages\":null,\"duration_s\":%g,", o->duration_s);
	printf("\"warmup_s\":%g,\"sizes\":[", o->warmup_s);
	for (unsigned i = 0; i < o->nsizes; i++)
		printf("%s{\"bytes\":%llu,\"weight\":%u}", i ? "," : "",
		       (unsigned long long)o->sizes[i].bytes, o->sizes[i].weight);
	printf("],\"rcpts\":%u,\"per_conn\":%llu,\"pipelining\":%s,\"pipelining_envelope\":%s,"
	       "\"chunking\":%s,\"starttls\":%s,",
	       o->rcpts, (unsigned long long)o->per_conn, o->pipelining ? "true" : "false",
	       o->pipelining_envelope ? "true" : "false", o->chunking ? "true" : "false",
	       o->starttls ? "true" : "false");
	if (o->rate > 0)
		printf("\"rate\":%g,", o->rate);
	else
		printf("\"rate\":null,");
	printf("\"timeout_s\":%g,\"from\":", o->timeout_s);
	json_string(o->from);
	printf(",\"to\":");
	json_string(o->to);
	printf(",\"helo\":");
	json_string(o->helo);
	printf("}");
}

/* A string field, or null when it is empty. */
static void
json_string_or_null(const char *name, const char *s)
{
	printf("\"%s\":", name);
	if (s[0])
		json_string(s);
	else
		printf("null");
}

/* "tls": whether --starttls was asked; what the handshakes did (README.md "JSON"). */
static void
json_tls(const struct bench_run *r)
{
	const struct bench_stats *t = &r->total;

	printf("\"tls\":%s,\"tls_handshakes\":%llu,\"tls_failed\":%llu,",
	       r->opts.starttls ? "true" : "false", (unsigned long long)t->tls_handshakes,
	       (unsigned long long)t->tls_failed);
	json_string_or_null("tls_version", t->tls_version);
	putchar(',');
	json_string_or_null("tls_cipher", t->tls_cipher);
	putchar(',');
	json_string_or_null("tls_error", t->tls_error);
	putchar(',');
}

static void
report_json(const struct bench_run *r)
{
	const struct bench_stats *t = &r->total;
	bool first = true;

	printf("{\"sent\":%llu,\"accepted\":%llu,\"rejected\":{", (unsigned long long)t->sent,
	       (unsigned long long)t->accepted);
	for (unsigned code = 0; code < BENCH_CODE_MAX; code++) {
		if (!t->rejected[code])
			continue;
		printf("%s\"%u\":%llu", first ? "" : ",", code,
		       (unsigned long long)t->rejected[code]);
		first = false;
	}
	printf("},\"errored\":%llu,\"elapsed_s\":%.3f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.2f,"
	       "\"connections\":%llu,",
	       (unsigned long long)t->errored, r->elapsed_s,
	       rate_per_s((double)t->accepted, r->elapsed_s),
	       rate_per_s((double)t->bytes_accepted / 1e6, r->elapsed_s),
	       (unsigned long long)t->connections);
	json_latency("latency_eod_us", r->eod);
	putchar(',');
	json_latency("latency_txn_us", r->txn);
	printf(",\"connect_errors\":%llu,\"timeouts\":%llu,\"rcpts_rejected\":%llu,"
	       "\"unsent\":%llu,\"bytes_accepted\":%llu,\"pipelining_fallback\":%s,"
	       "\"chunking_fallback\":%s,\"interrupted\":%s,",
	       (unsigned long long)t->connect_errors, (unsigned long long)t->timeouts,
	       (unsigned long long)t->rcpts_rejected, (unsigned long long)t->unsent,
	       (unsigned long long)t->bytes_accepted,
	       atomic_load(&r->plan.note_pipelining) ? "true" : "false",
	       atomic_load(&r->plan.note_chunking) ? "true" : "false",
	       r->interrupted ? "true" : "false");
	json_tls(r);
	json_config(r);
	printf("}\n");
}

static void
text_latency(const char *name, const struct hist *h)
{
	printf("  %-13s %9.1f %9.1f %9.1f %9.1f %9.1f\n", name,
	       (double)hist_percentile(h, 50) / 1e3, (double)hist_percentile(h, 90) / 1e3,
	       (double)hist_percentile(h, 99) / 1e3, (double)hist_percentile(h, 99.9) / 1e3,
	       (double)hist_max(h) / 1e3);
}

static void
text_header(const struct bench_run *r)
{
	const struct bench_opts *o = &r->opts;
	char server[BENCH_HOST_MAX + 16];

	server_name(o, server, sizeof(server));
	printf("ringmx-bench %s: %u thread%s, %u connection%s, size ", server, r->nthreads,
	       r->nthreads == 1 ? "" : "s", o->connections, o->connections == 1 ? "" : "s");
	for (unsigned i = 0; i < o->nsizes; i++)
		printf(o->nsizes == 1 ? "%s%llu" : "%s%llu:%u", i ? "," : "",
		       (unsigned long long)o->sizes[i].bytes, o->sizes[i].weight);
	printf(", %u rcpt%s, %s%s%s%s", o->rcpts, o->rcpts == 1 ? "" : "s",
	       o->pipelining_envelope ? "envelope pipelining, "
	       : o->pipelining	      ? "pipelining, "
				      : "",
	       o->chunking ? "chunking, " : "", o->starttls ? "starttls, " : "",
	       o->rate > 0 ? "open loop" : "closed loop");
	if (o->rate > 0)
		printf(" %g msgs/s", o->rate);
	printf("\n");
}

static void
report_text(const struct bench_run *r)
{
	const struct bench_stats *t = &r->total;
	const char *sep = "  (";

	text_header(r);
	printf("  sent          %llu\n", (unsigned long long)t->sent);
	printf("  accepted      %llu\n", (unsigned long long)t->accepted);
	printf("  rejected      %llu", (unsigned long long)t->rejected_total);
	for (unsigned code = 0; code < BENCH_CODE_MAX; code++) {
		if (!t->rejected[code])
			continue;
		printf("%s%u: %llu", sep, code, (unsigned long long)t->rejected[code]);
		sep = ", ";
	}
	printf("%s\n", t->rejected_total ? ")" : "");
	printf("  errored       %llu  (timeouts %llu)\n", (unsigned long long)t->errored,
	       (unsigned long long)t->timeouts);
	if (t->rcpts_rejected)
		printf("  rcpts refused %llu\n", (unsigned long long)t->rcpts_rejected);
	if (t->unsent)
		printf("  unsent        %llu  (due before the end, no free connection)\n",
		       (unsigned long long)t->unsent);
	printf("  connections   %llu opened, %llu failed\n", (unsigned long long)t->connections,
	       (unsigned long long)t->connect_errors);
	if (r->opts.starttls) {
		printf("  tls           %llu handshakes, %llu failed",
		       (unsigned long long)t->tls_handshakes, (unsigned long long)t->tls_failed);
		if (t->tls_version[0])
			printf("  (%s %s)", t->tls_version, t->tls_cipher);
		printf("\n");
	}
	printf("  elapsed       %.3f s\n", r->elapsed_s);
	printf("  throughput    %.1f msgs/s  %.2f MB/s\n",
	       rate_per_s((double)t->accepted, r->elapsed_s),
	       rate_per_s((double)t->bytes_accepted / 1e6, r->elapsed_s));
	printf("  latency (us)        p50       p90       p99     p99.9       max\n");
	text_latency("end-of-data", r->eod);
	text_latency(r->opts.rate > 0 ? "txn (intended)" : "transaction", r->txn);
}

/* ---- main ----------------------------------------------------------------------------- */

/* Notes and the exit status: what went wrong is said on stderr, the report on stdout. */
static int
run_verdict(const struct bench_run *r)
{
	const struct bench_stats *t = &r->total;
	char server[BENCH_HOST_MAX + 16];

	server_name(&r->opts, server, sizeof(server));
	if (atomic_load(&r->plan.note_pipelining))
		fprintf(stderr,
			"note: the server did not advertise PIPELINING; lock-step was used\n");
	if (atomic_load(&r->plan.note_chunking))
		fprintf(stderr, "note: the server did not advertise CHUNKING; DATA was used\n");
	if (t->tls_failed && (t->sent > 0 || t->first_errno))
		fprintf(stderr, "ringmx-bench: %llu STARTTLS set-ups failed (first: %s)\n",
			(unsigned long long)t->tls_failed, t->tls_error);
	if (t->sent == 0 && t->first_errno)
		fprintf(stderr, "ringmx-bench: cannot connect to %s: %s\n", server,
			strerror(t->first_errno));
	else if (t->sent == 0 && t->tls_failed)
		fprintf(stderr, "ringmx-bench: STARTTLS with %s failed: %s\n", server,
			t->tls_error);
	else if (t->sent == 0 && t->first_bad_greeting)
		fprintf(stderr, "ringmx-bench: %s refused the session (reply %d)\n", server,
			t->first_bad_greeting);
	else if (t->sent == 0)
		fprintf(stderr, "ringmx-bench: nothing was sent\n");
	else if (t->gave_up)
		fprintf(stderr, "ringmx-bench: stopped early: %s became unreachable\n", server);
	else if (r->interrupted)
		fprintf(stderr, "ringmx-bench: interrupted\n");
	else
		return 0;
	return 1;
}

static void
install_signals(struct bench_plan *plan)
{
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};

	g_plan = plan;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL); /* a second ^C kills at once */
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int
main(int argc, char **argv)
{
	static struct bench_run r; /* large (stats, histograms' pointers): not on the stack */
	char err[256] = "";
	int rc = bench_opts_parse(&r.opts, argc, argv, err, sizeof(err));

	if (rc == BENCH_OPTS_HELP) {
		fputs(bench_opts_usage(), stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "ringmx-bench: %s\n", err);
		if (rc == -EINVAL)
			fprintf(stderr, "try 'ringmx-bench --help'\n");
		return EXIT_USAGE;
	}
	r.nthreads = r.opts.threads ? r.opts.threads : config_cpu_count();
	if (r.nthreads > r.opts.connections)
		r.nthreads =
		    r.opts.connections; /* a thread without connections has nothing to do */
	if (run_setup(&r) < 0) {
		run_teardown(&r);
		return 1;
	}
	install_signals(&r.plan);
	rc = run_threads(&r);
	run_merge(&r);
	if (r.opts.json)
		report_json(&r);
	else
		report_text(&r);
	fflush(stdout);
	rc = rc < 0 ? 1 : run_verdict(&r);
	run_teardown(&r);
	return rc;
}
