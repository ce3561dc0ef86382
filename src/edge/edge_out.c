/* edge_out.c - outbound sessions (edge_out.h).
 *
 * An agent asks on its control channel (OUT_REQ) for a TCP connection to
 * a destination outside; the edge checks that agent's policy, resolves
 * the name, checks every resolved address again (a name cannot be made to
 * resolve around the policy), connects, and opens the session on one of
 * the agent's data links like any other (SESS_OPEN, kind outbound), or
 * answers OUT_FAIL.
 *
 * This is the only file in the edge that calls connect(), and it calls it
 * only with an address that passed outpol_check_addr. Names are resolved
 * with getaddrinfo_a: glibc's helper threads do the blocking lookup and
 * a notification thread writes the finished request's pointer into a
 * pipe that the event loop reads, so the loop never waits on DNS. */
#include "edge/edge_out.h"
#include "edge/edge_ctl.h"
#include "edge/edge_sess.h"
#include "common/log.h"
#include "common/outpol.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_CONNECT_MS		10000	/* resolve + connect */
#define OUT_RESOLVING_MAX	64	/* lookups in flight */
#define OUT_PENDING_MAX		4096	/* requests not yet connected */
#define OUT_CAND_MAX		8	/* addresses tried per request */

/* SOCKS reply codes (RFC 1928), which OUT_FAIL's OUT_CODE carries. */
enum { OC_OK = 0, OC_FAIL = 1, OC_NOT_ALLOWED = 2, OC_NET_UNREACH = 3,
    OC_HOST_UNREACH = 4, OC_REFUSED = 5, OC_TIMEOUT = 6 };

/* An agent's pushed policy. */
struct epol {
	struct outpol	 pol;
};

enum req_state { EO_RESOLVE, EO_CONNECT };

struct oreq;

/* One getaddrinfo_a request. Only the loop thread touches o; the
 * notification thread only passes the pointer through the pipe. */
struct eres {
	struct gaicb	 cb;
	struct addrinfo	 hints;
	struct sigevent	 sev;
	char		 host[MSG_HOST_MAX];
	char		 port[8];
	struct oreq	*o;		/* NULL once nobody waits for it */
};

/* A request until it is connected (then it is a session) or fails. */
struct oreq {
	struct ev_io	 cio;		/* the destination while connecting */
	uint64_t	 request;	/* the agent's id for it */
	enum req_state	 state;
	struct eagent	*a;
	char		 host[MSG_HOST_MAX];
	uint16_t	 port;
	char		 dest[MSG_HOST_MAX + 16];
	struct eres	*res;
	struct net_addr	 cand[OUT_CAND_MAX];
	size_t		 ncand;
	size_t		 icand;
	int		 last_err;
	char		 addr[NET_ADDRSTR];
	uint64_t	 deadline;
	LIST_ENTRY(oreq) entry;
};

static int out_enabled;
static int res_pipe[2] = { -1, -1 };
static struct ev_io res_io;
static size_t nresolving;
static LIST_HEAD(, oreq) reqs = LIST_HEAD_INITIALIZER(reqs);
static size_t nreqs;

static void
req_free(struct oreq *o)
{
	LIST_REMOVE(o, entry);
	nreqs--;
	if (o->res != NULL)
		o->res->o = NULL;	/* res_done frees it when it finishes */
	if (o->state == EO_CONNECT && o->cio.fd != -1) {
		ev_del(&o->cio);
		close(o->cio.fd);
	}
	free(o);
}

/* Refuse or give up: OUT_FAIL to the agent (if it is still there). */
static void
req_fail(struct oreq *o, uint8_t code, const char *why)
{
	struct msg m;

	log_warn("outbound request %llu %s agent=%s dest=%s: %s",
	    (unsigned long long)o->request,
	    code == OC_NOT_ALLOWED ? "refused" : "failed",
	    o->a != NULL ? o->a->name : "-", o->dest, why);
	if (o->a != NULL) {
		msg_init(&m, FT_OUT_FAIL);
		msg_set_int(&m, FA_REQUEST, o->request);
		msg_set_int(&m, FA_OUT_CODE, code);
		msg_set_str(&m, FA_TEXT, why);
		ectl_send(o->a, &m);
	}
	req_free(o);
}

static uint8_t
code_for_errno(int err)
{
	switch (err) {
	case ECONNREFUSED: return OC_REFUSED;
	case ENETUNREACH: return OC_NET_UNREACH;
	case EHOSTUNREACH: return OC_HOST_UNREACH;
	case ETIMEDOUT: return OC_TIMEOUT;
	default: return OC_FAIL;
	}
}

/* Connected to the destination: a session of the agent's, on one of its
 * data links. */
static void
req_joined(struct oreq *o, int fd)
{
	struct net_addr dest = o->cand[o->icand - 1];
	struct esess_req r;

	memset(&r, 0, sizeof(r));
	r.kind = SK_OUTBOUND;
	r.agent = o->a;
	r.request = o->request;
	o->state = EO_RESOLVE;	/* fd is the session's from here */
	req_free(o);
	esess_start(fd, (struct sockaddr *)&dest.ss, NULL, &r);
}

static void req_connect_next(struct oreq *o);

static void
req_connect_io(struct ev_io *io, uint32_t events)
{
	struct oreq *o = (struct oreq *)(void *)io;
	int err, fd = io->fd;

	(void)events;
	err = net_sock_error(fd);
	ev_del(io);
	o->cio.fd = -1;
	if (err != 0) {
		close(fd);
		log_debug("outbound %llu: %s: %s", (unsigned long long)o->request,
		    o->addr, strerror(err));
		o->last_err = err;
		req_connect_next(o);
		return;
	}
	(void)net_set_nodelay(fd);
	req_joined(o, fd);
}

/* Try the allowed addresses in the resolver's order. */
static void
req_connect_next(struct oreq *o)
{
	struct net_addr *a;
	char why[300];
	int fd;

	while (o->icand < o->ncand) {
		a = &o->cand[o->icand++];
		net_fmt((struct sockaddr *)&a->ss, o->addr, sizeof(o->addr));
		fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd == -1) {
			o->last_err = errno;
			continue;
		}
		/* The address passed outpol_check_addr in req_resolved. */
		if (connect(fd, (struct sockaddr *)&a->ss, a->len) == -1 &&
		    errno != EINPROGRESS) {
			o->last_err = errno;
			close(fd);
			continue;
		}
		ev_io_init(&o->cio, fd, req_connect_io);
		if (ev_set(&o->cio, EPOLLOUT) == -1) {
			o->last_err = errno;
			close(fd);
			o->cio.fd = -1;
			continue;
		}
		o->state = EO_CONNECT;
		return;
	}
	snprintf(why, sizeof(why), "%s: %s", o->addr, strerror(o->last_err));
	o->state = EO_RESOLVE;		/* nothing to close */
	req_fail(o, code_for_errno(o->last_err), why);
}

/* Keep the resolved addresses the policy allows, then connect. */
static void
req_resolved(struct oreq *o, struct addrinfo *res, int literal)
{
	struct addrinfo *ai;
	const char *why = NULL, *w;
	char msg[400], first[NET_ADDRSTR] = "";

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(o->cand[0].ss) ||
		    (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
			continue;
		/* o->a and its policy live as long as o (eout_agent_lost). */
		if (!outpol_check_addr(&o->a->out_pol->pol, literal ? NULL :
		    o->host, ai->ai_addr, &w)) {
			if (why == NULL) {
				why = w;
				net_fmt(ai->ai_addr, first, sizeof(first));
			}
			log_debug("outbound %llu: %s not allowed: %s",
			    (unsigned long long)o->request, o->dest, w);
			continue;
		}
		if (o->ncand == OUT_CAND_MAX)
			break;
		memcpy(&o->cand[o->ncand].ss, ai->ai_addr, ai->ai_addrlen);
		o->cand[o->ncand].len = ai->ai_addrlen;
		o->ncand++;
	}
	if (o->ncand > 0) {
		req_connect_next(o);
		return;
	}
	if (why == NULL) {
		req_fail(o, OC_HOST_UNREACH, "no usable address");
		return;
	}
	snprintf(msg, sizeof(msg), "%s resolves to %s: %s", o->host, first, why);
	req_fail(o, OC_NOT_ALLOWED, msg);
}

static int
is_literal(const char *h)
{
	uint8_t a[16];

	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static void
res_done(struct eres *r)
{
	struct oreq *o = r->o;
	struct addrinfo *res = r->cb.ar_result;
	char why[300];
	int rc = gai_error(&r->cb);

	if (o != NULL) {
		o->res = NULL;
		if (rc != 0 || res == NULL) {
			snprintf(why, sizeof(why), "cannot resolve %s: %s", o->host,
			    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
			req_fail(o, OC_HOST_UNREACH, why);
		} else
			req_resolved(o, res, is_literal(o->host));
	}
	if (rc == 0 && res != NULL)
		freeaddrinfo(res);
	free(r);
}

static void
res_readable(struct ev_io *io, uint32_t events)
{
	struct eres *r;
	ssize_t n;

	(void)events;
	for (;;) {
		n = read(io->fd, &r, sizeof(r));
		if (n != (ssize_t)sizeof(r))
			return;		/* pointer writes are atomic: empty */
		nresolving--;
		res_done(r);
	}
}

/* Runs on a glibc notification thread: touch nothing but the pipe. */
static void
res_notify(union sigval sv)
{
	struct eres *r = sv.sival_ptr;
	ssize_t n;

	do
		n = write(res_pipe[1], &r, sizeof(r));
	while (n == -1 && errno == EINTR);
}

static int
req_resolve(struct oreq *o)
{
	struct gaicb *list[1];
	struct eres *r;
	int rc;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	snprintf(r->host, sizeof(r->host), "%s", o->host);
	snprintf(r->port, sizeof(r->port), "%u", o->port);
	r->hints.ai_family = AF_UNSPEC;
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_flags = AI_NUMERICSERV;
	r->cb.ar_name = r->host;
	r->cb.ar_service = r->port;
	r->cb.ar_request = &r->hints;
	r->sev.sigev_notify = SIGEV_THREAD;
	r->sev.sigev_notify_function = res_notify;
	r->sev.sigev_value.sival_ptr = r;
	r->o = o;
	list[0] = &r->cb;
	if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &r->sev)) != 0) {
		free(r);
		return -1;
	}
	nresolving++;
	o->res = r;
	return 0;
}

void
eout_request(struct eagent *a, const struct msg *m)
{
	struct oreq *o;
	const char *why;

	if ((o = calloc(1, sizeof(*o))) == NULL)
		return;
	o->request = m->request;
	o->a = a;
	o->cio.fd = -1;
	o->state = EO_RESOLVE;
	o->deadline = ev_now() + OUT_CONNECT_MS;
	snprintf(o->host, sizeof(o->host), "%s", m->dest_host);
	o->port = m->dest_port;
	snprintf(o->dest, sizeof(o->dest), strchr(o->host, ':') ? "[%s]:%u" :
	    "%s:%u", o->host, o->port);
	LIST_INSERT_HEAD(&reqs, o, entry);
	nreqs++;

	if (a->out_pol == NULL) {
		req_fail(o, OC_NOT_ALLOWED, "no outbound policy from this agent");
		return;
	}
	if (nreqs > OUT_PENDING_MAX || esess_full("outbound", 0)) {
		req_fail(o, OC_FAIL, "too many outbound sessions");
		return;
	}
	if (!outpol_valid_host(o->host)) {
		req_fail(o, OC_HOST_UNREACH, "not a host name or address");
		return;
	}
	if (!outpol_check_name(&a->out_pol->pol, o->host, o->port, &why)) {
		req_fail(o, OC_NOT_ALLOWED, why);
		return;
	}
	/* An address too: the resolver's threads take it apart. */
	if (nresolving >= OUT_RESOLVING_MAX) {
		req_fail(o, OC_FAIL, "too many name lookups in flight");
		return;
	}
	if (req_resolve(o) == -1)
		req_fail(o, OC_FAIL, "cannot start name lookup");
}

void
eout_policy(struct eagent *a, const struct msg *m)
{
	struct epol *p;
	struct msg r;
	char err[400];

	msg_init(&r, FT_OUT_POLICY_OK);
	msg_have(&r, FA_STATUS);
	if (!out_enabled) {
		/* The DMZ operator decides whether this host may connect
		 * out at all; without it the sandbox forbids connect(). */
		log_warn("agent %s: outbound policy refused: outbound sessions "
		    "are not enabled on this edge (--allow-outbound)", a->name);
		r.status = 1;
		msg_set_str(&r, FA_TEXT, "outbound sessions are not enabled on "
		    "this edge (--allow-outbound)");
		ectl_send(a, &r);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    outpol_parse(m->out_allow, &p->pol, err, sizeof(err)) == -1) {
		if (p == NULL)
			snprintf(err, sizeof(err), "out of memory");
		free(p);
		log_warn("agent %s: outbound policy refused: %s", a->name, err);
		r.status = 1;
		msg_set_str(&r, FA_TEXT, err);
		ectl_send(a, &r);
		return;
	}
	free(a->out_pol);
	a->out_pol = p;
	log_info("agent %s: outbound policy with %zu rules", a->name, p->pol.n);
	r.status = 0;
	ectl_send(a, &r);
}

void
eout_agent_lost(struct eagent *a)
{
	struct oreq *o, *next;

	for (o = LIST_FIRST(&reqs); o != NULL; o = next) {
		next = LIST_NEXT(o, entry);
		if (o->a == a) {
			o->a = NULL;
			req_fail(o, OC_FAIL, "agent lost");
		}
	}
	free(a->out_pol);
	a->out_pol = NULL;
}

int
eout_init(int enabled)
{
	out_enabled = enabled;
	/* glibc's resolver threads end through pthread_exit, which loads
	 * libgcc_s for unwinding on first use; inside the sandbox that load
	 * is denied (no file access, no executable mappings) and glibc
	 * aborts. Load it now, while the file system is open. */
	if (enabled && dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_GLOBAL) == NULL)
		log_warn("outbound: cannot preload libgcc_s.so.1: %s", dlerror());
	if (pipe2(res_pipe, O_CLOEXEC) == -1)
		return -1;
	if (fcntl(res_pipe[0], F_SETFL, O_NONBLOCK) == -1)
		return -1;
	ev_io_init(&res_io, res_pipe[0], res_readable);
	return ev_set(&res_io, EPOLLIN);
}

int
eout_busy(void)
{
	return !LIST_EMPTY(&reqs);
}

void
eout_tick(uint64_t now)
{
	struct oreq *o, *next;

	for (o = LIST_FIRST(&reqs); o != NULL; o = next) {
		next = LIST_NEXT(o, entry);
		if (now > o->deadline)
			req_fail(o, OC_TIMEOUT, o->state == EO_RESOLVE ?
			    "name lookup timed out" : "connect timed out");
	}
}

void
eout_shutdown(void)
{
	while (!LIST_EMPTY(&reqs))
		req_fail(LIST_FIRST(&reqs), OC_FAIL, "edge stopping");
	ev_del(&res_io);
}
