/*
 * The counting allocator (configure --enable-alloc-stats; always linked into
 * the micro-benchmarks, t/bench.c). alloc_stats.c defines malloc and its
 * relatives in the executable, so every caller in the process, shared
 * libraries included, reaches it; each call is counted per kind and per call
 * site (the return address) and forwarded to glibc's own __libc_malloc & co.
 * The counters live in one struct alloc_table: a built-in one at first, then
 * (server workers) one in the shared region, so any worker can read every
 * worker's counts (profile.c). Counters are atomic: a worker also runs a
 * database thread. The site table has a fixed size: the allocator never
 * allocates.
 *
 * Code outside the counting build sees these functions as weak symbols:
 * alloc_stats_linked() tells whether the executable has the allocator.
 */
#ifndef EVENTODB_ALLOC_STATS_H
#define EVENTODB_ALLOC_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALLOC_STATS_MAGIC 0x414c4f43u /* "ALOC" */
#define ALLOC_SITES 4096              /* per table; a power of two */

enum alloc_kind {
	ALLOC_MALLOC,
	ALLOC_CALLOC,
	ALLOC_REALLOC, /* realloc and reallocarray with a size (a resize also counts a free) */
	ALLOC_ALIGNED, /* posix_memalign, aligned_alloc, memalign, valloc, pvalloc */
	ALLOC_STRDUP,  /* strdup, strndup (ours, so the caller is the site, not libc) */
	ALLOC_NKINDS
};

/* One call site: the return address of the allocating call. A call site
 * calls one allocator, so its kind is that of its first call. */
struct alloc_site {
	uintptr_t pc;  /* 0 = empty slot */
	uint32_t kind; /* enum alloc_kind */
	uint32_t pad;
	uint64_t allocs;
	uint64_t bytes; /* bytes asked for */
};

struct alloc_table {
	uint32_t magic;
	uint32_t nsites;
	int64_t since_us; /* when counting into this table began */
	uint64_t frees;   /* free of a non-NULL pointer, realloc(p, 0), the old block of a resize */
	uint64_t dropped_allocs, dropped_bytes; /* calls whose site found no free slot */
	struct alloc_site sites[ALLOC_SITES];
};

/* A consistent-enough snapshot of a table (relaxed reads of live counters). */
struct alloc_totals {
	uint64_t allocs; /* every allocating call: the sum of calls[] and dropped_allocs */
	uint64_t bytes;
	uint64_t frees;
	uint64_t calls[ALLOC_NKINDS]; /* of the calls at known sites */
	uint64_t dropped_allocs, dropped_bytes;
	uint32_t sites; /* slots in use */
};

#ifdef ALLOC_STATS_IMPL
#define ALLOC_STATS_WEAK
#else
#define ALLOC_STATS_WEAK __attribute__((weak))
#endif

/* Counts into t from now on, after zeroing it (NULL: the built-in table).
 * Call while the process has one thread, or accept that a call already in
 * flight on another thread lands in the old table. */
ALLOC_STATS_WEAK void alloc_stats_use(struct alloc_table *t);
/* The table counted into now. */
ALLOC_STATS_WEAK struct alloc_table *alloc_stats_current(void);
ALLOC_STATS_WEAK void alloc_stats_totals(const struct alloc_table *t, struct alloc_totals *out);
/* Names of the kinds, for JSON ("malloc", "calloc", ...). */
ALLOC_STATS_WEAK const char *alloc_stats_kind_name(enum alloc_kind k);

#ifndef ALLOC_STATS_IMPL
static inline bool
alloc_stats_linked(void)
{
	return alloc_stats_use != NULL;
}
#endif

#endif
