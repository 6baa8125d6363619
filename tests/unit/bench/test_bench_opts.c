/*
 * Unit tests for bench/bench_opts: whole command lines (valid and invalid combinations), the
 * weighted size list, byte sizes, host:port forms and address patterns. Each rejected input
 * must come back as -EINVAL with a message that names the problem.
 */
#include "bench/bench_opts.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#define MAX_ARGS 32

static struct bench_opts opts;
static char err[256];

/* Parses a NULL-terminated list of arguments (the program name is added). */
static int
parse_args(const char *first, ...)
{
	char *argv[MAX_ARGS] = {"ringmx-bench"};
	int argc = 1;
	va_list ap;

	va_start(ap, first);
	for (const char *a = first; a; a = va_arg(ap, const char *)) {
		cr_assert_lt(argc, MAX_ARGS - 1);
		argv[argc++] = (char *)a;
	}
	va_end(ap);
	err[0] = '\0';
	return bench_opts_parse(&opts, argc, argv, err, sizeof(err));
}

static void
assert_usage_error(int rc, const char *needle)
{
	cr_assert_eq(rc, -EINVAL, "expected a usage error, got %d", rc);
	cr_assert(strstr(err, needle), "message '%s' does not mention '%s'", err, needle);
}

/* ---- whole command lines ---- */

Test(bench_opts, only_server_gives_the_documented_defaults)
{
	cr_assert_eq(parse_args("--server", "127.0.0.1:2525", NULL), 0, "%s", err);
	cr_assert_str_eq(opts.host, "127.0.0.1");
	cr_assert_str_eq(opts.port, "2525");
	cr_assert_eq(opts.threads, 0);
	cr_assert_eq(opts.connections, 10);
	cr_assert_eq(opts.messages, 10000);
	cr_assert_float_eq(opts.duration_s, 0.0, 1e-12);
	cr_assert_float_eq(opts.warmup_s, 0.0, 1e-12);
	cr_assert_eq(opts.nsizes, 1);
	cr_assert_eq(opts.sizes[0].bytes, 4096);
	cr_assert_eq(opts.rcpts, 1);
	cr_assert_eq(opts.per_conn, 0);
	cr_assert_float_eq(opts.rate, 0.0, 1e-12);
	cr_assert_float_eq(opts.timeout_s, 30.0, 1e-12);
	cr_assert(!opts.pipelining && !opts.chunking && !opts.json && !opts.starttls);
	cr_assert(!opts.pipelining_envelope);
	cr_assert_str_eq(opts.from, "bench@ringmx.test");
	cr_assert_str_eq(opts.to, "user{n}@localhost");
}

Test(bench_opts, every_option_is_parsed)
{
	int rc = parse_args("--server", "[::1]:25", "--threads", "4", "--connections", "100",
			    "--duration", "2.5", "--warmup", "1", "--size", "1k:50,10k:40,100k:10",
			    "--rcpts", "3", "--per-conn", "7", "--pipelining", "--chunking",
			    "--rate", "2000", "--from", "s{n}@a.test", "--to", "r{r}.{n}@b.test",
			    "--helo", "client.test", "--json", "--timeout", "5", NULL);

	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_str_eq(opts.host, "::1");
	cr_assert_str_eq(opts.port, "25");
	cr_assert_eq(opts.threads, 4);
	cr_assert_eq(opts.connections, 100);
	cr_assert_eq(opts.messages, 0, "--duration mode has no message count");
	cr_assert_float_eq(opts.duration_s, 2.5, 1e-12);
	cr_assert_float_eq(opts.warmup_s, 1.0, 1e-12);
	cr_assert_eq(opts.nsizes, 3);
	cr_assert_eq(opts.rcpts, 3);
	cr_assert_eq(opts.per_conn, 7);
	cr_assert(opts.pipelining && opts.chunking && opts.json);
	cr_assert(!opts.pipelining_envelope, "--pipelining pipelines behind the dot too");
	cr_assert_float_eq(opts.rate, 2000.0, 1e-9);
	cr_assert_str_eq(opts.helo, "client.test");
	cr_assert_float_eq(opts.timeout_s, 5.0, 1e-12);
	cr_assert_eq(opts.to_pat.nseg, 5);
}

Test(bench_opts, pipelining_envelope_is_pipelining_that_stops_at_the_dot)
{
	cr_assert_eq(parse_args("--server", "h:25", "--pipelining-envelope", NULL), 0, "%s", err);
	cr_assert(opts.pipelining && opts.pipelining_envelope);
}

Test(bench_opts, name_equals_value_is_the_same_as_two_arguments)
{
	cr_assert_eq(parse_args("--server=mx.test:2600", "--messages=500", "--size=10k", NULL), 0,
		     "%s", err);
	cr_assert_str_eq(opts.host, "mx.test");
	cr_assert_eq(opts.messages, 500);
	cr_assert_eq(opts.sizes[0].bytes, 10240);
}

Test(bench_opts, messages_with_duration_is_an_error_in_either_order)
{
	assert_usage_error(
	    parse_args("--server", "h:25", "--messages", "5", "--duration", "3", NULL), "exclude");
	assert_usage_error(
	    parse_args("--server", "h:25", "--duration", "3", "--messages", "5", NULL), "exclude");
}

Test(bench_opts, the_server_is_required)
{
	assert_usage_error(parse_args("--messages", "5", NULL), "--server");
}

Test(bench_opts, unknown_options_and_positional_arguments_are_errors)
{
	assert_usage_error(parse_args("--server", "h:25", "--bogus", NULL), "--bogus");
	assert_usage_error(parse_args("--server", "h:25", "extra", NULL), "extra");
	assert_usage_error(parse_args("--server", "h:25", "--messagesx", "1", NULL), "unknown");
}

Test(bench_opts, a_missing_value_and_a_value_on_a_flag_are_errors)
{
	assert_usage_error(parse_args("--server", "h:25", "--messages", NULL), "needs a value");
	assert_usage_error(parse_args("--server", "h:25", "--json=yes", NULL), "takes no value");
}

Test(bench_opts, starttls_is_off_by_default_and_on_with_the_flag)
{
	cr_assert_eq(parse_args("--server", "h:25", NULL), 0, "%s", err);
	cr_assert(!opts.starttls);
	cr_assert_eq(parse_args("--server", "h:25", "--starttls", NULL), 0, "%s", err);
	cr_assert(opts.starttls);
	cr_assert_eq(parse_args("--starttls", "--server=h:25", NULL), 0, "%s", err);
	cr_assert(opts.starttls, "the flag may come before --server");
}

Test(bench_opts, starttls_combines_with_pipelining_chunking_and_per_conn)
{
	int rc = parse_args("--server", "h:25", "--starttls", "--pipelining", "--chunking",
			    "--per-conn", "1", NULL);

	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(opts.starttls && opts.pipelining && opts.chunking);
	cr_assert_eq(opts.per_conn, 1);
}

Test(bench_opts, starttls_takes_no_value)
{
	assert_usage_error(parse_args("--server", "h:25", "--starttls=yes", NULL),
			   "--starttls takes no value");
}

Test(bench_opts, the_usage_text_describes_starttls_as_supported)
{
	const char *u = bench_opts_usage();

	cr_assert(strstr(u, "--starttls"));
	cr_assert(!strstr(u, "not supported"), "%s", u);
}

Test(bench_opts, help_is_reported_to_the_caller)
{
	cr_assert_eq(parse_args("--help", NULL), BENCH_OPTS_HELP);
	cr_assert_eq(parse_args("-h", NULL), BENCH_OPTS_HELP);
	cr_assert(strstr(bench_opts_usage(), "--per-conn"));
}

Test(bench_opts, out_of_range_numbers_are_errors)
{
	static const char *const bad[][2] = {
	    {"--connections", "0"}, {"--connections", "-1"}, {"--connections", "1e3"},
	    {"--threads", "abc"},   {"--threads", "0"},	     {"--rcpts", "0"},
	    {"--rcpts", "1001"},    {"--messages", "0"},     {"--messages", ""},
	    {"--rate", "0"},	    {"--rate", "-5"},	     {"--duration", "0"},
	    {"--duration", "x"},    {"--timeout", "0"},	     {"--timeout", "nan"},
	    {"--warmup", "-1"},	    {"--per-conn", "1.5"},   {"--duration", "inf"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_usage_error(parse_args("--server", "h:25", bad[i][0], bad[i][1], NULL),
				   bad[i][0]);
}

Test(bench_opts, zero_warmup_and_zero_per_conn_are_valid)
{
	cr_assert_eq(parse_args("--server", "h:25", "--warmup", "0", "--per-conn", "0",
				"--duration", "1s", NULL),
		     0, "%s", err);
	cr_assert_float_eq(opts.duration_s, 1.0, 1e-12);
}

Test(bench_opts, an_empty_sender_is_the_null_path_but_an_empty_recipient_is_an_error)
{
	cr_assert_eq(parse_args("--server", "h:25", "--from", "", NULL), 0, "%s", err);
	cr_assert_eq(opts.from_pat.nseg, 0);
	assert_usage_error(parse_args("--server", "h:25", "--to", "", NULL), "--to");
}

Test(bench_opts, bad_patterns_and_helo_names_are_errors)
{
	assert_usage_error(parse_args("--server", "h:25", "--from", "a{r}@b", NULL), "{n}");
	assert_usage_error(parse_args("--server", "h:25", "--to", "a b@c", NULL), "0x20");
	assert_usage_error(parse_args("--server", "h:25", "--helo", "a b", NULL), "--helo");
	assert_usage_error(parse_args("--server", "h:25", "--helo", "", NULL), "--helo");
}

Test(bench_opts, bad_servers_are_errors)
{
	assert_usage_error(parse_args("--server", "::1:25", NULL), "--server");
	assert_usage_error(parse_args("--server", "localhost", NULL), "--server");
}

/* ---- the size list ---- */

Test(bench_opts, a_weighted_size_list_is_parsed_in_order)
{
	struct bench_size s[BENCH_SIZES_MAX];
	unsigned n = 0;

	cr_assert_eq(bench_opts_parse_sizes("1k:50,10k:40,100k:10", s, &n, err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(n, 3);
	cr_assert_eq(s[0].bytes, 1024);
	cr_assert_eq(s[0].weight, 50);
	cr_assert_eq(s[1].bytes, 10240);
	cr_assert_eq(s[1].weight, 40);
	cr_assert_eq(s[2].bytes, 102400);
	cr_assert_eq(s[2].weight, 10);
}

Test(bench_opts, sizes_without_weights_weigh_one_each)
{
	struct bench_size s[BENCH_SIZES_MAX];
	unsigned n = 0;

	cr_assert_eq(bench_opts_parse_sizes("4k", s, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n, 1);
	cr_assert_eq(s[0].bytes, 4096);
	cr_assert_eq(s[0].weight, 1);
	cr_assert_eq(bench_opts_parse_sizes("512,2M:3", s, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n, 2);
	cr_assert_eq(s[0].weight, 1);
	cr_assert_eq(s[1].bytes, 2u << 20);
	cr_assert_eq(s[1].weight, 3);
}

Test(bench_opts, malformed_size_lists_are_errors)
{
	static const char *const bad[] = {
	    "",
	    "1k:",
	    ":50",
	    "1k:0",
	    "1x",
	    "1k:50,",
	    ",1k",
	    "1k::5",
	    "-1k",
	    "1k:-5",
	    "1k:abc",
	    "100",
	    "1g",
	    "1k:50;2k:5",
	    " 1k",
	    "1k ",
	    "k",
	    "1k:1000001",
	    "99999999999999999999k",
	    "300m",
	    "1k,,2k",
	    "1k:5:5",
	    "1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k", /* 17 entries */
	};
	struct bench_size s[BENCH_SIZES_MAX];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned n = 0;

		err[0] = '\0';
		cr_assert_eq(bench_opts_parse_sizes(bad[i], s, &n, err, sizeof(err)), -EINVAL,
			     "'%s' was accepted", bad[i]);
		cr_assert(strstr(err, "--size"), "'%s': message '%s'", bad[i], err);
	}
}

Test(bench_opts, sixteen_sizes_are_the_limit)
{
	struct bench_size s[BENCH_SIZES_MAX];
	unsigned n = 0;

	cr_assert_eq(bench_opts_parse_sizes("1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k,1k", s,
					    &n, err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(n, BENCH_SIZES_MAX);
}

Test(bench_opts, byte_sizes_take_k_and_m_suffixes)
{
	static const struct {
		const char *in;
		uint64_t want;
	} ok[] = {{"4096", 4096},  {"4k", 4096},    {"4K", 4096},
		  {"1m", 1048576}, {"3M", 3145728}, {"0", 0}};
	static const char *const bad[] = {"",
					  "k",
					  "4kb",
					  "4 k",
					  "+4",
					  "-4",
					  "0x10",
					  "4.5k",
					  "18446744073709551616",
					  "18014398509481984k"};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(bench_opts_parse_bytes(ok[i].in, &v), 0, "'%s'", ok[i].in);
		cr_assert_eq(v, ok[i].want, "'%s'", ok[i].in);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(bench_opts_parse_bytes(bad[i], &v), -EINVAL, "'%s' was accepted",
			     bad[i]);
}

/* ---- host:port ---- */

Test(bench_opts, servers_are_split_into_host_and_port)
{
	static const struct {
		const char *in, *host, *port;
	} ok[] = {
	    {"127.0.0.1:2600", "127.0.0.1", "2600"},
	    {"[::1]:25", "::1", "25"},
	    {"[2001:db8::1]:587", "2001:db8::1", "587"},
	    {"mx.example.com:25", "mx.example.com", "25"},
	    {"localhost:65535", "localhost", "65535"},
	};
	char host[BENCH_HOST_MAX + 1], port[6];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(
		    bench_opts_parse_server(ok[i].in, host, sizeof(host), port, sizeof(port)), 0,
		    "'%s'", ok[i].in);
		cr_assert_str_eq(host, ok[i].host);
		cr_assert_str_eq(port, ok[i].port);
	}
}

Test(bench_opts, malformed_servers_are_errors)
{
	static const char *const bad[] = {"::1:25",	"host",	   "host:",   ":25",   "host:0",
					  "host:65536", "host:2x", "[::1]25", "[::1]", "ho st:25",
					  "[]:25",	"host:-1", "[::1:25"};
	char host[BENCH_HOST_MAX + 1], port[6];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(
		    bench_opts_parse_server(bad[i], host, sizeof(host), port, sizeof(port)),
		    -EINVAL, "'%s' was accepted", bad[i]);
}

/* ---- address patterns ---- */

static const char *
expand(const char *pattern, bool allow_rcpt, uint64_t n, unsigned r)
{
	static char out[BENCH_PATTERN_MAX + BENCH_PATTERN_SEGS_MAX * BENCH_U64_DIGITS + 1];
	struct bench_pattern p;

	cr_assert_eq(bench_opts_pattern_compile(pattern, allow_rcpt, &p, err, sizeof(err)), 0,
		     "'%s': %s", pattern, err);
	size_t len = bench_opts_pattern_expand(&p, n, r, out);

	cr_assert_leq(len, p.max_len);
	out[len] = '\0';
	return out;
}

Test(bench_opts, patterns_expand_sequence_and_recipient_numbers)
{
	cr_assert_str_eq(expand("user{n}@localhost", true, 42, 1), "user42@localhost");
	cr_assert_str_eq(expand("{r}.{n}@x", true, 7, 3), "3.7@x");
	cr_assert_str_eq(expand("{n}{n}", true, 0, 0), "00");
	cr_assert_str_eq(expand("plain@x", false, 9, 9), "plain@x");
	cr_assert_str_eq(expand("", false, 1, 1), "");
	cr_assert_str_eq(expand("u{n}@x", false, UINT64_MAX, 0), "u18446744073709551615@x");
}

Test(bench_opts, malformed_patterns_are_errors)
{
	static const char *const bad[] = {"{x}@a",  "a{n",     "a}b",	"a b@c", "<a>@b",
					  "a\"b@c", "a\r\n@b", "{N}@a", "{}@a",	 "a@b\x7f"};
	struct bench_pattern p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(bench_opts_pattern_compile(bad[i], true, &p, err, sizeof(err)),
			     -EINVAL, "'%s' was accepted", bad[i]);
	cr_assert_eq(bench_opts_pattern_compile("{r}@a", false, &p, err, sizeof(err)), -EINVAL,
		     "{r} is only for recipients");
}

Test(bench_opts, patterns_have_bounded_length_and_placeholders)
{
	char long_pat[BENCH_PATTERN_MAX + 2];
	struct bench_pattern p;

	memset(long_pat, 'a', sizeof(long_pat) - 1);
	long_pat[sizeof(long_pat) - 1] = '\0';
	cr_assert_eq(bench_opts_pattern_compile(long_pat, true, &p, err, sizeof(err)), -EINVAL);
	long_pat[BENCH_PATTERN_MAX] = '\0';
	cr_assert_eq(bench_opts_pattern_compile(long_pat, true, &p, err, sizeof(err)), 0);
	cr_assert_eq(bench_opts_pattern_compile("{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}",
						true, &p, err, sizeof(err)),
		     0, "16 placeholders fit");
	cr_assert_eq(bench_opts_pattern_compile("{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}{n}a",
						true, &p, err, sizeof(err)),
		     -EINVAL, "a 17th segment does not");
}
