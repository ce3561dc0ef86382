/* edge_main.c - sallyport-edge: the DMZ half of sallyport.
 *
 * Start-up needs only the control address, the edge's own certificate
 * and key, and the CA agents must chain to. Everything else arrives from
 * agents over the control channel. */
#include "edge/edge.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EDGE_VERSION "0.1.0"

struct edge_conf edge_conf;
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
	    "                      [--claim-timeout SEC] [--name NAME] [-v]\n"
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
	    "  --claim-timeout SEC   close a client no agent claims in time (10)\n"
	    "  --name NAME           name sent to agents (default: host name)\n"
	    "  -v, --verbose         log debug lines too\n"
	    "  -h, --help            this text\n"
	    "      --version         print the version\n");
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
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static char hostname[MSG_NAME_MAX];
	struct sigaction sa;
	char err[512];
	int ch, verbose = 0;
	uint64_t now;

	edge_conf.claim_timeout_ms = 10000;
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': edge_conf.control = optarg; break;
		case 'C': edge_conf.cert = optarg; break;
		case 'k': edge_conf.key = optarg; break;
		case 'a': edge_conf.ca = optarg; break;
		case 'n': edge_conf.name = optarg; break;
		case 'v': verbose++; break;
		case 't':
			if (parse_seconds(optarg, &edge_conf.claim_timeout_ms) == -1) {
				fprintf(stderr, "sallyport-edge: --claim-timeout: "
				    "want seconds > 0\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("sallyport-edge %s\n", EDGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || edge_conf.control == NULL || edge_conf.cert == NULL ||
	    edge_conf.key == NULL || edge_conf.ca == NULL) {
		usage(stderr);
		return 2;
	}
	if (edge_conf.name == NULL) {
		if (gethostname(hostname, sizeof(hostname) - 1) == -1)
			snprintf(hostname, sizeof(hostname), "edge");
		edge_conf.name = hostname;
	} else if (!frame_valid_service(edge_conf.name)) {
		fprintf(stderr, "sallyport-edge: --name: use 1-63 of A-Z a-z 0-9 _ . -\n");
		return 2;
	}
	log_init("sallyport-edge", verbose);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	if ((edge_tls = tlsx_server_ctx(edge_conf.cert, edge_conf.key,
	    edge_conf.ca, err, sizeof(err))) == NULL)
		log_fatal("TLS set-up: %s", err);
	if (ev_init() == -1)
		log_fatal("epoll: %s", strerror(errno));
	if (out_init() == -1)
		log_fatal("outbound resolver: %s", strerror(errno));
	if (ctl_listen(edge_conf.control) == -1)
		return 1;

	while (!edge_stop) {
		if (ev_run_once(200) == -1)
			log_fatal("epoll_wait: %s", strerror(errno));
		now = ev_now();
		ctl_tick(now);
		sess_tick(now);
		out_tick(now);
	}
	log_info("stopping");
	out_shutdown();
	svc_shutdown();
	ctl_shutdown();
	SSL_CTX_free(edge_tls);
	log_info("stopped");
	return 0;
}
