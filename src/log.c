/*
 * Logging: one line per event on stderr (journald or a pipe collects it), a
 * log file, or syslog. Each line goes out in a single write(2) on an
 * O_APPEND descriptor, so lines of different worker processes never
 * interleave. The file is reopened by path on SIGUSR1/SIGHUP (logrotate).
 * Message text is escaped in every format, so a message can never forge a
 * line (see escape_msg).
 */
#include "autoconf.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
	return log_reopen() == 0 ? 0 : (snprintf(err, errlen, "--log-file %s: %s", file, strerror(errno)), -1);
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

const char *
log_signal_name(int sig)
{
	switch (sig) {
#define SIGNAME(s)                                                                                                     \
	case s:                                                                                                        \
		return #s
		SIGNAME(SIGHUP);
		SIGNAME(SIGINT);
		SIGNAME(SIGQUIT);
		SIGNAME(SIGILL);
		SIGNAME(SIGTRAP);
		SIGNAME(SIGABRT);
		SIGNAME(SIGBUS);
		SIGNAME(SIGFPE);
		SIGNAME(SIGKILL);
		SIGNAME(SIGUSR1);
		SIGNAME(SIGSEGV);
		SIGNAME(SIGUSR2);
		SIGNAME(SIGPIPE);
		SIGNAME(SIGALRM);
		SIGNAME(SIGTERM);
		SIGNAME(SIGCHLD);
		SIGNAME(SIGCONT);
		SIGNAME(SIGSTOP);
		SIGNAME(SIGTSTP);
		SIGNAME(SIGTTIN);
		SIGNAME(SIGTTOU);
		SIGNAME(SIGXCPU);
		SIGNAME(SIGXFSZ);
		SIGNAME(SIGSYS);
#undef SIGNAME
	default:
		return "signal";
	}
}

int
log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const int syslog_prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

/* The formatted message before escaping; a line (escaped message, time,
 * pid, level) fits PIPE_BUF, so one write(2) to a pipe is atomic too. */
#define LOG_MSG_MAX 2048
#define LOG_LINE_MAX 4096

static const char hexd[] = "0123456789abcdef";

/* Bytes of the valid UTF-8 character at m[i] (at least 2), or 0. */
static size_t
utf8_char_len(const unsigned char *m, size_t len, size_t i)
{
	size_t n = m[i] >= 0xf0 ? 4 : m[i] >= 0xe0 ? 3 : 2;

	return i + n <= len && utf8_valid((const char *)m + i, n) ? n : 0;
}

/*
 * msg escaped into out (at most cap bytes; never half an escape or half a
 * character). Client text reaches log lines (stream names, import records,
 * database errors quoting them), so nothing in it may start a line of its
 * own or end a JSON string: control characters and the backslash are
 * escaped in every format ("\n", "\t", "\x1b" in console and syslog text;
 * JSON escapes there, '"' too), and a byte that is not UTF-8 becomes "\xff"
 * (console) or U+FFFD (JSON, which must be UTF-8). Returns the length.
 */
static size_t
escape_msg(const char *msg, size_t len, bool json, char *out, size_t cap)
{
	const unsigned char *m = (const unsigned char *)msg;
	size_t o = 0, i = 0;

	while (i < len) {
		unsigned char c = m[i];
		char e[8];
		size_t el = 0, used = 1;

		if (c >= 0x20 && c < 0x7f && c != '\\' && (c != '"' || !json)) {
			if (o + 1 > cap)
				break;
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c >= 0x80 && (used = utf8_char_len(m, len, i)) > 0) {
			if (o + used > cap)
				break;
			memcpy(out + o, m + i, used);
			o += used;
			i += used;
			continue;
		}
		used = 1;
		e[el++] = '\\';
		if (c == '\\' || c == '"') {
			e[el++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			e[el++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (json && c >= 0x80) {
			memcpy(e + el, "ufffd", 5);
			el += 5;
		} else if (json) {
			memcpy(e + el, "u00", 3);
			e[el + 3] = hexd[c >> 4];
			e[el + 4] = hexd[c & 15];
			el += 5;
		} else {
			e[el++] = 'x';
			e[el++] = hexd[c >> 4];
			e[el++] = hexd[c & 15];
		}
		if (o + el > cap)
			break;
		memcpy(out + o, e, el);
		o += el;
		i += used;
	}
	return o;
}

/* Wall clock as 2026-01-02T03:04:05.678Z: always three decimals, so the
 * columns of a console log line up. */
static size_t
format_time(char *buf, size_t cap)
{
	int64_t us = now_unix_us();
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	int n;

	gmtime_r(&sec, &tm);
	n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000 / 1000));
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[LOG_LINE_MAX], msg[LOG_MSG_MAX], ts[64];
	va_list ap;
	size_t n, mlen;
	int len;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	len = utf8_vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	mlen = strnlen(msg, sizeof(msg));
	if (log_syslog) {
		n = escape_msg(msg, mlen, false, line, sizeof(line) - 1);
		line[n] = '\0';
		syslog(syslog_prio[lvl], "%s", line);
		return;
	}
	format_time(ts, sizeof(ts));
	if (!log_json)
		len = snprintf(line, sizeof(line), "%s [%d] %s ", ts, (int)getpid(), level_tags[lvl]);
	else
		len = snprintf(line, sizeof(line), "{\"level\":\"%s\",\"time\":\"%s\",\"pid\":%d,\"message\":\"",
		               level_names[lvl], ts, (int)getpid());
	if (len < 0 || (size_t)len >= sizeof(line))
		return;
	n = (size_t)len;
	/* room for the closing "} (JSON) and the newline */
	n += escape_msg(msg, mlen, log_json, line + n, sizeof(line) - n - 3);
	if (log_json) {
		line[n++] = '"';
		line[n++] = '}';
	}
	line[n++] = '\n';
	/* A failed log write has nowhere to be reported. */
	ssize_t w = write(log_fd, line, n);
	(void)w;
}
