/*
 * auth — who may submit mail: the [auth] users file, password checks with crypt(3), and the
 * throttle on failed attempts per client address. The SASL exchange itself is sasl.h (pure)
 * and smtp_session.c.
 *
 * The users file has one `user:hash` per line; '#' starts a comment line, blank lines are
 * skipped. The hash is what crypt(3) writes (libxcrypt): yescrypt `$y$...`, SHA-512 `$6$...`,
 * or another method libxcrypt holds strong (crypt_checksalt); `ringmxctl passwd` makes them.
 * User names are compared exactly (case matters). The config loads the file (config.c), so a
 * bad line is an error of the config at FILE:LINE, and SIGHUP reads it again.
 *
 * Cost: one check runs crypt_r(), slow on purpose (yescrypt: about 10 to 100 ms of CPU and
 * 8 MiB of memory with libxcrypt's default cost, more with a higher one). The shards never call
 * it: they look the hash up (auth_users_hash, a binary search) and hand the check to the
 * worker threads of server/auth_pool.h ([auth] check_threads), which call auth_password_check.
 * auth_users_verify does both on the calling thread (tests, tools).
 *
 * Throttle: a fixed table of AUTH_THROTTLE_BUCKETS atomic words shared by all shards (no lock),
 * indexed by a keyed hash of the client address (an IPv6 client by its /64, as conn_limits
 * does). Each word is a window start (s) and a failure count. Two addresses in one bucket share
 * a count, so the limit can come early for an unlucky neighbour, never late; the key is random
 * per process, so nobody can aim at a bucket.
 *
 * Failure: auth_users_load returns NULL with the line (0: the file as a whole) and a reason;
 * the others do not fail.
 */
#ifndef RINGMX_AUTH_H
#define RINGMX_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_USERS_MAX 1000000
#define AUTH_HASH_MAX 512 /* bytes of one hash; libxcrypt's CRYPT_OUTPUT_SIZE is 384 */
#define AUTH_THROTTLE_BUCKETS 16384

struct auth_users;

/* Reads the users file at path. Returns the table, or NULL with *line (0 when the error is
 * not about one line: cannot open, cannot read) and a one-line reason in why. */
struct auth_users *auth_users_load(const char *path, int *line, char *why, size_t why_len);
void auth_users_free(struct auth_users *u);
unsigned auth_users_count(const struct auth_users *u);

/* The hash to check a password of user against: the user's own, with *known set; for an
 * unknown user a real hash of another user, with *known cleared, so that the check costs the
 * same and timing does not tell names apart (the result must then be taken as a failure).
 * NULL (and *known cleared) only for an empty table. The hash lives as long as the table. */
const char *auth_users_hash(const struct auth_users *u, const char *user, size_t user_len,
			    bool *known);
/* True when pass (pass_len bytes) is the password of hash: crypt_r(), slow on purpose; safe on
 * any thread. False for an empty password, one over SASL_PASSWORD_MAX bytes or with a NUL. */
bool auth_password_check(const char *hash, const char *pass, size_t pass_len);
/* True when the user is in the table and pass (pass_len bytes, no NUL inside) is its password:
 * auth_users_hash, then auth_password_check, on the calling thread. */
bool auth_users_verify(const struct auth_users *u, const char *user, size_t user_len,
		       const char *pass, size_t pass_len);

/* True while the client has had max_failures failed attempts and the window that the last of
 * them started has not passed (now_s and window_s in seconds of a monotonic clock). */
bool auth_throttle_blocked(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
			   unsigned window_s);
/* Counts a failed attempt: a count older than window_s starts over; the failure that reaches
 * max_failures starts the window anew, so the client waits window_s from it. */
void auth_throttle_fail(const struct sockaddr *client, uint64_t now_s, unsigned max_failures,
			unsigned window_s);
/* Forgets every count (tests). */
void auth_throttle_reset(void);

#endif
