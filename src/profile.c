/*
 * Profiling of a running server (see profile.h for the protocol between
 * workers). What the endpoints answer, for the tools that read them:
 *
 * GET /debug/pprof/  (the index)
 *   {"cpu_profile":true,"alloc_stats":false,"heap_profile":false,
 *    "endpoints":["/debug/pprof/profile","/debug/pprof/heap","/debug/pprof/allocs"]}
 *
 * GET /debug/pprof/profile?seconds=N  (1..300, default 30)
 *   200 application/octet-stream: one gperftools CPU profile, the merge of
 *   every worker's over the same window: `google-pprof --text eventodb FILE`.
 *   Headers: X-EventoDB-Profile-Workers: the workers in it ("1,2");
 *   X-EventoDB-Profile-Missing: those that did not report in time (only when
 *   some did not); X-EventoDB-Profile-File: the merged file on the server.
 *   The merged file and one file per worker stay in --profile-dir:
 *   eventodb-<UTC stamp>-<run>.prof and eventodb-<UTC stamp>-<run>-w<N>.prof.
 *   With &format=json the answer is this summary instead:
 *   {"run":3,"seconds":2,"started":"2025-01-02T03:04:05.123456Z",
 *    "file":"/dir/eventodb-20250102T030405Z-3.prof","samples":412,
 *    "maps_agree":true,"relocated":0,
 *    "workers":[{"worker":1,"pid":4711,"state":"ok","samples":200,
 *                "file":"/dir/eventodb-20250102T030405Z-3-w1.prof"},
 *               {"worker":2,"pid":4712,"state":"failed","error":"Permission denied",...}],
 *    "missing":[]}
 *   state: "ok", "failed" (with "error"), "missing" (no report before the
 *   deadline, seconds + 5 s), "not_asked" (not running when it began).
 *   Errors (the JSON error body): 400 INVALID_REQUEST (seconds), 401/403,
 *   409 PROFILE_IN_PROGRESS (one profile at a time, over all workers and
 *   SIGUSR2), 501 NOT_IMPLEMENTED (built without gperftools), 503
 *   BACKEND_UNAVAILABLE (no worker ready), 500 PROFILE_FAILED (no worker
 *   reported, or the merge failed; details has the summary above).
 *
 * GET /debug/pprof/heap
 *   {"alloc_stats":true,
 *    "heap_profile":{"available":false,"reason":"..."},
 *    "workers":[{"worker":1,"pid":4711,"updated":"...Z",
 *      "pools":[{"name":"resp","gets":10,"misses":1,"in_use":0,"high_water":1},...],
 *      "malloc":{"arena":135168,"in_use":90112,"free":45056,"mmap":0},
 *      "allocs":{"allocs":1200,"bytes":88000,"frees":1100,"live":100}}]}
 *   pools and malloc (glibc's mallinfo2) are published by each worker once
 *   a second ("updated"; the worker answering publishes its own first);
 *   allocs is live (the counting allocator, null when not built in). There
 *   is no gperftools heap profile: the server runs on glibc malloc (tcmalloc
 *   is not offered as a build option); call sites come from allocs below.
 *
 * GET /debug/pprof/allocs?limit=N&worker=N&format=json|pprof
 *   501 NOT_IMPLEMENTED unless built with --enable-alloc-stats. Otherwise:
 *   {"total":{"allocs":N,"bytes":N,"frees":N,"live":N,"malloc":N,"calloc":N,
 *             "realloc":N,"aligned":N,"strdup":N,"dropped":N},
 *    "workers":[{"worker":1,"pid":4711,"since":"...Z", ...the same fields...,"sites":K}],
 *    "sites":[{"object":"eventodb","own":true,"offset":"0x2f1a3","function":null,
 *              "allocs":N,"bytes":N},
 *             {"object":"libjson-c.so.5","own":false,"offset":"0x6a21",
 *              "function":"json_object_new_object","allocs":N,"bytes":N}],
 *    "sites_total":K,"maps_agree":true,"unmatched_workers":[]}
 *   Counts are since each worker started, summed over the workers selected
 *   (worker=N: that one; default all). allocs counts every allocating call
 *   (malloc, calloc, realloc, the aligned ones, strdup, strndup), bytes what
 *   they asked for; live = allocs - frees (a realloc that moves counts a
 *   free too). Sites are call sites (return addresses) summed over workers,
 *   most allocations first, limit of them (default 100, 0 = all); "offset"
 *   is the call's address within the object (addr2line -f -e OBJECT
 *   OFFSET); "function" is the exported symbol there, if any (our own
 *   binary exports none: use addr2line or format=pprof). A worker whose
 *   loaded objects differ from the answering one's cannot be attributed by
 *   it: its sites are left out and it is listed in unmatched_workers.
 *   format=pprof answers a legacy gperftools heap profile (text) of the
 *   same sites that `google-pprof --text eventodb FILE` symbolizes, our own
 *   functions included; both of its count pairs carry allocations since
 *   start (there is no per-site in-use count).
 *
 * Everything here runs in the event loop except the merge and the reading
 * of the profile files once a profile is over (a few hundred KiB of local
 * disk) and gperftools' own writing of a worker's file at its stop.
 */
#include "autoconf.h"

#include <dlfcn.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(HAVE_GPERFTOOLS) && !defined(PROFILE_WITHOUT_GPERFTOOLS)
#define PROFILE_CPU 1
#include <gperftools/profiler.h>
#endif

#include "alloc_stats.h"
#include "config.h"
#include "evlib.h"
#include "jsonw.h"
#include "log.h"
#include "pool.h"
#include "profile.h"
#include "profile_merge.h"
#include "sanitize.h"
#include "shm.h"
#include "worker.h"

#define PROF_MAGIC 0x50524f46u /* "PROF" */
#define PROF_POOLS 16
#define PROF_POOL_NAME 24
#define REPORT_GRACE_US (5 * 1000000LL) /* after the window, for the last reports */
#define TAKEOVER_US (60 * 1000000LL)    /* a run this far past its end was abandoned */
#define POLL_US 100000

struct prof_pool {
	char name[PROF_POOL_NAME];
	uint64_t gets, misses, in_use, high_water;
};

/* One worker's slot. The run fields are written by the starter (asked_*)
 * and by the worker (the rest), each published with a release store. */
struct prof_slot {
	uint64_t asked_run; /* the run this worker was asked to profile */
	int32_t asked_pid;  /* ...as this process (a respawned worker was not asked) */
	int32_t error;      /* of done_run: 0 or an errno */
	uint64_t started_run;
	uint64_t done_run;
	int64_t samples;
	/* published by the worker once a second */
	int64_t updated_us;
	uint32_t npools;
	struct prof_pool pools[PROF_POOLS];
	uint64_t m_arena, m_in_use, m_free, m_mmap;
	uint64_t maps_id; /* fingerprint of the loaded objects and their addresses */
};

struct prof_part {
	uint32_t magic;
	uint32_t nworkers;
	uint64_t slot_stride;
	uint64_t table_off; /* of the allocation table within a slot; 0 = no counting allocator */
	char dir[PROFILE_DIR_MAX];
	int32_t dir_error;    /* preparing dir failed with this errno */
	struct shm_lock lock; /* guards the run fields below */
	uint32_t busy;
	int32_t owner; /* pid that started the run */
	uint64_t run;
	int64_t seconds, start_us, stop_us;
	char base[PROFILE_BASE_MAX]; /* <dir>/eventodb-<stamp>-<run> */
};

/* The starter's own view of a run it began. */
struct run_local {
	uint64_t run;
	int64_t seconds, start_us, stop_us;
	char base[PROFILE_BASE_MAX];
	uint32_t nworkers;
	struct profile_worker_result *res; /* state PROFILE_MISSING while awaited */
};

/* A worker's process-wide profiling state (one worker per process). */
static struct {
	struct worker *w;
	struct event *ev_usr2, *ev_stop, *ev_tick;
	bool profiling;
	uint64_t run;      /* being profiled */
	uint64_t seen_run; /* last run acted on */
	char file[PROFILE_PATH_MAX];
	struct cpu_req *req; /* a profile this worker started and waits for */
} pw;

struct cpu_req {
	struct worker *w;
	struct run_local rl;
	profile_cpu_done done;
	void *arg;
	struct event *ev;
};

static struct run_local *sup_run; /* the supervisor's SIGUSR2 run */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static size_t
align64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static struct prof_part *
part(struct shm *s)
{
	uint64_t off = shm_header(s)->prof_offset;
	struct prof_part *p = off ? shm_at(s, off) : NULL;

	return p != NULL && p->magic == PROF_MAGIC ? p : NULL;
}

static struct prof_slot *
slot_of(struct prof_part *p, uint32_t i)
{
	return (struct prof_slot *)((char *)p + align64(sizeof(*p)) + (size_t)i * p->slot_stride);
}

static struct alloc_table *
table_of(struct prof_part *p, uint32_t i)
{
	return p->table_off ? (struct alloc_table *)((char *)slot_of(p, i) + p->table_off) : NULL;
}

bool
profile_cpu_available(void)
{
#ifdef PROFILE_CPU
	return true;
#else
	return false;
#endif
}

static void set_err(struct profile_error *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
set_err(struct profile_error *e, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

/* prefix (JSON text up to a value), then true or false */
static void
put_bool(struct evbuffer *b, const char *prefix, bool v)
{
	jw_raw(b, prefix, strlen(prefix));
	if (v)
		jw_lit(b, "true");
	else
		jw_lit(b, "false");
}

/* ---- setup (supervisor) ----------------------------------------------------- */

size_t
profile_part_size(uint32_t nworkers)
{
	size_t table = alloc_stats_linked() ? align64(sizeof(struct alloc_table)) : 0;

	return align64(sizeof(struct prof_part)) + (size_t)nworkers * (align64(sizeof(struct prof_slot)) + table);
}

/* A directory we own: made if missing (mode), refused if it is a symlink or
 * someone else's. Returns 0 or an errno. */
static int
own_dir(const char *dir, mode_t mode, bool private_dir)
{
	struct stat st;

	if (mkdir(dir, mode) != 0 && errno != EEXIST)
		return errno;
	if (lstat(dir, &st) != 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	/* In a shared directory like /tmp, only one that is ours and closed to others. */
	if (private_dir && (st.st_uid != geteuid() || (st.st_mode & 022) != 0))
		return EPERM;
	return 0;
}

int
profile_setup(struct shm *s, struct config *cfg)
{
	struct shm_header *h = shm_header(s);
	struct prof_part *p;
	char dir[PROFILE_DIR_MAX];
	const char *sd = getenv("STATE_DIRECTORY");
	bool private_dir = false;
	int e;

	if (h->prof_offset == 0)
		return -1;
	p = shm_at(s, h->prof_offset);
	memset(p, 0, sizeof(*p));
	p->nworkers = h->nworkers;
	p->table_off = alloc_stats_linked() ? align64(sizeof(struct prof_slot)) : 0;
	p->slot_stride = align64(sizeof(struct prof_slot)) + (p->table_off ? align64(sizeof(struct alloc_table)) : 0);
	if (shm_lock_init(&p->lock) != 0)
		return -1;

	if (cfg->profile_dir != NULL && cfg->profile_dir[0] != '\0') {
		snprintf(dir, sizeof(dir), "%s", cfg->profile_dir);
	} else if (sd != NULL && sd[0] != '\0') {
		/* systemd's StateDirectory= (the first, if several) */
		snprintf(dir, sizeof(dir), "%.*s/profiles", (int)strcspn(sd, ":"), sd);
	} else {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/eventodb-profiles-%u", tmp && tmp[0] == '/' ? tmp : "/tmp",
		         (unsigned)geteuid());
		private_dir = true;
	}
	if (strlen(dir) + 1 >= sizeof(dir))
		e = ENAMETOOLONG;
	else
		e = own_dir(dir, private_dir ? 0700 : 0750, private_dir);
	if (e != 0)
		log_warn("profile directory %s: %s; CPU profiles will fail until it is usable", dir, strerror(e));
	p->dir_error = e;
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	free(cfg->profile_dir);
	cfg->profile_dir = strdup(dir);
	p->magic = PROF_MAGIC;
	return 0;
}

void
profile_child_init(struct shm *s, uint32_t slot)
{
	struct prof_part *p = part(s);
	struct prof_slot *sl;

	/* Until the worker's event loop takes SIGUSR2, a profile request must
	 * not kill it (the default action); the worker checks its slot then. */
	signal(SIGUSR2, SIG_IGN);
	if (p == NULL || slot >= p->nworkers)
		return;
	sl = slot_of(p, slot);
	sl->updated_us = 0;
	sl->npools = 0;
	if (p->table_off != 0 && alloc_stats_linked())
		alloc_stats_use(table_of(p, slot));
}

/* ---- one run: begin, poll, finish (worker or supervisor) -------------------- */

static bool
pid_dead(pid_t pid)
{
	return pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH);
}

static void
run_free(struct run_local *rl)
{
	if (rl != NULL)
		free(rl->res);
}

static int
run_begin(struct shm *s, int64_t seconds, struct run_local *rl, struct profile_error *err)
{
	struct prof_part *p = part(s);
	int64_t now = now_unix_us();
	uint32_t asked = 0;
	char stamp[32];
	struct tm tm;
	time_t t;

	memset(rl, 0, sizeof(*rl));
	if (p == NULL) {
		set_err(err, 500, "INTERNAL_ERROR", "the profiling part of the shared region is missing");
		return -1;
	}
	if (p->dir_error != 0) {
		set_err(err, 500, "PROFILE_FAILED", "profile directory %s: %s", p->dir, strerror(p->dir_error));
		return -1;
	}
	rl->res = calloc(p->nworkers, sizeof(*rl->res));
	if (rl->res == NULL) {
		set_err(err, 500, "INTERNAL_ERROR", "out of memory");
		return -1;
	}
	rl->nworkers = p->nworkers;

	shm_lock_take(&p->lock);
	if (p->busy) {
		if (!pid_dead(p->owner) && now < p->stop_us + TAKEOVER_US) {
			int64_t left = (p->stop_us - now + 999999) / 1000000;
			shm_lock_give(&p->lock);
			set_err(err, 409, "PROFILE_IN_PROGRESS",
			        "a CPU profile is being taken (%lld s left); one at a time",
			        (long long)(left > 0 ? left : 0));
			run_free(rl);
			return -1;
		}
		log_warn("CPU profile %llu of pid %d was never finished; starting a new one",
		         (unsigned long long)p->run, (int)p->owner);
	}
	p->busy = 1;
	p->owner = getpid();
	rl->run = ++p->run;
	rl->seconds = p->seconds = seconds;
	rl->start_us = p->start_us = now;
	rl->stop_us = p->stop_us = now + seconds * 1000000;
	t = (time_t)(now / 1000000);
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(p->base, sizeof(p->base), "%s/eventodb-%s-%llu", p->dir, stamp, (unsigned long long)rl->run);
	memcpy(rl->base, p->base, sizeof(rl->base));
	shm_lock_give(&p->lock);

	for (uint32_t i = 0; i < p->nworkers; i++) {
		struct shm_worker *sw = shm_worker(s, i);
		struct prof_slot *sl = slot_of(p, i);
		pid_t pid = sw->pid;

		rl->res[i].worker = i + 1;
		if (pid <= 0 || !sw->ready)
			continue;
		sl->asked_pid = pid;
		STORE(sl->asked_run, rl->run);
		if (kill(pid, SIGUSR2) != 0) {
			STORE(sl->asked_run, 0);
			continue;
		}
		rl->res[i].pid = pid;
		rl->res[i].state = PROFILE_MISSING;
		snprintf(rl->res[i].file, sizeof(rl->res[i].file), "%s-w%u.prof", rl->base, i + 1);
		asked++;
	}
	if (asked == 0) {
		shm_lock_take(&p->lock);
		if (p->run == rl->run)
			p->busy = 0;
		shm_lock_give(&p->lock);
		set_err(err, 503, "BACKEND_UNAVAILABLE", "no worker is ready to be profiled");
		run_free(rl);
		return -1;
	}
	return 0;
}

/* true once every asked worker reported or the deadline passed. */
static bool
run_over(struct shm *s, const struct run_local *rl, int64_t now)
{
	struct prof_part *p = part(s);

	if (now >= rl->stop_us + REPORT_GRACE_US)
		return true;
	for (uint32_t i = 0; i < rl->nworkers; i++)
		if (rl->res[i].state == PROFILE_MISSING && LOAD(slot_of(p, i)->done_run) != rl->run)
			return false;
	return true;
}

static void
run_finish(struct shm *s, struct run_local *rl, struct profile_summary *sum)
{
	struct prof_part *p = part(s);
	const char **files = calloc(rl->nworkers ? rl->nworkers : 1, sizeof(*files));
	size_t nfiles = 0;
	struct profile_merge_result mr;

	memset(sum, 0, sizeof(*sum));
	sum->run = rl->run;
	sum->seconds = rl->seconds;
	sum->started_us = rl->start_us;
	sum->nworkers = rl->nworkers;
	sum->workers = rl->res;
	sum->maps_agree = true;
	for (uint32_t i = 0; i < rl->nworkers; i++) {
		struct profile_worker_result *r = &rl->res[i];
		struct prof_slot *sl = slot_of(p, i);

		if (r->state != PROFILE_MISSING || LOAD(sl->done_run) != rl->run)
			continue;
		r->error = sl->error;
		r->samples = sl->samples;
		r->state = r->error == 0 ? PROFILE_OK : PROFILE_FAILED;
		if (r->state == PROFILE_OK) {
			sum->reported++;
			sum->samples += r->samples;
			if (files != NULL)
				files[nfiles++] = r->file;
		}
	}
	if (files == NULL) {
		snprintf(sum->merge_error, sizeof(sum->merge_error), "out of memory");
	} else if (nfiles == 0) {
		snprintf(sum->merge_error, sizeof(sum->merge_error), "no worker reported a profile");
	} else {
		char out[PROFILE_PATH_MAX];
		snprintf(out, sizeof(out), "%s.prof", rl->base);
		if (profile_merge_files(files, nfiles, out, &mr, sum->merge_error, sizeof(sum->merge_error)) == 0) {
			snprintf(sum->file, sizeof(sum->file), "%s", out);
			sum->maps_agree = mr.maps_agree;
			sum->relocated = mr.relocated;
			if (!mr.maps_agree)
				log_warn("CPU profile %llu: the workers' executable mappings differ; %u mapping(s) "
				         "relocated in the merged profile",
				         (unsigned long long)rl->run, mr.relocated);
		}
	}
	free(files);
	shm_lock_take(&p->lock);
	if (p->run == rl->run && p->owner == getpid())
		p->busy = 0;
	shm_lock_give(&p->lock);
}

static const char *
state_name(enum profile_worker_state st)
{
	switch (st) {
	case PROFILE_OK:
		return "ok";
	case PROFILE_FAILED:
		return "failed";
	case PROFILE_MISSING:
		return "missing";
	default:
		return "not_asked";
	}
}

/* ---- the worker being profiled ----------------------------------------------- */

static struct prof_slot *
my_slot(void)
{
	struct prof_part *p = pw.w ? part(pw.w->shm) : NULL;

	return p != NULL && pw.w->slot < p->nworkers ? slot_of(p, pw.w->slot) : NULL;
}

static void
report(struct prof_slot *sl, uint64_t run, int error, int64_t samples)
{
	sl->error = error;
	sl->samples = samples;
	STORE(sl->done_run, run);
}

#ifdef PROFILE_CPU
static void
stop_profile(int error)
{
	struct ProfilerState st;
	struct prof_slot *sl = my_slot();

	if (!pw.profiling)
		return;
	ProfilerGetCurrentState(&st);
	ProfilerStop();
	pw.profiling = false;
	evtimer_del(pw.ev_stop);
	if (sl != NULL)
		report(sl, pw.run, error, st.samples_gathered);
	log_info("worker %u wrote a CPU profile of %d samples to %s", pw.w->slot + 1, st.samples_gathered, pw.file);
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
	stop_profile(0);
}
#endif

/* SIGUSR2: a profile request may be waiting in this worker's slot. */
static void
on_usr2(evutil_socket_t sig, short what, void *arg)
{
	struct prof_part *p = part(pw.w->shm);
	struct prof_slot *sl = my_slot();
	uint64_t run;
	int64_t stop_us, now;
	char base[PROFILE_BASE_MAX];
	bool current;

	if (p == NULL || sl == NULL)
		return;
	run = LOAD(sl->asked_run);
	if (run == 0 || run == pw.seen_run || sl->asked_pid != getpid())
		return;
	pw.seen_run = run;
	shm_lock_take(&p->lock);
	current = p->busy && p->run == run;
	stop_us = p->stop_us;
	memcpy(base, p->base, sizeof(base));
	shm_lock_give(&p->lock);
	if (!current)
		return; /* over before we got here; the starter counted us missing */
#ifdef PROFILE_CPU
	{
		struct timeval tv;

		if (pw.profiling) /* an earlier run we were too late to report for */
			stop_profile(ECANCELED);
		now = now_unix_us();
		if (now >= stop_us) {
			report(sl, run, ETIMEDOUT, 0);
			return;
		}
		snprintf(pw.file, sizeof(pw.file), "%s-w%u.prof", base, pw.w->slot + 1);
		errno = 0;
		if (!ProfilerStart(pw.file)) {
			int e = errno ? errno : EIO;
			log_error("worker %u: cannot start a CPU profile into %s: %s", pw.w->slot + 1, pw.file,
			          strerror(e));
			report(sl, run, e, 0);
			return;
		}
		pw.profiling = true;
		pw.run = run;
		STORE(sl->started_run, run);
		tv.tv_sec = (time_t)((stop_us - now) / 1000000);
		tv.tv_usec = (suseconds_t)((stop_us - now) % 1000000);
		evtimer_add(pw.ev_stop, &tv);
		log_info("worker %u taking a CPU profile for %.1f s into %s", pw.w->slot + 1,
		         (double)(stop_us - now) / 1e6, pw.file);
	}
#else
	(void)stop_us;
	(void)now;
	(void)base;
	report(sl, run, ENOSYS, 0);
#endif
}

static int
fp_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	uint64_t *h = arg;
	uintptr_t a = (uintptr_t)info->dlpi_addr;

	for (const char *c = info->dlpi_name ? info->dlpi_name : ""; *c; c++)
		*h = (*h ^ (unsigned char)*c) * 1099511628211ull;
	for (size_t i = 0; i < sizeof(a); i++)
		*h = (*h ^ ((a >> (8 * i)) & 0xff)) * 1099511628211ull;
	return 0;
}

/* A fingerprint (FNV-1a) of the loaded objects and where they are. */
static uint64_t
maps_fingerprint(void)
{
	uint64_t h = 14695981039346656037ull;

	dl_iterate_phdr(fp_one, &h);
	return h;
}

/* This worker's pools and malloc counters into its slot. */
static void
publish(void)
{
	struct prof_slot *sl = my_slot();
	uint32_t n = 0;

	if (sl == NULL)
		return;
	for (struct pool *p = pool_first(); p != NULL && n < PROF_POOLS; p = p->next, n++) {
		struct prof_pool *d = &sl->pools[n];
		if (strncmp(d->name, p->name, sizeof(d->name) - 1) != 0)
			snprintf(d->name, sizeof(d->name), "%s", p->name);
		d->gets = p->gets;
		d->misses = p->misses;
		d->in_use = p->in_use;
		d->high_water = p->high_water;
	}
	sl->npools = n;
#ifdef SAN_LSAN
	/* the sanitizer's allocator serves every block and its mallinfo is
	 * all zeros: ask it instead */
	sl->m_arena = __sanitizer_get_heap_size();
	sl->m_in_use = __sanitizer_get_current_allocated_bytes();
	sl->m_free = __sanitizer_get_free_bytes();
	sl->m_mmap = 0;
#else
	{
		struct mallinfo2 mi = mallinfo2();

		sl->m_arena = mi.arena + mi.hblkhd;
		sl->m_in_use = mi.uordblks + mi.hblkhd;
		sl->m_free = mi.fordblks;
		sl->m_mmap = mi.hblkhd;
	}
#endif
	STORE(sl->updated_us, now_unix_us());
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct prof_slot *sl = my_slot();

	publish();
	/* cheap (a walk over the loaded objects): a library loaded after fork
	 * shows within a second */
	if (sl != NULL)
		STORE(sl->maps_id, maps_fingerprint());
}

int
profile_worker_start(struct worker *w)
{
	struct timeval one = {1, 0};
	struct prof_slot *sl;

	pw.w = w;
	pw.ev_usr2 = evsignal_new(w->base, SIGUSR2, on_usr2, NULL);
	pw.ev_tick = event_new(w->base, -1, EV_PERSIST, on_tick, NULL);
#ifdef PROFILE_CPU
	pw.ev_stop = evtimer_new(w->base, on_stop, NULL);
#endif
	if (pw.ev_usr2 == NULL || pw.ev_tick == NULL || event_add(pw.ev_usr2, NULL) != 0 ||
	    event_add(pw.ev_tick, &one) != 0) {
		log_error("worker %u: cannot set up the profiling events", w->slot + 1);
		return -1;
	}
#ifdef PROFILE_CPU
	if (pw.ev_stop == NULL)
		return -1;
#endif
	sl = my_slot();
	if (sl != NULL) {
		/* runs before this process existed are not ours */
		pw.seen_run = LOAD(sl->asked_run);
		STORE(sl->maps_id, maps_fingerprint());
	}
	publish();
	return 0;
}

void
profile_worker_stop(struct worker *w)
{
#ifdef PROFILE_CPU
	stop_profile(ECANCELED);
#endif
	if (pw.req != NULL) {
		/* nobody to answer any more; free the run for others */
		struct profile_summary sum;
		run_finish(w->shm, &pw.req->rl, &sum);
		event_free(pw.req->ev);
		run_free(&pw.req->rl);
		free(pw.req);
		pw.req = NULL;
	}
	if (pw.ev_usr2 != NULL)
		event_free(pw.ev_usr2);
	if (pw.ev_tick != NULL)
		event_free(pw.ev_tick);
	if (pw.ev_stop != NULL)
		event_free(pw.ev_stop);
	pw.ev_usr2 = pw.ev_tick = pw.ev_stop = NULL;
}

/* ---- a CPU profile asked for over HTTP ------------------------------------------ */

int
profile_parse_seconds(const char *text, int64_t *seconds, struct profile_error *err)
{
	int64_t v = 0;

	*seconds = PROFILE_SECONDS_DEFAULT;
	if (text == NULL || text[0] == '\0')
		return 0;
	for (const char *c = text; *c; c++) {
		if (*c < '0' || *c > '9' || v > PROFILE_SECONDS_MAX) {
			v = -1;
			break;
		}
		v = v * 10 + (*c - '0');
	}
	if (v < 1 || v > PROFILE_SECONDS_MAX) {
		set_err(err, 400, "INVALID_REQUEST", "seconds must be a whole number from 1 to %d",
		        PROFILE_SECONDS_MAX);
		return -1;
	}
	*seconds = v;
	return 0;
}

static void
cpu_poll(evutil_socket_t fd, short what, void *arg)
{
	struct cpu_req *cr = arg;
	struct profile_summary sum;
	struct timeval tv = {0, POLL_US};

	if (!run_over(cr->w->shm, &cr->rl, now_unix_us())) {
		evtimer_add(cr->ev, &tv);
		return;
	}
	run_finish(cr->w->shm, &cr->rl, &sum);
	pw.req = NULL;
	cr->done(cr->arg, &sum);
	event_free(cr->ev);
	run_free(&cr->rl);
	free(cr);
}

int
profile_cpu_begin(struct worker *w, int64_t seconds, profile_cpu_done done, void *arg, struct profile_error *err)
{
	struct cpu_req *cr;
	struct timeval tv;

	if (!profile_cpu_available()) {
		set_err(err, 501, "NOT_IMPLEMENTED",
		        "CPU profiles are not built in: build with gperftools (configure --with-gperftools)");
		return -1;
	}
	if (pw.req != NULL) {
		set_err(err, 409, "PROFILE_IN_PROGRESS", "a CPU profile is being taken; one at a time");
		return -1;
	}
	cr = calloc(1, sizeof(*cr));
	if (cr == NULL || (cr->ev = evtimer_new(w->base, cpu_poll, cr)) == NULL) {
		free(cr);
		set_err(err, 500, "INTERNAL_ERROR", "out of memory");
		return -1;
	}
	cr->w = w;
	cr->done = done;
	cr->arg = arg;
	if (run_begin(w->shm, seconds, &cr->rl, err) != 0) {
		event_free(cr->ev);
		free(cr);
		return -1;
	}
	pw.req = cr;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = POLL_US / 2;
	evtimer_add(cr->ev, &tv);
	log_info("CPU profile %llu of every worker for %lld s requested", (unsigned long long)cr->rl.run,
	         (long long)seconds);
	return 0;
}

void
profile_summary_json(const struct profile_summary *sum, struct evbuffer *b)
{
	bool first = true;

	jw_lit(b, "{\"run\":");
	jw_i64(b, (int64_t)sum->run);
	jw_lit(b, ",\"seconds\":");
	jw_i64(b, sum->seconds);
	jw_lit(b, ",\"started\":");
	jw_time_us(b, sum->started_us);
	jw_lit(b, ",\"file\":");
	if (sum->file[0] != '\0')
		jw_cstr(b, sum->file);
	else
		jw_lit(b, "null");
	if (sum->file[0] == '\0') {
		jw_lit(b, ",\"merge_error\":");
		jw_cstr(b, sum->merge_error);
	}
	jw_lit(b, ",\"samples\":");
	jw_i64(b, sum->samples);
	put_bool(b, ",\"maps_agree\":", sum->maps_agree);
	jw_lit(b, ",\"relocated\":");
	jw_i64(b, sum->relocated);
	jw_lit(b, ",\"workers\":[");
	for (uint32_t i = 0; i < sum->nworkers; i++) {
		const struct profile_worker_result *r = &sum->workers[i];
		if (i > 0)
			jw_lit(b, ",");
		jw_lit(b, "{\"worker\":");
		jw_i64(b, r->worker);
		jw_lit(b, ",\"pid\":");
		jw_i64(b, r->pid);
		jw_lit(b, ",\"state\":");
		jw_cstr(b, state_name(r->state));
		if (r->state == PROFILE_FAILED) {
			jw_lit(b, ",\"error\":");
			jw_cstr(b, strerror(r->error));
		}
		jw_lit(b, ",\"samples\":");
		jw_i64(b, r->samples);
		jw_lit(b, ",\"file\":");
		if (r->state == PROFILE_OK)
			jw_cstr(b, r->file);
		else
			jw_lit(b, "null");
		jw_lit(b, "}");
	}
	jw_lit(b, "],\"missing\":[");
	for (uint32_t i = 0; i < sum->nworkers; i++) {
		if (sum->workers[i].state != PROFILE_MISSING)
			continue;
		if (!first)
			jw_lit(b, ",");
		first = false;
		jw_i64(b, sum->workers[i].worker);
	}
	jw_lit(b, "]}");
}

/* ---- SIGUSR2 to the supervisor ------------------------------------------------- */

void
profile_sigusr2(struct shm *s, const struct config *cfg)
{
	struct profile_error err;
	uint32_t asked = 0;

	if (!profile_cpu_available()) {
		log_warn("SIGUSR2: CPU profiles are not built in (configure --with-gperftools); nothing done");
		return;
	}
	if (sup_run != NULL) {
		log_warn("SIGUSR2: a CPU profile is already being taken; ignored");
		return;
	}
	sup_run = calloc(1, sizeof(*sup_run));
	if (sup_run == NULL)
		return;
	if (run_begin(s, cfg->profile_seconds, sup_run, &err) != 0) {
		log_warn("SIGUSR2: no CPU profile: %s", err.message);
		free(sup_run);
		sup_run = NULL;
		return;
	}
	for (uint32_t i = 0; i < sup_run->nworkers; i++)
		asked += sup_run->res[i].state == PROFILE_MISSING;
	log_info("SIGUSR2: CPU profile %llu of %u worker(s) for %lld s into %s-w*.prof",
	         (unsigned long long)sup_run->run, asked, (long long)cfg->profile_seconds, sup_run->base);
}

void
profile_supervisor_poll(struct shm *s)
{
	struct profile_summary sum;

	if (sup_run == NULL || !run_over(s, sup_run, now_unix_us()))
		return;
	run_finish(s, sup_run, &sum);
	for (uint32_t i = 0; i < sum.nworkers; i++) {
		const struct profile_worker_result *r = &sum.workers[i];
		if (r->state == PROFILE_OK)
			log_info("CPU profile %llu: worker %u: %lld samples in %s", (unsigned long long)sum.run,
			         r->worker, (long long)r->samples, r->file);
		else if (r->state == PROFILE_FAILED)
			log_warn("CPU profile %llu: worker %u failed: %s", (unsigned long long)sum.run, r->worker,
			         strerror(r->error));
		else if (r->state == PROFILE_MISSING)
			log_warn("CPU profile %llu: worker %u did not report", (unsigned long long)sum.run, r->worker);
	}
	if (sum.file[0] != '\0')
		log_info("CPU profile %llu: all workers merged into %s", (unsigned long long)sum.run, sum.file);
	else
		log_warn("CPU profile %llu: no merged profile: %s", (unsigned long long)sum.run, sum.merge_error);
	run_free(sup_run);
	free(sup_run);
	sup_run = NULL;
}

/* ---- the heap: pools and malloc counters ----------------------------------------- */

static void
alloc_fields(struct evbuffer *b, const struct alloc_totals *t, bool kinds)
{
	jw_lit(b, "\"allocs\":");
	jw_i64(b, (int64_t)t->allocs);
	jw_lit(b, ",\"bytes\":");
	jw_i64(b, (int64_t)t->bytes);
	jw_lit(b, ",\"frees\":");
	jw_i64(b, (int64_t)t->frees);
	jw_lit(b, ",\"live\":");
	jw_i64(b, (int64_t)(t->allocs - t->frees));
	if (!kinds)
		return;
	for (int k = 0; k < ALLOC_NKINDS; k++) {
		jw_lit(b, ",");
		jw_key(b, alloc_stats_kind_name((enum alloc_kind)k));
		jw_i64(b, (int64_t)t->calls[k]);
	}
	jw_lit(b, ",\"dropped\":");
	jw_i64(b, (int64_t)t->dropped_allocs);
}

void
profile_heap_json(struct worker *w, struct evbuffer *b)
{
	struct prof_part *p = part(w->shm);
	bool first = true;

	publish(); /* ours fresh; the others are at most a second old */
	put_bool(b, "{\"alloc_stats\":", alloc_stats_linked());
	jw_lit(b, ",\"heap_profile\":{\"available\":false,\"reason\":\"the server uses glibc malloc; there is no "
	          "tcmalloc heap profiler in this build (allocation call sites: /debug/pprof/allocs, "
	          "configure --enable-alloc-stats)\"}");
	jw_lit(b, ",\"workers\":[");
	for (uint32_t i = 0; p != NULL && i < p->nworkers; i++) {
		struct prof_slot *sl = slot_of(p, i);
		struct alloc_table *t = table_of(p, i);
		pid_t pid = shm_worker(w->shm, i)->pid;
		int64_t upd = LOAD(sl->updated_us);

		if (pid <= 0)
			continue;
		if (!first)
			jw_lit(b, ",");
		first = false;
		jw_lit(b, "{\"worker\":");
		jw_i64(b, i + 1);
		jw_lit(b, ",\"pid\":");
		jw_i64(b, pid);
		jw_lit(b, ",\"updated\":");
		if (upd > 0)
			jw_time_us(b, upd);
		else
			jw_lit(b, "null");
		jw_lit(b, ",\"pools\":[");
		for (uint32_t k = 0; k < sl->npools && k < PROF_POOLS; k++) {
			const struct prof_pool *pp = &sl->pools[k];
			char name[PROF_POOL_NAME];
			memcpy(name, pp->name, sizeof(name));
			name[sizeof(name) - 1] = '\0';
			if (k > 0)
				jw_lit(b, ",");
			jw_lit(b, "{\"name\":");
			jw_cstr(b, name);
			jw_lit(b, ",\"gets\":");
			jw_i64(b, (int64_t)pp->gets);
			jw_lit(b, ",\"misses\":");
			jw_i64(b, (int64_t)pp->misses);
			jw_lit(b, ",\"in_use\":");
			jw_i64(b, (int64_t)pp->in_use);
			jw_lit(b, ",\"high_water\":");
			jw_i64(b, (int64_t)pp->high_water);
			jw_lit(b, "}");
		}
		jw_lit(b, "],\"malloc\":{\"arena\":");
		jw_i64(b, (int64_t)sl->m_arena);
		jw_lit(b, ",\"in_use\":");
		jw_i64(b, (int64_t)sl->m_in_use);
		jw_lit(b, ",\"free\":");
		jw_i64(b, (int64_t)sl->m_free);
		jw_lit(b, ",\"mmap\":");
		jw_i64(b, (int64_t)sl->m_mmap);
		jw_lit(b, "},\"allocs\":");
		if (t != NULL && alloc_stats_linked()) {
			struct alloc_totals at;
			alloc_stats_totals(t, &at);
			jw_lit(b, "{");
			alloc_fields(b, &at, false);
			jw_lit(b, "}");
		} else {
			jw_lit(b, "null");
		}
		jw_lit(b, "}");
	}
	jw_lit(b, "]}");
}

/* ---- allocation sites ------------------------------------------------------------ */

static int
by_pc(const void *a, const void *b)
{
	const struct alloc_site *x = a, *y = b;

	return x->pc < y->pc ? -1 : x->pc > y->pc;
}

static int
by_allocs(const void *a, const void *b)
{
	const struct alloc_site *x = a, *y = b;

	if (x->allocs != y->allocs)
		return x->allocs > y->allocs ? -1 : 1;
	return x->bytes > y->bytes ? -1 : x->bytes < y->bytes;
}

static int
parse_uint(const char *text, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (text == NULL || text[0] == '\0')
		return 1; /* absent */
	for (const char *c = text; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		v = v * 10 + (*c - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

/* The object holding pc, for the site list. */
static void
site_json(struct evbuffer *b, const struct alloc_site *s, const void *own_base)
{
	Dl_info di;
	const ElfW(Sym) *sym = NULL;
	char off[32];
	const char *obj = "?", *fn = NULL;
	uintptr_t base = 0;

	memset(&di, 0, sizeof(di));
	if (dladdr1((void *)(s->pc - 1), &di, (void **)&sym, RTLD_DL_SYMENT) != 0) {
		base = (uintptr_t)di.dli_fbase;
		/* dladdr names the nearest exported symbol below: only say so when
		 * the call is inside it (not in a static function after it) */
		if (di.dli_sname != NULL && sym != NULL && s->pc - 1 < (uintptr_t)di.dli_saddr + sym->st_size)
			fn = di.dli_sname;
		if (di.dli_fname != NULL && di.dli_fname[0] != '\0') {
			const char *slash = strrchr(di.dli_fname, '/');
			obj = slash ? slash + 1 : di.dli_fname;
		}
	}
	if (di.dli_fbase == own_base) {
		obj = "eventodb";
		fn = NULL; /* nearest exported symbol: not ours */
	}
	snprintf(off, sizeof(off), "0x%lx", (unsigned long)(s->pc - 1 - base));
	jw_lit(b, "{\"object\":");
	jw_cstr(b, obj);
	put_bool(b, ",\"own\":", di.dli_fbase == own_base);
	jw_lit(b, ",\"offset\":");
	jw_cstr(b, off);
	jw_lit(b, ",\"function\":");
	jw_cstr(b, fn);
	jw_lit(b, ",\"allocs\":");
	jw_i64(b, (int64_t)s->allocs);
	jw_lit(b, ",\"bytes\":");
	jw_i64(b, (int64_t)s->bytes);
	jw_lit(b, "}");
}

/* /proc/self/maps, for google-pprof. */
static void
add_maps(struct evbuffer *b)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	char buf[8192];
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		evbuffer_add(b, buf, (size_t)n);
	close(fd);
}

/* One worker's counts, taken before any output is written (writing allocates). */
struct worker_allocs {
	uint32_t worker;
	pid_t pid;
	int64_t since_us;
	bool matched; /* its loaded objects are where ours are: its sites can be named here */
	struct alloc_totals t;
};

static void
add_totals(struct alloc_totals *sum, const struct alloc_totals *t)
{
	sum->allocs += t->allocs;
	sum->bytes += t->bytes;
	sum->frees += t->frees;
	sum->dropped_allocs += t->dropped_allocs;
	sum->dropped_bytes += t->dropped_bytes;
	for (int k = 0; k < ALLOC_NKINDS; k++)
		sum->calls[k] += t->calls[k];
}

/* Copies the sites of table tab to out; returns how many. */
static size_t
copy_sites(const struct alloc_table *tab, struct alloc_site *out)
{
	size_t n = 0;

	for (uint32_t k = 0; k < ALLOC_SITES; k++) {
		uintptr_t pc = LOAD(tab->sites[k].pc);
		if (pc == 0)
			continue;
		out[n].pc = pc;
		out[n].allocs = LOAD(tab->sites[k].allocs);
		out[n].bytes = LOAD(tab->sites[k].bytes);
		n++;
	}
	return n;
}

/* Sums entries with the same pc, then sorts by allocations; returns the count. */
static size_t
merge_sites(struct alloc_site *sites, size_t n)
{
	size_t merged = 0;

	qsort(sites, n, sizeof(*sites), by_pc);
	for (size_t i = 0; i < n; i++) {
		if (merged > 0 && sites[merged - 1].pc == sites[i].pc) {
			sites[merged - 1].allocs += sites[i].allocs;
			sites[merged - 1].bytes += sites[i].bytes;
		} else {
			sites[merged++] = sites[i];
		}
	}
	qsort(sites, merged, sizeof(*sites), by_allocs);
	return merged;
}

static void
allocs_pprof(struct evbuffer *b, const struct alloc_totals *sum, const struct alloc_site *sites, size_t n)
{
	char line[128];

	evbuffer_add_printf(b, "heap profile: %llu: %llu [%llu: %llu] @ heapprofile\n", (unsigned long long)sum->allocs,
	                    (unsigned long long)sum->bytes, (unsigned long long)sum->allocs,
	                    (unsigned long long)sum->bytes);
	for (size_t i = 0; i < n; i++) {
		/* pc - 1: inside the call, as google-pprof expects of a stack's first address */
		int len = snprintf(line, sizeof(line), "%llu: %llu [%llu: %llu] @ 0x%lx\n",
		                   (unsigned long long)sites[i].allocs, (unsigned long long)sites[i].bytes,
		                   (unsigned long long)sites[i].allocs, (unsigned long long)sites[i].bytes,
		                   (unsigned long)(sites[i].pc - 1));
		evbuffer_add(b, line, (size_t)len);
	}
	jw_lit(b, "\nMAPPED_LIBRARIES:\n");
	add_maps(b);
}

int
profile_allocs(struct worker *w, const char *format, const char *limit_s, const char *worker_s, struct evbuffer *b,
               struct profile_error *err)
{
	struct prof_part *p = part(w->shm);
	int64_t limit = 100, only = 0;
	bool pprof = false, agree = true;
	struct worker_allocs *wa;
	struct alloc_site *sites;
	size_t nsites = 0, nw = 0, scratch_len;
	struct alloc_totals sum;
	uint64_t mine = maps_fingerprint();
	void *scratch;
	Dl_info self;
	int rl, rw;

	if (!alloc_stats_linked() || p == NULL || p->table_off == 0) {
		set_err(err, 501, "NOT_IMPLEMENTED",
		        "allocation counting is not built in: build with configure --enable-alloc-stats");
		return -1;
	}
	if (format != NULL && format[0] != '\0' && strcmp(format, "json") != 0) {
		if (strcmp(format, "pprof") != 0) {
			set_err(err, 400, "INVALID_REQUEST", "format must be json or pprof");
			return -1;
		}
		pprof = true;
		limit = 0;
	}
	rl = parse_uint(limit_s, 1000000, &limit);
	rw = parse_uint(worker_s, p->nworkers, &only);
	if (rl < 0) {
		set_err(err, 400, "INVALID_REQUEST", "limit must be a whole number (0 = all)");
		return -1;
	}
	if (rw < 0 || (rw == 0 && only < 1)) {
		set_err(err, 400, "INVALID_REQUEST", "worker must be a worker number from 1 to %u", p->nworkers);
		return -1;
	}
	/* scratch from mmap, not malloc: large, and not counted as the server's */
	scratch_len = (size_t)p->nworkers * (sizeof(*wa) + ALLOC_SITES * sizeof(*sites));
	scratch = mmap(NULL, scratch_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED) {
		set_err(err, 500, "INTERNAL_ERROR", "out of memory");
		return -1;
	}
	wa = scratch;
	sites = (struct alloc_site *)(wa + p->nworkers);
	memset(&sum, 0, sizeof(sum));
	for (uint32_t i = 0; i < p->nworkers; i++) {
		struct alloc_table *tab = table_of(p, i);
		pid_t pid = shm_worker(w->shm, i)->pid;

		if (pid <= 0 || (only != 0 && (int64_t)i + 1 != only))
			continue;
		wa[nw].worker = i + 1;
		wa[nw].pid = pid;
		wa[nw].since_us = tab->since_us;
		wa[nw].matched = i == w->slot || LOAD(slot_of(p, i)->maps_id) == mine;
		if (wa[nw].matched)
			nsites += copy_sites(tab, sites + nsites);
		else
			agree = false;
		alloc_stats_totals(tab, &wa[nw].t);
		add_totals(&sum, &wa[nw].t);
		nw++;
	}
	nsites = merge_sites(sites, nsites);
	if (limit == 0 || (size_t)limit > nsites)
		limit = (int64_t)nsites;
	if (pprof) {
		allocs_pprof(b, &sum, sites, (size_t)limit);
		munmap(scratch, scratch_len);
		return 0;
	}

	jw_lit(b, "{\"total\":{");
	alloc_fields(b, &sum, true);
	jw_lit(b, "},\"workers\":[");
	for (size_t i = 0; i < nw; i++) {
		if (i > 0)
			jw_lit(b, ",");
		jw_lit(b, "{\"worker\":");
		jw_i64(b, wa[i].worker);
		jw_lit(b, ",\"pid\":");
		jw_i64(b, wa[i].pid);
		jw_lit(b, ",\"since\":");
		jw_time_us(b, wa[i].since_us);
		jw_lit(b, ",");
		alloc_fields(b, &wa[i].t, true);
		jw_lit(b, ",\"sites\":");
		jw_i64(b, wa[i].t.sites);
		jw_lit(b, "}");
	}
	jw_lit(b, "],\"sites\":[");
	memset(&self, 0, sizeof(self));
	dladdr((void *)profile_allocs, &self);
	for (int64_t i = 0; i < limit; i++) {
		if (i > 0)
			jw_lit(b, ",");
		site_json(b, &sites[i], self.dli_fbase);
	}
	jw_lit(b, "],\"sites_total\":");
	jw_i64(b, (int64_t)nsites);
	jw_lit(b, ",\"unmatched_workers\":[");
	for (size_t i = 0, k = 0; i < nw; i++) {
		if (wa[i].matched)
			continue;
		if (k++ > 0)
			jw_lit(b, ",");
		jw_i64(b, wa[i].worker);
	}
	put_bool(b, "],\"maps_agree\":", agree);
	jw_lit(b, "}");
	munmap(scratch, scratch_len);
	return 0;
}

void
profile_index_json(struct evbuffer *b)
{
	put_bool(b, "{\"cpu_profile\":", profile_cpu_available());
	put_bool(b, ",\"alloc_stats\":", alloc_stats_linked());
	jw_lit(b, ",\"heap_profile\":false,\"endpoints\":[\"/debug/pprof/profile\",\"/debug/pprof/heap\","
	          "\"/debug/pprof/allocs\"]}");
}
