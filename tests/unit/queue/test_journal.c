/*
 * Unit tests of the completion logs: entries go through a real io_uring (flush, submit, wait,
 * journal_complete) into files under a fresh mkdtemp directory, and are read back with
 * journal_read. Where the kernel has no io_uring, the tests that need one are skipped.
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
#include <liburing.h>

#include "queue/crc32c.h"
#include "queue/journal.h"
#include "queue/qmsg.h"
#include "queue/spool_scan.h"
#include "tests/unit/queue/spool_fixture.h"

/* journal.c's checksum seed (private there): an all-zero region is not a valid entry. */
#define TEST_JOURNAL_SALT 0x4a524e4cu
/* Like delivery's: an op tag above the journal's bits, which must come back untouched. */
#define UD_BASE ((uint64_t)0x5a << 56)
#define ENTRIES_MAX 4096

static char tmpdir[64];
static char defdir[96];
static int dirfds[2] = {-1, -1};

static void
tmpdir_make(void)
{
	strcpy(tmpdir, "/tmp/ringmx-journal-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(defdir, sizeof(defdir), "%s/deferred", tmpdir);
	cr_assert_eq(mkdir(defdir, 0700), 0);
	dirfds[QMSG_HOT] = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dirfds[QMSG_DEFERRED] = open(defdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dirfds[0], 0);
	cr_assert_geq(dirfds[1], 0);
}

static void
tmpdir_remove(void)
{
	for (int i = 0; i < 2; i++)
		if (dirfds[i] >= 0)
			close(dirfds[i]);
	fixture_dir_empty(defdir);
	rmdir(defdir);
	fixture_dir_empty(tmpdir);
	rmdir(tmpdir);
}

TestSuite(journal, .init = tmpdir_make, .fini = tmpdir_remove, .timeout = 20);

struct entry {
	uint64_t qid;
	uint32_t rcpt;
};

struct got {
	struct entry e[ENTRIES_MAX];
	size_t n;
};

static void
on_entry(void *arg, uint64_t qid, uint32_t rcpt)
{
	struct got *g = arg;

	cr_assert_lt(g->n, ENTRIES_MAX);
	g->e[g->n++] = (struct entry){qid, rcpt};
}

/* Reads seg-N.done of stream into a static table; asserts journal_read's count matches. */
static struct got *
read_log(unsigned stream, uint32_t seq)
{
	static struct got g;
	long n;

	memset(&g, 0, sizeof(g));
	n = journal_read(dirfds[stream], seq, on_entry, &g);
	cr_assert_geq(n, 0, "journal_read: %s", strerror((int)-n));
	cr_assert_eq((size_t)n, g.n);
	return &g;
}

static void
done_path(char *out, size_t cap, unsigned stream, uint32_t seq)
{
	char name[32];

	snprintf(name, sizeof(name), SPOOL_DONE_FMT, seq);
	snprintf(out, cap, "%s/%s", stream == QMSG_HOT ? tmpdir : defdir, name);
}

static off_t
log_size(unsigned stream, uint32_t seq)
{
	char path[160];
	struct stat st;

	done_path(path, sizeof(path), stream, seq);
	if (stat(path, &st) < 0)
		return -errno;
	return st.st_size;
}

static void
ring_init(struct io_uring *ring)
{
	int rc = io_uring_queue_init(64, ring, 0);

	if (rc < 0)
		cr_skip_test("io_uring is not available here: %s", strerror(-rc));
}

static struct journal *
journal_make(bool fsync)
{
	struct journal *j =
	    journal_new(&(struct journal_params){.dirfd = {dirfds[0], dirfds[1]}, .fsync = fsync});

	cr_assert_not_null(j);
	return j;
}

/* Waits for one CQE, checks it is the journal's, and hands it over. */
static void
complete_one(struct journal *j, struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int rc = io_uring_wait_cqe(ring, &cqe);

	cr_assert_eq(rc, 0, "io_uring_wait_cqe: %s", strerror(-rc));
	cr_assert_eq(cqe->user_data >> JOURNAL_UD_BITS, UD_BASE >> JOURNAL_UD_BITS);
	cr_assert_geq(cqe->res, 0, "journal op failed: %s", strerror(-cqe->res));
	journal_complete(j, cqe);
	io_uring_cqe_seen(ring, cqe);
}

/* What a shard's loop does: flush before each wait, hand the CQEs back; until idle. Returns
 * the number of CQEs. */
static unsigned
run_until_idle(struct journal *j, struct io_uring *ring)
{
	unsigned cqes = 0;

	for (int turns = 0; journal_busy(j); turns++) {
		cr_assert_lt(turns, 1000, "the journal never goes idle");
		journal_flush(j, ring, UD_BASE);
		io_uring_submit(ring);
		complete_one(j, ring);
		cqes++;
	}
	return cqes;
}

static struct entry
entry_of(size_t i)
{
	/* Values that fill every byte, so that an endianness or width slip shows. */
	return (struct entry){0x0123456789abcdefull * (i + 1) ^ (uint64_t)i << 56,
			      (uint32_t)(i * 2654435761u)};
}

static void
assert_entries(const struct got *g, size_t from, size_t n)
{
	cr_assert_eq(g->n, n);
	for (size_t i = 0; i < n; i++) {
		struct entry want = entry_of(from + i);

		cr_assert_eq(g->e[i].qid, want.qid, "entry %zu", i);
		cr_assert_eq(g->e[i].rcpt, want.rcpt, "entry %zu", i);
	}
}

static void
add_entries(struct journal *j, unsigned stream, uint32_t seq, size_t from, size_t n)
{
	for (size_t i = from; i < from + n; i++) {
		struct entry e = entry_of(i);

		journal_add(j, stream, seq, e.qid, e.rcpt);
	}
}

static unsigned
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	cr_assert_not_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

Test(journal, entries_read_back_exactly_as_added_in_order)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;

	ring_init(&ring);
	j = journal_make(true);
	add_entries(j, QMSG_HOT, 7, 0, 100);
	cr_assert(journal_busy(j));
	/* One write and one linked fdatasync for the batch. */
	cr_assert_eq(run_until_idle(j, &ring), 2);
	cr_assert_not(journal_busy(j));
	journal_stats_get(j, &st);
	cr_assert_eq(st.entries, 100);
	cr_assert_eq(st.batches, 1);
	cr_assert_eq(st.errors, 0);
	cr_assert_eq(log_size(QMSG_HOT, 7), 100 * JOURNAL_ENTRY_SIZE);
	assert_entries(read_log(QMSG_HOT, 7), 0, 100);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, the_entry_layout_is_crc_rcpt_qid_little_endian)
{
	struct io_uring ring;
	struct journal *j;
	unsigned char e[JOURNAL_ENTRY_SIZE], want[JOURNAL_ENTRY_SIZE];
	char path[160];
	uint32_t crc;
	FILE *f;

	ring_init(&ring);
	j = journal_make(true);
	journal_add(j, QMSG_HOT, 1, 0x1122334455667788ull, 0xa1b2c3d4u);
	run_until_idle(j, &ring);
	done_path(path, sizeof(path), QMSG_HOT, 1);
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(e, 1, sizeof(e), f), sizeof(e));
	cr_assert_eq(fgetc(f), EOF);
	fclose(f);
	/* The documented format, built by hand: what test_recover.c writes as well. */
	memcpy(want + 4, "\xd4\xc3\xb2\xa1\x88\x77\x66\x55\x44\x33\x22\x11", 12);
	crc = crc32c(TEST_JOURNAL_SALT, want + 4, 12);
	for (int i = 0; i < 4; i++)
		want[i] = (unsigned char)(crc >> (8 * i));
	cr_assert_arr_eq(e, want, sizeof(e));
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, entries_added_while_a_batch_is_in_flight_follow_it)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;

	ring_init(&ring);
	j = journal_make(true);
	add_entries(j, QMSG_HOT, 3, 0, 10);
	journal_flush(j, &ring, UD_BASE);
	io_uring_submit(&ring);
	/* The file has a batch in flight: these wait for the next flush. */
	add_entries(j, QMSG_HOT, 3, 10, 5);
	journal_flush(j, &ring, UD_BASE);
	cr_assert_eq(io_uring_sq_ready(&ring), 0,
		     "a second batch went out while one was in flight");
	run_until_idle(j, &ring);
	journal_stats_get(j, &st);
	cr_assert_eq(st.batches, 2);
	cr_assert_eq(st.entries, 15);
	cr_assert_eq(st.errors, 0);
	assert_entries(read_log(QMSG_HOT, 3), 0, 15);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, each_segment_and_stream_gets_its_own_file)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;

	ring_init(&ring);
	j = journal_make(true);
	/* Interleaved: each file keeps only its own entries, in order. */
	for (size_t i = 0; i < 30; i += 3) {
		add_entries(j, QMSG_HOT, 1, i, 1);
		add_entries(j, QMSG_HOT, 2, 100 + i, 2);
	}
	add_entries(j, QMSG_DEFERRED, 1, 500, 4);
	/* Three files: three writes and three fdatasyncs, all in one flush. */
	journal_flush(j, &ring, UD_BASE);
	cr_assert_eq(io_uring_sq_ready(&ring), 6);
	cr_assert_eq(run_until_idle(j, &ring), 6);
	journal_stats_get(j, &st);
	cr_assert_eq(st.batches, 3);
	cr_assert_eq(st.errors, 0);

	struct got *g = read_log(QMSG_HOT, 1);
	cr_assert_eq(g->n, 10);
	for (size_t i = 0; i < 10; i++)
		cr_assert_eq(g->e[i].qid, entry_of(3 * i).qid);
	g = read_log(QMSG_HOT, 2);
	cr_assert_eq(g->n, 20);
	for (size_t i = 0; i < 20; i++)
		cr_assert_eq(g->e[i].qid, entry_of(100 + 3 * (i / 2) + i % 2).qid);
	assert_entries(read_log(QMSG_DEFERRED, 1), 500, 4);
	cr_assert_eq(log_size(QMSG_DEFERRED, 2), -ENOENT);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, later_batches_append_to_the_same_file)
{
	struct io_uring ring;
	struct journal *j;

	ring_init(&ring);
	j = journal_make(true);
	for (size_t b = 0; b < 5; b++) {
		add_entries(j, QMSG_HOT, 9, b * 7, 7);
		run_until_idle(j, &ring);
	}
	assert_entries(read_log(QMSG_HOT, 9), 0, 35);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, forget_drops_queued_entries_and_closes_the_log)
{
	struct io_uring ring;
	struct journal *j;
	unsigned fds;

	ring_init(&ring);
	j = journal_make(true);
	fds = open_fds();
	/* Written once, so that the log is open when the segment goes. */
	add_entries(j, QMSG_HOT, 4, 0, 3);
	run_until_idle(j, &ring);
	cr_assert_eq(open_fds(), fds + 1);
	add_entries(j, QMSG_HOT, 4, 3, 3);
	cr_assert(journal_busy(j));
	journal_forget(j, QMSG_HOT, 4);
	cr_assert_not(journal_busy(j));
	cr_assert_eq(open_fds(), fds, "the log is still open after journal_forget");
	journal_flush(j, &ring, UD_BASE);
	cr_assert_eq(io_uring_sq_ready(&ring), 0);
	assert_entries(read_log(QMSG_HOT, 4), 0, 3);
	/* Forgetting a log that was never written, or twice, is harmless. */
	journal_forget(j, QMSG_HOT, 4);
	journal_forget(j, QMSG_DEFERRED, 77);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, forget_during_a_batch_closes_once_it_completes)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;
	unsigned fds;

	ring_init(&ring);
	j = journal_make(true);
	fds = open_fds();
	add_entries(j, QMSG_HOT, 5, 0, 4);
	journal_flush(j, &ring, UD_BASE);
	io_uring_submit(&ring);
	add_entries(j, QMSG_HOT, 5, 4, 4); /* queued behind the batch, then dropped */
	journal_forget(j, QMSG_HOT, 5);
	/* The batch in flight still owns its buffer and fd. */
	cr_assert(journal_busy(j));
	cr_assert_eq(run_until_idle(j, &ring), 2);
	cr_assert_not(journal_busy(j));
	cr_assert_eq(open_fds(), fds, "the forgotten log was not closed");
	journal_stats_get(j, &st);
	cr_assert_eq(st.batches, 1);
	cr_assert_eq(st.errors, 0);
	assert_entries(read_log(QMSG_HOT, 5), 0, 4);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, forgetting_one_segment_keeps_the_others)
{
	struct io_uring ring;
	struct journal *j;

	ring_init(&ring);
	j = journal_make(false);
	add_entries(j, QMSG_HOT, 1, 0, 2);
	add_entries(j, QMSG_HOT, 2, 10, 2);
	add_entries(j, QMSG_DEFERRED, 1, 20, 2);
	journal_forget(j, QMSG_HOT, 1);
	run_until_idle(j, &ring);
	cr_assert_eq(log_size(QMSG_HOT, 1), -ENOENT);
	assert_entries(read_log(QMSG_HOT, 2), 10, 2);
	assert_entries(read_log(QMSG_DEFERRED, 1), 20, 2);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, a_torn_tail_is_ignored_and_appends_start_at_an_entry_boundary)
{
	struct io_uring ring;
	struct journal *j;
	char path[160];
	struct got *g;

	ring_init(&ring);
	j = journal_make(true);
	add_entries(j, QMSG_HOT, 6, 0, 3);
	run_until_idle(j, &ring);
	journal_free(j);

	/* A crash in the middle of the third entry. */
	done_path(path, sizeof(path), QMSG_HOT, 6);
	cr_assert_eq(truncate(path, 2 * JOURNAL_ENTRY_SIZE + 7), 0);
	assert_entries(read_log(QMSG_HOT, 6), 0, 2);

	/* After the restart, new entries go after the torn one, at 48 and 64. */
	j = journal_make(true);
	add_entries(j, QMSG_HOT, 6, 10, 2);
	run_until_idle(j, &ring);
	cr_assert_eq(log_size(QMSG_HOT, 6), 5 * JOURNAL_ENTRY_SIZE);
	g = read_log(QMSG_HOT, 6);
	cr_assert_eq(g->n, 4);
	cr_assert_eq(g->e[1].qid, entry_of(1).qid);
	cr_assert_eq(g->e[2].qid, entry_of(10).qid);
	cr_assert_eq(g->e[3].qid, entry_of(11).qid);
	cr_assert_eq(g->e[3].rcpt, entry_of(11).rcpt);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, a_log_cut_at_every_byte_keeps_the_whole_entries)
{
	struct io_uring ring;
	struct journal *j;
	char path[160];

	ring_init(&ring);
	j = journal_make(false);
	add_entries(j, QMSG_HOT, 8, 0, 4);
	run_until_idle(j, &ring);
	journal_free(j);
	io_uring_queue_exit(&ring);
	done_path(path, sizeof(path), QMSG_HOT, 8);
	for (off_t cut = 4 * JOURNAL_ENTRY_SIZE; cut >= 0; cut--) {
		cr_assert_eq(truncate(path, cut), 0);
		assert_entries(read_log(QMSG_HOT, 8), 0, (size_t)cut / JOURNAL_ENTRY_SIZE);
	}
}

Test(journal, a_corrupt_entry_is_skipped_and_the_others_are_read)
{
	struct io_uring ring;
	struct journal *j;
	char path[160];
	struct got *g;
	int fd;

	ring_init(&ring);
	j = journal_make(true);
	add_entries(j, QMSG_HOT, 2, 0, 3);
	run_until_idle(j, &ring);
	journal_free(j);
	io_uring_queue_exit(&ring);
	done_path(path, sizeof(path), QMSG_HOT, 2);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	/* Every byte of the middle entry in turn: crc, recipient and qid are all covered. */
	for (off_t at = JOURNAL_ENTRY_SIZE; at < 2 * JOURNAL_ENTRY_SIZE; at++) {
		unsigned char c;

		cr_assert_eq(pread(fd, &c, 1, at), 1);
		c ^= 0x10;
		cr_assert_eq(pwrite(fd, &c, 1, at), 1);
		g = read_log(QMSG_HOT, 2);
		cr_assert_eq(g->n, 2, "byte %lld", (long long)at);
		cr_assert_eq(g->e[0].qid, entry_of(0).qid);
		cr_assert_eq(g->e[1].qid, entry_of(2).qid);
		cr_assert_eq(g->e[1].rcpt, entry_of(2).rcpt);
		c ^= 0x10;
		cr_assert_eq(pwrite(fd, &c, 1, at), 1);
	}
	close(fd);
	assert_entries(read_log(QMSG_HOT, 2), 0, 3);
}

Test(journal, zeros_are_not_entries)
{
	char path[160];
	static const char zeros[4 * JOURNAL_ENTRY_SIZE];
	FILE *f;

	/* What a hole or a preallocated tail reads as. */
	done_path(path, sizeof(path), QMSG_HOT, 3);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(zeros, 1, sizeof(zeros), f), sizeof(zeros));
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(read_log(QMSG_HOT, 3)->n, 0);
}

Test(journal, a_log_longer_than_the_read_buffer_is_read_whole)
{
	struct io_uring ring;
	struct journal *j;
	char path[160];

	/* journal_read reads 1024 entries at a time: cross that, with a torn tail after it. */
	ring_init(&ring);
	j = journal_make(false);
	add_entries(j, QMSG_HOT, 11, 0, 2500);
	run_until_idle(j, &ring);
	journal_free(j);
	io_uring_queue_exit(&ring);
	assert_entries(read_log(QMSG_HOT, 11), 0, 2500);
	done_path(path, sizeof(path), QMSG_HOT, 11);
	cr_assert_eq(truncate(path, 2048 * JOURNAL_ENTRY_SIZE + 5), 0);
	assert_entries(read_log(QMSG_HOT, 11), 0, 2048);
	cr_assert_eq(truncate(path, 1024 * JOURNAL_ENTRY_SIZE), 0);
	assert_entries(read_log(QMSG_HOT, 11), 0, 1024);
}

Test(journal, reading_a_missing_log_is_enoent)
{
	struct got g = {.n = 0};

	cr_assert_eq(journal_read(dirfds[QMSG_HOT], 12345, on_entry, &g), -ENOENT);
	cr_assert_eq(g.n, 0);
}

Test(journal, without_fsync_each_batch_is_one_write)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;

	ring_init(&ring);
	j = journal_make(false);
	add_entries(j, QMSG_HOT, 1, 0, 50);
	add_entries(j, QMSG_DEFERRED, 1, 50, 50);
	journal_flush(j, &ring, UD_BASE);
	cr_assert_eq(io_uring_sq_ready(&ring), 2);
	cr_assert_eq(run_until_idle(j, &ring), 2);
	add_entries(j, QMSG_HOT, 1, 100, 1);
	cr_assert_eq(run_until_idle(j, &ring), 1);
	journal_stats_get(j, &st);
	cr_assert_eq(st.batches, 3);
	cr_assert_eq(st.entries, 101);
	cr_assert_eq(st.errors, 0);
	struct got *g = read_log(QMSG_HOT, 1);
	cr_assert_eq(g->n, 51);
	cr_assert_eq(g->e[49].qid, entry_of(49).qid);
	cr_assert_eq(g->e[50].qid, entry_of(100).qid);
	cr_assert_eq(log_size(QMSG_HOT, 1), 51 * JOURNAL_ENTRY_SIZE);
	assert_entries(read_log(QMSG_DEFERRED, 1), 50, 50);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, a_log_that_cannot_be_opened_counts_an_error_and_drops_its_entries)
{
	struct io_uring ring;
	struct journal *j;
	struct journal_stats st;

	ring_init(&ring);
	/* A stream whose directory fd is not open: openat fails with EBADF. */
	j = journal_new(&(struct journal_params){.dirfd = {dirfds[0], -1}, .fsync = true});
	cr_assert_not_null(j);
	add_entries(j, QMSG_DEFERRED, 1, 0, 3);
	add_entries(j, QMSG_HOT, 1, 0, 3);
	journal_flush(j, &ring, UD_BASE);
	cr_assert_eq(io_uring_sq_ready(&ring), 2, "only the hot log is written");
	run_until_idle(j, &ring);
	cr_assert_not(journal_busy(j));
	journal_stats_get(j, &st);
	cr_assert_eq(st.errors, 1);
	cr_assert_eq(st.batches, 1);
	assert_entries(read_log(QMSG_HOT, 1), 0, 3);
	journal_free(j);
	io_uring_queue_exit(&ring);
}

Test(journal, free_with_nothing_written_and_free_null_are_fine)
{
	struct journal *j = journal_make(true);

	cr_assert_not(journal_busy(j));
	journal_free(j);
	journal_free(NULL);
}
