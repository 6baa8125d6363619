/*
 * assert — the always-on ASSERT of ringmx (queue/ is the lowest layer, so it lives here;
 * server/assert.h and bench code include it).
 *
 * ASSERT(x) is for bugs in our own code (a violated argument contract or invariant), never for
 * what a peer or the disk sent: those are returned as -errno. It stays compiled in with NDEBUG
 * because a spool that keeps going after its invariants broke can lose acknowledged mail.
 * On failure it prints "file:line: assertion failed: expr" to stderr and calls abort().
 *
 * Include it from .c files only; it is not part of any public header.
 */
#ifndef RINGMX_QUEUE_ASSERT_H
#define RINGMX_QUEUE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(x)                                                                                  \
	do {                                                                                       \
		if (__builtin_expect(!(x), 0)) {                                                   \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x);  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
