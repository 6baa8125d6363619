/*
 * ringmx-resolve — prints the delivery route of mail domains, using dns_route over a resolver
 * on its own small io_uring loop (the same way a shard drives it).
 *
 *   ringmx-resolve [--resolver "addr[:port] ..."] [--timeout ms] [--attempts n] [--prefer
 *                  ipv4|ipv6] [--allow-loopback] [--sequential] DOMAIN...
 *
 * Without --sequential every domain is resolved at once (a slow one delays only itself);
 * with it, one after another, so a repeated domain comes from the cache. Output, one route per
 * domain in completion order, then the resolver's counters:
 *   route domain=D status=ok|tempfail|permfail code=C reason="..." implicit=yes|no mx_ttl=N
 *         cache=yes|no ms=N
 *   mx pref=P host=H ttl=N
 *   addr A ttl=N cache=yes|no
 *   stats lookups=N queries_sent=N ...
 * Exit status: 0 when every route was printed, 1 on a setup error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns/dns_resolver.h"
#include "dns/dns_route.h"

#define UD_RESOLVER (1ull << 56)

struct app {
	struct dns_resolver *res;
	struct dns_route_params rp;
	char **domains;
	int ndomains, next, pending;
	bool sequential;
	uint64_t start_ms[256];
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

static void
on_route(void *arg, struct dns_route *rt)
{
	struct app **slot = arg;
	struct app *a = *slot;
	char text[INET6_ADDRSTRLEN];

	printf("route domain=%s status=%s code=%s reason=\"%s\" implicit=%s mx_ttl=%u cache=%s "
	       "ms=%llu\n",
	       rt->domain, status_names[rt->status], rt->code[0] ? rt->code : "-", rt->reason,
	       rt->implicit ? "yes" : "no", rt->mx_ttl, rt->mx_from_cache ? "yes" : "no",
	       (unsigned long long)(now_ms() - a->start_ms[0]));
	for (unsigned i = 0; rt->status == DNS_ROUTE_OK && i < rt->nhosts; i++) {
		const struct dns_route_host *h = &rt->hosts[i];

		printf("mx pref=%u host=%s ttl=%u\n", h->pref, h->name, h->ttl);
		for (unsigned k = 0; k < h->naddr; k++) {
			inet_ntop(h->addr[k].family, h->addr[k].addr, text, sizeof text);
			printf("addr %s ttl=%u cache=%s\n", text, h->addr[k].ttl,
			       h->addr[k].from_cache ? "yes" : "no");
		}
	}
	fflush(stdout);
	dns_route_free(rt);
	free(slot);
	a->pending--;
	if (a->sequential)
		start_next(a);
}

static void
start_next(struct app *a)
{
	while (a->next < a->ndomains) {
		struct app **slot = malloc(sizeof *slot);
		const char *d = a->domains[a->next++];
		int rc;

		if (slot == NULL) {
			fprintf(stderr, "ringmx-resolve: out of memory\n");
			exit(1);
		}
		*slot = a;
		a->pending++;
		rc = dns_route_resolve(a->res, d, &a->rp, now_ms(), on_route, slot);
		if (rc < 0) {
			printf("route domain=%s status=error reason=\"%s\"\n", d, strerror(-rc));
			a->pending--;
			free(slot);
		}
		if (a->sequential && a->pending > 0)
			return;
	}
}

static void
usage(void)
{
	fprintf(stderr, "usage: ringmx-resolve [--resolver \"addr[:port] ...\"] [--timeout ms] "
			"[--attempts n] [--prefer ipv4|ipv6] [--allow-loopback] [--sequential] "
			"DOMAIN...\n");
	exit(2);
}

static void
print_stats(const struct dns_resolver *res)
{
	struct dns_resolver_stats st;

	dns_resolver_stats_get(res, &st);
	printf("stats lookups=%llu queries_sent=%llu cache_hits=%llu cache_misses=%llu "
	       "coalesced=%llu timeouts=%llu tcp_fallbacks=%llu dropped_answers=%llu "
	       "errors=%llu\n",
	       (unsigned long long)st.lookups, (unsigned long long)st.queries_sent,
	       (unsigned long long)st.cache.hits, (unsigned long long)st.cache.misses,
	       (unsigned long long)st.coalesced, (unsigned long long)st.timeouts,
	       (unsigned long long)st.tcp_fallbacks, (unsigned long long)st.dropped_answers,
	       (unsigned long long)st.errors);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"resolver", required_argument, NULL, 'r'}, {"timeout", required_argument, NULL, 't'},
	    {"attempts", required_argument, NULL, 'a'}, {"prefer", required_argument, NULL, 'p'},
	    {"allow-loopback", no_argument, NULL, 'l'}, {"sequential", no_argument, NULL, 's'},
	    {NULL, 0, NULL, 0}};
	struct dns_resolver_params p = {
	    .timeout_ms = 2000,
	    .attempts = 2,
	    .queries_max = 256,
	    .cache = {.entries_max = 10000, .min_ttl_s = 0, .max_ttl_s = 86400,
		      .neg_ttl_default_s = 300},
	};
	struct app a = {0};
	struct io_uring ring;
	char err[256];
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': p.servers = optarg; break;
		case 't': p.timeout_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'a': p.attempts = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p':
			if (strcmp(optarg, "ipv6") == 0)
				a.rp.prefer = DNS_PREFER_IPV6;
			else if (strcmp(optarg, "ipv4") != 0)
				usage();
			break;
		case 'l': a.rp.loopback_ok = true; break;
		case 's': a.sequential = true; break;
		default: usage();
		}
	}
	if (optind >= argc)
		usage();
	rc = io_uring_queue_init(64, &ring, 0);
	if (rc < 0) {
		fprintf(stderr, "ringmx-resolve: io_uring_queue_init: %s\n", strerror(-rc));
		return 1;
	}
	a.res = dns_resolver_new(&p, &ring, UD_RESOLVER, err, sizeof err);
	if (a.res == NULL) {
		fprintf(stderr, "ringmx-resolve: %s\n", err);
		return 1;
	}
	a.domains = argv + optind;
	a.ndomains = argc - optind;
	a.start_ms[0] = now_ms();
	start_next(&a);
	while (a.pending > 0) {
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(&ring, head, cqe) {
			if ((cqe->user_data & ~((1ull << DNS_RESOLVER_UD_BITS) - 1)) == UD_RESOLVER)
				dns_resolver_complete(a.res, cqe, now_ms());
			n++;
		}
		io_uring_cq_advance(&ring, n);
		dns_resolver_tick(a.res, now_ms());
	}
	print_stats(a.res);
	dns_resolver_free(a.res);
	io_uring_queue_exit(&ring);
	return 0;
}
