/*
 * The write ring, the stream index and the per-worker subscription counts
 * in the shared region (see ring.h for what they are for).
 *
 * Ring: a byte ring of variable-length entries. Appends are serialized by a
 * robust process-shared mutex (short: one memcpy); readers never lock.
 * Two 64-bit counters that only grow describe it: `head`, the end of the
 * last complete entry, and `reserve`, the end of the entry being written
 * (reserve == head when nobody writes). A reader at byte offset `off` copies
 * an entry out and then checks reserve - off <= size: if a writer may have
 * started overwriting those bytes, the reader was overrun and recovers from
 * the database. A writer that died mid-append leaves reserve != head; the
 * next writer (EOWNERDEAD) drops the half-written entry, which no reader
 * could see because head never covered it.
 *
 * Entry layout (8-byte aligned, may wrap around the end of the data):
 *   u64 seq | u32 len (whole entry) | u16 stream_len | u8 ns_len | u8 0 |
 *   i64 position | i64 global position | ns | stream | pad
 *
 * Wake-ups: each worker has an eventfd and two flags. `interested` is set
 * while it has subscribers (writers skip the others); `signaled` makes the
 * eventfd write happen once per batch: a writer appends, then writes the
 * eventfd only when it flips signaled 0 -> 1. The reader (ring_ack) first
 * drains the eventfd, then clears signaled, then reads the ring; all three
 * steps and the writer's exchange are sequentially consistent. Invariant:
 * while signaled is 1, either the eventfd holds a count or the reader is
 * between its drain and its clear (and reads the ring after the clear).
 * A writer that flips signaled before the reader's clear appended before
 * it, so the reader's ring read sees the entry; one that flips it after the
 * clear writes the eventfd, so the reader wakes again. (Clearing first and
 * draining second would lose a wake-up: a writer's 0 -> 1 flip and eventfd
 * write landing between the two steps is drained away, leaving signaled at
 * 1 with the eventfd empty, and no writer would ever wake that worker
 * again.) The cost is at most one spurious wake-up.
 *
 * Stream index: 4-way buckets keyed by (namespace generation, stream hash),
 * each slot under a seqlock for lock-free reads; writers take one of 64
 * robust striped mutexes. It is a cache: a miss is never wrong, and a hit is
 * only used in the safe direction (a cached version greater than
 * expectedVersion is a certain conflict, because versions only grow within
 * a namespace generation).
 */
#include "autoconf.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "evlib.h"
#include "jsonw.h"
#include "log.h"
#include "ring.h"
#include "shm.h"

#define RING_MAGIC 0x52494e47u  /* "RING" */
#define INDEX_MAGIC 0x49445831u /* "IDX1" */
#define INDEX_SLOTS 65536u      /* power of two, 48 bytes each */
#define INDEX_WAYS 4u
#define INDEX_STRIPES 64u
#define ENT_HDR 32u

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

struct ring_worker {
	uint32_t signaled;   /* a wake-up is pending on the eventfd */
	uint32_t interested; /* the worker has subscribers */
	int32_t efd;
	uint32_t pad;
} __attribute__((aligned(64)));

/*
 * Per namespace-table slot rows. The namespace table reuses the slot of a
 * deleted namespace, so each row carries the generation it belongs to:
 * generations are unique for the life of the region (every create bumps the
 * table's counter), so a row of the slot's previous namespace never matches
 * the new one and is reset when the new one first uses it.
 */

/* One worker's subscription count of one namespace slot. */
struct ring_nsc {
	uint64_t gen;
	uint32_t count;
	uint32_t pad;
};

/* Newest global position appended for one namespace slot. */
struct ring_nsg {
	uint64_t gen;
	int64_t gpos;
};

struct ring_hdr {
	uint32_t magic;
	uint32_t nworkers;
	uint64_t size;        /* data bytes, multiple of 8 */
	uint64_t data_off;    /* from the start of the part */
	uint64_t nsc_off;
	uint64_t nsg_off;
	uint32_t ns_slots;
	char host[17];
	uint8_t key[16];
	struct shm_lock lock;
	uint64_t reserve;
	uint64_t head;
	uint64_t seq;
	uint64_t epoch;
	uint64_t appends;
	uint64_t resyncs;
	struct ring_worker workers[];
};

struct ring_islot {
	uint32_t seq; /* odd while being written */
	uint32_t pad;
	uint64_t gen; /* 0 = empty */
	uint64_t hash;
	int64_t version;
	int64_t gpos;
	int64_t used_us; /* for replacement */
};

struct ring_index {
	uint32_t magic;
	uint32_t nslots;
	struct shm_lock stripes[INDEX_STRIPES];
	struct ring_islot slots[];
};

static size_t
align64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static struct ring_hdr *
hdr(struct shm *s)
{
	return shm_at(s, shm_header(s)->ring_offset);
}

static struct ring_index *
index_of(struct shm *s)
{
	return shm_at(s, shm_header(s)->index_offset);
}

static unsigned char *
data_of(struct ring_hdr *r)
{
	return (unsigned char *)r + r->data_off;
}

static struct ring_nsc *
nsc_row(struct ring_hdr *r, uint32_t worker)
{
	return (struct ring_nsc *)((char *)r + r->nsc_off) + (size_t)worker * r->ns_slots;
}

static struct ring_nsg *
nsg_of(struct ring_hdr *r, uint32_t slot)
{
	return (struct ring_nsg *)((char *)r + r->nsg_off) + slot;
}

size_t
ring_index_size(void)
{
	return align64(sizeof(struct ring_index) + (size_t)INDEX_SLOTS * sizeof(struct ring_islot));
}

static size_t
data_size(size_t ring_bytes)
{
	return (ring_bytes + 7) & ~(size_t)7;
}

size_t
ring_part_size(uint32_t nworkers, uint32_t ns_limit, size_t ring_bytes)
{
	/* one row per slot of the namespace table, which the slot numbers index */
	uint32_t slots = shm_ns_table_slots(ns_limit);
	size_t h = align64(sizeof(struct ring_hdr) + (size_t)nworkers * sizeof(struct ring_worker));
	size_t nsc = align64((size_t)nworkers * slots * sizeof(struct ring_nsc));
	size_t nsg = align64((size_t)slots * sizeof(struct ring_nsg));

	return h + nsc + nsg + align64(data_size(ring_bytes));
}

int
ring_init(struct shm *s, size_t ring_bytes)
{
	struct shm_header *sh = shm_header(s);
	struct ring_hdr *r = hdr(s);
	struct ring_index *ix = index_of(s);
	uint8_t host[8];

	if (sh->ring_offset == 0 || sh->index_offset == 0 || ring_bytes < 2 * (ENT_HDR + RING_NS_MAX + RING_STREAM_MAX)) {
		errno = EINVAL;
		return -1;
	}
	r->nworkers = sh->nworkers;
	r->size = data_size(ring_bytes);
	r->ns_slots = sh->ns_capacity;
	r->nsc_off = align64(sizeof(struct ring_hdr) + (size_t)r->nworkers * sizeof(struct ring_worker));
	r->nsg_off = r->nsc_off + align64((size_t)r->nworkers * r->ns_slots * sizeof(struct ring_nsc));
	r->data_off = r->nsg_off + align64((size_t)r->ns_slots * sizeof(struct ring_nsg));
	if (random_bytes(r->key, sizeof(r->key)) != 0 || random_bytes(host, sizeof(host)) != 0 ||
	    shm_lock_init(&r->lock) != 0) {
		errno = EIO;
		return -1;
	}
	hex_encode(host, sizeof(host), r->host);
	for (uint32_t i = 0; i < r->nworkers; i++) {
		r->workers[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (r->workers[i].efd < 0)
			return -1;
	}
	ix->nslots = INDEX_SLOTS;
	for (uint32_t i = 0; i < INDEX_STRIPES; i++)
		if (shm_lock_init(&ix->stripes[i]) != 0) {
			errno = EIO;
			return -1;
		}
	ix->magic = INDEX_MAGIC;
	r->magic = RING_MAGIC;
	return 0;
}

/* ---- hashing (SipHash-2-4) ------------------------------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);      \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                         \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                         \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);      \
	} while (0)

static uint64_t
le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint64_t
ring_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = le64(key), k1 = le64(key + 8), m, b = (uint64_t)len << 56;
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	const uint8_t *end = in + (len & ~(size_t)7);

	for (; in != end; in += 8) {
		m = le64(in);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t
ring_hash(struct shm *s, const char *p, size_t len)
{
	return ring_siphash(hdr(s)->key, p, len);
}

const char *
ring_host_id(struct shm *s)
{
	return hdr(s)->host;
}

uint64_t
ring_ns_generation(struct shm *s, const char *ns, uint32_t *slot)
{
	uint64_t gen = 0;
	uint32_t sl = 0;

	if (!shm_ns_lookup(s, ns, &sl, &gen))
		return 0;
	if (slot != NULL)
		*slot = sl;
	return gen;
}

/* ---- the ring ---------------------------------------------------------- */

static void
copy_in(struct ring_hdr *r, uint64_t off, const void *src, size_t n)
{
	size_t at = (size_t)(off % r->size), first = n < r->size - at ? n : r->size - at;

	memcpy(data_of(r) + at, src, first);
	if (first < n)
		memcpy(data_of(r), (const char *)src + first, n - first);
}

static void
copy_out(struct ring_hdr *r, uint64_t off, void *dst, size_t n)
{
	size_t at = (size_t)(off % r->size), first = n < r->size - at ? n : r->size - at;

	memcpy(dst, data_of(r) + at, first);
	if (first < n)
		memcpy((char *)dst + first, data_of(r), n - first);
}

static void
ring_lock(struct ring_hdr *r)
{
	if (shm_lock_take(&r->lock)) {
		/* The last writer died mid-append: nobody saw that entry (head
		 * never covered it), so dropping it keeps the ring consistent. */
		if (r->reserve != r->head)
			STORE(&r->reserve, r->head);
	}
}

int
ring_append(struct shm *s, const char *ns, uint64_t gen, const char *stream, size_t len, int64_t position,
            int64_t gpos)
{
	struct ring_hdr *r = hdr(s);
	unsigned char e[ENT_HDR + RING_NS_MAX + RING_STREAM_MAX + 8];
	size_t nl = strlen(ns), total;
	uint64_t off, seq;
	uint32_t len32, slot = 0;
	uint16_t sl;
	bool same_ns = gen != 0 && ring_ns_generation(s, ns, &slot) == gen;

	if (gen != 0)
		ring_index_note(s, gen, stream, len, position, gpos);
	if (nl > RING_NS_MAX || len > RING_STREAM_MAX) {
		ring_request_resync(s);
		return -1;
	}
	total = (ENT_HDR + nl + len + 7) & ~(size_t)7;
	len32 = (uint32_t)total;
	sl = (uint16_t)len;
	memset(e, 0, total);
	memcpy(e + 8, &len32, 4);
	memcpy(e + 12, &sl, 2);
	e[14] = (unsigned char)nl;
	memcpy(e + 16, &position, 8);
	memcpy(e + 24, &gpos, 8);
	memcpy(e + ENT_HDR, ns, nl);
	memcpy(e + ENT_HDR + nl, stream, len);

	ring_lock(r);
	seq = r->seq + 1;
	memcpy(e, &seq, 8);
	off = r->head;
	/* Announce the bytes about to be overwritten before touching them. */
	STORE(&r->reserve, off + total);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	copy_in(r, off, e, total);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	STORE(&r->seq, seq);
	STORE(&r->head, off + total);
	r->appends++;
	if (same_ns) {
		struct ring_nsg *g = nsg_of(r, slot);
		if (g->gen != gen)
			g->gpos = 0;
		g->gen = gen;
		if (gpos > g->gpos)
			g->gpos = gpos;
	}
	shm_lock_give(&r->lock);
	return 0;
}

void
ring_signal(struct shm *s, uint32_t self)
{
	struct ring_hdr *r = hdr(s);
	uint64_t one = 1;

	for (uint32_t i = 0; i < r->nworkers; i++) {
		struct ring_worker *w = &r->workers[i];
		if (i == self || !LOAD(&w->interested))
			continue;
		if (__atomic_exchange_n(&w->signaled, 1, __ATOMIC_SEQ_CST) == 0 &&
		    write(w->efd, &one, sizeof(one)) != (ssize_t)sizeof(one) && errno != EAGAIN)
			log_warn("waking worker %u: %s", i + 1, strerror(errno));
	}
}

void
ring_request_resync(struct shm *s)
{
	struct ring_hdr *r = hdr(s);

	__atomic_add_fetch(&r->epoch, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&r->resyncs, 1, __ATOMIC_RELAXED);
	ring_signal(s, UINT32_MAX);
}

int
ring_eventfd(struct shm *s, uint32_t slot)
{
	return hdr(s)->workers[slot].efd;
}

void
ring_interest(struct shm *s, uint32_t slot, bool on, struct ring_cursor *cur)
{
	struct ring_hdr *r = hdr(s);

	if (!on) {
		STORE(&r->workers[slot].interested, 0);
		return;
	}
	/* Interest first, then the head: an append after our read of head
	 * sees interested set and wakes us (both sequentially consistent). */
	STORE(&r->workers[slot].interested, 1);
	cur->epoch = LOAD(&r->epoch);
	cur->off = LOAD(&r->head);
	cur->seq = 0;
}

void
ring_ack(struct shm *s, uint32_t slot)
{
	struct ring_worker *w = &hdr(s)->workers[slot];
	uint64_t v;

	/* Drain first, then clear: see the comment at the top of the file. */
	while (read(w->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
	STORE(&w->signaled, 0);
}

static enum ring_read_result
reposition(struct ring_hdr *r, struct ring_cursor *cur, enum ring_read_result why)
{
	cur->epoch = LOAD(&r->epoch);
	cur->off = LOAD(&r->head);
	cur->seq = 0;
	return why;
}

enum ring_read_result
ring_read(struct shm *s, struct ring_cursor *cur, void (*fn)(const struct ring_rec *rec, void *arg), void *arg)
{
	struct ring_hdr *r = hdr(s);
	unsigned char e[ENT_HDR + RING_NS_MAX + RING_STREAM_MAX + 8];
	struct ring_rec rec;

	if (LOAD(&r->epoch) != cur->epoch)
		return reposition(r, cur, RING_RESYNC);
	for (;;) {
		uint64_t head = LOAD(&r->head), seq;
		uint32_t len;
		uint16_t sl;
		uint8_t nl;

		if (cur->off == head)
			return RING_OK;
		if (LOAD(&r->reserve) - cur->off > r->size)
			return reposition(r, cur, RING_OVERRUN);
		copy_out(r, cur->off, e, ENT_HDR);
		memcpy(&seq, e, 8);
		memcpy(&len, e + 8, 4);
		memcpy(&sl, e + 12, 2);
		nl = e[14];
		if (len < ENT_HDR || len > sizeof(e) || ENT_HDR + nl + (size_t)sl > len || cur->off + len > head)
			return reposition(r, cur, RING_OVERRUN);
		copy_out(r, cur->off + ENT_HDR, e + ENT_HDR, len - ENT_HDR);
		/* The copy is good only if no writer began overwriting it meanwhile. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (LOAD(&r->reserve) - cur->off > r->size || (cur->seq != 0 && seq != cur->seq + 1))
			return reposition(r, cur, RING_OVERRUN);
		rec.seq = seq;
		memcpy(&rec.position, e + 16, 8);
		memcpy(&rec.gpos, e + 24, 8);
		rec.ns = (const char *)e + ENT_HDR;
		rec.ns_len = nl;
		rec.stream = (const char *)e + ENT_HDR + nl;
		rec.stream_len = sl;
		cur->off += len;
		cur->seq = seq;
		fn(&rec, arg);
	}
}

void
ring_worker_reset(struct shm *s, uint32_t slot)
{
	struct ring_hdr *r = hdr(s);
	struct ring_worker *w = &r->workers[slot];

	STORE(&w->interested, 0);
	STORE(&w->signaled, 0);
	memset(nsc_row(r, slot), 0, (size_t)r->ns_slots * sizeof(struct ring_nsc));
}

/* ---- stream index ------------------------------------------------------ */

static struct ring_islot *
bucket(struct ring_index *ix, uint64_t gen, uint64_t hash, struct shm_lock **lock)
{
	uint64_t mix = hash ^ (gen * 0x9e3779b97f4a7c15ULL);
	uint32_t b = (uint32_t)(mix & (ix->nslots / INDEX_WAYS - 1));

	if (lock != NULL)
		*lock = &ix->stripes[b % INDEX_STRIPES];
	return &ix->slots[(size_t)b * INDEX_WAYS];
}

static void
islot_write(struct ring_islot *e, uint64_t gen, uint64_t hash, int64_t version, int64_t gpos, int64_t now)
{
	__atomic_add_fetch(&e->seq, 1, __ATOMIC_SEQ_CST); /* odd: being written */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	e->gen = gen;
	e->hash = hash;
	e->version = version;
	e->gpos = gpos;
	e->used_us = now;
	__atomic_add_fetch(&e->seq, 1, __ATOMIC_SEQ_CST);
}

void
ring_index_note(struct shm *s, uint64_t gen, const char *stream, size_t len, int64_t version, int64_t gpos)
{
	struct ring_index *ix = index_of(s);
	uint64_t h = ring_hash(s, stream, len);
	struct shm_lock *lk;
	struct ring_islot *b = bucket(ix, gen, h, &lk), *victim = NULL;
	int64_t now = now_unix_us();

	if (gen == 0)
		return;
	shm_lock_take(lk);
	for (uint32_t i = 0; i < INDEX_WAYS; i++) {
		struct ring_islot *e = &b[i];
		if (e->seq & 1) /* a writer died here: rewrite the slot */
			e->seq++;
		if (e->gen == gen && e->hash == h) {
			/* versions only grow; a late note never lowers one */
			if (version > e->version || gpos > e->gpos)
				islot_write(e, gen, h, version > e->version ? version : e->version,
				            gpos > e->gpos ? gpos : e->gpos, now);
			shm_lock_give(lk);
			return;
		}
		if (victim == NULL || e->gen == 0 || (victim->gen != 0 && e->used_us < victim->used_us))
			victim = e;
	}
	islot_write(victim, gen, h, version, gpos, now);
	shm_lock_give(lk);
}

bool
ring_index_conflict(struct shm *s, uint64_t gen, const char *stream, size_t len, int64_t expected, int64_t *actual)
{
	struct ring_index *ix = index_of(s);
	uint64_t h;
	struct ring_islot *b;

	if (gen == 0)
		return false;
	h = ring_hash(s, stream, len);
	b = bucket(ix, gen, h, NULL);
	for (uint32_t i = 0; i < INDEX_WAYS; i++) {
		struct ring_islot *e = &b[i];
		for (int tries = 0; tries < 4; tries++) {
			uint32_t s1 = LOAD(&e->seq), s2;
			uint64_t g, hh;
			int64_t v;

			if (s1 & 1)
				continue;
			g = e->gen;
			hh = e->hash;
			v = e->version;
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			s2 = LOAD(&e->seq);
			if (s1 != s2)
				continue;
			if (g == gen && hh == h && v > expected) {
				*actual = v;
				return true;
			}
			break;
		}
	}
	return false;
}

void
ring_index_clear(struct shm *s)
{
	struct ring_index *ix = index_of(s);

	for (uint32_t st = 0; st < INDEX_STRIPES; st++) {
		shm_lock_take(&ix->stripes[st]);
		/* bucket b lives under stripe b % INDEX_STRIPES */
		for (uint32_t b = st; b < ix->nslots / INDEX_WAYS; b += INDEX_STRIPES)
			for (uint32_t i = 0; i < INDEX_WAYS; i++)
				islot_write(&ix->slots[(size_t)b * INDEX_WAYS + i], 0, 0, 0, 0, 0);
		shm_lock_give(&ix->stripes[st]);
	}
}

/* ---- subscription counts ------------------------------------------------ */

int64_t
ring_ns_last_gpos(struct shm *s, uint32_t slot, uint64_t gen)
{
	struct ring_hdr *r = hdr(s);
	struct ring_nsg *g;
	int64_t v;

	if (slot >= r->ns_slots)
		return 0;
	g = nsg_of(r, slot);
	ring_lock(r);
	v = g->gen == gen ? g->gpos : 0;
	shm_lock_give(&r->lock);
	return v;
}

int
ring_subs_take(struct shm *s, uint32_t worker, uint32_t ns_slot, uint64_t gen, int64_t limit)
{
	struct ring_hdr *r = hdr(s);
	struct ring_nsc *mine = &nsc_row(r, worker)[ns_slot];
	int64_t total = 0;

	if (ns_slot >= r->ns_slots)
		return -1;
	/* Only this worker writes its own row; others only read it. */
	if (LOAD(&mine->gen) != gen) {
		STORE(&mine->count, 0);
		STORE(&mine->gen, gen);
	}
	__atomic_add_fetch(&mine->count, 1, __ATOMIC_SEQ_CST);
	for (uint32_t w = 0; w < r->nworkers; w++) {
		struct ring_nsc *e = &nsc_row(r, w)[ns_slot];
		if (LOAD(&e->gen) == gen)
			total += LOAD(&e->count);
	}
	/* Two workers racing for the last place may both refuse; neither
	 * can both accept, so the limit holds. */
	if (total > limit) {
		__atomic_sub_fetch(&mine->count, 1, __ATOMIC_SEQ_CST);
		return -1;
	}
	return 0;
}

void
ring_subs_give(struct shm *s, uint32_t worker, uint32_t ns_slot, uint64_t gen)
{
	struct ring_hdr *r = hdr(s);
	struct ring_nsc *mine;

	if (ns_slot >= r->ns_slots)
		return;
	mine = &nsc_row(r, worker)[ns_slot];
	if (LOAD(&mine->gen) == gen && LOAD(&mine->count) > 0)
		__atomic_sub_fetch(&mine->count, 1, __ATOMIC_SEQ_CST);
}

void
ring_get_stats(struct shm *s, struct ring_stats *out)
{
	struct ring_hdr *r = hdr(s);

	out->size = r->size;
	out->head = LOAD(&r->head);
	out->seq = LOAD(&r->seq);
	out->appends = LOAD(&r->appends);
	out->resyncs = LOAD(&r->resyncs);
}

void
ring_stats_json(struct shm *s, struct wbuf *b)
{
	struct ring_hdr *r = hdr(s);

	jw_lit(b, "\"ring\":{\"size\":");
	jw_i64(b, (int64_t)r->size);
	jw_lit(b, ",\"head\":");
	jw_i64(b, (int64_t)LOAD(&r->head));
	jw_lit(b, ",\"seq\":");
	jw_i64(b, (int64_t)LOAD(&r->seq));
	jw_lit(b, ",\"appends\":");
	jw_i64(b, (int64_t)LOAD(&r->appends));
	jw_lit(b, ",\"resyncs\":");
	jw_i64(b, (int64_t)LOAD(&r->resyncs));
	jw_lit(b, "}");
}
