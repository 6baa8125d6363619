/*
 * auth — the users file, crypt(3) checks and the failure throttle; see auth.h.
 */
#include "server/auth.h"

#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/assert.h"
#include "server/sasl.h"

_Static_assert(CRYPT_OUTPUT_SIZE <= AUTH_HASH_MAX, "a crypt(3) hash fits");
_Static_assert((AUTH_THROTTLE_BUCKETS & (AUTH_THROTTLE_BUCKETS - 1)) == 0, "a power of two");

struct auth_user {
	const char *name; /* NUL-terminated; the hash follows it in the same allocation */
	size_t name_len;
	const char *hash;
	int line;
};

struct auth_users {
	struct auth_user *v; /* sorted by name (bytes), for bsearch */
	unsigned n, cap;
};

/* ---- the users file ------------------------------------------------------------------- */

static int
user_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);
	if (r != 0)
		return r;
	return alen < blen ? -1 : alen > blen;
}

static int
user_sort_cmp(const void *a, const void *b)
{
	const struct auth_user *x = a, *y = b;
	return user_cmp(x->name, x->name_len, y->name, y->name_len);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Why a crypt(3) hash is refused, or NULL when it is usable. */
static const char *
hash_problem(const char *hash, size_t len)
{
	if (len == 0)
		return "no hash after the ':' (make one with ringmxctl passwd)";
	if (len >= AUTH_HASH_MAX)
		return "the hash is too long";
	for (size_t i = 0; i < len; i++) {
		if (hash[i] == ':')
			return "a ':' in the hash: the line must be user:hash only (not an "
			       "/etc/shadow line)";
		if ((unsigned char)hash[i] <= 0x20 || hash[i] == 0x7f)
			return "a blank or control byte in the hash";
	}
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
		return hash[0] == '$' ? NULL : "not a crypt(3) hash";
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_TOO_CHEAP:
		return "a weak hash method (DES, MD5 or too few rounds): make a new hash with "
		       "ringmxctl passwd ($y$ yescrypt or $6$ SHA-512)";
	case CRYPT_SALT_METHOD_DISABLED:
		return "this libcrypt does not support that hash method";
	default:
		return "not a crypt(3) hash (like $y$... or $6$...; make one with ringmxctl "
		       "passwd)";
	}
}

/* One line (its newline removed): a user:hash, a comment or nothing. Returns 0 or -1 with why
 * filled. */
static int
users_line(struct auth_users *u, char *line, size_t len, int lineno, char *why, size_t why_len)
{
	while (len > 0 && (is_blank(line[len - 1]) || line[len - 1] == '\r'))
		line[--len] = '\0';
	while (len > 0 && is_blank(*line)) {
		line++;
		len--;
	}
	if (len == 0 || line[0] == '#')
		return 0;
	if (memchr(line, '\0', len)) {
		snprintf(why, why_len, "NUL byte in the line");
		return -1;
	}
	const char *colon = memchr(line, ':', len);
	if (colon == NULL) {
		snprintf(why, why_len, "expected user:hash, found no ':'");
		return -1;
	}
	size_t name_len = (size_t)(colon - line), hash_len = len - name_len - 1;
	const char *hash = colon + 1, *problem = hash_problem(hash, hash_len);
	bool name_ok = sasl_name_ok(line, name_len);
	for (size_t i = 0; name_ok && i < name_len; i++)
		name_ok = !is_blank(line[i]);
	if (!name_ok) {
		snprintf(why, why_len,
			 "the user name must be 1 to %d bytes with no blank or control byte",
			 SASL_NAME_MAX);
		return -1;
	}
	if (problem) {
		snprintf(why, why_len, "%s", problem);
		return -1;
	}
	if (u->n == AUTH_USERS_MAX) {
		snprintf(why, why_len, "more than %d users", AUTH_USERS_MAX);
		return -1;
	}
	if (u->n == u->cap) {
		unsigned cap = u->cap ? u->cap * 2 : 16;
		struct auth_user *v = realloc(u->v, cap * sizeof *v);
		if (!v) {
			snprintf(why, why_len, "out of memory");
			return -1;
		}
		u->v = v;
		u->cap = cap;
	}
	char *p = malloc(len + 1);
	if (!p) {
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	memcpy(p, line, len);
	p[len] = '\0';
	p[name_len] = '\0';
	u->v[u->n++] = (struct auth_user){p, name_len, p + name_len + 1, lineno};
	return 0;
}

/* After the sort: the same name twice is an error at its second line. */
static int
users_check_unique(const struct auth_users *u, int *line, char *why, size_t why_len)
{
	for (unsigned i = 1; i < u->n; i++) {
		const struct auth_user *a = &u->v[i - 1], *b = &u->v[i];
		if (user_sort_cmp(a, b) != 0)
			continue;
		const struct auth_user *first = a->line < b->line ? a : b;
		*line = a->line < b->line ? b->line : a->line;
		snprintf(why, why_len, "user %.*s is already on line %d", (int)first->name_len,
			 first->name, first->line);
		return -1;
	}
	return 0;
}

struct auth_users *
auth_users_load(const char *path, int *line, char *why, size_t why_len)
{
	struct auth_users *u = calloc(1, sizeof *u);
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, rc = 0;

	ASSERT(path != NULL && line != NULL && why != NULL);
	*line = 0;
	if (!u) {
		snprintf(why, why_len, "out of memory");
		return NULL;
	}
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
		free(u);
		return NULL;
	}
	while (rc == 0 && (n = getline(&buf, &cap, f)) >= 0) {
		lineno++;
		if (n > 0 && buf[n - 1] == '\n')
			buf[--n] = '\0';
		rc = users_line(u, buf, (size_t)n, lineno, why, why_len);
		if (rc < 0)
			*line = lineno;
	}
	if (rc == 0 && ferror(f)) {
		snprintf(why, why_len, "cannot read %s: %s", path, strerror(errno));
		rc = -1;
	}
	if (buf) {
		explicit_bzero(buf, cap);
		free(buf);
	}
	fclose(f);
	if (rc == 0 && u->n > 1) {
		qsort(u->v, u->n, sizeof *u->v, user_sort_cmp);
		rc = users_check_unique(u, line, why, why_len);
	}
	if (rc < 0) {
		auth_users_free(u);
		return NULL;
	}
	return u;
}

void
auth_users_free(struct auth_users *u)
{
	if (!u)
		return;
	for (unsigned i = 0; i < u->n; i++)
		free((char *)u->v[i].name);
	free(u->v);
	free(u);
}

unsigned
auth_users_count(const struct auth_users *u)
{
	return u ? u->n : 0;
}

static const struct auth_user *
users_find(const struct auth_users *u, const char *name, size_t len)
{
	size_t lo = 0, hi = u->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = user_cmp(name, len, u->v[mid].name, u->v[mid].name_len);
		if (r == 0)
			return &u->v[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Compares without an early exit, so the time does not say where two hashes differ. */
static bool
hash_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;
	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

const char *
auth_users_hash(const struct auth_users *u, const char *user, size_t user_len, bool *known)
{
	*known = false;
	if (!u || u->n == 0)
		return NULL;
	const struct auth_user *e = users_find(u, user, user_len);
	*known = e != NULL;
	/* an unknown user is checked against a real hash (the first), and fails */
	return e ? e->hash : u->v[0].hash;
}

bool
auth_password_check(const char *hash, const char *pass, size_t pass_len)
{
	char pw[SASL_PASSWORD_MAX + 1];

	ASSERT(hash != NULL);
	if (pass_len == 0 || pass_len > SASL_PASSWORD_MAX || memchr(pass, '\0', pass_len))
		return false;
	struct crypt_data *cd = calloc(1, sizeof *cd); /* 32 KiB: not on the stack */
	if (!cd)
		return false;
	memcpy(pw, pass, pass_len);
	pw[pass_len] = '\0';
	const char *out = crypt_r(pw, hash, cd);
	bool ok = out != NULL && out[0] != '*' && hash_equal(out, hash);
	explicit_bzero(pw, sizeof pw);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return ok;
}

bool
auth_users_verify(const struct auth_users *u, const char *user, size_t user_len, const char *pass,
		  size_t pass_len)
{
	bool known;
	const char *hash = auth_users_hash(u, user, user_len, &known);
	if (!hash)
		return false;
	bool ok = auth_password_check(hash, pass, pass_len);
	return known && ok;
}

/* ---- the throttle --------------------------------------------------------------------- */

static _Atomic uint64_t auth_throttle[AUTH_THROTTLE_BUCKETS];
static uint32_t auth_throttle_key;
static pthread_once_t auth_throttle_once = PTHREAD_ONCE_INIT;

static void
auth_throttle_init(void)
{
	uint32_t k = 0;
	if (getrandom(&k, sizeof k, 0) != (ssize_t)sizeof k)
		k = (uint32_t)(uintptr_t)&k; /* ASLR at least */
	auth_throttle_key = k;
}

static uint32_t
throttle_hash(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u ^ auth_throttle_key; /* FNV-1a, keyed */
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	h ^= h >> 15; /* FNV's low bits mix poorly */
	return h & (AUTH_THROTTLE_BUCKETS - 1);
}

static _Atomic uint64_t *
throttle_bucket(const struct sockaddr *sa)
{
	pthread_once(&auth_throttle_once, auth_throttle_init);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return &auth_throttle[throttle_hash((const uint8_t *)&in->sin_addr, 4)];
	}
	ASSERT(sa->sa_family == AF_INET6);
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return &auth_throttle[throttle_hash(in6->sin6_addr.s6_addr + 12, 4)];
	return &auth_throttle[throttle_hash(in6->sin6_addr.s6_addr, 8)]; /* the /64 */
}

/* Seconds from start to now; 0 when another shard's clock was read a little later. */
static uint64_t
throttle_age(uint32_t start, uint64_t now_s)
{
	uint32_t now = (uint32_t)now_s;
	return now >= start ? now - start : 0;
}

bool
auth_throttle_blocked(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
		      unsigned window_s)
{
	ASSERT(max_failures > 0);
	uint64_t w = atomic_load_explicit(throttle_bucket(client), memory_order_relaxed);
	uint32_t start = (uint32_t)(w >> 32), count = (uint32_t)w;
	return count >= max_failures && throttle_age(start, now_s) < window_s;
}

void
auth_throttle_fail(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
		   unsigned window_s)
{
	_Atomic uint64_t *b = throttle_bucket(client);
	uint64_t w = atomic_load_explicit(b, memory_order_relaxed), next;
	ASSERT(max_failures > 0);
	do {
		uint32_t start = (uint32_t)(w >> 32), count = (uint32_t)w;
		if (count == 0 || throttle_age(start, now_s) >= window_s) {
			start = (uint32_t)now_s;
			count = 0;
		}
		if (count < max_failures)
			count++;
		if (count >= max_failures)
			start = (uint32_t)now_s; /* the wait is counted from this failure */
		next = (uint64_t)start << 32 | count;
	} while (!atomic_compare_exchange_weak_explicit(b, &w, next, memory_order_relaxed,
							memory_order_relaxed));
}

void
auth_throttle_reset(void)
{
	for (unsigned i = 0; i < AUTH_THROTTLE_BUCKETS; i++)
		atomic_store_explicit(&auth_throttle[i], 0, memory_order_relaxed);
}
