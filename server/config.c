/*
 * config — parse, validate and query ringmx's INI configuration (see config.h and
 * docs/config.md, which must stay in step with the key table below).
 *
 * libinih does the INI syntax. Debian's libinih 55 is built without INI_HANDLER_LINENO, so the
 * text goes through ini_parse_stream() with our own line reader (the same thing
 * ini_parse_string() does inside, plus a line counter): the handler then knows exactly which
 * line it is called for, and the reader also sees what inih never reports (an over-long line,
 * an unknown section with no keys in it). The first error stops the parse, and its message is
 * formatted at once as the one line "FILE:LINE: what".
 */
#include "server/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "dns/dns_cache.h"
#include "dns/dns_resolver.h"
#include "queue/assert.h"
#include "queue/spool_record.h"
#include "queue/tls_client.h"
#include "server/auth.h"
#include "server/auth_pool.h"
#include "server/tls.h"

/* Limits of the file itself. A line is bounded so that inih reads it whole, in one buffer. */
#define CONFIG_LINE_MAX 65536
#define CONFIG_FILE_MAX ((size_t)16 << 20)
#define CONFIG_MSG_MAX 1024 /* one error line, before it is cut to the caller's buffer */

/* Bounds of the values. */
#define CONFIG_SHARDS_MAX 256
#define CONFIG_CONNECTIONS_MAX 1048576 /* Linux's default fs.nr_open: no process holds more fds */
#define CONFIG_MESSAGE_SIZE_MIN 65536  /* RFC 5321 4.5.3.1.7: 64K octets of content, at least */
#define CONFIG_MESSAGE_SIZE_MAX ((uint64_t)1 << 30)
#define CONFIG_LINE_LENGTH_MIN 512 /* RFC 5321 4.5.3.1.4: a command line may be 512 octets */
#define CONFIG_LINE_LENGTH_MAX 65536
#define CONFIG_ERRORS_MAX 1000
#define CONFIG_TIMEOUT_MAX 86400 /* s: one day */
#define CONFIG_AUTH_FAILURES_MAX 10000
#define CONFIG_AUTH_CHECK_THREADS_MAX AUTH_POOL_THREADS_MAX
#define CONFIG_GREETING_DELAY_MAX_MS 60000
#define CONFIG_SEGMENT_SIZE_MIN ((uint64_t)1 << 20)
#define CONFIG_SEGMENT_SIZE_MAX ((uint64_t)1 << 30)
#define CONFIG_DOMAIN_MAX 253  /* RFC 1035 3.1: 255 octets on the wire, 253 as text */
#define CONFIG_LABEL_MAX 63    /* RFC 1035 2.3.4 */
#define CONFIG_ADDRESS_MAX 254 /* RFC 5321 4.5.3.1.3: a path is 256 octets with its <> */
#define CONFIG_RECIPIENTS_MAX 16777216
#define CONFIG_STRSET_STR_MAX 255
#define CONFIG_DNS_TIMEOUT_MAX_MS 60000
#define CONFIG_DNS_ATTEMPTS_MAX 10
#define CONFIG_DNS_TTL_MAX 604800 /* s: one week */
#define CONFIG_DAY 86400u
#define CONFIG_DELIVER_TIMEOUT_MAX 3600 /* s */
#define CONFIG_DELIVER_CONNECTIONS_MAX 10000
#define CONFIG_MESSAGES_PER_CONNECTION_MAX 1000000
#define CONFIG_DELIVER_RECIPIENTS_MAX 100000
#define CONFIG_RATE_MAX_PER_HOUR 3600000000u /* a million a second */
#define CONFIG_RETRY_STEP_MAX (30 * CONFIG_DAY)
#define CONFIG_LIFETIME_MAX ((uint64_t)365 * CONFIG_DAY)
#define CONFIG_TRANSPORTS_MAX 10000 /* lookups scan them: a bound, not a database */
#define CONFIG_POLICIES_MAX 10000
#define CONFIG_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CONFIG_SECTION_MAX (CONFIG_DOMAIN_MAX + 16) /* "domain *.NAME" */

/* A message that fills a spool record must still fit in one, envelope and Received: included. */
_Static_assert(CONFIG_MESSAGE_SIZE_MAX <= SPOOL_RECORD_MAX / 2, "message size vs spool record");
_Static_assert(SPOOL_RCPT_MAX >= 1000, "the max_recipients default is within the spool's bound");
_Static_assert(CONFIG_HOSTNAME_MAX >= CONFIG_DOMAIN_MAX, "hostname buffer");
_Static_assert(CONFIG_ADDRESS_MAX <= CONFIG_STRSET_STR_MAX, "strset string bound");
_Static_assert(CONFIG_DNS_RESOLVERS_MAX == DNS_RESOLVER_SERVERS_MAX, "resolver list bound");
_Static_assert(CONFIG_DELIVER_RECIPIENTS_MAX <= SPOOL_RCPT_MAX, "outbound recipients bound");
_Static_assert(CONFIG_RATE_MAX_PER_HOUR <= UINT32_MAX, "rate_per_hour is 32 bits");
_Static_assert(CONFIG_RETRY_STEP_MAX <= UINT32_MAX, "retry steps are 32 bits");
_Static_assert(CONFIG_DOMAIN_MAX + 3 <= sizeof(((struct config_transport *)0)->pattern),
	       "\"*.\" + a domain fits a pattern");
_Static_assert(CONFIG_UNIX_PATH_MAX < sizeof(((struct config_hop *)0)->host), "unix path");
_Static_assert(CONFIG_UNIX_PATH_MAX < sizeof(((struct config *)0)->control_socket), "ctl path");

#define DEFAULT_LISTEN "127.0.0.1:2525"
#define DEFAULT_RELAY_NETWORKS "127.0.0.0/8 ::1/128"
#define DEFAULT_PROXY_NETWORKS "127.0.0.0/8 ::1/128"
#define DEFAULT_SPOOL_DIR "/var/spool/ringmx"
#define DEFAULT_MAILDIR_ROOT "./var/mail"
#define CONTROL_SOCKET_NAME "ringmx.ctl"
#define EMBEDDED_NAME "(embedded default)"
#define LIST_SEPARATORS " \t,"

const char config_default_text[] =
    "# ringmx: the embedded default configuration, used when ringmx is started without -c FILE.\n"
    "# It is made for trying ringmx out: SMTP on 127.0.0.1:2525, mail for localhost accepted,\n"
    "# relaying for this machine only, the spool under ./var/spool (relative to the working\n"
    "# directory). Every key, its default and its unit are in docs/config.md.\n"
    "\n"
    "[server]\n"
    "listen = 127.0.0.1:2525\n"
    "# hostname is left unset, so it is this machine's name (gethostname()); on a real MX,\n"
    "# set it to the name the MX record points to:\n"
    "# hostname = mx.example.com\n"
    "\n"
    "[spool]\n"
    "dir = ./var/spool\n"
    "# no 250 before the message is on disk (fdatasync); \"no\" is for benchmarks only\n"
    "fsync = yes\n"
    "\n"
    "[accept]\n"
    "domains = localhost\n"
    "relay_networks = 127.0.0.0/8 ::1/128\n"
    "\n"
    "[deliver]\n"
    "# mail for localhost goes to Maildirs under ./var/mail (./var/mail/alice/ for\n"
    "# alice@localhost), mail for other domains to their MX hosts\n"
    "maildir_root = ./var/mail\n";

/* ---- Case-insensitive string set ---------------------------------------------------------- */

/*
 * Open addressing with linear probing over 8-byte slots; the strings live lower-cased and
 * NUL-terminated in one pool, so a million recipients cost one table and one pool, not a
 * million allocations. A slot's offset 0 means empty (the pool's first byte is never used).
 * Lookups hash and compare the query lower-cased on the fly: no allocation, no copy.
 */
struct strset_slot {
	uint32_t hash;
	uint32_t off;
};

struct config_strset {
	struct strset_slot *slots;
	uint32_t mask; /* slot count - 1; the slot count is a power of two */
	uint32_t count;
	char *pool;
	size_t pool_len;
	size_t pool_cap;
};

static inline unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* FNV-1a over the lower-cased bytes, folded to 32 bits so the low bits (the slot) mix well. */
static uint32_t
strset_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= ascii_lower((unsigned char)s[i]);
		h *= 0x100000001b3ull;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static bool
strset_slot_equals(const struct config_strset *set, uint32_t off, const char *s, size_t len)
{
	const char *stored = set->pool + off;

	for (size_t i = 0; i < len; i++) {
		if (stored[i] == '\0' || stored[i] != (char)ascii_lower((unsigned char)s[i]))
			return false;
	}
	return stored[len] == '\0';
}

/* Returns the slot holding s, or the empty slot where it would go. */
static struct strset_slot *
strset_probe(const struct config_strset *set, const char *s, size_t len, uint32_t hash)
{
	for (uint32_t i = hash & set->mask;; i = (i + 1) & set->mask) {
		struct strset_slot *slot = &set->slots[i];

		if (slot->off == 0)
			return slot;
		if (slot->hash == hash && strset_slot_equals(set, slot->off, s, len))
			return slot;
	}
}

static bool
strset_contains(const struct config_strset *set, const char *s, size_t len)
{
	if (!set || set->count == 0 || len > CONFIG_STRSET_STR_MAX)
		return false;
	return strset_probe(set, s, len, strset_hash(s, len))->off != 0;
}

static struct config_strset *
strset_new(void)
{
	return calloc(1, sizeof(struct config_strset));
}

static void
strset_free(struct config_strset *set)
{
	if (!set)
		return;
	free(set->slots);
	free(set->pool);
	free(set);
}

/* Doubles the table (16 slots at first), keeping the load under 70% so misses stay short. */
static int
strset_grow(struct config_strset *set)
{
	size_t nslots = set->slots ? ((size_t)set->mask + 1) * 2 : 16;
	struct strset_slot *old = set->slots;
	size_t nold = old ? (size_t)set->mask + 1 : 0;

	if (nslots > ((size_t)1 << 31))
		return -ENOMEM;
	set->slots = calloc(nslots, sizeof *set->slots);
	if (!set->slots) {
		set->slots = old;
		return -ENOMEM;
	}
	set->mask = (uint32_t)(nslots - 1);
	for (size_t i = 0; i < nold; i++) {
		if (old[i].off == 0)
			continue;
		uint32_t j = old[i].hash & set->mask;

		while (set->slots[j].off != 0)
			j = (j + 1) & set->mask;
		set->slots[j] = old[i];
	}
	free(old);
	return 0;
}

/* Appends s lower-cased and NUL-terminated to the pool. Returns its offset, or 0 on ENOMEM. */
static uint32_t
strset_pool_add(struct config_strset *set, const char *s, size_t len)
{
	if (set->pool_len == 0)
		set->pool_len = 1; /* offset 0 marks an empty slot */
	if (set->pool_len + len + 1 > set->pool_cap) {
		size_t cap = set->pool_cap ? set->pool_cap * 2 : 4096;
		char *pool;

		while (cap < set->pool_len + len + 1)
			cap *= 2;
		if (cap > UINT32_MAX)
			return 0;
		pool = realloc(set->pool, cap);
		if (!pool)
			return 0;
		set->pool = pool;
		set->pool_cap = cap;
	}
	uint32_t off = (uint32_t)set->pool_len;

	for (size_t i = 0; i < len; i++)
		set->pool[off + i] = (char)ascii_lower((unsigned char)s[i]);
	set->pool[off + len] = '\0';
	set->pool_len += len + 1;
	return off;
}

/* Adds s (any case). Returns 1 when added, 0 when already there, -ENOMEM or -EINVAL. */
static int
strset_add(struct config_strset *set, const char *s, size_t len)
{
	if (len == 0 || len > CONFIG_STRSET_STR_MAX || memchr(s, '\0', len))
		return -EINVAL;
	if (!set->slots || ((size_t)set->count + 1) * 10 > ((size_t)set->mask + 1) * 7) {
		if (strset_grow(set) < 0)
			return -ENOMEM;
	}
	uint32_t hash = strset_hash(s, len);
	struct strset_slot *slot = strset_probe(set, s, len, hash);

	if (slot->off != 0)
		return 0;
	slot->off = strset_pool_add(set, s, len);
	if (slot->off == 0)
		return -ENOMEM;
	slot->hash = hash;
	set->count++;
	return 1;
}

/* ---- Load state and error messages -------------------------------------------------------- */

enum key_id {
	K_LISTEN,
	K_HOSTNAME,
	K_SHARDS,
	K_MAX_CONNECTIONS,
	K_MAX_CONNECTIONS_PER_IP,
	K_MAX_MESSAGE_SIZE,
	K_MAX_RECIPIENTS,
	K_MAX_LINE_LENGTH,
	K_MAX_ERRORS,
	K_TIMEOUT_GREETING,
	K_TIMEOUT_COMMAND,
	K_TIMEOUT_DATA,
	K_TIMEOUT_SESSION,
	K_GREETING_DELAY_MS,
	K_BUSY_POLL_US,
	K_PIN_SHARDS,
	K_SHUTDOWN_TIMEOUT,
	K_BARE_NEWLINE,
	K_LOG_LEVEL,
	K_SPOOL_DIR,
	K_FSYNC,
	K_SEGMENT_SIZE,
	K_DOMAINS,
	K_RELAY_NETWORKS,
	K_RECIPIENTS,
	K_DNS_RESOLVERS,
	K_DNS_TIMEOUT,
	K_DNS_ATTEMPTS,
	K_DNS_PREFER,
	K_DNS_MIN_TTL,
	K_DNS_MAX_TTL,
	K_DNS_CACHE_SIZE,
	K_CONTROL_SOCKET,
	K_DELIVER_ENABLED,
	K_DELIVER_LOCAL,
	K_MAILDIR_ROOT,
	K_RELAYHOST,
	K_HELO_NAME,
	K_CONNECT_TIMEOUT,
	K_SMTP_TIMEOUT,
	K_IDLE_TIMEOUT,
	K_LOOPBACK_MX,
	K_DELIVER_MAX_CONNECTIONS, /* the five policy keys, in the order of enum policy_key_id */
	K_DELIVER_MAX_MESSAGES,
	K_DELIVER_MAX_RECIPIENTS,
	K_DELIVER_RATE,
	K_DELIVER_TLS,
	K_DELIVER_TLS_CA_FILE,
	K_RETRY,
	K_MAX_LIFETIME,
	K_WARN_AFTER,
	K_HOLD,
	K_MEMORY_LIMIT,
	K_SERVER_TLS,
	K_LISTEN_TLS,
	K_TLS_CERT,
	K_TLS_KEY,
	K_TLS_CIPHERS,
	K_TLS_MIN_VERSION,
	K_PROXY_PROTOCOL,
	K_PROXY_NETWORKS,
	K_SUBMISSION_LISTEN,
	K_SUBMISSION_LISTEN_TLS,
	K_AUTH_USERS,
	K_AUTH_SENDER_POLICY,
	K_AUTH_MAX_FAILURES,
	K_AUTH_FAILURE_WINDOW,
	K_AUTH_CHECK_THREADS,
	K_COUNT
};

/* The keys of a [domain NAME] section: the same as [deliver]'s policy keys. */
enum policy_key_id { P_MAX_CONNECTIONS, P_MAX_MESSAGES, P_MAX_RECIPIENTS, P_RATE, P_TLS, P_COUNT };

/* Load state of one [domain NAME] section (cfg->policies[i]). */
struct policy_state {
	int line;	       /* of its "[domain NAME]" line */
	int key_line[P_COUNT]; /* 0 while unset: inherited from [deliver] after the parse */
};

struct load {
	struct config *cfg;
	const char *name; /* the config's name in messages */
	const char *pos;  /* reader: the text not read yet */
	size_t left;
	int lineno;	       /* reader: the line inih is working on */
	int key_line[K_COUNT]; /* the line each key was set on; 0 while unset */
	/* [domain NAME]: the section being read (-1: another one), its name for messages, and a
	 * state per cfg->policies entry. [transport]: the line of each cfg->transports entry. */
	int cur_policy;
	char section[CONFIG_SECTION_MAX];
	struct policy_state *policy_state;
	unsigned policy_cap;
	int *transport_line;
	unsigned transport_cap;
	bool failed;
	char msg[CONFIG_MSG_MAX]; /* the first error, whole: "FILE:LINE: what" */
};

struct key;
typedef int (*key_parse_fn)(struct load *ld, const struct key *k, const char *value);

struct suffixes {
	const char *what;  /* what a value is, for "expected ..." */
	const char *chars; /* the suffix letters, each with its multiplier below */
	uint64_t mult[8];
};

struct key {
	const char *section;
	const char *name;
	key_parse_fn parse;
	size_t offset;		    /* of the field in struct config */
	uint64_t min, max;	    /* numeric keys */
	const struct suffixes *sfx; /* numeric keys: allowed unit suffixes */
};

static const struct key keys[K_COUNT];

/* Writes s (len bytes) for a message, double-quoted when asked: bytes outside printable ASCII
 * as \xHH, and at most QUOTE_MAX of them, so an error stays one readable line whatever the
 * input. Returns buf. */
#define QUOTE_MAX 64
#define QUOTE_BUF (QUOTE_MAX * 4 + 8)
static const char *
quote(char *buf, const char *s, size_t len, bool quotes)
{
	size_t o = 0;

	if (quotes)
		buf[o++] = '"';
	for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	if (len > QUOTE_MAX) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	if (quotes)
		buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
#define QN(s, n) quote((char[QUOTE_BUF]){0}, (s), (n), true)
#define EN(s, n) quote((char[QUOTE_BUF]){0}, (s), (n), false)
#define Q(s) QN((s), strlen(s))

static int __attribute__((format(printf, 4, 0)))
load_vfail(struct load *ld, const char *file, int line, const char *fmt, va_list ap)
{
	int n;

	if (ld->failed)
		return -1;
	ld->failed = true;
	if (line > 0)
		n = snprintf(ld->msg, sizeof ld->msg, "%s:%d: ", file, line);
	else
		n = snprintf(ld->msg, sizeof ld->msg, "%s: ", file);
	if (n >= 0 && (size_t)n < sizeof ld->msg)
		vsnprintf(ld->msg + n, sizeof ld->msg - (size_t)n, fmt, ap);
	return -1;
}

/* Records the first error, at `line` of file (0: the error has no line). Returns -1. */
static int __attribute__((format(printf, 4, 5)))
load_fail_in(struct load *ld, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	load_vfail(ld, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

#define load_fail(ld, line, ...) load_fail_in((ld), (ld)->name, (line), __VA_ARGS__)

/* A key of a [domain NAME] section (policy_keys[]): its offset is into that section's
 * struct config_domain_policy, and it is only ever parsed on the line being read. */
static bool
key_is_per_domain(const struct key *k)
{
	return strcmp(k->section, "domain") == 0;
}

/* Records an error about key k's value, at the line it was set on: "[sec] key: what". */
static int __attribute__((format(printf, 3, 4)))
key_fail(struct load *ld, const struct key *k, const char *fmt, ...)
{
	char what[CONFIG_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (key_is_per_domain(k))
		return load_fail(ld, ld->lineno, "[%s] %s: %s", ld->section, k->name, what);
	return load_fail(ld, ld->key_line[k - keys], "[%s] %s: %s", k->section, k->name, what);
}

static void *
key_field(struct load *ld, const struct key *k)
{
	if (key_is_per_domain(k)) {
		ASSERT(ld->cur_policy >= 0 && (unsigned)ld->cur_policy < ld->cfg->npolicies);
		return (char *)&ld->cfg->policies[ld->cur_policy] + k->offset;
	}
	return (char *)ld->cfg + k->offset;
}

/* ---- Values ------------------------------------------------------------------------------- */

static const struct suffixes no_suffixes = {"integer", "", {0}};
static const struct suffixes size_suffixes = {
    "size in bytes (like 26214400, 512K, 25M, 1G)",
    "kKmMgG",
    {1u << 10, 1u << 10, 1u << 20, 1u << 20, 1u << 30, 1u << 30},
};
static const struct suffixes time_suffixes = {
    "duration in seconds (like 300, 300s, 5m, 1h)",
    "smh",
    {1, 60, 3600},
};
/* [queue]: delivery spans days. */
static const struct suffixes day_suffixes = {
    "duration (like 90s, 30m, 4h, 5d)",
    "smhd",
    {1, 60, 3600, CONFIG_DAY},
};

/*
 * Reads digits and at most one suffix letter from sfx, and nothing else (no sign, no space).
 * Returns 0, -EINVAL when that is not what s is, or -ERANGE when it does not fit in 64 bits.
 */
static int
parse_number(const char *s, const struct suffixes *sfx, uint64_t *out)
{
	uint64_t v = 0;
	bool overflow = false;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			overflow = true;
		v = v * 10 + d;
	}
	if (p == s)
		return -EINVAL;
	if (*p != '\0') {
		const char *c = strchr(sfx->chars, *p);

		if (!c || p[1] != '\0')
			return -EINVAL;
		uint64_t m = sfx->mult[c - sfx->chars];

		if (v > UINT64_MAX / m)
			overflow = true;
		v *= m;
	}
	if (overflow)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Writes v for a message, with the largest suffix that divides it for sizes and for
 * durations in days. */
static const char *
number_text(char *buf, size_t len, uint64_t v, const struct suffixes *sfx)
{
	static const char sizes[] = "GMK";

	if (sfx == &day_suffixes && v != 0) {
		for (int i = 3; i >= 0; i--) {
			if (v % sfx->mult[i] == 0) {
				snprintf(buf, len, "%llu%c", (unsigned long long)(v / sfx->mult[i]),
					 sfx->chars[i]);
				return buf;
			}
		}
	}
	if (sfx == &size_suffixes && v != 0) {
		for (int i = 0; i < 3; i++) {
			uint64_t m = (uint64_t)1 << (30 - 10 * i);

			if (v % m == 0) {
				snprintf(buf, len, "%llu%c", (unsigned long long)(v / m), sizes[i]);
				return buf;
			}
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* Parses a numeric key's value and checks it against the key's bounds. */
static int
key_number(struct load *ld, const struct key *k, const char *value, uint64_t *out)
{
	const struct suffixes *sfx = k->sfx ? k->sfx : &no_suffixes;
	char lo[32], hi[32];
	int rc = parse_number(value, sfx, out);

	if (rc == -EINVAL) {
		const char *what = sfx->what;

		if (sfx == &no_suffixes)
			what = k->min > 0 ? "positive integer" : "non-negative integer";
		return key_fail(ld, k, "expected a %s, got %s", what, Q(value));
	}
	if (rc == -ERANGE || *out < k->min || *out > k->max) {
		return key_fail(ld, k, "%s is out of range, expected %s to %s%s", Q(value),
				number_text(lo, sizeof lo, k->min, sfx),
				number_text(hi, sizeof hi, k->max, sfx),
				sfx == &time_suffixes ? " seconds" : "");
	}
	return 0;
}

static int
key_unsigned(struct load *ld, const struct key *k, const char *value)
{
	uint64_t v;

	if (key_number(ld, k, value, &v) < 0)
		return -1;
	*(unsigned *)key_field(ld, k) = (unsigned)v;
	return 0;
}

static int
key_u64(struct load *ld, const struct key *k, const char *value)
{
	uint64_t v;

	if (key_number(ld, k, value, &v) < 0)
		return -1;
	*(uint64_t *)key_field(ld, k) = v;
	return 0;
}

static bool
word_is(const char *value, const char *word)
{
	return strcasecmp(value, word) == 0;
}

static int
key_bool(struct load *ld, const struct key *k, const char *value)
{
	bool *field = key_field(ld, k);

	if (word_is(value, "yes") || word_is(value, "true") || strcmp(value, "1") == 0)
		*field = true;
	else if (word_is(value, "no") || word_is(value, "false") || strcmp(value, "0") == 0)
		*field = false;
	else
		return key_fail(ld, k, "expected yes or no (or true, false, 1, 0), got %s",
				Q(value));
	return 0;
}

static int
key_bare_newline(struct load *ld, const struct key *k, const char *value)
{
	if (word_is(value, "reject"))
		ld->cfg->bare_newline = CONFIG_BARE_NEWLINE_REJECT;
	else if (word_is(value, "accept"))
		ld->cfg->bare_newline = CONFIG_BARE_NEWLINE_ACCEPT;
	else
		return key_fail(ld, k, "expected reject or accept, got %s", Q(value));
	return 0;
}

static int
key_log_level(struct load *ld, const struct key *k, const char *value)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	static const enum config_log_level levels[] = {CONFIG_LOG_DEBUG, CONFIG_LOG_INFO,
						       CONFIG_LOG_WARN, CONFIG_LOG_ERROR};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (word_is(value, names[i])) {
			ld->cfg->log_level = levels[i];
			return 0;
		}
	}
	return key_fail(ld, k, "expected debug, info, warn or error, got %s", Q(value));
}

/* True for a name in letter-digit-hyphen form (RFC 1123 2.1): dot-separated labels of 1 to 63
 * letters, digits and hyphens, at most 253 characters in all. No trailing dot. */
static bool
is_domain_name(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > CONFIG_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (++label > CONFIG_LABEL_MAX)
			return false;
	}
	return label > 0;
}

/* [server] hostname and [deliver] helo_name: into a char[CONFIG_HOSTNAME_MAX + 1]. */
static int
key_hostname(struct load *ld, const struct key *k, const char *value)
{
	if (!is_domain_name(value, strlen(value))) {
		return key_fail(ld, k,
				"expected a host name (letters, digits, '-' and '.', at most %d), "
				"got %s",
				CONFIG_DOMAIN_MAX, Q(value));
	}
	strcpy(key_field(ld, k), value);
	return 0;
}

static int
key_path(struct load *ld, const struct key *k, const char *value)
{
	size_t len = strlen(value);

	if (len == 0)
		return key_fail(ld, k, "expected a path, got \"\"");
	if (len >= PATH_MAX)
		return key_fail(ld, k, "path is longer than %d bytes", PATH_MAX - 1);
	memcpy(key_field(ld, k), value, len + 1);
	return 0;
}

/* The recipients file: empty means none. The path is resolved once the parse is over. */
static int
key_recipients(struct load *ld, const struct key *k, const char *value)
{
	if (value[0] == '\0') {
		ld->cfg->recipients_path[0] = '\0';
		return 0;
	}
	return key_path(ld, k, value);
}

/* Copies a list item into dst as a C string. Returns false when it does not fit. */
static bool
item_copy(char *dst, size_t cap, const char *item, size_t len)
{
	if (len >= cap)
		return false;
	memcpy(dst, item, len);
	dst[len] = '\0';
	return true;
}

/* Steps *p over separators to the next list item. Returns false at the end of the list. */
static bool
list_next(const char **p, const char **item, size_t *len)
{
	*p += strspn(*p, LIST_SEPARATORS);
	if (**p == '\0')
		return false;
	*item = *p;
	*len = strcspn(*p, LIST_SEPARATORS);
	*p += *len;
	return true;
}

/* ---- Listen addresses and networks -------------------------------------------------------- */

static int
parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (parse_number(s, &no_suffixes, &v) < 0 || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int
config_listen_parse(const char *text, struct config_listen *out)
{
	char host[64];
	const char *colon;
	size_t hlen;
	uint16_t port;

	if (strlen(text) >= sizeof out->text)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		colon = close + 1;
		hlen = (size_t)(close - text - 1);
		memcpy(host, text + 1, hlen);
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - text);
		memcpy(host, text, hlen);
	}
	host[hlen] = '\0';
	if (parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	if (text[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		out->addr_len = sizeof *sin6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;

		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		out->addr_len = sizeof *sin;
	}
	strcpy(out->text, text);
	return 0;
}

/* Same socket address: "*:25" and "0.0.0.0:25" are the same, whatever the text says. */
static bool
listen_same(const struct config_listen *a, const struct config_listen *b)
{
	return a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0;
}

/* How many addresses of a list are submission listeners. */
static unsigned
listen_count_submission(const struct config_listen *list, unsigned n)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++)
		k += list[i].submission;
	return k;
}

/* Appends l to a listen list (shared by a plain key and its submission_ key), which must not
 * hold its address already. Returns 0 or -1 with the error recorded. */
static int
listen_add(struct load *ld, const struct key *k, struct config_listen *list, unsigned *count,
	   const struct config_listen *l)
{
	for (unsigned i = 0; i < *count; i++) {
		if (listen_same(&list[i], l))
			return key_fail(ld, k, "%s is the same address as %s%s", Q(l->text),
					Q(list[i].text),
					list[i].submission != l->submission
					    ? " (a listener is submission or not, not both)"
					    : "");
	}
	if (*count == CONFIG_LISTEN_MAX) {
		bool shared = listen_count_submission(list, *count) != (l->submission ? *count : 0);

		return key_fail(ld, k, "more than %d addresses%s", CONFIG_LISTEN_MAX,
				shared ? " (with the submission_ key of the same kind, which "
					 "shares the limit)"
				       : "");
	}
	list[(*count)++] = *l;
	return 0;
}

/* [server] listen, listen_tls (may be empty: no implicit TLS), submission_listen and
 * submission_listen_tls (may be empty). The submission keys add flagged entries to the lists
 * of listen and listen_tls; each key is read once (a duplicate key is an error), so nothing is
 * reset here. Addresses shared by the two lists are caught by config_check. */
static int
key_listen(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	bool tls = k == &keys[K_LISTEN_TLS] || k == &keys[K_SUBMISSION_LISTEN_TLS];
	bool submission = k == &keys[K_SUBMISSION_LISTEN] || k == &keys[K_SUBMISSION_LISTEN_TLS];
	struct config_listen *list = tls ? cfg->listen_tls : cfg->listen;
	unsigned *count = tls ? &cfg->nlisten_tls : &cfg->nlisten;
	const char *p = value, *item;
	size_t len;
	unsigned added = 0;

	while (list_next(&p, &item, &len)) {
		struct config_listen l;
		char text[sizeof l.text];

		if (!item_copy(text, sizeof text, item, len) || config_listen_parse(text, &l) < 0)
			return key_fail(ld, k,
					"%s is not addr:port (like 127.0.0.1:25, [::1]:25 or "
					"*:25)",
					QN(item, len));
		l.submission = submission;
		if (listen_add(ld, k, list, count, &l) < 0)
			return -1;
		added++;
	}
	if (added == 0 && k == &keys[K_LISTEN])
		return key_fail(ld, k, "expected at least one addr:port");
	return 0;
}

static void
cidr_clear_host_bits(struct config_cidr *c)
{
	unsigned nbytes = c->family == AF_INET ? 4 : 16;

	for (unsigned i = 0; i < nbytes; i++) {
		unsigned bit = i * 8;

		if (bit >= c->prefix)
			c->addr[i] = 0;
		else if (c->prefix - bit < 8)
			c->addr[i] &= (uint8_t)(0xff << (8 - (c->prefix - bit)));
	}
}

/*
 * An IPv4-mapped network (::ffff:a.b.c.d/96 and longer) is stored as the IPv4 network it
 * denotes, because clients are matched as IPv4 whichever socket family they came in on.
 */
int
config_cidr_parse(const char *text, struct config_cidr *out)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	uint64_t prefix;

	if (alen == 0 || alen >= sizeof addr)
		return -EINVAL;
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof *out);
	out->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(out->family, addr, out->addr) != 1)
		return -EINVAL;
	prefix = out->family == AF_INET ? 32 : 128;
	if (slash) {
		uint64_t max = prefix;

		if (parse_number(slash + 1, &no_suffixes, &prefix) < 0 || prefix > max)
			return -EINVAL;
	}
	out->prefix = (unsigned)prefix;
	cidr_clear_host_bits(out);
	if (out->family == AF_INET6 && out->prefix >= 96 &&
	    IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)out->addr)) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return 0;
}

/* The client's address as matched: IPv4-mapped IPv6 is IPv4. Returns the family or 0. */
static int
client_addr(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa && sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return AF_INET;
	}
	if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(out, a->s6_addr + 12, 4);
			return AF_INET;
		}
		memcpy(out, a->s6_addr, 16);
		return AF_INET6;
	}
	return 0;
}

static bool
cidr_match_bytes(const struct config_cidr *c, const uint8_t *addr)
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;

	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));

	return (addr[full] & mask) == c->addr[full];
}

bool
config_cidr_match(const struct config_cidr *c, const struct sockaddr *sa)
{
	uint8_t addr[16];

	return client_addr(sa, addr) == c->family && cidr_match_bytes(c, addr);
}

/* A list of networks (relay_networks, proxy_networks) into *list, *count of them. */
static int
cidr_list_set(struct load *ld, const struct key *k, const char *value, struct config_cidr **list,
	      unsigned *count)
{
	const char *p = value, *item;
	size_t len, n = 0;

	while (list_next(&p, &item, &len))
		n++;
	free(*list);
	*count = 0;
	*list = n ? calloc(n, sizeof **list) : NULL;
	if (n && !*list)
		return key_fail(ld, k, "out of memory");
	for (p = value; list_next(&p, &item, &len);) {
		char text[INET6_ADDRSTRLEN + 8];
		struct config_cidr *c = &(*list)[*count];

		if (!item_copy(text, sizeof text, item, len) || config_cidr_parse(text, c) < 0)
			return key_fail(ld, k,
					"%s is not an address or network (like 10.0.0.0/8 or "
					"2001:db8::/32)",
					QN(item, len));
		(*count)++;
	}
	return 0;
}

static int
relay_networks_set(struct load *ld, const struct key *k, const char *value)
{
	return cidr_list_set(ld, k, value, &ld->cfg->relay_networks, &ld->cfg->nrelay_networks);
}

static int
proxy_networks_set(struct load *ld, const struct key *k, const char *value)
{
	return cidr_list_set(ld, k, value, &ld->cfg->proxy_networks, &ld->cfg->nproxy_networks);
}

static int
key_domains(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	const char *p = value, *item;
	size_t len;

	while (list_next(&p, &item, &len)) {
		size_t dlen = len > 1 && item[len - 1] == '.' ? len - 1 : len;

		if (!is_domain_name(item, dlen))
			return key_fail(ld, k, "%s is not a domain name", QN(item, len));
		if (strset_add(cfg->domains, item, dlen) < 0)
			return key_fail(ld, k, "out of memory");
	}
	return 0;
}

/* ---- [dns] ------------------------------------------------------------------------------- */

/* A list of addr[:port] items, each as dns_resolver reads it (so the two never disagree);
 * empty means /etc/resolv.conf. */
static int
key_dns_resolvers(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	const char *p = value, *item;
	size_t len;

	if (strlen(value) >= sizeof cfg->dns_resolvers)
		return key_fail(ld, k, "longer than %zu bytes", sizeof cfg->dns_resolvers - 1);
	cfg->dns_nresolvers = 0;
	while (list_next(&p, &item, &len)) {
		struct sockaddr_storage ss;
		socklen_t sl;
		char text[80];

		if (!item_copy(text, sizeof text, item, len) ||
		    dns_resolver_server_parse(text, &ss, &sl) < 0)
			return key_fail(ld, k,
					"%s is not addr[:port] (like 192.0.2.53, 127.0.0.1:5353, "
					"2001:db8::53 or [::1]:5353)",
					QN(item, len));
		if (cfg->dns_nresolvers == CONFIG_DNS_RESOLVERS_MAX)
			return key_fail(ld, k, "more than %d resolvers", CONFIG_DNS_RESOLVERS_MAX);
		cfg->dns_nresolvers++;
	}
	strcpy(cfg->dns_resolvers, value);
	return 0;
}

static int
key_dns_prefer(struct load *ld, const struct key *k, const char *value)
{
	if (word_is(value, "ipv4"))
		ld->cfg->dns_prefer = CONFIG_DNS_PREFER_IPV4;
	else if (word_is(value, "ipv6"))
		ld->cfg->dns_prefer = CONFIG_DNS_PREFER_IPV6;
	else
		return key_fail(ld, k, "expected ipv4 or ipv6, got %s", Q(value));
	return 0;
}

/* ---- Next hops ---------------------------------------------------------------------------- */

/* A host name as the delivery engine may look it up: a domain name whose last label is not all
 * digits (RFC 3696 2), so that "256.0.0.1" is a bad address, not a name. */
static bool
is_host_name(const char *s, size_t len)
{
	bool digits = true;

	if (!is_domain_name(s, len))
		return false;
	for (size_t i = len; i > 0 && s[i - 1] != '.'; i--)
		digits = digits && s[i - 1] >= '0' && s[i - 1] <= '9';
	return !digits;
}

static void
ascii_lower_string(char *s)
{
	for (; *s; s++)
		*s = (char)ascii_lower((unsigned char)*s);
}

/* Sets *why to what is wrong with a hop. Returns -EINVAL. */
static int
hop_fail(const char **why, const char *what)
{
	*why = what;
	return -EINVAL;
}

/*
 * Reads "host", "host:port", "[host]" or "[host]:port" into h: the host lower-cased (a name) or
 * as written (an address literal), the port (default_port when none; 0: a port is required),
 * and no_mx (brackets, or an address). An IPv6 address needs brackets. Returns 0 or -EINVAL
 * with *why set.
 */
static int
hop_parse_inet(const char *s, unsigned default_port, struct config_hop *h, const char **why)
{
	const char *host = s, *port = NULL;
	bool brackets = s[0] == '[';
	struct in6_addr addr;
	uint16_t p;
	size_t hlen;

	if (brackets) {
		const char *close = strchr(s, ']');

		if (!close)
			return hop_fail(why, "'[' without ']'");
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return hop_fail(why, "expected :PORT or nothing after ']'");
	} else {
		const char *colon = strchr(s, ':');

		if (colon && strchr(colon + 1, ':'))
			return hop_fail(why,
					"an IPv6 address needs brackets, like [2001:db8::25]:25");
		hlen = colon ? (size_t)(colon - s) : strlen(s);
		port = colon ? colon + 1 : NULL;
	}
	if (hlen == 0)
		return hop_fail(why, "no host");
	if (hlen > CONFIG_DOMAIN_MAX)
		return hop_fail(why, "the host is longer than 253 characters");
	memcpy(h->host, host, hlen);
	h->host[hlen] = '\0';
	if (port && parse_port(port, &p) < 0)
		return hop_fail(why, "the port is not 1 to 65535");
	if (!port && default_port == 0)
		return hop_fail(why, "no port (LMTP has no default port: lmtp:HOST:PORT)");
	h->port = port ? p : default_port;
	if (inet_pton(AF_INET, h->host, &addr) == 1 ||
	    (brackets && inet_pton(AF_INET6, h->host, &addr) == 1)) {
		h->no_mx = true; /* an address has no MX records: it is the hop */
		return 0;
	}
	if (!is_host_name(h->host, hlen))
		return hop_fail(why, "the host is not a host name or an IP address");
	ascii_lower_string(h->host);
	h->no_mx = brackets;
	return 0;
}

/* config_hop_parse, saying what is wrong. */
static int
hop_parse(const char *text, struct config_hop *out, const char **why)
{
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (strcasecmp(text, "maildir") == 0) {
		out->kind = CONFIG_HOP_MAILDIR;
	} else if (strcasecmp(text, "discard") == 0) {
		out->kind = CONFIG_HOP_DISCARD;
	} else if (strncasecmp(text, "smtp:", 5) == 0) {
		out->kind = CONFIG_HOP_SMTP;
		rc = hop_parse_inet(text + 5, 25, out, why);
	} else if (strncasecmp(text, "lmtp:unix:", 10) == 0) {
		size_t len = strlen(text + 10);

		out->kind = CONFIG_HOP_LMTP;
		out->unix_socket = true;
		if (len == 0)
			rc = hop_fail(why, "no socket path after lmtp:unix:");
		else if (len > CONFIG_UNIX_PATH_MAX)
			rc = hop_fail(why, "the socket path is longer than 107 bytes");
		else
			memcpy(out->host, text + 10, len + 1);
	} else if (strncasecmp(text, "lmtp:", 5) == 0) {
		out->kind = CONFIG_HOP_LMTP;
		rc = hop_parse_inet(text + 5, 0, out, why);
		out->no_mx = true; /* LMTP goes to the host named, never by MX */
	} else {
		rc = hop_fail(why, "expected smtp:HOST[:PORT], lmtp:HOST:PORT, lmtp:unix:PATH, "
				   "maildir or discard");
	}
	if (rc < 0)
		memset(out, 0, sizeof *out);
	return rc;
}

int
config_hop_parse(const char *text, struct config_hop *out)
{
	const char *why;

	return hop_parse(text, out, &why);
}

void
config_hop_text(const struct config_hop *h, char *buf, size_t len)
{
	bool v6 = strchr(h->host, ':') != NULL;

	switch (h->kind) {
	case CONFIG_HOP_MX:
		snprintf(buf, len, "mx");
		break;
	case CONFIG_HOP_SMTP:
		snprintf(buf, len, h->no_mx || v6 ? "smtp:[%s]:%u" : "smtp:%s:%u", h->host,
			 h->port);
		break;
	case CONFIG_HOP_LMTP:
		if (h->unix_socket)
			snprintf(buf, len, "lmtp:unix:%s", h->host);
		else
			snprintf(buf, len, v6 ? "lmtp:[%s]:%u" : "lmtp:%s:%u", h->host, h->port);
		break;
	case CONFIG_HOP_MAILDIR:
		snprintf(buf, len, "maildir");
		break;
	case CONFIG_HOP_DISCARD:
		snprintf(buf, len, "discard");
		break;
	default:
		ASSERT(!"unknown hop kind");
	}
}

/* Reads a [transport] key or a [domain NAME] name: "example.org" or "*.example.org", one
 * trailing dot ignored, into out lower-cased. Returns 0 or -EINVAL. */
static int
pattern_parse(const char *s, size_t len, char out[static CONFIG_DOMAIN_MAX + 3])
{
	size_t skip = len > 2 && s[0] == '*' && s[1] == '.' ? 2 : 0;

	if (len > skip + 1 && s[len - 1] == '.')
		len--;
	if (!is_domain_name(s + skip, len - skip))
		return -EINVAL;
	memcpy(out, s, len);
	out[len] = '\0';
	ascii_lower_string(out);
	return 0;
}

/* How well domain (dlen bytes, any case) matches pattern: SIZE_MAX for the same name, the
 * length of the suffix for "*.suffix" when domain is a subdomain of it, 0 for no match. */
static size_t
pattern_match(const char *pattern, const char *domain, size_t dlen)
{
	size_t slen;

	if (pattern[0] != '*')
		return strlen(pattern) == dlen && strncasecmp(pattern, domain, dlen) == 0 ? SIZE_MAX
											  : 0;
	slen = strlen(pattern + 1); /* ".suffix": the dot makes it a label boundary */
	if (dlen > slen && strncasecmp(domain + dlen - slen, pattern + 1, slen) == 0)
		return slen;
	return 0;
}

static size_t
domain_query_len(const char *domain)
{
	size_t len = strlen(domain);

	return len > 0 && domain[len - 1] == '.' ? len - 1 : len;
}

const struct config_transport *
config_transport_find(const struct config *cfg, const char *domain)
{
	const struct config_transport *best = NULL;
	size_t dlen = domain_query_len(domain), best_score = 0;

	for (unsigned i = 0; i < cfg->ntransports; i++) {
		size_t score = pattern_match(cfg->transports[i].pattern, domain, dlen);

		if (score > best_score) {
			best = &cfg->transports[i];
			best_score = score;
		}
	}
	return best;
}

const struct config_domain_policy *
config_policy_find(const struct config *cfg, const char *domain)
{
	const struct config_domain_policy *best = &cfg->policy_default;
	size_t dlen = domain_query_len(domain), best_score = 0;

	for (unsigned i = 0; i < cfg->npolicies; i++) {
		size_t score = pattern_match(cfg->policies[i].pattern, domain, dlen);

		if (score > best_score) {
			best = &cfg->policies[i];
			best_score = score;
		}
	}
	return best;
}

uint32_t
config_retry_delay(const struct config *cfg, unsigned attempts)
{
	ASSERT(attempts >= 1);
	ASSERT(cfg->nretry >= 1 && cfg->nretry <= CONFIG_RETRY_MAX);
	return cfg->retry[(attempts < cfg->nretry ? attempts : cfg->nretry) - 1];
}

/* ---- [server] control_socket, [deliver], [queue] ------------------------------------------ */

/* Empty means <[spool] dir>/ringmx.ctl, filled in once the parse is over. */
static int
key_control_socket(struct load *ld, const struct key *k, const char *value)
{
	size_t len = strlen(value);

	if (len > CONFIG_UNIX_PATH_MAX)
		return key_fail(ld, k, "path is longer than %zu bytes (a unix socket's limit)",
				CONFIG_UNIX_PATH_MAX);
	memcpy(ld->cfg->control_socket, value, len + 1);
	return 0;
}

static int
key_local(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	struct config_hop hop;
	const char *why;

	if (!word_is(value, "maildir") && !word_is(value, "discard") &&
	    strncasecmp(value, "lmtp:", 5) != 0)
		return key_fail(
		    ld, k, "expected maildir, discard, lmtp:unix:PATH or lmtp:HOST:PORT, got %s",
		    Q(value));
	if (hop_parse(value, &hop, &why) < 0)
		return key_fail(ld, k, "%s: %s", Q(value), why);
	cfg->local_hop = hop;
	cfg->local_kind = hop.kind == CONFIG_HOP_MAILDIR   ? CONFIG_LOCAL_MAILDIR
			  : hop.kind == CONFIG_HOP_DISCARD ? CONFIG_LOCAL_DISCARD
							   : CONFIG_LOCAL_LMTP;
	return 0;
}

/* HOST[:PORT] or [HOST][:PORT], "smtp:" in front or not. */
static int
key_relayhost(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	const char *text = strncasecmp(value, "smtp:", 5) == 0 ? value + 5 : value;
	const char *why;

	memset(&cfg->relayhost, 0, sizeof cfg->relayhost);
	cfg->relayhost.kind = CONFIG_HOP_SMTP;
	if (hop_parse_inet(text, 25, &cfg->relayhost, &why) < 0)
		return key_fail(ld, k, "%s is not HOST[:PORT] or [HOST][:PORT]: %s", Q(value), why);
	return 0;
}

/* "0" (no limit), or N/s, N/m, N/h: stored as messages per hour. */
static int
key_rate(struct load *ld, const struct key *k, const char *value)
{
	static const char units[] = "smh";
	static const uint64_t per_hour[] = {3600, 60, 1};
	uint32_t *field = key_field(ld, k);
	const char *slash = strchr(value, '/');
	char digits[32];
	uint64_t n;
	int rc = 0;

	if (strcmp(value, "0") == 0) {
		*field = 0;
		return 0;
	}
	if (!slash || slash[1] == '\0' || slash[2] != '\0' || !strchr(units, slash[1]) ||
	    !item_copy(digits, sizeof digits, value, (size_t)(slash - value)) ||
	    (rc = parse_number(digits, &no_suffixes, &n)) == -EINVAL)
		return key_fail(ld, k,
				"expected 0 (no limit) or messages per time, like 50/s, 600/m or "
				"1000/h, got %s",
				Q(value));
	uint64_t mult = per_hour[strchr(units, slash[1]) - units];

	if (rc == -ERANGE || n == 0 || n > CONFIG_RATE_MAX_PER_HOUR / mult)
		return key_fail(ld, k, "%s is out of range, expected 1/h to 1000000/s (or 0)",
				Q(value));
	*field = (uint32_t)(n * mult);
	return 0;
}

static int
key_tls(struct load *ld, const struct key *k, const char *value)
{
	enum config_tls_policy *field = key_field(ld, k);

	if (word_is(value, "optional"))
		*field = CONFIG_TLS_OPTIONAL;
	else if (word_is(value, "required"))
		*field = CONFIG_TLS_REQUIRED;
	else if (word_is(value, "none"))
		*field = CONFIG_TLS_NONE;
	else if (word_is(value, "verify"))
		*field = CONFIG_TLS_VERIFY;
	else if (word_is(value, "dane"))
		*field = CONFIG_TLS_DANE;
	else
		return key_fail(ld, k, "expected none, optional, required, verify or dane, got %s",
				Q(value));
	return 0;
}

static int
key_retry(struct load *ld, const struct key *k, const char *value)
{
	struct config *cfg = ld->cfg;
	const char *p = value, *item;
	char lo[32], hi[32];
	size_t len;

	cfg->nretry = 0;
	while (list_next(&p, &item, &len)) {
		char text[32];
		uint64_t v;
		int rc = -EINVAL;

		if (item_copy(text, sizeof text, item, len))
			rc = parse_number(text, &day_suffixes, &v);
		if (rc == -EINVAL)
			return key_fail(ld, k, "%s is not a %s", QN(item, len), day_suffixes.what);
		if (rc == -ERANGE || v < 1 || v > CONFIG_RETRY_STEP_MAX)
			return key_fail(
			    ld, k, "%s is out of range, expected %s to %s", QN(item, len),
			    number_text(lo, sizeof lo, 1, &day_suffixes),
			    number_text(hi, sizeof hi, CONFIG_RETRY_STEP_MAX, &day_suffixes));
		if (cfg->nretry == CONFIG_RETRY_MAX)
			return key_fail(ld, k, "more than %d steps", CONFIG_RETRY_MAX);
		cfg->retry[cfg->nretry++] = (uint32_t)v;
	}
	if (cfg->nretry == 0)
		return key_fail(ld, k, "expected at least one duration");
	return 0;
}

/* ---- [server] tls and [tls] --------------------------------------------------------------- */

static int
key_server_tls(struct load *ld, const struct key *k, const char *value)
{
	if (word_is(value, "starttls"))
		ld->cfg->starttls = true;
	else if (word_is(value, "none"))
		ld->cfg->starttls = false;
	else
		return key_fail(ld, k, "expected starttls or none, got %s", Q(value));
	return 0;
}

static int
key_sender_policy(struct load *ld, const struct key *k, const char *value)
{
	if (word_is(value, "own"))
		ld->cfg->auth_sender_policy = CONFIG_SENDER_OWN;
	else if (word_is(value, "any"))
		ld->cfg->auth_sender_policy = CONFIG_SENDER_ANY;
	else
		return key_fail(ld, k, "expected own or any, got %s", Q(value));
	return 0;
}

static int
key_tls_ciphers(struct load *ld, const struct key *k, const char *value)
{
	size_t len = strlen(value);

	if (len > CONFIG_TLS_CIPHERS_MAX)
		return key_fail(ld, k, "longer than %d bytes", CONFIG_TLS_CIPHERS_MAX);
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)value[i] < 0x21 || (unsigned char)value[i] >= 0x7f)
			return key_fail(ld, k,
					"expected an OpenSSL cipher list (like "
					"ECDHE+AESGCM:ECDHE+CHACHA20), got %s",
					Q(value));
	}
	memcpy(ld->cfg->tls_ciphers, value, len + 1);
	return 0;
}

static int
key_tls_min_version(struct load *ld, const struct key *k, const char *value)
{
	if (strcmp(value, "1.2") == 0)
		ld->cfg->tls_min_version = CONFIG_TLS_1_2;
	else if (strcmp(value, "1.3") == 0)
		ld->cfg->tls_min_version = CONFIG_TLS_1_3;
	else
		return key_fail(ld, k, "expected 1.2 or 1.3, got %s", Q(value));
	return 0;
}

/* ---- The keys ----------------------------------------------------------------------------- */

#define F(field) offsetof(struct config, field)
static const struct key keys[K_COUNT] = {
    [K_LISTEN] = {"server", "listen", key_listen, 0, 0, 0, NULL},
    [K_HOSTNAME] = {"server", "hostname", key_hostname, F(hostname), 0, 0, NULL},
    [K_SHARDS] = {"server", "shards", key_unsigned, F(shards), 0, CONFIG_SHARDS_MAX, NULL},
    [K_MAX_CONNECTIONS] = {"server", "max_connections", key_unsigned, F(max_connections), 1,
			   CONFIG_CONNECTIONS_MAX, NULL},
    [K_MAX_CONNECTIONS_PER_IP] = {"server", "max_connections_per_ip", key_unsigned,
				  F(max_connections_per_ip), 0, CONFIG_CONNECTIONS_MAX, NULL},
    [K_MAX_MESSAGE_SIZE] = {"server", "max_message_size", key_u64, F(max_message_size),
			    CONFIG_MESSAGE_SIZE_MIN, CONFIG_MESSAGE_SIZE_MAX, &size_suffixes},
    [K_MAX_RECIPIENTS] = {"server", "max_recipients", key_unsigned, F(max_recipients), 1,
			  SPOOL_RCPT_MAX, NULL},
    [K_MAX_LINE_LENGTH] = {"server", "max_line_length", key_unsigned, F(max_line_length),
			   CONFIG_LINE_LENGTH_MIN, CONFIG_LINE_LENGTH_MAX, NULL},
    [K_MAX_ERRORS] = {"server", "max_errors", key_unsigned, F(max_errors), 1, CONFIG_ERRORS_MAX,
		      NULL},
    [K_TIMEOUT_GREETING] = {"server", "timeout_greeting", key_unsigned, F(timeout_greeting), 1,
			    CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_TIMEOUT_COMMAND] = {"server", "timeout_command", key_unsigned, F(timeout_command), 1,
			   CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_TIMEOUT_DATA] = {"server", "timeout_data", key_unsigned, F(timeout_data), 1,
			CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_TIMEOUT_SESSION] = {"server", "timeout_session", key_unsigned, F(timeout_session), 1,
			   CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_GREETING_DELAY_MS] = {"server", "greeting_delay_ms", key_unsigned, F(greeting_delay_ms), 0,
			     CONFIG_GREETING_DELAY_MAX_MS, NULL},
    [K_BUSY_POLL_US] = {"server", "busy_poll_us", key_unsigned, F(busy_poll_us), 0,
			CONFIG_BUSY_POLL_MAX_US, NULL},
    [K_PIN_SHARDS] = {"server", "pin_shards", key_bool, F(pin_shards), 0, 0, NULL},
    [K_SHUTDOWN_TIMEOUT] = {"server", "shutdown_timeout", key_unsigned, F(shutdown_timeout), 0,
			    CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_BARE_NEWLINE] = {"server", "bare_newline", key_bare_newline, 0, 0, 0, NULL},
    [K_LOG_LEVEL] = {"server", "log_level", key_log_level, 0, 0, 0, NULL},
    [K_SPOOL_DIR] = {"spool", "dir", key_path, F(spool_dir), 0, 0, NULL},
    [K_FSYNC] = {"spool", "fsync", key_bool, F(fsync), 0, 0, NULL},
    [K_SEGMENT_SIZE] = {"spool", "segment_size", key_u64, F(segment_size), CONFIG_SEGMENT_SIZE_MIN,
			CONFIG_SEGMENT_SIZE_MAX, &size_suffixes},
    [K_DOMAINS] = {"accept", "domains", key_domains, 0, 0, 0, NULL},
    [K_RELAY_NETWORKS] = {"accept", "relay_networks", relay_networks_set, 0, 0, 0, NULL},
    [K_RECIPIENTS] = {"accept", "recipients", key_recipients, F(recipients_path), 0, 0, NULL},
    [K_DNS_RESOLVERS] = {"dns", "resolvers", key_dns_resolvers, 0, 0, 0, NULL},
    [K_DNS_TIMEOUT] = {"dns", "timeout", key_unsigned, F(dns_timeout_ms), 1,
		       CONFIG_DNS_TIMEOUT_MAX_MS, NULL},
    [K_DNS_ATTEMPTS] = {"dns", "attempts", key_unsigned, F(dns_attempts), 1,
			CONFIG_DNS_ATTEMPTS_MAX, NULL},
    [K_DNS_PREFER] = {"dns", "prefer", key_dns_prefer, 0, 0, 0, NULL},
    [K_DNS_MIN_TTL] = {"dns", "min_ttl", key_unsigned, F(dns_min_ttl), 0, CONFIG_DNS_TTL_MAX,
		       &time_suffixes},
    [K_DNS_MAX_TTL] = {"dns", "max_ttl", key_unsigned, F(dns_max_ttl), 0, CONFIG_DNS_TTL_MAX,
		       &time_suffixes},
    [K_DNS_CACHE_SIZE] = {"dns", "cache_size", key_unsigned, F(dns_cache_size), 1,
			  DNS_CACHE_ENTRIES_LIMIT, NULL},
    [K_CONTROL_SOCKET] = {"server", "control_socket", key_control_socket, 0, 0, 0, NULL},
    [K_DELIVER_ENABLED] = {"deliver", "enabled", key_bool, F(deliver_enabled), 0, 0, NULL},
    [K_DELIVER_LOCAL] = {"deliver", "local", key_local, 0, 0, 0, NULL},
    [K_MAILDIR_ROOT] = {"deliver", "maildir_root", key_path, F(maildir_root), 0, 0, NULL},
    [K_RELAYHOST] = {"deliver", "relayhost", key_relayhost, 0, 0, 0, NULL},
    [K_HELO_NAME] = {"deliver", "helo_name", key_hostname, F(helo_name), 0, 0, NULL},
    [K_CONNECT_TIMEOUT] = {"deliver", "connect_timeout", key_unsigned, F(connect_timeout), 1,
			   CONFIG_DELIVER_TIMEOUT_MAX, &time_suffixes},
    [K_SMTP_TIMEOUT] = {"deliver", "smtp_timeout", key_unsigned, F(smtp_timeout), 1,
			CONFIG_DELIVER_TIMEOUT_MAX, &time_suffixes},
    [K_IDLE_TIMEOUT] = {"deliver", "idle_timeout", key_unsigned, F(idle_timeout), 0,
			CONFIG_DELIVER_TIMEOUT_MAX, &time_suffixes},
    [K_LOOPBACK_MX] = {"deliver", "loopback_mx", key_bool, F(loopback_mx), 0, 0, NULL},
    [K_DELIVER_MAX_CONNECTIONS] = {"deliver", "max_connections", key_unsigned,
				   F(policy_default.max_connections), 1,
				   CONFIG_DELIVER_CONNECTIONS_MAX, NULL},
    [K_DELIVER_MAX_MESSAGES] = {"deliver", "max_messages_per_connection", key_unsigned,
				F(policy_default.max_messages_per_connection), 1,
				CONFIG_MESSAGES_PER_CONNECTION_MAX, NULL},
    [K_DELIVER_MAX_RECIPIENTS] = {"deliver", "max_recipients", key_unsigned,
				  F(policy_default.max_recipients), 1,
				  CONFIG_DELIVER_RECIPIENTS_MAX, NULL},
    [K_DELIVER_RATE] = {"deliver", "rate", key_rate, F(policy_default.rate_per_hour), 0, 0, NULL},
    [K_DELIVER_TLS] = {"deliver", "tls", key_tls, F(policy_default.tls), 0, 0, NULL},
    [K_DELIVER_TLS_CA_FILE] = {"deliver", "tls_ca_file", key_path, F(tls_ca_file), 0, 0, NULL},
    [K_RETRY] = {"queue", "retry", key_retry, 0, 0, 0, NULL},
    [K_MAX_LIFETIME] = {"queue", "max_lifetime", key_u64, F(max_lifetime), 1, CONFIG_LIFETIME_MAX,
			&day_suffixes},
    [K_WARN_AFTER] = {"queue", "warn_after", key_u64, F(warn_after), 0, CONFIG_LIFETIME_MAX,
		      &day_suffixes},
    [K_HOLD] = {"queue", "hold", key_bool, F(hold), 0, 0, NULL},
    [K_MEMORY_LIMIT] = {"queue", "memory_limit", key_u64, F(memory_limit), 0,
			(uint64_t)1 << 40, &size_suffixes},
    [K_SERVER_TLS] = {"server", "tls", key_server_tls, 0, 0, 0, NULL},
    [K_LISTEN_TLS] = {"server", "listen_tls", key_listen, 0, 0, 0, NULL},
    [K_TLS_CERT] = {"tls", "cert", key_path, F(tls_cert), 0, 0, NULL},
    [K_TLS_KEY] = {"tls", "key", key_path, F(tls_key), 0, 0, NULL},
    [K_TLS_CIPHERS] = {"tls", "ciphers", key_tls_ciphers, 0, 0, 0, NULL},
    [K_TLS_MIN_VERSION] = {"tls", "min_version", key_tls_min_version, 0, 0, 0, NULL},
    [K_PROXY_PROTOCOL] = {"server", "proxy_protocol", key_bool, F(proxy_protocol), 0, 0, NULL},
    [K_PROXY_NETWORKS] = {"server", "proxy_networks", proxy_networks_set, 0, 0, 0, NULL},
    [K_SUBMISSION_LISTEN] = {"server", "submission_listen", key_listen, 0, 0, 0, NULL},
    [K_SUBMISSION_LISTEN_TLS] = {"server", "submission_listen_tls", key_listen, 0, 0, 0, NULL},
    [K_AUTH_USERS] = {"auth", "users", key_path, F(auth_users_path), 0, 0, NULL},
    [K_AUTH_SENDER_POLICY] = {"auth", "sender_policy", key_sender_policy, 0, 0, 0, NULL},
    [K_AUTH_MAX_FAILURES] = {"auth", "max_failures", key_unsigned, F(auth_max_failures), 1,
			     CONFIG_AUTH_FAILURES_MAX, NULL},
    [K_AUTH_FAILURE_WINDOW] = {"auth", "failure_window", key_unsigned, F(auth_failure_window),
			       1, CONFIG_TIMEOUT_MAX, &time_suffixes},
    [K_AUTH_CHECK_THREADS] = {"auth", "check_threads", key_unsigned, F(auth_check_threads), 1,
			      CONFIG_AUTH_CHECK_THREADS_MAX, NULL},
};
#undef F

/* [domain NAME]: offsets into that section's struct config_domain_policy (key_field). */
#define P(field) offsetof(struct config_domain_policy, field)
static const struct key policy_keys[P_COUNT] = {
    [P_MAX_CONNECTIONS] = {"domain", "max_connections", key_unsigned, P(max_connections), 1,
			   CONFIG_DELIVER_CONNECTIONS_MAX, NULL},
    [P_MAX_MESSAGES] = {"domain", "max_messages_per_connection", key_unsigned,
			P(max_messages_per_connection), 1, CONFIG_MESSAGES_PER_CONNECTION_MAX,
			NULL},
    [P_MAX_RECIPIENTS] = {"domain", "max_recipients", key_unsigned, P(max_recipients), 1,
			  CONFIG_DELIVER_RECIPIENTS_MAX, NULL},
    [P_RATE] = {"domain", "rate", key_rate, P(rate_per_hour), 0, 0, NULL},
    [P_TLS] = {"domain", "tls", key_tls, P(tls), 0, 0, NULL},
};
#undef P
_Static_assert(K_DELIVER_TLS - K_DELIVER_MAX_CONNECTIONS == P_TLS - P_MAX_CONNECTIONS,
	       "[deliver]'s policy keys and [domain NAME]'s keys are the same five");

/* [transport] and [domain NAME] are read by hand (config_on_key): their keys or names are
 * domains, not entries of keys[]. */
static const char *const sections[] = {"server", "spool",     "accept", "dns",
				       "deliver", "queue", "transport", "tls", "auth"};

static bool
section_is_known(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
		if (strlen(sections[i]) == len && memcmp(sections[i], name, len) == 0)
			return true;
	}
	return false;
}

static const struct key *
key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < K_COUNT; i++) {
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	}
	return NULL;
}

/* ---- Driving inih ------------------------------------------------------------------------- */

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;
static char ini_comment_chars[] = ";#";

/*
 * Debian's libinih exposes its options as globals; only this module uses inih, so it sets them
 * once for the process. A value is one line (no indented continuation lines, so indenting keys
 * under a section is harmless); "; x" and "# x" after a value are comments; a line may be up to
 * CONFIG_LINE_MAX bytes, in a heap buffer; parsing stops at the first error.
 */
static void
config_ini_setup(void)
{
	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = ini_comment_chars;
	ini_start_comment_prefixes = ini_comment_chars;
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = CONFIG_LINE_MAX + 3; /* + CR, LF and NUL */
	ini_max_line = CONFIG_LINE_MAX + 3;
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;
}

/* Grows an array of *cap elements of size elem to hold n + 1. Returns 0 or -ENOMEM. */
static int
array_reserve(void **array, unsigned *cap, unsigned n, size_t elem)
{
	unsigned ncap = *cap ? *cap * 2 : 8;
	void *p;

	if (n < *cap)
		return 0;
	p = realloc(*array, (size_t)ncap * elem);
	if (!p)
		return -ENOMEM;
	*array = p;
	*cap = ncap;
	return 0;
}

/* "[domain" + blanks + NAME + "]": NAME a domain or "*.domain". Opens a new policy that the
 * keys below fill in; one section per name. */
static void
domain_section_open(struct load *ld, const char *name, size_t len)
{
	struct config *cfg = ld->cfg;
	struct config_domain_policy *pol;
	char pattern[CONFIG_DOMAIN_MAX + 3];
	unsigned n = cfg->npolicies;

	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	while (len > 0 && (name[0] == ' ' || name[0] == '\t'))
		name++, len--;
	if (len == 0) {
		load_fail(ld, ld->lineno, "[domain] needs a name, like [domain example.com]");
		return;
	}
	if (pattern_parse(name, len, pattern) < 0) {
		load_fail(ld, ld->lineno, "[domain %s]: expected a domain name or *.domain",
			  EN(name, len));
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(cfg->policies[i].pattern, pattern) == 0) {
			load_fail(ld, ld->lineno,
				  "duplicate section [domain %s] (first on line %d)", pattern,
				  ld->policy_state[i].line);
			return;
		}
	}
	if (n == CONFIG_POLICIES_MAX) {
		load_fail(ld, ld->lineno, "more than %d [domain NAME] sections",
			  CONFIG_POLICIES_MAX);
		return;
	}
	unsigned cap = ld->policy_cap;

	if (array_reserve((void **)&cfg->policies, &cap, n, sizeof *cfg->policies) < 0 ||
	    array_reserve((void **)&ld->policy_state, &ld->policy_cap, n,
			  sizeof *ld->policy_state) < 0) {
		load_fail(ld, ld->lineno, "out of memory");
		return;
	}
	pol = &cfg->policies[n];
	memset(pol, 0, sizeof *pol);
	strcpy(pol->pattern, pattern);
	memset(&ld->policy_state[n], 0, sizeof ld->policy_state[n]);
	ld->policy_state[n].line = ld->lineno;
	cfg->npolicies = n + 1;
	ld->cur_policy = (int)n;
	snprintf(ld->section, sizeof ld->section, "domain %s", pattern);
}

/* True for inih's name of a [domain NAME] section. inih cuts section names at 49 bytes, so the
 * name itself is read from the line (domain_section_open), never from here. */
static bool
section_is_domain(const char *name, size_t len)
{
	return len >= 6 && memcmp(name, "domain", 6) == 0 &&
	       (len == 6 || name[6] == ' ' || name[6] == '\t');
}

/* A "[name]" line naming no section we know is an error even when no key follows it, and inih
 * never calls the handler for a bare section line, so the reader checks them. It also opens
 * [domain NAME] sections. */
static void
check_section_line(struct load *ld, const char *line)
{
	const char *p = line, *close;
	size_t len;

	if (ld->lineno == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	p += strspn(p, " \t\r\v\f");
	if (*p != '[')
		return;
	close = strchr(p, ']');
	if (!close)
		return; /* inih reports the syntax error */
	len = (size_t)(close - p - 1);
	ld->cur_policy = -1;
	if (section_is_domain(p + 1, len))
		domain_section_open(ld, p + 7, len - 6);
	else if (!section_is_known(p + 1, len))
		load_fail(ld, ld->lineno, "unknown section [%s]", EN(p + 1, len));
}

/* inih's line reader (fgets-like): hands out one line, counting them. Returns NULL at the end
 * of the text or after an error, which ends the parse. */
static char *
config_read_line(char *buf, int size, void *stream)
{
	struct load *ld = stream;
	const char *nl;
	size_t n;

	if (ld->failed || ld->left == 0)
		return NULL;
	nl = memchr(ld->pos, '\n', ld->left);
	n = nl ? (size_t)(nl - ld->pos) + 1 : ld->left;
	ld->lineno++;
	if (n + 1 > (size_t)size) {
		load_fail(ld, ld->lineno, "line is longer than %d bytes", CONFIG_LINE_MAX);
		return NULL;
	}
	memcpy(buf, ld->pos, n);
	buf[n] = '\0';
	ld->pos += n;
	ld->left -= n;
	check_section_line(ld, buf);
	return buf;
}

/* A [transport] line: "DOMAIN = HOP" or "*.DOMAIN = HOP". */
static int
transport_add(struct load *ld, const char *name, const char *value)
{
	struct config *cfg = ld->cfg;
	char pattern[CONFIG_DOMAIN_MAX + 3];
	struct config_hop hop;
	unsigned n = cfg->ntransports;
	const char *why;

	if (pattern_parse(name, strlen(name), pattern) < 0)
		return load_fail(ld, ld->lineno,
				 "[transport] %s: expected a domain name or *.domain as the key",
				 EN(name, strlen(name)));
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(cfg->transports[i].pattern, pattern) == 0)
			return load_fail(ld, ld->lineno,
					 "duplicate key %s in [transport] (first set on line %d)",
					 Q(name), ld->transport_line[i]);
	}
	if (hop_parse(value, &hop, &why) < 0)
		return load_fail(ld, ld->lineno, "[transport] %s: %s: %s", pattern, Q(value), why);
	if (n == CONFIG_TRANSPORTS_MAX)
		return load_fail(ld, ld->lineno, "[transport]: more than %d entries",
				 CONFIG_TRANSPORTS_MAX);
	unsigned cap = ld->transport_cap;

	if (array_reserve((void **)&cfg->transports, &cap, n, sizeof *cfg->transports) < 0 ||
	    array_reserve((void **)&ld->transport_line, &ld->transport_cap, n,
			  sizeof *ld->transport_line) < 0)
		return load_fail(ld, ld->lineno, "out of memory");
	strcpy(cfg->transports[n].pattern, pattern);
	cfg->transports[n].hop = hop;
	ld->transport_line[n] = ld->lineno;
	cfg->ntransports = n + 1;
	return 0;
}

/* A key of the [domain NAME] section being read. */
static int
domain_key(struct load *ld, const char *name, const char *value)
{
	struct policy_state *st;

	ASSERT(ld->cur_policy >= 0 && (unsigned)ld->cur_policy < ld->cfg->npolicies);
	st = &ld->policy_state[ld->cur_policy];
	for (size_t i = 0; i < P_COUNT; i++) {
		if (strcmp(policy_keys[i].name, name) != 0)
			continue;
		if (st->key_line[i] != 0)
			return load_fail(ld, ld->lineno,
					 "duplicate key %s in [%s] (first set on line %d)", Q(name),
					 ld->section, st->key_line[i]);
		st->key_line[i] = ld->lineno;
		return policy_keys[i].parse(ld, &policy_keys[i], value);
	}
	return load_fail(ld, ld->lineno, "unknown key %s in [%s]", Q(name), ld->section);
}

/* inih's handler, called once per "key = value" line. Returns 1 to go on, 0 on an error. */
static int
config_on_key(void *user, const char *section, const char *name, const char *value)
{
	struct load *ld = user;
	const struct key *k;

	if (section[0] == '\0') {
		load_fail(ld, ld->lineno, "key %s is outside any section", Q(name));
		return 0;
	}
	if (strcmp(section, "transport") == 0)
		return transport_add(ld, name, value) < 0 ? 0 : 1;
	if (section_is_domain(section, strlen(section)))
		return domain_key(ld, name, value) < 0 ? 0 : 1;
	k = key_find(section, name);
	if (!k) {
		load_fail(ld, ld->lineno, "unknown key %s in [%s]", Q(name), section);
		return 0;
	}
	if (ld->key_line[k - keys] != 0) {
		load_fail(ld, ld->lineno, "duplicate key %s in [%s] (first set on line %d)",
			  Q(name), section, ld->key_line[k - keys]);
		return 0;
	}
	ld->key_line[k - keys] = ld->lineno;
	return k->parse(ld, k, value) < 0 ? 0 : 1;
}

/* ---- After the parse: defaults that need work, cross-key checks, the recipients file ------- */

static void
config_set_defaults(struct config *cfg)
{
	cfg->shards = 0;
	cfg->max_connections = 10000;
	cfg->max_connections_per_ip = 50;
	cfg->memory_limit = (uint64_t)512 << 20;
	cfg->max_message_size = 26214400;
	cfg->max_recipients = 1000;
	cfg->max_line_length = 2048;
	cfg->max_errors = 10;
	cfg->timeout_greeting = 300;
	cfg->timeout_command = 300;
	cfg->timeout_data = 300;
	cfg->timeout_session = 3600;
	cfg->greeting_delay_ms = 0;
	cfg->busy_poll_us = 0;
	cfg->pin_shards = true;
	cfg->shutdown_timeout = 10;
	cfg->bare_newline = CONFIG_BARE_NEWLINE_REJECT;
	cfg->log_level = CONFIG_LOG_INFO;
	cfg->proxy_protocol = false;
	cfg->auth_sender_policy = CONFIG_SENDER_OWN;
	cfg->auth_max_failures = 5;
	cfg->auth_failure_window = 300;
	cfg->auth_check_threads = 2;
	strcpy(cfg->spool_dir, DEFAULT_SPOOL_DIR);
	cfg->fsync = true;
	cfg->segment_size = (uint64_t)64 << 20;
	cfg->dns_resolvers[0] = '\0';
	cfg->dns_nresolvers = 0;
	cfg->dns_timeout_ms = 2000;
	cfg->dns_attempts = 2;
	cfg->dns_prefer = CONFIG_DNS_PREFER_IPV4;
	cfg->dns_min_ttl = 0;
	cfg->dns_max_ttl = 86400;
	cfg->dns_cache_size = 10000;
	cfg->control_socket[0] = '\0';
	cfg->deliver_enabled = true;
	cfg->local_kind = CONFIG_LOCAL_MAILDIR;
	cfg->local_hop.kind = CONFIG_HOP_MAILDIR;
	strcpy(cfg->maildir_root, DEFAULT_MAILDIR_ROOT);
	cfg->relayhost.kind = CONFIG_HOP_MX;
	cfg->connect_timeout = 30;
	cfg->smtp_timeout = 300;
	cfg->idle_timeout = 5;
	cfg->loopback_mx = false;
	cfg->policy_default.max_connections = 20;
	cfg->policy_default.max_messages_per_connection = 100;
	cfg->policy_default.max_recipients = 100;
	cfg->policy_default.rate_per_hour = 0;
	cfg->policy_default.tls = CONFIG_TLS_OPTIONAL;

	static const uint32_t retry[] = {60, 300, 900, 1800, 3600, 7200, 14400};

	_Static_assert(sizeof retry / sizeof retry[0] <= CONFIG_RETRY_MAX, "default retry");
	memcpy(cfg->retry, retry, sizeof retry);
	cfg->nretry = sizeof retry / sizeof retry[0];
	cfg->max_lifetime = 5 * CONFIG_DAY;
	cfg->warn_after = 0;
	cfg->hold = false;
}

unsigned
config_cpu_count(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > CONFIG_SHARDS_MAX ? CONFIG_SHARDS_MAX : (unsigned)n;
}

int
config_cpu_nth(unsigned i)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) == 0)
		return -1;
	unsigned k = i % (unsigned)CPU_COUNT(&set);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set) && k-- == 0)
			return cpu;
	return -1;
}

static int
default_hostname(struct load *ld)
{
	char name[CONFIG_HOSTNAME_MAX + 2] = "";

	if (gethostname(name, sizeof name - 1) < 0)
		return load_fail(ld, 0,
				 "[server] hostname is not set and gethostname() failed: "
				 "%s",
				 strerror(errno));
	if (!is_domain_name(name, strlen(name)))
		return load_fail(ld, 0,
				 "[server] hostname is not set and this machine's name %s "
				 "is not a valid host name; set it",
				 Q(name));
	strcpy(ld->cfg->hostname, name);
	return 0;
}

/* "" means <[spool] dir>/ringmx.ctl, which must fit in a sockaddr_un as well. */
static int
control_socket_resolve(struct load *ld)
{
	struct config *cfg = ld->cfg;
	size_t dlen = strlen(cfg->spool_dir);
	const char *sep = dlen > 0 && cfg->spool_dir[dlen - 1] == '/' ? "" : "/";
	int line = ld->key_line[K_CONTROL_SOCKET] > ld->key_line[K_SPOOL_DIR]
		       ? ld->key_line[K_CONTROL_SOCKET]
		       : ld->key_line[K_SPOOL_DIR];

	if (cfg->control_socket[0] != '\0')
		return 0;
	if (dlen + strlen(sep) + strlen(CONTROL_SOCKET_NAME) > CONFIG_UNIX_PATH_MAX)
		return load_fail(
		    ld, line,
		    "[server] control_socket: the default, [spool] dir + \"/%s\", is "
		    "longer than %zu bytes (a unix socket's limit); set control_socket "
		    "to a shorter path",
		    CONTROL_SOCKET_NAME, CONFIG_UNIX_PATH_MAX);
	memcpy(cfg->control_socket, cfg->spool_dir, dlen);
	strcpy(cfg->control_socket + dlen, sep);
	strcat(cfg->control_socket, CONTROL_SOCKET_NAME);
	return 0;
}

/* A [domain NAME] key not set in its section takes [deliver]'s value, wherever [deliver] is in
 * the file: so this runs once the whole file is read. */
static void
policies_inherit(struct load *ld)
{
	struct config *cfg = ld->cfg;
	const struct config_domain_policy *d = &cfg->policy_default;

	for (unsigned i = 0; i < cfg->npolicies; i++) {
		struct config_domain_policy *p = &cfg->policies[i];
		const int *set = ld->policy_state[i].key_line;

		if (!set[P_MAX_CONNECTIONS])
			p->max_connections = d->max_connections;
		if (!set[P_MAX_MESSAGES])
			p->max_messages_per_connection = d->max_messages_per_connection;
		if (!set[P_MAX_RECIPIENTS])
			p->max_recipients = d->max_recipients;
		if (!set[P_RATE])
			p->rate_per_hour = d->rate_per_hour;
		if (!set[P_TLS])
			p->tls = d->tls;
	}
}

/* Fills in what the file left out and needs more than a constant. */
static int
config_fill_defaults(struct load *ld)
{
	struct config *cfg = ld->cfg;

	if (!ld->key_line[K_LISTEN]) {
		struct config_listen l;

		if (config_listen_parse(DEFAULT_LISTEN, &l) == 0 &&
		    listen_add(ld, &keys[K_LISTEN], cfg->listen, &cfg->nlisten, &l) < 0)
			return -1;
	}
	if (!ld->key_line[K_RELAY_NETWORKS] &&
	    relay_networks_set(ld, &keys[K_RELAY_NETWORKS], DEFAULT_RELAY_NETWORKS) < 0)
		return -1;
	if (!ld->key_line[K_PROXY_NETWORKS] &&
	    proxy_networks_set(ld, &keys[K_PROXY_NETWORKS], DEFAULT_PROXY_NETWORKS) < 0)
		return -1;
	if (!ld->key_line[K_HOSTNAME] && default_hostname(ld) < 0)
		return -1;
	if (!ld->key_line[K_HELO_NAME])
		strcpy(cfg->helo_name, cfg->hostname);
	if (cfg->shards == 0)
		cfg->shards = config_cpu_count();
	if (control_socket_resolve(ld) < 0)
		return -1;
	policies_inherit(ld);
	return 0;
}

/* An error about two keys that do not go together, at the line of the later one set. */
static int __attribute__((format(printf, 4, 5)))
pair_fail(struct load *ld, enum key_id a, enum key_id b, const char *fmt, ...)
{
	int la = ld->key_line[a], lb = ld->key_line[b];
	char what[CONFIG_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return load_fail(ld, la > lb ? la : lb, "%s", what);
}

static int
config_check(struct load *ld)
{
	static const enum key_id steps[] = {K_TIMEOUT_GREETING, K_TIMEOUT_COMMAND, K_TIMEOUT_DATA};
	const struct config *cfg = ld->cfg;

	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		const unsigned *t = (const unsigned *)((const char *)cfg + keys[steps[i]].offset);

		/* the session timer would always fire first: the step timeout is a mistake */
		if (*t > cfg->timeout_session)
			return pair_fail(ld, steps[i], K_TIMEOUT_SESSION,
					 "[server] %s (%u s) is longer than timeout_session (%u s)",
					 keys[steps[i]].name, *t, cfg->timeout_session);
	}
	if ((uint64_t)cfg->greeting_delay_ms >= (uint64_t)cfg->timeout_session * 1000)
		return pair_fail(ld, K_GREETING_DELAY_MS, K_TIMEOUT_SESSION,
				 "[server] greeting_delay_ms (%u ms) is not shorter than "
				 "timeout_session (%u s)",
				 cfg->greeting_delay_ms, cfg->timeout_session);
	if (cfg->recipients_path[0] != '\0' && cfg->domains->count == 0)
		return pair_fail(ld, K_RECIPIENTS, K_DOMAINS,
				 "[accept] recipients is set but [accept] domains is empty, so no "
				 "address in it could ever be local");
	if (cfg->dns_min_ttl > cfg->dns_max_ttl)
		return pair_fail(ld, K_DNS_MIN_TTL, K_DNS_MAX_TTL,
				 "[dns] min_ttl (%u s) is longer than max_ttl (%u s)",
				 cfg->dns_min_ttl, cfg->dns_max_ttl);
	if (cfg->nlisten == 0)
		return load_fail(ld, ld->key_line[K_LISTEN], "[server] listen: no address");
	for (unsigned i = 0; i < cfg->nlisten_tls; i++) {
		for (unsigned j = 0; j < cfg->nlisten; j++) {
			if (listen_same(&cfg->listen_tls[i], &cfg->listen[j]))
				return pair_fail(ld, K_LISTEN, K_LISTEN_TLS,
						 "[server] listen_tls: %s is also in listen (%s)",
						 Q(cfg->listen_tls[i].text), Q(cfg->listen[j].text));
		}
	}
	if (cfg->proxy_protocol && cfg->nproxy_networks == 0)
		return pair_fail(ld, K_PROXY_PROTOCOL, K_PROXY_NETWORKS,
				 "[server] proxy_protocol = yes with an empty proxy_networks would "
				 "refuse every connection");
	/* the warning would come after the bounce, or with it */
	if (cfg->warn_after != 0 && cfg->warn_after >= cfg->max_lifetime)
		return pair_fail(ld, K_WARN_AFTER, K_MAX_LIFETIME,
				 "[queue] warn_after (%llu s) is not shorter than max_lifetime "
				 "(%llu s)",
				 (unsigned long long)cfg->warn_after,
				 (unsigned long long)cfg->max_lifetime);
	return 0;
}

/* A relative recipients path is relative to the config file's directory, so a config and its
 * files can be moved together; the embedded default and a bare name use the working dir. */
static int
path_resolve(struct load *ld, enum key_id id, char field[PATH_MAX])
{
	const char *slash = strrchr(ld->name, '/');
	char path[PATH_MAX];
	int n;

	if (field[0] == '/' || !slash)
		return 0;
	n = snprintf(path, sizeof path, "%.*s/%s", (int)(slash - ld->name), ld->name, field);
	if (n < 0 || (size_t)n >= sizeof path)
		return key_fail(ld, &keys[id], "path is longer than %d bytes", PATH_MAX - 1);
	memcpy(field, path, (size_t)n + 1);
	return 0;
}

static int
recipients_resolve(struct load *ld)
{
	return path_resolve(ld, K_RECIPIENTS, ld->cfg->recipients_path);
}

/*
 * One line of the recipients file: an address, or nothing; '#' starts a comment. Adds the
 * address to set. Returns 0, or -1 with the error recorded against path:lineno.
 */
static int
recipients_line(struct load *ld, struct config_strset *set, const char *path, int lineno,
		char *line, size_t len)
{
	const char *at, *rest;
	size_t alen;

	if (memchr(line, '\0', len))
		return load_fail_in(ld, path, lineno, "NUL byte in the line");
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	line += strspn(line, " \t");
	if (line[0] == '\0' || line[0] == '#')
		return 0;
	alen = strcspn(line, " \t");
	rest = line + alen + strspn(line + alen, " \t");
	if (*rest != '\0' && *rest != '#')
		return load_fail_in(ld, path, lineno, "expected one address per line, got %s",
				    Q(line));
	at = memrchr(line, '@', alen);
	if (alen > CONFIG_ADDRESS_MAX || !at || at == line ||
	    !is_domain_name(at + 1, alen - (size_t)(at + 1 - line)))
		return load_fail_in(ld, path, lineno,
				    "expected an address like user@example.com, got %s",
				    QN(line, alen));
	for (size_t i = 0; i < alen; i++) {
		if ((unsigned char)line[i] < 0x21 || line[i] == 0x7f)
			return load_fail_in(ld, path, lineno, "control character in %s",
					    QN(line, alen));
	}
	if (set->count >= CONFIG_RECIPIENTS_MAX)
		return load_fail_in(ld, path, lineno, "more than %d addresses",
				    CONFIG_RECIPIENTS_MAX);
	if (strset_add(set, line, alen) < 0)
		return load_fail_in(ld, path, lineno, "out of memory");
	return 0;
}

static int
recipients_load(struct load *ld)
{
	struct config *cfg = ld->cfg;
	const char *path = cfg->recipients_path;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, rc = 0;
	FILE *f;

	if (path[0] == '\0' || recipients_resolve(ld) < 0)
		return ld->failed ? -1 : 0;
	f = fopen(path, "re");
	if (!f)
		return key_fail(ld, &keys[K_RECIPIENTS], "cannot open %s: %s", Q(path),
				strerror(errno));
	cfg->recipients = strset_new();
	if (!cfg->recipients)
		rc = key_fail(ld, &keys[K_RECIPIENTS], "out of memory");
	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0)
		rc = recipients_line(ld, cfg->recipients, path, ++lineno, line, (size_t)n);
	if (rc == 0 && ferror(f))
		rc = key_fail(ld, &keys[K_RECIPIENTS], "cannot read %s: %s", Q(path),
			      strerror(errno));
	free(line);
	fclose(f);
	return rc;
}

/*
 * [tls] and what uses it. The SSL_CTX is built here, once, so that a missing or unreadable
 * certificate, a key that is not the certificate's, or an unknown cipher list is an error of
 * the config file at its line, before anything starts (or before a SIGHUP swaps configs).
 */
/* [deliver] tls_ca_file: resolved against the config's folder and read once here, so a file
 * with no certificate in it is an error of the config, not of the first delivery. */
static int
tls_ca_load(struct load *ld)
{
	char *path = ld->cfg->tls_ca_file;
	if (path[0] == '\0')
		return 0;
	if (path_resolve(ld, K_DELIVER_TLS_CA_FILE, path) < 0)
		return -1;
	char why[CONFIG_MSG_MAX];
	if (tls_client_ca_check(path, why, sizeof why) < 0)
		return key_fail(ld, &keys[K_DELIVER_TLS_CA_FILE], "%s", why);
	return 0;
}

static int
tls_load(struct load *ld)
{
	struct config *cfg = ld->cfg;
	bool have_cert = cfg->tls_cert[0] != '\0', have_key = cfg->tls_key[0] != '\0';
	char why[CONFIG_MSG_MAX];

	if (have_cert != have_key)
		return key_fail(ld, &keys[have_cert ? K_TLS_CERT : K_TLS_KEY],
				"[tls] cert and key go together, and %s is not set",
				have_cert ? "key" : "cert");
	if (!ld->key_line[K_SERVER_TLS])
		cfg->starttls = have_cert;
	else if (cfg->starttls && !have_cert)
		return key_fail(ld, &keys[K_SERVER_TLS], "starttls needs [tls] cert and key");
	if (listen_count_submission(cfg->listen, cfg->nlisten) > 0 && !have_cert)
		return key_fail(ld, &keys[K_SUBMISSION_LISTEN],
				"submission needs [tls] cert and key (AUTH is offered only over "
				"TLS)");
	if (listen_count_submission(cfg->listen_tls, cfg->nlisten_tls) > 0 && !have_cert)
		return key_fail(ld, &keys[K_SUBMISSION_LISTEN_TLS],
				"implicit TLS needs [tls] cert and key");
	if (cfg->nlisten_tls > 0 && !have_cert)
		return key_fail(ld, &keys[K_LISTEN_TLS], "implicit TLS needs [tls] cert and key");
	if (!have_cert) {
		if (ld->key_line[K_TLS_CIPHERS] || ld->key_line[K_TLS_MIN_VERSION])
			return key_fail(ld,
					&keys[ld->key_line[K_TLS_CIPHERS] ? K_TLS_CIPHERS
									  : K_TLS_MIN_VERSION],
					"set, but [tls] cert and key are not");
		return 0;
	}
	if (path_resolve(ld, K_TLS_CERT, cfg->tls_cert) < 0 ||
	    path_resolve(ld, K_TLS_KEY, cfg->tls_key) < 0)
		return -1;
	struct tls_ctx_params p = {
	    .cert = cfg->tls_cert,
	    .key = cfg->tls_key,
	    .ciphers = cfg->tls_ciphers,
	    .min_version = cfg->tls_min_version == CONFIG_TLS_1_3 ? TLS_VERSION_1_3
								  : TLS_VERSION_1_2,
	};
	switch (tls_ctx_new(&p, &cfg->tls_ctx, why, sizeof why)) {
	case 0:
		return 0;
	case TLS_CTX_ERR_CERT:
		return key_fail(ld, &keys[K_TLS_CERT], "%s", why);
	case TLS_CTX_ERR_KEY:
		return key_fail(ld, &keys[K_TLS_KEY], "%s", why);
	case TLS_CTX_ERR_CIPHERS:
		return key_fail(ld, &keys[K_TLS_CIPHERS], "%s", why);
	default:
		return key_fail(ld, &keys[K_TLS_CERT], "%s", why);
	}
}

/*
 * [auth] and the submission listeners, which go together: a submission listener without users
 * could take no mail, users without a submission listener would never be asked for. The users
 * file is read here, so a bad line is an error of the config (at that file's line), and a
 * SIGHUP reads it again.
 */
static int
auth_load(struct load *ld)
{
	struct config *cfg = ld->cfg;
	unsigned sub = listen_count_submission(cfg->listen, cfg->nlisten);
	unsigned sub_tls = listen_count_submission(cfg->listen_tls, cfg->nlisten_tls);
	char why[CONFIG_MSG_MAX];
	int line;

	if (cfg->auth_users_path[0] == '\0') {
		if (sub + sub_tls > 0)
			return key_fail(ld, &keys[sub ? K_SUBMISSION_LISTEN : K_SUBMISSION_LISTEN_TLS],
					"submission needs [auth] users (the users file)");
		return 0;
	}
	if (sub + sub_tls == 0)
		return key_fail(ld, &keys[K_AUTH_USERS],
				"set, but no [server] submission_listen or submission_listen_tls "
				"address would use it");
	if (path_resolve(ld, K_AUTH_USERS, cfg->auth_users_path) < 0)
		return -1;
	cfg->auth_users = auth_users_load(cfg->auth_users_path, &line, why, sizeof why);
	if (cfg->auth_users)
		return 0;
	if (line == 0)
		return key_fail(ld, &keys[K_AUTH_USERS], "%s", why);
	return load_fail_in(ld, cfg->auth_users_path, line, "%s", why);
}

/* ---- Loaders ------------------------------------------------------------------------------ */

static void
err_write(char *err, size_t err_len, const char *msg)
{
	if (err && err_len > 0)
		snprintf(err, err_len, "%s", msg);
}

struct config *
config_load_string(const char *text, const char *name, char *err, size_t err_len)
{
	struct load ld = {0};
	int rc;

	ld.name = name ? name : "(string)";
	ld.cur_policy = -1;
	ld.cfg = calloc(1, sizeof *ld.cfg);
	if (ld.cfg)
		ld.cfg->domains = strset_new();
	if (!ld.cfg || !ld.cfg->domains) {
		config_free(ld.cfg);
		err_write(err, err_len, "out of memory");
		return NULL;
	}
	snprintf(ld.cfg->source, sizeof ld.cfg->source, "%s", ld.name);
	config_set_defaults(ld.cfg);
	pthread_once(&ini_once, config_ini_setup);
	ld.pos = text;
	ld.left = strlen(text);
	rc = ini_parse_stream(config_read_line, &ld, config_on_key, &ld);
	if (rc > 0)
		load_fail(&ld, rc, "syntax error (expected [section], key = value, or a comment)");
	else if (rc < 0)
		load_fail(&ld, 0, "out of memory");
	if (!ld.failed && config_fill_defaults(&ld) == 0 && config_check(&ld) == 0 &&
	    recipients_load(&ld) == 0 && tls_load(&ld) == 0 && tls_ca_load(&ld) == 0)
		auth_load(&ld);
	free(ld.policy_state);
	free(ld.transport_line);
	if (ld.failed) {
		err_write(err, err_len, ld.msg);
		config_free(ld.cfg);
		return NULL;
	}
	return ld.cfg;
}

struct config *
config_load_default(char *err, size_t err_len)
{
	return config_load_string(config_default_text, EMBEDDED_NAME, err, err_len);
}

/* Reads the whole file into a NUL-terminated buffer. Returns 0, -errno, or -EFBIG. */
static int
read_file(const char *path, char **text, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf;
	ssize_t r = 1;
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf)
		rc = -ENOMEM;
	while (rc == 0 && r != 0) {
		if (n + 1 >= cap) {
			char *nbuf = realloc(buf, cap *= 2);

			if (!nbuf) {
				rc = -ENOMEM;
				break;
			}
			buf = nbuf;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno != EINTR)
			rc = -errno;
		else if (r > 0 && (n += (size_t)r) > CONFIG_FILE_MAX)
			rc = -EFBIG;
	}
	close(fd);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

struct config *
config_load_file(const char *path, char *err, size_t err_len)
{
	struct config *cfg;
	const char *nul;
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len);

	if (rc < 0) {
		char msg[CONFIG_MSG_MAX];

		if (rc == -EFBIG)
			snprintf(msg, sizeof msg, "%s: larger than %zu MiB", path,
				 CONFIG_FILE_MAX >> 20);
		else
			snprintf(msg, sizeof msg, "%s: cannot read: %s", path, strerror(-rc));
		err_write(err, err_len, msg);
		return NULL;
	}
	nul = memchr(text, '\0', len);
	if (nul) {
		char msg[CONFIG_MSG_MAX];
		int line = 1;

		for (const char *p = text; p < nul; p++)
			line += *p == '\n';
		snprintf(msg, sizeof msg, "%s:%d: NUL byte in the file", path, line);
		err_write(err, err_len, msg);
		free(text);
		return NULL;
	}
	cfg = config_load_string(text, path, err, err_len);
	free(text);
	return cfg;
}

void
config_free(struct config *cfg)
{
	if (!cfg)
		return;
	tls_ctx_free(cfg->tls_ctx);
	auth_users_free(cfg->auth_users);
	strset_free(cfg->domains);
	strset_free(cfg->recipients);
	free(cfg->relay_networks);
	free(cfg->proxy_networks);
	free(cfg->transports);
	free(cfg->policies);
	free(cfg);
}

/* ---- Policy ------------------------------------------------------------------------------- */

bool
config_domain_is_local(const struct config *cfg, const char *domain, size_t len)
{
	if (len > 0 && domain[len - 1] == '.')
		len--;
	return strset_contains(cfg->domains, domain, len);
}

static bool
cidr_list_match(const struct config_cidr *list, unsigned n, const struct sockaddr *sa)
{
	uint8_t addr[16];
	int family = client_addr(sa, addr);

	for (unsigned i = 0; family != 0 && i < n; i++) {
		const struct config_cidr *c = &list[i];

		if (c->family == family && cidr_match_bytes(c, addr))
			return true;
	}
	return false;
}

bool
config_addr_may_relay(const struct config *cfg, const struct sockaddr *sa)
{
	return cidr_list_match(cfg->relay_networks, cfg->nrelay_networks, sa);
}

bool
config_addr_may_proxy(const struct config *cfg, const struct sockaddr *sa)
{
	return cidr_list_match(cfg->proxy_networks, cfg->nproxy_networks, sa);
}

bool
config_recipient_exists(const struct config *cfg, const char *addr, size_t len)
{
	if (!cfg->recipients)
		return true;
	return strset_contains(cfg->recipients, addr, len);
}

/* The same addresses in the same order, among the entries that are (or are not) submission. */
static bool
listen_lists_equal(const struct config_listen *a, unsigned na, const struct config_listen *b,
		   unsigned nb, bool submission)
{
	unsigned i = 0, j = 0;

	for (;;) {
		while (i < na && a[i].submission != submission)
			i++;
		while (j < nb && b[j].submission != submission)
			j++;
		if (i == na || j == nb)
			return i == na && j == nb;
		if (!listen_same(&a[i++], &b[j++]))
			return false;
	}
}

unsigned
config_restart_changes(const struct config *old, const struct config *next, char *buf, size_t len)
{
	/* max_connections sizes each shard's connection slot pool, allocated at start */
	const bool changed[] = {
	    !listen_lists_equal(old->listen, old->nlisten, next->listen, next->nlisten, false),
	    !listen_lists_equal(old->listen_tls, old->nlisten_tls, next->listen_tls,
				next->nlisten_tls, false),
	    !listen_lists_equal(old->listen, old->nlisten, next->listen, next->nlisten, true),
	    !listen_lists_equal(old->listen_tls, old->nlisten_tls, next->listen_tls,
				next->nlisten_tls, true),
	    old->shards != next->shards,
	    old->max_connections != next->max_connections,
	    strcmp(old->spool_dir, next->spool_dir) != 0,
	    old->segment_size != next->segment_size,
	    old->fsync != next->fsync,
	    old->busy_poll_us != next->busy_poll_us,
	    old->pin_shards != next->pin_shards,
	    strcmp(old->control_socket, next->control_socket) != 0,
	    /* the delivery (resolver, mesh, recovery of what to deliver) is set up at start */
	    old->deliver_enabled != next->deliver_enabled,
	    /* the TLS client context (trust anchors) is made with the delivery */
	    strcmp(old->tls_ca_file, next->tls_ca_file) != 0,
	    /* the password check threads are started with the daemon */
	    old->auth_check_threads != next->auth_check_threads,
	};
	static const enum key_id ids[] = {K_LISTEN,	   K_LISTEN_TLS,
					  K_SUBMISSION_LISTEN, K_SUBMISSION_LISTEN_TLS,
					  K_SHARDS,	   K_MAX_CONNECTIONS,
					  K_SPOOL_DIR,	   K_SEGMENT_SIZE,
					  K_FSYNC,	   K_BUSY_POLL_US,
					  K_PIN_SHARDS,
					  K_CONTROL_SOCKET,    K_DELIVER_ENABLED,
					  K_DELIVER_TLS_CA_FILE,
					  K_AUTH_CHECK_THREADS};
	unsigned n = 0;
	size_t used = 0;

	_Static_assert(sizeof changed / sizeof changed[0] == sizeof ids / sizeof ids[0], "ids");
	if (buf && len > 0)
		buf[0] = '\0';
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		if (!changed[i])
			continue;
		if (buf && used < len) {
			int w = snprintf(buf + used, len - used, "%s[%s] %s", n ? ", " : "",
					 keys[ids[i]].section, keys[ids[i]].name);

			used += w > 0 ? (size_t)w : 0;
		}
		n++;
	}
	return n;
}
