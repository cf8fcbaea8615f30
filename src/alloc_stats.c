/*
 * The counting allocator (see alloc_stats.h). Definitions in the executable
 * override glibc's for the whole process, since the executable comes first
 * in the dynamic linker's lookup order, and glibc calls malloc through its
 * PLT, so even its own allocations (strdup aside, which we define too) come
 * here. Everything is forwarded to glibc's allocator under its other names
 * (__libc_malloc & co.), so a block may be freed by either side.
 *
 * A call costs two relaxed atomic additions on top of glibc's (its site's
 * count and bytes), a free one (the count of frees). Sites are found by open
 * addressing on the return address; a call whose site finds no slot within
 * a few probes is counted as dropped, so nothing is lost from the totals.
 */
#define ALLOC_STATS_IMPL 1
#include "autoconf.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc_stats.h"

#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_UNDER_ASAN 1
#endif
#endif

#ifdef ALLOC_UNDER_ASAN
/* Under AddressSanitizer the blocks must come from its allocator (it checks
 * every access and every free against it): forward to its interceptors,
 * which our definitions displace the way they displace glibc's. */
#define __libc_malloc __interceptor_malloc
#define __libc_calloc __interceptor_calloc
#define __libc_realloc __interceptor_realloc
#define __libc_free __interceptor_free
#define __libc_memalign __interceptor_memalign
#define __libc_valloc __interceptor_valloc
#define __libc_pvalloc __interceptor_pvalloc
/* the first calls come while ASan sets itself up, before its shadow memory
 * exists: the counting code must not be instrumented */
#define NO_ASAN __attribute__((no_sanitize_address))
#else
#define NO_ASAN
#endif

/* glibc's allocator under the names it keeps for interposers. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);
extern void *__libc_valloc(size_t n);
extern void *__libc_pvalloc(size_t n);

#define SITE_BITS 12
#define PROBES 16
_Static_assert(ALLOC_SITES == 1 << SITE_BITS, "ALLOC_SITES must be 1 << SITE_BITS");

#define RA() ((uintptr_t)__builtin_return_address(0))
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

static struct alloc_table builtin = {.magic = ALLOC_STATS_MAGIC, .nsites = ALLOC_SITES};
static struct alloc_table *cur = &builtin;

static inline __attribute__((always_inline)) NO_ASAN void
count(uintptr_t pc, size_t n, enum alloc_kind k)
{
	struct alloc_table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	uint32_t i = (uint32_t)((pc * UINT64_C(0x9e3779b97f4a7c15)) >> (64 - SITE_BITS));

	for (int probe = 0; probe < PROBES; probe++, i = (i + 1) & (ALLOC_SITES - 1)) {
		struct alloc_site *s = &t->sites[i];
		uintptr_t have = __atomic_load_n(&s->pc, __ATOMIC_RELAXED);

		/* an empty slot becomes ours, unless another thread claims it
		 * first: then the exchange leaves that thread's pc in have */
		if (have == 0 &&
		    __atomic_compare_exchange_n(&s->pc, &have, pc, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			__atomic_store_n(&s->kind, (uint32_t)k, __ATOMIC_RELAXED);
			have = pc;
		}
		if (have == pc) {
			ADD(s->allocs, 1);
			ADD(s->bytes, n);
			return;
		}
	}
	ADD(t->dropped_allocs, 1);
	ADD(t->dropped_bytes, n);
}

static inline __attribute__((always_inline)) NO_ASAN void
count_free(void)
{
	struct alloc_table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);

	ADD(t->frees, 1);
}

NO_ASAN void *
malloc(size_t n)
{
	void *p = __libc_malloc(n);

	if (p != NULL)
		count(RA(), n, ALLOC_MALLOC);
	return p;
}

NO_ASAN void
free(void *p)
{
	if (p == NULL)
		return;
	count_free();
	__libc_free(p);
}

NO_ASAN void *
calloc(size_t n, size_t m)
{
	void *p = __libc_calloc(n, m);
	size_t b;

	if (p != NULL) {
		if (__builtin_mul_overflow(n, m, &b))
			b = SIZE_MAX; /* cannot happen: glibc refuses it */
		count(RA(), b, ALLOC_CALLOC);
	}
	return p;
}

static inline __attribute__((always_inline)) NO_ASAN void *
resize(uintptr_t pc, void *p, size_t n)
{
	void *q = __libc_realloc(p, n);

	if (p != NULL && n == 0) { /* glibc frees p and returns NULL */
		count_free();
		return q;
	}
	if (q != NULL) {
		count(pc, n, ALLOC_REALLOC);
		if (p != NULL)
			count_free();
	}
	return q;
}

NO_ASAN void *
realloc(void *p, size_t n)
{
	return resize(RA(), p, n);
}

NO_ASAN void *
reallocarray(void *p, size_t n, size_t m)
{
	size_t b;

	if (__builtin_mul_overflow(n, m, &b)) {
		errno = ENOMEM;
		return NULL;
	}
	return resize(RA(), p, b);
}

NO_ASAN int
posix_memalign(void **out, size_t align, size_t n)
{
	void *p;

	if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0 || align == 0)
		return EINVAL;
	p = __libc_memalign(align, n);
	if (p == NULL)
		return ENOMEM;
	count(RA(), n, ALLOC_ALIGNED);
	*out = p;
	return 0;
}

NO_ASAN void *
aligned_alloc(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (p != NULL)
		count(RA(), n, ALLOC_ALIGNED);
	return p;
}

NO_ASAN void *
memalign(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (p != NULL)
		count(RA(), n, ALLOC_ALIGNED);
	return p;
}

NO_ASAN void *
valloc(size_t n)
{
	void *p = __libc_valloc(n);

	if (p != NULL)
		count(RA(), n, ALLOC_ALIGNED);
	return p;
}

NO_ASAN void *
pvalloc(size_t n)
{
	void *p = __libc_pvalloc(n);

	if (p != NULL)
		count(RA(), n, ALLOC_ALIGNED);
	return p;
}

/* Ours, so that a strdup in our code (or a library's) is its caller's site
 * and not one anonymous site inside libc. */
NO_ASAN char *
strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = __libc_malloc(n);

	if (p != NULL) {
		memcpy(p, s, n);
		count(RA(), n, ALLOC_STRDUP);
	}
	return p;
}

NO_ASAN char *
strndup(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	char *p = __libc_malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
		count(RA(), n + 1, ALLOC_STRDUP);
	}
	return p;
}

void
alloc_stats_use(struct alloc_table *t)
{
	struct timespec ts;

	if (t == NULL)
		t = &builtin;
	memset(t, 0, sizeof(*t));
	t->magic = ALLOC_STATS_MAGIC;
	t->nsites = ALLOC_SITES;
	clock_gettime(CLOCK_REALTIME, &ts);
	t->since_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	__atomic_store_n(&cur, t, __ATOMIC_RELEASE);
}

struct alloc_table *
alloc_stats_current(void)
{
	return __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

void
alloc_stats_totals(const struct alloc_table *t, struct alloc_totals *out)
{
	memset(out, 0, sizeof(*out));
	out->frees = LOAD(t->frees);
	out->dropped_allocs = LOAD(t->dropped_allocs);
	out->dropped_bytes = LOAD(t->dropped_bytes);
	out->allocs = out->dropped_allocs;
	out->bytes = out->dropped_bytes;
	for (uint32_t i = 0; i < ALLOC_SITES; i++) {
		const struct alloc_site *s = &t->sites[i];
		uint64_t n;
		uint32_t k;

		if (LOAD(s->pc) == 0)
			continue;
		n = LOAD(s->allocs);
		k = LOAD(s->kind);
		out->sites++;
		out->allocs += n;
		out->bytes += LOAD(s->bytes);
		out->calls[k < ALLOC_NKINDS ? k : ALLOC_MALLOC] += n;
	}
}

const char *
alloc_stats_kind_name(enum alloc_kind k)
{
	static const char *const names[ALLOC_NKINDS] = {"malloc", "calloc", "realloc", "aligned", "strdup"};

	return (unsigned)k < ALLOC_NKINDS ? names[k] : "?";
}
