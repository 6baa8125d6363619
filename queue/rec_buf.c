#include "queue/rec_buf.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* v[0] is the buffer unused longest; low is the fewest cached since the last trim. */
struct rec_buf_cache {
	unsigned n, low;
	char *v[REC_BUF_KEEP];
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static __thread struct rec_buf_cache *cache;

static void
cache_free(void *p)
{
	struct rec_buf_cache *c = p;
	for (unsigned i = 0; i < c->n; i++)
		free(c->v[i]);
	free(c);
	cache = NULL;
}

static void
cache_key_make(void)
{
	(void)pthread_key_create(&cache_key, cache_free);
}

/* The calling thread's cache, made on first use (NULL when out of memory). */
static struct rec_buf_cache *
cache_get(void)
{
	if (cache)
		return cache;
	(void)pthread_once(&cache_once, cache_key_make);
	struct rec_buf_cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (pthread_setspecific(cache_key, c) != 0) {
		free(c);
		return NULL;
	}
	cache = c;
	return c;
}

char *
rec_buf_get(size_t need, size_t *cap)
{
	if (need > REC_BUF_SIZE) {
		char *b = malloc(need);
		*cap = b ? need : 0;
		return b;
	}
	struct rec_buf_cache *c = cache;
	char *b;
	if (c && c->n > 0) {
		b = c->v[--c->n];
		if (c->n < c->low)
			c->low = c->n;
	} else {
		b = malloc(REC_BUF_SIZE);
	}
	*cap = b ? REC_BUF_SIZE : 0;
	return b;
}

void
rec_buf_put(char *buf)
{
	if (!buf)
		return;
	/* The allocator may round REC_BUF_SIZE up; a buffer that grew past a quarter more is not
	 * one of ours any more. */
	size_t usable = malloc_usable_size(buf);
	if (usable >= REC_BUF_SIZE && usable <= REC_BUF_SIZE + REC_BUF_SIZE / 4) {
		struct rec_buf_cache *c = cache_get();
		if (c && c->n < REC_BUF_KEEP) {
			c->v[c->n++] = buf;
			return;
		}
	}
	free(buf);
}

void
rec_buf_trim(void)
{
	struct rec_buf_cache *c = cache;
	if (!c)
		return;
	unsigned idle = c->low; /* v[0..low) sat unused since the last trim */
	for (unsigned i = 0; i < idle; i++)
		free(c->v[i]);
	memmove(c->v, c->v + idle, (c->n - idle) * sizeof c->v[0]);
	c->n -= idle;
	c->low = c->n;
}

unsigned
rec_buf_cached(void)
{
	return cache ? cache->n : 0;
}
