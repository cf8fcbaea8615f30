/*
 * SQLite store internals shared by the blocking set-up and schema code
 * (store_sqlite.c) and the asynchronous per-worker store
 * (store_sqlite_ops.c). The public entry point is store_backend_sqlite.
 */
#ifndef EVENTODB_STORE_SQLITE_H
#define EVENTODB_STORE_SQLITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_PATH_MAX 4096
#define SQ_DEFAULT_REGISTRY "metadata.db"
/* A namespace's creation time in microseconds (registry migration 002; a
 * row an older server wrote has only whole seconds). */
#define SQ_NS_CREATED_US "COALESCE(created_at_us, created_at * 1000000)"

/* sq_open flags */
#define SQ_OPEN_CREATE 1 /* create the file if missing */
#define SQ_OPEN_NS 2     /* a namespace database (see sq_open) */

/* The registry database path (<data_dir>/<file of sqlite://file>) into out.
 * 0, or -1 with a message in err. */
int sq_registry_path(const struct store_cfg *c, char *out, size_t cap, char *err, size_t errlen);

/* True when id can name a namespace file: what the callers validate
 * (SPEC D11), checked again here so a path can never leave the directory. */
bool sq_ns_id_ok(const char *id);

/* <dir>/<id>.db into out; 0, or -1 when id is not usable or it does not fit. */
int sq_ns_path(const char *dir, const char *id, char *out, size_t cap);

/*
 * Opens a database with the settings every handle uses: extended result
 * codes, busy timeout, WAL, synchronous=NORMAL, and our SQL functions.
 * Returns an SQLite result code; on failure *db is NULL and err says why.
 */
int sq_open(const char *path, int flags, sqlite3 **db, char *err, size_t errlen);

/* Closes a handle opened by sq_open, finalizing any statement left. */
void sq_close(sqlite3 *db);

/* Runs SQL without results (several statements allowed). SQLite code. */
int sq_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen);

/*
 * Registers namespace id: the registry row and its database file, created
 * with the whole schema, commit together. ST_OK, ST_NS_EXISTS (the id, the
 * token hash or the file is taken), ST_UNAVAILABLE (registry locked past the
 * busy timeout) or ST_ERROR, with a message in err.
 */
enum store_status sq_ns_register(sqlite3 *reg, const char *dir, const struct store_ns_create_req *q, char *err,
                                 size_t errlen);

/* Removes a namespace's files (.db, -wal, -shm, -journal); missing files
 * are fine. 0, or -1 with a message in err. */
int sq_ns_storage_remove(const char *dir, const char *id, char *err, size_t errlen);

/* The per-worker asynchronous store (store_sqlite_ops.c). */
struct store *sq_store_open(struct event_base *base, const struct store_cfg *c);

#endif
