/*
 * Cross-host delivery on PostgreSQL.
 *
 * Design: every write notifies inside its own transaction, so only committed
 * writes notify, and notifications arrive in commit order. Namespace
 * migration 004 makes write_message_ex call
 *   pg_notify('eventodb', 'w <host> <schema> <position> <gpos> <stream>')
 * when the session carries the GUC eventodb.host, and migration 006's
 * write_batch sends the same payload once per message it wrote, in global
 * position order (one per message rather than one per batch: the cost is
 * per notifying transaction, which batching already shares, and each
 * payload stays far below PostgreSQL's 8000-byte limit, so this parser
 * needs no batch format). The supervisor puts
 * "-c eventodb.host=<16 hex>" into PGOPTIONS before fork (notify_pg_setup),
 * so every session of this server carries its random host id. Registry
 * migration 002 notifies namespace creation and deletion the same way
 * ('n <host> I <id> <token hash>', 'n <host> D <id>'). NOTIFY is scoped to
 * the database, so the one channel name is per database by construction.
 *
 * One listener per server, on worker 1's event loop (respawned with it):
 * a non-blocking libpq connection that LISTENs and turns every notification
 * of another host into a write-ring entry (waking the subscribers of every
 * worker) or a namespace-table change; its own host's echoes are ignored.
 * After every (re)connect it clears the stream index and asks all workers
 * to resync their subscribers from the database, because notifications
 * sent while it was not listening are gone.
 *
 * Cost: PostgreSQL serializes the commits of notifying transactions (a
 * global lock held through the commit's WAL flush), which halves the write
 * rate across categories. So the listener registers its host in
 * eventodb_store.listeners (heartbeat every 10 s, stale after 30 s) and a
 * write notifies only while some other server listens: a lone server pays
 * nothing. --pg-notify=false turns the whole mechanism off.
 */
#include "autoconf.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "evlib.h"
#include "log.h"
#include "notify_pg.h"
#include "ring.h"
#include "shm.h"
#include "sse.h"
#include "store_pg.h"
#include "worker.h"

#define NOTIFY_CHANNEL "eventodb"
/* Reconnect back-off. The cap is short on purpose: while the listener is
 * away this server's subscribers miss the other servers' writes (the resync
 * on reconnect catches them up), and an attempt costs one connection try a
 * second; a long cap only delays the recovery (a 10 s cap gave pokes 7 s
 * after the database was back). */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 1000
#define HEARTBEAT_S 10 /* the write function treats 30 s without one as gone */

enum notify_state { N_IDLE, N_CONNECTING, N_LISTEN, N_REGISTER, N_READY };

/* The host id is a parameter, never part of the SQL text. */
#define SQL_REGISTER \
	"INSERT INTO eventodb_store.listeners (host, seen) VALUES ($1, now()) ON CONFLICT (host) DO UPDATE SET seen = now()"
#define SQL_UNREGISTER "DELETE FROM eventodb_store.listeners WHERE host = $1"

struct notify_pg {
	struct worker *w;
	const char *url;
	PGconn *pg;
	struct event *ev_io;
	struct event *ev_timer;
	struct event *ev_beat;
	enum notify_state state;
	short want; /* events ev_io waits for */
	bool busy;  /* a statement's results are pending */
	int backoff_ms;
	int failures; /* attempts failed since the last time it listened */
};

static bool
is_pg_url(const char *url)
{
	return url != NULL && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0);
}

void
notify_pg_setup(const struct config *cfg, struct shm *shm)
{
	const char *old = getenv("PGOPTIONS");
	char opts[1024];

	if (!cfg->pg_notify || !is_pg_url(cfg->db_url))
		return;
	/* libpq reads PGOPTIONS for every connection whose URL sets no options. */
	snprintf(opts, sizeof(opts), "%s%s-c eventodb.host=%s", old ? old : "", old && *old ? " " : "",
	         ring_host_id(shm));
	if (setenv("PGOPTIONS", opts, 1) != 0)
		log_warn("cannot set PGOPTIONS: writes of this server will not reach other servers");
	else
		log_info("cross-host notifications on: host id %s", ring_host_id(shm));
}

static void connect_start(struct notify_pg *n);

static void
drop(struct notify_pg *n, const char *why)
{
	if (n->pg != NULL) {
		char line[1024];

		/* libpq's text as one line; a failed connect says where to */
		if (n->state == N_CONNECTING && why == PQerrorMessage(n->pg))
			store_pg_connect_error(n->pg, line, sizeof(line));
		else
			store_pg_one_line(why, line, sizeof(line));
		/* one warning per outage, not one a second */
		log_msg(n->failures == 0 ? LVL_WARN : LVL_DEBUG, "write listener: %s; reconnecting in %d ms", line,
		        n->backoff_ms);
		n->failures++;
		PQfinish(n->pg);
		n->pg = NULL;
	}
	event_del(n->ev_io);
	event_del(n->ev_beat);
	n->state = N_IDLE;
	n->busy = false;
	{
		struct timeval t = {n->backoff_ms / 1000, (n->backoff_ms % 1000) * 1000};
		evtimer_add(n->ev_timer, &t);
	}
	n->backoff_ms = n->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : n->backoff_ms * 2;
}

static void on_io(evutil_socket_t fd, short what, void *arg);

/* (Re)arms ev_io on the connection's current socket for what. */
static int
watch(struct notify_pg *n, short what)
{
	event_del(n->ev_io);
	if (event_assign(n->ev_io, n->w->base, PQsocket(n->pg), what | EV_PERSIST, on_io, n) != 0 ||
	    event_add(n->ev_io, NULL) != 0)
		return -1;
	n->want = what;
	return 0;
}

/* Splits s on single spaces into at most max fields, the last one taking
 * the rest. Returns the number of fields. */
static int
fields(const char *s, int max, const char **f, size_t *fl)
{
	int k = 0;

	while (k < max) {
		const char *sp = k + 1 < max ? strchr(s, ' ') : NULL;
		f[k] = s;
		fl[k] = sp != NULL ? (size_t)(sp - s) : strlen(s);
		k++;
		if (sp == NULL)
			break;
		s = sp + 1;
	}
	return k;
}

static bool
field_i64(const char *s, size_t len, int64_t *out)
{
	char buf[32];
	char *end;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	*out = strtoll(buf, &end, 10);
	return *end == '\0';
}

/* "eventodb_<id>" with or without the double quotes -> id. */
static bool
schema_ns(const char *s, size_t len, char *id, size_t cap)
{
	if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
		s++;
		len -= 2;
	}
	if (len <= 9 || memcmp(s, "eventodb_", 9) != 0 || len - 9 >= cap)
		return false;
	memcpy(id, s + 9, len - 9);
	id[len - 9] = '\0';
	return true;
}

static void
on_notify(struct notify_pg *n, const char *payload)
{
	struct shm *shm = n->w->shm;
	const char *f[6];
	size_t fl[6];
	char id[SHM_NS_ID_MAX];
	int k = fields(payload, 6, f, fl);
	const char *me = ring_host_id(shm);

	if (k < 2 || fl[0] != 1)
		return;
	if (fl[1] == strlen(me) && memcmp(f[1], me, fl[1]) == 0)
		return; /* our own write, already in the ring */
	if (f[0][0] == 'w' && k == 6) {
		int64_t pos, gpos;
		if (!schema_ns(f[2], fl[2], id, sizeof(id)) || !field_i64(f[3], fl[3], &pos) ||
		    !field_i64(f[4], fl[4], &gpos))
			goto bad;
		sse_publish(n->w, id, ring_ns_generation(shm, id, NULL), f[5], fl[5], pos, gpos);
	} else if (f[0][0] == 'r') {
		ring_request_resync(shm);
	} else if (f[0][0] == 'n' && k >= 4 && fl[2] == 1 && fl[3] < sizeof(id)) {
		memcpy(id, f[3], fl[3]);
		id[fl[3]] = '\0';
		if (f[2][0] == 'D') {
			/* Gone on another server: its token stops working here, and a
			 * namespace re-created with the same id gets a new generation
			 * (stream index entries of the old one never match it). */
			if (shm_ns_remove(shm, id))
				log_info("namespace %s deleted on another server", id);
		} else if (k == 5) {
			uint8_t hash[32];
			char hex[65];
			size_t hl = fl[4] < 64 ? fl[4] : 64;
			memcpy(hex, f[4], hl);
			hex[hl] = '\0';
			if (hl != 64 || hex_decode(hex, 64, hash) != 32)
				goto bad;
			if (shm_ns_put(shm, id, hash) != 0)
				log_error("namespace table full; namespace %s cannot authenticate", id);
		}
	}
	return;
bad:
	log_debug("write listener: ignoring malformed notification '%.*s'",
	          (int)utf8_prefix(payload, strlen(payload), 120), payload);
}

/* Sends sql, with this server's host id as $1 when host is set; its results
 * are consumed by read_input. */
static void
send_sql(struct notify_pg *n, const char *sql, bool host)
{
	const char *param = ring_host_id(n->w->shm);
	int rc;

	if (!(host ? PQsendQueryParams(n->pg, sql, 1, NULL, &param, NULL, NULL, 0) : PQsendQuery(n->pg, sql)))
		return drop(n, PQerrorMessage(n->pg));
	n->busy = true;
	rc = PQflush(n->pg);
	if (rc < 0)
		return drop(n, PQerrorMessage(n->pg));
	if (watch(n, rc == 1 ? EV_READ | EV_WRITE : EV_READ) != 0)
		drop(n, "cannot watch the socket");
}

static void
on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct notify_pg *n = arg;

	if (n->state == N_READY && !n->busy)
		send_sql(n, SQL_REGISTER, true);
}

static void
on_ready(struct notify_pg *n)
{
	struct timeval beat = {HEARTBEAT_S, 0};

	n->state = N_READY;
	event_add(n->ev_beat, &beat);
	n->backoff_ms = BACKOFF_MIN_MS;
	if (n->failures > 1)
		log_info("write listener: listening for the writes of other servers again after %d failed attempts",
		         n->failures - 1);
	else
		log_info("write listener: listening for the writes of other servers");
	n->failures = 0;
	/* Whatever was notified while nobody listened is lost: forget cached
	 * versions and let every subscriber catch up from the database. */
	ring_index_clear(n->w->shm);
	ring_request_resync(n->w->shm);
	event_active(n->ev_io, EV_READ, 0); /* notifications may already be buffered */
}

static void
read_input(struct notify_pg *n)
{
	PGnotify *nt;
	PGresult *res;

	if (!PQconsumeInput(n->pg))
		return drop(n, PQerrorMessage(n->pg));
	while (n->busy && !PQisBusy(n->pg)) {
		res = PQgetResult(n->pg);
		if (res == NULL) {
			n->busy = false;
			if (n->state == N_LISTEN) {
				/* listening first, then registered: every write that
				 * sees the registration notifies, and is heard */
				n->state = N_REGISTER;
				send_sql(n, SQL_REGISTER, true);
			} else if (n->state == N_REGISTER)
				on_ready(n);
			break;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			char why[256];
			snprintf(why, sizeof(why), "%s failed: %s", n->state == N_LISTEN     ? "LISTEN"
			         : n->state == N_REGISTER ? "registering"
			                                  : "heartbeat",
			         PQresultErrorMessage(res));
			PQclear(res);
			return drop(n, why);
		}
		PQclear(res);
	}
	if (n->pg == NULL)
		return; /* dropped while registering */
	while ((nt = PQnotifies(n->pg)) != NULL) {
		if (strcmp(nt->relname, NOTIFY_CHANNEL) == 0 && n->state == N_READY)
			on_notify(n, nt->extra);
		PQfreemem(nt);
	}
	if (PQstatus(n->pg) == CONNECTION_BAD)
		drop(n, "connection lost");
}

static void
connect_poll(struct notify_pg *n)
{
	switch (PQconnectPoll(n->pg)) {
	case PGRES_POLLING_READING:
		if (watch(n, EV_READ) != 0)
			drop(n, "cannot watch the socket");
		return;
	case PGRES_POLLING_WRITING:
		if (watch(n, EV_WRITE) != 0)
			drop(n, "cannot watch the socket");
		return;
	case PGRES_POLLING_FAILED:
		return drop(n, PQerrorMessage(n->pg));
	default:
		break;
	}
	/* Connected: LISTEN, then register (read_input), so writers start
	 * notifying only once notifications can arrive. */
	if (PQsetnonblocking(n->pg, 1) != 0)
		return drop(n, PQerrorMessage(n->pg));
	n->state = N_LISTEN;
	send_sql(n, "LISTEN " NOTIFY_CHANNEL, false);
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
	struct notify_pg *n = arg;

	if (n->pg == NULL)
		return;
	if (n->state == N_CONNECTING)
		return connect_poll(n);
	if ((what & EV_WRITE) && (n->want & EV_WRITE)) {
		int rc = PQflush(n->pg);
		if (rc < 0)
			return drop(n, PQerrorMessage(n->pg));
		if (rc == 0 && watch(n, EV_READ) != 0)
			return drop(n, "cannot watch the socket");
	}
	if (what & EV_READ)
		read_input(n);
}

static void
connect_start(struct notify_pg *n)
{
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {n->url, "eventodb-listener", NULL};

	n->pg = PQconnectStartParams(keys, vals, 1);
	if (n->pg == NULL)
		return drop(n, "out of memory");
	/* its notices (a trigger's, libpq's own) through our logger, not
	 * libpq's default processor on stderr */
	store_pg_log_notices(n->pg);
	n->state = N_CONNECTING;
	if (PQstatus(n->pg) == CONNECTION_BAD)
		return drop(n, PQerrorMessage(n->pg));
	if (watch(n, EV_WRITE) != 0)
		drop(n, "cannot watch the socket");
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	connect_start(arg);
}

struct notify_pg *
notify_pg_start(struct worker *w)
{
	struct notify_pg *n;

	if (!w->cfg->pg_notify || !is_pg_url(w->cfg->db_url))
		return NULL;
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		return NULL;
	n->w = w;
	n->url = w->cfg->db_url;
	n->backoff_ms = BACKOFF_MIN_MS;
	n->ev_io = event_new(w->base, -1, 0, on_io, n);
	n->ev_timer = evtimer_new(w->base, on_timer, n);
	n->ev_beat = event_new(w->base, -1, EV_PERSIST, on_beat, n);
	if (n->ev_io == NULL || n->ev_timer == NULL || n->ev_beat == NULL) {
		log_error("write listener: cannot set up events");
		notify_pg_stop(n);
		return NULL;
	}
	connect_start(n);
	return n;
}

void
notify_pg_stop(struct notify_pg *n)
{
	if (n == NULL)
		return;
	if (n->pg != NULL) {
		if (n->state == N_READY && !n->busy) {
			/* Unregister without waiting: the server runs it before it
			 * sees the connection close. Otherwise the row goes stale. */
			const char *param = ring_host_id(n->w->shm);

			if (PQsendQueryParams(n->pg, SQL_UNREGISTER, 1, NULL, &param, NULL, NULL, 0))
				PQflush(n->pg);
		}
		PQfinish(n->pg);
	}
	if (n->ev_io != NULL)
		event_free(n->ev_io);
	if (n->ev_timer != NULL)
		event_free(n->ev_timer);
	if (n->ev_beat != NULL)
		event_free(n->ev_beat);
	free(n);
}
