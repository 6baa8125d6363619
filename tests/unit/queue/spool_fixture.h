/*
 * spool_fixture — helpers shared by the spool unit tests: building records and buffers whose
 * end touches an inaccessible page, so that a decoder over-read crashes instead of passing.
 */
#ifndef RINGMX_TESTS_SPOOL_FIXTURE_H
#define RINGMX_TESTS_SPOOL_FIXTURE_H

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "queue/spool_record.h"

#define S(lit) ((struct spool_str){(lit), sizeof(lit) - 1})

/* Removes the files in a temp directory (not the directory); a missing one is fine. */
static inline void
fixture_dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/* Builds a record for env with msg as the message into buf; returns its total length. */
static inline size_t
fixture_record(char *buf, size_t cap, const struct spool_envelope *env, const char *msg,
	       size_t msg_len)
{
	size_t off = spool_record_begin(buf, cap, env);

	cr_assert_leq(off + msg_len, cap);
	memcpy(buf + off, msg, msg_len);
	spool_record_finish(buf, off + msg_len);
	return off + msg_len;
}

/* A small, typical record; qid and the message vary so that records can be told apart. */
static inline size_t
fixture_simple_record(char *buf, size_t cap, uint64_t qid, const char *msg)
{
	static const struct spool_str rcpts[] = {
	    {"alice@example.org", 17},
	    {"bob@example.net", 15},
	};
	struct spool_envelope env = {
	    .qid = qid,
	    .arrival_ms = 1700000000123ull,
	    .flags = SPOOL_F_8BITMIME,
	    .helo = S("mx.example.com"),
	    .client = S("192.0.2.7"),
	    .from = S("sender@example.com"),
	    .rcpts = rcpts,
	    .nrcpt = 2,
	};

	return fixture_record(buf, cap, &env, msg, strlen(msg));
}

/* Up to cap bytes that can be placed so that they end where a PROT_NONE page begins. */
struct guard_buf {
	char *map;
	size_t map_len;
	char *end;
};

static inline struct guard_buf
guard_buf_new(size_t cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data = (cap + page - 1) / page * page;
	struct guard_buf g;

	g.map_len = data + page;
	g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(g.map, MAP_FAILED);
	cr_assert_eq(mprotect(g.map + data, page, PROT_NONE), 0);
	g.end = g.map + data;
	return g;
}

/* Copies src[0..n) to end right before the guard page; returns where it starts. */
static inline char *
guard_buf_put(struct guard_buf *g, const void *src, size_t n)
{
	cr_assert_leq(n, (size_t)(g->end - g->map));
	memcpy(g->end - n, src, n);
	return g->end - n;
}

static inline void
guard_buf_free(struct guard_buf *g)
{
	munmap(g->map, g->map_len);
}

#endif
