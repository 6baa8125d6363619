/*
 * fuzz — what the libFuzzer harnesses in tests/fuzz/ share: a check that reports a violated
 * invariant as a crash, and a chunker that lets the fuzzer choose how the input is cut.
 *
 * FUZZ_CHECK(x) stays on whatever NDEBUG says: it prints the file, line and expression and
 * calls abort(), which libFuzzer reports as a crash and saves the input for.
 *
 * Chunked input: the first byte n (mod FUZZ_CHUNK_SIZES_MAX + 1) says how many chunk-size
 * bytes follow it; the rest is the payload, fed in pieces of those sizes, taken in turn and
 * repeated. A size byte of 0 means "all that is left"; no size bytes means one piece.
 * Every piece is copied into a buffer of exactly its size, so that AddressSanitizer sees a
 * read one byte past it (a piece inside the fuzzer's buffer would have its neighbour there).
 *
 * Include from a harness only; the helpers are static inline, with no state of their own.
 */
#ifndef RINGMX_FUZZ_H
#define RINGMX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(x)                                                                              \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define FUZZ_CHUNK_SIZES_MAX 15

struct fuzz_chunks {
	const uint8_t *sizes;
	size_t nsizes;
	size_t next;
};

/* Takes the chunk header off *data / *size; what is left there is the payload. */
static inline void
fuzz_chunks_init(struct fuzz_chunks *c, const uint8_t **data, size_t *size)
{
	size_t n = 0;

	c->sizes = NULL;
	c->nsizes = 0;
	c->next = 0;
	if (*size == 0)
		return;
	n = (*data)[0] % (FUZZ_CHUNK_SIZES_MAX + 1);
	if (n > *size - 1)
		n = *size - 1;
	c->sizes = *data + 1;
	c->nsizes = n;
	*data += 1 + n;
	*size -= 1 + n;
}

/* The size of the next piece, 1..left (left > 0). */
static inline size_t
fuzz_chunks_next(struct fuzz_chunks *c, size_t left)
{
	size_t s;

	FUZZ_CHECK(left > 0);
	if (c->nsizes == 0)
		return left;
	s = c->sizes[c->next++ % c->nsizes];
	return s == 0 || s > left ? left : s;
}

/* A malloc'ed copy of p[0..n) of exactly n bytes (1 when n is 0, so never NULL). */
static inline char *
fuzz_dup(const void *p, size_t n)
{
	char *q = malloc(n ? n : 1);

	FUZZ_CHECK(q != NULL);
	if (n)
		memcpy(q, p, n);
	return q;
}

/* True when the slice [p, p + n) lies inside [base, base + len). */
static inline int
fuzz_within(const void *p, size_t n, const void *base, size_t len)
{
	const char *s = p, *b = base;

	return n == 0 ? (s == NULL || (s >= b && s <= b + len)) : (s >= b && s + n <= b + len);
}

#endif
