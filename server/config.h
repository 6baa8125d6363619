/*
 * config — ringmx's configuration: an INI file parsed with libinih, validated whole.
 *
 * A config is immutable once loaded. The daemon swaps in a new one on SIGHUP (see main.c);
 * a shard reads the current one at the top of each loop turn. Every key, its default and its
 * unit is documented in docs/config.md, which must stay in step with this file.
 *
 * Usage:
 *   char err[512];
 *   struct config *cfg = config_load_file(path, err, sizeof err);   // or config_load_default()
 *   if (!cfg) fprintf(stderr, "%s\n", err);                          // "FILE:LINE: what"
 *
 * Failure: the loaders return NULL and write one line "FILE:LINE: message" (or "FILE: message"
 * when no line applies) into err. The policy helpers never fail.
 */
#ifndef RINGMX_CONFIG_H
#define RINGMX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <sys/socket.h>

#define CONFIG_LISTEN_MAX 16
#define CONFIG_HOSTNAME_MAX 255
#define CONFIG_BUSY_POLL_MAX_US 10000
#define CONFIG_DNS_RESOLVERS_MAX 8 /* == DNS_RESOLVER_SERVERS_MAX (checked in config.c) */
#define CONFIG_TLS_CIPHERS_MAX 1024

struct config_listen {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char text[64]; /* as written: "127.0.0.1:2525", "[::1]:25" */
	bool submission; /* from submission_listen(_tls): MAIL needs AUTH first (RFC 6409) */
};

struct config_cidr {
	int family;          /* AF_INET or AF_INET6 */
	unsigned prefix;     /* 0..32 or 0..128 */
	uint8_t addr[16];    /* network address, host bits cleared */
};

enum config_bare_newline {
	CONFIG_BARE_NEWLINE_REJECT = 0, /* 550 at end of DATA, nothing stored (default) */
	CONFIG_BARE_NEWLINE_ACCEPT,     /* stored as received; still never ends a line or DATA */
};

enum config_log_level { CONFIG_LOG_DEBUG, CONFIG_LOG_INFO, CONFIG_LOG_WARN, CONFIG_LOG_ERROR };

enum config_dns_prefer { CONFIG_DNS_PREFER_IPV4 = 0, CONFIG_DNS_PREFER_IPV6 };

enum config_local_kind {
	CONFIG_LOCAL_MAILDIR = 0, /* Maildir under maildir_root/<localpart>/ (default) */
	CONFIG_LOCAL_LMTP,	  /* LMTP to local_hop (Dovecot) */
	CONFIG_LOCAL_DISCARD,	  /* accepted and dropped (benchmarks) */
};

/* [deliver]/[domain] tls: how outbound connections use TLS (docs/config.md#tls-2) */
enum config_tls_policy {
	CONFIG_TLS_OPTIONAL = 0, /* STARTTLS when offered, else in the clear (RFC 7435) */
	CONFIG_TLS_REQUIRED,	 /* encrypted or deferred; the certificate is not checked */
	CONFIG_TLS_NONE,	 /* never STARTTLS */
	CONFIG_TLS_VERIFY,	 /* encrypted, and the certificate valid for the MX host name */
	CONFIG_TLS_DANE,	 /* RFC 7672: DANE where secure TLSA records exist, else optional */
};

/* [auth] sender_policy: which MAIL FROM an authenticated user may give */
enum config_sender_policy {
	CONFIG_SENDER_OWN = 0, /* its own addresses only (default; docs/config.md) */
	CONFIG_SENDER_ANY,
};

struct auth_users; /* server/auth.h */

/* [tls] min_version */
enum config_tls_version { CONFIG_TLS_1_2 = 0, CONFIG_TLS_1_3 };

struct ssl_ctx_st; /* OpenSSL's SSL_CTX (server/tls.h) */

/*
 * A next hop, as written in [transport] and [deliver] local/relayhost:
 *   smtp:[10.0.0.5]:25   smtp to that address, no MX lookup (brackets; port default 25)
 *   smtp:[mx.example]:25 smtp to that host's A/AAAA, no MX lookup
 *   smtp:host.example:25 smtp, MX lookup of host.example (port default 25)
 *   lmtp:unix:/path      LMTP over a unix socket
 *   lmtp:host:port       LMTP over TCP (host in brackets or not; no MX lookup)
 *   maildir              local Maildir delivery
 *   discard              accepted and dropped
 */
enum config_hop_kind {
	CONFIG_HOP_MX = 0, /* not a transport: MX routing of the recipient domain */
	CONFIG_HOP_SMTP,
	CONFIG_HOP_LMTP,
	CONFIG_HOP_MAILDIR,
	CONFIG_HOP_DISCARD,
};

struct config_hop {
	enum config_hop_kind kind;
	bool unix_socket; /* lmtp:unix:PATH */
	bool no_mx;	  /* no MX lookup: brackets, an address, or LMTP: A/AAAA only */
	char host[256];	  /* a name or an address literal (without brackets); or the path */
	unsigned port;	  /* 0 for unix sockets */
};

/* Delivery limits for a destination: [deliver] gives the defaults, [domain NAME] overrides. */
struct config_domain_policy {
	/* "gmail.com", or "*.example.com" (its subdomains, not the name itself); lower case;
	 * "" for the defaults from [deliver] */
	char pattern[256];
	unsigned max_connections;	      /* per site */
	unsigned max_messages_per_connection; /* then QUIT and a new connection */
	unsigned max_recipients;	      /* per transaction */
	uint32_t rate_per_hour;		      /* messages; 0 = no limit ("50/s" = 180000) */
	enum config_tls_policy tls;
};

struct config_transport {
	char pattern[256]; /* "example.org" or "*.example.org" (lower case) */
	struct config_hop hop;
};

#define CONFIG_RETRY_MAX 32

struct config_strset; /* private: a case-insensitive hash set of strings */

struct config {
	char source[PATH_MAX]; /* the file it came from, or "(embedded default)" */

	/* [server] */
	struct config_listen listen[CONFIG_LISTEN_MAX];
	unsigned nlisten;
	char hostname[CONFIG_HOSTNAME_MAX + 1];
	unsigned shards;                 /* 0 in the file means: number of CPUs (resolved at load) */
	unsigned max_connections;        /* whole server */
	unsigned max_connections_per_ip; /* 0 = no limit; relay_networks are exempt */
	uint64_t max_message_size;       /* bytes as the client sends them (no Received:) */
	unsigned max_recipients;         /* per transaction */
	unsigned max_line_length;        /* bytes per command line, CRLF included */
	unsigned max_errors;             /* errors per session before 421 and close */
	unsigned timeout_greeting;       /* s: from the greeting to the first command */
	unsigned timeout_command;        /* s: waiting for the next command */
	unsigned timeout_data;           /* s: waiting for more DATA/BDAT bytes */
	unsigned timeout_session;        /* s: a whole connection */
	unsigned greeting_delay_ms;      /* ms: pause before the greeting; early talkers rejected */
	unsigned busy_poll_us;           /* us: poll for completions before sleeping, under load */
	bool pin_shards;                 /* each shard thread on one CPU of the affinity mask */
	unsigned shutdown_timeout;       /* s: how long a graceful stop waits for transactions */
	enum config_bare_newline bare_newline;
	enum config_log_level log_level;
	/* [server] tls: STARTTLS offered on the listen addresses (default: yes when [tls] cert
	 * is set) */
	bool starttls;
	/* [server] listen_tls: implicit TLS (port 465): a TLS handshake before the greeting.
	 * Both lists also hold the submission listeners (submission_listen goes into listen,
	 * submission_listen_tls into listen_tls), flagged .submission; 16 of each at most. */
	struct config_listen listen_tls[CONFIG_LISTEN_MAX];
	unsigned nlisten_tls;
	/* [server] proxy_protocol: every listener (listen and listen_tls) expects a PROXY
	 * protocol header (server/proxy.h) first, and only from proxy_networks */
	bool proxy_protocol;
	struct config_cidr *proxy_networks;
	unsigned nproxy_networks;

	/* [tls]: paths resolved (a relative one is relative to the config file's directory) */
	char tls_cert[PATH_MAX]; /* "" when not set: no TLS at all */
	char tls_key[PATH_MAX];
	char tls_ciphers[CONFIG_TLS_CIPHERS_MAX + 1]; /* TLS 1.2 cipher list; "" = OpenSSL's */
	enum config_tls_version tls_min_version;
	/* Built from the four keys at load (so a bad certificate is a config error), NULL without
	 * cert. The config owns one reference (config_free drops it); connections made from it
	 * hold their own, so a reload may free the old config under live TLS sessions. */
	struct ssl_ctx_st *tls_ctx;

	/* [auth]: who may submit mail on the submission listeners (server/auth.h) */
	char auth_users_path[PATH_MAX];	  /* "" when not set */
	struct auth_users *auth_users;	  /* loaded with the config; NULL when not set */
	enum config_sender_policy auth_sender_policy;
	unsigned auth_max_failures;	  /* failed AUTH per client address ... */
	unsigned auth_failure_window;	  /* s: ... within this, then refused for as long */
	unsigned auth_check_threads;	  /* password check threads (server/auth_pool.h) */

	/* [spool] */
	char spool_dir[PATH_MAX];
	bool fsync;
	uint64_t segment_size; /* bytes: a segment is closed once it grows past this */

	/* [accept] */
	struct config_strset *domains;    /* local domains, lower-cased */
	struct config_cidr *relay_networks;
	unsigned nrelay_networks;
	char recipients_path[PATH_MAX];   /* "" when not set */
	struct config_strset *recipients; /* NULL when not set: every local address is valid */

	/* [server] control_socket: where ringmxctl talks to the daemon; "" in the file means
	 * <[spool] dir>/ringmx.ctl (resolved at load, so never "" here). At most 107 bytes. */
	char control_socket[PATH_MAX];

	/* [deliver] */
	bool deliver_enabled; /* no: accept and keep (spool only), deliver nothing */
	enum config_local_kind local_kind;
	struct config_hop local_hop; /* the hop as written: kind MAILDIR, DISCARD or LMTP */
	char maildir_root[PATH_MAX];
	struct config_hop relayhost;		 /* kind CONFIG_HOP_MX when not set */
	char helo_name[CONFIG_HOSTNAME_MAX + 1]; /* default: [server] hostname */
	unsigned connect_timeout;		 /* s */
	unsigned smtp_timeout;			 /* s: waiting for any reply of a remote server */
	unsigned idle_timeout; /* s: an idle delivery connection is kept this long */
	bool loopback_mx;      /* accept MX hosts on loopback (tests, internal hops) */
	char tls_ca_file[PATH_MAX]; /* PEM trust anchors for tls = verify; "" = the system's */
	struct config_domain_policy policy_default;

	/* [queue] */
	uint32_t retry[CONFIG_RETRY_MAX]; /* s: backoff steps, the last one repeats */
	unsigned nretry;
	uint64_t max_lifetime; /* s: then bounce */
	uint64_t warn_after;   /* s: delay warning DSN; 0 = off */
	bool hold;	       /* start with delivery held (ringmxctl release) */
	uint64_t memory_limit; /* bytes of queued message bodies kept in memory; 0 = no limit */

	/* [transport]: in file order; the first match wins (exact names before patterns) */
	struct config_transport *transports;
	unsigned ntransports;

	/* [domain NAME] sections, in file order */
	struct config_domain_policy *policies;
	unsigned npolicies;

	/* [dns]: the delivery engine hands these to dns_resolver_new, one resolver (and cache)
	 * per shard. */
	char dns_resolvers[512];  /* "addr[:port] ..." as written; "" = /etc/resolv.conf */
	unsigned dns_nresolvers;  /* items in dns_resolvers, 0..CONFIG_DNS_RESOLVERS_MAX */
	unsigned dns_timeout_ms;  /* per attempt */
	unsigned dns_attempts;    /* rounds over all resolvers */
	enum config_dns_prefer dns_prefer;
	unsigned dns_min_ttl;     /* s: cache clamps */
	unsigned dns_max_ttl;     /* s */
	unsigned dns_cache_size;  /* entries per shard */
};

/* The embedded default config, the one `ringmx` runs with no -c (see docs/config.md). */
extern const char config_default_text[];

struct config *config_load_file(const char *path, char *err, size_t err_len);
struct config *config_load_default(char *err, size_t err_len);
/* Parses text as if it were the file `name` (used by the two loaders and by tests). */
struct config *config_load_string(const char *text, const char *name, char *err, size_t err_len);
void config_free(struct config *cfg);

/* The CPUs this process may run on (its affinity mask, so `taskset` counts), else the online
 * ones; at least 1, at most the shard limit. What `shards = 0` means, and the default thread
 * count of ringmx-bench and ringmx-sink. */
unsigned config_cpu_count(void);

/* The CPU for shard i under `pin_shards`: the i-th CPU of the calling thread's affinity mask,
 * counting from the lowest and wrapping when i passes their number; -1 when the mask cannot be
 * read. */
int config_cpu_nth(unsigned i);

/* True when domain (any case, a trailing dot ignored) is one of [accept] domains. */
bool config_domain_is_local(const struct config *cfg, const char *domain, size_t len);
/* True when the address is inside one of relay_networks (IPv4-mapped IPv6 counts as IPv4). */
bool config_addr_may_relay(const struct config *cfg, const struct sockaddr *sa);
/* True when the address is inside one of [server] proxy_networks (the same matching): a peer
 * whose PROXY protocol header is believed. */
bool config_addr_may_proxy(const struct config *cfg, const struct sockaddr *sa);
/* True when there is no recipients file, or when addr (any case) is listed in it. */
bool config_recipient_exists(const struct config *cfg, const char *addr, size_t len);

/* Parses "a.b.c.d/n", "x::y/n" or a bare address (a host route). Returns 0 or -EINVAL. */
int config_cidr_parse(const char *text, struct config_cidr *out);
bool config_cidr_match(const struct config_cidr *c, const struct sockaddr *sa);
/* Parses "addr:port", "[v6]:port" or "*:port". Returns 0 or -EINVAL. */
int config_listen_parse(const char *text, struct config_listen *out);

/* The transport for a recipient domain (lower case, no trailing dot), or NULL. Exact names
 * win over "*.x" patterns; among patterns the longest wins. */
const struct config_transport *config_transport_find(const struct config *cfg, const char *domain);
/* The policy for a domain: the matching [domain] section, else &cfg->policy_default. */
const struct config_domain_policy *config_policy_find(const struct config *cfg, const char *domain);
/* Parses a next hop (see struct config_hop). Returns 0 or -EINVAL. */
int config_hop_parse(const char *text, struct config_hop *out);
/* Writes a hop back as text ("smtp:[10.0.0.5]:25"). */
void config_hop_text(const struct config_hop *h, char *buf, size_t len);
/* The retry delay after `attempts` failed attempts (1 = after the first): retry[attempts-1],
 * the last step repeating. */
uint32_t config_retry_delay(const struct config *cfg, unsigned attempts);

/*
 * For SIGHUP: the keys that differ between the running config and the new one but take effect
 * only on a restart ([server] listen, listen_tls, shards, max_connections, busy_poll_us,
 * pin_shards, control_socket;
 * [spool] dir, segment_size, fsync). Writes their names into buf ("[server] listen,
 * [spool] dir"; "" when none, cut to len) and returns how many there are. Every other key,
 * [deliver], [queue], [transport], [domain NAME] and [tls] (a new certificate, for new
 * connections) included, takes effect on reload.
 */
unsigned config_restart_changes(const struct config *old, const struct config *next, char *buf,
				size_t len);

#endif
