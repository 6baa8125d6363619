/*
 * Unit tests for server/sasl: base64 responses (RFC 4648 4, RFC 4954's "=" and "*"), the PLAIN
 * message (RFC 4616), mechanism names. Inputs sit at the very end of a mapping whose next page
 * is PROT_NONE, so reading one byte past them crashes the test.
 */
#include "server/sasl.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tests/unit/guard.h"

static long
decode_guarded(const char *in, size_t len, char *out, size_t cap)
{
	struct guard g = guard_place(in, len);
	long n = sasl_base64_decode(g.p, len, out, cap);

	guard_free(&g);
	return n;
}

Test(sasl, base64_decodes_every_padding_form)
{
	static const struct {
		const char *in, *out;
		size_t out_len;
	} rows[] = {
	    {"", "", 0},
	    {"=", "", 0}, /* RFC 4954 4: an empty initial response */
	    {"YQ==", "a", 1},
	    {"YWI=", "ab", 2},
	    {"YWJj", "abc", 3},
	    {"AGFsaWNlAHNlY3JldA==", "\0alice\0secret", 13},
	    {"VXNlcm5hbWU6", "Username:", 9},
	    {"UGFzc3dvcmQ6", "Password:", 9},
	    {"+/+/", "\xfb\xff\xbf", 3},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char out[64];
		long n = decode_guarded(rows[i].in, strlen(rows[i].in), out, sizeof out);

		cr_assert_eq(n, (long)rows[i].out_len, "\"%s\": %ld", rows[i].in, n);
		cr_assert_eq(memcmp(out, rows[i].out, rows[i].out_len), 0, "\"%s\"", rows[i].in);
	}
}

Test(sasl, base64_refuses_what_is_not_strict_base64)
{
	static const char *const bad[] = {
	    "Y",	/* not a multiple of 4 */
	    "YWJ",	/* unpadded */
	    "YQ=",	/* short padding */
	    "Y===",	/* three pad characters */
	    "====",	//
	    "YQ==YQ==", /* padding inside */
	    "Y=Jj",	//
	    "YW J",	/* a blank */
	    "YWJ\t",	//
	    "YWJ-",	/* the URL alphabet */
	    "YWJ_",	//
	    "*",	/* a cancel is not base64 */
	    "==",	//
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char out[64];

		cr_assert_eq(decode_guarded(bad[i], strlen(bad[i]), out, sizeof out),
			     SASL_ERR_BASE64, "\"%s\"", bad[i]);
	}
}

Test(sasl, base64_never_writes_past_the_room_given)
{
	char out[4] = {'x', 'x', 'x', 'x'};

	cr_assert_eq(decode_guarded("YWJj", 4, out, 2), SASL_ERR_TOO_LONG);
	cr_assert_eq(decode_guarded("YWJjZA==", 8, out, 3), SASL_ERR_TOO_LONG);
	cr_assert_eq(out[3], 'x');
	cr_assert_eq(decode_guarded("YWJjZA==", 8, out, 4), 4);
	cr_assert_eq(memcmp(out, "abcd", 4), 0);
}

Test(sasl, a_lone_star_cancels)
{
	cr_assert(sasl_is_cancel("*", 1));
	cr_assert_not(sasl_is_cancel("**", 2));
	cr_assert_not(sasl_is_cancel("", 0));
	cr_assert_not(sasl_is_cancel("* ", 2));
}

Test(sasl, mechanisms_are_plain_and_login_in_any_case)
{
	cr_assert_eq(sasl_mech_lookup("PLAIN", 5), SASL_MECH_PLAIN);
	cr_assert_eq(sasl_mech_lookup("plain", 5), SASL_MECH_PLAIN);
	cr_assert_eq(sasl_mech_lookup("Login", 5), SASL_MECH_LOGIN);
	cr_assert_eq(sasl_mech_lookup("PLAI", 4), SASL_MECH_UNKNOWN);
	cr_assert_eq(sasl_mech_lookup("PLAINX", 6), SASL_MECH_UNKNOWN);
	cr_assert_eq(sasl_mech_lookup("CRAM-MD5", 8), SASL_MECH_UNKNOWN);
	cr_assert_eq(sasl_mech_lookup("", 0), SASL_MECH_UNKNOWN);
	cr_assert_str_eq(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
}

static int
split(const char *msg, size_t len, struct sasl_plain *pl)
{
	struct guard g = guard_place(msg, len);
	int rc = sasl_plain_split(g.p, len, pl);

	if (rc == 0) { /* rebase onto msg, so the slices outlive the guard */
		pl->authzid = msg + (pl->authzid - g.p);
		pl->authcid = msg + (pl->authcid - g.p);
		pl->passwd = msg + (pl->passwd - g.p);
	}
	guard_free(&g);
	return rc;
}

#define SPLIT(lit, pl) split((lit), sizeof(lit) - 1, (pl))

Test(sasl, plain_splits_authzid_authcid_and_password)
{
	struct sasl_plain pl;

	cr_assert_eq(SPLIT("\0alice\0secret", &pl), 0);
	cr_assert_eq(pl.authzid_len, 0);
	cr_assert_eq(pl.authcid_len, 5);
	cr_assert_eq(memcmp(pl.authcid, "alice", 5), 0);
	cr_assert_eq(pl.passwd_len, 6);
	cr_assert_eq(memcmp(pl.passwd, "secret", 6), 0);

	cr_assert_eq(SPLIT("bob\0alice@example.test\0p w:\xc3\xa9", &pl), 0);
	cr_assert_eq(pl.authzid_len, 3);
	cr_assert_eq(memcmp(pl.authzid, "bob", 3), 0);
	cr_assert_eq(pl.authcid_len, 18);
	cr_assert_eq(pl.passwd_len, 6);
}

Test(sasl, plain_refuses_a_malformed_message)
{
	struct sasl_plain pl;

	cr_assert_eq(sasl_plain_split("", 0, &pl), -EINVAL);
	cr_assert_eq(SPLIT("alice", &pl), -EINVAL);
	cr_assert_eq(SPLIT("\0alice", &pl), -EINVAL);	      /* one NUL */
	cr_assert_eq(SPLIT("\0alice\0", &pl), -EINVAL);	      /* empty password */
	cr_assert_eq(SPLIT("\0\0secret", &pl), -EINVAL);      /* empty user */
	cr_assert_eq(SPLIT("\0alice\0sec\0ret", &pl), -EINVAL); /* a third NUL */
	cr_assert_eq(SPLIT("\0al\x01ice\0secret", &pl), -EINVAL); /* a control byte in the name */
	cr_assert_eq(pl.authcid, NULL, "nothing is left set on failure");
}

Test(sasl, plain_bounds_names_and_password)
{
	static char msg[SASL_DECODED_MAX];
	struct sasl_plain pl;
	size_t n = 0;

	msg[n++] = '\0';
	memset(msg + n, 'u', SASL_NAME_MAX + 1);
	n += SASL_NAME_MAX + 1;
	msg[n++] = '\0';
	msg[n++] = 'p';
	cr_assert_eq(split(msg, n, &pl), -EINVAL, "a name over SASL_NAME_MAX");
	n = 0;
	msg[n++] = '\0';
	msg[n++] = 'u';
	msg[n++] = '\0';
	memset(msg + n, 'p', SASL_PASSWORD_MAX);
	cr_assert_eq(split(msg, n + SASL_PASSWORD_MAX, &pl), 0);
	cr_assert_eq(split(msg, n + SASL_PASSWORD_MAX + 1, &pl), -EINVAL);
}

Test(sasl, names_have_no_control_bytes)
{
	cr_assert(sasl_name_ok("alice", 5));
	cr_assert(sasl_name_ok("alice@example.test", 18));
	cr_assert(sasl_name_ok("j\xc3\xb6rg", 5));
	cr_assert_not(sasl_name_ok("", 0));
	cr_assert_not(sasl_name_ok("a\0b", 3));
	cr_assert_not(sasl_name_ok("a\rb", 3));
	cr_assert_not(sasl_name_ok("a\x7f", 2));
}
