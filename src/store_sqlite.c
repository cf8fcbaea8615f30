/*
 * The embedded store (--db-url sqlite://<file>): the schema, its migrations,
 * the blocking set-up run by the supervisor before any worker exists
 * (migrate, load_namespaces, ensure_namespace) and the helpers the
 * asynchronous per-worker store in store_sqlite_ops.c shares with it.
 *
 * Layout: one registry database <data_dir>/<file> (default metadata.db) and
 * one database per namespace, <data_dir>/<id>.db, all in WAL mode so every
 * worker process can open them at once. The answers match the PostgreSQL
 * store's (SPEC 5.2, 5.5 and D18): see store_sqlite_ops.c.
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evlib.h"
#include "log.h"
#include "store.h"
#include "store_sqlite.h"

#ifndef SQLITE_INNOCUOUS
#define SQLITE_INNOCUOUS 0
#endif

/* The largest a namespace's WAL file is left at after a checkpoint. */
#define SQ_WAL_LIMIT "67108864"

/* ---- schema ------------------------------------------------------------- */

struct sq_migration {
	int version;
	const char *name;
	const char *sql;
};

/* Registry migrations, recorded by name in schema_migrations (as on
 * PostgreSQL, SPEC 5.1). */
static const struct sq_migration sq_registry_migrations[] = {
    {1, "001_namespace_registry.sql",
     "CREATE TABLE IF NOT EXISTS namespaces ("
     " id TEXT PRIMARY KEY,"
     " token_hash TEXT NOT NULL UNIQUE,"
     " db_path TEXT NOT NULL UNIQUE,"
     " description TEXT,"
     " created_at INTEGER,"
     " metadata TEXT DEFAULT '{}');"},
    /* creation time with microseconds (SPEC D12), as PostgreSQL's registry
     * migration 003: created_at keeps whole seconds, readers take
     * SQ_NS_CREATED_US; an existing file gets its rows' values here */
    {2, "002_namespace_created_us.sql",
     "ALTER TABLE namespaces ADD COLUMN created_at_us INTEGER;"
     "UPDATE namespaces SET created_at_us = created_at * 1000000 WHERE created_at_us IS NULL;"},
    {0, NULL, NULL},
};

/*
 * Namespace migrations; each records its own version in _schema_version.
 * time is unix microseconds (SPEC D12). category is the Message DB category
 * (text before the first '-'), stored so one index serves category reads in
 * global order. It uses only built-in functions so the file stays readable
 * by any sqlite3 tool; instr/substr count characters on both sides, which
 * gives the byte-wise answer on valid UTF-8 (all names are, SPEC D14).
 */
static const struct sq_migration sq_ns_migrations[] = {
    {1, "001_message_store",
     "CREATE TABLE IF NOT EXISTS messages ("
     " id TEXT NOT NULL UNIQUE,"
     " stream_name TEXT NOT NULL,"
     " type TEXT NOT NULL,"
     " position INTEGER NOT NULL,"
     " global_position INTEGER PRIMARY KEY AUTOINCREMENT,"
     " data TEXT,"
     " metadata TEXT,"
     " time INTEGER NOT NULL,"
     " category TEXT GENERATED ALWAYS AS (CASE WHEN instr(stream_name, '-') > 0"
     "  THEN substr(stream_name, 1, instr(stream_name, '-') - 1) ELSE stream_name END) STORED,"
     " UNIQUE (stream_name, position));"
     "CREATE INDEX IF NOT EXISTS messages_category ON messages (category, global_position);"
     "CREATE TABLE IF NOT EXISTS _schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER);"
     "INSERT OR IGNORE INTO _schema_version (version, applied_at) VALUES (1, strftime('%s', 'now'));"},
    {0, NULL, NULL},
};

/* ---- small helpers -------------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

bool
sq_ns_id_ok(const char *id)
{
	size_t n = strlen(id);

	/* the callers enforce [A-Za-z0-9][A-Za-z0-9_-]{0,53}; this is the part
	 * that keeps a file name inside the directory */
	return n > 0 && n <= 54 && id[0] != '.' && strchr(id, '/') == NULL;
}

int
sq_ns_path(const char *dir, const char *id, char *out, size_t cap)
{
	int n;

	if (!sq_ns_id_ok(id))
		return -1;
	n = snprintf(out, cap, "%s/%s.db", dir, id);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int
sq_registry_path(const struct store_cfg *c, char *out, size_t cap, char *err, size_t errlen)
{
	const char *file;
	int n;

	if (c->data_dir == NULL || c->data_dir[0] == '\0') {
		seterr(err, errlen, "--data-dir is required for SQLite");
		return -1;
	}
	if (c->url == NULL || strncmp(c->url, "sqlite://", 9) != 0) {
		seterr(err, errlen, "not a sqlite:// URL");
		return -1;
	}
	file = c->url + 9;
	if (*file == '\0')
		file = SQ_DEFAULT_REGISTRY;
	/* the registry is a file inside --data-dir, like the namespaces */
	if (strchr(file, '/') != NULL || file[0] == '.') {
		seterr(err, errlen, "sqlite://%s: give a plain file name; it is created inside --data-dir", file);
		return -1;
	}
	n = snprintf(out, cap, "%s/%s", c->data_dir, file);
	if (n < 0 || (size_t)n >= cap) {
		seterr(err, errlen, "--data-dir path too long");
		return -1;
	}
	return 0;
}

/* mkdir -p with mode for the directories it creates. */
static int
mkdir_p(const char *dir, mode_t mode, char *err, size_t errlen)
{
	char path[SQ_PATH_MAX];
	struct stat sb;
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path)) {
		seterr(err, errlen, "--data-dir path too long");
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, mode) != 0 && errno != EEXIST) {
			seterr(err, errlen, "cannot create %s: %s", path, strerror(errno));
			return -1;
		}
		*p = '/';
	}
	if (mkdir(path, mode) != 0 && errno != EEXIST) {
		seterr(err, errlen, "cannot create --data-dir %s: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		seterr(err, errlen, "--data-dir %s is not a directory", path);
		return -1;
	}
	return 0;
}

/* Creates an empty file (an empty file is a valid empty database) so its
 * mode, which SQLite copies to the -wal and -shm files, is ours. */
static int
create_private(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);

	if (fd < 0) {
		if (errno == EEXIST)
			return 1;
		seterr(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (close(fd) != 0) {
		seterr(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Makes a new directory entry durable. Best effort: synchronous=NORMAL
 * does not promise more for the data itself. */
static void
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fsync(fd) != 0)
		log_debug("sqlite: fsync %s: %s", dir, strerror(errno));
	close(fd);
}

/* ---- SQL functions ------------------------------------------------------------ */

/* sq_category(text): the text before the first '-', byte-wise (Message DB
 * category(), PostgreSQL split_part(x, '-', 1)); NULL for NULL. */
static void
fn_category(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *s;
	int n;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	s = (const char *)sqlite3_value_text(argv[0]);
	n = sqlite3_value_bytes(argv[0]);
	if (s == NULL) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	sqlite3_result_text(ctx, s, (int)sn_category_len(s, (size_t)n), SQLITE_TRANSIENT);
}

/* sq_in_group(stream, member, size): the Message DB consumer-group rule,
 * abs(hash_64(cardinal_id(stream))) % size = member; a stream without an id
 * belongs to no member. */
static void
fn_in_group(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *s;
	int n;

	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_int(ctx, 0);
		return;
	}
	s = (const char *)sqlite3_value_text(argv[0]);
	n = sqlite3_value_bytes(argv[0]);
	if (s == NULL) {
		sqlite3_result_error_nomem(ctx);
		return;
	}
	sqlite3_result_int(ctx, sn_in_group(s, (size_t)n, sqlite3_value_int64(argv[1]), sqlite3_value_int64(argv[2])));
}

/* ---- handles ------------------------------------------------------------------- */

int
sq_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		seterr(err, errlen, "%s: %s", what, msg != NULL ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return rc;
}

void
sq_close(sqlite3 *db)
{
	sqlite3_stmt *q;
	int rc;

	if (db == NULL)
		return;
	while ((q = sqlite3_next_stmt(db, NULL)) != NULL)
		sqlite3_finalize(q);
	rc = sqlite3_close(db);
	if (rc != SQLITE_OK)
		log_warn("sqlite: closing a database: %s", sqlite3_errstr(rc));
}

int
sq_open(const char *path, int flags, sqlite3 **out, char *err, size_t errlen)
{
	/* no SQLITE_OPEN_NOFOLLOW: it refuses a symbolic link anywhere in the
	 * path, --data-dir's parents included; names inside the directory are
	 * ours (sq_ns_id_ok) and new files are made with O_NOFOLLOW */
	int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	const int fflags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	const unsigned char *mode;
	int rc;

	*out = NULL;
	if (flags & SQ_OPEN_CREATE)
		oflags |= SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(path, &db, oflags, NULL);
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "cannot open %s: %s", path, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return rc;
	}
	sqlite3_extended_result_codes(db, 1);
	if ((rc = sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS)) != SQLITE_OK)
		goto fail;
	if (flags & SQ_OPEN_NS) {
		/*
		 * Never let a close delete the -wal and -shm files by name: once
		 * another process has deleted this namespace and created it
		 * again, those names belong to the new database, and the last
		 * close of a handle on the old (unlinked) file would remove them
		 * from under it. journal_size_limit still truncates the WAL.
		 */
		int on = 1;

		if ((rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on)) != SQLITE_OK)
			goto fail;
	}
	/* journal_mode answers with the mode in effect, which is the check */
	rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &q, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		mode = sqlite3_column_text(q, 0);
		rc = mode != NULL && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
		if (rc != SQLITE_OK) {
			sqlite3_finalize(q);
			seterr(err, errlen, "cannot open %s: cannot switch it to WAL mode", path);
			sqlite3_close(db);
			return rc;
		}
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_OK)
		goto fail;
	if ((rc = sq_exec(db, "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=" SQ_WAL_LIMIT, "settings", NULL,
	                  0)) != SQLITE_OK ||
	    (rc = sqlite3_create_function_v2(db, "sq_category", 1, fflags, NULL, fn_category, NULL, NULL, NULL)) !=
	        SQLITE_OK ||
	    (rc = sqlite3_create_function_v2(db, "sq_in_group", 3, fflags, NULL, fn_in_group, NULL, NULL, NULL)) !=
	        SQLITE_OK)
		goto fail;
	*out = db;
	return SQLITE_OK;
fail:
	seterr(err, errlen, "cannot open %s: %s", path, sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc;
}

/* ---- namespace storage --------------------------------------------------------- */

static int
ns_tmp_path(const char *dir, const char *id, char *out, size_t cap)
{
	/* a leading '.' so it can never be taken for a namespace file */
	int n = snprintf(out, cap, "%s/.%s.db.%ld.tmp", dir, id, (long)getpid());

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Applies every namespace migration newer than the recorded version, in
 * one transaction; adds the count to *applied. */
static int
ns_migrate_db(sqlite3 *db, const char *id, int *applied, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	int64_t current = 0;
	int rc;

	if (sq_exec(db, "BEGIN IMMEDIATE", "namespace migration", err, errlen) != SQLITE_OK)
		return -1;
	if (sq_exec(db, "CREATE TABLE IF NOT EXISTS _schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER)",
	            "namespace migration", err, errlen) != SQLITE_OK)
		goto rollback;
	rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM _schema_version", -1, &q, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW)
		current = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW) {
		seterr(err, errlen, "namespace '%s': reading the schema version: %s", id, sqlite3_errmsg(db));
		goto rollback;
	}
	for (const struct sq_migration *m = sq_ns_migrations; m->sql != NULL; m++) {
		if (m->version <= current)
			continue;
		if (sq_exec(db, m->sql, m->name, err, errlen) != SQLITE_OK)
			goto rollback;
		(*applied)++;
	}
	if (sq_exec(db, "COMMIT", "namespace migration", err, errlen) != SQLITE_OK)
		goto rollback;
	return 0;
rollback:
	if (!sqlite3_get_autocommit(db))
		sq_exec(db, "ROLLBACK", "rollback", NULL, 0);
	return -1;
}

/*
 * Creates <dir>/<id>.db with the whole schema. The database is built under
 * a temporary name and then linked into place, which fails when the name
 * exists: the file appears complete or not at all, and an existing file is
 * never adopted or overwritten. 0 created, 1 exists, -1 error.
 */
static int
ns_storage_create(const char *dir, const char *id, char *err, size_t errlen)
{
	char path[SQ_PATH_MAX], tmp[SQ_PATH_MAX], side[SQ_PATH_MAX + 16];
	sqlite3 *db = NULL;
	struct stat sb;
	int applied = 0, rc = -1;

	if (sq_ns_path(dir, id, path, sizeof(path)) < 0 || ns_tmp_path(dir, id, tmp, sizeof(tmp)) < 0) {
		seterr(err, errlen, "namespace '%s': unusable id or path too long", id);
		return -1;
	}
	if (lstat(path, &sb) == 0)
		return 1;
	/* leftovers of an earlier attempt of this process id */
	unlink(tmp);
	snprintf(side, sizeof(side), "%s-wal", tmp);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", tmp);
	unlink(side);
	if (create_private(tmp, err, errlen) != 0)
		goto out;
	if (sq_open(tmp, 0, &db, err, errlen) != SQLITE_OK)
		goto out;
	if (ns_migrate_db(db, id, &applied, err, errlen) != 0)
		goto out;
	/* the last close checkpoints and removes the temporary -wal/-shm */
	rc = sqlite3_close(db);
	db = NULL;
	if (rc != SQLITE_OK) {
		seterr(err, errlen, "namespace '%s': closing the new database: %s", id, sqlite3_errstr(rc));
		rc = -1;
		goto out;
	}
	rc = -1;
	if (link(tmp, path) != 0) {
		if (errno == EEXIST) {
			rc = 1;
			goto out;
		}
		/* file systems without hard links: no atomic no-replace, so
		 * check, then rename */
		if ((errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) || lstat(path, &sb) == 0 ||
		    rename(tmp, path) != 0) {
			seterr(err, errlen, "namespace '%s': cannot create %s: %s", id, path, strerror(errno));
			goto out;
		}
	}
	fsync_dir(dir);
	rc = 0;
out:
	sq_close(db);
	unlink(tmp);
	return rc;
}

int
sq_ns_storage_remove(const char *dir, const char *id, char *err, size_t errlen)
{
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char path[SQ_PATH_MAX], f[SQ_PATH_MAX + 16];
	int rc = 0;

	if (sq_ns_path(dir, id, path, sizeof(path)) < 0) {
		seterr(err, errlen, "namespace '%s': unusable id or path too long", id);
		return -1;
	}
	/* the database first: once it is gone nothing can open the namespace */
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
		if (unlink(f) != 0 && errno != ENOENT && rc == 0) {
			seterr(err, errlen, "cannot remove %s: %s", f, strerror(errno));
			rc = -1;
		}
	}
	fsync_dir(dir);
	return rc;
}

static enum store_status
busy_or_error(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? ST_UNAVAILABLE : ST_ERROR;
}

enum store_status
sq_ns_register(sqlite3 *reg, const char *dir, const struct store_ns_create_req *q, char *err, size_t errlen)
{
	char file[SQ_PATH_MAX];
	sqlite3_stmt *ins = NULL;
	enum store_status status = ST_ERROR;
	int rc, made;

	if (!sq_ns_id_ok(q->id) || snprintf(file, sizeof(file), "%s.db", q->id) >= (int)sizeof(file)) {
		seterr(err, errlen, "namespace '%s': unusable id", q->id);
		return ST_ERROR;
	}
	/* the registry's write lock serializes namespace creation and
	 * deletion across processes */
	rc = sq_exec(reg, "BEGIN IMMEDIATE", "registering the namespace", err, errlen);
	if (rc != SQLITE_OK)
		return busy_or_error(rc);
	rc = sqlite3_prepare_v2(reg,
	                        "INSERT INTO namespaces (id, token_hash, db_path, description, created_at,"
	                        " created_at_us, metadata) VALUES (?1, ?2, ?3, ?4, ?5 / 1000000, ?5, '{}')",
	                        -1, &ins, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(ins, 1, q->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, q->token_hash, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 3, file, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 4, q->description != NULL ? q->description : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 5, q->created_at_us);
		rc = sqlite3_step(ins);
	}
	if (rc != SQLITE_DONE) {
		/* the id, the token hash or the file name is taken (PostgreSQL:
		 * any unique violation on create is NAMESPACE_EXISTS) */
		status = (rc & 0xff) == SQLITE_CONSTRAINT ? ST_NS_EXISTS : busy_or_error(rc);
		seterr(err, errlen, "registering namespace '%s': %s", q->id, sqlite3_errmsg(reg));
		goto rollback;
	}
	made = ns_storage_create(dir, q->id, err, errlen);
	if (made != 0) {
		if (made == 1) {
			/* storage left behind without a registry row: never adopt
			 * it (PostgreSQL: duplicate schema) */
			seterr(err, errlen, "namespace '%s': %s/%s exists but is not registered", q->id, dir, file);
			status = ST_NS_EXISTS;
		}
		goto rollback;
	}
	rc = sq_exec(reg, "COMMIT", "registering the namespace", err, errlen);
	if (rc != SQLITE_OK) {
		status = busy_or_error(rc);
		sq_ns_storage_remove(dir, q->id, NULL, 0);
		goto rollback;
	}
	sqlite3_finalize(ins);
	return ST_OK;
rollback:
	sqlite3_finalize(ins);
	if (!sqlite3_get_autocommit(reg))
		sq_exec(reg, "ROLLBACK", "rollback", NULL, 0);
	return status;
}

/* ---- the blocking set-up (supervisor, tools) ----------------------------------- */

/* Opens the registry; with create, makes the file (mode 0640) first. */
static sqlite3 *
registry_open(const struct store_cfg *c, bool create, char *err, size_t errlen)
{
	char path[SQ_PATH_MAX];
	sqlite3 *db = NULL;

	if (sq_registry_path(c, path, sizeof(path), err, errlen) < 0)
		return NULL;
	if (create && create_private(path, err, errlen) < 0)
		return NULL;
	if (sq_open(path, 0, &db, err, errlen) != SQLITE_OK)
		return NULL;
	return db;
}

static int
migrate_registry(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	int rc;

	/* one write transaction: two servers starting at once take turns */
	if (sq_exec(db, "BEGIN IMMEDIATE", "registry migration", err, errlen) != SQLITE_OK)
		return -1;
	if (sq_exec(
	        db,
	        "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
	        "creating the migration table", err, errlen) != SQLITE_OK)
		goto rollback;
	for (const struct sq_migration *m = sq_registry_migrations; m->sql != NULL; m++) {
		bool applied;

		rc = sqlite3_prepare_v2(db, "SELECT 1 FROM schema_migrations WHERE version = ?1", -1, &q, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(q, 1, m->name, -1, SQLITE_STATIC);
			rc = sqlite3_step(q);
		}
		applied = rc == SQLITE_ROW;
		sqlite3_finalize(q);
		q = NULL;
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			seterr(err, errlen, "registry migration %s: %s", m->name, sqlite3_errmsg(db));
			goto rollback;
		}
		if (applied)
			continue;
		if (sq_exec(db, m->sql, m->name, err, errlen) != SQLITE_OK)
			goto rollback;
		rc = sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", -1,
		                        &q, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_text(q, 1, m->name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(q, 2, (int64_t)time(NULL));
			rc = sqlite3_step(q);
		}
		sqlite3_finalize(q);
		q = NULL;
		if (rc != SQLITE_DONE) {
			seterr(err, errlen, "registry migration %s: %s", m->name, sqlite3_errmsg(db));
			goto rollback;
		}
		log_info("applied registry migration %s", m->name);
	}
	if (sq_exec(db, "COMMIT", "registry migration", err, errlen) != SQLITE_OK)
		goto rollback;
	return 0;
rollback:
	if (!sqlite3_get_autocommit(db))
		sq_exec(db, "ROLLBACK", "rollback", NULL, 0);
	return -1;
}

/* Brings one namespace up to date. Storage that has vanished is created
 * again, empty (as PostgreSQL's migrations re-create a dropped schema). */
static int
migrate_namespace(const char *dir, const char *id, int *applied, char *err, size_t errlen)
{
	char path[SQ_PATH_MAX];
	sqlite3 *db = NULL;
	struct stat sb;
	int rc;

	if (sq_ns_path(dir, id, path, sizeof(path)) < 0) {
		log_warn("namespace registry: skipping unusable namespace id '%.*s'",
		         (int)utf8_prefix(id, strlen(id), 80), id);
		return 0;
	}
	if (lstat(path, &sb) != 0 && errno == ENOENT) {
		rc = ns_storage_create(dir, id, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 0)
			log_warn("namespace '%s': its database was missing; created it again, empty", id);
		return 0;
	}
	if (sq_open(path, SQ_OPEN_NS, &db, err, errlen) != SQLITE_OK)
		return -1;
	rc = ns_migrate_db(db, id, applied, err, errlen);
	sq_close(db);
	return rc;
}

/* The registry's place: --data-dir given, sqlite://FILE a plain name. */
static int
sq_check(const struct store_cfg *c, char *err, size_t errlen)
{
	char path[SQ_PATH_MAX];

	return sq_registry_path(c, path, sizeof(path), err, errlen);
}

static int
sq_migrate(const struct store_cfg *c, char *err, size_t errlen)
{
	sqlite3 *db;
	sqlite3_stmt *q = NULL;
	char **ids = NULL;
	size_t n = 0, cap = 0;
	int rc, ret = -1, applied = 0;

	if (c->data_dir == NULL || c->data_dir[0] == '\0') {
		seterr(err, errlen, "--data-dir is required for SQLite");
		return -1;
	}
	if (mkdir_p(c->data_dir, 0750, err, errlen) < 0)
		return -1;
	db = registry_open(c, true, err, errlen);
	if (db == NULL)
		return -1;
	if (migrate_registry(db, err, errlen) < 0)
		goto out;
	/* ids first: the namespace files are migrated with the registry idle */
	rc = sqlite3_prepare_v2(db, "SELECT id FROM namespaces ORDER BY id", -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(q, 0);

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **p = realloc(ids, ncap * sizeof(*p));

			if (p == NULL) {
				rc = SQLITE_NOMEM;
				break;
			}
			ids = p;
			cap = ncap;
		}
		if ((ids[n] = strdup(id != NULL ? id : "")) == NULL) {
			rc = SQLITE_NOMEM;
			break;
		}
		n++;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE) {
		seterr(err, errlen, "reading the namespace registry: %s", sqlite3_errstr(rc));
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (migrate_namespace(c->data_dir, ids[i], &applied, err, errlen) < 0)
			goto out;
	if (applied > 0)
		log_info("applied %d namespace schema %s", applied, applied == 1 ? "migration" : "migrations");
	ret = 0;
out:
	if (ret != 0) {
		/* the registry is open: what failed was the migration */
		char why[1024];
		snprintf(why, sizeof(why), "%s", err);
		seterr(err, errlen, "database migration failed: %s", why);
	}
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	sq_close(db);
	return ret;
}

static int
sq_load_namespaces(const struct store_cfg *c, void (*fn)(const struct ns_seed *, void *), void *arg, char *err,
                   size_t errlen)
{
	sqlite3 *db = registry_open(c, false, err, errlen);
	sqlite3_stmt *q = NULL;
	int rc;

	if (db == NULL)
		return -1;
	rc = sqlite3_prepare_v2(db, "SELECT id, token_hash, created_at FROM namespaces ORDER BY id", -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(q, 0);
		const char *hash = (const char *)sqlite3_column_text(q, 1);
		struct ns_seed seed;

		rc = SQLITE_OK;
		memset(&seed, 0, sizeof(seed));
		if (id == NULL || hash == NULL || strlen(id) >= sizeof(seed.id) ||
		    strlen(hash) != sizeof(seed.token_hash) - 1) {
			log_warn("namespace registry: skipping malformed row '%.*s'",
			         id != NULL ? (int)utf8_prefix(id, strlen(id), 80) : 0, id != NULL ? id : "");
			continue;
		}
		memcpy(seed.id, id, strlen(id) + 1);
		memcpy(seed.token_hash, hash, sizeof(seed.token_hash));
		seed.created_at = sqlite3_column_int64(q, 2);
		fn(&seed, arg);
	}
	if (rc != SQLITE_DONE)
		seterr(err, errlen, "reading the namespace registry: %s", sqlite3_errmsg(db));
	sqlite3_finalize(q);
	sq_close(db);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* The stored token hash of id into stored_hash (65 bytes); 1 found, 0 not
 * found, -1 error. */
static int
registry_hash(sqlite3 *db, const char *id, char *stored_hash, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT token_hash FROM namespaces WHERE id = ?1", -1, &q, NULL);
	int found = 0;

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
		rc = sqlite3_step(q);
	}
	if (rc == SQLITE_ROW) {
		const char *h = (const char *)sqlite3_column_text(q, 0);

		if (stored_hash != NULL)
			snprintf(stored_hash, 65, "%s", h != NULL ? h : "");
		found = 1;
	} else if (rc != SQLITE_DONE) {
		seterr(err, errlen, "reading the namespace registry: %s", sqlite3_errmsg(db));
		found = -1;
	}
	sqlite3_finalize(q);
	return found;
}

static int
sq_ensure_namespace(const struct store_cfg *c, const char *id, const char *token_hash, const char *description,
                    bool *created, char *stored_hash, char *err, size_t errlen)
{
	struct store_ns_create_req q;
	sqlite3 *db;
	int ret = -1;

	*created = false;
	db = registry_open(c, false, err, errlen);
	if (db == NULL)
		return -1;
	memset(&q, 0, sizeof(q));
	q.id = id;
	q.token_hash = token_hash;
	q.description = description;
	q.created_at_us = now_unix_us();
	/* a second round covers another server registering it meanwhile */
	for (int round = 0; round < 2; round++) {
		enum store_status st;
		int found = registry_hash(db, id, stored_hash, err, errlen);

		if (found != 0) {
			ret = found > 0 ? 0 : -1;
			break;
		}
		st = sq_ns_register(db, c->data_dir, &q, err, errlen);
		if (st == ST_OK) {
			*created = true;
			ret = 0;
			break;
		}
		if (st != ST_NS_EXISTS)
			break;
	}
	sq_close(db);
	return ret;
}

static struct store *
sq_backend_open(struct event_base *base, const struct store_cfg *c)
{
	return sq_store_open(base, c);
}

const struct store_backend store_backend_sqlite = {
    .name = "sqlite",
    .check = sq_check,
    .migrate = sq_migrate,
    .load_namespaces = sq_load_namespaces,
    .ensure_namespace = sq_ensure_namespace,
    .open = sq_backend_open,
    .cleanup = NULL,
};
