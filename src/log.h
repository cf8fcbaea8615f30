/* Logging: one line per event, console or JSON format, to stderr, a log
 * file (reopened on SIGUSR1/SIGHUP for rotation) or syslog. */
#ifndef EVENTODB_LOG_H
#define EVENTODB_LOG_H

#include <stddef.h>

enum log_level { LVL_DEBUG = 0, LVL_INFO, LVL_WARN, LVL_ERROR };

/* level: debug|info|warn|error (unknown -> info); format: console|json. */
void log_setup(const char *level, const char *format);
/* Destination: file (NULL = stderr) or syslog. 0, or -1 with err set. */
int log_open(const char *file, int use_syslog, char *err, size_t errlen);
/* Reopens the log file (after rotation); no-op for stderr and syslog. */
int log_reopen(void);
int log_enabled(enum log_level lvl);
/* "SIGKILL" for 9: log lines name signals; "signal" for one not known. */
const char *log_signal_name(int sig);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_enabled(LVL_DEBUG)) log_msg(LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) log_msg(LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LVL_ERROR, __VA_ARGS__)

#endif
