/* Process titles as ps shows them: "eventodb: supervisor", "eventodb: worker 2". */
#ifndef EVENTODB_PROCTITLE_H
#define EVENTODB_PROCTITLE_H

/* Call first thing in main(): claims the argv (and environ) area. */
void proctitle_init(int argc, char **argv);
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
