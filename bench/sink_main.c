/*
 * ringmx-sink — a fast SMTP server that stores nothing: the receiving end of outbound tests
 * and the "loopback limit" that benchmarks compare against.
 *
 *   ringmx-sink --listen ADDR:PORT [--shards N] [--delay-ms D] [--tempfail-pct P]
 *               [--permfail-pct P] [--stats FILE] [--hostname NAME]
 *               [--starttls --tls-cert FILE --tls-key FILE] [--busy-poll US]
 *
 * It runs ringmx's own shard loop and SMTP session (PIPELINING, CHUNKING, 8BITMIME, SMTPUTF8)
 * in sink mode: every recipient is accepted, each message is answered 250 (or 451/554 at the
 * given rates, after an optional delay) and discarded. It counts connections, messages,
 * recipients and bytes; prints them on exit and on SIGUSR1, and writes them as JSON to --stats.
 * With --starttls it offers STARTTLS with the given certificate (PEM), through the same TLS
 * transport as ringmx (server/tls.c), and counts the handshakes completed (tls) and failed
 * (tls_failed). --busy-poll US makes each shard poll its ring that long before it sleeps (the
 * server's [server] busy_poll_us): on a VM, where waking a sleeping vCPU is slow, it keeps the
 * sink's own wake-ups out of what a benchmark measures.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/config.h"
#include "server/conn_limits.h"
#include "server/log.h"
#include "server/shard.h"

#define SINK_SHARDS_MAX 256

struct sink_opts {
	const char *listen;
	const char *hostname;
	const char *stats_path;
	const char *tls_cert, *tls_key;
	bool starttls;
	unsigned busy_poll_us;
	unsigned shards;
	struct shard_sink mode;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: ringmx-sink --listen ADDR:PORT [--shards N] [--delay-ms D]\n"
		   "                   [--tempfail-pct P] [--permfail-pct P] [--stats FILE]\n"
		   "                   [--hostname NAME] [--starttls --tls-cert FILE --tls-key FILE]\n"
		   "                   [--busy-poll US (0 to 10000)]\n"
		   "--shards defaults to the CPUs this process may run on.\n");
}

static int
parse_uint(const char *opt, const char *s, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v > max) {
		fprintf(stderr, "ringmx-sink: %s: expected an integer 0..%u, got \"%s\"\n", opt, max, s);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int
parse_args(int argc, char **argv, struct sink_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(a, "--starttls") == 0) {
			o->starttls = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "ringmx-sink: %s: missing value or unknown option\n", a);
			return -1;
		}
		i++;
		int rc = 0;
		if (strcmp(a, "--listen") == 0)
			o->listen = v;
		else if (strcmp(a, "--hostname") == 0)
			o->hostname = v;
		else if (strcmp(a, "--stats") == 0)
			o->stats_path = v;
		else if (strcmp(a, "--tls-cert") == 0)
			o->tls_cert = v;
		else if (strcmp(a, "--tls-key") == 0)
			o->tls_key = v;
		else if (strcmp(a, "--shards") == 0)
			rc = parse_uint(a, v, SINK_SHARDS_MAX, &o->shards);
		else if (strcmp(a, "--busy-poll") == 0)
			rc = parse_uint(a, v, CONFIG_BUSY_POLL_MAX_US, &o->busy_poll_us);
		else if (strcmp(a, "--delay-ms") == 0)
			rc = parse_uint(a, v, 600000, &o->mode.delay_ms);
		else if (strcmp(a, "--tempfail-pct") == 0)
			rc = parse_uint(a, v, 100, &o->mode.tempfail_pct);
		else if (strcmp(a, "--permfail-pct") == 0)
			rc = parse_uint(a, v, 100, &o->mode.permfail_pct);
		else {
			fprintf(stderr, "ringmx-sink: unknown option %s\n", a);
			return -1;
		}
		if (rc < 0)
			return -1;
	}
	if (!o->listen) {
		fprintf(stderr, "ringmx-sink: --listen is required\n");
		return -1;
	}
	if (o->starttls != (o->tls_cert != NULL) || o->starttls != (o->tls_key != NULL)) {
		fprintf(stderr, "ringmx-sink: --starttls, --tls-cert and --tls-key go together\n");
		return -1;
	}
	if (o->mode.tempfail_pct + o->mode.permfail_pct > 100) {
		fprintf(stderr, "ringmx-sink: --tempfail-pct + --permfail-pct exceed 100\n");
		return -1;
	}
	return 0;
}

struct sink_totals {
	uint64_t connections, messages, recipients, bytes, tempfailed, permfailed, tls, tls_failed;
};

static void
sink_totals(struct shard **shards, unsigned n, struct sink_totals *t)
{
	memset(t, 0, sizeof *t);
	for (unsigned i = 0; i < n; i++) {
		const struct shard_stats *s = shard_stats(shards[i]);
		t->connections += atomic_load(&s->connections);
		t->messages += atomic_load(&s->messages);
		t->recipients += atomic_load(&s->recipients);
		t->bytes += atomic_load(&s->bytes);
		t->tempfailed += atomic_load(&s->tempfailed);
		t->permfailed += atomic_load(&s->rejected);
		t->tls += atomic_load(&s->tls);
		t->tls_failed += atomic_load(&s->tls_failed);
	}
}

static void
sink_report(struct shard **shards, unsigned n, const char *stats_path, double elapsed_s)
{
	struct sink_totals t;
	sink_totals(shards, n, &t);
	fprintf(stderr,
		"ringmx-sink: connections=%llu messages=%llu recipients=%llu bytes=%llu "
		"tempfailed=%llu permfailed=%llu tls=%llu tls_failed=%llu elapsed_s=%.3f\n",
		(unsigned long long)t.connections, (unsigned long long)t.messages,
		(unsigned long long)t.recipients, (unsigned long long)t.bytes,
		(unsigned long long)t.tempfailed, (unsigned long long)t.permfailed,
		(unsigned long long)t.tls, (unsigned long long)t.tls_failed, elapsed_s);
	if (!stats_path)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		fprintf(stderr, "ringmx-sink: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fprintf(f,
		"{\"connections\":%llu,\"messages\":%llu,\"recipients\":%llu,\"bytes\":%llu,"
		"\"tempfailed\":%llu,\"permfailed\":%llu,\"tls\":%llu,\"tls_failed\":%llu,"
		"\"elapsed_s\":%.3f}\n",
		(unsigned long long)t.connections, (unsigned long long)t.messages,
		(unsigned long long)t.recipients, (unsigned long long)t.bytes,
		(unsigned long long)t.tempfailed, (unsigned long long)t.permfailed,
		(unsigned long long)t.tls, (unsigned long long)t.tls_failed, elapsed_s);
	fclose(f);
	rename(tmp, stats_path); /* readers never see half a file */
}

static struct config *
sink_config(const struct sink_opts *o, unsigned nshards)
{
	char text[2048 + 2 * PATH_MAX], err[1024];
	int n = snprintf(text, sizeof text,
			 "[server]\nlisten = %s\nhostname = %s\nshards = %u\nmax_connections = 60000\n"
			 "max_connections_per_ip = 0\nmax_message_size = 1g\nmax_recipients = 100000\n"
			 "max_line_length = 65536\nmax_errors = 1000\ntimeout_session = 86400\n"
			 "log_level = warn\nbare_newline = accept\nbusy_poll_us = %u\npin_shards = no\n"
			 "[spool]\ndir = /nonexistent-sink-stores-nothing\n",
			 o->listen, o->hostname ? o->hostname : "sink.invalid", nshards,
			 o->busy_poll_us);
	if (o->starttls && n > 0 && (size_t)n < sizeof text)
		snprintf(text + n, sizeof text - (size_t)n, "[tls]\ncert = %s\nkey = %s\n", o->tls_cert,
			 o->tls_key);
	struct config *cfg = config_load_string(text, "(ringmx-sink)", err, sizeof err);
	if (!cfg)
		fprintf(stderr, "ringmx-sink: %s\n", err);
	return cfg;
}

int
main(int argc, char **argv)
{
	struct sink_opts o = {0};
	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	o.mode.enabled = true;
	unsigned nshards = o.shards ? o.shards : config_cpu_count();
	struct config *cfg = sink_config(&o, nshards);
	if (!cfg)
		return 2;
	log_thread_init(-1, false);
	log_set_level(LOG_WARN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	conn_limits_init();
	static _Atomic uint32_t unused_seq;
	struct shard *shards[SINK_SHARDS_MAX] = {0};
	char err[512];
	int rc = 0;
	for (unsigned i = 0; i < nshards && rc == 0; i++) {
		struct shard_params p = {.id = i, .cfg = cfg, .next_seq = &unused_seq, .sink = o.mode};
		shards[i] = shard_create(&p, err, sizeof err);
		if (!shards[i] || shard_start(shards[i], err, sizeof err) < 0) {
			fprintf(stderr, "ringmx-sink: %s\n", err);
			rc = 1;
		}
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (rc == 0)
		fprintf(stderr, "ringmx-sink: listening on %s with %u shard(s)\n", o.listen, nshards);
	while (rc == 0) {
		int sig = sigwaitinfo(&set, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (sig == SIGUSR1) {
			sink_report(shards, nshards, o.stats_path, el);
		} else if (sig == SIGTERM || sig == SIGINT) {
			break;
		}
	}
	unsigned started = 0;
	for (unsigned i = 0; i < nshards && shards[i]; i++, started++)
		shard_request_stop(shards[i]);
	for (unsigned i = 0; i < started; i++)
		shard_join(shards[i]);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc == 0)
		sink_report(shards, started, o.stats_path,
			    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	for (unsigned i = 0; i < started; i++)
		shard_destroy(shards[i]);
	config_free(cfg);
	return rc;
}
