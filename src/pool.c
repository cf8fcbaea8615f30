/*
 * Free-list object pools. Each object carries a small header in front of it
 * with a magic number and its owning pool, so a put to the wrong pool or a
 * double put is caught at once instead of corrupting memory later.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"

#define POOL_MAGIC_LIVE 0x504f4f4cu /* "POOL" */
#define POOL_MAGIC_FREE 0x46524545u /* "FREE" */

struct pool_hdr {
	uint32_t magic;
	struct pool *owner;
	void *next_free;
	/* keep the object 16-byte aligned */
} __attribute__((aligned(16)));

static struct pool *pools;

void
pool_init(struct pool *p, const char *name, size_t objsize, size_t max_free, void (*dtor)(void *))
{
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->objsize = objsize;
	p->max_free = max_free;
	p->dtor = dtor;
	p->next = pools;
	pools = p;
}

struct pool *
pool_first(void)
{
	return pools;
}

void *
pool_get(struct pool *p)
{
	struct pool_hdr *h;

	p->gets++;
	if (p->free_list != NULL) {
		h = p->free_list;
		if (h->magic != POOL_MAGIC_FREE || h->owner != p) {
			log_error("pool %s: corrupt free list", p->name);
			abort();
		}
		p->free_list = h->next_free;
		p->nfree--;
	} else {
		p->misses++;
		h = calloc(1, sizeof(*h) + p->objsize);
		if (h == NULL)
			return NULL;
	}
	h->magic = POOL_MAGIC_LIVE;
	h->owner = p;
	h->next_free = NULL;
	if (++p->in_use > p->high_water)
		p->high_water = p->in_use;
	return h + 1;
}

void
pool_put(struct pool *p, void *obj)
{
	struct pool_hdr *h;

	if (obj == NULL)
		return;
	h = (struct pool_hdr *)obj - 1;
	if (h->magic != POOL_MAGIC_LIVE || h->owner != p) {
		log_error("pool %s: bad put (magic %08x)", p->name, h->magic);
		abort();
	}
	p->in_use--;
	if (p->nfree >= p->max_free) {
		if (p->dtor != NULL)
			p->dtor(obj);
		h->magic = 0;
		free(h);
		return;
	}
	h->magic = POOL_MAGIC_FREE;
	h->next_free = p->free_list;
	p->free_list = h;
	p->nfree++;
}

void
pool_drain(struct pool *p)
{
	struct pool_hdr *h, *next;

	for (h = p->free_list; h != NULL; h = next) {
		next = h->next_free;
		if (p->dtor != NULL)
			p->dtor(h + 1);
		h->magic = 0;
		free(h);
	}
	p->free_list = NULL;
	p->nfree = 0;
}
