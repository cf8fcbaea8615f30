/*
 * Cross-host delivery on PostgreSQL: several eventodb servers on one
 * database see each other's writes (and namespace changes) through
 * LISTEN/NOTIFY, fed into each server's write ring.
 */
#ifndef EVENTODB_NOTIFY_PG_H
#define EVENTODB_NOTIFY_PG_H

struct config;
struct shm;
struct worker;
struct notify_pg;

/* Supervisor, before fork: tags this server's database sessions with its
 * host id so that its writes notify (and it can ignore its own echoes). */
void notify_pg_setup(const struct config *cfg, struct shm *shm);
/* The listener, on worker 1's event loop; NULL when not on PostgreSQL or
 * --pg-notify is off. */
struct notify_pg *notify_pg_start(struct worker *w);
void notify_pg_stop(struct notify_pg *n);

#endif
