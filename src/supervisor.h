/* The supervisor: prepares everything workers inherit, forks and watches them. */
#ifndef EVENTODB_SUPERVISOR_H
#define EVENTODB_SUPERVISOR_H

struct config;

/* Runs the server; returns the process exit code. */
int supervisor_run(struct config *cfg);

#endif
