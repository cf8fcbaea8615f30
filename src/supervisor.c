/*
 * The supervisor. Launcher for all the rest: it validates the
 * configuration, runs every migration once, makes sure the default
 * namespace exists (SPEC D7), builds the shared region and the listening
 * socket, forks the workers and then only watches: it holds no database
 * connection and no event_base, and waits for signals with sigtimedwait.
 */
#include "autoconf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "evlib.h"
#include "log.h"
#include "notify_pg.h"
#include "profile.h"
#include "proctitle.h"
#include "ring.h"
#include "sanitize.h"
#include "shm.h"
#include "store.h"
#include "supervisor.h"
#include "worker.h"

#define RESPAWN_MIN_US 100000
#define RESPAWN_MAX_US 10000000

struct proc {
	pid_t pid;
	int64_t started_us;
	int64_t next_start_us; /* 0 = running or not scheduled */
	int failures;
};

/* Everything a worker inherits across fork (Varnish's "heritage"). */
static struct {
	struct config *cfg;
	struct shm *shm;
	int listen_fd;
	int admin_fd; /* --admin-listen, or -1 */
	uint32_t nworkers;
	struct proc *procs;
	const struct store_backend *backend;
	struct store_cfg scfg;
	char *test_dir; /* test mode's private data directory, removed at exit */
	uint32_t ns_loaded, ns_left_out; /* registry rows seeded into the table, and those that did not fit */
	bool pidfile_written;
	sigset_t blocked, saved;
} h;

static void
notify(const char *state)
{
#ifdef HAVE_SYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

static int
open_listener(const char *addr, int64_t port)
{
	struct addrinfo hints, *res, *ai;
	char portstr[16];
	int fd = -1, one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%lld", (long long)port);
	rc = getaddrinfo(addr, portstr, &hints, &res);
	if (rc != 0) {
		log_error("invalid listen address %s: %s", addr, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
			break;
		log_error("cannot listen on %s:%s: %s", addr, portstr, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* --admin-listen: empty or "off" (the default) is no admin listener. */
static bool
admin_listen_on(const struct config *cfg)
{
	return cfg->admin_listen != NULL && cfg->admin_listen[0] != '\0' && strcmp(cfg->admin_listen, "off") != 0;
}

/*
 * --admin-listen ADDR:PORT (IPv6 as [ADDR]:PORT): split into host and port,
 * and refuse an address other than loopback unless --admin-listen-any.
 * 0, or -1 with a message in err.
 */
static int
admin_listen_parse(const struct config *cfg, char *host, size_t hcap, int64_t *port, char *err, size_t errlen)
{
	const char *spec = cfg->admin_listen, *colon, *hs = spec;
	size_t hlen;
	char *end;
	long p;
	struct in6_addr a6;
	struct in_addr a4;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "--admin-listen %s: expected ADDR:PORT or [ADDR]:PORT", spec);
			return -1;
		}
		hs = spec + 1;
		hlen = (size_t)(close - hs);
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "--admin-listen %s: expected ADDR:PORT or [ADDR]:PORT", spec);
			return -1;
		}
		hlen = (size_t)(colon - spec);
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
		snprintf(err, errlen, "--admin-listen %s: the port must be 1 to 65535", spec);
		return -1;
	}
	if (hlen == 0 || hlen >= hcap) {
		snprintf(err, errlen, "--admin-listen %s: an address is required (e.g. 127.0.0.1:%ld)", spec, p);
		return -1;
	}
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, &a4) == 1) {
		if (!cfg->admin_listen_any && (ntohl(a4.s_addr) >> 24) != 127) {
			snprintf(err, errlen,
			         "--admin-listen %s is not a loopback address; the admin listener needs no token, so "
			         "say --admin-listen-any to serve it there",
			         spec);
			return -1;
		}
	} else if (inet_pton(AF_INET6, host, &a6) == 1) {
		if (!cfg->admin_listen_any && !IN6_IS_ADDR_LOOPBACK(&a6)) {
			snprintf(err, errlen,
			         "--admin-listen %s is not a loopback address; the admin listener needs no token, so "
			         "say --admin-listen-any to serve it there",
			         spec);
			return -1;
		}
	} else {
		snprintf(err, errlen, "--admin-listen %s: %s is not an IPv4 or IPv6 address", spec, host);
		return -1;
	}
	*port = p;
	return 0;
}

static void
seed_ns(const struct ns_seed *n, void *arg)
{
	uint8_t hash[32];

	if (hex_decode(n->token_hash, 64, hash) != 32) {
		log_warn("namespace %s has a malformed token hash; it cannot authenticate", n->id);
		return;
	}
	h.ns_loaded++;
	if (shm_ns_put(h.shm, n->id, hash) != 0)
		h.ns_left_out++;
}

/* SPEC D7: the default namespace and its token. */
static int
ensure_default(struct config *cfg)
{
	char token[TOKEN_MAXLEN + 1], hash[65], stored[65] = "", err[512], ns[TOKEN_NS_MAX + 1];
	bool created = false, given = cfg->token != NULL && cfg->token[0] != '\0';

	if (given) {
		if (token_parse(cfg->token, strlen(cfg->token), ns, sizeof(ns), err, sizeof(err)) != 0) {
			log_error("--token: %s", err);
			return -1;
		}
		if (strcmp(ns, "default") != 0) {
			log_error("provided token is for namespace '%s', expected 'default'", ns);
			return -1;
		}
		snprintf(token, sizeof(token), "%s", cfg->token);
	} else {
		token_generate("default", token);
	}
	digest_sha256_hex(token, strlen(token), hash);
	if (h.backend->ensure_namespace(&h.scfg, "default", hash, "Default namespace", &created, stored, err,
	                                sizeof(err)) != 0) {
		log_error("cannot set up the default namespace: %s", err);
		return -1;
	}
	if (created && !given) {
		/* the one time a token is printed: the server made it, and
		 * nobody else knows it */
		printf("═══════════════════════════════════════════════════════════════════════════\n"
		       "DEFAULT NAMESPACE TOKEN:\n%s\n"
		       "═══════════════════════════════════════════════════════════════════════════\n",
		       token);
		fflush(stdout);
		log_info("default namespace created; its token is printed above, once");
	} else if (created) {
		/* the operator knows it; printing it would only put the secret
		 * into the journal */
		log_info("default namespace created with the token given by --token");
	} else if (!given) {
		log_info("default namespace already exists; its token is not shown (pass --token to check it)");
	} else if (!digest_equal(stored, hash, 64)) {
		log_error("the --token given does not match the stored token of the default namespace; "
		          "refusing to start (use the original token)");
		return -1;
	} else {
		log_info("default namespace already exists; --token matches");
	}
	return 0;
}

/* "1 worker", "2 workers". */
static const char *
workers_word(uint32_t n)
{
	return n == 1 ? "worker" : "workers";
}

/* Starts worker slot + 1; the log names it "worker N (pid P)" here and at
 * its exit, so the two lines can be matched. */
static pid_t
spawn(uint32_t slot, bool again)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		log_error("fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int rc;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int s = 1; s < 32; s++)
			if (s != SIGPROF) /* gperftools' handler, installed when the library loaded */
				sigaction(s, &sa, NULL);
		profile_child_init(h.shm, slot);
		sigprocmask(SIG_SETMASK, &h.saved, NULL);
		rc = worker_main(h.cfg, h.backend, &h.scfg, h.shm, slot, h.listen_fd, h.admin_fd);
		fflush(stdout);
		san_exit(rc);
	}
	log_info("worker %u (pid %d) %s", slot + 1, (int)pid, again ? "restarted" : "started");
	if (again)
		shm_header(h.shm)->worker_restarts++;
	h.procs[slot].pid = pid;
	h.procs[slot].started_us = now_unix_us();
	h.procs[slot].next_start_us = 0;
	return pid;
}

static void
signal_all(int sig)
{
	for (uint32_t i = 0; i < h.nworkers; i++)
		if (h.procs[i].pid > 0)
			kill(h.procs[i].pid, sig);
}

static uint32_t
running(void)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < h.nworkers; i++)
		n += h.procs[i].pid > 0;
	return n;
}

/* The pid file: refuses to start while it names a live eventodb process;
 * a stale one (dead pid, or a pid reused by another program) is replaced. */
static int
write_pidfile(const char *path)
{
	char buf[32], tmp[4096], comm[64] = "";
	FILE *f = fopen(path, "r");

	if (f != NULL) {
		long old = 0;
		if (fgets(buf, sizeof(buf), f) != NULL)
			old = strtol(buf, NULL, 10);
		fclose(f);
		if (old > 0 && old != getpid() && kill((pid_t)old, 0) == 0) {
			FILE *c;
			snprintf(tmp, sizeof(tmp), "/proc/%ld/cmdline", old);
			if ((c = fopen(tmp, "r")) != NULL) {
				size_t n = fread(comm, 1, sizeof(comm) - 1, c);
				comm[n] = '\0';
				fclose(c);
			}
			if (strstr(comm, "eventodb") != NULL) {
				log_error("pid file %s: eventodb is already running as pid %ld", path, old);
				return -1;
			}
		}
		if (old > 0)
			log_info("pid file %s is stale (pid %ld is not eventodb); replacing it", path, old);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		log_error("cannot write pid file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* --user/--group: give up root once the listener is bound. */
static int
drop_privileges(const struct config *cfg)
{
	struct passwd *pw;
	struct group *gr;
	gid_t gid;

	if (cfg->user == NULL || cfg->user[0] == '\0') {
		if (cfg->group != NULL && cfg->group[0] != '\0') {
			log_error("--group needs --user");
			return -1;
		}
		return 0;
	}
	pw = getpwnam(cfg->user);
	if (pw == NULL) {
		log_error("unknown user %s", cfg->user);
		return -1;
	}
	gid = pw->pw_gid;
	if (cfg->group != NULL && cfg->group[0] != '\0') {
		gr = getgrnam(cfg->group);
		if (gr == NULL) {
			log_error("unknown group %s", cfg->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (getuid() == pw->pw_uid && getgid() == gid)
		return 0;
	if (getuid() != 0) {
		log_error("--user %s needs root to switch to", cfg->user);
		return -1;
	}
	if (h.test_dir != NULL && chown(h.test_dir, pw->pw_uid, gid) != 0)
		log_warn("cannot hand %s to %s: %s", h.test_dir, cfg->user, strerror(errno));
	if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
		log_error("cannot switch to user %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	log_info("running as user %s (uid %d, gid %d)", cfg->user, (int)pw->pw_uid, (int)gid);
	return 0;
}

/* Removes the flat test-mode data directory and everything in it. */
static void
remove_test_dir(void)
{
	DIR *d;
	struct dirent *e;
	char path[4096];

	if (h.test_dir == NULL)
		return;
	d = opendir(h.test_dir);
	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", h.test_dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	if (rmdir(h.test_dir) != 0)
		log_warn("cannot remove test data directory %s: %s", h.test_dir, strerror(errno));
	free(h.test_dir);
	h.test_dir = NULL;
}

/* SPEC D2: test mode listens on loopback unless told otherwise and, without
 * --db-url, runs on the embedded store in a private directory on tmpfs. */
static int
setup_test_mode(struct config *cfg)
{
	char tmpl[256];
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ?: "/tmp");

	if (!cfg->listen_given) {
		free(cfg->listen);
		cfg->listen = strdup("127.0.0.1");
	}
	if (cfg->db_url != NULL && cfg->db_url[0] != '\0')
		return 0;
	free(cfg->db_url);
	cfg->db_url = strdup("sqlite://");
	if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0') {
		snprintf(tmpl, sizeof(tmpl), "%s/eventodb-test-XXXXXX", base);
		if (mkdtemp(tmpl) == NULL) {
			log_error("cannot make a test data directory in %s: %s", base, strerror(errno));
			return -1;
		}
		h.test_dir = strdup(tmpl);
		free(cfg->data_dir);
		cfg->data_dir = strdup(tmpl);
	}
	log_info("test mode: authentication optional, data in %s", cfg->data_dir);
	return 0;
}

static int run(struct config *cfg);

/*
 * Everything start-up checks before it touches anything. --check-config
 * runs exactly this, so "configuration ok" means the server would get past
 * it. Each problem goes to report; returns how many there were.
 */
static int
validate(const struct config *cfg, void (*report)(const char *msg))
{
	char err[1024], msg[1200], ns[TOKEN_NS_MAX + 1];
	const struct store_backend *be;
	struct addrinfo hints, *res;
	int bad = 0, rc;

#define PROBLEM(...) (snprintf(msg, sizeof(msg), __VA_ARGS__), report(msg), bad++)
	if (cfg->db_url == NULL || cfg->db_url[0] == '\0') {
		if (!cfg->test_mode)
			PROBLEM(
			    "--db-url is required (or --test-mode, for the embedded store in a temporary directory)");
	} else if ((be = store_backend_for(cfg->db_url, err, sizeof(err))) == NULL) {
		PROBLEM("%s", err);
	} else {
		struct store_cfg sc = {
		    .url = cfg->db_url, .data_dir = cfg->data_dir, .pool_size = (int)cfg->db_pool_size};
		if (be->check != NULL && be->check(&sc, err, sizeof(err)) != 0)
			PROBLEM("%s", err);
	}
	if (admin_listen_on(cfg)) {
		char host[64];
		int64_t aport;
		if (admin_listen_parse(cfg, host, sizeof(host), &aport, err, sizeof(err)) != 0) {
			fprintf(stderr, "eventodb: %s\n", err);
			bad = 1;
		}
	}
	if (cfg->token != NULL && cfg->token[0] != '\0') {
		if (token_parse(cfg->token, strlen(cfg->token), ns, sizeof(ns), err, sizeof(err)) != 0)
			PROBLEM("--token: %s", err);
		else if (strcmp(ns, "default") != 0)
			PROBLEM("--token is for namespace '%s', expected 'default'", ns);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(cfg->listen, NULL, &hints, &res)) != 0)
		PROBLEM("--listen %s: %s", cfg->listen, gai_strerror(rc));
	else
		freeaddrinfo(res);
	if (cfg->user == NULL || cfg->user[0] == '\0') {
		if (cfg->group != NULL && cfg->group[0] != '\0')
			PROBLEM("--group needs --user");
	} else if (getpwnam(cfg->user) == NULL) {
		PROBLEM("--user: unknown user %s", cfg->user);
	}
	if (cfg->group != NULL && cfg->group[0] != '\0' && getgrnam(cfg->group) == NULL)
		PROBLEM("--group: unknown group %s", cfg->group);
	if (cfg->log_file != NULL && cfg->log_file[0] != '\0') {
		int fd = open(cfg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			PROBLEM("--log-file %s: %s", cfg->log_file, strerror(errno));
		else
			close(fd);
	}
#undef PROBLEM
	return bad;
}

static void
report_stderr(const char *msg)
{
	fprintf(stderr, "eventodb: %s\n", msg);
}

static void
report_log(const char *msg)
{
	log_error("%s", msg);
}

int
supervisor_check_config(struct config *cfg)
{
	if (validate(cfg, report_stderr) != 0)
		return 1;
	printf("configuration ok%s%s\n", cfg->config_file ? ": " : "", cfg->config_file ? cfg->config_file : "");
	return 0;
}

int
supervisor_run(struct config *cfg)
{
	int rc;

	memset(&h, 0, sizeof(h));
	rc = run(cfg);
	if (h.pidfile_written)
		unlink(cfg->pidfile);
	remove_test_dir();
	return rc;
}

static int
run(struct config *cfg)
{
	char err[1024];
	bool stopping = false, fatal = false, announced = false;
	int64_t deadline = 0, last_status_us = 0;
	uint64_t last_requests = 0;
	int exit_code = 0;

	h.cfg = cfg;
	log_setup(cfg->log_level, cfg->log_format);
	if (log_open(cfg->log_file, cfg->syslog, err, sizeof(err)) != 0) {
		fprintf(stderr, "eventodb: %s\n", err);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	prctl(PR_SET_NAME, "eventodb sup", 0, 0, 0);
	proctitle_set("eventodb: supervisor");

	if (validate(cfg, report_log) != 0)
		return 1;
	if (cfg->test_mode && setup_test_mode(cfg) != 0)
		return 1;
	h.backend = store_backend_for(cfg->db_url, err, sizeof(err));
	if (h.backend == NULL) {
		log_error("%s", err);
		return 1;
	}
	h.scfg.url = cfg->db_url;
	h.scfg.data_dir = cfg->data_dir;
	h.scfg.pool_size = (int)cfg->db_pool_size;
	h.scfg.idle_timeout_s = (int)cfg->db_idle_timeout;
	h.scfg.batch_max = (int)cfg->write_batch_max;
	h.scfg.batch_bytes = (size_t)cfg->write_batch_bytes;
	h.nworkers = cfg->workers > 0 ? (uint32_t)cfg->workers : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
	if (h.nworkers < 1)
		h.nworkers = 1;

	/* Bind first (a port below 1024 needs root), then give root up before
	 * any file or database is touched, so everything is created as --user. */
	h.listen_fd = open_listener(cfg->listen, cfg->port);
	if (h.listen_fd < 0)
		return 1;
	h.admin_fd = -1;
	if (admin_listen_on(cfg)) {
		char host[64];
		int64_t aport;
		if (admin_listen_parse(cfg, host, sizeof(host), &aport, err, sizeof(err)) != 0) {
			log_error("%s", err);
			return 1;
		}
		h.admin_fd = open_listener(host, aport);
		if (h.admin_fd < 0)
			return 1;
		log_info("admin listener on %s (/metrics, /debug/*, /health, /version; no token)", cfg->admin_listen);
	}
	if (cfg->pidfile != NULL) {
		if (write_pidfile(cfg->pidfile) != 0)
			return 1;
		h.pidfile_written = true;
	}
	if (drop_privileges(cfg) != 0)
		return 1;

	/* err says what failed: the connection, or the migration */
	if (h.backend->migrate(&h.scfg, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 1;
	}
	if (ensure_default(cfg) != 0)
		return 1;
	/* The region also holds the write ring and stream index (ring.c). */
	h.shm = shm_create_parts(h.nworkers, (uint32_t)cfg->max_namespaces, ring_index_size(),
	                         ring_part_size(h.nworkers, (uint32_t)cfg->max_namespaces, (size_t)cfg->write_ring_size),
	                         profile_part_size(h.nworkers));
	if (h.shm == NULL || ring_init(h.shm, (size_t)cfg->write_ring_size) != 0 || profile_setup(h.shm, cfg) != 0) {
		log_error("cannot map the shared region: %s", strerror(errno));
		return 1;
	}
	h.scfg.ns_generation = &shm_header(h.shm)->ns_generation;
	notify_pg_setup(cfg, h.shm);
	shm_header(h.shm)->started_us = now_unix_us();
	if (h.backend->load_namespaces(&h.scfg, seed_ns, NULL, err, sizeof(err)) != 0) {
		log_error("cannot load namespaces: %s", err);
		return 1;
	}
	/* Which namespaces would be left out depends on the load order (default
	 * could be one): run with all of them or not at all. */
	if (h.ns_left_out > 0) {
		log_error("the namespace registry holds %u namespaces but --max-namespaces is %lld; "
		          "refusing to start (raise --max-namespaces to at least %u)",
		          h.ns_loaded, (long long)cfg->max_namespaces, h.ns_loaded);
		return 1;
	}
	h.procs = calloc(h.nworkers, sizeof(*h.procs));
	if (h.procs == NULL)
		return 1;

	sigemptyset(&h.blocked);
	sigaddset(&h.blocked, SIGCHLD);
	sigaddset(&h.blocked, SIGTERM);
	sigaddset(&h.blocked, SIGINT);
	sigaddset(&h.blocked, SIGQUIT);
	sigaddset(&h.blocked, SIGHUP);
	sigaddset(&h.blocked, SIGUSR1);
	sigaddset(&h.blocked, SIGUSR2);
	sigprocmask(SIG_BLOCK, &h.blocked, &h.saved);
	signal(SIGPIPE, SIG_IGN);

	log_info("eventodb %s starting on %s:%lld (store %s, %u %s)", PACKAGE_VERSION, cfg->listen,
	         (long long)cfg->port, h.backend->name, h.nworkers, workers_word(h.nworkers));
	for (uint32_t i = 0; i < h.nworkers; i++)
		if (spawn(i, false) < 0) {
			fatal = true;
			break;
		}
	if (fatal) {
		signal_all(SIGKILL);
		exit_code = 1;
		stopping = true;
		deadline = now_unix_us();
	}

	for (;;) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		siginfo_t si;
		int sig = sigtimedwait(&h.blocked, &si, &ts);
		int64_t now = now_unix_us();
		pid_t pid;
		int status;

		switch (sig) {
		case SIGTERM:
			if (!stopping) {
				log_info("received SIGTERM: graceful shutdown, draining for at most %lld s",
				         (long long)cfg->shutdown_timeout);
				notify("STOPPING=1");
				stopping = true;
				deadline = now + cfg->shutdown_timeout * 1000000 + 500000;
				signal_all(SIGTERM);
			} else {
				/* A second SIGTERM: the operator does not want to wait. */
				log_info("received a second SIGTERM: stopping now");
				signal_all(SIGKILL);
				deadline = now + 60 * 1000000LL;
			}
			break;
		case SIGINT:
		case SIGQUIT:
			log_info("received %s: shutdown, stopping now", log_signal_name(sig));
			notify("STOPPING=1");
			if (!stopping || deadline > now + 2000000)
				deadline = now + 2000000;
			stopping = true;
			signal_all(SIGINT);
			break;
		case SIGHUP:
			notify("RELOADING=1");
			log_info("received SIGHUP: reloading the configuration");
			if (log_reopen() != 0)
				log_error("cannot reopen log file %s: %s", cfg->log_file, strerror(errno));
			if (config_reload(cfg, err, sizeof(err)) != 0) {
				log_error("reload failed, keeping the old settings: %s", err);
			} else {
				/* said under the old level, so a switch to warn is seen */
				log_info("configuration reloaded: log-level %s, log-format %s", cfg->log_level,
				         cfg->log_format);
				log_setup(cfg->log_level, cfg->log_format);
			}
			signal_all(SIGHUP);
			notify("READY=1");
			break;
		case SIGUSR1:
			if (log_reopen() != 0)
				log_error("cannot reopen log file %s: %s", cfg->log_file, strerror(errno));
			log_info("received SIGUSR1: log file reopened");
			signal_all(SIGUSR1);
			break;
		case SIGUSR2:
			profile_sigusr2(h.shm, cfg);
			break;
		default:
			break;
		}

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			uint32_t slot;
			for (slot = 0; slot < h.nworkers && h.procs[slot].pid != pid; slot++)
				;
			if (slot == h.nworkers)
				continue;
			h.procs[slot].pid = 0;
			shm_release_dead(h.shm, pid);
			shm_worker(h.shm, slot)->ready = 0;
			/* nobody may signal a pid that can now be reused */
			shm_worker(h.shm, slot)->pid = 0;
			if (WIFSIGNALED(status))
				log_msg(stopping ? LVL_INFO : LVL_ERROR,
				        "worker %u (pid %d) exited on signal %d (%s)%s", slot + 1, (int)pid,
				        WTERMSIG(status), log_signal_name(WTERMSIG(status)),
				        WCOREDUMP(status) ? ", core dumped" : "");
			else
				log_msg(stopping || WEXITSTATUS(status) == 0 ? LVL_INFO : LVL_ERROR,
				        "worker %u (pid %d) exited with code %d", slot + 1, (int)pid,
				        WEXITSTATUS(status));
			if (stopping)
				continue;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
				log_error("worker %u (pid %d) hit a fatal error; shutting down", slot + 1, (int)pid);
				exit_code = 1;
				stopping = true;
				deadline = now + 2000000;
				signal_all(SIGINT);
				continue;
			}
			/* Back off when workers die young, so a crash loop cannot spin. */
			if (now - h.procs[slot].started_us < 5000000) {
				int64_t d = RESPAWN_MIN_US << (h.procs[slot].failures < 10 ? h.procs[slot].failures : 10);
				h.procs[slot].failures++;
				h.procs[slot].next_start_us = now + (d < RESPAWN_MAX_US ? d : RESPAWN_MAX_US);
			} else {
				h.procs[slot].failures = 0;
				h.procs[slot].next_start_us = now;
			}
		}

		profile_supervisor_poll(h.shm);
		if (stopping) {
			if (running() == 0)
				break;
			if (now >= deadline) {
				log_warn("shutdown timeout: killing %u %s", running(), workers_word(running()));
				signal_all(SIGKILL);
				deadline = now + 60 * 1000000LL;
			}
			continue;
		}
		for (uint32_t i = 0; i < h.nworkers; i++)
			if (h.procs[i].pid == 0 && h.procs[i].next_start_us != 0 && now >= h.procs[i].next_start_us)
				spawn(i, true);
		if (announced && now - last_status_us >= 1000000) {
			struct stats sum;
			char st[128];
			uint32_t ready = 0;
			shm_stats_sum(h.shm, &sum);
			for (uint32_t i = 0; i < h.nworkers; i++)
				ready += shm_worker(h.shm, i)->ready != 0;
			snprintf(st, sizeof(st), "STATUS=%u/%u workers, %.0f req/s", ready, h.nworkers,
			         (double)(sum.http_requests - last_requests) * 1e6 / (double)(now - last_status_us));
			notify(st);
			last_requests = sum.http_requests;
			last_status_us = now;
		}
		if (!announced) {
			uint32_t ready = 0;
			for (uint32_t i = 0; i < h.nworkers; i++)
				ready += shm_worker(h.shm, i)->ready != 0;
			if (ready == h.nworkers) {
				char st[64];
				announced = true;
				snprintf(st, sizeof(st), "READY=1\nSTATUS=%u workers ready", ready);
				notify(st);
				if (ready == 1)
					log_info("1 worker ready");
				else
					log_info("all %u workers ready", ready);
			}
		}
	}

	close(h.listen_fd);
	if (h.admin_fd >= 0)
		close(h.admin_fd);

	shm_destroy(h.shm);
	free(h.procs);
	log_info("server stopped");
	return exit_code;
}
