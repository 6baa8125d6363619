/*
 * assert — ASSERT(x), always compiled in: a bug in our code stops the process with the file,
 * line and expression. Never use it for what a client, a disk or a remote server can cause.
 */
#ifndef RINGMX_SERVER_ASSERT_H
#define RINGMX_SERVER_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(x)                                                                          \
	do {                                                                               \
		if (__builtin_expect(!(x), 0)) {                                            \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                           \
		}                                                                          \
	} while (0)

#endif
