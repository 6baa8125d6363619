/*
 * rec_buf — a per-thread cache of spool record buffers.
 *
 * Every message a session receives is built in a malloc'ed record buffer that leaves the
 * session (to the spool, then freed or kept by the queue) once the message is complete. With
 * many connections in DATA at once the allocator hands that churn back to the kernel and
 * takes it again, so each message paid page faults on first touch (measured: 0.9 faults per
 * 4 KiB message and 12 per 64 KiB message at 1,000 connections, none at 10). The cache keeps
 * buffers of REC_BUF_CLASSES power-of-two sizes, REC_BUF_SIZE (32 KiB) to 1 MiB, per thread,
 * last in first out, so the next message reuses memory that is still mapped and warm.
 *
 * Buffers are ordinary malloc'ed memory: realloc and free work on them, and a buffer given to
 * rec_buf_put that is not of a class size (it was realloc'ed, or never came from here) is
 * freed. Requests over 1 MiB are plain malloc.
 *
 * Usage:
 *   size_t cap; char *b = rec_buf_get(need, &cap);   // NULL when out of memory
 *   ... to grow: rec_buf_get a bigger one, copy, rec_buf_put the old one ...
 *   rec_buf_put(b);                                  // instead of free(b); NULL is fine
 *   rec_buf_trim();                                  // about once a second (the shard loop)
 *
 * Bounds: per thread, at most REC_BUF_KEEP buffers of each class and REC_BUF_MAX_BYTES in all
 * (address space; resident only as far as messages wrote into them). rec_buf_trim frees the
 * buffers that sat unused since its last call, so a cache holds no more than the last
 * second's peak of messages in progress, and is empty two calls after the load is gone. Each
 * thread's cache is freed when the thread exits.
 */
#ifndef RINGMX_REC_BUF_H
#define RINGMX_REC_BUF_H

#include <stddef.h>

#define REC_BUF_SIZE (32u * 1024) /* a session asks ~17 KiB for a message of unknown size */
#define REC_BUF_CLASSES 6u	  /* 32 KiB, 64 KiB, ... 1 MiB */
#define REC_BUF_KEEP 2048u
#define REC_BUF_MAX_BYTES ((size_t)256 << 20)

/* A buffer of at least need bytes; *cap gets its size. From the cache when need fits a class. */
char *rec_buf_get(size_t need, size_t *cap);

/* Returns buf to the calling thread's cache, or frees it (not of a class size, cache full). */
void rec_buf_put(char *buf);

/* Frees the buffers of the calling thread's cache that none of the rec_buf_get calls since the
 * last rec_buf_trim needed. */
void rec_buf_trim(void);

/* Buffers in the calling thread's cache, all classes (for tests). */
unsigned rec_buf_cached(void);

#endif
