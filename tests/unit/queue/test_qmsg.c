/*
 * Unit tests of the in-memory message: decoding a record into a qmsg, the recipient table and
 * its domains, who owns the record when qmsg_new fails, and reference counting. Run under
 * AddressSanitizer (make check-asan) a double free or a leak here fails the build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/qmsg.h"
#include "queue/spool_scan.h"
#include "tests/unit/queue/spool_fixture.h"

static const struct spool_str RCPTS[] = {
    {"a@Example.ORG", 13},
    {"postmaster", 10},	       /* no '@' */
    {"\"x@y\"@z.example", 15}, /* a quoted local part holding '@': the last one counts */
    {"trailing@", 9},
};
#define NRCPT (sizeof(RCPTS) / sizeof(RCPTS[0]))

/* A malloc'ed record with these recipients, as qmsg_new takes it; *len gets its length. */
static char *
record_new(const struct spool_str *rcpts, uint32_t nrcpt, size_t *len)
{
	struct spool_envelope env = {
	    .qid = 0x0123456789abcdefull,
	    .arrival_ms = 1700000000000ull,
	    .helo = S("mx.example.com"),
	    .client = S("192.0.2.9"),
	    .from = S("sender@example.com"),
	    .rcpts = rcpts,
	    .nrcpt = nrcpt,
	};
	static const char msg[] = "Subject: hi\r\n\r\nbody\r\n";
	char buf[1024];
	char *rec;

	*len = fixture_record(buf, sizeof(buf), &env, msg, sizeof(msg) - 1);
	rec = malloc(*len);
	cr_assert_not_null(rec);
	memcpy(rec, buf, *len);
	return rec;
}

static void
assert_slice(struct spool_str got, const char *want)
{
	cr_assert_eq(got.len, strlen(want), "got %.*s, want %s", (int)got.len, got.p, want);
	cr_assert_eq(memcmp(got.p, want, got.len), 0, "got %.*s, want %s", (int)got.len, got.p,
		     want);
}

Test(qmsg, a_valid_record_is_decoded_with_its_recipient_table)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);
	struct qmsg *m = qmsg_new(rec, len, 3, QMSG_DEFERRED, 77, 0);

	cr_assert_not_null(m);
	cr_assert_eq(m->rec, rec, "the record is taken, not copied");
	cr_assert_eq(m->rec_len, len);
	cr_assert_eq(atomic_load(&m->refs), 1);
	cr_assert_eq(m->home, 3);
	cr_assert_eq(m->stream, QMSG_DEFERRED);
	cr_assert_eq(m->seq, 77);
	cr_assert_eq(m->v.qid, 0x0123456789abcdefull);
	cr_assert_eq(m->v.nrcpt, NRCPT);
	assert_slice(m->v.from, "sender@example.com");
	cr_assert_eq(m->pending, NRCPT);
	cr_assert_eq(m->bouncing, 0);
	for (uint32_t i = 0; i < NRCPT; i++) {
		assert_slice(m->rcpt[i], RCPTS[i].p);
		/* Slices into the envelope copy, so the body may be dropped. */
		cr_assert(m->rcpt[i].p >= m->env && m->rcpt[i].p + m->rcpt[i].len <= m->env + m->msg_off);
		cr_assert_eq(m->rdone[i], 0);
	}
	qmsg_unref(m);
}

Test(qmsg, the_domain_is_after_the_last_at_sign_as_stored)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);
	struct qmsg *m = qmsg_new(rec, len, 0, QMSG_HOT, 1, 0);
	struct spool_str d;

	cr_assert_not_null(m);
	assert_slice(qmsg_rcpt_domain(m, 0), "Example.ORG"); /* case kept */
	d = qmsg_rcpt_domain(m, 1);
	cr_assert_eq(d.len, 0);
	cr_assert_eq(d.p, m->rcpt[1].p + m->rcpt[1].len, "an empty slice at the address's end");
	assert_slice(qmsg_rcpt_domain(m, 2), "z.example");
	d = qmsg_rcpt_domain(m, 3);
	cr_assert_eq(d.len, 0);
	cr_assert_eq(d.p, m->rcpt[3].p + m->rcpt[3].len);
	qmsg_unref(m);
}

Test(qmsg, a_record_without_recipients_has_nothing_pending)
{
	size_t len;
	char *rec = record_new(NULL, 0, &len);
	struct qmsg *m = qmsg_new(rec, len, 0, QMSG_HOT, 1, 0);

	cr_assert_not_null(m);
	cr_assert_eq(m->v.nrcpt, 0);
	cr_assert_eq(m->pending, 0);
	qmsg_unref(m);
}

/*
 * On failure qmsg_new leaves rec with the caller (delivery and recover free it themselves, or
 * keep it): the test frees it, so under ASan a free inside qmsg_new would show as a double
 * free, and the write before it as a use after free.
 */
static void
assert_rejected_and_still_ours(char *rec, size_t len)
{
	struct qmsg *m = qmsg_new(rec, len, 0, QMSG_HOT, 1, 0);

	cr_assert_null(m);
	rec[0] ^= 1; /* still writable: not freed */
	free(rec);
}

Test(qmsg, a_corrupt_record_is_rejected_and_left_to_the_caller)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);

	rec[len - 1] ^= 0x40; /* the checksum no longer matches */
	assert_rejected_and_still_ours(rec, len);
}

Test(qmsg, a_truncated_record_is_rejected_and_left_to_the_caller)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);

	assert_rejected_and_still_ours(rec, len - 1);
	rec = record_new(RCPTS, NRCPT, &len);
	assert_rejected_and_still_ours(rec, SPOOL_RECORD_HEADER_SIZE);
}

Test(qmsg, garbage_is_rejected_and_left_to_the_caller)
{
	char *rec = malloc(64);

	cr_assert_not_null(rec);
	memset(rec, 'x', 64);
	assert_rejected_and_still_ours(rec, 64);
}

Test(qmsg, references_free_the_message_at_zero_and_not_before)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);
	struct qmsg *m = qmsg_new(rec, len, 0, QMSG_HOT, 1, 0);

	cr_assert_not_null(m);
	qmsg_ref(m); /* two jobs handed out */
	qmsg_ref(m);
	cr_assert_eq(atomic_load(&m->refs), 3);
	qmsg_unref(m);
	qmsg_unref(m);
	/* Still alive: the home's reference. ASan reports a use after free otherwise. */
	cr_assert_eq(atomic_load(&m->refs), 1);
	cr_assert_eq(m->v.qid, 0x0123456789abcdefull);
	assert_slice(m->rcpt[0], "a@Example.ORG");
	m->rdone[0] = 1;
	qmsg_unref(m); /* frees the record, the tables and the qmsg: LeakSanitizer checks */
}

/* The body can be dropped and read back from its segment file, checked against the qid. */
Test(qmsg, a_dropped_body_is_read_back_from_its_segment)
{
	size_t len;
	char *rec = record_new(RCPTS, NRCPT, &len);
	char dir[] = "/tmp/ringmx-qmsg-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert(dfd >= 0);
	char name[64];
	snprintf(name, sizeof name, SPOOL_SEGMENT_FMT, 5u);
	int fd = openat(dfd, name, O_WRONLY | O_CREAT, 0600);
	cr_assert(fd >= 0);
	char pad[100] = {0};
	cr_assert_eq(write(fd, pad, sizeof pad), (ssize_t)sizeof pad);
	cr_assert_eq(write(fd, rec, len), (ssize_t)len);
	close(fd);
	char *copy = malloc(len);
	memcpy(copy, rec, len);
	struct qmsg *m = qmsg_new(copy, len, 0, QMSG_HOT, 5, sizeof pad);
	cr_assert_not_null(m);
	const int dirfd[2] = {dfd, dfd};
	const char *b = qmsg_body_get(m, dirfd);
	cr_assert_not_null(b);
	cr_assert_eq(b, copy + m->msg_off, "in memory: no read");
	qmsg_body_drop(m); /* held: dropped at the put */
	cr_assert(qmsg_body_loaded(m));
	qmsg_body_put(m);
	cr_assert_not(qmsg_body_loaded(m));
	assert_slice(m->v.from, "sender@example.com"); /* the envelope stays */
	uint64_t before = qmsg_body_bytes();
	b = qmsg_body_get(m, dirfd);
	cr_assert_not_null(b, "read back from the segment");
	cr_assert_arr_eq(b, rec + m->msg_off, m->v.msg_len);
	cr_assert_eq(qmsg_body_bytes(), before + len, "a body read back is counted");
	cr_assert(qmsg_spilled(m));
	qmsg_body_put(m);
	/* spilled stays: the body read back goes again at the last put (waiting costs nothing) */
	cr_assert_not(qmsg_body_loaded(m));
	cr_assert_eq(qmsg_body_bytes(), before);
	/* a record elsewhere (wrong offset) is refused, not delivered */
	qmsg_body_drop(m);
	m->off = 1;
	cr_assert_null(qmsg_body_get(m, dirfd));
	qmsg_unref(m);
	unlinkat(dfd, name, 0);
	close(dfd);
	rmdir(dir);
	free(rec);
}
