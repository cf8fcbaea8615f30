/* eventodb: command dispatch (serve, export, import, version, help) in front of the supervisor. */
#include "autoconf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commit.h"
#include "config.h"
#include "proctitle.h"
#include "supervisor.h"

static void
banner(FILE *out)
{
	fprintf(out, "EventoDB %s: an HTTP event store on PostgreSQL or its embedded SQLite store\n\n",
	        PACKAGE_VERSION);
}

static void
usage(FILE *out)
{
	fprintf(out,
	        "Usage:\n"
	        "  eventodb [serve] [options]     run the server\n"
	        "  eventodb export [options]      write a namespace as NDJSON (export --help)\n"
	        "  eventodb import [options]      load NDJSON into a namespace (import --help)\n"
	        "  eventodb --check-config [options]  validate the configuration and exit\n"
	        "  eventodb version [--full]      print the version\n"
	        "  eventodb help                  this help\n"
	        "  eventodb options-roff [conf]   the option list as man page source (as flags, or file lines)\n"
	        "  eventodb options-conf          the option list as a commented config file\n\n");
	config_usage(out);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	char err[1024];
	bool check = false;
	int rc;

	if (argc >= 2 && strcmp(argv[1], "export") == 0)
		return cli_export_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "import") == 0)
		return cli_import_main(argc - 1, argv + 1);
	proctitle_init(argc, argv);
	if (argc < 2) {
		banner(stdout);
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-v") == 0) {
		if (argc > 2 && (strcmp(argv[2], "--full") == 0 || strcmp(argv[2], "-f") == 0)) {
			banner(stdout);
			printf("Version: %s\nCommit: %s\nBuilt: %s %s\n", PACKAGE_VERSION, EVENTODB_COMMIT, __DATE__,
			       __TIME__);
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
		config_usage_roff(stdout, argc > 2 && strcmp(argv[2], "conf") == 0);
		return 0;
	}
	if (strcmp(argv[1], "options-conf") == 0) {
		config_usage_conf(stdout);
		return 0;
	}
	if (strcmp(argv[1], "serve") == 0) {
		argv++;
		argc--;
	}
	/* --check-config anywhere among the flags: validate and exit. */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--check-config") == 0 || strcmp(argv[i], "-check-config") == 0) {
			check = true;
			memmove(argv + i, argv + i + 1, sizeof(char *) * (size_t)(argc - i));
			argc--;
			break;
		}
	if (config_parse(&cfg, argc - 1, argv + 1, err, sizeof(err)) != 0) {
		/* the error, and where to look: 65 lines of usage would scroll
		 * the one line that matters away */
		fprintf(stderr, "eventodb: %s\nsee 'eventodb help'\n", err);
		config_free(&cfg);
		return check ? 1 : 2;
	}
	rc = check ? supervisor_check_config(&cfg) : supervisor_run(&cfg);
	config_free(&cfg);
	return rc;
}
