/*
 * guard — test input placed so that it ends exactly where an inaccessible page starts, so a
 * parser that reads one byte past its input crashes instead of passing by luck (STYLE.md,
 * "a guard-page buffer makes over-reads crash"). For Criterion tests only.
 */
#ifndef RINGMX_TEST_GUARD_H
#define RINGMX_TEST_GUARD_H

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
	char *base;
	size_t map_len;
	char *p;
};

static inline struct guard
guard_place(const char *src, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (len + page - 1) / page + 1;
	struct guard g;

	g.map_len = (data_pages + 1) * page;
	g.base = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(g.base != MAP_FAILED);
	cr_assert_eq(mprotect(g.base + data_pages * page, page, PROT_NONE), 0);
	g.p = g.base + data_pages * page - len;
	if (len)
		memcpy(g.p, src, len);
	return g;
}

static inline void
guard_free(struct guard *g)
{
	munmap(g->base, g->map_len);
}

#endif
