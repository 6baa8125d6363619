/*
 * ringmx-resolve — prints the delivery route of mail domains, using dns_route over a resolver
 * on its own small io_uring loop (the same way a shard drives it).
 *
 *   ringmx-resolve [--resolver "addr[:port] ..."] [--timeout ms] [--attempts n]
 *                  [--prefer ipv4|ipv6] [--allow-loopback] [--local-addr ADDR]...
 *                  [--no-interfaces] [--tlsa PORT] [--sequential] [--concurrency n]
 *                  [--repeat n] [--interval-ms ms] [--cache-size n] [--file PATH]
 *                  [--summary] DOMAIN...
 *
 * Up to --concurrency routes are resolved at once (default 64; --sequential is 1), so a slow
 * domain delays only itself, and a repeated domain that comes after its first route finished is
 * served from the cache. --repeat resolves the whole list again, n rounds in all, sleeping
 * --interval-ms between rounds (a TTL that ran out meanwhile sends a new query). --file adds
 * the domains of a file, one per line ("-": standard input).
 *
 * This host's own addresses (an MX host with one of them is ourselves: RFC 5321 5.1 loop
 * detection, see dns_route.h) are its interfaces' non-loopback addresses (--no-interfaces: none)
 * and every --local-addr. --tlsa PORT also looks up the TLSA records of _PORT._tcp.HOST for
 * every MX host of a route that is ok (the domain itself when it has no MX) and prints them
 * under the host; the route is printed when they are all back.
 *
 * Output, one route per domain in completion order (not with --summary), then the counters:
 *   route domain=D status=ok|tempfail|permfail code=C reason="..." implicit=yes|no mx_ttl=N
 *         cache=yes|no self_pref=P|- ms=N
 *   mx pref=P host=H ttl=N
 *   addr A ttl=N cache=yes|no
 *   tlsa name=_PORT._tcp.H status=found|none|tempfail|error ttl=N cache=yes|no secure=yes|no
 *        [reason="..."]
 *   tlsa-rr USAGE SELECTOR MTYPE HEXDATA
 *   summary routes=N ok=N tempfail=N permfail=N error=N ms=N per_s=N maxrss_kb=N
 *   stats lookups=N queries_sent=N ...
 * Exit status: 0 when every route was printed, 1 on a setup error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dns/dns_local.h"
#include "dns/dns_resolver.h"
#include "dns/dns_route.h"
#include "dns/dns_tlsa.h"
#include "queue/assert.h"

#define UD_RESOLVER (1ull << 56)
#define RING_ENTRIES 256
#define CONCURRENCY_MAX 4096
#define DOMAINS_MAX 1000000

struct app {
	struct dns_resolver *res;
	struct dns_route_params rp;
	char **domains;
	unsigned ndomains, next, pending, concurrency, rounds, round;
	bool summary;
	uint16_t tlsa_port; /* 0: no TLSA lookups */
	uint64_t start_ms;
	unsigned long long count[4]; /* by status, then errors */
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *status_names[] = {"ok", "tempfail", "permfail"};

static void start_next(struct app *a);

/* The TLSA lookups of one route's hosts (--tlsa), printed with the route when all are back. */
struct route_tlsa {
	struct app *a;
	struct dns_route *rt;
	unsigned pending; /* lookups out, plus one hold while they are being started */
	struct dns_tlsa *t[DNS_ROUTE_HOSTS_MAX];
	int err[DNS_ROUTE_HOSTS_MAX]; /* dns_tlsa_lookup's failure, when t is NULL */
	struct tlsa_sub {
		struct route_tlsa *rtl;
		unsigned host;
	} sub[DNS_ROUTE_HOSTS_MAX];
};

static void
tlsa_print(const struct app *a, const struct dns_route_host *h, const struct dns_tlsa *t,
	   int err)
{
	char name[256];

	if (t == NULL) {
		if (dns_tlsa_name(name, sizeof name, h->name, a->tlsa_port) < 0)
			snprintf(name, sizeof name, "%s", h->name);
		printf("tlsa name=%s status=error reason=\"%s\"\n", name, strerror(-err));
		return;
	}
	printf("tlsa name=%s status=%s ttl=%u cache=%s secure=%s", t->name,
	       dns_tlsa_status_name(t->status), t->ttl, t->from_cache ? "yes" : "no",
	       t->secure ? "yes" : "no");
	if (t->status == DNS_TLSA_TEMPFAIL)
		printf(" reason=\"%s\"", t->err == DNS_TLSA_ERR_RCODE ? "DNS server failure"
					 : t->err == -ETIMEDOUT	     ? "DNS timeout"
					 : t->err < -1000	     ? dns_packet_strerror(t->err)
								     : strerror(-t->err));
	printf("\n");
	for (unsigned i = 0; i < t->nrr; i++) {
		printf("tlsa-rr %u %u %u ", t->rr[i].usage, t->rr[i].selector, t->rr[i].mtype);
		for (unsigned k = 0; k < t->rr[i].len; k++)
			printf("%02x", t->rr[i].data[k]);
		printf("\n");
	}
}

/* Prints a route; rtl holds its TLSA results, or is NULL. */
static void
route_print(const struct app *a, const struct dns_route *rt, const struct route_tlsa *rtl)
{
	char text[INET6_ADDRSTRLEN], self[16] = "-";

	if (rt->self_pref >= 0)
		snprintf(self, sizeof self, "%d", rt->self_pref);
	printf("route domain=%s status=%s code=%s reason=\"%s\" implicit=%s mx_ttl=%u cache=%s "
	       "self_pref=%s ms=%llu\n",
	       rt->domain, status_names[rt->status], rt->code[0] ? rt->code : "-", rt->reason,
	       rt->implicit ? "yes" : "no", rt->mx_ttl, rt->mx_from_cache ? "yes" : "no", self,
	       (unsigned long long)(now_ms() - a->start_ms));
	for (unsigned i = 0; rt->status == DNS_ROUTE_OK && i < rt->nhosts; i++) {
		const struct dns_route_host *h = &rt->hosts[i];

		printf("mx pref=%u host=%s ttl=%u\n", h->pref, h->name, h->ttl);
		for (unsigned k = 0; k < h->naddr; k++) {
			inet_ntop(h->addr[k].family, h->addr[k].addr, text, sizeof text);
			printf("addr %s ttl=%u cache=%s\n", text, h->addr[k].ttl,
			       h->addr[k].from_cache ? "yes" : "no");
		}
		if (rtl != NULL)
			tlsa_print(a, h, rtl->t[i], rtl->err[i]);
	}
	fflush(stdout);
}

/* A route is done (and its TLSA lookups, if any): print, count, free. */
static void
route_done(struct app *a, struct dns_route *rt, struct route_tlsa *rtl)
{
	if (!a->summary)
		route_print(a, rt, rtl);
	a->count[rt->status]++;
	dns_route_free(rt);
	a->pending--; /* the loop starts the next one: no recursion through cache hits */
}

static void
tlsa_release(struct route_tlsa *rtl)
{
	ASSERT(rtl->pending > 0);
	if (--rtl->pending > 0)
		return;
	route_done(rtl->a, rtl->rt, rtl);
	for (unsigned i = 0; i < DNS_ROUTE_HOSTS_MAX; i++)
		dns_tlsa_free(rtl->t[i]);
	free(rtl);
}

static void
on_tlsa(void *arg, struct dns_tlsa *t)
{
	struct tlsa_sub *sub = arg;

	ASSERT(sub->rtl->t[sub->host] == NULL);
	sub->rtl->t[sub->host] = t;
	tlsa_release(sub->rtl);
}

/* Starts the TLSA lookup of every host of rt; the route is printed when they are back. */
static void
tlsa_start(struct app *a, struct dns_route *rt)
{
	struct route_tlsa *rtl = calloc(1, sizeof *rtl);

	if (rtl == NULL) {
		fprintf(stderr, "ringmx-resolve: out of memory\n");
		exit(1);
	}
	rtl->a = a;
	rtl->rt = rt;
	rtl->pending = 1; /* the hold: a lookup may answer from the cache at once */
	for (unsigned i = 0; i < rt->nhosts; i++) {
		int rc;

		rtl->sub[i] = (struct tlsa_sub){rtl, i};
		rtl->pending++;
		rc = dns_tlsa_lookup(a->res, rt->hosts[i].name, a->tlsa_port, now_ms(), on_tlsa,
				     &rtl->sub[i]);
		if (rc < 0) {
			rtl->err[i] = rc;
			rtl->pending--;
		}
	}
	tlsa_release(rtl);
}

static void
on_route(void *arg, struct dns_route *rt)
{
	struct app *a = arg;

	if (a->tlsa_port != 0 && rt->status == DNS_ROUTE_OK)
		tlsa_start(a, rt);
	else
		route_done(a, rt, NULL);
}

/* Starts routes while fewer than `concurrency` are in flight. A full resolver (-EAGAIN) with
 * routes in flight waits for one of them to finish. */
static void
start_next(struct app *a)
{
	while (a->next < a->ndomains && a->pending < a->concurrency) {
		const char *d = a->domains[a->next++];
		int rc;

		a->pending++;
		rc = dns_route_resolve(a->res, d, &a->rp, now_ms(), on_route, a);
		if (rc == -EAGAIN && a->pending > 1) {
			a->pending--;
			a->next--;
			return;
		}
		if (rc < 0) {
			printf("route domain=%s status=error reason=\"%s\"\n", d, strerror(-rc));
			a->count[3]++;
			a->pending--;
		}
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: ringmx-resolve [--resolver \"addr[:port] ...\"] [--timeout ms] "
			"[--attempts n] [--prefer ipv4|ipv6] [--allow-loopback] "
			"[--local-addr ADDR]... [--no-interfaces] [--tlsa PORT] [--sequential] "
			"[--concurrency n] [--repeat n] [--interval-ms ms] [--cache-size n] "
			"[--file PATH] [--summary] DOMAIN...\n");
	exit(2);
}

/* A number option in [min, max], else usage. */
static unsigned long
number_arg(const char *s, unsigned long min, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
		usage();
	return v;
}

/* Peak RSS of this program in kB. Not getrusage's ru_maxrss: Linux carries that across
 * execve, so it would report the (larger) process that forked us, e.g. a test runner. */
static long
peak_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void
print_stats(const struct app *a, uint64_t elapsed_ms)
{
	struct dns_resolver_stats st;
	unsigned long long routes = a->count[0] + a->count[1] + a->count[2] + a->count[3];

	printf("summary routes=%llu ok=%llu tempfail=%llu permfail=%llu error=%llu ms=%llu "
	       "per_s=%llu maxrss_kb=%ld\n",
	       routes, a->count[0], a->count[1], a->count[2], a->count[3],
	       (unsigned long long)elapsed_ms,
	       elapsed_ms ? routes * 1000 / elapsed_ms : routes * 1000, peak_rss_kb());
	dns_resolver_stats_get(a->res, &st);
	printf("stats lookups=%llu queries_sent=%llu cache_hits=%llu cache_misses=%llu "
	       "cache_entries=%u evictions=%llu coalesced=%llu timeouts=%llu tcp_fallbacks=%llu "
	       "dropped_answers=%llu cname_chases=%llu errors=%llu\n",
	       (unsigned long long)st.lookups, (unsigned long long)st.queries_sent,
	       (unsigned long long)st.cache.hits, (unsigned long long)st.cache.misses,
	       st.cache.entries, (unsigned long long)st.cache.evictions,
	       (unsigned long long)st.coalesced, (unsigned long long)st.timeouts,
	       (unsigned long long)st.tcp_fallbacks, (unsigned long long)st.dropped_answers,
	       (unsigned long long)st.cname_chases, (unsigned long long)st.errors);
}

/* Appends the domains of path (one per line, "-" for stdin) to argv-style list *v. */
static void
domains_read(const char *path, char ***v, unsigned *n)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char line[512];

	if (f == NULL) {
		fprintf(stderr, "ringmx-resolve: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	while (fgets(line, sizeof line, f) != NULL) {
		size_t len = strcspn(line, " \t\r\n");

		if (len == 0)
			continue;
		line[len] = '\0';
		if (*n == DOMAINS_MAX) {
			fprintf(stderr, "ringmx-resolve: more than %d domains\n", DOMAINS_MAX);
			exit(1);
		}
		*v = realloc(*v, (*n + 1) * sizeof **v);
		if (*v == NULL || ((*v)[*n] = strdup(line)) == NULL) {
			fprintf(stderr, "ringmx-resolve: out of memory\n");
			exit(1);
		}
		(*n)++;
	}
	if (f != stdin)
		fclose(f);
}

/* Drives the ring until every route of this round is done. */
static void
run_round(struct app *a, struct io_uring *ring)
{
	a->next = 0;
	start_next(a);
	while (a->pending > 0 || a->next < a->ndomains) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(ring, head, cqe) {
			if ((cqe->user_data & ~((1ull << DNS_RESOLVER_UD_BITS) - 1)) == UD_RESOLVER)
				dns_resolver_complete(a->res, cqe, now_ms());
			n++;
		}
		io_uring_cq_advance(ring, n);
		dns_resolver_tick(a->res, now_ms());
		start_next(a);
	}
	ASSERT(a->pending == 0);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"resolver", required_argument, NULL, 'r'},
	    {"timeout", required_argument, NULL, 't'},
	    {"attempts", required_argument, NULL, 'a'},
	    {"prefer", required_argument, NULL, 'p'},
	    {"allow-loopback", no_argument, NULL, 'l'},
	    {"local-addr", required_argument, NULL, 'L'},
	    {"no-interfaces", no_argument, NULL, 'I'},
	    {"tlsa", required_argument, NULL, 'T'},
	    {"sequential", no_argument, NULL, 's'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"repeat", required_argument, NULL, 'n'},
	    {"interval-ms", required_argument, NULL, 'i'},
	    {"cache-size", required_argument, NULL, 'z'},
	    {"file", required_argument, NULL, 'f'},
	    {"summary", no_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0}};
	struct dns_resolver_params p = {
	    .timeout_ms = 2000,
	    .attempts = 2,
	    .queries_max = 256,
	    .cache = {.entries_max = 10000, .min_ttl_s = 0, .max_ttl_s = 86400,
		      .neg_ttl_default_s = 300},
	};
	struct app a = {.concurrency = 64, .rounds = 1};
	static struct dns_local local; /* large: not on the stack */
	bool interfaces = true;
	unsigned long interval_ms = 0;
	struct io_uring ring;
	char err[256], **domains = NULL;
	unsigned ndomains = 0;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': p.servers = optarg; break;
		case 't': p.timeout_ms = (uint32_t)number_arg(optarg, 1, 600000); break;
		case 'a': p.attempts = (unsigned)number_arg(optarg, 1, 100); break;
		case 'p':
			if (strcmp(optarg, "ipv6") == 0)
				a.rp.prefer = DNS_PREFER_IPV6;
			else if (strcmp(optarg, "ipv4") != 0)
				usage();
			break;
		case 'l': a.rp.loopback_ok = true; break;
		case 'L':
			rc = dns_local_add_text(&local, optarg);
			if (rc == -EINVAL)
				usage();
			if (rc < 0) {
				fprintf(stderr, "ringmx-resolve: --local-addr %s: %s\n", optarg,
					strerror(-rc));
				return 1;
			}
			break;
		case 'I': interfaces = false; break;
		case 'T': a.tlsa_port = (uint16_t)number_arg(optarg, 1, 65535); break;
		case 's': a.concurrency = 1; break;
		case 'c': a.concurrency = (unsigned)number_arg(optarg, 1, CONCURRENCY_MAX); break;
		case 'n': a.rounds = (unsigned)number_arg(optarg, 1, 1000); break;
		case 'i': interval_ms = number_arg(optarg, 0, 3600000); break;
		case 'z':
			p.cache.entries_max = (uint32_t)number_arg(optarg, 1, DNS_CACHE_ENTRIES_LIMIT);
			break;
		case 'f': domains_read(optarg, &domains, &ndomains); break;
		case 'S': a.summary = true; break;
		default: usage();
		}
	}
	for (int i = optind; i < argc; i++) {
		domains = realloc(domains, (ndomains + 1) * sizeof *domains);
		if (domains == NULL)
			return 1;
		domains[ndomains++] = strdup(argv[i]);
	}
	if (ndomains == 0)
		usage();
	rc = interfaces ? dns_local_add_interfaces(&local) : 0;
	if (rc < 0) {
		fprintf(stderr, "ringmx-resolve: own interface addresses (getifaddrs): %s\n",
			strerror(-rc));
		return 1;
	}
	a.rp.local = &local;
	/* each route holds an MX query and up to two address queries per host at a time */
	if (p.queries_max < a.concurrency)
		p.queries_max = a.concurrency;
	rc = io_uring_queue_init(RING_ENTRIES, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "ringmx-resolve: io_uring_queue_init: %s\n", strerror(-rc));
		return 1;
	}
	a.res = dns_resolver_new(&p, &ring, UD_RESOLVER, err, sizeof err);
	if (a.res == NULL) {
		fprintf(stderr, "ringmx-resolve: %s\n", err);
		return 1;
	}
	a.domains = domains;
	a.ndomains = ndomains;
	a.start_ms = now_ms();
	for (a.round = 0; a.round < a.rounds; a.round++) {
		if (a.round > 0 && interval_ms > 0) {
			struct timespec ts = {(time_t)(interval_ms / 1000),
					      (long)(interval_ms % 1000) * 1000000};

			nanosleep(&ts, NULL);
		}
		run_round(&a, &ring);
	}
	print_stats(&a, now_ms() - a.start_ms);
	dns_resolver_free(a.res);
	io_uring_queue_exit(&ring);
	for (unsigned i = 0; i < ndomains; i++)
		free(domains[i]);
	free(domains);
	return 0;
}
