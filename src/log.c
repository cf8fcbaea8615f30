/*
 * Logging: one line per event on stderr (journald or a pipe collects it), a
 * log file, or syslog. Each line goes out in a single write(2) on an
 * O_APPEND descriptor, so lines of different worker processes never
 * interleave. The file is reopened by path on SIGUSR1/SIGHUP (logrotate).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "evlib.h"
#include "log.h"

static enum log_level log_min = LVL_INFO;
static int log_json;
static int log_fd = STDERR_FILENO;
static int log_syslog;
static char log_path[4096];

int
log_open(const char *file, int use_syslog, char *err, size_t errlen)
{
	if (use_syslog) {
		openlog("eventodb", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog = 1;
		return 0;
	}
	if (file == NULL || file[0] == '\0')
		return 0;
	snprintf(log_path, sizeof(log_path), "%s", file);
	return log_reopen() == 0 ? 0 : (snprintf(err, errlen, "cannot open log file %s: %s", file, strerror(errno)), -1);
}

int
log_reopen(void)
{
	int fd;

	if (log_path[0] == '\0' || log_syslog)
		return 0;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void
log_setup(const char *level, const char *format)
{
	if (level == NULL || strcasecmp(level, "info") == 0)
		log_min = LVL_INFO;
	else if (strcasecmp(level, "debug") == 0)
		log_min = LVL_DEBUG;
	else if (strcasecmp(level, "warn") == 0 || strcasecmp(level, "warning") == 0)
		log_min = LVL_WARN;
	else if (strcasecmp(level, "error") == 0)
		log_min = LVL_ERROR;
	else
		log_min = LVL_INFO;
	log_json = format != NULL && strcasecmp(format, "json") == 0;
}

int
log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const int syslog_prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[4096], msg[3072], ts[RFC3339_BUFLEN];
	va_list ap;
	size_t n;
	int len;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		syslog(syslog_prio[lvl], "%s", msg);
		return;
	}
	rfc3339_format_us(now_unix_us() / 1000 * 1000, ts);

	if (!log_json) {
		len = snprintf(line, sizeof(line), "%s [%d] %s %s\n", ts, (int)getpid(), level_tags[lvl], msg);
	} else {
		/* Escape the message for JSON. */
		char esc[sizeof(msg) * 2];
		size_t j = 0;
		for (const unsigned char *p = (const unsigned char *)msg; *p && j < sizeof(esc) - 7; p++) {
			if (*p == '"' || *p == '\\') {
				esc[j++] = '\\';
				esc[j++] = (char)*p;
			} else if (*p < 0x20) {
				j += (size_t)snprintf(esc + j, 7, "\\u%04x", *p);
			} else {
				esc[j++] = (char)*p;
			}
		}
		esc[j] = '\0';
		len = snprintf(line, sizeof(line), "{\"level\":\"%s\",\"time\":\"%s\",\"pid\":%d,\"message\":\"%s\"}\n",
		               level_names[lvl], ts, (int)getpid(), esc);
	}
	if (len < 0)
		return;
	n = (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1;
	if (n == sizeof(line) - 1)
		line[n - 1] = '\n';
	/* A failed log write has nowhere to be reported. */
	ssize_t w = write(log_fd, line, n);
	(void)w;
}
