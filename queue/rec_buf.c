#include "queue/rec_buf.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One size class: v[0] is the buffer unused longest; low is the fewest cached since the last
 * trim. */
struct rec_buf_class {
	unsigned n, low;
	char *v[REC_BUF_KEEP];
};

struct rec_buf_cache {
	size_t bytes; /* cached, all classes */
	struct rec_buf_class cls[REC_BUF_CLASSES];
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static __thread struct rec_buf_cache *cache;

static size_t
class_size(unsigned k)
{
	return (size_t)REC_BUF_SIZE << k;
}

static void
cache_free(void *p)
{
	struct rec_buf_cache *c = p;
	for (unsigned k = 0; k < REC_BUF_CLASSES; k++)
		for (unsigned i = 0; i < c->cls[k].n; i++)
			free(c->cls[k].v[i]);
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
	unsigned k = 0;
	while (k < REC_BUF_CLASSES && class_size(k) < need)
		k++;
	if (k == REC_BUF_CLASSES) {
		char *b = malloc(need);
		*cap = b ? need : 0;
		return b;
	}
	struct rec_buf_cache *c = cache;
	char *b;
	if (c && c->cls[k].n > 0) {
		struct rec_buf_class *cl = &c->cls[k];
		b = cl->v[--cl->n];
		if (cl->n < cl->low)
			cl->low = cl->n;
		c->bytes -= class_size(k);
	} else {
		b = malloc(class_size(k));
	}
	*cap = b ? class_size(k) : 0;
	return b;
}

void
rec_buf_put(char *buf)
{
	if (!buf)
		return;
	/* The allocator may round a class size up; a buffer more than a quarter over one is not
	 * one of ours (it grew, or never came from here). */
	size_t usable = malloc_usable_size(buf);
	unsigned k = 0;
	while (k < REC_BUF_CLASSES && class_size(k) + class_size(k) / 4 < usable)
		k++;
	if (k < REC_BUF_CLASSES && usable >= class_size(k)) {
		struct rec_buf_cache *c = cache_get();
		if (c && c->cls[k].n < REC_BUF_KEEP &&
		    c->bytes + class_size(k) <= REC_BUF_MAX_BYTES) {
			c->cls[k].v[c->cls[k].n++] = buf;
			c->bytes += class_size(k);
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
	for (unsigned k = 0; k < REC_BUF_CLASSES; k++) {
		struct rec_buf_class *cl = &c->cls[k];
		unsigned idle = cl->low; /* v[0..low) sat unused since the last trim */
		for (unsigned i = 0; i < idle; i++)
			free(cl->v[i]);
		memmove(cl->v, cl->v + idle, (cl->n - idle) * sizeof cl->v[0]);
		cl->n -= idle;
		cl->low = cl->n;
		c->bytes -= idle * class_size(k);
	}
}

unsigned
rec_buf_cached(void)
{
	unsigned n = 0;
	if (cache)
		for (unsigned k = 0; k < REC_BUF_CLASSES; k++)
			n += cache->cls[k].n;
	return n;
}
