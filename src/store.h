/*
 * The storage interface. Every operation is asynchronous: it is queued on the
 * calling worker's store, runs without blocking the event loop, and reports
 * through a completion callback exactly once (possibly before the call
 * returns only if the store cannot even queue it, in which case the call
 * returns -1 and the callback is NOT invoked).
 *
 * Everything a reply points to (strings, row arrays) is owned by the store
 * and valid only during the callback.
 */
#ifndef EVENTODB_STORE_H
#define EVENTODB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

enum store_status {
	ST_OK = 0,
	ST_CONFLICT,      /* expectedVersion mismatch: reply.actual_version */
	ST_MSG_EXISTS,    /* duplicate message id */
	ST_NS_EXISTS,     /* ns.create of an existing id */
	ST_NS_NOT_FOUND,  /* namespace (or its storage) does not exist */
	ST_POS_EXISTS,    /* import: a global position/id/stream position is taken */
	ST_UNAVAILABLE,   /* no database connection / queue full: HTTP 503 */
	ST_ERROR,         /* any other backend error: HTTP 500 BACKEND_ERROR */
};

/* One message row. */
struct store_msg {
	const char *id;          /* canonical UUID text */
	const char *stream;
	size_t stream_len;
	const char *type;
	int64_t position;
	int64_t global_position;
	const char *data;        /* JSON text; NULL for SQL NULL */
	const char *metadata;    /* JSON text; NULL for SQL NULL */
	int64_t time_us;         /* microseconds since the epoch, UTC */
};

struct store_ns_row {
	const char *id;
	const char *description;
	int64_t created_at_us;   /* microseconds since the epoch */
	int64_t message_count;
	int64_t stream_count;    /* ns.info only */
	bool has_last_activity;  /* ns.info only */
	int64_t last_activity_us;
};

struct store_stream_row {
	const char *stream;
	int64_t version;         /* max(position) */
	int64_t last_activity_us;
};

struct store_cat_row {
	const char *category;
	int64_t stream_count;
	int64_t message_count;
};

struct store_reply {
	enum store_status status;
	const char *error;       /* human text for ST_ERROR / ST_UNAVAILABLE */
	/* stream.write */
	int64_t position;
	int64_t global_position;
	int64_t actual_version;  /* ST_CONFLICT: -1 for an empty stream */
	/* stream.version (has_value false = empty stream), ns.delete (messages deleted) */
	bool has_value;
	int64_t value;
	/* row results; exactly one of these arrays is set, per operation */
	size_t nrows;
	const struct store_msg *msgs;
	const struct store_ns_row *nss;
	const struct store_stream_row *streams;
	const struct store_cat_row *cats;
};

typedef void (*store_cb)(const struct store_reply *r, void *arg);

struct store_write_req {
	const char *id;          /* canonical UUID, always supplied */
	const char *stream;
	const char *type;
	const char *data;        /* JSON text */
	const char *metadata;    /* JSON text or NULL */
	bool has_expected;
	int64_t expected;
};

struct store_category_req {
	const char *category;    /* "" = every message of the namespace */
	int64_t from_gpos;
	int64_t limit;           /* -1 = no limit; never 0 (callers answer [] themselves) */
	const char *correlation; /* NULL = no filter */
	int64_t member, size;    /* size 0 = no consumer group */
};

struct store_ns_create_req {
	const char *id;
	const char *token_hash;  /* 64 lowercase hex */
	const char *description;
	int64_t created_at_us;   /* microseconds since the epoch; ns.create answers it */
};

/* Records per import batch (SPEC 7.1); import() takes at most this many. */
#define STORE_IMPORT_MAX 1000

/* One record of a bulk import (all strings NUL-terminated). */
struct store_import_rec {
	const char *id;
	const char *stream;
	const char *type;
	int64_t position;
	int64_t global_position;
	const char *data;
	const char *metadata;    /* NULL for null */
	int64_t time_us;
};

struct store;

struct store_ops {
	const char *name; /* "postgres", "sqlite" */
	void (*close)(struct store *);
	int (*connections)(struct store *); /* open DB connections now */

	int (*write)(struct store *, const char *ns, const struct store_write_req *, store_cb, void *);
	/* by_gpos: filter global_position >= from, else position >= from; always ordered by position */
	int (*get_stream)(struct store *, const char *ns, const char *stream, bool by_gpos,
	                  int64_t from, int64_t limit, store_cb, void *);
	int (*get_last)(struct store *, const char *ns, const char *stream, const char *type,
	                store_cb, void *);
	int (*version)(struct store *, const char *ns, const char *stream, store_cb, void *);
	int (*get_category)(struct store *, const char *ns, const struct store_category_req *,
	                    store_cb, void *);

	int (*ns_create)(struct store *, const struct store_ns_create_req *, store_cb, void *);
	int (*ns_delete)(struct store *, const char *id, store_cb, void *);
	int (*ns_list)(struct store *, store_cb, void *);
	int (*ns_info)(struct store *, const char *id, store_cb, void *);
	/* prefix is literal; cursor exclusive ("" = start); byte-wise order */
	int (*ns_streams)(struct store *, const char *ns, const char *prefix, const char *cursor,
	                  int64_t limit, store_cb, void *);
	int (*ns_categories)(struct store *, const char *ns, store_cb, void *);

	/* POST /import: one batch of at most STORE_IMPORT_MAX records in one
	 * transaction, with the records' own ids, positions, global positions
	 * and times; no expected-version checks, no notifications. Unlike the
	 * other calls, recs and their strings are not copied: they must stay
	 * valid until the callback. A global position, id or stream position
	 * that is taken gives ST_POS_EXISTS (has_value: value is the global
	 * position of the record that collided) and nothing of the batch is
	 * stored. The global sequence moves up to the batch's highest
	 * position, never down, so later writes continue after it. */
	int (*import)(struct store *, const char *ns, const struct store_import_rec *recs, size_t n, store_cb,
	              void *);
	/* POST /import?force=true: deletes every message of ns and restarts the
	 * global sequence at 1. */
	int (*clear)(struct store *, const char *ns, store_cb, void *);
};

struct store {
	const struct store_ops *ops;
};

struct stats;

/* Where a backend keeps its data, from the options. */
struct store_cfg {
	const char *url;      /* --db-url as given */
	const char *data_dir; /* --data-dir (embedded store) */
	int pool_size;        /* --db-pool-size */
	/* The namespace table's generation in the shared region, bumped by
	 * every namespace create or delete on this server; a store that keeps
	 * per-namespace handles re-checks them when it moves. NULL: none. */
	const volatile uint64_t *ns_generation;
	int idle_timeout_s;   /* --db-idle-timeout: extra connections close after this */
	int batch_max;        /* --write-batch-max: writes per transaction (1 = no batching) */
	size_t batch_bytes;   /* --write-batch-bytes */
	struct stats *stats;  /* the worker's counters (write batches), or NULL */
};

/* A registered namespace, as the supervisor loads it into the shared table. */
struct ns_seed {
	char id[64];
	char token_hash[65];
	int64_t created_at;
};

/*
 * A storage backend. The set-up functions are blocking and run only in the
 * supervisor before any worker exists (and in tools); they return 0, or -1
 * with a message in err. open() runs in each worker after fork.
 */
struct store_backend {
	const char *name; /* "postgres", "sqlite" */
	/* What can be known about the configuration without touching the
	 * database (URL syntax, required options); start-up and --check-config
	 * both call it. */
	int (*check)(const struct store_cfg *, char *err, size_t errlen);
	/* Registry migrations, then every namespace's pending migrations. */
	int (*migrate)(const struct store_cfg *, char *err, size_t errlen);
	/* Calls fn for every registered namespace. */
	int (*load_namespaces)(const struct store_cfg *, void (*fn)(const struct ns_seed *, void *), void *arg,
	                       char *err, size_t errlen);
	/* Creates namespace id (registry row + storage) if absent; *created tells
	 * which; otherwise copies the stored hash (65 bytes) to stored_hash. */
	int (*ensure_namespace)(const struct store_cfg *, const char *id, const char *token_hash,
	                        const char *description, bool *created, char *stored_hash, char *err, size_t errlen);
	/* The per-worker asynchronous store; NULL on failure. */
	struct store *(*open)(struct event_base *base, const struct store_cfg *);
	/* Supervisor exit: remove what the backend owns (test-mode data), may be NULL. */
	void (*cleanup)(const struct store_cfg *);
};

extern const struct store_backend store_backend_pg;

/* The backend for a URL ("postgres://", "postgresql://", "sqlite://"), or
 * NULL with a message in err. */
const struct store_backend *store_backend_for(const char *url, char *err, size_t errlen);

/* PostgreSQL entry points (also used by tools). */
struct store *store_pg_open(struct event_base *base, const struct store_cfg *cfg);
int store_pg_migrate(const char *url, char *err, size_t errlen);
int store_pg_load_namespaces(const char *url, void (*fn)(const struct ns_seed *, void *), void *arg,
                             char *err, size_t errlen);
int store_pg_ensure_namespace(const char *url, const char *id, const char *token_hash,
                              const char *description, bool *created, char *stored_hash,
                              char *err, size_t errlen);

#endif
