/*
 * Profiling and introspection of a running server, independent of the HTTP
 * layer (profile_http.c is the thin glue): CPU profiles of every worker over
 * one window (gperftools), the pool and allocator counters of every worker,
 * and the counting allocator's call sites. The JSON shapes are documented at
 * the top of profile.c.
 *
 * Workers talk through the profiling part of the shared region: the process
 * that starts a CPU profile (the worker that got the HTTP request, or the
 * supervisor on SIGUSR2) writes the run there and sends SIGUSR2 to every
 * worker; each worker starts gperftools, stops it with a libevent timer at
 * the run's end and reports in its slot; the starter polls the slots with a
 * timer (or the supervisor's loop) and merges the files into one.
 */
#ifndef EVENTODB_PROFILE_H
#define EVENTODB_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config;
struct evbuffer;
struct shm;
struct worker;

#define PROFILE_PATH_MAX 512 /* a profile file */
#define PROFILE_DIR_MAX 384  /* --profile-dir */
#define PROFILE_BASE_MAX 480 /* a run's file name without its ending */
#define PROFILE_SECONDS_DEFAULT 30
#define PROFILE_SECONDS_MAX 300

/* An error to answer: HTTP status, error code, message. */
struct profile_error {
	int status;
	const char *code;
	char message[256];
};

/* ---- supervisor, before fork ------------------------------------------- */
/* Bytes the profiling part needs (shm_create_parts). */
size_t profile_part_size(uint32_t nworkers);
/* Lays out the part and settles cfg->profile_dir (the default is resolved
 * and the directory created). Failing to create the directory is only
 * logged: profiles then fail with that error. 0, or -1 if the part is
 * missing. */
int profile_setup(struct shm *s, struct config *cfg);
/* In a newly forked worker, before anything else: counts allocations into
 * this worker's table in the region (counting builds), and keeps SIGUSR2
 * from killing the process until its event loop handles it. */
void profile_child_init(struct shm *s, uint32_t slot);

/* ---- supervisor, SIGUSR2 ------------------------------------------------- */
/* Starts a CPU profile of every worker for cfg->profile_seconds (logged). */
void profile_sigusr2(struct shm *s, const struct config *cfg);
/* Called from the supervisor's loop: finishes a run it started once every
 * worker reported or the deadline passed (merges, logs, releases). */
void profile_supervisor_poll(struct shm *s);

/* ---- worker --------------------------------------------------------------- */
/* Event-loop side of a worker: the SIGUSR2 event, the profile timers, the
 * once-a-second publication of its pools and malloc counters. */
int profile_worker_start(struct worker *w);
void profile_worker_stop(struct worker *w);

/* ---- requests (any transport) -------------------------------------------- */
/* Parses the seconds parameter (NULL or "" = the default). 0, or -1 with a
 * 400 in err. */
int profile_parse_seconds(const char *text, int64_t *seconds, struct profile_error *err);

enum profile_worker_state {
	PROFILE_NOT_ASKED = 0, /* not running or not ready when the profile began */
	PROFILE_OK,
	PROFILE_FAILED,  /* reported an error */
	PROFILE_MISSING, /* did not report before the deadline */
};

struct profile_worker_result {
	uint32_t worker; /* 1-based, as in the logs */
	pid_t pid;
	enum profile_worker_state state;
	int error;       /* errno of a failure */
	int64_t samples; /* as counted by gperftools */
	char file[PROFILE_PATH_MAX];
};

struct profile_summary {
	uint64_t run;
	int64_t seconds;
	int64_t started_us;
	char file[PROFILE_PATH_MAX]; /* the merged profile; "" when none was made */
	char merge_error[256];       /* why not, when file is "" */
	bool maps_agree;             /* every worker's executable mappings were the same */
	uint32_t relocated;          /* mappings moved by the merge when they did not */
	uint32_t nworkers;
	uint32_t reported;                     /* workers in state PROFILE_OK */
	int64_t samples;                       /* over the workers that reported */
	struct profile_worker_result *workers; /* nworkers entries */
};

/* Called once the profile is done (merged or not); the summary is freed
 * after the call. */
typedef void (*profile_cpu_done)(void *arg, const struct profile_summary *sum);

/* Starts a CPU profile of every worker for seconds; done is called from the
 * event loop when it is over. 0, or -1 with err (501 without gperftools,
 * 409 while another profile runs, 503 when no worker is ready). */
int profile_cpu_begin(struct worker *w, int64_t seconds, profile_cpu_done done, void *arg, struct profile_error *err);
/* The summary as JSON (the shape is documented in profile.c). */
void profile_summary_json(const struct profile_summary *sum, struct evbuffer *b);

/* GET /debug/pprof/heap: every worker's pools and malloc counters. */
void profile_heap_json(struct worker *w, struct evbuffer *b);

/* GET /debug/pprof/allocs. format "json" (default) or "pprof" (a legacy
 * heap profile google-pprof reads); limit caps the sites listed (0 = all);
 * worker 0 = every worker, else only that one (1-based). 0, or -1 with err
 * (501 without the counting allocator, 400 for a bad parameter). */
int profile_allocs(struct worker *w, const char *format, const char *limit, const char *worker, struct evbuffer *b,
                   struct profile_error *err);

/* GET /debug/pprof/: what this build offers. */
void profile_index_json(struct evbuffer *b);

/* Whether CPU profiles are built in (gperftools). */
bool profile_cpu_available(void);

#endif
