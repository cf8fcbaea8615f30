/*
 * Process titles. Linux shows a process's argv memory in ps; to write a
 * longer title than the original command line we take over the contiguous
 * argv + environ area after copying the arguments and the environment
 * elsewhere (the nginx and PostgreSQL technique). The 15-byte comm name
 * (top, pgrep) is set separately with prctl by the callers.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proctitle.h"

extern char **environ;

static char *title_start, *title_end;
/* The copies of the environment and of the arguments live as long as the
 * process (ps shows the old area, the program reads these). They are held
 * here as well: once setenv() gives environ an array of its own, or the
 * option parser moves argv's pointers, nothing else points to ours, and a
 * leak check at exit would report them. */
static char **env_copy, **arg_copy;

void
proctitle_init(int argc, char **argv)
{
	char *start, *end, **env;
	int n;

	if (argc < 1 || argv[0] == NULL)
		return;
	start = argv[0];
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		if (environ[n] == end)
			end = environ[n] + strlen(environ[n]) + 1;
	env_copy = env = calloc((size_t)n + 1, sizeof(char *));
	arg_copy = calloc((size_t)argc + 1, sizeof(char *));
	if (env == NULL || arg_copy == NULL)
		return;
	for (int i = 0; i < n; i++)
		if ((env[i] = strdup(environ[i])) == NULL)
			return;
	for (int i = 0; i < argc; i++)
		if ((argv[i] = arg_copy[i] = strdup(argv[i])) == NULL)
			return;
	environ = env;
	title_start = start;
	title_end = end;
}

void
proctitle_set(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	size_t len, room;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (title_start == NULL)
		return;
	room = (size_t)(title_end - title_start);
	len = strlen(buf);
	if (len >= room)
		len = room - 1;
	memcpy(title_start, buf, len);
	memset(title_start + len, '\0', room - len);
}
