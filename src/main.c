/* eventodb: command dispatch (serve, version, help) in front of the supervisor. */
#include "autoconf.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "supervisor.h"

static void
banner(FILE *out)
{
	fprintf(out, "EventoDB %s: an HTTP event store on PostgreSQL\n\n", PACKAGE_VERSION);
}

static void
usage(FILE *out)
{
	fprintf(out,
	        "Usage:\n"
	        "  eventodb [serve] [options]     run the server\n"
	        "  eventodb version [--full]      print the version\n"
	        "  eventodb help                  this help\n"
	        "  eventodb options-roff          the option list as man page source\n\n");
	config_usage(out);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	char err[1024];
	int rc;

	if (argc < 2) {
		banner(stdout);
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0) {
		if (argc > 2 && (strcmp(argv[2], "--full") == 0 || strcmp(argv[2], "-f") == 0)) {
			banner(stdout);
			printf("Version: %s\nCommit: %s\nBuilt: %s %s\n", PACKAGE_VERSION, "unknown", __DATE__, __TIME__);
		} else {
			printf("%s\n", PACKAGE_VERSION);
		}
		return 0;
	}
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		banner(stdout);
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "options-roff") == 0) {
		config_usage_roff(stdout);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0) {
		argv++;
		argc--;
	}
	if (config_parse(&cfg, argc - 1, argv + 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "eventodb: %s\n\n", err);
		usage(stderr);
		return 2;
	}
	rc = supervisor_run(&cfg);
	config_free(&cfg);
	return rc;
}
