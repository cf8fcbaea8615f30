/*
 * Logging: one line per event on stdout (journald or a pipe collects it),
 * written with a single write(2) so lines of different worker processes never
 * interleave.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "evlib.h"
#include "log.h"

static enum log_level log_min = LOG_INFO;
static int log_json;

void
log_setup(const char *level, const char *format)
{
	if (level == NULL || strcasecmp(level, "info") == 0)
		log_min = LOG_INFO;
	else if (strcasecmp(level, "debug") == 0)
		log_min = LOG_DEBUG;
	else if (strcasecmp(level, "warn") == 0 || strcasecmp(level, "warning") == 0)
		log_min = LOG_WARN;
	else if (strcasecmp(level, "error") == 0)
		log_min = LOG_ERROR;
	else
		log_min = LOG_INFO;
	log_json = format != NULL && strcasecmp(format, "json") == 0;
}

int
log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_tags[] = {"DBG", "INF", "WRN", "ERR"};

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
	rfc3339_format_us(now_unix_us() / 1000 * 1000, ts);

	if (!log_json) {
		len = snprintf(line, sizeof(line), "%s %s [%d] %s\n", ts, level_tags[lvl], (int)getpid(), msg);
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
	ssize_t w = write(STDOUT_FILENO, line, n);
	(void)w;
}
