/* edge_main.c - sallyport-edge: the DMZ half of sallyport.
 *
 * Start-up needs only the control address, the edge's own certificate
 * and key, and the CA agents must chain to. Everything else arrives from
 * agents over the control channel. */
#include "edge/edge_ban.h"
#include "edge/edge_adm.h"
#include "edge/edge_ctl.h"
#include "edge/edge_handover.h"
#include "edge/edge_keyproc.h"
#include "edge/edge_limit.h"
#include "edge/edge_link.h"
#include "edge/edge_lis.h"
#include "edge/edge_notify.h"
#include "edge/edge_out.h"
#include "edge/edge_proxy.h"
#include "edge/edge_sandbox.h"
#include "edge/edge_sess.h"
#include "common/linkkey.h"
#include "common/log.h"
#include "common/psock.h"
#include "common/tlsx.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define EDGE_VERSION "0.1.0"

/* What the command line says; everything else arrives from agents. */
struct opts {
	const char	*control;
	const char	*cert;
	const char	*key;
	const char	*ca;
	const char	*name;
	const char	*handover;
	uint64_t	 drain_ms;	/* 0: no limit */
	int		 detach;
	int		 verbose;
	int		 selftest;
	int		 help, version;
	struct sandbox_conf sc;
};

const char *edge_name;
SSL_CTX *edge_tls;

static volatile sig_atomic_t edge_stop;
static struct opts o;
static struct dial_conf dc;
static int deny_given;

/* One option: how its value is read (string, count 1..max, seconds, a
 * flag that counts how often it was given, or --dial-deny's ranges),
 * where it goes, and its line of --help. */
enum { O_STR, O_COUNT, O_SECS, O_FLAG, O_DENY };
static const struct eopt {
	const char	*name;
	int		 kind;
	void		*p;
	uint64_t	 max;
	const char	*help;
} eopts[] = {
	{ "control", O_STR, &o.control, 0, "ADDR:PORT  where agents connect, numeric" },
	{ "cert", O_STR, &o.cert, 0, "FILE  the edge's certificate (PEM)" },
	{ "key", O_STR, &o.key, 0, "FILE  its private key (PEM)" },
	{ "ca", O_STR, &o.ca, 0, "FILE  the CA agents' certificates chain to" },
	{ "name", O_STR, &o.name, 0, "NAME  its name for agents (host name)" },
	{ "claim-timeout", O_SECS, &lim.claim_ms, 0, "SEC  a client with no data link free (10)" },
	{ "max-sessions", O_COUNT, &lim.max_sessions, 10000000, "N  client sessions at once (10000)" },
	{ "max-pending", O_COUNT, &lim.max_pending, 10000000, "N  clients of a service waiting (1000)" },
	{ "max-per-ip", O_COUNT, &lim.max_per_ip, 10000000, "N  sessions from one address (256)" },
	{ "max-handshakes", O_COUNT, &lim.max_handshakes, 1000000, "N  connections not yet identified (256)" },
	{ "handshake-timeout", O_SECS, &lim.handshake_ms, 0, "SEC  TLS handshake and first frame (10)" },
	{ "max-frame", O_COUNT, &lim.max_frame, FRAME_MAX, "BYTES  largest control frame (65536)" },
	{ "max-links", O_COUNT, &lim.max_links, 100000, "N  data links per agent (64)" },
	{ "max-bans", O_COUNT, &lim.max_bans, 10000000, "N  bans held, all agents (262144)" },
	{ "handover-socket", O_STR, &o.handover, 0, "PATH  take over from the edge there; listen there" },
	{ "drain-timeout", O_SECS, &o.drain_ms, 0, "SEC  cut sessions left after a hand-over (none)" },
	{ "detach", O_FLAG, &o.detach, 0, "exit once running in the background (ExecReload)" },
	{ "user", O_STR, &o.sc.user, 0, "NAME  run as this user after binding" },
	{ "chroot", O_STR, &o.sc.chroot_dir, 0, "DIR  chroot here (without Landlock)" },
	{ "bind-low-ports", O_FLAG, &o.sc.bind_low_ports, 0, "keep CAP_NET_BIND_SERVICE" },
	{ "allow-outbound", O_FLAG, &o.sc.outbound, 0, "connect out for agents' outbound sessions" },
	{ "dial-deny", O_DENY, NULL, 0, "CIDR  never connect there (repeat; none; default private)" },
	{ "active-ftp-port20", O_FLAG, &o.sc.port20, 0, "active FTP data from port 20" },
	{ "no-sandbox", O_FLAG, &o.sc.disabled, 0, "no privilege drop or filter (debugging)" },
	{ "sandbox-selftest", O_FLAG, &o.selftest, 0, "log that writing, exec, connect fail (tests)" },
	{ "verbose", O_FLAG, &o.verbose, 0, "debug lines too (-v)" },
	{ "help", O_FLAG, &o.help, 0, "this text (-h)" },
	{ "version", O_FLAG, &o.version, 0, "the version" },
};
#define NOPTS (sizeof(eopts) / sizeof(eopts[0]))

static void
on_signal(int sig)
{
	(void)sig;
	edge_stop = 1;
}

static void
usage(FILE *f)
{
	const char *sp;
	char left[40];
	size_t i;

	fprintf(f, "usage: sallyport-edge --control ADDR:PORT --cert FILE "
	    "--key FILE --ca FILE [options]\n\n"
	    "The DMZ half of sallyport: listens for agents on the control "
	    "address\nand opens the service ports they push. It never "
	    "connects to the\ninside and writes no file. See "
	    "sallyport-edge(8).\n\n");
	for (i = 0; i < NOPTS; i++) {
		/* "ARG  text": the argument goes with the name. */
		sp = eopts[i].kind == O_FLAG ? NULL : strstr(eopts[i].help, "  ");
		snprintf(left, sizeof(left), "--%s%s%.*s", eopts[i].name,
		    sp != NULL ? " " : "", sp != NULL ?
		    (int)(sp - eopts[i].help) : 0, eopts[i].help);
		fprintf(f, "  %-27s %s\n", left, sp != NULL ? sp + 2 :
		    eopts[i].help);
	}
}

/* A whole number 1..max, or seconds (a fraction allowed, more than 0 and
 * at most a day) as milliseconds. 0 or -1. */
static int
parse_value(const struct eopt *e, const char *s)
{
	char *end;
	unsigned long long v;
	double d;

	errno = 0;
	if (e->kind == O_SECS) {
		d = strtod(s, &end);
		if (errno != 0 || *end != '\0' || !(d > 0) || d > 86400)
			return -1;
		*(uint64_t *)e->p = (uint64_t)(d * 1000.0);
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -1;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > e->max)
		return -1;
	*(uint64_t *)e->p = v;
	return 0;
}

/* --dial-deny s: its ranges replace the default list; "none" empties
 * it. 0 or -1. */
static int
deny_add(const char *s)
{
	struct cidr_list l;
	char err[160];
	size_t i;

	deny_given = 1;
	if (strcmp(s, "none") == 0)
		return 0;
	snprintf(err, sizeof(err), "more than %d ranges", CIDR_LIST_MAX);
	if (cidr_list_parse(s, &l, err, sizeof(err)) == -1 ||
	    l.n > CIDR_LIST_MAX - dc.deny.n) {
		fprintf(stderr, "sallyport-edge: --dial-deny %s: %s\n", s, err);
		return -1;
	}
	for (i = 0; i < l.n; i++)
		dc.deny.e[dc.deny.n++] = l.e[i];
	return 0;
}

/* The command line into o and lim. 0 to run, -1 to exit 0, else the
 * exit status. */
static int
parse_options(int argc, char **argv)
{
	struct option lo[NOPTS + 1];
	const struct eopt *e;
	int ch, bad = 0;
	size_t i;

	memset(lo, 0, sizeof(lo));
	for (i = 0; i < NOPTS; i++) {
		lo[i].name = eopts[i].name;
		lo[i].has_arg = eopts[i].kind == O_FLAG ? no_argument :
		    required_argument;
		lo[i].val = 256 + (int)i;
	}
	while (!bad && (ch = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		for (i = 0; (ch == 'v' || ch == 'h') && i < NOPTS; i++)
			if (strcmp(eopts[i].name, ch == 'v' ? "verbose" :
			    "help") == 0)
				ch = 256 + (int)i;	/* -v, -h */
		if (ch < 256) {
			bad = 1;
			break;
		}
		e = &eopts[ch - 256];
		if (e->kind == O_STR)
			*(const char **)e->p = optarg;
		else if (e->kind == O_FLAG)
			(*(int *)e->p)++;
		else if (e->kind == O_DENY)
			bad = deny_add(optarg) == -1;
		else if (parse_value(e, optarg) == -1) {
			fprintf(stderr, "sallyport-edge: --%s %s: counts are "
			    "whole numbers > 0, times seconds > 0\n", e->name,
			    optarg);
			bad = 1;
		}
	}
	if (!deny_given && cidr_list_parse(DIAL_DENY_DEFAULT, &dc.deny, NULL,
	    0) == -1)
		abort();	/* our own list */
	if (!bad && o.name != NULL && !frame_valid_service(o.name)) {
		fprintf(stderr, "sallyport-edge: --name %s: 1-63 of A-Z a-z "
		    "0-9 _ . -\n", o.name);
		bad = 1;
	}
	if (o.help || o.version) {
		if (o.help)
			usage(stdout);
		else
			printf("sallyport-edge %s\n", EDGE_VERSION);
		return -1;
	}
	if (bad || optind != argc || o.control == NULL || o.cert == NULL ||
	    o.key == NULL || o.ca == NULL) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Use every descriptor the hard limit allows (more, when root can raise
 * it), and size the default session limit to fit: two per session. */
static void
raise_nofile(void)
{
	uint64_t asked = lim.max_sessions, fit;
	struct rlimit rl, want = { 65536, 65536 };

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	/* RLIM_INFINITY is above any number. */
	if (rl.rlim_max < 65536 && setrlimit(RLIMIT_NOFILE, &want) == 0)
		rl = want;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1 &&
	    getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	fit = rl.rlim_cur > 2 * 64 ? (rl.rlim_cur - 64) / 2 : 1;
	if (lim.max_sessions > fit)
		lim.max_sessions = fit;
	if (asked != LIM_SESSIONS_DEFAULT && lim.max_sessions < asked)
		log_warn("--max-sessions %llu lowered to %llu to fit the "
		    "descriptor limit", (unsigned long long)asked,
		    (unsigned long long)lim.max_sessions);
}

/* --detach: the process that was started exits once its child runs (0)
 * or has failed (1): systemd's ExecReload waits for it, and the child
 * becomes the service's main process. Returns, in the child, the pipe on
 * which "1" says it runs. */
static int
detach(void)
{
	int p[2];
	pid_t pid;
	ssize_t n;
	char c = 0;

	if (pipe2(p, O_CLOEXEC) == -1 || (pid = fork()) == -1) {
		perror("sallyport-edge: --detach");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		while ((n = read(p[0], &c, 1)) == -1 && errno == EINTR)
			;
		_exit(n == 1 && c == '1' ? 0 : 1);
	}
	close(p[0]);
	(void)setsid();
	return p[1];
}

/* Everything up to the sandbox: the key process, the control port. */
static void
start(void)
{
	static char hostname[MSG_NAME_MAX];
	struct sigaction sa = { .sa_handler = on_signal };
	char err[512];

	if ((edge_name = o.name) == NULL) {
		if (gethostname(hostname, sizeof(hostname) - 1) == -1 ||
		    !frame_valid_service(hostname))
			snprintf(hostname, sizeof(hostname), "edge");
		edge_name = hostname;
	}
	log_init("sallyport-edge", o.verbose);
	raise_nofile();
	fconn_max_frame = (uint32_t)lim.max_frame;
	log_info("limits: sessions %llu, pending %llu, per address %llu, "
	    "handshakes %llu, handshake %llu ms, claim %llu ms, frame %llu bytes, "
	    "data links %llu per agent", (unsigned long long)lim.max_sessions,
	    (unsigned long long)lim.max_pending,
	    (unsigned long long)lim.max_per_ip,
	    (unsigned long long)lim.max_handshakes,
	    (unsigned long long)lim.handshake_ms,
	    (unsigned long long)lim.claim_ms,
	    (unsigned long long)lim.max_frame,
	    (unsigned long long)lim.max_links);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (sandbox_prepare(&o.sc, err, sizeof(err)) == -1)
		log_fatal("%s", err);
	if ((edge_tls = tlsx_server_ctx(o.cert, NULL, o.ca, err,
	    sizeof(err))) == NULL)
		log_fatal("TLS set-up: %s", err);
	if (keyproc_start(edge_tls, o.key, &o.sc, err, sizeof(err)) == -1)
		log_fatal("%s: %s", o.key, err);
	/* After the key process's fork, which must not hold a copy of a
	 * listener; before any listener of this process's own. */
	eho_init(o.handover, o.drain_ms, sandbox_uid());
	eho_take();
	if (ev_init() == -1)
		log_fatal("epoll: %s", strerror(errno));
	if (linkkey_init() == -1)
		log_fatal("link keys: OpenSSL has no HMAC");
	dc.outbound = o.sc.outbound;
	dc.port20 = o.sc.port20;
	dc.sc = &o.sc;
	if (eout_init(&dc, err, sizeof(err)) == -1)
		log_fatal("dialler: %s", err);
	log_info("dialler: --dial-deny %zu ranges%s%s%s", dc.deny.n,
	    dc.deny.n == 0 ? " (none: any address)" : deny_given ? "" :
	    " (the default: private, loopback, link-local)",
	    dc.outbound ? ", outbound" : "", dc.port20 ? ", port 20" : "");
	if (ectl_listen(o.control) == -1)
		exit(1);
}

/* Each module's timers, once a loop turn, in this order. */
static void (*const ticks[])(uint64_t) = { ectl_tick, elink_tick, esvc_tick,
    proxy_tick, esess_tick, adm_tick, eban_tick, psock_tick, eout_tick,
    eho_tick };

int
main(int argc, char **argv)
{
	char err[512];
	uint64_t now;
	size_t i;
	int rc, detach_fd = -1;

	if ((rc = parse_options(argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (o.detach)
		detach_fd = detach();
	start();
	/* No-op unless started by systemd with Type=notify. */
	notify_open();
	/* A process that took over is not the main one until the old one
	 * says so (MAINPID=), and the service is up already. */
	if (!eho_commit())
		notify_send("READY=1");
	if (sandbox_enter(&o.sc, SB_RELAY, err, sizeof(err)) == -1)
		log_fatal("sandbox: %s", err);
	if (o.selftest)
		sandbox_selftest();
	if (detach_fd != -1) {
		(void)write(detach_fd, "1", 1);
		close(detach_fd);
	}
	while (!edge_stop && !eho_drained()) {
		if (ev_run_once(200) == -1)
			log_fatal("epoll_wait: %s", strerror(errno));
		now = ev_now();
		for (i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++)
			ticks[i](now);
		ev_settle();
	}
	if (!eho_draining())
		notify_send("STOPPING=1");
	log_info("stopping");
	eout_shutdown();
	proxy_shutdown();
	esess_shutdown("edge stopping");
	ev_settle();
	elink_shutdown();
	esvc_shutdown();
	eban_shutdown();
	psock_tick(UINT64_MAX);
	ectl_shutdown();
	SSL_CTX_free(edge_tls);
	log_info("stopped");
	return 0;
}
