/*
 * Unit tests of the spool directory scanner: segment files are written into a fresh mkdtemp
 * directory, scanned, and what the callbacks saw is compared with what was written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/spool_scan.h"
#include "tests/unit/queue/spool_fixture.h"

#define SEEN_MAX 64

struct seen_record {
	char segment[32];
	uint64_t offset;
	uint64_t qid;
	uint32_t total_len;
};

struct seen_problem {
	char segment[32];
	uint64_t offset;
	uint64_t skipped;
	char what[64];
};

struct seen {
	struct seen_record rec[SEEN_MAX];
	size_t nrec;
	struct seen_problem prob[SEEN_MAX];
	size_t nprob;
	struct spool_scan_stats st;
};

static char tmpdir[64];

static void
tmpdir_make(void)
{
	strcpy(tmpdir, "/tmp/ringmx-scan-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

/* Removes what the test wrote: plain files and, for one test, empty directories. */
static void
tmpdir_remove(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    unlinkat(dirfd(d), de->d_name, 0) < 0)
			unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
	rmdir(tmpdir);
}

TestSuite(spool_scan, .init = tmpdir_make, .fini = tmpdir_remove);

static void
write_file(const char *name, const void *p, size_t n)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	cr_assert_eq(fclose(f), 0);
}

static void
write_segment(uint32_t seq, const void *p, size_t n)
{
	char name[32];

	snprintf(name, sizeof(name), SPOOL_SEGMENT_FMT, seq);
	write_file(name, p, n);
}

static const char *
basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static void
on_record(void *arg, const char *path, uint64_t offset, const struct spool_record_view *rec)
{
	struct seen *s = arg;
	struct seen_record *r;

	cr_assert_lt(s->nrec, SEEN_MAX);
	cr_assert_eq(strncmp(path, tmpdir, strlen(tmpdir)), 0, "path %s", path);
	r = &s->rec[s->nrec++];
	snprintf(r->segment, sizeof(r->segment), "%s", basename_of(path));
	r->offset = offset;
	r->qid = rec->qid;
	r->total_len = rec->total_len;
}

static void
on_problem(void *arg, const char *path, uint64_t offset, uint64_t skipped, const char *what)
{
	struct seen *s = arg;
	struct seen_problem *p;

	cr_assert_lt(s->nprob, SEEN_MAX);
	p = &s->prob[s->nprob++];
	snprintf(p->segment, sizeof(p->segment), "%s", basename_of(path));
	p->offset = offset;
	p->skipped = skipped;
	snprintf(p->what, sizeof(p->what), "%s", what);
}

static struct seen *
scan(void)
{
	static struct seen s;
	struct spool_scan_ops ops = {.on_record = on_record, .on_problem = on_problem, .arg = &s};

	memset(&s, 0, sizeof(s));
	cr_assert_eq(spool_scan_dir(tmpdir, &ops, &s.st), 0);
	return &s;
}

/* Appends a simple record with this qid to buf at *len. */
static size_t
append(char *buf, size_t cap, size_t *len, uint64_t qid)
{
	char msg[64];
	size_t n;

	snprintf(msg, sizeof(msg), "Subject: message %llu\r\n\r\nbody\r\n",
		 (unsigned long long)qid);
	n = fixture_simple_record(buf + *len, cap - *len, qid, msg);
	*len += n;
	return n;
}

Test(spool_scan, segment_names_need_exactly_ten_digits)
{
	static const struct {
		const char *name;
		bool ok;
		uint32_t seq;
	} cases[] = {
	    {"seg-0000000000.rmx", true, 0},
	    {"seg-0000000042.rmx", true, 42},
	    {"seg-4294967295.rmx", true, 4294967295u},
	    {"seg-4294967296.rmx", false, 0}, /* past what a u32 sequence can be */
	    {"seg-9999999999.rmx", false, 0},
	    {"seg-000000042.rmx", false, 0},
	    {"seg-00000000042.rmx", false, 0},
	    {"seg-00000000a2.rmx", false, 0},
	    {"seg-+000000042.rmx", false, 0},
	    {"seg-0000000042.rmx.tmp", false, 0},
	    {"seg-0000000042.RMX", false, 0},
	    {"xseg-000000042.rmx", false, 0},
	    {"", false, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t seq = 12345;

		cr_assert_eq(spool_segment_name_parse(cases[i].name, &seq), cases[i].ok, "%s",
			     cases[i].name);
		if (cases[i].ok)
			cr_assert_eq(seq, cases[i].seq, "%s", cases[i].name);
	}
}

Test(spool_scan, records_are_replayed_in_segment_sequence_order)
{
	static const uint32_t seqs[] = {10, 2, 1000000000, 1}; /* written out of order */
	static const uint32_t order[] = {1, 2, 10, 1000000000};
	char buf[2048];
	struct seen *s;

	for (size_t i = 0; i < 4; i++) {
		size_t len = 0;

		for (uint64_t k = 0; k < 3; k++)
			append(buf, sizeof(buf), &len, (uint64_t)seqs[i] * 10 + k);
		write_segment(seqs[i], buf, len);
	}
	s = scan();
	cr_assert_eq(s->st.segments, 4);
	cr_assert_eq(s->st.records, 12);
	cr_assert_eq(s->st.max_seq, 1000000000u);
	cr_assert_eq(s->nprob, 0);
	for (size_t i = 0; i < 12; i++) {
		char want[32];

		snprintf(want, sizeof(want), SPOOL_SEGMENT_FMT, order[i / 3]);
		cr_assert_str_eq(s->rec[i].segment, want);
		cr_assert_eq(s->rec[i].qid, (uint64_t)order[i / 3] * 10 + i % 3);
		/* Each segment starts at 0 and its records follow one another without gaps. */
		cr_assert_eq(s->rec[i].offset,
			     i % 3 == 0 ? 0 : s->rec[i - 1].offset + s->rec[i - 1].total_len);
	}
}

Test(spool_scan, stats_count_records_and_their_bytes)
{
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	size_t b = append(buf, sizeof(buf), &len, 2);
	struct seen *s;

	write_segment(3, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->st.record_bytes, a + b);
	cr_assert_eq(s->st.skipped_bytes, 0);
	cr_assert_eq(s->st.corrupt_regions + s->st.truncated_tails, 0);
	cr_assert_eq(s->rec[1].offset, a);
	cr_assert_eq(s->rec[1].total_len, b);
}

Test(spool_scan, other_files_in_the_directory_are_ignored)
{
	char buf[1024], path[128];
	size_t len = 0;
	struct seen *s;

	append(buf, sizeof(buf), &len, 7);
	write_segment(5, buf, len);
	/* Valid records under names that are not segments must not be replayed. */
	write_file("seg-5.rmx", buf, len);
	write_file("seg-00000000005.rmx", buf, len);
	write_file("seg-0000000006.rmx.tmp", buf, len);
	write_file("README", "not a segment\n", 14);
	snprintf(path, sizeof(path), "%s/journal", tmpdir);
	cr_assert_eq(mkdir(path, 0700), 0);
	s = scan();
	cr_assert_eq(s->st.segments, 1);
	cr_assert_eq(s->st.records, 1);
	cr_assert_eq(s->st.max_seq, 5);
	cr_assert_eq(s->nprob, 0);
}

Test(spool_scan, empty_directory_and_empty_segment_are_fine)
{
	struct seen *s = scan();

	cr_assert_eq(s->st.segments, 0);
	cr_assert_eq(s->st.max_seq, 0);
	write_segment(1, "", 0);
	s = scan();
	cr_assert_eq(s->st.segments, 1);
	cr_assert_eq(s->st.records, 0);
	cr_assert_eq(s->nprob, 0);
	cr_assert_eq(s->st.max_seq, 1);
}

Test(spool_scan, missing_directory_is_an_error)
{
	struct spool_scan_ops ops = {0};
	struct spool_scan_stats st;

	cr_assert_eq(spool_scan_dir("/nonexistent/ringmx/spool", &ops, &st), -ENOENT);
}

Test(spool_scan, scanning_works_without_callbacks)
{
	char buf[1024];
	size_t len = 0;
	struct spool_scan_ops ops = {0};
	struct spool_scan_stats st;

	append(buf, sizeof(buf), &len, 1);
	write_segment(1, buf, len);
	write_segment(2, buf, len - 1);
	cr_assert_eq(spool_scan_dir(tmpdir, &ops, &st), 0);
	cr_assert_eq(st.records, 1);
	cr_assert_eq(st.truncated_tails, 1);
}

Test(spool_scan, truncated_tail_is_detected_and_not_a_crash)
{
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	size_t b = append(buf, sizeof(buf), &len, 2);
	size_t c = append(buf, sizeof(buf), &len, 3);
	struct seen *s;

	write_segment(1, buf, a + b + c / 2);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->st.truncated_tails, 1);
	cr_assert_eq(s->st.corrupt_regions, 0);
	cr_assert_eq(s->st.skipped_bytes, c / 2);
	cr_assert_eq(s->nprob, 1);
	cr_assert_str_eq(s->prob[0].what, "truncated tail");
	cr_assert_eq(s->prob[0].offset, a + b);
	cr_assert_eq(s->prob[0].skipped, c / 2);
}

Test(spool_scan, a_segment_cut_at_every_byte_keeps_the_records_before_the_cut)
{
	char buf[2048];
	size_t len = 0, ends[3];
	struct seen *s;

	for (int i = 0; i < 3; i++) {
		append(buf, sizeof(buf), &len, (uint64_t)i);
		ends[i] = len;
	}
	for (size_t cut = 0; cut <= len; cut++) {
		size_t whole = 0, boundary = 0;

		while (whole < 3 && ends[whole] <= cut)
			boundary = ends[whole++];
		write_segment(1, buf, cut);
		s = scan();
		cr_assert_eq(s->st.records, whole, "cut %zu", cut);
		cr_assert_eq(s->st.truncated_tails, cut > boundary, "cut %zu", cut);
		cr_assert_eq(s->st.corrupt_regions, 0, "cut %zu", cut);
		cr_assert_eq(s->st.skipped_bytes, cut - boundary, "cut %zu", cut);
	}
}

Test(spool_scan, records_after_a_corrupt_region_are_recovered)
{
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	size_t b = append(buf, sizeof(buf), &len, 2);
	struct seen *s;

	append(buf, sizeof(buf), &len, 3);
	buf[a + b - 3] ^= 0x20; /* a flipped bit in the second record's message */
	write_segment(1, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->rec[0].qid, 1);
	cr_assert_eq(s->rec[1].qid, 3);
	cr_assert_eq(s->rec[1].offset, a + b);
	cr_assert_eq(s->st.corrupt_regions, 1);
	cr_assert_eq(s->st.truncated_tails, 0);
	cr_assert_eq(s->st.skipped_bytes, b);
	cr_assert_eq(s->nprob, 1);
	cr_assert_str_eq(s->prob[0].what, "corrupt record");
	cr_assert_eq(s->prob[0].offset, a);
	cr_assert_eq(s->prob[0].skipped, b);
}

Test(spool_scan, garbage_holding_the_magic_is_skipped_as_one_region)
{
	static const char junk[] = "RMX1RMX1\x3c\0\0\0\x01\0\x01\0 garbage RMX1 and zeros\0\0\0RMX";
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	struct seen *s;

	memcpy(buf + len, junk, sizeof(junk));
	len += sizeof(junk);
	append(buf, sizeof(buf), &len, 2);
	write_segment(1, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->rec[1].offset, a + sizeof(junk));
	cr_assert_eq(s->nprob, 1);
	cr_assert_eq(s->prob[0].offset, a);
	cr_assert_eq(s->prob[0].skipped, sizeof(junk));
	cr_assert_str_eq(s->prob[0].what, "corrupt record");
}

Test(spool_scan, a_record_cut_short_before_a_valid_one_is_a_corrupt_region)
{
	char buf[2048], rec2[512];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	size_t b = fixture_simple_record(rec2, sizeof(rec2), 2, "the torn one\r\n");
	struct seen *s;

	/* A write torn in the middle of a segment, later records appended after it. */
	memcpy(buf + len, rec2, b / 2);
	len += b / 2;
	append(buf, sizeof(buf), &len, 3);
	write_segment(1, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->rec[1].qid, 3);
	cr_assert_eq(s->st.corrupt_regions, 1);
	cr_assert_eq(s->st.truncated_tails, 0);
	cr_assert_eq(s->prob[0].offset, a);
	cr_assert_eq(s->prob[0].skipped, b / 2);
	cr_assert_str_eq(s->prob[0].what, "corrupt record");
}

Test(spool_scan, a_corrupt_last_record_is_reported_as_corrupt)
{
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	size_t b = append(buf, sizeof(buf), &len, 2);
	struct seen *s;

	/* Complete but with a bad CRC: bytes are missing or wrong, not just not there yet. */
	buf[len - 1] ^= 1;
	write_segment(1, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 1);
	cr_assert_eq(s->st.corrupt_regions, 1);
	cr_assert_eq(s->st.truncated_tails, 0);
	cr_assert_eq(s->prob[0].offset, a);
	cr_assert_eq(s->prob[0].skipped, b);
}

Test(spool_scan, a_record_inside_a_valid_message_is_not_replayed_on_its_own)
{
	char inner[512], msg[600], buf[2048];
	size_t n = fixture_simple_record(inner, sizeof(inner), 666, "forged\r\n"), len = 0;
	struct spool_envelope env = {.qid = 1, .from = S("a@b")};
	struct seen *s;

	/* A BDAT message may carry any bytes, a whole spool record included. */
	memcpy(msg, "X: y\r\n\r\n", 8);
	memcpy(msg + 8, inner, n);
	len = fixture_record(buf, sizeof(buf), &env, msg, 8 + n);
	write_segment(1, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 1);
	cr_assert_eq(s->rec[0].qid, 1);
	cr_assert_eq(s->nprob, 0);
}

Test(spool_scan, a_segment_that_cannot_be_read_is_reported_and_skipped)
{
	char buf[1024], path[128];
	size_t len = 0;
	struct seen *s;

	append(buf, sizeof(buf), &len, 1);
	write_segment(1, buf, len);
	write_segment(9, buf, len);
	snprintf(path, sizeof(path), "%s/seg-0000000005.rmx", tmpdir);
	cr_assert_eq(mkdir(path, 0700), 0);
	s = scan();
	cr_assert_eq(s->st.records, 2);
	cr_assert_eq(s->st.segments, 2);
	cr_assert_eq(s->st.max_seq, 9);
	cr_assert_eq(s->nprob, 1);
	cr_assert_str_eq(s->prob[0].segment, "seg-0000000005.rmx");
	cr_assert_eq(s->rec[1].segment[13], '9');
}

Test(spool_scan, problems_in_one_segment_do_not_leak_into_the_next)
{
	char buf[2048];
	size_t len = 0, a = append(buf, sizeof(buf), &len, 1);
	struct seen *s;

	append(buf, sizeof(buf), &len, 2);
	write_segment(1, buf, a + 10); /* tail of segment 1 torn */
	write_segment(2, buf, len);
	s = scan();
	cr_assert_eq(s->st.records, 3);
	cr_assert_eq(s->st.truncated_tails, 1);
	cr_assert_eq(s->st.skipped_bytes, 10);
	cr_assert_str_eq(s->rec[1].segment, "seg-0000000002.rmx");
	cr_assert_eq(s->rec[1].offset, 0);
}
