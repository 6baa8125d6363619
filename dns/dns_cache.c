/*
 * dns_cache — see dns_cache.h. A chained hash table (power-of-two buckets, at least twice the
 * entry limit) and a doubly-linked LRU list through the same entries.
 */
#include "dns/dns_cache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "queue/assert.h"

struct entry {
	struct entry *hnext;      /* bucket chain */
	struct entry *prev, *next; /* LRU: head is the most recent */
	uint64_t expires_ms;
	uint32_t hash;
	uint16_t type;
	uint8_t kind;
	struct dns_answer *ans;
	char name[]; /* normalized */
};

struct dns_cache {
	struct dns_cache_params p;
	struct entry **buckets;
	uint32_t mask;
	struct entry *head, *tail;
	struct dns_cache_stats st;
};

static uint32_t
key_hash(const char *name, uint16_t type)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (const unsigned char *s = (const unsigned char *)name; *s; s++)
		h = (h ^ *s) * 16777619u;
	h = (h ^ (type & 0xff)) * 16777619u;
	return (h ^ (type >> 8)) * 16777619u;
}

struct dns_cache *
dns_cache_new(const struct dns_cache_params *p)
{
	struct dns_cache *c;
	uint32_t nb = 16;

	if (p->entries_max == 0 || p->entries_max > DNS_CACHE_ENTRIES_LIMIT ||
	    p->min_ttl_s > p->max_ttl_s)
		return NULL;
	while (nb < 2 * p->entries_max)
		nb *= 2;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->buckets = calloc(nb, sizeof *c->buckets);
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	c->p = *p;
	c->mask = nb - 1;
	return c;
}

void
dns_cache_free(struct dns_cache *c)
{
	struct entry *e, *next;

	if (c == NULL)
		return;
	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		free(e->ans);
		free(e);
	}
	free(c->buckets);
	free(c);
}

static void
lru_unlink(struct dns_cache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_push_front(struct dns_cache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

static struct entry **
bucket_find(struct dns_cache *c, const char *name, uint16_t type, uint32_t h)
{
	struct entry **pp = &c->buckets[h & c->mask];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if ((*pp)->hash == h && (*pp)->type == type && strcmp((*pp)->name, name) == 0)
			return pp;
	return pp; /* where *pp == NULL: the insertion point */
}

/* Unlinks *pp (a found entry) from its bucket and the LRU list and frees it. */
static void
entry_remove(struct dns_cache *c, struct entry **pp)
{
	struct entry *e = *pp;

	*pp = e->hnext;
	lru_unlink(c, e);
	free(e->ans);
	free(e);
	ASSERT(c->st.entries > 0);
	c->st.entries--;
}

static void
evict_lru(struct dns_cache *c)
{
	struct entry *e = c->tail;

	ASSERT(e != NULL);
	entry_remove(c, bucket_find(c, e->name, e->type, e->hash));
	c->st.evictions++;
}

enum dns_cache_kind
dns_cache_get(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms,
	      struct dns_cache_hit *hit)
{
	char norm[256];
	struct entry **pp, *e;
	uint32_t h;

	memset(hit, 0, sizeof *hit);
	if (dns_name_normalize(norm, sizeof norm, name) < 0) {
		c->st.misses++;
		return DNS_CACHE_MISS;
	}
	h = key_hash(norm, type);
	pp = bucket_find(c, norm, type, h);
	e = *pp;
	if (e == NULL || now_ms >= e->expires_ms) {
		if (e != NULL) {
			entry_remove(c, pp);
			c->st.expirations++;
		}
		c->st.misses++;
		return DNS_CACHE_MISS;
	}
	lru_unlink(c, e);
	lru_push_front(c, e);
	c->st.hits++;
	hit->kind = (enum dns_cache_kind)e->kind;
	hit->ans = e->ans;
	hit->ttl_left_s = (uint32_t)((e->expires_ms - now_ms + 999) / 1000);
	return hit->kind;
}

/* The kind and clamped TTL an answer is stored with; false if it is not cacheable. */
static bool
answer_kind(const struct dns_cache *c, const struct dns_answer *ans, uint8_t *kind,
	    uint32_t *ttl_s)
{
	uint32_t ttl;

	if (ans->tc)
		return false;
	if (ans->rcode == DNS_RCODE_NOERROR && ans->nrr > 0) {
		*kind = DNS_CACHE_POSITIVE;
		ttl = ans->ttl_min;
	} else if (ans->rcode == DNS_RCODE_NOERROR || ans->rcode == DNS_RCODE_NXDOMAIN) {
		*kind = ans->rcode == DNS_RCODE_NXDOMAIN ? DNS_CACHE_NXDOMAIN : DNS_CACHE_NODATA;
		ttl = ans->has_soa ? ans->neg_ttl : c->p.neg_ttl_default_s;
		/* After a CNAME chain (a dangling one included), the entry holds the chain too:
		 * it lives no longer than the chain's smallest TTL. */
		if (ans->cname_hops > 0 && (!ans->has_soa || ans->ttl_min < ttl))
			ttl = ans->ttl_min;
	} else {
		return false;
	}
	if (ttl < c->p.min_ttl_s)
		ttl = c->p.min_ttl_s;
	if (ttl > c->p.max_ttl_s)
		ttl = c->p.max_ttl_s;
	*ttl_s = ttl;
	return true;
}

int
dns_cache_put(struct dns_cache *c, const struct dns_answer *ans, uint64_t now_ms)
{
	const char *name;
	struct entry **pp, *e;
	size_t nlen;
	uint32_t ttl_s;
	uint8_t kind;

	if (!answer_kind(c, ans, &kind, &ttl_s))
		return -EAGAIN;
	if (ans->strings_len == 0)
		return -EINVAL; /* not from a successful dns_packet_parse */
	name = dns_answer_str(ans, ans->qname);
	nlen = strlen(name);
	if (nlen == 0 || nlen > 253)
		return -EINVAL;
	e = malloc(sizeof *e + nlen + 1);
	if (e == NULL)
		return -ENOMEM;
	e->ans = dns_answer_dup(ans);
	if (e->ans == NULL) {
		free(e);
		return -ENOMEM;
	}
	memcpy(e->name, name, nlen + 1);
	e->type = ans->qtype;
	e->kind = kind;
	e->hash = key_hash(e->name, e->type);
	e->expires_ms = now_ms + (uint64_t)ttl_s * 1000;
	pp = bucket_find(c, e->name, e->type, e->hash);
	if (*pp != NULL)
		entry_remove(c, pp);
	else if (c->st.entries == c->p.entries_max)
		evict_lru(c);
	/* Eviction may have changed the chain: insert at the bucket head. */
	e->hnext = c->buckets[e->hash & c->mask];
	c->buckets[e->hash & c->mask] = e;
	lru_push_front(c, e);
	c->st.entries++;
	c->st.inserts++;
	ASSERT(c->st.entries <= c->p.entries_max);
	return kind;
}

void
dns_cache_note_error(struct dns_cache *c)
{
	c->st.errors++;
}

void
dns_cache_stats_get(const struct dns_cache *c, struct dns_cache_stats *out)
{
	*out = c->st;
}
