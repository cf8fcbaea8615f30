/* The supervisor: prepares everything workers inherit, forks and watches them. */
#ifndef EVENTODB_SUPERVISOR_H
#define EVENTODB_SUPERVISOR_H

struct config;

/* Runs the server; returns the process exit code. */
int supervisor_run(struct config *cfg);
/* --check-config: validates what can be checked without starting; prints
 * the problems to stderr. Returns the exit code (0 = valid). */
int supervisor_check_config(struct config *cfg);

#endif
