/* edge_dial.c - the dialler (edge_dial.h).
 *
 *   relay process (edge_out.c)      dialler                  a worker
 *     dial_send ----- dial_req --->  dial_check: refused? -> dial_rep
 *                                    fork ---------------->  resolve, check,
 *                                                            connect
 *     dial_readable <---------- dial_rep + socket (SCM_RIGHTS) ---+
 *
 * Workers answer on the dialler's own end of the socket pair: a
 * SOCK_SEQPACKET message goes whole, whoever sends it. */
#include "edge/edge_dial.h"
#include "common/log.h"
#include "common/net.h"
#include "common/outpol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

int
dial_check(const struct dial_conf *c, const struct dial_req *q, size_t n,
    char *why, size_t whylen)
{
	/* sin_port and sin6_port lie at the same offset; family 0 has 0. */
	uint16_t sport = ntohs(((const struct sockaddr_in *)(const void *)
	    &q->src)->sin_port);
	const char *bad = NULL;

	if (n != sizeof(*q) || q->id == 0 || q->port == 0 ||
	    (q->why != DW_OUTBOUND && q->why != DW_ACTIVE_FTP) ||
	    memchr(q->host, '\0', sizeof(q->host)) == NULL ||
	    memchr(q->policy, '\0', sizeof(q->policy)) == NULL ||
	    !outpol_valid_host(q->host) || (q->src.ss_family != 0 &&
	    q->src.ss_family != AF_INET && q->src.ss_family != AF_INET6)) {
		snprintf(why, whylen, "malformed request");
		return -1;
	}
	if (q->why == DW_OUTBOUND && !c->outbound)
		bad = "outbound connections need --allow-outbound";
	else if (q->why == DW_OUTBOUND && q->src.ss_family != 0)
		bad = "outbound connections choose no source";
	else if (q->why == DW_ACTIVE_FTP && q->port < 1024)
		bad = "active FTP goes to ports from 1024 only";
	else if (sport != 0 && (sport != 20 || !c->port20))
		bad = "source port not allowed (20 only, with "
		    "--active-ftp-port20)";
	if (bad == NULL)
		return 0;
	snprintf(why, whylen, "%s port %u: %s", q->host, q->port, bad);
	return -1;
}

int
dial_denied(const struct dial_conf *c, const struct sockaddr *sa)
{
	uint8_t a16[16];

	cidr_sa16(sa, a16);
	return cidr_list_match(&c->deny, a16);
}

/* --- the dialler ----------------------------------------------------------- */

static void
dial_answer(int fd, const struct dial_rep *r, int sock)
{
	union dial_cmsg cm;
	struct iovec iov = { (void *)(uintptr_t)r, sizeof(*r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (sock != -1) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = &cm;
		mh.msg_controllen = sizeof(cm);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &sock, sizeof(sock));
	}
	(void)sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* A connected, non-blocking socket to ai from q's source, or -1. A
 * blocking connect is bounded by SO_SNDTIMEO (EINPROGRESS when up). */
static int
dial_one(const struct dial_req *q, const struct addrinfo *ai)
{
	struct timeval tv = { DIAL_SECS, 0 };
	int s, one = 1, err;

	if ((s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
	    (q->src.ss_family == 0 || (setsockopt(s, SOL_SOCKET, SO_REUSEADDR,
	    &one, sizeof(one)) == 0 && bind(s, (const struct sockaddr *)
	    &q->src, ai->ai_addrlen) == 0)) &&
	    connect(s, ai->ai_addr, ai->ai_addrlen) == 0 &&
	    fcntl(s, F_SETFL, O_NONBLOCK) == 0)
		return s;
	err = errno == EINPROGRESS ? ETIMEDOUT : errno;
	close(s);
	errno = err;
	return -1;
}

/* A worker: resolve (active FTP: numeric only), check the name and
 * every address (the agent's policy, then --dial-deny), connect to the
 * first that passes and answers, and answer. alarm() ends it if that
 * takes too long. */
static void
dial_work(int fd, const struct dial_conf *c, const struct dial_req *q)
{
	static struct outpol pol;	/* large: not on the stack */
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	struct addrinfo *ai;
	struct dial_rep r = { .id = q->id, .err = EACCES };
	const char *w = NULL;
	char port[8], a[NET_ADDRSTR];
	uint8_t lit[16];
	int s = -1, rc, n = 0;
	int literal = inet_pton(AF_INET, q->host, lit) == 1 ||
	    inet_pton(AF_INET6, q->host, lit) == 1;

	hints.ai_flags = AI_NUMERICSERV | (q->why == DW_OUTBOUND ? 0 :
	    AI_NUMERICHOST);
	snprintf(port, sizeof(port), "%u", q->port);
	/* A policy that does not parse leaves its error in r.text. */
	if (q->why == DW_OUTBOUND && outpol_parse(q->policy, &pol, r.text,
	    sizeof(r.text)) == 0 && !outpol_check_name(&pol, q->host, q->port,
	    &w))
		snprintf(r.text, sizeof(r.text), "%s", w);
	else if (r.text[0] == '\0' &&
	    (rc = getaddrinfo(q->host, port, &hints, &res)) != 0) {
		r.err = EHOSTUNREACH;
		snprintf(r.text, sizeof(r.text), "cannot resolve %s: %s",
		    q->host, rc == EAI_SYSTEM ? strerror(errno) :
		    gai_strerror(rc));
	}
	for (ai = res; ai != NULL && s == -1 && n < DIAL_ADDRS; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		n++;
		net_fmt(ai->ai_addr, a, sizeof(a));
		/* The agent's policy (which sets w only when it refuses),
		 * then the operator's list. */
		w = NULL;
		if (q->why == DW_OUTBOUND)
			(void)outpol_check_addr(&pol, literal ? NULL : q->host,
			    ai->ai_addr, &w);
		if (w == NULL && dial_denied(c, ai->ai_addr))
			w = "in --dial-deny";
		if (w == NULL && (s = dial_one(q, ai)) == -1) {
			r.err = errno;
			snprintf(r.text, sizeof(r.text), "%s: %s", a,
			    strerror(errno));
		} else if (w != NULL && r.err == EACCES && r.text[0] == '\0')
			/* The first refusal says why, unless a connect
			 * fails after it. */
			snprintf(r.text, sizeof(r.text), literal ? "%.0s%s: %s" :
			    "%s resolves to %s: %s", q->host, a, w);
	}
	if (s != -1)
		r.err = 0;
	else if (res != NULL && n == 0) {
		r.err = EHOSTUNREACH;
		snprintf(r.text, sizeof(r.text), "%s: no usable address",
		    q->host);
	}
	if (res != NULL)
		freeaddrinfo(res);
	dial_answer(fd, &r, s);
}

static void
dial_serve(int fd, void *arg)
{
	const struct dial_conf *c = arg;
	struct dial_req q;
	struct dial_rep r;
	unsigned nworkers = 0;
	ssize_t n;
	pid_t pid;

	if (sandbox_enter(c->sc, SB_DIALLER, r.text, sizeof(r.text)) == -1)
		log_fatal("dialler: sandbox: %s", r.text);
	for (;;) {
		memset(&q, 0, sizeof(q));
		n = recv(fd, &q, sizeof(q), MSG_TRUNC);
		if (n == 0 || (n == -1 && errno != EINTR))
			_exit(0);	/* the relay process is gone */
		if (n == -1)
			continue;
		/* Ended workers are counted out (and reaped) here. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			nworkers--;
		memset(&r, 0, sizeof(r));
		r.id = q.id;
		r.err = EACCES;
		if (dial_check(c, &q, (size_t)n, r.text, sizeof(r.text)) == -1)
			log_warn("dialler: request refused: %s", r.text);
		else if (nworkers >= DIAL_WORKERS) {
			r.err = EAGAIN;
			snprintf(r.text, sizeof(r.text), "dialler busy");
		} else if ((pid = fork()) == 0) {
			alarm(DIAL_SECS + 2);
			dial_work(fd, c, &q);
			_exit(0);
		} else if (pid == -1) {
			r.err = errno;
			snprintf(r.text, sizeof(r.text), "dialler: fork: %s",
			    strerror(r.err));
		} else {
			nworkers++;
			continue;
		}
		dial_answer(fd, &r, -1);
	}
}

int
dial_fork(const struct dial_conf *c, char *err, size_t errlen)
{
	return sandbox_helper("sallyport-dial", dial_serve, (void *)(uintptr_t)c,
	    err, errlen);
}
