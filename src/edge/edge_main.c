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
#include "edge/edge_out.h"
#include "edge/edge_proxy.h"
#include "edge/edge_sess.h"
#include "edge/edge_notify.h"
#include "edge/edge_sandbox.h"
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
static struct {
	const char	*control;
	const char	*cert;
	const char	*key;
	const char	*ca;
} conf;

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
	    "usage: sallyport-edge --control ADDR:PORT --cert FILE --key FILE --ca FILE\n"
	    "                      [--claim-timeout SEC] [--name NAME] [limits] [-v]\n"
	    "\n"
	    "The DMZ half of sallyport. Listens for agents on the control address\n"
	    "(mutual TLS: agents' certificates must chain to --ca) and opens the\n"
	    "public service ports that agents push to it. It never connects to the\n"
	    "inside network and writes no file; it connects out only for an agent's\n"
	    "outbound sessions, to destinations that agent's policy allows.\n"
	    "\n"
	    "  --control ADDR:PORT   control and data-link address, numeric (e.g.\n"
	    "                        0.0.0.0:7000, [::]:7000, 127.0.0.1:7000)\n"
	    "  --cert FILE           the edge's certificate (PEM)\n"
	    "  --key FILE            its private key (PEM)\n"
	    "  --ca FILE             CA that agent certificates must chain to\n"
	    "  --claim-timeout SEC   close a client that finds no data link of an\n"
	    "                        agent free within this time (10)\n"
	    "  --name NAME           name sent to agents (default: host name)\n"
	    "\n"
	    "Limits (each hit is logged and counted):\n"
	    "  --max-sessions N      client sessions open at once (10000, or what\n"
	    "                        the descriptor limit allows)\n"
	    "  --max-pending N       clients of one service waiting for a data\n"
	    "                        link (1000)\n"
	    "  --max-per-ip N        sessions from one client address (256)\n"
	    "  --max-handshakes N    control-port connections not yet identified (256)\n"
	    "  --handshake-timeout SEC  TLS handshake and first frame on the control\n"
	    "                        port, for agents and data links (10)\n"
	    "  --max-frame BYTES     largest control frame accepted (65536)\n"
	    "  --max-links N         data links per agent, multiplexed and idle\n"
	    "                        plain ones (64)\n"
	    "\n"
	    "Least privilege (the key is always held by a separate key process,\n"
	    "and the system call filter is always on):\n"
	    "  --user NAME           after binding, run as this user (start as root)\n"
	    "  --chroot DIR          chroot to this empty directory (needs root;\n"
	    "                        Landlock already closes the file system\n"
	    "                        where the kernel has it)\n"
	    "  --bind-low-ports      keep CAP_NET_BIND_SERVICE so agents may open\n"
	    "                        ports below 1024 (22, 443); no other capability\n"
	    "  --allow-outbound      let agents run outbound sessions through this\n"
	    "                        edge: it then resolves names and connects to\n"
	    "                        the destinations each agent's policy allows\n"
	    "                        (the filter allows connect() and resolver\n"
	    "                        threads; Landlock lets it read /etc/hosts,\n"
	    "                        resolv.conf, nsswitch.conf, host.conf, gai.conf)\n"
	    "  --no-sandbox          no privilege drop, Landlock or seccomp (debug)\n"
	    "  --sandbox-selftest    after entering the sandbox, try to write a\n"
	    "                        file and exec, and log that both fail (tests)\n"
	    "  -v, --verbose         log debug lines too\n"
	    "  -h, --help            this text\n"
	    "      --version         print the version\n");
}

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

/* Use every descriptor the hard limit allows (more, when root can raise
 * it), and size the default session limit to fit: two per session. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	uint64_t fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 65536) {
		struct rlimit want = { 65536, 65536 };
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	fit = rl.rlim_cur > 2 * 64 ? (rl.rlim_cur - 64) / 2 : 1;
	if (lim.max_sessions > fit)
		lim.max_sessions = fit;
}

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

int
main(int argc, char **argv)
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
	static char hostname[MSG_NAME_MAX];
	struct sigaction sa;
	char err[512];
	struct sandbox_conf sc;
	int ch, verbose = 0, bad = 0, sessions_set = 0, selftest = 0;
	uint64_t now, v;

	memset(&sc, 0, sizeof(sc));
	lim.max_sessions = 10000;
	lim.max_pending = 1000;
	lim.max_per_ip = 256;
	lim.max_handshakes = 256;
	lim.handshake_ms = 10000;
	lim.claim_ms = 10000;
	lim.max_frame = FRAME_MAX;
	lim.max_links = 64;
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': conf.control = optarg; break;
		case 'C': conf.cert = optarg; break;
		case 'k': conf.key = optarg; break;
		case 'a': conf.ca = optarg; break;
		case 'n': edge_name = optarg; break;
		case 'u': sc.user = optarg; break;
		case 'r': sc.chroot_dir = optarg; break;
		case 'L': sc.bind_low_ports = 1; break;
		case 'O': sc.outbound = 1; break;
		case 'N': sc.disabled = 1; break;
		case 'Z': selftest = 1; break;
		case 'v': verbose++; break;
		case 't': bad |= parse_seconds(optarg, &lim.claim_ms); break;
		case 'T': bad |= parse_seconds(optarg, &lim.handshake_ms); break;
		case 'S':
			bad |= parse_count(optarg, 10000000, &lim.max_sessions);
			sessions_set = 1;
			break;
		case 'P': bad |= parse_count(optarg, 10000000, &lim.max_pending); break;
		case 'p': bad |= parse_count(optarg, 100000, &lim.max_links); break;
		case 'I': bad |= parse_count(optarg, 10000000, &lim.max_per_ip); break;
		case 'H': bad |= parse_count(optarg, 1000000, &lim.max_handshakes); break;
		case 'F':
			bad |= parse_count(optarg, FRAME_MAX, &v);
			lim.max_frame = (uint32_t)v;
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("sallyport-edge %s\n", EDGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (bad) {
		fprintf(stderr, "sallyport-edge: a limit is out of range: counts "
		    "are whole numbers > 0, times seconds > 0, --max-frame at "
		    "most %u\n", FRAME_MAX);
		return 2;
	}
	if (optind != argc || conf.control == NULL || conf.cert == NULL ||
	    conf.key == NULL || conf.ca == NULL) {
		usage(stderr);
		return 2;
	}
	if (edge_name == NULL) {
		if (gethostname(hostname, sizeof(hostname) - 1) == -1)
			snprintf(hostname, sizeof(hostname), "edge");
		edge_name = hostname;
	} else if (!frame_valid_service(edge_name)) {
		fprintf(stderr, "sallyport-edge: --name: use 1-63 of A-Z a-z 0-9 _ . -\n");
		return 2;
	}
	log_init("sallyport-edge", verbose);
	v = lim.max_sessions;
	raise_nofile();
	if (sessions_set && lim.max_sessions < v)
		log_warn("--max-sessions %llu lowered to %llu to fit the "
		    "descriptor limit", (unsigned long long)v,
		    (unsigned long long)lim.max_sessions);
	fconn_max_frame = lim.max_frame;
	log_info("limits: sessions %llu, pending %llu, per address %llu, "
	    "handshakes %llu, handshake %llu ms, claim %llu ms, frame %u bytes, "
	    "data links %llu per agent",
	    (unsigned long long)lim.max_sessions,
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

	if (sandbox_prepare(&sc, err, sizeof(err)) == -1)
		log_fatal("%s", err);
	if ((edge_tls = tlsx_server_ctx(conf.cert, NULL, conf.ca,
	    err, sizeof(err))) == NULL)
		log_fatal("TLS set-up: %s", err);
	if (keyproc_start(edge_tls, conf.key, &sc, err, sizeof(err)) == -1)
		log_fatal("%s: %s", conf.key, err);
	if (ev_init() == -1)
		log_fatal("epoll: %s", strerror(errno));
	if (linkkey_init() == -1)
		log_fatal("link keys: OpenSSL has no HMAC");
	if (eout_init(sc.outbound) == -1)
		log_fatal("outbound resolver: %s", strerror(errno));
	if (ectl_listen(conf.control) == -1)
		return 1;
	/* No-op unless started by systemd with Type=notify. */
	notify_open();
	notify_send("READY=1");
	if (sandbox_enter(&sc, err, sizeof(err)) == -1)
		log_fatal("sandbox: %s", err);
	if (selftest)
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
