/*
 * Unit tests of Maildir delivery: each test delivers under a fresh mkdtemp directory (the
 * mail root is <tmpdir>/mail) and reads back what is on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/maildir.h"

#define STR(lit) ((struct spool_str){(lit), sizeof(lit) - 1})
#define QID "0123456789abcdef"
#define HDR "Return-Path: <alice@example.com>\nDelivered-To: bob@mx.test\n" /* for params() */

static char tmpdir[64];
static char root[96];

static const char MSG[] = "Subject: hi\r\n"
			  "\r\n"
			  "body line\r\n"
			  "second\r\n";

static void
remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char sub[512];

	if (!d) {
		unlink(path);
		return;
	}
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
		struct stat st;
		if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(sub);
		else
			unlink(sub);
	}
	closedir(d);
	rmdir(path);
}

static void
tmpdir_make(void)
{
	strcpy(tmpdir, "/tmp/ringmx-maildir-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(root, sizeof root, "%s/mail", tmpdir);
}

static void
tmpdir_remove(void)
{
	chmod(tmpdir, 0700);
	chmod(root, 0700);
	remove_tree(tmpdir);
}

TestSuite(maildir, .init = tmpdir_make, .fini = tmpdir_remove);

static struct maildir_params
params(const char *local)
{
	return (struct maildir_params){
	    .root = root,
	    .local = {local, strlen(local)},
	    .sender = STR("alice@example.com"),
	    .rcpt = STR("bob@mx.test"),
	    .msg = MSG,
	    .msg_len = sizeof MSG - 1,
	    .host = "mx.test",
	    .qid = QID,
	};
}

static void
deliver_ok(const struct maildir_params *p)
{
	char err[256] = "";
	int r = maildir_deliver(p, err, sizeof err);

	cr_assert_eq(r, 0, "maildir_deliver: %d %s", r, err);
}

/* Names in dir (not . or ..), up to max; returns how many there are. */
static int
list_dir(const char *dir, char names[][300], int max)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "opendir %s", dir);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n < max)
			snprintf(names[n], 300, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* The contents of the one file in <root>/<box>/new, malloc'ed, with its name. */
static char *
read_only_message(const char *box, size_t *len, char name[300])
{
	char dir[256], path[600], names[2][300];
	struct stat st;

	snprintf(dir, sizeof dir, "%s/%s/new", root, box);
	cr_assert_eq(list_dir(dir, names, 2), 1, "one file in %s", dir);
	snprintf(path, sizeof path, "%s/%s", dir, names[0]);
	if (name)
		strcpy(name, names[0]);
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	char *buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	close(fd);
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return buf;
}

Test(maildir, delivery_puts_one_file_in_new_with_lf_line_ends)
{
	struct maildir_params p = params("bob");
	size_t len;

	deliver_ok(&p);
	char *got = read_only_message("bob", &len, NULL);
	cr_assert_str_eq(got, "Return-Path: <alice@example.com>\n"
			      "Delivered-To: bob@mx.test\n"
			      "Subject: hi\n"
			      "\n"
			      "body line\n"
			      "second\n");
	free(got);
}

Test(maildir, tmp_is_empty_and_cur_exists_after_delivery)
{
	struct maildir_params p = params("bob");
	char dir[256], names[1][300];
	struct stat st;

	deliver_ok(&p);
	snprintf(dir, sizeof dir, "%s/bob/tmp", root);
	cr_assert_eq(list_dir(dir, names, 1), 0);
	snprintf(dir, sizeof dir, "%s/bob/cur", root);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0700);
	snprintf(dir, sizeof dir, "%s/bob", root);
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
}

Test(maildir, two_deliveries_get_different_names)
{
	struct maildir_params p = params("bob");
	char dir[256], names[3][300];

	deliver_ok(&p);
	deliver_ok(&p);
	snprintf(dir, sizeof dir, "%s/bob/new", root);
	cr_assert_eq(list_dir(dir, names, 3), 2);
	cr_assert_str_neq(names[0], names[1]);
}

Test(maildir, null_sender_gives_an_empty_return_path)
{
	struct maildir_params p = params("bob");
	size_t len;

	p.sender = (struct spool_str){NULL, 0};
	deliver_ok(&p);
	char *got = read_only_message("bob", &len, NULL);
	cr_assert(strncmp(got, "Return-Path: <>\nDelivered-To: bob@mx.test\n", 42) == 0, "%s", got);
	free(got);
}

Test(maildir, file_name_has_the_documented_shape)
{
	struct maildir_params p = params("bob");
	char name[300], host[64], suffix[300];
	long long sec;
	long usec, pid;
	unsigned long seq;
	size_t len, size;

	p.host = "mx:a/b";
	deliver_ok(&p);
	char *got = read_only_message("bob", &len, name);
	cr_assert_eq(
	    sscanf(name, "%lld.M%ldP%ldQ" QID "_%lu.%299s", &sec, &usec, &pid, &seq, suffix), 5,
	    "%s", name);
	cr_assert_eq(pid, (long)getpid());
	cr_assert(usec >= 0 && usec < 1000000);
	snprintf(host, sizeof host, "mx\\072a\\057b,S=%zu", len);
	cr_assert_str_eq(suffix, host);
	cr_assert_eq(sscanf(strstr(name, ",S=") + 3, "%zu", &size), 1);
	cr_assert_eq(size, len, "S= is the file size");
	free(got);
}

Test(maildir, local_part_is_lower_cased_into_one_mailbox)
{
	struct maildir_params p = params("Bob");
	char dir[256], names[3][300];

	deliver_ok(&p);
	p = params("BOB");
	deliver_ok(&p);
	snprintf(dir, sizeof dir, "%s/bob/new", root);
	cr_assert_eq(list_dir(dir, names, 3), 2);
	cr_assert_eq(list_dir(root, names, 3), 1);
	cr_assert_str_eq(names[0], "bob");
}

Test(maildir, names_are_mapped_or_refused)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out; /* NULL: refused */
	} cases[] = {
	    {"bob", 3, "bob"},
	    {"Bob.Smith+tag", 13, "bob.smith+tag"},
	    {"J\xc3\x96rg", 5, "j\xc3\x96rg"}, /* 8-bit bytes kept, not folded */
	    {"a b\"c", 5, "a b\"c"},
	    {"a.", 2, "a."},
	    {"", 0, NULL},
	    {".", 1, NULL},
	    {"..", 2, NULL},
	    {"../x", 4, NULL},
	    {".hidden", 7, NULL},
	    {"a/b", 3, NULL},
	    {"/etc", 4, NULL},
	    {"a..b", 4, NULL},
	    {"a\0b", 3, NULL},
	    {"a\nb", 3, NULL},
	    {"a\rb", 3, NULL},
	    {"a\tb", 3, NULL},
	    {"a\x7f", 2, NULL},
	    {"x\x1b[0m", 5, NULL},
	};
	char out[MAILDIR_NAME_MAX + 1];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int r = maildir_name(cases[i].in, cases[i].len, out);
		if (cases[i].out) {
			cr_assert_eq(r, 0, "case %zu", i);
			cr_assert_str_eq(out, cases[i].out, "case %zu", i);
		} else {
			cr_assert_eq(r, -EINVAL, "case %zu refused", i);
		}
	}
	char long_name[MAILDIR_NAME_MAX + 2];
	memset(long_name, 'x', sizeof long_name);
	cr_assert_eq(maildir_name(long_name, MAILDIR_NAME_MAX, out), 0);
	cr_assert_eq(strlen(out), MAILDIR_NAME_MAX);
	cr_assert_eq(maildir_name(long_name, MAILDIR_NAME_MAX + 1, out), -EINVAL);
}

Test(maildir, hostile_local_parts_are_refused_and_nothing_leaves_root)
{
	static const struct spool_str bad[] = {
	    {"../x", 4},
	    {"a/b", 3},
	    {".hidden", 7},
	    {"", 0},
	    {"..", 2},
	    {"a\0b", 3},
	    {"../../../../tmp/pwned", 21},
	    {"x/../../y", 9},
	    {"\n", 1},
	};
	char names[4][300], err[256];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct maildir_params p = params("x");
		p.local = bad[i];
		err[0] = '\0';
		cr_assert_eq(maildir_deliver(&p, err, sizeof err), -EINVAL, "case %zu", i);
		cr_assert_str_eq(err, "invalid mailbox name");
	}
	/* Refused before any I/O: not even the root was created. */
	cr_assert_eq(list_dir(tmpdir, names, 4), 0);
	cr_assert_neq(access("/tmp/pwned", F_OK), 0);
}

Test(maildir, envelope_address_with_a_line_break_is_refused)
{
	struct maildir_params p = params("bob");
	char err[256];

	p.sender = STR("a@b>\nX-Injected: 1");
	cr_assert_eq(maildir_deliver(&p, err, sizeof err), -EINVAL);
	p = params("bob");
	p.rcpt = STR("bob@mx.test\0x");
	cr_assert_eq(maildir_deliver(&p, err, sizeof err), -EINVAL);
}

/* Runs one delivery as an unprivileged user when we are root (root ignores mode bits). */
static int
deliver_unprivileged(const struct maildir_params *p, char *err, size_t err_len)
{
	if (geteuid() != 0)
		return maildir_deliver(p, err, err_len);
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pipefd[0]);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		int r = maildir_deliver(p, err, err_len);
		if (write(pipefd[1], err, strlen(err)) < 0)
			_exit(3);
		_exit(r == 0 ? 0 : r == -EINVAL ? 4 : r == -EACCES ? 5 : 6);
	}
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], err, err_len - 1);
	err[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	switch (WEXITSTATUS(st)) {
	case 0:
		return 0;
	case 2:
		cr_skip_test("cannot drop root privileges to test permissions");
	case 4:
		return -EINVAL;
	case 5:
		return -EACCES;
	default:
		return -EIO;
	}
}

Test(maildir, read_only_root_gives_a_temporary_error)
{
	struct maildir_params p = params("bob");
	char err[256] = "", expect[256];

	cr_assert_eq(mkdir(root, 0555), 0);
	cr_assert_eq(chmod(tmpdir, 0711), 0); /* others may pass through, as in /var */
	int r = deliver_unprivileged(&p, err, sizeof err);
	cr_assert_eq(r, -EACCES, "%d %s", r, err);
	snprintf(expect, sizeof expect, "cannot create %s/bob: Permission denied", root);
	cr_assert_str_eq(err, expect);
}

Test(maildir, symlinked_mailbox_is_not_followed)
{
	struct maildir_params p = params("bob");
	char outside[128], link[128], names[1][300], err[256] = "";

	snprintf(outside, sizeof outside, "%s/outside", tmpdir);
	snprintf(link, sizeof link, "%s/bob", root);
	cr_assert_eq(mkdir(root, 0700), 0);
	cr_assert_eq(mkdir(outside, 0700), 0);
	cr_assert_eq(symlink(outside, link), 0);
	int r = maildir_deliver(&p, err, sizeof err);
	cr_assert_lt(r, 0);
	cr_assert_neq(r, -EINVAL, "temporary: an administrator's link, not the sender's fault");
	cr_assert_eq(list_dir(outside, names, 1), 0, "nothing written through the link");
}

Test(maildir, missing_subdirectories_and_root_are_created)
{
	struct maildir_params p = params("bob");
	char dir[256];
	size_t len;

	deliver_ok(&p); /* root did not exist */
	snprintf(dir, sizeof dir, "%s/carol", root);
	cr_assert_eq(mkdir(dir, 0700), 0);
	snprintf(dir, sizeof dir, "%s/carol/cur", root);
	cr_assert_eq(mkdir(dir, 0700), 0);
	p = params("carol");
	deliver_ok(&p); /* carol/ exists without tmp/ and new/ */
	free(read_only_message("carol", &len, NULL));
	snprintf(dir, sizeof dir, "%s/dave/tmp", root);
	cr_assert_eq(mkdir(dir, 0700), -1, "parent missing: ENOENT");
	snprintf(dir, sizeof dir, "%s/dave", root);
	cr_assert_eq(mkdir(dir, 0700), 0);
	snprintf(dir, sizeof dir, "%s/dave/tmp", root);
	cr_assert_eq(mkdir(dir, 0700), 0);
	p = params("dave");
	deliver_ok(&p); /* dave/ has tmp/ but no new/ */
	free(read_only_message("dave", &len, NULL));
}

Test(maildir, crlf_across_write_chunks_becomes_lf_and_bare_cr_or_lf_stays)
{
	size_t cap = 3 * MAILDIR_WRITE_CHUNK + 1000, n = 0, m = 0;
	char *msg = malloc(cap), *expect = malloc(cap + 128);
	uint64_t s = 88172645463325252ull;
	cr_assert(msg && expect);

	m = (size_t)sprintf(expect, "%s", HDR);
	while (n + 3 < cap) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		switch (s % 8) {
		case 0: /* CRLF */
			msg[n++] = '\r', msg[n++] = '\n';
			expect[m++] = '\n';
			break;
		case 1: /* bare CR (not followed by a bare LF, which would make a CRLF) */
			msg[n++] = '\r', msg[n++] = 'z';
			expect[m++] = '\r', expect[m++] = 'z';
			break;
		case 2: /* bare LF */
			msg[n++] = '\n';
			expect[m++] = '\n';
			break;
		default:
			msg[n] = expect[m++] = (char)('a' + s % 26);
			n++;
		}
	}
	struct maildir_params p = params("bob");
	p.msg = msg;
	p.msg_len = n;
	deliver_ok(&p);
	size_t len;
	char *got = read_only_message("bob", &len, NULL);
	cr_assert_eq(len, m);
	cr_assert(memcmp(got, expect, m) == 0);
	free(got);
	free(msg);
	free(expect);
}

Test(maildir, crlf_at_the_chunk_edge_is_one_lf)
{
	/* The byte before the CR fills the first write buffer; the LF starts the second. */
	size_t hdr = sizeof HDR - 1, n = MAILDIR_WRITE_CHUNK - hdr + 100;
	char *msg = malloc(n);
	cr_assert_not_null(msg);
	memset(msg, 'x', n);
	size_t cr = MAILDIR_WRITE_CHUNK - hdr;
	msg[cr] = '\r';
	msg[cr + 1] = '\n';
	struct maildir_params p = params("bob");
	p.msg = msg;
	p.msg_len = n;
	deliver_ok(&p);
	size_t len;
	char *got = read_only_message("bob", &len, NULL);
	cr_assert_eq(len, hdr + n - 1);
	cr_assert_eq(got[hdr + cr], '\n');
	cr_assert_eq(got[hdr + cr - 1], 'x');
	cr_assert_eq(got[hdr + cr + 1], 'x');
	cr_assert_null(memchr(got, '\r', len));
	free(got);
	free(msg);
}

Test(maildir, empty_message_gets_only_the_two_header_lines)
{
	struct maildir_params p = params("bob");
	size_t len;

	p.msg = NULL;
	p.msg_len = 0;
	deliver_ok(&p);
	char *got = read_only_message("bob", &len, NULL);
	cr_assert_str_eq(got, HDR);
	free(got);
}
