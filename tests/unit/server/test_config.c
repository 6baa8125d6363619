/*
 * Tests for server/config: the INI loader, its error messages, defaults, and the policy
 * helpers (local domains, relay networks, recipients).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "server/auth.h"
#include "server/config.h"

static char err[1024];

static struct config *
load(const char *text)
{
	struct config *cfg = config_load_string(text, "test.conf", err, sizeof err);

	cr_assert_not_null(cfg, "expected the config to load, got: %s", err);
	return cfg;
}

/* The load fails with exactly this one-line message. */
static void
assert_error(const char *text, const char *want)
{
	struct config *cfg = config_load_string(text, "test.conf", err, sizeof err);

	cr_assert_null(cfg, "expected \"%s\", but the config loaded", want);
	cr_assert_str_eq(err, want);
	cr_assert_null(strchr(err, '\n'), "the message is one line");
}

/* The load fails and the message contains want. */
static void
assert_error_has(const char *text, const char *want)
{
	struct config *cfg = config_load_string(text, "test.conf", err, sizeof err);

	cr_assert_null(cfg, "expected an error with \"%s\", but the config loaded", want);
	cr_assert(strstr(err, want), "error \"%s\" lacks \"%s\"", err, want);
}

static struct sockaddr_storage sa_buf;

static const struct sockaddr *
sa(const char *text)
{
	memset(&sa_buf, 0, sizeof sa_buf);
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa_buf;

		s6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1, "%s", text);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa_buf;

		s4->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1, "%s", text);
	}
	return (const struct sockaddr *)&sa_buf;
}

static bool
local(const struct config *cfg, const char *domain)
{
	return config_domain_is_local(cfg, domain, strlen(domain));
}

static bool
exists(const struct config *cfg, const char *addr)
{
	return config_recipient_exists(cfg, addr, strlen(addr));
}

static char tmpdir[64];

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/ringmx-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

/* Writes text to tmpdir/name; returns the path in a static buffer. */
static const char *
write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
	return path;
}

static void
remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* ---- Whole configs ------------------------------------------------------------------------ */

Test(config, embedded_default_config_loads)
{
	char host[256] = "";
	struct config *cfg = config_load_default(err, sizeof err);

	cr_assert_not_null(cfg, "%s", err);
	cr_assert_str_eq(cfg->source, "(embedded default)");
	cr_assert_eq(cfg->nlisten, 1);
	cr_assert_str_eq(cfg->listen[0].text, "127.0.0.1:2525");
	gethostname(host, sizeof host - 1);
	cr_assert_str_eq(cfg->hostname, host);
	cr_assert_str_eq(cfg->spool_dir, "./var/spool");
	cr_assert(cfg->fsync);
	cr_assert(local(cfg, "localhost"));
	cr_assert_not(local(cfg, "example.com"));
	cr_assert(config_addr_may_relay(cfg, sa("127.0.0.1")));
	cr_assert(config_addr_may_relay(cfg, sa("::1")));
	cr_assert_not(config_addr_may_relay(cfg, sa("192.0.2.1")));
	cr_assert_null(cfg->recipients);
	cr_assert(cfg->deliver_enabled);
	cr_assert_eq(cfg->local_kind, CONFIG_LOCAL_MAILDIR);
	cr_assert_str_eq(cfg->maildir_root, "./var/mail");
	cr_assert_eq(cfg->relayhost.kind, CONFIG_HOP_MX, "other domains go by MX");
	cr_assert_str_eq(cfg->control_socket, "./var/spool/ringmx.ctl");
	config_free(cfg);
}

Test(config, defaults_apply_when_keys_are_absent)
{
	char host[256] = "";
	struct config *cfg = load("");
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen[0].addr;

	cr_assert_eq(cfg->nlisten, 1);
	cr_assert_str_eq(cfg->listen[0].text, "127.0.0.1:2525");
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 2525);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	gethostname(host, sizeof host - 1);
	cr_assert_str_eq(cfg->hostname, host);
	cr_assert_geq(cfg->shards, 1);
	cr_assert_eq(cfg->max_connections, 10000);
	cr_assert_eq(cfg->max_connections_per_ip, 50);
	cr_assert_eq(cfg->max_message_size, 26214400);
	cr_assert_eq(cfg->max_recipients, 1000);
	cr_assert_eq(cfg->max_line_length, 2048);
	cr_assert_eq(cfg->max_errors, 10);
	cr_assert_eq(cfg->timeout_greeting, 300);
	cr_assert_eq(cfg->timeout_command, 300);
	cr_assert_eq(cfg->timeout_data, 300);
	cr_assert_eq(cfg->timeout_session, 3600);
	cr_assert_eq(cfg->greeting_delay_ms, 0);
	cr_assert(cfg->pin_shards);
	cr_assert_eq(cfg->shutdown_timeout, 10);
	cr_assert_eq(cfg->bare_newline, CONFIG_BARE_NEWLINE_REJECT);
	cr_assert_eq(cfg->log_level, CONFIG_LOG_INFO);
	cr_assert_str_eq(cfg->spool_dir, "/var/spool/ringmx");
	cr_assert(cfg->fsync);
	cr_assert_eq(cfg->segment_size, 64u << 20);
	cr_assert_not(local(cfg, "localhost"), "no local domain by default");
	cr_assert_eq(cfg->nrelay_networks, 2);
	cr_assert(config_addr_may_relay(cfg, sa("127.1.2.3")));
	cr_assert(config_addr_may_relay(cfg, sa("::1")));
	cr_assert_not(cfg->proxy_protocol);
	cr_assert_eq(cfg->nproxy_networks, 2);
	cr_assert(config_addr_may_proxy(cfg, sa("127.0.0.1")));
	cr_assert(config_addr_may_proxy(cfg, sa("::1")));
	cr_assert_not(config_addr_may_proxy(cfg, sa("192.0.2.1")));
	cr_assert_str_eq(cfg->recipients_path, "");
	cr_assert_null(cfg->recipients);
	cr_assert_str_eq(cfg->dns_resolvers, "", "empty: the resolver reads /etc/resolv.conf");
	cr_assert_eq(cfg->dns_nresolvers, 0);
	cr_assert_eq(cfg->dns_timeout_ms, 2000);
	cr_assert_eq(cfg->dns_attempts, 2);
	cr_assert_eq(cfg->dns_prefer, CONFIG_DNS_PREFER_IPV4);
	cr_assert_eq(cfg->dns_min_ttl, 0);
	cr_assert_eq(cfg->dns_max_ttl, 86400);
	cr_assert_eq(cfg->dns_cache_size, 10000);
	config_free(cfg);
}

Test(config, delivery_defaults_apply_when_keys_are_absent)
{
	static const uint32_t retry[] = {60, 300, 900, 1800, 3600, 7200, 14400};
	struct config *cfg = load("[server]\nhostname = mx.example.com\n");
	const struct config_domain_policy *d = &cfg->policy_default;

	cr_assert_str_eq(cfg->control_socket, "/var/spool/ringmx/ringmx.ctl");
	cr_assert(cfg->deliver_enabled);
	cr_assert_eq(cfg->local_kind, CONFIG_LOCAL_MAILDIR);
	cr_assert_eq(cfg->local_hop.kind, CONFIG_HOP_MAILDIR);
	cr_assert_str_eq(cfg->maildir_root, "./var/mail");
	cr_assert_eq(cfg->relayhost.kind, CONFIG_HOP_MX);
	cr_assert_str_eq(cfg->helo_name, "mx.example.com", "helo_name defaults to hostname");
	cr_assert_eq(cfg->connect_timeout, 30);
	cr_assert_eq(cfg->smtp_timeout, 300);
	cr_assert_eq(cfg->idle_timeout, 5);
	cr_assert_not(cfg->loopback_mx);
	cr_assert_str_eq(d->pattern, "");
	cr_assert_eq(d->max_connections, 20);
	cr_assert_eq(d->max_messages_per_connection, 100);
	cr_assert_eq(d->max_recipients, 100);
	cr_assert_eq(d->rate_per_hour, 0);
	cr_assert_eq(d->tls, CONFIG_TLS_OPTIONAL);
	cr_assert_eq(cfg->nretry, 7);
	cr_assert_arr_eq(cfg->retry, retry, sizeof retry);
	cr_assert_eq(cfg->max_lifetime, 5 * 86400);
	cr_assert_eq(cfg->warn_after, 0);
	cr_assert_not(cfg->hold);
	cr_assert_eq(cfg->ntransports, 0);
	cr_assert_null(cfg->transports);
	cr_assert_eq(cfg->npolicies, 0);
	cr_assert_null(cfg->policies);
	cr_assert_null(config_transport_find(cfg, "example.org"));
	cr_assert_eq(config_policy_find(cfg, "example.org"), d);
	config_free(cfg);
}

Test(config, helo_name_default_follows_the_machine_name_when_hostname_is_unset)
{
	char host[256] = "";
	struct config *cfg = load("");

	gethostname(host, sizeof host - 1);
	cr_assert_str_eq(cfg->helo_name, host);
	config_free(cfg);
}

Test(config, every_delivery_key_is_read)
{
	static const uint32_t retry[] = {30, 120, 3600, 86400};
	struct config *cfg = load("[server]\n"
				  "hostname = mx1.example.com\n"
				  "control_socket = /run/ringmx/ctl\n"
				  "[deliver]\n"
				  "enabled = no\n"
				  "local = lmtp:unix:/run/dovecot/lmtp\n"
				  "maildir_root = /srv/mail\n"
				  "relayhost = [smarthost.example.net]:587\n"
				  "helo_name = out.example.com\n"
				  "connect_timeout = 1m\n"
				  "smtp_timeout = 1h\n"
				  "idle_timeout = 0\n"
				  "loopback_mx = yes\n"
				  "max_connections = 7\n"
				  "max_messages_per_connection = 1000000\n"
				  "max_recipients = 50\n"
				  "rate = 50/s\n"
				  "tls = required\n"
				  "[queue]\n"
				  "retry = 30s 2m, 1h\t1d\n"
				  "max_lifetime = 2d\n"
				  "warn_after = 4h\n"
				  "hold = yes\n");
	const struct config_domain_policy *d = &cfg->policy_default;

	cr_assert_str_eq(cfg->control_socket, "/run/ringmx/ctl");
	cr_assert_not(cfg->deliver_enabled);
	cr_assert_eq(cfg->local_kind, CONFIG_LOCAL_LMTP);
	cr_assert_eq(cfg->local_hop.kind, CONFIG_HOP_LMTP);
	cr_assert(cfg->local_hop.unix_socket);
	cr_assert_str_eq(cfg->local_hop.host, "/run/dovecot/lmtp");
	cr_assert_str_eq(cfg->maildir_root, "/srv/mail");
	cr_assert_eq(cfg->relayhost.kind, CONFIG_HOP_SMTP);
	cr_assert_str_eq(cfg->relayhost.host, "smarthost.example.net");
	cr_assert_eq(cfg->relayhost.port, 587);
	cr_assert(cfg->relayhost.no_mx);
	cr_assert_str_eq(cfg->helo_name, "out.example.com");
	cr_assert_str_eq(cfg->hostname, "mx1.example.com");
	cr_assert_eq(cfg->connect_timeout, 60);
	cr_assert_eq(cfg->smtp_timeout, 3600);
	cr_assert_eq(cfg->idle_timeout, 0);
	cr_assert(cfg->loopback_mx);
	cr_assert_eq(d->max_connections, 7);
	cr_assert_eq(d->max_messages_per_connection, 1000000);
	cr_assert_eq(d->max_recipients, 50);
	cr_assert_eq(d->rate_per_hour, 180000);
	cr_assert_eq(d->tls, CONFIG_TLS_REQUIRED);
	cr_assert_eq(cfg->nretry, 4);
	cr_assert_arr_eq(cfg->retry, retry, sizeof retry);
	cr_assert_eq(cfg->max_lifetime, 2 * 86400);
	cr_assert_eq(cfg->warn_after, 4 * 3600);
	cr_assert(cfg->hold);
	config_free(cfg);
}

Test(config, every_key_is_read)
{
	struct config *cfg = load("[server]\n"
				  "listen = 192.0.2.1:25 [2001:db8::1]:587\n"
				  "hostname = mx1.example.com\n"
				  "shards = 3\n"
				  "max_connections = 500\n"
				  "max_connections_per_ip = 0\n"
				  "max_message_size = 10M\n"
				  "max_recipients = 200\n"
				  "max_line_length = 1000\n"
				  "max_errors = 3\n"
				  "timeout_greeting = 30s\n"
				  "timeout_command = 2m\n"
				  "timeout_data = 600\n"
				  "timeout_session = 1h\n"
				  "greeting_delay_ms = 1500\n"
				  "shutdown_timeout = 0\n"
				  "bare_newline = accept\n"
				  "log_level = debug\n"
				  "[spool]\n"
				  "dir = /srv/spool\n"
				  "fsync = no\n"
				  "segment_size = 1M\n"
				  "[accept]\n"
				  "domains = example.com, example.org\n"
				  "relay_networks = 10.0.0.0/8\n"
				  "[dns]\n"
				  "resolvers = 192.0.2.53 127.0.0.1:5353, [2001:db8::53]:53 ::1\n"
				  "timeout = 750\n"
				  "attempts = 3\n"
				  "prefer = ipv6\n"
				  "min_ttl = 1m\n"
				  "max_ttl = 1h\n"
				  "cache_size = 500\n");

	cr_assert_str_eq(cfg->dns_resolvers, "192.0.2.53 127.0.0.1:5353, [2001:db8::53]:53 ::1");
	cr_assert_eq(cfg->dns_nresolvers, 4);
	cr_assert_eq(cfg->dns_timeout_ms, 750);
	cr_assert_eq(cfg->dns_attempts, 3);
	cr_assert_eq(cfg->dns_prefer, CONFIG_DNS_PREFER_IPV6);
	cr_assert_eq(cfg->dns_min_ttl, 60);
	cr_assert_eq(cfg->dns_max_ttl, 3600);
	cr_assert_eq(cfg->dns_cache_size, 500);
	cr_assert_eq(cfg->nlisten, 2);
	cr_assert_str_eq(cfg->listen[1].text, "[2001:db8::1]:587");
	cr_assert_str_eq(cfg->hostname, "mx1.example.com");
	cr_assert_eq(cfg->shards, 3);
	cr_assert_eq(cfg->max_connections, 500);
	cr_assert_eq(cfg->max_connections_per_ip, 0);
	cr_assert_eq(cfg->max_message_size, 10u << 20);
	cr_assert_eq(cfg->max_recipients, 200);
	cr_assert_eq(cfg->max_line_length, 1000);
	cr_assert_eq(cfg->max_errors, 3);
	cr_assert_eq(cfg->timeout_greeting, 30);
	cr_assert_eq(cfg->timeout_command, 120);
	cr_assert_eq(cfg->timeout_data, 600);
	cr_assert_eq(cfg->timeout_session, 3600);
	cr_assert_eq(cfg->greeting_delay_ms, 1500);
	cr_assert_eq(cfg->shutdown_timeout, 0);
	cr_assert_eq(cfg->bare_newline, CONFIG_BARE_NEWLINE_ACCEPT);
	cr_assert_eq(cfg->log_level, CONFIG_LOG_DEBUG);
	cr_assert_str_eq(cfg->spool_dir, "/srv/spool");
	cr_assert_not(cfg->fsync);
	cr_assert_eq(cfg->segment_size, 1u << 20);
	cr_assert(local(cfg, "example.org"));
	cr_assert_eq(cfg->nrelay_networks, 1);
	cr_assert_not(config_addr_may_relay(cfg, sa("127.0.0.1")), "the default is replaced");
	config_free(cfg);
}

Test(config, shards_zero_means_the_number_of_cpus)
{
	struct config *cfg = load("[server]\nshards = 0\n");
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_geq(cfg->shards, 1);
	cr_assert_leq(cfg->shards, n < 256 ? n : 256);
	config_free(cfg);
}

/* The affinity mask, not the online CPUs: under `taskset -c 0` one shard, one bench thread.
 * Criterion runs each test in a process of its own, so the narrowed mask ends with it. */
Test(config, cpu_count_follows_the_affinity_mask)
{
	cpu_set_t set;

	cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
	cr_assert_eq(config_cpu_count(), (unsigned)(CPU_COUNT(&set) < 256 ? CPU_COUNT(&set) : 256));
	int first = 0;
	while (!CPU_ISSET(first, &set))
		first++;
	CPU_ZERO(&set);
	CPU_SET(first, &set);
	cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
	cr_assert_eq(config_cpu_count(), 1);
	struct config *cfg = load("[server]\nshards = 0\n");
	cr_assert_eq(cfg->shards, 1, "shards = 0 under a one-CPU mask is one shard");
	config_free(cfg);
}

/* Shard i goes on the i-th CPU of the mask, wrapping; pin_shards = no turns it off. */
Test(config, shard_cpus_are_picked_from_the_affinity_mask_in_turn)
{
	cpu_set_t set;
	int cpus[CPU_SETSIZE], n = 0;

	cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	for (unsigned i = 0; i < (unsigned)n * 2 + 1; i++)
		cr_assert_eq(config_cpu_nth(i), cpus[i % (unsigned)n], "shard %u", i);
	/* A mask of the last CPU alone: every shard on it. */
	CPU_ZERO(&set);
	CPU_SET(cpus[n - 1], &set);
	cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0);
	cr_assert_eq(config_cpu_nth(0), cpus[n - 1]);
	cr_assert_eq(config_cpu_nth(5), cpus[n - 1]);
	struct config *cfg = load("[server]\npin_shards = no\n");
	cr_assert(!cfg->pin_shards);
	config_free(cfg);
	assert_error("[server]\npin_shards = maybe\n",
		     "test.conf:2: [server] pin_shards: expected yes or no (or true, false, 1, 0), "
		     "got \"maybe\"");
}

Test(config, comments_indentation_and_crlf_are_accepted)
{
	struct config *cfg = load("; a comment\r\n"
				  "# another\r\n"
				  "\r\n"
				  "[server]\r\n"
				  "    max_errors = 7   ; inline comment\r\n"
				  "    max_recipients = 9 # inline comment\r\n"
				  "\t hostname = mx.example.com\r\n");

	cr_assert_eq(cfg->max_errors, 7);
	cr_assert_eq(cfg->max_recipients, 9);
	cr_assert_str_eq(cfg->hostname, "mx.example.com");
	config_free(cfg);
}

Test(config, utf8_byte_order_mark_is_ignored)
{
	struct config *cfg = load("\xef\xbb\xbf[server]\nmax_errors = 5\n");

	cr_assert_eq(cfg->max_errors, 5);
	config_free(cfg);
	assert_error("\xef\xbb\xbf[nope]\n", "test.conf:1: unknown section [nope]");
}

Test(config, a_section_may_appear_twice)
{
	struct config *cfg = load("[server]\nmax_errors = 7\n[spool]\nfsync = no\n"
				  "[server]\nmax_recipients = 9\n");

	cr_assert_eq(cfg->max_errors, 7);
	cr_assert_eq(cfg->max_recipients, 9);
	config_free(cfg);
}

Test(config, lines_longer_than_inih_default_buffer_are_read_whole)
{
	char text[8192] = "[accept]\ndomains =";
	struct config *cfg;

	for (int i = 0; i < 300; i++)
		sprintf(text + strlen(text), " d%d.example", i);
	strcat(text, "\n[server]\nmax_errors = 4\n");
	cfg = load(text);
	cr_assert(local(cfg, "d0.example"));
	cr_assert(local(cfg, "d299.example"));
	cr_assert_eq(cfg->max_errors, 4, "the line after the long one is line 4, as written");
	config_free(cfg);
}

/* ---- Errors: where and what --------------------------------------------------------------- */

Test(config, unknown_key_is_reported_with_file_and_line)
{
	assert_error("# comment\n[server]\nlisen = 127.0.0.1:25\n",
		     "test.conf:3: unknown key \"lisen\" in [server]");
}

Test(config, unknown_section_is_reported_with_file_and_line)
{
	assert_error("[server]\nmax_errors = 3\n\n\n\n\n[foo]\nbar = 1\n",
		     "test.conf:7: unknown section [foo]");
}

Test(config, unknown_section_without_keys_is_still_an_error)
{
	assert_error("[server]\n[spol]\n", "test.conf:2: unknown section [spol]");
}

Test(config, key_outside_any_section_is_an_error)
{
	assert_error("\nlisten = 127.0.0.1:25\n",
		     "test.conf:2: key \"listen\" is outside any section");
}

Test(config, duplicate_key_is_an_error_naming_the_first_line)
{
	assert_error("[server]\nmax_errors = 3\n[spool]\nfsync = no\n[server]\nmax_errors = 4\n",
		     "test.conf:6: duplicate key \"max_errors\" in [server] (first set on line 2)");
}

Test(config, syntax_errors_name_the_line)
{
	assert_error("[server]\nmax_errors 3\n",
		     "test.conf:2: syntax error (expected [section], key = value, or a comment)");
	assert_error("[server]\nmax_errors = 3\n[spool\n",
		     "test.conf:3: syntax error (expected [section], key = value, or a comment)");
}

Test(config, the_first_error_wins)
{
	assert_error("[server]\nmax_errors = x\nnope = 1\n[bad]\n",
		     "test.conf:2: [server] max_errors: expected a positive integer, got \"x\"");
}

Test(config, bad_value_error_names_file_line_section_and_key)
{
	assert_error("[server]\nlisten = 127.0.0.1:25\nmax_recipients = abc\n",
		     "test.conf:3: [server] max_recipients: expected a positive integer, "
		     "got \"abc\"");
}

Test(config, control_characters_in_values_are_escaped_in_messages)
{
	assert_error("[server]\nlog_level = \x1b[31mred\n",
		     "test.conf:2: [server] log_level: expected debug, info, warn or error, got "
		     "\"\\x1b[31mred\"");
}

Test(config, overlong_line_is_an_error)
{
	size_t n = 70000;
	char *text = malloc(n + 64);

	strcpy(text, "[accept]\ndomains = ");
	memset(text + strlen(text), 'a', n);
	strcpy(text + 19 + n, "\n");
	assert_error(text, "test.conf:2: line is longer than 65536 bytes");
	free(text);
}

Test(config, keys_and_sections_are_case_sensitive)
{
	assert_error("[server]\nListen = 127.0.0.1:25\n",
		     "test.conf:2: unknown key \"Listen\" in [server]");
	assert_error("[Server]\n", "test.conf:1: unknown section [Server]");
}

/* ---- Typed values ------------------------------------------------------------------------- */

struct bad {
	const char *section, *key, *value, *message;
};

static const struct bad bad_values[] = {
    {"server", "shards", "abc", "expected a non-negative integer, got \"abc\""},
    {"server", "shards", "257", "\"257\" is out of range, expected 0 to 256"},
    {"server", "shards", "-1", "expected a non-negative integer, got \"-1\""},
    {"server", "max_connections", "0", "\"0\" is out of range, expected 1 to 1048576"},
    {"server", "max_connections", "1.5", "expected a positive integer, got \"1.5\""},
    {"server", "max_connections", "", "expected a positive integer, got \"\""},
    {"server", "max_connections", "+5", "expected a positive integer, got \"+5\""},
    {"server", "max_connections", "5 0", "expected a positive integer, got \"5 0\""},
    {"server", "max_connections", "99999999999999999999999",
     "\"99999999999999999999999\" is out of range, expected 1 to 1048576"},
    {"server", "max_connections_per_ip", "x", "expected a non-negative integer, got \"x\""},
    {"server", "max_connections_per_ip", "1048577",
     "\"1048577\" is out of range, expected 0 to 1048576"},
    {"server", "max_message_size", "25X", "expected a size in bytes"},
    {"server", "max_message_size", "25MB", "expected a size in bytes"},
    {"server", "max_message_size", "1K", "\"1K\" is out of range, expected 64K to 1G"},
    {"server", "max_message_size", "2G", "\"2G\" is out of range, expected 64K to 1G"},
    {"server", "max_message_size", "18446744073709551615K", "is out of range"},
    {"server", "max_recipients", "0", "\"0\" is out of range, expected 1 to 100000"},
    {"server", "max_recipients", "100001", "out of range"},
    {"server", "max_line_length", "511", "\"511\" is out of range, expected 512 to 65536"},
    {"server", "max_line_length", "65537", "out of range"},
    {"server", "max_line_length", "1k", "expected a positive integer, got \"1k\""},
    {"server", "max_errors", "0", "\"0\" is out of range, expected 1 to 1000"},
    {"server", "timeout_greeting", "0", "\"0\" is out of range, expected 1 to 86400 seconds"},
    {"server", "timeout_greeting", "5d", "expected a duration in seconds"},
    {"server", "timeout_command", "1h30m", "expected a duration in seconds"},
    {"server", "timeout_data", "25h", "\"25h\" is out of range"},
    {"server", "timeout_session", "0s", "out of range"},
    {"server", "greeting_delay_ms", "60001", "expected 0 to 60000"},
    {"server", "greeting_delay_ms", "1s", "expected a non-negative integer, got \"1s\""},
    {"server", "shutdown_timeout", "soon", "expected a duration in seconds"},
    {"server", "bare_newline", "fix", "expected reject or accept, got \"fix\""},
    {"server", "log_level", "warning", "expected debug, info, warn or error"},
    {"server", "hostname", "", "expected a host name"},
    {"server", "hostname", "mx_1.example.com", "expected a host name"},
    {"server", "hostname", "mx..example.com", "expected a host name"},
    {"server", "hostname", "mx.example.com.", "expected a host name"},
    {"server", "hostname", "[192.0.2.1]", "expected a host name"},
    {"server", "listen", "", "expected at least one addr:port"},
    {"server", "listen", "localhost:25", "\"localhost:25\" is not addr:port"},
    {"spool", "dir", "", "expected a path, got \"\""},
    {"spool", "fsync", "maybe", "expected yes or no (or true, false, 1, 0), got \"maybe\""},
    {"spool", "segment_size", "1023K", "\"1023K\" is out of range, expected 1M to 1G"},
    {"spool", "segment_size", "big", "expected a size in bytes"},
    {"accept", "domains", "exa_mple.com", "\"exa_mple.com\" is not a domain name"},
    {"accept", "domains", "example.com..", "\"example.com..\" is not a domain name"},
    {"accept", "domains", ".", "\".\" is not a domain name"},
    {"accept", "relay_networks", "10.0.0.0/33", "\"10.0.0.0/33\" is not an address"},
    {"accept", "relay_networks", "example.com", "\"example.com\" is not an address"},
    {"server", "proxy_protocol", "v2", "expected yes or no (or true, false, 1, 0), got \"v2\""},
    {"server", "proxy_networks", "10.0.0.0/33", "\"10.0.0.0/33\" is not an address"},
    {"server", "proxy_networks", "haproxy.example", "\"haproxy.example\" is not an address"},
    {"dns", "resolvers", "dns.example.com", "\"dns.example.com\" is not addr[:port]"},
    {"dns", "resolvers", "127.0.0.1:0", "\"127.0.0.1:0\" is not addr[:port]"},
    {"dns", "resolvers", "127.0.0.1:65536", "is not addr[:port]"},
    {"dns", "resolvers", "[::1]5353", "\"[::1]5353\" is not addr[:port]"},
    {"dns", "resolvers", "1.2.3.4 1.2.3", "\"1.2.3\" is not addr[:port]"},
    {"dns", "timeout", "0", "\"0\" is out of range, expected 1 to 60000"},
    {"dns", "timeout", "60001", "out of range"},
    {"dns", "timeout", "2s", "expected a positive integer, got \"2s\""},
    {"dns", "attempts", "0", "\"0\" is out of range, expected 1 to 10"},
    {"dns", "attempts", "11", "out of range"},
    {"dns", "prefer", "both", "expected ipv4 or ipv6, got \"both\""},
    {"dns", "min_ttl", "-1", "expected a duration in seconds"},
    {"dns", "min_ttl", "604801", "\"604801\" is out of range, expected 0 to 604800 seconds"},
    {"dns", "max_ttl", "8d", "expected a duration in seconds"},
    {"dns", "max_ttl", "169h", "out of range"},
    {"dns", "cache_size", "0", "\"0\" is out of range, expected 1 to 16777216"},
    {"dns", "cache_size", "16777217", "out of range"},
    {"dns", "cache_size", "10k", "expected a positive integer"},
    {"deliver", "enabled", "maybe", "expected yes or no"},
    {"deliver", "local", "smtp:[192.0.2.1]:25",
     "expected maildir, discard, lmtp:unix:PATH or lmtp:HOST:PORT, got \"smtp:[192.0.2.1]:25\""},
    {"deliver", "local", "mbox", "expected maildir, discard, lmtp:unix:PATH or lmtp:HOST:PORT"},
    {"deliver", "local", "", "expected maildir, discard"},
    {"deliver", "local", "lmtp:mail.example", "\"lmtp:mail.example\": no port"},
    {"deliver", "local", "lmtp:unix:", "no socket path after lmtp:unix:"},
    {"deliver", "local", "lmtp:[::1]:0", "the port is not 1 to 65535"},
    {"deliver", "local", "lmtp:::1:24", "an IPv6 address needs brackets"},
    {"deliver", "maildir_root", "", "expected a path, got \"\""},
    {"deliver", "relayhost", "", "\"\" is not HOST[:PORT] or [HOST][:PORT]: no host"},
    {"deliver", "relayhost", "smart_host.example:25", "not a host name or an IP address"},
    {"deliver", "relayhost", "::1", "an IPv6 address needs brackets"},
    {"deliver", "relayhost", "[::1", "'[' without ']'"},
    {"deliver", "relayhost", "[::1]25", "expected :PORT or nothing after ']'"},
    {"deliver", "relayhost", "smarthost:65536", "the port is not 1 to 65535"},
    {"deliver", "relayhost", "smarthost:", "the port is not 1 to 65535"},
    {"deliver", "relayhost", "256.0.0.1", "not a host name or an IP address"},
    {"deliver", "relayhost", "[fe80::1%eth0]:25", "not a host name or an IP address"},
    {"deliver", "helo_name", "out_1.example.com", "expected a host name"},
    {"deliver", "helo_name", "", "expected a host name"},
    {"deliver", "connect_timeout", "0", "\"0\" is out of range, expected 1 to 3600 seconds"},
    {"deliver", "connect_timeout", "2h", "\"2h\" is out of range"},
    {"deliver", "smtp_timeout", "3601", "out of range, expected 1 to 3600 seconds"},
    {"deliver", "smtp_timeout", "5d", "expected a duration in seconds"},
    {"deliver", "idle_timeout", "61m", "out of range, expected 0 to 3600 seconds"},
    {"deliver", "idle_timeout", "-1", "expected a duration in seconds"},
    {"deliver", "loopback_mx", "sometimes", "expected yes or no"},
    {"deliver", "max_connections", "0", "\"0\" is out of range, expected 1 to 10000"},
    {"deliver", "max_connections", "10001", "out of range"},
    {"deliver", "max_messages_per_connection", "0", "expected 1 to 1000000"},
    {"deliver", "max_messages_per_connection", "1000001", "out of range"},
    {"deliver", "max_recipients", "0", "\"0\" is out of range, expected 1 to 100000"},
    {"deliver", "max_recipients", "100001", "out of range"},
    {"deliver", "rate", "50", "expected 0 (no limit) or messages per time, like 50/s, 600/m or "
			      "1000/h, got \"50\""},
    {"deliver", "rate", "", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "50/d", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "/s", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "50/", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "50/ss", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "-1/s", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "1.5/s", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "5 /s", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "00", "expected 0 (no limit) or messages per time"},
    {"deliver", "rate", "0/s", "\"0/s\" is out of range, expected 1/h to 1000000/s (or 0)"},
    {"deliver", "rate", "1000001/s", "\"1000001/s\" is out of range"},
    {"deliver", "rate", "60000001/m", "is out of range"},
    {"deliver", "rate", "3600000001/h", "is out of range"},
    {"deliver", "rate", "99999999999999999999999/h", "is out of range"},
    {"deliver", "tls", "maybe", "expected none, optional, required, verify or dane, got \"maybe\""},
    {"queue", "retry", "", "expected at least one duration"},
    {"queue", "retry", " , ", "expected at least one duration"},
    {"queue", "retry", "1m 5x", "\"5x\" is not a duration (like 90s, 30m, 4h, 5d)"},
    {"queue", "retry", "1m -5m", "\"-5m\" is not a duration"},
    {"queue", "retry", "1m 1h30m", "\"1h30m\" is not a duration"},
    {"queue", "retry", "5m 0", "\"0\" is out of range, expected 1s to 30d"},
    {"queue", "retry", "31d", "\"31d\" is out of range, expected 1s to 30d"},
    {"queue", "retry", "2592001", "is out of range"},
    {"queue", "retry", "1m 99999999999999999999999", "is out of range"},
    {"queue", "max_lifetime", "0", "\"0\" is out of range, expected 1s to 365d"},
    {"queue", "max_lifetime", "366d", "out of range"},
    {"queue", "max_lifetime", "1w", "expected a duration (like 90s, 30m, 4h, 5d), got \"1w\""},
    {"queue", "warn_after", "1y", "expected a duration"},
    {"queue", "warn_after", "8761h", "\"8761h\" is out of range, expected 0 to 365d"},
    {"queue", "hold", "perhaps", "expected yes or no"},
    {"server", "tls", "implicit", "expected starttls or none, got \"implicit\""},
    {"server", "listen_tls", "localhost:465", "\"localhost:465\" is not addr:port"},
    {"tls", "cert", "", "expected a path, got \"\""},
    {"tls", "key", "", "expected a path, got \"\""},
    {"tls", "ciphers", "HIGH !aNULL", "expected an OpenSSL cipher list"},
    {"tls", "min_version", "1.1", "expected 1.2 or 1.3, got \"1.1\""},
    {"tls", "min_version", "TLSv1.3", "expected 1.2 or 1.3"},
    {"server", "submission_listen", "localhost:587", "\"localhost:587\" is not addr:port"},
    {"server", "submission_listen_tls", "*:0", "\"*:0\" is not addr:port"},
    {"auth", "users", "", "expected a path, got \"\""},
    {"auth", "sender_policy", "mine", "expected own or any, got \"mine\""},
    {"auth", "max_failures", "0", "\"0\" is out of range, expected 1 to 10000"},
    {"auth", "failure_window", "0", "\"0\" is out of range, expected 1 to 86400 seconds"},
    {"auth", "failure_window", "2d", "expected a duration in seconds"},
    {"auth", "check_threads", "0", "\"0\" is out of range, expected 1 to 64"},
    {"auth", "check_threads", "65", "\"65\" is out of range, expected 1 to 64"},
    {"auth", "check_threads", "two", "expected a positive integer, got \"two\""},
};

Test(config, bad_values_are_rejected_for_every_typed_key)
{
	for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
		const struct bad *b = &bad_values[i];
		char text[512], want[512];

		snprintf(text, sizeof text, "[%s]\n%s = %s\n", b->section, b->key, b->value);
		snprintf(want, sizeof want, "test.conf:2: [%s] %s: ", b->section, b->key);
		assert_error_has(text, want);
		cr_assert(strstr(err, b->message), "%s = %s: \"%s\" lacks \"%s\"", b->key, b->value,
			  err, b->message);
	}
}

Test(config, size_suffixes_are_binary_multiples)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} sizes[] = {
	    {"65536", 65536},	{"64k", 65536},		{"64K", 65536},
	    {"25m", 25u << 20}, {"25M", 26214400},	{"1g", 1u << 30},
	    {"1G", 1u << 30},	{"1048576K", 1u << 30}, {"0100K", 100u << 10},
	};

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char text[128];
		struct config *cfg;

		snprintf(text, sizeof text, "[server]\nmax_message_size = %s\n", sizes[i].text);
		cfg = load(text);
		cr_assert_eq(cfg->max_message_size, sizes[i].bytes, "%s", sizes[i].text);
		config_free(cfg);
	}
}

Test(config, duration_suffixes_are_seconds_minutes_and_hours)
{
	struct config *cfg = load("[server]\ntimeout_greeting = 45\ntimeout_command = 45s\n"
				  "timeout_data = 10m\ntimeout_session = 24h\n"
				  "shutdown_timeout = 1m\n");

	cr_assert_eq(cfg->timeout_greeting, 45);
	cr_assert_eq(cfg->timeout_command, 45);
	cr_assert_eq(cfg->timeout_data, 600);
	cr_assert_eq(cfg->timeout_session, 86400);
	cr_assert_eq(cfg->shutdown_timeout, 60);
	config_free(cfg);
}

Test(config, booleans_accept_yes_no_true_false_one_zero)
{
	static const char *const yes[] = {"yes", "YES", "true", "True", "1"};
	static const char *const no[] = {"no", "No", "false", "FALSE", "0"};

	for (size_t i = 0; i < 5; i++) {
		char text[64];
		struct config *cfg;

		snprintf(text, sizeof text, "[spool]\nfsync = %s\n", yes[i]);
		cfg = load(text);
		cr_assert(cfg->fsync, "%s", yes[i]);
		config_free(cfg);
		snprintf(text, sizeof text, "[spool]\nfsync = %s\n", no[i]);
		cfg = load(text);
		cr_assert_not(cfg->fsync, "%s", no[i]);
		config_free(cfg);
	}
}

Test(config, log_levels_and_bare_newline_policies_are_read)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	static const enum config_log_level levels[] = {CONFIG_LOG_DEBUG, CONFIG_LOG_INFO,
						       CONFIG_LOG_WARN, CONFIG_LOG_ERROR};
	struct config *cfg;

	for (size_t i = 0; i < 4; i++) {
		char text[64];

		snprintf(text, sizeof text, "[server]\nlog_level = %s\n", names[i]);
		cfg = load(text);
		cr_assert_eq(cfg->log_level, levels[i], "%s", names[i]);
		config_free(cfg);
	}
	cfg = load("[server]\nbare_newline = reject\n");
	cr_assert_eq(cfg->bare_newline, CONFIG_BARE_NEWLINE_REJECT);
	config_free(cfg);
}

Test(config, step_timeouts_longer_than_the_session_timeout_are_rejected)
{
	assert_error("[server]\ntimeout_session = 60\n",
		     "test.conf:2: [server] timeout_greeting (300 s) is longer than "
		     "timeout_session (60 s)");
	assert_error("[server]\ntimeout_session = 10m\ntimeout_greeting = 1m\n"
		     "timeout_data = 1m\ntimeout_command = 11m\n",
		     "test.conf:5: [server] timeout_command (660 s) is longer than "
		     "timeout_session (600 s)");
}

Test(config, greeting_delay_must_be_shorter_than_the_session_timeout)
{
	assert_error("[server]\ngreeting_delay_ms = 60000\ntimeout_greeting = 30\n"
		     "timeout_command = 30\ntimeout_data = 30\ntimeout_session = 60\n",
		     "test.conf:6: [server] greeting_delay_ms (60000 ms) is not shorter than "
		     "timeout_session (60 s)");
}

/* ---- [dns] -------------------------------------------------------------------------------- */

Test(config, dns_min_ttl_longer_than_max_ttl_is_rejected_at_the_later_line)
{
	assert_error("[dns]\nmax_ttl = 60\nmin_ttl = 2m\n",
		     "test.conf:3: [dns] min_ttl (120 s) is longer than max_ttl (60 s)");
	assert_error("[dns]\nmin_ttl = 1d\n", "test.conf:2: [dns] min_ttl: expected a duration "
						 "in seconds (like 300, 300s, 5m, 1h), got \"1d\"");
	config_free(load("[dns]\nmin_ttl = 300\nmax_ttl = 300\n"));
}

Test(config, dns_resolvers_are_at_most_eight_and_may_be_empty)
{
	struct config *cfg;

	assert_error("[dns]\nresolvers = 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 127.0.0.1:4 "
		     "127.0.0.1:5 127.0.0.1:6 127.0.0.1:7 127.0.0.1:8 127.0.0.1:9\n",
		     "test.conf:2: [dns] resolvers: more than 8 resolvers");
	cfg = load("[dns]\nresolvers =\n");
	cr_assert_str_eq(cfg->dns_resolvers, "");
	cr_assert_eq(cfg->dns_nresolvers, 0);
	config_free(cfg);
}

Test(config, dns_keys_are_errors_in_other_sections_and_unknown_dns_keys_too)
{
	assert_error("[server]\nresolvers = 127.0.0.1\n",
		     "test.conf:2: unknown key \"resolvers\" in [server]");
	assert_error("[dns]\nresolver = 127.0.0.1\n",
		     "test.conf:2: unknown key \"resolver\" in [dns]");
	assert_error("[dns]\ntimeout = 100\ntimeout = 200\n",
		     "test.conf:3: duplicate key \"timeout\" in [dns] (first set on line 2)");
}

/* ---- listen ------------------------------------------------------------------------------- */

Test(config, listen_parses_ipv4_ipv6_and_the_ipv4_wildcard)
{
	struct config *cfg = load("[server]\nlisten = 192.0.2.7:25 *:2525,[::1]:587 [::]:25\n");
	const struct sockaddr_in *a = (const struct sockaddr_in *)&cfg->listen[0].addr;
	const struct sockaddr_in *b = (const struct sockaddr_in *)&cfg->listen[1].addr;
	const struct sockaddr_in6 *c = (const struct sockaddr_in6 *)&cfg->listen[2].addr;
	const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)&cfg->listen[3].addr;

	cr_assert_eq(cfg->nlisten, 4);
	cr_assert_eq(a->sin_family, AF_INET);
	cr_assert_eq(ntohl(a->sin_addr.s_addr), 0xc0000207);
	cr_assert_eq(ntohs(a->sin_port), 25);
	cr_assert_eq(cfg->listen[0].addr_len, sizeof(struct sockaddr_in));
	cr_assert_eq(b->sin_family, AF_INET);
	cr_assert_eq(b->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_eq(ntohs(b->sin_port), 2525);
	cr_assert_str_eq(cfg->listen[1].text, "*:2525");
	cr_assert_eq(c->sin6_family, AF_INET6);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&c->sin6_addr));
	cr_assert_eq(ntohs(c->sin6_port), 587);
	cr_assert_eq(cfg->listen[2].addr_len, sizeof(struct sockaddr_in6));
	cr_assert_str_eq(cfg->listen[2].text, "[::1]:587");
	cr_assert(IN6_IS_ADDR_UNSPECIFIED(&d->sin6_addr));
	cr_assert_eq(ntohs(d->sin6_port), 25);
	config_free(cfg);
}

Test(config, listen_parse_rejects_malformed_addresses)
{
	static const char *const bad[] = {
	    "127.0.0.1",
	    "127.0.0.1:",
	    "127.0.0.1:0",
	    "127.0.0.1:65536",
	    "127.0.0.1:25x",
	    "127.0.0.1:-25",
	    ":25",
	    "::1:25",
	    "[::1]25",
	    "[::1]",
	    "[::1:25",
	    "[127.0.0.1]:25",
	    "[*]:25",
	    "1.2.3:25",
	    "256.0.0.1:25",
	    "mx.example.com:25",
	    "[fe80::1%eth0]:25",
	    "127.0.0.1:2 5",
	    "*:*",
	    "",
	    "[0000:0000:0000:0000:0000:0000:0000:0001]:25000000000000000000000000000000",
	};
	struct config_listen l;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(config_listen_parse(bad[i], &l), -EINVAL, "\"%s\"", bad[i]);
	cr_assert_eq(config_listen_parse("127.0.0.1:65535", &l), 0);
	cr_assert_eq(config_listen_parse("[::ffff:192.0.2.1]:25", &l), 0);
}

Test(config, duplicate_listen_address_is_an_error)
{
	assert_error("[server]\nlisten = 127.0.0.1:25 127.0.0.1:025\n",
		     "test.conf:2: [server] listen: \"127.0.0.1:025\" is the same address as "
		     "\"127.0.0.1:25\"");
	assert_error_has("[server]\nlisten = *:25 0.0.0.0:25\n", "is the same address as");
	assert_error_has("[server]\nlisten = [::]:25 [0::0]:25\n", "is the same address as");
}

Test(config, ipv4_and_ipv6_wildcards_are_different_addresses)
{
	struct config *cfg = load("[server]\nlisten = *:25 [::]:25\n");

	cr_assert_eq(cfg->nlisten, 2);
	config_free(cfg);
}

Test(config, more_than_sixteen_listen_addresses_is_an_error)
{
	char text[1024] = "[server]\nlisten =";

	for (int i = 0; i < CONFIG_LISTEN_MAX + 1; i++)
		sprintf(text + strlen(text), " 127.0.0.1:%d", 1000 + i);
	assert_error(text, "test.conf:2: [server] listen: more than 16 addresses");
}

/* ---- relay_networks ----------------------------------------------------------------------- */

Test(config, cidr_parse_accepts_networks_and_bare_addresses)
{
	struct config_cidr c;
	const uint8_t ten[4] = {10, 0, 0, 0};

	cr_assert_eq(config_cidr_parse("10.1.2.3/8", &c), 0);
	cr_assert_eq(c.family, AF_INET);
	cr_assert_eq(c.prefix, 8);
	cr_assert_arr_eq(c.addr, ten, 4, "host bits are cleared");
	cr_assert_eq(config_cidr_parse("192.0.2.1", &c), 0);
	cr_assert_eq(c.prefix, 32, "a bare address is a host route");
	cr_assert_eq(config_cidr_parse("2001:db8::1", &c), 0);
	cr_assert_eq(c.family, AF_INET6);
	cr_assert_eq(c.prefix, 128);
	cr_assert_eq(config_cidr_parse("2001:db8:ffff::/33", &c), 0);
	cr_assert_eq(c.prefix, 33);
	cr_assert_eq(c.addr[4], 0x80, "bit 33 is kept, the rest cleared");
	cr_assert_eq(c.addr[5], 0);
	cr_assert_eq(config_cidr_parse("0.0.0.0/0", &c), 0);
	cr_assert_eq(config_cidr_parse("::/0", &c), 0);
}

Test(config, cidr_parse_rejects_garbage)
{
	static const char *const bad[] = {
	    "",
	    "/8",
	    "10.0.0.0/",
	    "10.0.0.0/33",
	    "10/8",
	    "10.0.0.0/8/8",
	    "10.0.0.0/-1",
	    "10.0.0.0/ 8",
	    "::1/129",
	    "example.com",
	    "1.2.3.4.5",
	    "::g",
	    "10.0.0.0/8x",
	};
	struct config_cidr c;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(config_cidr_parse(bad[i], &c), -EINVAL, "\"%s\"", bad[i]);
}

Test(config, cidr_match_checks_the_prefix_bits)
{
	struct config_cidr c;

	cr_assert_eq(config_cidr_parse("192.0.2.128/25", &c), 0);
	cr_assert(config_cidr_match(&c, sa("192.0.2.128")));
	cr_assert(config_cidr_match(&c, sa("192.0.2.255")));
	cr_assert_not(config_cidr_match(&c, sa("192.0.2.127")));
	cr_assert_eq(config_cidr_parse("2001:db8::/32", &c), 0);
	cr_assert(config_cidr_match(&c, sa("2001:db8:1::5")));
	cr_assert_not(config_cidr_match(&c, sa("2001:db9::5")));
	cr_assert_eq(config_cidr_parse("0.0.0.0/0", &c), 0);
	cr_assert(config_cidr_match(&c, sa("203.0.113.9")));
	cr_assert_not(config_cidr_match(&c, NULL));
}

Test(config, ipv4_mapped_client_matches_ipv4_cidr)
{
	struct config_cidr c;
	struct config *cfg = load("[accept]\nrelay_networks = 10.0.0.0/8\n");

	cr_assert_eq(config_cidr_parse("10.0.0.0/8", &c), 0);
	cr_assert(config_cidr_match(&c, sa("::ffff:10.9.8.7")));
	cr_assert_not(config_cidr_match(&c, sa("::ffff:11.9.8.7")));
	cr_assert(config_addr_may_relay(cfg, sa("::ffff:10.9.8.7")));
	cr_assert(config_addr_may_relay(cfg, sa("10.9.8.7")));
	cr_assert_not(config_addr_may_relay(cfg, sa("::ffff:192.0.2.1")));
	cr_assert_not(config_addr_may_relay(cfg, sa("::a09:807")), "IPv4-compatible is not mapped");
	config_free(cfg);
}

Test(config, ipv4_mapped_network_in_the_config_is_read_as_ipv4)
{
	struct config_cidr c;
	const uint8_t want[4] = {10, 0, 0, 0};

	cr_assert_eq(config_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	cr_assert_eq(c.family, AF_INET);
	cr_assert_eq(c.prefix, 8);
	cr_assert_arr_eq(c.addr, want, 4);
	cr_assert(config_cidr_match(&c, sa("10.1.1.1")));
	cr_assert(config_cidr_match(&c, sa("::ffff:10.1.1.1")));
}

Test(config, ipv6_networks_never_match_ipv4_clients)
{
	struct config *cfg = load("[accept]\nrelay_networks = ::/0\n");

	cr_assert(config_addr_may_relay(cfg, sa("2001:db8::1")));
	cr_assert_not(config_addr_may_relay(cfg, sa("192.0.2.1")));
	cr_assert_not(config_addr_may_relay(cfg, sa("::ffff:192.0.2.1")));
	config_free(cfg);
}

Test(config, empty_relay_networks_lets_no_one_relay)
{
	struct config *cfg = load("[accept]\nrelay_networks =\n");

	cr_assert_eq(cfg->nrelay_networks, 0);
	cr_assert_not(config_addr_may_relay(cfg, sa("127.0.0.1")));
	cr_assert_not(config_addr_may_relay(cfg, sa("::1")));
	config_free(cfg);
}

/* ---- proxy_protocol and proxy_networks ------------------------------------------------------ */

Test(config, proxy_protocol_and_proxy_networks_are_read)
{
	struct config *cfg = load("[server]\nproxy_protocol = yes\n"
				  "proxy_networks = 10.1.0.0/16, 2001:db8::5\n");

	cr_assert(cfg->proxy_protocol);
	cr_assert_eq(cfg->nproxy_networks, 2);
	cr_assert(config_addr_may_proxy(cfg, sa("10.1.2.3")));
	cr_assert(config_addr_may_proxy(cfg, sa("::ffff:10.1.2.3")));
	cr_assert(config_addr_may_proxy(cfg, sa("2001:db8::5")));
	cr_assert_not(config_addr_may_proxy(cfg, sa("2001:db8::6")));
	cr_assert_not(config_addr_may_proxy(cfg, sa("127.0.0.1")), "the list replaces the default");
	/* the two lists are apart: a proxy is not a relay client for that */
	cr_assert_not(config_addr_may_relay(cfg, sa("10.1.2.3")));
	config_free(cfg);
}

Test(config, proxy_protocol_with_empty_proxy_networks_is_rejected_but_an_empty_list_alone_is_not)
{
	assert_error("[server]\nproxy_protocol = yes\nproxy_networks =\n",
		     "test.conf:3: [server] proxy_protocol = yes with an empty proxy_networks would "
		     "refuse every connection");
	struct config *cfg = load("[server]\nproxy_networks =\n");

	cr_assert_eq(cfg->nproxy_networks, 0);
	cr_assert_not(config_addr_may_proxy(cfg, sa("127.0.0.1")));
	config_free(cfg);
}

Test(config, proxy_keys_are_taken_on_reload)
{
	struct config *a = load("");
	struct config *b = load("[server]\nproxy_protocol = yes\nproxy_networks = 10.0.0.1\n");
	char buf[256];

	cr_assert_eq(config_restart_changes(a, b, buf, sizeof buf), 0, "%s", buf);
	config_free(a);
	config_free(b);
}

/* ---- domains and recipients --------------------------------------------------------------- */

Test(config, domains_are_case_insensitive_and_ignore_one_trailing_dot)
{
	struct config *cfg = load("[accept]\ndomains = Example.COM. example.org,,mail.test\n");

	cr_assert(local(cfg, "example.com"));
	cr_assert(local(cfg, "EXAMPLE.com"));
	cr_assert(local(cfg, "example.com."));
	cr_assert(local(cfg, "Example.Org."));
	cr_assert(local(cfg, "MAIL.TEST"));
	cr_assert_not(local(cfg, "example.com.."));
	cr_assert_not(local(cfg, "sub.example.com"));
	cr_assert_not(local(cfg, "example.co"));
	cr_assert_not(local(cfg, ""));
	cr_assert_not(local(cfg, "."));
	cr_assert(config_domain_is_local(cfg, "example.comXYZ", 11), "length is honoured");
	config_free(cfg);
}

Test(config, recipients_file_lookup_is_case_insensitive)
{
	struct config *cfg;
	char text[512];

	make_tmpdir();
	write_file("rcpt", "Alice@Example.com\nbob@example.com\n");
	snprintf(text, sizeof text, "[accept]\ndomains = example.com\nrecipients = %s/rcpt\n",
		 tmpdir);
	cfg = load(text);
	cr_assert(exists(cfg, "alice@example.com"));
	cr_assert(exists(cfg, "ALICE@EXAMPLE.COM"));
	cr_assert(exists(cfg, "Bob@Example.Com"));
	cr_assert_not(exists(cfg, "carol@example.com"));
	cr_assert_not(exists(cfg, "alice@example.co"));
	cr_assert_not(exists(cfg, "alice@example.comm"));
	cr_assert_not(exists(cfg, "lice@example.com"));
	cr_assert(config_recipient_exists(cfg, "bob@example.comXX", 15), "length is honoured");
	config_free(cfg);
	remove_tmpdir();
}

Test(config, recipients_file_skips_comments_and_blank_lines)
{
	struct config *cfg;
	char text[512];

	make_tmpdir();
	write_file("rcpt", "# the team\n\n   \nalice@example.com   # Alice\r\n"
			   "  bob@example.com\n#carol@example.com\nalice@example.com\n");
	snprintf(text, sizeof text, "[accept]\ndomains = example.com\nrecipients = %s/rcpt\n",
		 tmpdir);
	cfg = load(text);
	cr_assert(exists(cfg, "alice@example.com"));
	cr_assert(exists(cfg, "bob@example.com"));
	cr_assert_not(exists(cfg, "carol@example.com"));
	cr_assert_not(exists(cfg, "#carol@example.com"));
	config_free(cfg);
	remove_tmpdir();
}

Test(config, recipients_file_errors_name_that_file_and_line)
{
	static const struct {
		const char *text, *message;
	} bad[] = {
	    {"a@example.com\n\nnot-an-address\n",
	     ":3: expected an address like user@example.com, got \"not-an-address\""},
	    {"a@example.com b@example.com\n",
	     ":1: expected one address per line, got \"a@example.com b@example.com\""},
	    {"@example.com\n", ":1: expected an address like user@example.com"},
	    {"a@\n", ":1: expected an address like user@example.com"},
	    {"a@exa mple.com\n", ":1: expected one address per line"},
	    {"a@exa_mple.com\n", ":1: expected an address like user@example.com"},
	    {"x\x01y@example.com\n", ":1: control character in \"x\\x01y@example.com\""},
	};

	make_tmpdir();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[512], want[512];
		const char *path = write_file("rcpt", bad[i].text);

		snprintf(text, sizeof text, "[accept]\ndomains = example.com\nrecipients = %s\n",
			 path);
		snprintf(want, sizeof want, "%s%s", path, bad[i].message);
		assert_error_has(text, want);
		cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
	}
	remove_tmpdir();
}

Test(config, missing_recipients_file_is_reported_at_the_config_line)
{
	assert_error("[accept]\ndomains = example.com\nrecipients = /nonexistent/ringmx/rcpt\n",
		     "test.conf:3: [accept] recipients: cannot open \"/nonexistent/ringmx/rcpt\": "
		     "No such file or directory");
}

Test(config, relative_recipients_path_is_relative_to_the_config_directory)
{
	struct config *cfg;
	char path[256], cwd[512];

	make_tmpdir();
	write_file("rcpt", "alice@example.com\n");
	write_file("ringmx.conf", "[accept]\ndomains = example.com\nrecipients = rcpt\n");
	snprintf(path, sizeof path, "%s/ringmx.conf", tmpdir);
	cr_assert_not_null(getcwd(cwd, sizeof cwd));
	cr_assert_neq(strcmp(cwd, tmpdir), 0);
	cfg = config_load_file(path, err, sizeof err);
	cr_assert_not_null(cfg, "%s", err);
	cr_assert(exists(cfg, "alice@example.com"));
	snprintf(path, sizeof path, "%s/rcpt", tmpdir);
	cr_assert_str_eq(cfg->recipients_path, path);
	config_free(cfg);
	remove_tmpdir();
}

Test(config, no_recipients_file_means_every_address_exists)
{
	struct config *cfg = load("[accept]\ndomains = example.com\nrecipients =\n");

	cr_assert_null(cfg->recipients);
	cr_assert(exists(cfg, "anyone@example.com"));
	config_free(cfg);
}

Test(config, recipients_without_local_domains_is_an_error)
{
	assert_error("[accept]\nrecipients = /etc/ringmx/recipients\n",
		     "test.conf:2: [accept] recipients is set but [accept] domains is empty, so "
		     "no address in it could ever be local");
}

Test(config, a_million_recipients_load_and_look_up, .timeout = 60)
{
	enum { N = 1000000 };
	struct config *cfg;
	char text[512], addr[64];
	FILE *f;

	make_tmpdir();
	snprintf(text, sizeof text, "%s/rcpt", tmpdir);
	f = fopen(text, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < N; i++)
		fprintf(f, "user%d@example.com\n", i);
	fclose(f);
	snprintf(text, sizeof text, "[accept]\ndomains = example.com\nrecipients = %s/rcpt\n",
		 tmpdir);
	cfg = load(text);
	for (int i = 0; i < N; i++) {
		int n = snprintf(addr, sizeof addr, "USER%d@Example.Com", i);

		cr_assert(config_recipient_exists(cfg, addr, (size_t)n), "%s", addr);
		n = snprintf(addr, sizeof addr, "user%d@example.com", i + N);
		cr_assert_not(config_recipient_exists(cfg, addr, (size_t)n), "%s", addr);
	}
	config_free(cfg);
	remove_tmpdir();
}

/* ---- [server] control_socket ------------------------------------------------------------ */

Test(config, control_socket_defaults_to_the_spool_directory)
{
	struct config *cfg = load("[spool]\ndir = /srv/spool\n");

	cr_assert_str_eq(cfg->control_socket, "/srv/spool/ringmx.ctl");
	config_free(cfg);
	cfg = load("[spool]\ndir = /srv/spool/\n[server]\ncontrol_socket =\n");
	cr_assert_str_eq(cfg->control_socket, "/srv/spool/ringmx.ctl", "empty means the default");
	config_free(cfg);
	cfg = load("[spool]\ndir = var/spool\n");
	cr_assert_str_eq(cfg->control_socket, "var/spool/ringmx.ctl", "relative, like dir");
	config_free(cfg);
	cfg = load("[server]\ncontrol_socket = ctl.sock\n[spool]\ndir = /srv/spool\n");
	cr_assert_str_eq(cfg->control_socket, "ctl.sock");
	config_free(cfg);
}

Test(config, control_socket_must_fit_in_a_unix_socket_address)
{
	char path[200], text[400], want[600];
	struct config *cfg;

	/* 107 bytes fit (sun_path is 108 with its NUL), 108 do not */
	memset(path, 'a', sizeof path);
	path[0] = '/';
	path[107] = '\0';
	snprintf(text, sizeof text, "[server]\ncontrol_socket = %s\n", path);
	cfg = load(text);
	cr_assert_str_eq(cfg->control_socket, path);
	config_free(cfg);
	path[107] = 'a';
	path[108] = '\0';
	snprintf(text, sizeof text, "[server]\nmax_errors = 3\ncontrol_socket = %s\n", path);
	assert_error(text, "test.conf:3: [server] control_socket: path is longer than 107 bytes "
			   "(a unix socket's limit)");

	/* the default: dir + "/ringmx.ctl" (11 bytes) must fit too */
	path[96] = '\0';
	snprintf(text, sizeof text, "[spool]\ndir = %s\n", path);
	cfg = load(text);
	cr_assert_eq(strlen(cfg->control_socket), 107);
	config_free(cfg);
	path[96] = 'a';
	path[97] = '\0';
	snprintf(text, sizeof text, "[server]\nmax_errors = 3\n[spool]\n\ndir = %s\n", path);
	snprintf(want, sizeof want,
		 "test.conf:5: [server] control_socket: the default, [spool] dir + "
		 "\"/ringmx.ctl\", is longer than 107 bytes (a unix socket's limit); set "
		 "control_socket to a shorter path");
	assert_error(text, want);
	snprintf(text, sizeof text, "[server]\ncontrol_socket = /run/ringmx.ctl\n[spool]\ndir = %s\n",
		 path);
	cfg = load(text);
	cr_assert_str_eq(cfg->control_socket, "/run/ringmx.ctl", "a long dir is fine when set");
	config_free(cfg);
}

/* ---- [deliver] --------------------------------------------------------------------------- */

Test(config, local_delivery_forms_are_read)
{
	static const struct {
		const char *text;
		enum config_local_kind kind;
		enum config_hop_kind hop;
		const char *host;
		unsigned port;
	} forms[] = {
	    {"maildir", CONFIG_LOCAL_MAILDIR, CONFIG_HOP_MAILDIR, "", 0},
	    {"MAILDIR", CONFIG_LOCAL_MAILDIR, CONFIG_HOP_MAILDIR, "", 0},
	    {"discard", CONFIG_LOCAL_DISCARD, CONFIG_HOP_DISCARD, "", 0},
	    {"lmtp:unix:/run/dovecot/lmtp", CONFIG_LOCAL_LMTP, CONFIG_HOP_LMTP, "/run/dovecot/lmtp",
	     0},
	    {"lmtp:127.0.0.1:24", CONFIG_LOCAL_LMTP, CONFIG_HOP_LMTP, "127.0.0.1", 24},
	    {"lmtp:[::1]:24", CONFIG_LOCAL_LMTP, CONFIG_HOP_LMTP, "::1", 24},
	    {"lmtp:Imap.Example.com:2424", CONFIG_LOCAL_LMTP, CONFIG_HOP_LMTP, "imap.example.com",
	     2424},
	};

	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char text[128];
		struct config *cfg;

		snprintf(text, sizeof text, "[deliver]\nlocal = %s\n", forms[i].text);
		cfg = load(text);
		cr_assert_eq(cfg->local_kind, forms[i].kind, "%s", forms[i].text);
		cr_assert_eq(cfg->local_hop.kind, forms[i].hop, "%s", forms[i].text);
		cr_assert_str_eq(cfg->local_hop.host, forms[i].host, "%s", forms[i].text);
		cr_assert_eq(cfg->local_hop.port, forms[i].port, "%s", forms[i].text);
		config_free(cfg);
	}
}

Test(config, relayhost_forms_are_read)
{
	static const struct {
		const char *text, *host;
		unsigned port;
		bool no_mx;
	} forms[] = {
	    {"smarthost.example.net", "smarthost.example.net", 25, false},
	    {"SmartHost.Example.NET:587", "smarthost.example.net", 587, false},
	    {"[smarthost.example.net]", "smarthost.example.net", 25, true},
	    {"[smarthost.example.net]:587", "smarthost.example.net", 587, true},
	    {"[192.0.2.25]:587", "192.0.2.25", 587, true},
	    {"192.0.2.25", "192.0.2.25", 25, true},
	    {"[::1]:25", "::1", 25, true},
	    {"[2001:db8::25]", "2001:db8::25", 25, true},
	    {"smtp:[10.0.0.5]:2525", "10.0.0.5", 2525, true},
	};

	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char text[128];
		struct config *cfg;

		snprintf(text, sizeof text, "[deliver]\nrelayhost = %s\n", forms[i].text);
		cfg = load(text);
		cr_assert_eq(cfg->relayhost.kind, CONFIG_HOP_SMTP, "%s", forms[i].text);
		cr_assert_str_eq(cfg->relayhost.host, forms[i].host, "%s", forms[i].text);
		cr_assert_eq(cfg->relayhost.port, forms[i].port, "%s", forms[i].text);
		cr_assert_eq(cfg->relayhost.no_mx, forms[i].no_mx, "%s", forms[i].text);
		config_free(cfg);
	}
}

Test(config, rate_forms_are_stored_per_hour)
{
	static const struct {
		const char *text;
		uint32_t per_hour;
	} rates[] = {
	    {"0", 0},	       {"50/s", 180000},	    {"600/m", 36000},
	    {"1000/h", 1000},  {"1/h", 1},		    {"1/m", 60},
	    {"007/s", 25200},  {"1000000/s", 3600000000u}, {"60000000/m", 3600000000u},
	    {"3600000000/h", 3600000000u},
	};

	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
		char text[128];
		struct config *cfg;

		snprintf(text, sizeof text, "[deliver]\nrate = %s\n[domain example.org]\nrate = %s\n",
			 rates[i].text, rates[i].text);
		cfg = load(text);
		cr_assert_eq(cfg->policy_default.rate_per_hour, rates[i].per_hour, "%s",
			     rates[i].text);
		cr_assert_eq(cfg->policies[0].rate_per_hour, rates[i].per_hour, "%s",
			     rates[i].text);
		config_free(cfg);
	}
}

/* ---- [queue] ----------------------------------------------------------------------------- */

Test(config, durations_in_queue_take_days)
{
	static const struct {
		const char *text;
		uint64_t seconds;
	} forms[] = {
	    {"1", 1}, {"1s", 1}, {"90m", 5400}, {"36h", 129600}, {"5d", 432000}, {"365d", 31536000},
	};

	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
		char text[128];
		struct config *cfg;

		snprintf(text, sizeof text, "[queue]\nmax_lifetime = %s\nretry = %s\n", forms[i].text,
			 forms[i].seconds <= 30 * 86400 ? forms[i].text : "1m");
		cfg = load(text);
		cr_assert_eq(cfg->max_lifetime, forms[i].seconds, "%s", forms[i].text);
		if (forms[i].seconds <= 30 * 86400)
			cr_assert_eq(cfg->retry[0], forms[i].seconds, "%s", forms[i].text);
		config_free(cfg);
	}
}

Test(config, retry_list_takes_up_to_thirty_two_steps)
{
	char text[1024] = "[queue]\nretry =";
	struct config *cfg;

	for (int i = 1; i <= CONFIG_RETRY_MAX; i++)
		sprintf(text + strlen(text), " %dm", i);
	cfg = load(text);
	cr_assert_eq(cfg->nretry, CONFIG_RETRY_MAX);
	cr_assert_eq(cfg->retry[0], 60);
	cr_assert_eq(cfg->retry[CONFIG_RETRY_MAX - 1], CONFIG_RETRY_MAX * 60);
	config_free(cfg);
	strcat(text, " 1d\n");
	assert_error(text, "test.conf:2: [queue] retry: more than 32 steps");
	cfg = load("[queue]\nretry = 1d 30d\n");
	cr_assert_eq(cfg->nretry, 2);
	cr_assert_eq(cfg->retry[1], 30 * 86400);
	config_free(cfg);
}

Test(config, retry_delay_repeats_the_last_step)
{
	struct config *cfg = load("");

	cr_assert_eq(config_retry_delay(cfg, 1), 60);
	cr_assert_eq(config_retry_delay(cfg, 2), 300);
	cr_assert_eq(config_retry_delay(cfg, 7), 14400);
	cr_assert_eq(config_retry_delay(cfg, 8), 14400);
	cr_assert_eq(config_retry_delay(cfg, 1000000), 14400);
	config_free(cfg);
	cfg = load("[queue]\nretry = 10m\n");
	cr_assert_eq(config_retry_delay(cfg, 1), 600);
	cr_assert_eq(config_retry_delay(cfg, 5), 600);
	config_free(cfg);
}

Test(config, warn_after_must_be_shorter_than_max_lifetime)
{
	struct config *cfg;

	assert_error("[queue]\nmax_lifetime = 1d\nwarn_after = 24h\n",
		     "test.conf:3: [queue] warn_after (86400 s) is not shorter than max_lifetime "
		     "(86400 s)");
	assert_error("[queue]\nwarn_after = 6d\n",
		     "test.conf:2: [queue] warn_after (518400 s) is not shorter than max_lifetime "
		     "(432000 s)");
	assert_error("[queue]\nwarn_after = 2h\n\nmax_lifetime = 1h\n",
		     "test.conf:4: [queue] warn_after (7200 s) is not shorter than max_lifetime "
		     "(3600 s)");
	cfg = load("[queue]\nwarn_after = 6d\nmax_lifetime = 7d\n");
	cr_assert_eq(cfg->warn_after, 6 * 86400);
	config_free(cfg);
	cfg = load("[queue]\nwarn_after = 0\nmax_lifetime = 1s\n");
	cr_assert_eq(cfg->warn_after, 0, "0 is off, whatever max_lifetime is");
	config_free(cfg);
}

/* ---- Next hops --------------------------------------------------------------------------- */

Test(config, hop_parse_reads_every_kind)
{
	static const struct {
		const char *text;
		enum config_hop_kind kind;
		bool unix_socket, no_mx;
		const char *host;
		unsigned port;
		const char *canonical;
	} hops[] = {
	    {"smtp:[10.0.0.5]:25", CONFIG_HOP_SMTP, false, true, "10.0.0.5", 25,
	     "smtp:[10.0.0.5]:25"},
	    {"smtp:[10.0.0.5]", CONFIG_HOP_SMTP, false, true, "10.0.0.5", 25, "smtp:[10.0.0.5]:25"},
	    {"smtp:10.0.0.5:2525", CONFIG_HOP_SMTP, false, true, "10.0.0.5", 2525,
	     "smtp:[10.0.0.5]:2525"},
	    {"smtp:[mx.example]:2525", CONFIG_HOP_SMTP, false, true, "mx.example", 2525,
	     "smtp:[mx.example]:2525"},
	    {"smtp:host.example", CONFIG_HOP_SMTP, false, false, "host.example", 25,
	     "smtp:host.example:25"},
	    {"SMTP:Host.Example:587", CONFIG_HOP_SMTP, false, false, "host.example", 587,
	     "smtp:host.example:587"},
	    {"smtp:[2001:db8::25]:25", CONFIG_HOP_SMTP, false, true, "2001:db8::25", 25,
	     "smtp:[2001:db8::25]:25"},
	    {"smtp:localhost", CONFIG_HOP_SMTP, false, false, "localhost", 25, "smtp:localhost:25"},
	    {"lmtp:unix:/run/dovecot/lmtp", CONFIG_HOP_LMTP, true, false, "/run/dovecot/lmtp", 0,
	     "lmtp:unix:/run/dovecot/lmtp"},
	    {"lmtp:unix:relative/sock", CONFIG_HOP_LMTP, true, false, "relative/sock", 0,
	     "lmtp:unix:relative/sock"},
	    {"lmtp:imap.example:24", CONFIG_HOP_LMTP, false, true, "imap.example", 24,
	     "lmtp:imap.example:24"},
	    {"lmtp:[imap.example]:24", CONFIG_HOP_LMTP, false, true, "imap.example", 24,
	     "lmtp:imap.example:24"},
	    {"lmtp:[::1]:24", CONFIG_HOP_LMTP, false, true, "::1", 24, "lmtp:[::1]:24"},
	    {"lmtp:127.0.0.1:24", CONFIG_HOP_LMTP, false, true, "127.0.0.1", 24,
	     "lmtp:127.0.0.1:24"},
	    {"maildir", CONFIG_HOP_MAILDIR, false, false, "", 0, "maildir"},
	    {"Discard", CONFIG_HOP_DISCARD, false, false, "", 0, "discard"},
	};

	for (size_t i = 0; i < sizeof hops / sizeof hops[0]; i++) {
		struct config_hop h, again;
		char text[300];

		cr_assert_eq(config_hop_parse(hops[i].text, &h), 0, "%s", hops[i].text);
		cr_assert_eq(h.kind, hops[i].kind, "%s", hops[i].text);
		cr_assert_eq(h.unix_socket, hops[i].unix_socket, "%s", hops[i].text);
		cr_assert_eq(h.no_mx, hops[i].no_mx, "%s", hops[i].text);
		cr_assert_str_eq(h.host, hops[i].host, "%s", hops[i].text);
		cr_assert_eq(h.port, hops[i].port, "%s", hops[i].text);

		/* and back: the text is canonical, and parses to the same hop */
		config_hop_text(&h, text, sizeof text);
		cr_assert_str_eq(text, hops[i].canonical, "%s", hops[i].text);
		cr_assert_eq(config_hop_parse(text, &again), 0, "%s", text);
		cr_assert_eq(memcmp(&h, &again, sizeof h), 0, "%s round trip", hops[i].text);
	}
}

Test(config, hop_parse_rejects_garbage)
{
	static const char *const bad[] = {
	    "",
	    "smtp",
	    "smtp:",
	    "smtp:[]:25",
	    "smtp:[10.0.0.5",
	    "smtp:[10.0.0.5]25",
	    "smtp:[10.0.0.5]:0",
	    "smtp:[10.0.0.5]:65536",
	    "smtp:[10.0.0.5]:",
	    "smtp:host.example:25x",
	    "smtp:2001:db8::25",
	    "smtp:host_name.example",
	    "smtp:256.1.1.1",
	    "smtp:host..example",
	    "smtp: host.example",
	    "lmtp:imap.example",
	    "lmtp:[::1]",
	    "lmtp:unix:",
	    "lmtp:",
	    "esmtp:host.example",
	    "maildir:/var/mail",
	    "relay",
	    "mx",
	};
	struct config_hop h;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(config_hop_parse(bad[i], &h), -EINVAL, "\"%s\"", bad[i]);
		cr_assert_eq(h.kind, CONFIG_HOP_MX, "a failed parse leaves a zeroed hop");
	}
}

Test(config, hop_parse_bounds_names_and_socket_paths)
{
	char text[400];
	struct config_hop h;

	strcpy(text, "lmtp:unix:/");
	memset(text + 11, 'p', 106);
	text[117] = '\0';
	cr_assert_eq(config_hop_parse(text, &h), 0, "107 bytes fit in sun_path");
	cr_assert_eq(strlen(h.host), 107);
	strcat(text, "p");
	cr_assert_eq(config_hop_parse(text, &h), -EINVAL, "108 do not");

	/* a 253-character name fits; 254 do not */
	strcpy(text, "smtp:");
	for (int i = 0; i < 4; i++)
		strcat(text, i ? ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			       : "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	cr_assert_eq(strlen(text + 5), 253);
	cr_assert_eq(config_hop_parse(text, &h), 0);
	strcat(text, "a");
	cr_assert_eq(config_hop_parse(text, &h), -EINVAL);
}

Test(config, hop_text_writes_mx_routing_and_cuts_to_the_buffer)
{
	struct config_hop h = {.kind = CONFIG_HOP_MX};
	char text[16];

	config_hop_text(&h, text, sizeof text);
	cr_assert_str_eq(text, "mx");
	cr_assert_eq(config_hop_parse("smtp:[192.0.2.25]:2525", &h), 0);
	config_hop_text(&h, text, 10);
	cr_assert_str_eq(text, "smtp:[192");
}

/* ---- [transport] -------------------------------------------------------------------------- */

Test(config, transport_entries_are_read_in_file_order)
{
	struct config *cfg = load("[transport]\n"
				  "Example.ORG. = smtp:[10.0.0.5]:25\n"
				  "*.example.org = lmtp:unix:/run/lmtp\n"
				  "[deliver]\n"
				  "enabled = yes\n"
				  "[transport]\n"
				  "localhost = maildir\n"
				  "null.test = discard\n"
				  "mx.test = smtp:mx.example\n");

	cr_assert_eq(cfg->ntransports, 5);
	cr_assert_str_eq(cfg->transports[0].pattern, "example.org");
	cr_assert_eq(cfg->transports[0].hop.kind, CONFIG_HOP_SMTP);
	cr_assert_str_eq(cfg->transports[0].hop.host, "10.0.0.5");
	cr_assert_str_eq(cfg->transports[1].pattern, "*.example.org");
	cr_assert_eq(cfg->transports[1].hop.kind, CONFIG_HOP_LMTP);
	cr_assert_str_eq(cfg->transports[2].pattern, "localhost");
	cr_assert_eq(cfg->transports[2].hop.kind, CONFIG_HOP_MAILDIR);
	cr_assert_eq(cfg->transports[3].hop.kind, CONFIG_HOP_DISCARD);
	cr_assert_eq(cfg->transports[4].hop.kind, CONFIG_HOP_SMTP);
	cr_assert_not(cfg->transports[4].hop.no_mx);
	cr_assert_str_eq(cfg->transports[4].hop.host, "mx.example");
	config_free(cfg);
}

Test(config, bad_transport_entries_name_the_file_line_and_domain)
{
	static const struct {
		const char *line, *want;
	} bad[] = {
	    {"example.org = smtp:[10.0.0.5",
	     "test.conf:3: [transport] example.org: \"smtp:[10.0.0.5\": '[' without ']'"},
	    {"example.org = smtp:", "test.conf:3: [transport] example.org: \"smtp:\": no host"},
	    {"example.org = lmtp:imap.example",
	     "test.conf:3: [transport] example.org: \"lmtp:imap.example\": no port (LMTP has no "
	     "default port: lmtp:HOST:PORT)"},
	    {"Example.org = relay:x",
	     "test.conf:3: [transport] example.org: \"relay:x\": expected smtp:HOST[:PORT], "
	     "lmtp:HOST:PORT, lmtp:unix:PATH, maildir or discard"},
	    {"*.example.org = smtp:[::1]:99999",
	     "test.conf:3: [transport] *.example.org: \"smtp:[::1]:99999\": the port is not 1 to "
	     "65535"},
	    {"example.org =", "test.conf:3: [transport] example.org: \"\": expected smtp:"},
	    {"exa_mple.org = maildir",
	     "test.conf:3: [transport] exa_mple.org: expected a domain name or *.domain as the "
	     "key"},
	    {"* = maildir", "test.conf:3: [transport] *: expected a domain name or *.domain"},
	    {"*. = maildir", "test.conf:3: [transport] *.: expected a domain name"},
	    {"**.example.org = maildir", "test.conf:3: [transport] **.example.org: expected"},
	    {"*example.org = maildir", "test.conf:3: [transport] *example.org: expected"},
	    {"a.*.example.org = maildir", "test.conf:3: [transport] a.*.example.org: expected"},
	    {"example..org = maildir", "test.conf:3: [transport] example..org: expected"},
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[256];

		snprintf(text, sizeof text, "[transport]\na.test = discard\n%s\n", bad[i].line);
		assert_error_has(text, bad[i].want);
		cr_assert_eq(strncmp(err, bad[i].want, strlen(bad[i].want)), 0, "%s", err);
	}
}

Test(config, duplicate_transport_key_is_an_error)
{
	assert_error("[transport]\nexample.org = discard\n[queue]\nhold = no\n[transport]\n"
		     "EXAMPLE.org. = maildir\n",
		     "test.conf:6: duplicate key \"EXAMPLE.org.\" in [transport] (first set on "
		     "line 2)");
	assert_error("[transport]\n*.example.org = discard\n*.Example.org = discard\n",
		     "test.conf:3: duplicate key \"*.Example.org\" in [transport] (first set on "
		     "line 2)");
}

Test(config, transport_lookup_prefers_exact_names_then_the_longest_pattern)
{
	struct config *cfg = load("[transport]\n"
				  "*.org = smtp:[192.0.2.1]:25\n"
				  "*.example.org = smtp:[192.0.2.2]:25\n"
				  "*.deep.example.org = smtp:[192.0.2.3]:25\n"
				  "deep.example.org = smtp:[192.0.2.4]:25\n"
				  "example.org = smtp:[192.0.2.5]:25\n");
	static const struct {
		const char *domain, *host;
	} cases[] = {
	    {"example.org", "192.0.2.5"},	  /* exact, though *.org matches too */
	    {"a.example.org", "192.0.2.2"},	  /* the longer of *.example.org and *.org */
	    {"deep.example.org", "192.0.2.4"},	  /* exact beats *.example.org */
	    {"x.deep.example.org", "192.0.2.3"},  /* the longest pattern */
	    {"y.x.deep.example.org", "192.0.2.3"}, /* patterns match at any depth */
	    {"other.org", "192.0.2.1"},
	    {"EXAMPLE.Org.", "192.0.2.5"}, /* any case, one trailing dot */
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct config_transport *t = config_transport_find(cfg, cases[i].domain);

		cr_assert_not_null(t, "%s", cases[i].domain);
		cr_assert_str_eq(t->hop.host, cases[i].host, "%s", cases[i].domain);
	}
	cr_assert_null(config_transport_find(cfg, "org"), "*.org is subdomains only");
	cr_assert_null(config_transport_find(cfg, "example.com"));
	cr_assert_null(config_transport_find(cfg, "xorg"), "a pattern matches whole labels");
	cr_assert_null(config_transport_find(cfg, ""));
	config_free(cfg);
}

Test(config, transport_pattern_matches_subdomains_only)
{
	struct config *cfg = load("[transport]\n*.example.org = discard\n");

	cr_assert_not_null(config_transport_find(cfg, "mail.example.org"));
	cr_assert_null(config_transport_find(cfg, "example.org"));
	cr_assert_null(config_transport_find(cfg, "badexample.org"));
	cr_assert_null(config_transport_find(cfg, ".example.org"));
	config_free(cfg);
}

/* ---- [domain NAME] ------------------------------------------------------------------------ */

Test(config, domain_sections_inherit_unset_keys_from_deliver_wherever_it_is)
{
	static const char *const texts[] = {
	    /* [deliver] before */
	    "[deliver]\nmax_connections = 5\nmax_messages_per_connection = 6\n"
	    "max_recipients = 7\nrate = 8/h\ntls = required\n"
	    "[domain gmail.com]\nmax_connections = 2\n[domain *.Example.COM.]\n",
	    /* [deliver] after */
	    "[domain gmail.com]\nmax_connections = 2\n[domain *.Example.COM.]\n"
	    "[deliver]\nmax_connections = 5\nmax_messages_per_connection = 6\n"
	    "max_recipients = 7\nrate = 8/h\ntls = required\n",
	};

	for (size_t i = 0; i < 2; i++) {
		struct config *cfg = load(texts[i]);
		const struct config_domain_policy *g = &cfg->policies[0], *e = &cfg->policies[1];

		cr_assert_eq(cfg->npolicies, 2);
		cr_assert_str_eq(g->pattern, "gmail.com");
		cr_assert_eq(g->max_connections, 2, "set in the section");
		cr_assert_eq(g->max_messages_per_connection, 6, "inherited");
		cr_assert_eq(g->max_recipients, 7);
		cr_assert_eq(g->rate_per_hour, 8);
		cr_assert_eq(g->tls, CONFIG_TLS_REQUIRED);
		cr_assert_str_eq(e->pattern, "*.example.com");
		cr_assert_eq(e->max_connections, 5, "an empty section inherits everything");
		cr_assert_eq(e->max_messages_per_connection, 6);
		cr_assert_eq(e->max_recipients, 7);
		cr_assert_eq(e->rate_per_hour, 8);
		cr_assert_eq(e->tls, CONFIG_TLS_REQUIRED);
		config_free(cfg);
	}
}

Test(config, domain_section_keys_override_every_policy_key)
{
	struct config *cfg = load("[domain outlook.com]\n"
				  "max_connections = 10000\n"
				  "max_messages_per_connection = 1\n"
				  "max_recipients = 100000\n"
				  "rate = 600/m\n"
				  "tls = required\n"
				  "[deliver]\n"
				  "rate = 1/s\n");
	const struct config_domain_policy *p = config_policy_find(cfg, "outlook.com");

	cr_assert_eq(p, &cfg->policies[0]);
	cr_assert_eq(p->max_connections, 10000);
	cr_assert_eq(p->max_messages_per_connection, 1);
	cr_assert_eq(p->max_recipients, 100000);
	cr_assert_eq(p->rate_per_hour, 36000);
	cr_assert_eq(p->tls, CONFIG_TLS_REQUIRED);
	cr_assert_eq(cfg->policy_default.rate_per_hour, 3600);
	cr_assert_eq(cfg->policy_default.max_connections, 20);
	config_free(cfg);
}

Test(config, policy_lookup_prefers_exact_names_then_the_longest_pattern)
{
	struct config *cfg = load("[domain *.com]\nmax_connections = 1\n"
				  "[domain *.example.com]\nmax_connections = 2\n"
				  "[domain example.com]\nmax_connections = 3\n"
				  "[domain a.example.com]\nmax_connections = 4\n");

	cr_assert_eq(config_policy_find(cfg, "example.com")->max_connections, 3);
	cr_assert_eq(config_policy_find(cfg, "a.example.com")->max_connections, 4);
	cr_assert_eq(config_policy_find(cfg, "b.example.com")->max_connections, 2);
	cr_assert_eq(config_policy_find(cfg, "x.a.example.com")->max_connections, 2);
	cr_assert_eq(config_policy_find(cfg, "other.com")->max_connections, 1);
	cr_assert_eq(config_policy_find(cfg, "Other.COM.")->max_connections, 1);
	cr_assert_eq(config_policy_find(cfg, "com"), &cfg->policy_default, "subdomains only");
	cr_assert_eq(config_policy_find(cfg, "example.org"), &cfg->policy_default);
	config_free(cfg);
}

Test(config, domain_section_names_longer_than_inih_section_buffer_are_read_whole)
{
	const char *name = "a-rather-long-subdomain-name.of-a-long-domain-name.example.com";
	char text[256];
	struct config *cfg;

	snprintf(text, sizeof text, "[domain %s]\nmax_connections = 3\n[domain example.com]\n",
		 name);
	cfg = load(text);
	cr_assert_str_eq(cfg->policies[0].pattern, name);
	cr_assert_eq(config_policy_find(cfg, name)->max_connections, 3);
	config_free(cfg);
	snprintf(text, sizeof text, "[domain %s]\nrate = fast\n", name);
	assert_error_has(text, "test.conf:2: [domain a-rather-long-subdomain-name.of-a-long-"
			       "domain-name.example.com] rate: expected 0 (no limit)");
}

Test(config, bad_domain_sections_are_errors)
{
	assert_error("[deliver]\n[domain]\nmax_connections = 1\n",
		     "test.conf:2: [domain] needs a name, like [domain example.com]");
	assert_error("[domain   ]\n", "test.conf:1: [domain] needs a name, like [domain example.com]");
	assert_error("[domain exa_mple.com]\n",
		     "test.conf:1: [domain exa_mple.com]: expected a domain name or *.domain");
	assert_error("[domain *]\n", "test.conf:1: [domain *]: expected a domain name or *.domain");
	assert_error("[domain gmail.com]\nrate = 1/s\n[spool]\nfsync = no\n[domain Gmail.com.]\n",
		     "test.conf:5: duplicate section [domain gmail.com] (first on line 1)");
	assert_error("[domainx]\n", "test.conf:1: unknown section [domainx]");
	assert_error("[Domain x.com]\n", "test.conf:1: unknown section [Domain x.com]");
	assert_error("[domain gmail.com]\nmax_connection = 1\n",
		     "test.conf:2: unknown key \"max_connection\" in [domain gmail.com]");
	assert_error("[domain gmail.com]\nenabled = no\n",
		     "test.conf:2: unknown key \"enabled\" in [domain gmail.com]");
	assert_error("[domain gmail.com]\ntls = required\n\ntls = optional\n",
		     "test.conf:4: duplicate key \"tls\" in [domain gmail.com] (first set on line 2)");
	assert_error("[domain gmail.com]\nmax_connections = 0\n",
		     "test.conf:2: [domain gmail.com] max_connections: \"0\" is out of range, "
		     "expected 1 to 10000");
	assert_error("[domain *.example.com]\nmax_recipients = 100001\n",
		     "test.conf:2: [domain *.example.com] max_recipients: \"100001\" is out of "
		     "range, expected 1 to 100000");
	assert_error("[domain a.test]\nmax_messages_per_connection = x\n",
		     "test.conf:2: [domain a.test] max_messages_per_connection: expected a positive "
		     "integer, got \"x\"");
	assert_error("[domain a.test]\ntls = yes\n",
		     "test.conf:2: [domain a.test] tls: expected none, optional, required, verify or dane, got \"yes\"");
}

Test(config, the_same_key_in_deliver_and_a_domain_section_is_not_a_duplicate)
{
	struct config *cfg = load("[deliver]\nmax_connections = 9\n[domain a.test]\n"
				  "max_connections = 3\n[domain b.test]\nmax_connections = 4\n");

	cr_assert_eq(cfg->policy_default.max_connections, 9);
	cr_assert_eq(cfg->policies[0].max_connections, 3);
	cr_assert_eq(cfg->policies[1].max_connections, 4);
	config_free(cfg);
	assert_error("[deliver]\nmax_connections = 9\n[deliver]\nmax_connections = 3\n",
		     "test.conf:4: duplicate key \"max_connections\" in [deliver] (first set on "
		     "line 2)");
}

/* ---- Files -------------------------------------------------------------------------------- */

Test(config, load_file_names_the_file_in_errors)
{
	struct config *cfg;
	const char *path;
	char want[512];

	make_tmpdir();
	path = write_file("ringmx.conf", "[server]\n\nmax_recipients = abc\n");
	cfg = config_load_file(path, err, sizeof err);
	cr_assert_null(cfg);
	snprintf(want, sizeof want,
		 "%s:3: [server] max_recipients: expected a positive integer, got \"abc\"", path);
	cr_assert_str_eq(err, want);
	remove_tmpdir();
}

Test(config, load_file_reports_a_missing_file)
{
	struct config *cfg = config_load_file("/nonexistent/ringmx.conf", err, sizeof err);

	cr_assert_null(cfg);
	cr_assert_str_eq(err, "/nonexistent/ringmx.conf: cannot read: No such file or directory");
}

Test(config, load_file_reports_a_directory)
{
	cr_assert_null(config_load_file("/", err, sizeof err));
	cr_assert_str_eq(err, "/: cannot read: Is a directory");
}

Test(config, nul_byte_in_the_file_is_an_error)
{
	struct config *cfg;
	char path[256], want[300];
	FILE *f;

	make_tmpdir();
	snprintf(path, sizeof path, "%s/ringmx.conf", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fwrite("[server]\nmax_errors = 3\x00\n", 1, 24, f);
	fclose(f);
	cfg = config_load_file(path, err, sizeof err);
	cr_assert_null(cfg);
	snprintf(want, sizeof want, "%s:2: NUL byte in the file", path);
	cr_assert_str_eq(err, want);
	remove_tmpdir();
}

Test(config, error_message_is_cut_to_the_callers_buffer)
{
	char small[16];
	struct config *cfg = config_load_string("[foo]\n", "test.conf", small, sizeof small);

	cr_assert_null(cfg);
	cr_assert_str_eq(small, "test.conf:1: un");
	cr_assert_null(config_load_string("[foo]\n", "test.conf", NULL, 0));
}

/* ---- [tls] ---------------------------------------------------------------------------------- */

/* Writes a fresh self-signed certificate (CN=mx.test) and its key as PEM to tmpdir/NAME.crt and
 * tmpdir/NAME.key. */
static void
write_cert(const char *name)
{
	char path[256];
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f;

	cr_assert(pkey && x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"mx.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	cr_assert(X509_sign(x, pkey, EVP_sha256()) > 0);
	snprintf(path, sizeof path, "%s/%s.crt", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(PEM_write_X509(f, x), 1);
	fclose(f);
	snprintf(path, sizeof path, "%s/%s.key", tmpdir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

Test(config, tls_keys_build_a_context_and_turn_starttls_on_by_default)
{
	struct config *cfg;
	char text[1024];

	make_tmpdir();
	write_cert("mx");
	snprintf(text, sizeof text,
		 "[server]\nlisten_tls = 127.0.0.1:465 [::1]:465\n"
		 "[tls]\ncert = %s/mx.crt\nkey = %s/mx.key\nciphers = ECDHE+AESGCM:ECDHE+CHACHA20\n"
		 "min_version = 1.3\n",
		 tmpdir, tmpdir);
	cfg = load(text);
	cr_assert_not_null(cfg->tls_ctx);
	cr_assert(cfg->starttls, "a certificate turns STARTTLS on");
	cr_assert_eq(cfg->nlisten_tls, 2);
	cr_assert_str_eq(cfg->listen_tls[1].text, "[::1]:465");
	cr_assert_eq(cfg->tls_min_version, CONFIG_TLS_1_3);
	cr_assert_str_eq(cfg->tls_ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
	config_free(cfg);

	snprintf(text, sizeof text, "[server]\ntls = none\n[tls]\ncert = %s/mx.crt\nkey = %s/mx.key\n",
		 tmpdir, tmpdir);
	cfg = load(text);
	cr_assert_not_null(cfg->tls_ctx);
	cr_assert_not(cfg->starttls);
	cr_assert_eq(cfg->tls_min_version, CONFIG_TLS_1_2);
	config_free(cfg);
	remove_tmpdir();
}

Test(config, no_tls_by_default)
{
	struct config *cfg = config_load_default(err, sizeof err);

	cr_assert_not_null(cfg, "%s", err);
	cr_assert_null(cfg->tls_ctx);
	cr_assert_not(cfg->starttls);
	cr_assert_eq(cfg->nlisten_tls, 0);
	config_free(cfg);
}

Test(config, tls_relative_paths_are_relative_to_the_config_file)
{
	struct config *cfg;
	char name[128];

	make_tmpdir();
	write_cert("mx");
	snprintf(name, sizeof name, "%s/ringmx.conf", tmpdir);
	cfg = config_load_string("[tls]\ncert = mx.crt\nkey = mx.key\n", name, err, sizeof err);
	cr_assert_not_null(cfg, "%s", err);
	cr_assert(strncmp(cfg->tls_cert, tmpdir, strlen(tmpdir)) == 0, "%s", cfg->tls_cert);
	cr_assert_not_null(cfg->tls_ctx);
	config_free(cfg);
	remove_tmpdir();
}

Test(config, a_missing_certificate_is_an_error_at_its_line)
{
	char text[1024], want[512];

	make_tmpdir();
	write_cert("mx");
	snprintf(text, sizeof text, "[server]\nhostname = mx.test\n[tls]\nkey = %s/mx.key\n"
		 "cert = %s/none.crt\n", tmpdir, tmpdir);
	snprintf(want, sizeof want,
		 "test.conf:5: [tls] cert: cannot open \"%s/none.crt\": No such file or directory",
		 tmpdir);
	assert_error(text, want);
	remove_tmpdir();
}

Test(config, a_key_that_does_not_match_the_certificate_is_an_error_at_its_line)
{
	char text[1024], want[512];

	make_tmpdir();
	write_cert("mx");
	write_cert("other");
	snprintf(text, sizeof text, "[tls]\ncert = %s/mx.crt\nkey = %s/other.key\n", tmpdir, tmpdir);
	snprintf(want, sizeof want,
		 "test.conf:3: [tls] key: \"%s/other.key\" is not the private key of the "
		 "certificate",
		 tmpdir);
	assert_error(text, want);
	remove_tmpdir();
}

Test(config, files_that_are_not_pem_are_errors_of_their_key)
{
	char text[1024];

	make_tmpdir();
	write_cert("mx");
	write_file("junk", "not PEM at all\n");
	snprintf(text, sizeof text, "[tls]\ncert = %s/junk\nkey = %s/mx.key\n", tmpdir, tmpdir);
	assert_error_has(text, "test.conf:2: [tls] cert: ");
	cr_assert(strstr(err, "no PEM certificate chain in it"), "%s", err);
	snprintf(text, sizeof text, "[tls]\ncert = %s/mx.crt\nkey = %s/junk\n", tmpdir, tmpdir);
	assert_error_has(text, "test.conf:3: [tls] key: ");
	cr_assert(strstr(err, "no PEM private key in it"), "%s", err);
	snprintf(text, sizeof text, "[tls]\ncert = %s/mx.crt\nkey = %s/mx.key\nciphers = NOPE\n",
		 tmpdir, tmpdir);
	assert_error_has(text, "test.conf:4: [tls] ciphers: no usable cipher in \"NOPE\"");
	remove_tmpdir();
}

Test(config, tls_keys_that_need_a_certificate_say_so)
{
	assert_error("[tls]\ncert = /etc/x.crt\n",
		     "test.conf:2: [tls] cert: [tls] cert and key go together, and key is not set");
	assert_error("[tls]\nkey = /etc/x.key\n",
		     "test.conf:2: [tls] key: [tls] cert and key go together, and cert is not set");
	assert_error("[server]\ntls = starttls\n",
		     "test.conf:2: [server] tls: starttls needs [tls] cert and key");
	assert_error("[server]\nlisten_tls = 127.0.0.1:465\n",
		     "test.conf:2: [server] listen_tls: implicit TLS needs [tls] cert and key");
	assert_error("[tls]\nmin_version = 1.3\n",
		     "test.conf:2: [tls] min_version: set, but [tls] cert and key are not");
	/* an empty listen_tls is no implicit TLS at all, not an error */
	config_free(load("[server]\nlisten_tls =\n"));
}

Test(config, listen_tls_may_not_repeat_a_listen_address)
{
	assert_error("[server]\nlisten = 127.0.0.1:25\nlisten_tls = 127.0.0.1:465 127.0.0.1:25\n",
		     "test.conf:3: [server] listen_tls: \"127.0.0.1:25\" is also in listen "
		     "(\"127.0.0.1:25\")");
	assert_error_has("[server]\nlisten = *:25\nlisten_tls = *:465 0.0.0.0:465\n",
			 "test.conf:3: [server] listen_tls: \"0.0.0.0:465\" is the same address as "
			 "\"*:465\"");
}

/* ---- Reload ------------------------------------------------------------------------------- */

Test(config, restart_changes_lists_only_keys_that_cannot_be_reloaded)
{
	struct config *a = load("[server]\nlisten = 127.0.0.1:25\nshards = 2\n");
	struct config *b = load("[server]\nlisten = 127.0.0.1:025\nshards = 2\nmax_errors = 3\n"
				"log_level = debug\n[accept]\ndomains = example.com\n");
	struct config *c = load("[server]\nlisten = 127.0.0.1:26\nshards = 3\nmax_connections = 9\n"
				"pin_shards = no\n[spool]\ndir = /x\nsegment_size = 2M\nfsync = no\n");
	char buf[256];

	cr_assert_eq(config_restart_changes(a, b, buf, sizeof buf), 0);
	cr_assert_str_eq(buf, "");
	/* the control socket's default follows [spool] dir, so it moves too */
	cr_assert_eq(config_restart_changes(a, c, buf, sizeof buf), 8);
	cr_assert_str_eq(buf, "[server] listen, [server] shards, [server] max_connections, "
			      "[spool] dir, [spool] segment_size, [spool] fsync, "
			      "[server] pin_shards, [server] control_socket");
	cr_assert_eq(config_restart_changes(a, c, buf, 10), 8, "a short buffer still counts");
	cr_assert_str_eq(buf, "[server] ");
	config_free(a);
	config_free(b);
	config_free(c);
}

Test(config, listen_tls_needs_a_restart_and_tls_keys_do_not)
{
	struct config *a = load("[server]\nlisten_tls =\n");
	struct config *b = load("[server]\ntls = none\n");
	struct config *c = load("[server]\nlisten = 127.0.0.1:2525\n");
	char buf[256];

	cr_assert_eq(config_restart_changes(a, b, buf, sizeof buf), 0, "%s", buf);
	/* a listen_tls list cannot be made without a certificate: compare by hand */
	c->nlisten_tls = 1;
	cr_assert_eq(config_listen_parse("127.0.0.1:465", &c->listen_tls[0]), 0);
	cr_assert_eq(config_restart_changes(a, c, buf, sizeof buf), 1);
	cr_assert_str_eq(buf, "[server] listen_tls");
	config_free(a);
	config_free(b);
	config_free(c);
}

Test(config, control_socket_and_deliver_enabled_need_a_restart_other_delivery_keys_do_not)
{
	struct config *a = load("");
	struct config *b = load("[server]\ncontrol_socket = /run/ringmx.ctl\n");
	struct config *c = load("[server]\ncontrol_socket = /var/spool/ringmx/ringmx.ctl\n"
				"[deliver]\nenabled = no\nlocal = discard\nmaildir_root = /m\n"
				"relayhost = [192.0.2.1]\nhelo_name = x.test\nconnect_timeout = 1\n"
				"smtp_timeout = 1\nidle_timeout = 1\nloopback_mx = yes\n"
				"max_connections = 1\nmax_messages_per_connection = 1\n"
				"max_recipients = 1\nrate = 1/h\ntls = required\n"
				"[queue]\nretry = 1s\nmax_lifetime = 1h\nwarn_after = 1m\nhold = yes\n"
				"[transport]\na.test = discard\n[domain b.test]\nrate = 2/h\n");
	char buf[256];

	cr_assert_eq(config_restart_changes(a, b, buf, sizeof buf), 1);
	cr_assert_str_eq(buf, "[server] control_socket");
	cr_assert_eq(config_restart_changes(a, c, buf, sizeof buf), 1, "%s", buf);
	cr_assert_str_eq(buf, "[deliver] enabled");
	config_free(a);
	config_free(b);
	config_free(c);
}

/* ---- Submission and [auth] ----------------------------------------------------------------- */

#define SHA512_SECRET                                                                          \
	"$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.P" \
	"q.H91p5hVO1"

/* A config text with a certificate in tmpdir, the submission keys given and [auth] users =
 * tmpdir/users (when users is not NULL), then `more`. */
static const char *
submission_text(const char *server, const char *users, const char *more)
{
	static char text[2048];
	int n = snprintf(text, sizeof text,
			 "[server]\nlisten = 127.0.0.1:25\n%s\n[tls]\ncert = %s/mx.crt\n"
			 "key = %s/mx.key\n",
			 server, tmpdir, tmpdir);
	if (users)
		n += snprintf(text + n, sizeof text - (size_t)n, "[auth]\nusers = %s/%s\n", tmpdir,
			      users);
	snprintf(text + n, sizeof text - (size_t)n, "%s", more);
	return text;
}

Test(config, submission_listeners_are_flagged_and_load_the_users_file)
{
	struct config *cfg;

	make_tmpdir();
	write_cert("mx");
	write_file("users",
		   "# users\nalice:" SHA512_SECRET "\nbob@example.com:" SHA512_SECRET "\n");
	cfg = load(submission_text("submission_listen = 127.0.0.1:587 [::1]:587\n"
				   "submission_listen_tls = 127.0.0.1:465\nlisten_tls = *:4465",
				   "users", ""));
	cr_assert_eq(cfg->nlisten, 3);
	cr_assert_not(cfg->listen[0].submission);
	cr_assert(cfg->listen[1].submission && cfg->listen[2].submission);
	cr_assert_str_eq(cfg->listen[2].text, "[::1]:587");
	cr_assert_eq(cfg->nlisten_tls, 2);
	cr_assert(cfg->listen_tls[0].submission != cfg->listen_tls[1].submission);
	cr_assert_eq(auth_users_count(cfg->auth_users), 2);
	cr_assert(auth_users_verify(cfg->auth_users, "alice", 5, "secret", 6));
	cr_assert_eq(cfg->auth_sender_policy, CONFIG_SENDER_OWN);
	cr_assert_eq(cfg->auth_max_failures, 5);
	cr_assert_eq(cfg->auth_failure_window, 300);
	cr_assert_eq(cfg->auth_check_threads, 2);
	config_free(cfg);

	cfg = load(submission_text("submission_listen = 127.0.0.1:587", "users",
				   "sender_policy = any\nmax_failures = 3\nfailure_window = 1h\n"
				   "check_threads = 4\n"));
	cr_assert_eq(cfg->auth_sender_policy, CONFIG_SENDER_ANY);
	cr_assert_eq(cfg->auth_max_failures, 3);
	cr_assert_eq(cfg->auth_failure_window, 3600);
	cr_assert_eq(cfg->auth_check_threads, 4);
	config_free(cfg);
	remove_tmpdir();
}

Test(config, without_auth_there_is_no_submission_and_no_users)
{
	struct config *cfg = config_load_default(err, sizeof err);

	cr_assert_not_null(cfg, "%s", err);
	cr_assert_null(cfg->auth_users);
	for (unsigned i = 0; i < cfg->nlisten; i++)
		cr_assert_not(cfg->listen[i].submission);
	cr_assert_eq(cfg->auth_sender_policy, CONFIG_SENDER_OWN);
	config_free(cfg);
}

Test(config, submission_needs_tls_and_users_and_users_need_submission)
{
	make_tmpdir();
	write_cert("mx");
	write_file("users", "alice:" SHA512_SECRET "\n");
	assert_error("[server]\nsubmission_listen = 127.0.0.1:587\n",
		     "test.conf:2: [server] submission_listen: submission needs [tls] cert and key "
		     "(AUTH is offered only over TLS)");
	assert_error("[server]\nsubmission_listen_tls = 127.0.0.1:465\n",
		     "test.conf:2: [server] submission_listen_tls: implicit TLS needs [tls] cert "
		     "and key");
	assert_error(submission_text("submission_listen = 127.0.0.1:587", NULL, ""),
		     "test.conf:3: [server] submission_listen: submission needs [auth] users (the "
		     "users file)");
	assert_error_has(submission_text("", "users", ""),
			 "[auth] users: set, but no [server] submission_listen or "
			 "submission_listen_tls address would use it");
	assert_error_has(submission_text("submission_listen = 127.0.0.1:25", "users", ""),
			 "[server] submission_listen: \"127.0.0.1:25\" is the same address as "
			 "\"127.0.0.1:25\" (a listener is submission or not, not both)");
	assert_error_has(submission_text("submission_listen = 127.0.0.1:587", "nope", ""),
			 "[auth] users: cannot open");
	remove_tmpdir();
}

Test(config, a_bad_users_line_is_an_error_at_that_file_and_line)
{
	char want[256];

	make_tmpdir();
	write_cert("mx");
	write_file("users", "alice:" SHA512_SECRET "\n\nbob:$1$saltsalt$9xy1btjgzLYfb7hivXtC//\n");
	snprintf(want, sizeof want, "%s/users:3: a weak hash method", tmpdir);
	assert_error_has(submission_text("submission_listen = 127.0.0.1:587", "users", ""), want);
	write_file("users", "alice:" SHA512_SECRET "\nalice:" SHA512_SECRET "\n");
	snprintf(want, sizeof want, "%s/users:2: user alice is already on line 1", tmpdir);
	assert_error(submission_text("submission_listen = 127.0.0.1:587", "users", ""), want);
	remove_tmpdir();
}

Test(config, submission_listeners_need_a_restart_and_auth_keys_do_not)
{
	struct config *a, *b, *c, *d;
	char buf[256];

	make_tmpdir();
	write_cert("mx");
	write_file("users", "alice:" SHA512_SECRET "\n");
	a = load(submission_text("submission_listen = 127.0.0.1:587", "users", ""));
	b = load(submission_text("submission_listen = 127.0.0.1:587", "users",
				 "sender_policy = any\nmax_failures = 9\n"));
	c = load(submission_text("submission_listen = 127.0.0.1:588\n"
				 "submission_listen_tls = 127.0.0.1:465",
				 "users", ""));
	cr_assert_eq(config_restart_changes(a, b, buf, sizeof buf), 0, "%s", buf);
	cr_assert_eq(config_restart_changes(a, c, buf, sizeof buf), 2);
	cr_assert_str_eq(buf, "[server] submission_listen, [server] submission_listen_tls");
	/* the password check threads are started with the daemon */
	d = load(submission_text("submission_listen = 127.0.0.1:587", "users",
				 "check_threads = 3\n"));
	cr_assert_eq(config_restart_changes(a, d, buf, sizeof buf), 1);
	cr_assert_str_eq(buf, "[auth] check_threads");
	config_free(a);
	config_free(b);
	config_free(c);
	config_free(d);
	remove_tmpdir();
}

/* ---- Documentation ------------------------------------------------------------------------ */

static char *
read_docs(void)
{
	FILE *f = fopen("docs/config.md", "r");
	static char buf[1 << 17];
	size_t n;

	cr_assert_not_null(f, "docs/config.md: %s (run the tests from the repository root)",
			   strerror(errno));
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

Test(config, docs_show_the_embedded_default_config_verbatim)
{
	cr_assert(strstr(read_docs(), config_default_text),
		  "docs/config.md must contain config_default_text verbatim");
}

Test(config, docs_describe_every_key_in_its_section)
{
	static const struct {
		const char *section, *name;
	} keys[] = {
	    {"server", "listen"},
	    {"server", "hostname"},
	    {"server", "shards"},
	    {"server", "max_connections"},
	    {"server", "max_connections_per_ip"},
	    {"server", "max_message_size"},
	    {"server", "max_recipients"},
	    {"server", "max_line_length"},
	    {"server", "max_errors"},
	    {"server", "timeout_greeting"},
	    {"server", "timeout_command"},
	    {"server", "timeout_data"},
	    {"server", "timeout_session"},
	    {"server", "greeting_delay_ms"},
	    {"server", "busy_poll_us"},
	    {"server", "shutdown_timeout"},
	    {"server", "bare_newline"},
	    {"server", "log_level"},
	    {"server", "control_socket"},
	    {"server", "tls"},
	    {"server", "listen_tls"},
	    {"server", "submission_listen"},
	    {"server", "submission_listen_tls"},
	    {"auth", "users"},
	    {"auth", "sender_policy"},
	    {"auth", "max_failures"},
	    {"auth", "failure_window"},
    {"auth", "check_threads"},
	    {"server", "proxy_protocol"},
	    {"server", "proxy_networks"},
	    {"tls", "cert"},
	    {"tls", "key"},
	    {"tls", "ciphers"},
	    {"tls", "min_version"},
	    {"spool", "dir"},
	    {"spool", "fsync"},
	    {"spool", "segment_size"},
	    {"accept", "domains"},
	    {"accept", "relay_networks"},
	    {"accept", "recipients"},
	    {"deliver", "enabled"},
	    {"deliver", "local"},
	    {"deliver", "maildir_root"},
	    {"deliver", "relayhost"},
	    {"deliver", "helo_name"},
	    {"deliver", "connect_timeout"},
	    {"deliver", "smtp_timeout"},
	    {"deliver", "idle_timeout"},
	    {"deliver", "loopback_mx"},
	    {"deliver", "max_connections"},
	    {"deliver", "max_messages_per_connection"},
	    {"deliver", "max_recipients"},
	    {"deliver", "rate"},
	    {"deliver", "tls"},
	    {"queue", "retry"},
	    {"queue", "max_lifetime"},
	    {"queue", "warn_after"},
	    {"queue", "hold"},
	    {"dns", "resolvers"},
	    {"dns", "timeout"},
	    {"dns", "attempts"},
	    {"dns", "prefer"},
	    {"dns", "min_ttl"},
	    {"dns", "max_ttl"},
	    {"dns", "cache_size"},
	};
	static const char *const sections[] = {"[transport]", "[domain NAME]"};
	const char *docs = read_docs();

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		char heading[64], key[80];
		const char *start, *end;

		snprintf(heading, sizeof heading, "\n## `[%s]`\n", keys[i].section);
		start = strstr(docs, heading);
		cr_assert_not_null(start, "docs/config.md lacks the heading %s", heading);
		end = strstr(start + 1, "\n## ");
		snprintf(key, sizeof key, "\n### `%s`\n", keys[i].name);
		start = strstr(start, key);
		cr_assert(start && (!end || start < end), "docs/config.md lacks \"### `%s`\" under %s",
			  keys[i].name, heading);
	}
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
		char heading[64];

		snprintf(heading, sizeof heading, "\n## `%s`\n", sections[i]);
		cr_assert(strstr(docs, heading), "docs/config.md lacks the heading %s", heading);
	}
}

/* [deliver]/[domain] tls: every level, and tls_ca_file checked at load. */
Test(config, tls_policy_levels)
{
	static const struct {
		const char *word;
		enum config_tls_policy want;
	} levels[] = {{"none", CONFIG_TLS_NONE},	 {"optional", CONFIG_TLS_OPTIONAL},
		      {"required", CONFIG_TLS_REQUIRED}, {"verify", CONFIG_TLS_VERIFY},
		      {"dane", CONFIG_TLS_DANE},	 {"DANE", CONFIG_TLS_DANE}};
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		char text[160];
		snprintf(text, sizeof text, "[deliver]\ntls = %s\n[domain x.test]\ntls = %s\n",
			 levels[i].word, levels[i].word);
		struct config *cfg = load(text);
		cr_assert_eq(cfg->policy_default.tls, levels[i].want, "%s", levels[i].word);
		cr_assert_eq(config_policy_find(cfg, "x.test")->tls, levels[i].want);
		config_free(cfg);
	}
}

Test(config, tls_ca_file_must_hold_a_certificate)
{
	char path[] = "/tmp/ringmx-test-ca-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "junk\n", 5), 5);
	close(fd);
	char text[256];
	snprintf(text, sizeof text, "[deliver]\ntls_ca_file = %s\n", path);
	struct config *cfg = config_load_string(text, "test.conf", err, sizeof err);
	cr_assert_null(cfg);
	cr_assert(strstr(err, "test.conf:2: [deliver] tls_ca_file: ") == err, "%s", err);
	unlink(path);
	assert_error("[deliver]\ntls_ca_file = /nonexistent/ca.pem\n",
		     "test.conf:2: [deliver] tls_ca_file: cannot open \"/nonexistent/ca.pem\": "
		     "No such file or directory");
}

Test(config, queue_memory_limit)
{
	struct config *cfg = load("");
	cr_assert_eq(cfg->memory_limit, (uint64_t)512 << 20, "default 512m");
	config_free(cfg);
	cfg = load("[queue]\nmemory_limit = 2g\n");
	cr_assert_eq(cfg->memory_limit, (uint64_t)2 << 30);
	config_free(cfg);
	cfg = load("[queue]\nmemory_limit = 0\n");
	cr_assert_eq(cfg->memory_limit, 0, "0: no limit");
	config_free(cfg);
	assert_error_has("[queue]\nmemory_limit = lots\n", "test.conf:2: [queue] memory_limit: ");
}
