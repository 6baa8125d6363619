/*
 * Unit tests of start-up recovery: spool directories (DIR and DIR/deferred) are built in a
 * fresh mkdtemp directory from real segment files and completion logs written by hand in the
 * documented 16-byte format (test_journal.c checks the journal writes exactly that), then
 * recover_spool() is run and what its callbacks got is compared with what was written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/crc32c.h"
#include "queue/journal.h"
#include "queue/qmsg.h"
#include "queue/recover.h"
#include "queue/spool_scan.h"
#include "tests/unit/queue/spool_fixture.h"

#define TEST_JOURNAL_SALT 0x4a524e4cu /* journal.c's checksum seed */
#define SEEN_MAX 64
#define SEG_BUF 8192

static char tmpdir[64];
static char defdir[96];

static void
tmpdir_make(void)
{
	strcpy(tmpdir, "/tmp/ringmx-recover-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(defdir, sizeof(defdir), "%s/deferred", tmpdir);
	cr_assert_eq(mkdir(defdir, 0700), 0);
}

static void
tmpdir_remove(void)
{
	fixture_dir_empty(defdir);
	rmdir(defdir);
	fixture_dir_empty(tmpdir);
	rmdir(tmpdir);
}

TestSuite(recover, .init = tmpdir_make, .fini = tmpdir_remove);

/* --- building the spool --- */

static const char *
stream_dir(unsigned stream)
{
	return stream == QMSG_DEFERRED ? defdir : tmpdir;
}

static void
write_file(unsigned stream, const char *name, const void *p, size_t n)
{
	char path[160];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", stream_dir(stream), name);
	f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
}

/* A segment under construction: records are appended to buf. */
struct seg {
	char buf[SEG_BUF];
	size_t len;
};

static const struct spool_str RCPTS[] = {
    {"r0@a.example", 12},
    {"r1@b.example", 12},
    {"r2@a.example", 12},
    {"r3@c.example", 12},
};

/* Appends a record for qid with the first nrcpt of RCPTS; returns its length. */
static size_t
seg_add(struct seg *s, uint64_t qid, uint32_t nrcpt)
{
	struct spool_envelope env = {
	    .qid = qid,
	    .arrival_ms = 1700000000000ull + qid,
	    .helo = S("mx.example.com"),
	    .client = S("192.0.2.1"),
	    .from = S("sender@example.com"),
	    .rcpts = RCPTS,
	    .nrcpt = nrcpt,
	};
	char msg[64];
	int n =
	    snprintf(msg, sizeof(msg), "Subject: %llu\r\n\r\nbody\r\n", (unsigned long long)qid);
	size_t len;

	cr_assert_leq(nrcpt, sizeof(RCPTS) / sizeof(RCPTS[0]));
	len = fixture_record(s->buf + s->len, sizeof(s->buf) - s->len, &env, msg, (size_t)n);
	s->len += len;
	return len;
}

static void
seg_write(unsigned stream, uint32_t seq, const struct seg *s)
{
	char name[32];

	snprintf(name, sizeof(name), SPOOL_SEGMENT_FMT, seq);
	write_file(stream, name, s->buf, s->len);
}

/* Writes seg-N.done with these (qid, rcpt) pairs: u32 crc32c(salt, next 12 bytes), u32 rcpt,
 * u64 qid, little-endian. */
struct done {
	uint64_t qid;
	uint32_t rcpt;
};

static void
done_write(unsigned stream, uint32_t seq, const struct done *d, size_t n)
{
	unsigned char buf[SEEN_MAX * JOURNAL_ENTRY_SIZE];
	char name[32];

	cr_assert_leq(n, SEEN_MAX);
	for (size_t k = 0; k < n; k++) {
		unsigned char *e = buf + k * JOURNAL_ENTRY_SIZE;
		uint32_t crc;

		for (int i = 0; i < 4; i++)
			e[4 + i] = (unsigned char)(d[k].rcpt >> (8 * i));
		for (int i = 0; i < 8; i++)
			e[8 + i] = (unsigned char)(d[k].qid >> (8 * i));
		crc = crc32c(TEST_JOURNAL_SALT, e + 4, 12);
		for (int i = 0; i < 4; i++)
			e[i] = (unsigned char)(crc >> (8 * i));
	}
	snprintf(name, sizeof(name), SPOOL_DONE_FMT, seq);
	write_file(stream, name, buf, n * JOURNAL_ENTRY_SIZE);
}

/* --- what recovery reports --- */

struct seen_seg {
	unsigned stream;
	uint32_t seq;
	unsigned home;
	uint32_t live;
};

struct seen {
	struct qmsg *msg[SEEN_MAX];
	size_t nmsg;
	struct seen_seg seg[SEEN_MAX];
	size_t nseg;
	char what[SEEN_MAX][32];
	uint64_t prob_offset[SEEN_MAX];
	size_t nprob;
	struct recover_stats st;
};

static void
on_msg(void *arg, struct qmsg *m)
{
	struct seen *s = arg;

	cr_assert_lt(s->nmsg, SEEN_MAX);
	s->msg[s->nmsg++] = m;
}

static void
on_segment(void *arg, unsigned stream, uint32_t seq, unsigned home, uint32_t live)
{
	struct seen *s = arg;

	cr_assert_lt(s->nseg, SEEN_MAX);
	s->seg[s->nseg++] = (struct seen_seg){stream, seq, home, live};
}

static void
on_problem(void *arg, const char *path, uint64_t offset, uint64_t skipped, const char *what)
{
	struct seen *s = arg;

	(void)skipped;
	cr_assert_lt(s->nprob, SEEN_MAX);
	cr_assert_eq(strncmp(path, tmpdir, strlen(tmpdir)), 0, "path %s", path);
	snprintf(s->what[s->nprob], sizeof(s->what[0]), "%s", what);
	s->prob_offset[s->nprob++] = offset;
}

static struct seen *
recover(unsigned nshards, bool load)
{
	static struct seen s;
	struct recover_ops ops = {
	    .on_msg = on_msg, .on_segment = on_segment, .on_problem = on_problem, .arg = &s};

	memset(&s, 0, sizeof(s));
	cr_assert_eq(recover_spool(tmpdir, nshards, load, &ops, &s.st), 0);
	return &s;
}

static void
seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->nmsg; i++)
		qmsg_unref(s->msg[i]);
	s->nmsg = 0;
}

static const struct seen_seg *
seg_find(const struct seen *s, unsigned stream, uint32_t seq)
{
	for (size_t i = 0; i < s->nseg; i++)
		if (s->seg[i].stream == stream && s->seg[i].seq == seq)
			return &s->seg[i];
	cr_assert_fail("segment %u of stream %u was not reported", seq, stream);
	return NULL;
}

/* --- tests --- */

Test(recover, a_message_with_every_recipient_done_is_skipped)
{
	static struct seg sg;
	static const struct done d[] = {{1, 1}, {1, 0}};
	struct seen *s;

	seg_add(&sg, 1, 2);
	seg_add(&sg, 2, 2);
	seg_write(QMSG_HOT, 1, &sg);
	done_write(QMSG_HOT, 1, d, 2);
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 1);
	cr_assert_eq(s->msg[0]->v.qid, 2);
	cr_assert_eq(s->msg[0]->pending, 2);
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->st.messages, 1);
	cr_assert_eq(s->st.rcpts_done, 2);
	cr_assert_eq(s->st.rcpts_pending, 2);
	cr_assert_eq(s->nprob, 0);
	seen_free(s);
}

Test(recover, a_partly_done_message_comes_back_with_rdone_and_the_rest_pending)
{
	static struct seg sg;
	/* Entries of other messages, and an index past the message's last recipient, are not its
	 * own: they change nothing. */
	static const struct done d[] = {{7, 1}, {8, 0}, {7, 3}, {7, 9}};
	struct seen *s;
	struct qmsg *m;
	size_t start;

	seg_add(&sg, 6, 1);
	start = sg.len;
	seg_add(&sg, 7, 3);
	seg_write(QMSG_HOT, 4, &sg);
	done_write(QMSG_HOT, 4, d, 4);
	s = recover(2, true);
	cr_assert_eq(s->nmsg, 2);
	m = s->msg[1];
	cr_assert_eq(m->v.qid, 7);
	cr_assert_eq(m->v.nrcpt, 3);
	cr_assert_eq(m->rdone[0], 0);
	cr_assert_eq(m->rdone[1], 1);
	cr_assert_eq(m->rdone[2], 0);
	cr_assert_eq(m->pending, 2);
	cr_assert_eq(m->stream, QMSG_HOT);
	cr_assert_eq(m->seq, 4);
	cr_assert_eq(m->home, 0);
	cr_assert_eq(m->bouncing, 0);
	cr_assert_eq(atomic_load(&m->refs), 1);
	/* Its own copy of the record, decoded. */
	cr_assert_eq(m->rec_len, sg.len - start);
	cr_assert_arr_eq(m->rec, sg.buf + start, m->rec_len);
	cr_assert_eq(m->rcpt[2].len, 12);
	cr_assert_eq(memcmp(m->rcpt[2].p, "r2@a.example", 12), 0);
	cr_assert_eq(s->msg[0]->v.qid, 6);
	cr_assert_eq(s->msg[0]->pending, 1);
	cr_assert_eq(s->st.rcpts_done, 1);
	cr_assert_eq(s->st.rcpts_pending, 3);
	seen_free(s);
}

Test(recover, a_segment_without_a_log_has_nothing_done)
{
	static struct seg sg;
	struct seen *s;

	seg_add(&sg, 1, 4);
	seg_write(QMSG_HOT, 1, &sg);
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 1);
	cr_assert_eq(s->msg[0]->pending, 4);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(s->msg[0]->rdone[i], 0);
	seen_free(s);
}

Test(recover, the_home_shard_is_the_sequence_number_modulo_the_shard_count)
{
	static struct seg sg[3];
	struct seen *s;

	for (uint32_t i = 0; i < 3; i++) {
		seg_add(&sg[i], 100 + i, 1);
		seg_write(QMSG_HOT, 5 + i, &sg[i]);
	}
	s = recover(3, true);
	cr_assert_eq(s->nmsg, 3);
	cr_assert_eq(s->nseg, 3);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(s->msg[i]->seq, 5 + i);
		cr_assert_eq(s->msg[i]->home, (5 + i) % 3);
		cr_assert_eq(seg_find(s, QMSG_HOT, 5 + i)->home, (5 + i) % 3);
	}
	seen_free(s);
	/* A restart with another count moves the homes; no shard count means one. */
	s = recover(2, true);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(s->msg[i]->home, (5 + i) % 2);
	seen_free(s);
	s = recover(0, true);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(s->msg[i]->home, 0);
		cr_assert_eq(s->seg[i].home, 0);
	}
	seen_free(s);
}

Test(recover, every_segment_is_reported_with_its_live_count)
{
	static struct seg a, b, c, d;
	static const struct done da[] = {{1, 0}, {1, 1}, {2, 0}};
	static const struct done db[] = {{4, 0}};
	struct seen *s;

	seg_add(&a, 1, 2); /* segment 1: everything done */
	seg_add(&a, 2, 1);
	seg_write(QMSG_HOT, 1, &a);
	done_write(QMSG_HOT, 1, da, 3);
	seg_add(&b, 3, 2); /* segment 2: two of three messages live */
	seg_add(&b, 4, 1);
	seg_add(&b, 5, 3);
	seg_write(QMSG_HOT, 2, &b);
	done_write(QMSG_HOT, 2, db, 1);
	seg_write(QMSG_HOT, 3, &c); /* segment 3: empty */
	seg_add(&d, 6, 1);	    /* deferred segment 4: one live */
	seg_write(QMSG_DEFERRED, 4, &d);
	s = recover(4, true);
	cr_assert_eq(s->nseg, 4);
	/* The deferred stream first, then the hot one, each in sequence order. */
	cr_assert_eq(s->seg[0].stream, QMSG_DEFERRED);
	cr_assert_eq(s->seg[0].seq, 4);
	cr_assert_eq(s->seg[0].live, 1);
	cr_assert_eq(s->seg[0].home, 0);
	for (uint32_t i = 1; i < 4; i++) {
		cr_assert_eq(s->seg[i].stream, QMSG_HOT);
		cr_assert_eq(s->seg[i].seq, i);
		cr_assert_eq(s->seg[i].home, i);
	}
	cr_assert_eq(s->seg[1].live, 0);
	cr_assert_eq(s->seg[2].live, 2);
	cr_assert_eq(s->seg[3].live, 0);
	cr_assert_eq(s->st.segments, 4);
	cr_assert_eq(s->st.messages, 3);
	cr_assert_eq(s->nmsg, 3);
	cr_assert_eq(s->msg[0]->stream, QMSG_DEFERRED);
	cr_assert_eq(s->msg[0]->v.qid, 6);
	cr_assert_eq(s->msg[1]->v.qid, 3);
	cr_assert_eq(s->msg[2]->v.qid, 5);
	seen_free(s);
}

Test(recover, a_deferred_copy_wins_over_the_hot_record_with_the_same_qid)
{
	static struct seg hot, def;
	static const struct done dh[] = {{42, 0}};
	struct seen *s;

	/* The hot copy lost its "moved" entries (say, a crash before they were written). */
	seg_add(&hot, 41, 1);
	seg_add(&hot, 42, 3);
	seg_write(QMSG_HOT, 3, &hot);
	done_write(QMSG_HOT, 3, dh, 1);
	seg_add(&def, 42, 2);
	seg_write(QMSG_DEFERRED, 10, &def);
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 2);
	cr_assert_eq(s->msg[0]->v.qid, 42);
	cr_assert_eq(s->msg[0]->stream, QMSG_DEFERRED);
	cr_assert_eq(s->msg[0]->seq, 10);
	cr_assert_eq(s->msg[0]->pending, 2);
	cr_assert_eq(s->msg[1]->v.qid, 41);
	cr_assert_eq(seg_find(s, QMSG_DEFERRED, 10)->live, 1);
	cr_assert_eq(seg_find(s, QMSG_HOT, 3)->live, 1);
	cr_assert_eq(s->st.records, 3);
	cr_assert_eq(s->st.messages, 2);
	cr_assert_eq(s->st.max_qid, 42);
	seen_free(s);
}

Test(recover, a_hot_record_stays_skipped_when_its_deferred_copy_is_all_done)
{
	static struct seg hot, def;
	static const struct done dd[] = {{42, 0}, {42, 1}};
	struct seen *s;

	/* The deferred copy was delivered; its segment not yet removed. The hot copy still must
	 * not come back: it was handed over to the deferred stream. */
	seg_add(&hot, 42, 3);
	seg_write(QMSG_HOT, 3, &hot);
	seg_add(&def, 42, 2);
	seg_write(QMSG_DEFERRED, 10, &def);
	done_write(QMSG_DEFERRED, 10, dd, 2);
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 0);
	cr_assert_eq(s->st.messages, 0);
	cr_assert_eq(seg_find(s, QMSG_DEFERRED, 10)->live, 0);
	cr_assert_eq(seg_find(s, QMSG_HOT, 3)->live, 0);
	seen_free(s);
}

Test(recover, the_logs_of_the_two_streams_are_not_mixed_up)
{
	static struct seg hot, def;
	static const struct done dh[] = {{1, 0}};
	static const struct done dd[] = {{2, 1}};
	struct seen *s;

	/* The same sequence number in both directories, each with its own log. */
	seg_add(&hot, 1, 2);
	seg_add(&hot, 2, 2);
	seg_write(QMSG_HOT, 7, &hot);
	done_write(QMSG_HOT, 7, dh, 1);
	seg_add(&def, 2, 2);
	seg_write(QMSG_DEFERRED, 7, &def);
	done_write(QMSG_DEFERRED, 7, dd, 1);
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 2);
	cr_assert_eq(s->msg[0]->v.qid, 2);
	cr_assert_eq(s->msg[0]->stream, QMSG_DEFERRED);
	cr_assert_eq(s->msg[0]->rdone[0], 0);
	cr_assert_eq(s->msg[0]->rdone[1], 1);
	cr_assert_eq(s->msg[1]->v.qid, 1);
	cr_assert_eq(s->msg[1]->stream, QMSG_HOT);
	cr_assert_eq(s->msg[1]->rdone[0], 1);
	cr_assert_eq(s->msg[1]->rdone[1], 0);
	seen_free(s);
}

Test(recover, max_seq_covers_both_directories)
{
	static struct seg a;
	struct seen *s;

	seg_add(&a, 1, 1);
	seg_write(QMSG_HOT, 7, &a);
	seg_write(QMSG_DEFERRED, 50, &a);
	s = recover(1, false);
	cr_assert_eq(s->st.max_seq, 50);
	seg_write(QMSG_HOT, 90, &(struct seg){.len = 0}); /* an empty segment counts too */
	s = recover(1, false);
	cr_assert_eq(s->st.max_seq, 90);
}

Test(recover, max_seq_is_zero_for_an_empty_spool_without_a_deferred_directory)
{
	struct seen *s;

	rmdir(defdir);
	s = recover(1, true);
	cr_assert_eq(s->st.max_seq, 0);
	cr_assert_eq(s->st.segments, 0);
	cr_assert_eq(s->nseg, 0);
	cr_assert_eq(s->nmsg, 0);
}

Test(recover, max_qid_is_the_largest_qid_seen_done_or_not)
{
	static struct seg a, b;
	static const struct done d[] = {{0xfedcba9876543210ull, 0}};
	struct seen *s;

	seg_add(&a, 3, 1);
	seg_add(&a, 0xfedcba9876543210ull, 1); /* done: still a qid that was used */
	seg_add(&a, 17, 1);
	seg_write(QMSG_HOT, 1, &a);
	done_write(QMSG_HOT, 1, d, 1);
	seg_add(&b, 0x100, 1);
	seg_write(QMSG_DEFERRED, 1, &b);
	s = recover(1, false);
	cr_assert_eq(s->st.max_qid, 0xfedcba9876543210ull);
	cr_assert_eq(s->st.messages, 3);
}

static void
on_msg_must_not_be_called(void *arg, struct qmsg *m)
{
	(void)arg;
	(void)m;
	cr_assert_fail("on_msg called with load=false");
}

Test(recover, without_load_it_counts_and_reports_segments_but_makes_no_messages)
{
	static struct seg a;
	static const struct done d[] = {{2, 0}};
	struct seen s = {.nmsg = 0};
	struct recover_ops ops = {.on_msg = on_msg_must_not_be_called,
				  .on_segment = on_segment,
				  .on_problem = on_problem,
				  .arg = &s};

	seg_add(&a, 1, 2);
	seg_add(&a, 2, 1);
	seg_add(&a, 3, 3);
	seg_write(QMSG_HOT, 2, &a);
	done_write(QMSG_HOT, 2, d, 1);
	cr_assert_eq(recover_spool(tmpdir, 2, false, &ops, &s.st), 0);
	cr_assert_eq(s.st.records, 3);
	cr_assert_eq(s.st.messages, 2);
	cr_assert_eq(s.st.rcpts_pending, 5);
	cr_assert_eq(s.st.rcpts_done, 1);
	cr_assert_eq(s.nseg, 1);
	cr_assert_eq(s.seg[0].live, 2);
	cr_assert_eq(s.seg[0].home, 0);
}

Test(recover, no_callbacks_at_all_is_fine)
{
	static struct seg a;
	struct recover_ops ops = {0};
	struct recover_stats st;

	seg_add(&a, 1, 2);
	seg_write(QMSG_HOT, 1, &a);
	seg_write(QMSG_HOT, 2, &(struct seg){.len = 0});
	cr_assert_eq(recover_spool(tmpdir, 1, true, &ops, &st), 0);
	cr_assert_eq(st.messages, 1);
	cr_assert_eq(st.segments, 2);
}

Test(recover, a_corrupt_region_is_reported_and_the_records_after_it_recovered)
{
	static struct seg a;
	static const struct done d[] = {{3, 1}};
	size_t r1, r2;
	struct seen *s;

	r1 = seg_add(&a, 1, 1);
	r2 = seg_add(&a, 2, 2);
	seg_add(&a, 3, 2);
	a.buf[r1 + r2 - 3] ^= 0x20; /* a flipped bit in the second record's message */
	seg_write(QMSG_HOT, 1, &a);
	done_write(QMSG_HOT, 1, d, 1);
	s = recover(1, true);
	cr_assert_eq(s->nprob, 1);
	cr_assert_str_eq(s->what[0], "corrupt record");
	cr_assert_eq(s->prob_offset[0], r1);
	cr_assert_eq(s->st.corrupt_regions, 1);
	cr_assert_eq(s->st.truncated_tails, 0);
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->nmsg, 2);
	cr_assert_eq(s->msg[0]->v.qid, 1);
	cr_assert_eq(s->msg[1]->v.qid, 3);
	/* The log still applies to the records after the bad region. */
	cr_assert_eq(s->msg[1]->rdone[1], 1);
	cr_assert_eq(s->msg[1]->pending, 1);
	cr_assert_eq(s->seg[0].live, 2);
	seen_free(s);
}

Test(recover, a_truncated_tail_is_reported_and_the_whole_records_recovered)
{
	static struct seg a;
	size_t r1, r2;
	struct seen *s;

	r1 = seg_add(&a, 1, 1);
	r2 = seg_add(&a, 2, 2);
	a.len = r1 + r2 / 2;
	seg_write(QMSG_DEFERRED, 3, &a);
	s = recover(1, true);
	cr_assert_eq(s->nprob, 1);
	cr_assert_str_eq(s->what[0], "truncated tail");
	cr_assert_eq(s->st.truncated_tails, 1);
	cr_assert_eq(s->nmsg, 1);
	cr_assert_eq(s->msg[0]->v.qid, 1);
	cr_assert_eq(s->msg[0]->stream, QMSG_DEFERRED);
	seen_free(s);
}

Test(recover, a_torn_completion_log_keeps_its_whole_entries)
{
	static struct seg a;
	static const struct done d[] = {{1, 0}, {1, 1}};
	char path[160];
	struct seen *s;

	seg_add(&a, 1, 2);
	seg_write(QMSG_HOT, 5, &a);
	done_write(QMSG_HOT, 5, d, 2);
	snprintf(path, sizeof(path), "%s/" SPOOL_DONE_FMT, tmpdir, 5u);
	cr_assert_eq(truncate(path, JOURNAL_ENTRY_SIZE + 9), 0);
	/* The second entry is lost: that recipient is delivered again, the first is not. */
	s = recover(1, true);
	cr_assert_eq(s->nmsg, 1);
	cr_assert_eq(s->msg[0]->rdone[0], 1);
	cr_assert_eq(s->msg[0]->rdone[1], 0);
	cr_assert_eq(s->msg[0]->pending, 1);
	seen_free(s);
}

Test(recover, files_that_are_not_segments_are_ignored)
{
	static struct seg a;
	struct seen *s;

	seg_add(&a, 1, 1);
	seg_write(QMSG_HOT, 1, &a);
	write_file(QMSG_HOT, "seg-0000000002.rmx.tmp", a.buf, a.len);
	write_file(QMSG_DEFERRED, "seg-3.rmx", a.buf, a.len);
	write_file(QMSG_HOT, "README", "x\n", 2);
	s = recover(1, true);
	cr_assert_eq(s->nseg, 1);
	cr_assert_eq(s->st.segments, 1);
	cr_assert_eq(s->st.max_seq, 1);
	cr_assert_eq(s->nmsg, 1);
	seen_free(s);
}

Test(recover, a_spool_directory_that_cannot_be_read_is_an_error)
{
	struct recover_ops ops = {0};
	struct recover_stats st;
	char path[160];

	/* A file where the spool directory should be. */
	snprintf(path, sizeof(path), "%s/notadir", tmpdir);
	write_file(QMSG_HOT, "notadir", "x", 1);
	cr_assert_eq(recover_spool(path, 1, true, &ops, &st), -ENOTDIR);
}
