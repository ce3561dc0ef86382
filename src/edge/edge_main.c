/* edge_main.c - sallyport-edge: the DMZ half of sallyport.
 *
 * Start-up needs only the control address, the edge's own certificate
 * and key, and the CA agents must chain to. Everything else arrives from
 * agents over the control channel. */
#include "edge/edge_adm.h"
#include "edge/edge_ctl.h"
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
	int		 verbose;
	int		 selftest;
	int		 sessions_set;
	struct sandbox_conf sc;
};

const char *edge_name;
SSL_CTX *edge_tls;

static volatile sig_atomic_t edge_stop;

static void
on_signal(int sig)
{
	(void)sig;
	edge_stop = 1;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: sallyport-edge --control ADDR:PORT --cert FILE --key FILE "
	    "--ca FILE [options]\n"
	    "\n"
	    "The DMZ half of sallyport: listens for agents on the control address\n"
	    "and opens the service ports they push. It never connects to the\n"
	    "inside and writes no file. See sallyport-edge(8).\n"
	    "\n"
	    "  --control ADDR:PORT      where agents connect, numeric\n"
	    "  --cert FILE, --key FILE  the edge's certificate and key (PEM)\n"
	    "  --ca FILE                the CA agents' certificates chain to\n"
	    "  --name NAME              its name for agents (host name)\n"
	    "  --claim-timeout SEC      a client with no data link free (10)\n"
	    "  --max-sessions N         client sessions at once (10000)\n"
	    "  --max-pending N          clients of a service waiting (1000)\n"
	    "  --max-per-ip N           sessions from one address (256)\n"
	    "  --max-handshakes N       connections not yet identified (256)\n"
	    "  --handshake-timeout SEC  TLS handshake and first frame (10)\n"
	    "  --max-frame BYTES        largest control frame (65536)\n"
	    "  --max-links N            data links per agent (64)\n"
	    "  --user NAME              run as this user after binding\n"
	    "  --chroot DIR             chroot here (without Landlock)\n"
	    "  --bind-low-ports         keep CAP_NET_BIND_SERVICE\n"
	    "  --allow-outbound         connect out for agents' outbound sessions\n"
	    "  --no-sandbox             no privilege drop or filter (debugging)\n"
	    "  --sandbox-selftest       log that writing and exec fail (tests)\n"
	    "  -v, --verbose            debug lines too\n"
	    "  -h, --help               this text\n"
	    "  --version                the version\n");
}

/* A whole number 1..max. 0 or -1. */
static int
parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Seconds (a fraction allowed), more than 0 and at most a day. */
static int
parse_seconds(const char *s, uint64_t *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !(v > 0) || v > 86400)
		return -1;
	*ms = (uint64_t)(v * 1000.0);
	return 0;
}

/* One option; -1 for a bad value, 1 to exit 0 (help, version). */
static int
option(int ch, const char *arg, struct opts *o)
{
	uint64_t v;

	switch (ch) {
	case 'c': o->control = arg; return 0;
	case 'C': o->cert = arg; return 0;
	case 'k': o->key = arg; return 0;
	case 'a': o->ca = arg; return 0;
	case 'n': edge_name = arg; return frame_valid_service(arg) ? 0 : -1;
	case 'u': o->sc.user = arg; return 0;
	case 'r': o->sc.chroot_dir = arg; return 0;
	case 'L': o->sc.bind_low_ports = 1; return 0;
	case 'O': o->sc.outbound = 1; return 0;
	case 'N': o->sc.disabled = 1; return 0;
	case 'Z': o->selftest = 1; return 0;
	case 'v': o->verbose++; return 0;
	case 't': return parse_seconds(arg, &lim.claim_ms);
	case 'T': return parse_seconds(arg, &lim.handshake_ms);
	case 'S':
		o->sessions_set = 1;
		return parse_count(arg, 10000000, &lim.max_sessions);
	case 'P': return parse_count(arg, 10000000, &lim.max_pending);
	case 'p': return parse_count(arg, 100000, &lim.max_links);
	case 'I': return parse_count(arg, 10000000, &lim.max_per_ip);
	case 'H': return parse_count(arg, 1000000, &lim.max_handshakes);
	case 'F':
		if (parse_count(arg, FRAME_MAX, &v) == -1)
			return -1;
		lim.max_frame = (uint32_t)v;
		return 0;
	case 'h': usage(stdout); return 1;
	case 'V': printf("sallyport-edge %s\n", EDGE_VERSION); return 1;
	default: return -1;
	}
}

/* The command line into o and lim. 0 to run, -1 to exit 0, else the
 * exit status. */
static int
parse_options(int argc, char **argv, struct opts *o)
{
	static const struct option opts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'a' },
		{ "claim-timeout", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'n' },
		{ "max-sessions", required_argument, NULL, 'S' },
		{ "max-pending", required_argument, NULL, 'P' },
		{ "max-per-ip", required_argument, NULL, 'I' },
		{ "max-handshakes", required_argument, NULL, 'H' },
		{ "handshake-timeout", required_argument, NULL, 'T' },
		{ "max-frame", required_argument, NULL, 'F' },
		{ "max-links", required_argument, NULL, 'p' },
		{ "user", required_argument, NULL, 'u' },
		{ "chroot", required_argument, NULL, 'r' },
		{ "bind-low-ports", no_argument, NULL, 'L' },
		{ "allow-outbound", no_argument, NULL, 'O' },
		{ "no-sandbox", no_argument, NULL, 'N' },
		{ "sandbox-selftest", no_argument, NULL, 'Z' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, r, idx = -1;

	while ((ch = getopt_long(argc, argv, "vh", opts, &idx)) != -1) {
		if ((r = option(ch, optarg, o)) == 1)
			return -1;	/* --help, --version: done */
		if (r == -1) {
			if (ch != '?' && idx >= 0)
				fprintf(stderr, "sallyport-edge: --%s %s: counts "
				    "are whole numbers > 0, times seconds > 0, names "
				    "1-63 of A-Z a-z 0-9 _ . -\n", opts[idx].name,
				    optarg != NULL ? optarg : "");
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || o->control == NULL || o->cert == NULL ||
	    o->key == NULL || o->ca == NULL) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Use every descriptor the hard limit allows (more, when root can raise
 * it), and size the default session limit to fit: two per session. */
static void
raise_nofile(int sessions_set)
{
	uint64_t asked = lim.max_sessions, fit;
	struct rlimit rl, want = { 65536, 65536 };

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 65536 &&
	    setrlimit(RLIMIT_NOFILE, &want) == 0)
		rl = want;
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	fit = rl.rlim_cur > 2 * 64 ? (rl.rlim_cur - 64) / 2 : 1;
	if (lim.max_sessions > fit)
		lim.max_sessions = fit;
	if (sessions_set && lim.max_sessions < asked)
		log_warn("--max-sessions %llu lowered to %llu to fit the "
		    "descriptor limit", (unsigned long long)asked,
		    (unsigned long long)lim.max_sessions);
}

/* Everything up to the sandbox: the key process, the control port. */
static void
start(struct opts *o)
{
	static char hostname[MSG_NAME_MAX];
	struct sigaction sa;
	char err[512];

	if (edge_name == NULL) {
		if (gethostname(hostname, sizeof(hostname) - 1) == -1 ||
		    !frame_valid_service(hostname))
			snprintf(hostname, sizeof(hostname), "edge");
		edge_name = hostname;
	}
	log_init("sallyport-edge", o->verbose);
	raise_nofile(o->sessions_set);
	fconn_max_frame = lim.max_frame;
	log_info("limits: sessions %llu, pending %llu, per address %llu, "
	    "handshakes %llu, handshake %llu ms, claim %llu ms, frame %u bytes, "
	    "data links %llu per agent", (unsigned long long)lim.max_sessions,
	    (unsigned long long)lim.max_pending,
	    (unsigned long long)lim.max_per_ip,
	    (unsigned long long)lim.max_handshakes,
	    (unsigned long long)lim.handshake_ms,
	    (unsigned long long)lim.claim_ms, lim.max_frame,
	    (unsigned long long)lim.max_links);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (sandbox_prepare(&o->sc, err, sizeof(err)) == -1)
		log_fatal("%s", err);
	if ((edge_tls = tlsx_server_ctx(o->cert, NULL, o->ca, err,
	    sizeof(err))) == NULL)
		log_fatal("TLS set-up: %s", err);
	if (keyproc_start(edge_tls, o->key, &o->sc, err, sizeof(err)) == -1)
		log_fatal("%s: %s", o->key, err);
	if (ev_init() == -1)
		log_fatal("epoll: %s", strerror(errno));
	if (linkkey_init() == -1)
		log_fatal("link keys: OpenSSL has no HMAC");
	if (eout_init(o->sc.outbound) == -1)
		log_fatal("outbound resolver: %s", strerror(errno));
	if (ectl_listen(o->control) == -1)
		exit(1);
}

int
main(int argc, char **argv)
{
	struct opts o;
	char err[512];
	uint64_t now;
	int rc;

	memset(&o, 0, sizeof(o));
	lim.max_sessions = 10000;
	lim.max_pending = 1000;
	lim.max_per_ip = 256;
	lim.max_handshakes = 256;
	lim.handshake_ms = 10000;
	lim.claim_ms = 10000;
	lim.max_frame = FRAME_MAX;
	lim.max_links = 64;
	if ((rc = parse_options(argc, argv, &o)) != 0)
		return rc < 0 ? 0 : rc;
	start(&o);
	/* No-op unless started by systemd with Type=notify. */
	notify_open();
	notify_send("READY=1");
	if (sandbox_enter(&o.sc, err, sizeof(err)) == -1)
		log_fatal("sandbox: %s", err);
	if (o.selftest)
		sandbox_selftest();
	while (!edge_stop) {
		if (ev_run_once(200) == -1)
			log_fatal("epoll_wait: %s", strerror(errno));
		now = ev_now();
		ectl_tick(now);
		elink_tick(now);
		esvc_tick(now);
		proxy_tick(now);
		esess_tick(now);
		adm_tick(now);
		psock_tick(now);
		eout_tick(now);
		ev_settle();
	}
	notify_send("STOPPING=1");
	log_info("stopping");
	eout_shutdown();
	proxy_shutdown();
	esess_shutdown();
	ev_settle();
	elink_shutdown();
	esvc_shutdown();
	psock_tick(UINT64_MAX);
	ectl_shutdown();
	SSL_CTX_free(edge_tls);
	log_info("stopped");
	return 0;
}
