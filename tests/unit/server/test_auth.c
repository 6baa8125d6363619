/*
 * Unit tests for server/auth: the users file (good lines, comments, and every refusal with its
 * line), password checks against yescrypt and SHA-512 hashes (and the hash an unknown user is
 * checked against), and the failure throttle.
 */
#include "server/auth.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* crypt("secret", "$6$saltsalt$") */
#define SHA512_SECRET                                                                          \
	"$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.P" \
	"q.H91p5hVO1"
#define MD5_SECRET "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"

static char path[64];

/* Writes len bytes of text to a fresh temporary file; its path is in path. */
static const char *
users_file_n(const char *text, size_t len)
{
	strcpy(path, "/tmp/ringmx-test-users-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static const char *
users_file(const char *text)
{
	return users_file_n(text, strlen(text));
}

static struct auth_users *
load_ok(const char *text)
{
	char why[256];
	int line = -1;
	struct auth_users *u = auth_users_load(users_file(text), &line, why, sizeof why);

	unlink(path);
	cr_assert_not_null(u, "line %d: %s", line, why);
	return u;
}

/* The load fails at want_line with a reason that contains want. */
static void
load_fails(const char *text, int want_line, const char *want)
{
	char why[256];
	int line = -1;
	struct auth_users *u = auth_users_load(users_file(text), &line, why, sizeof why);

	unlink(path);
	cr_assert_null(u, "expected \"%s\" at line %d, but it loaded", want, want_line);
	cr_assert_eq(line, want_line, "\"%s\" at line %d, want %d", why, line, want_line);
	cr_assert(strstr(why, want), "\"%s\" lacks \"%s\"", why, want);
}

static bool
verify(const struct auth_users *u, const char *user, const char *pass)
{
	return auth_users_verify(u, user, strlen(user), pass, strlen(pass));
}

Test(auth, users_file_takes_hashes_comments_and_blank_lines)
{
	struct auth_users *u = load_ok("# the team\n"
				       "\n"
				       "alice:" SHA512_SECRET "\n"
				       "  bob@example.test:" SHA512_SECRET "  \r\n"
				       "   # indented comment\n"
				       "carol:" SHA512_SECRET); /* no final newline */

	cr_assert_eq(auth_users_count(u), 3);
	cr_assert(verify(u, "alice", "secret"));
	cr_assert(verify(u, "bob@example.test", "secret"));
	cr_assert(verify(u, "carol", "secret"));
	cr_assert_not(verify(u, "alice", "Secret"));
	cr_assert_not(verify(u, "alice", "secret "));
	cr_assert_not(verify(u, "Alice", "secret"), "names are compared exactly");
	cr_assert_not(verify(u, "dave", "secret"), "an unknown user");
	cr_assert_not(verify(u, "alice", ""));
	cr_assert_not(auth_users_verify(u, "alice", 5, "secret\0x", 8), "a NUL in the password");
	auth_users_free(u);
}

Test(auth, an_empty_users_file_lets_nobody_in)
{
	struct auth_users *u = load_ok("# nobody yet\n");

	cr_assert_eq(auth_users_count(u), 0);
	cr_assert_not(verify(u, "alice", "secret"));
	bool known = true;
	cr_assert_null(auth_users_hash(u, "alice", 5, &known));
	cr_assert_not(known);
	auth_users_free(u);
}

/* What the shard hands to the check threads (server/auth_pool.h): the hash to run crypt_r on. */
Test(auth, an_unknown_user_gets_a_real_hash_to_check_and_is_never_let_in)
{
	struct auth_users *u = load_ok("bob:" SHA512_SECRET "\nalice:" SHA512_SECRET "\n");
	bool known = false;
	const char *h = auth_users_hash(u, "alice", 5, &known);

	cr_assert(known);
	cr_assert_str_eq(h, SHA512_SECRET);
	cr_assert(auth_password_check(h, "secret", 6));
	h = auth_users_hash(u, "mallory", 7, &known);
	cr_assert_not(known, "an unknown user");
	cr_assert_not_null(h, "costs a crypt_r all the same");
	cr_assert_str_eq(h, SHA512_SECRET);
	cr_assert_not(verify(u, "mallory", "secret"), "even with some user's password");
	cr_assert_not(auth_password_check(h, "", 0));
	cr_assert_not(auth_password_check(h, "secret\0x", 8), "a NUL in the password");
	auth_users_free(u);
}

Test(auth, yescrypt_hashes_verify)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], text[512];
	struct crypt_data cd;

	memset(&cd, 0, sizeof cd);
	cr_assert_not_null(crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt));
	const char *hash = crypt_r("pa:ss w\xc3\xb6rd", salt, &cd);
	cr_assert(hash && strncmp(hash, "$y$", 3) == 0);
	snprintf(text, sizeof text, "alice@example.test:%s\n", hash);
	struct auth_users *u = load_ok(text);
	cr_assert(verify(u, "alice@example.test", "pa:ss w\xc3\xb6rd"));
	cr_assert_not(verify(u, "alice@example.test", "pa:ss word"));
	auth_users_free(u);
}

Test(auth, bad_lines_are_refused_at_their_line)
{
	load_fails("alice " SHA512_SECRET "\n", 1, "expected user:hash, found no ':'");
	load_fails("# ok\nalice:\n", 2, "no hash after the ':'");
	load_fails(":" SHA512_SECRET "\n", 1, "the user name must be 1 to 255 bytes");
	load_fails("al ice:" SHA512_SECRET "\n", 1, "the user name must be");
	load_fails("alice:" MD5_SECRET "\n", 1, "a weak hash method");
	load_fails("alice:secret\n", 1, "a weak hash method"); /* a DES hash, salt "se" */
	load_fails("alice:!locked\n", 1, "not a crypt(3) hash");
	load_fails("alice:$6$x$y z\n", 1, "a blank or control byte in the hash");
	load_fails("alice:" SHA512_SECRET ":19000:0:99999:7:::\n", 1, "not an /etc/shadow line");
	load_fails("alice:" SHA512_SECRET "\nbob:" SHA512_SECRET "\nalice:" SHA512_SECRET "\n", 3,
		   "user alice is already on line 1");
}

Test(auth, a_nul_byte_is_refused_at_its_line)
{
	char why[256];
	int line = -1;

	cr_assert_null(auth_users_load(users_file_n("# x\na\0b:x\n", 9), &line, why, sizeof why));
	unlink(path);
	cr_assert_eq(line, 2);
	cr_assert(strstr(why, "NUL byte"), "%s", why);
}

Test(auth, a_missing_file_is_an_error_of_the_file)
{
	char why[256];
	int line = -1;

	cr_assert_null(auth_users_load("/nonexistent/users", &line, why, sizeof why));
	cr_assert_eq(line, 0);
	cr_assert(strstr(why, "cannot open /nonexistent/users"), "%s", why);
}

static struct sockaddr_storage sa_buf[2];

static const struct sockaddr *
sa(int i, const char *text)
{
	memset(&sa_buf[i], 0, sizeof sa_buf[i]);
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa_buf[i];
		s6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa_buf[i];
		s4->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)&sa_buf[i];
}

Test(auth, the_throttle_blocks_after_max_failures_for_the_window)
{
	const struct sockaddr *a = sa(0, "192.0.2.1"), *b = sa(1, "192.0.2.2");

	auth_throttle_reset();
	for (int i = 0; i < 2; i++) {
		auth_throttle_fail(a, 1000 + i, 3, 60);
		cr_assert_not(auth_throttle_blocked(a, 1000 + i, 3, 60));
	}
	auth_throttle_fail(a, 1010, 3, 60); /* the third: blocked for 60 s from now */
	cr_assert(auth_throttle_blocked(a, 1010, 3, 60));
	cr_assert(auth_throttle_blocked(a, 1069, 3, 60));
	cr_assert_not(auth_throttle_blocked(a, 1070, 3, 60), "the window passed");
	cr_assert_not(auth_throttle_blocked(b, 1010, 3, 60), "another address is not counted");
	/* after the wait, counting starts over */
	auth_throttle_fail(a, 1071, 3, 60);
	cr_assert_not(auth_throttle_blocked(a, 1071, 3, 60));
}

Test(auth, failures_older_than_the_window_are_forgotten)
{
	const struct sockaddr *a = sa(0, "192.0.2.1");

	auth_throttle_reset();
	auth_throttle_fail(a, 100, 3, 60);
	auth_throttle_fail(a, 110, 3, 60);
	auth_throttle_fail(a, 161, 3, 60); /* 61 s after the first: a new count */
	cr_assert_not(auth_throttle_blocked(a, 161, 3, 60));
	auth_throttle_fail(a, 162, 3, 60);
	auth_throttle_fail(a, 163, 3, 60);
	cr_assert(auth_throttle_blocked(a, 163, 3, 60));
	cr_assert(auth_throttle_blocked(a, 160, 3, 60), "a clock read a little earlier: still");
}

Test(auth, ipv6_clients_count_by_their_64)
{
	const struct sockaddr *a = sa(0, "2001:db8:1:2::1"), *b = sa(1, "2001:db8:1:2:ffff::9");

	auth_throttle_reset();
	auth_throttle_fail(a, 100, 2, 60);
	auth_throttle_fail(b, 101, 2, 60);
	cr_assert(auth_throttle_blocked(a, 101, 2, 60));
	cr_assert(auth_throttle_blocked(sa(1, "::ffff:192.0.2.7"), 101, 1, 60) ==
		  auth_throttle_blocked(sa(1, "192.0.2.7"), 101, 1, 60));
}
