/* agent_main.c - sallyport-agent: the inside half of sallyport. It reads
 * the one configuration file, dials every edge and serves its sessions. */
#include "agent/agent_admin.h"
#include "agent/agent_audit.h"
#include "agent/agent_backend.h"
#include "agent/agent_ban.h"
#include "agent/agent_cfg.h"
#include "agent/agent_edge.h"
#include "agent/agent_ftp.h"
#include "agent/agent_handover.h"
#include "agent/agent_link.h"
#include "agent/agent_metrics.h"
#include "agent/agent_out.h"
#include "agent/agent_reload.h"
#include "agent/agent_sess.h"
#include "agent/tsrc.h"
#include "common/linkkey.h"
#include "common/log.h"
#include "common/psock.h"
#include "common/tlsx.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

struct cfg agent_cfg;
SSL_CTX *agent_tls;

static volatile sig_atomic_t agent_stop;
static volatile sig_atomic_t agent_hup;
static volatile sig_atomic_t agent_usr2;

static void
on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

static void
on_hup(int sig)
{
	if (sig == SIGUSR2)
		agent_usr2 = 1;
	else
		agent_hup = 1;
}

/* SIGUSR2: start the program again, to take over from this process. */
static void
usr2_upgrade(void)
{
	char err[256];
	pid_t pid;

	if (aho_upgrade(&pid, err, sizeof(err)) == -1)
		log_err("SIGUSR2: upgrade refused: %s", err);
}

/* SIGHUP, part 1 of the handling in the loop: reload the configuration.
 * A file that does not load is refused and the running one stays. The
 * file is read off the loop (agent_reload.h); one that comes while a
 * reload is under way is kept for after it, since the file may have
 * changed since that one read it. */
static int hup_again;

static void
hup_done(void *arg, const struct reload_result *res, const char *err)
{
	(void)arg;
	if (res == NULL)
		log_err("SIGHUP: reload refused: %s", err);
	(void)sd_notify(0, "READY=1");
}

static void
hup_reload(void)
{
	if (reload_busy()) {
		hup_again = 1;
		log_info("SIGHUP: a reload is under way; %s is read again "
		    "after it", agent_cfg.path);
		return;
	}
	(void)sd_notify(0, "RELOADING=1");
	log_info("SIGHUP: reloading %s", agent_cfg.path);
	if (reload_start(hup_done, NULL) == -1) {
		log_err("SIGHUP: reload: %s", strerror(errno));
		(void)sd_notify(0, "READY=1");
	}
}

/* SIGHUP, part 2: reopen the audit log by name, so that logrotate can
 * move it away (a reload that names another file opens that one when it
 * is applied). */
static void
hup_audit(void)
{
	audit_reopen(agent_cfg.audit_log);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sallyport-agent --config FILE [--check] [-v]\n"
	    "\n"
	    "The inside half of sallyport. Connects out to every edge named in the\n"
	    "configuration, pushes the services the edges must open, and joins each\n"
	    "client session to a backend; with an [outbound] section it also runs\n"
	    "SOCKS5 and HTTP CONNECT proxies whose sessions leave through an edge.\n"
	    "See the configuration in README.md.\n"
	    "\n"
	    "  -c, --config FILE   configuration file (INI); SIGHUP reloads it,\n"
	    "                      SIGUSR2 starts a new process that takes over\n"
	    "      --check         validate the configuration and exit (0 ok, 1 not)\n"
	    "  -v, --verbose       log debug lines too\n"
	    "  -h, --help          this text\n"
	    "      --version       print the version\n");
}

/* The command line: the configuration's path, or NULL to exit with
 * *rc. */
static const char *
parse_options(int argc, char **argv, int *check, int *verbose, int *rc)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	int ch;

	*rc = 2;
	while ((ch = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 'K': *check = 1; break;
		case 'v': (*verbose)++; break;
		case 'h': usage(stdout); *rc = 0; return NULL;
		case 'V':
			printf("sallyport-agent %s\n", AGENT_VERSION);
			*rc = 0;
			return NULL;
		default: usage(stderr); return NULL;
		}
	}
	if (optind != argc || config == NULL) {
		usage(stderr);
		return NULL;
	}
	return config;
}

/* Everything before the loop; exits on what the agent cannot run
 * without. */
static void
start(void)
{
	struct sigaction sa;
	struct rlimit rl;
	char err[1024];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* Descriptors as many as allowed: sessions take two each, and how
	 * many the agent holds at once follows from them (agent_sess.c). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (agent_cfg.audit_log[0] != '\0') {
		if (audit_open(agent_cfg.audit_log, err, sizeof(err)) == -1)
			log_fatal("%s", err);
		log_info("audit log %s", agent_cfg.audit_log);
	}
	if (ev_init() == -1)
		log_fatal("epoll: %s", strerror(errno));
	if (linkkey_init() == -1)
		log_fatal("link keys: OpenSSL has no HMAC");
	if (aban_load(agent_cfg.ban_file, err, sizeof(err)) == -1)
		log_fatal("%s", err);
	if (backend_bind(agent_cfg.services, agent_cfg.nservices) == -1)
		log_fatal("backends: out of memory");
	/* Before any listener of its own. */
	aho_take();
	log_info("agent %s starting: %zu edges, %zu services", agent_cfg.name,
	    agent_cfg.nedges, agent_cfg.nservices);
	if (agent_cfg.admin_listen[0] != '\0' &&
	    admin_start(agent_cfg.admin_listen, err, sizeof(err)) == -1)
		log_fatal("admin API on %s: %s", agent_cfg.admin_listen, err);
	if (aout_start() == -1)
		log_fatal("outbound proxies: cannot listen");
	health_start();
	aedge_start();
}

static void
stop(void)
{
	admin_stop();
	aout_stop();
	asess_stop("agent stopping");
	ev_settle();
	alink_stop();
	aftp_stop();
	psock_tick(UINT64_MAX);
	aedge_stop();
	aban_stop();
	reload_stop();
	metrics_free();
	audit_close();
	health_stop();
	tlsx_cleanup();
	SSL_CTX_free(agent_tls);
	backend_unbind(agent_cfg.services, agent_cfg.nservices);
	cfg_free(&agent_cfg);
}

int
main(int argc, char **argv)
{
	const char *config;
	char err[1024];
	int check = 0, verbose = 0, rc;
	uint64_t now;

	if ((config = parse_options(argc, argv, &check, &verbose, &rc)) == NULL)
		return rc;
	log_init("sallyport-agent", verbose);
	if (cfg_load(config, &agent_cfg, err, sizeof(err)) == -1) {
		log_err("%s", err);
		return 1;
	}
	if ((agent_tls = tlsx_client_ctx(agent_cfg.cert, agent_cfg.key,
	    agent_cfg.ca, err, sizeof(err))) == NULL) {
		log_err("%s: TLS set-up: %s", config, err);
		cfg_free(&agent_cfg);
		return 1;
	}
	tsrc_check(&agent_cfg);
	if (check) {
		printf("%s: ok (%zu edges, %zu services)\n", config,
		    agent_cfg.nedges, agent_cfg.nservices);
		SSL_CTX_free(agent_tls);
		cfg_free(&agent_cfg);
		return 0;
	}
	aho_init(argv);
	start();
	/* A process that took over is not the main one until the old one
	 * says so (MAINPID=), and the service is up already. */
	if (!aho_commit())
		(void)sd_notify(0, "READY=1");
	while (!agent_stop && !aho_drained()) {
		if (ev_run_once(200) == -1)
			log_fatal("epoll_wait: %s", strerror(errno));
		if (agent_hup) {
			agent_hup = 0;
			hup_reload();
			hup_audit();
		}
		if (hup_again && !reload_busy() && !aho_draining()) {
			hup_again = 0;
			hup_reload();
		}
		if (agent_usr2) {
			agent_usr2 = 0;
			usr2_upgrade();
		}
		now = ev_now();
		aedge_tick(now);
		alink_tick(now);
		health_tick(now);
		asess_tick(now);
		aftp_tick(now);
		psock_tick(now);
		reload_tick();
		admin_tick();
		aout_tick(now);
		aban_tick();
		aho_tick(now);
		ev_settle();
	}
	if (!aho_draining())
		(void)sd_notify(0, "STOPPING=1");
	log_info("stopping");
	stop();
	log_info("stopped");
	return 0;
}
