/* edge_out.c - outbound sessions. An agent asks, on a data link it
 * opened from inside, for a TCP connection to a destination outside;
 * the edge checks that agent's policy, resolves the name, checks every
 * resolved address again (a name cannot be made to resolve around the
 * policy), connects, and relays.
 *
 * This is the only file in the edge that calls connect(), and it calls it
 * only with an address that passed outpol_check_addr. Names are resolved
 * with getaddrinfo_a: glibc's helper threads do the blocking lookup and
 * a notification thread writes the finished request's pointer into a
 * pipe that the event loop reads, so the loop never waits on DNS. */
#include "edge/edge.h"
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
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define OUT_CONNECT_MS		10000	/* resolve + connect */
#define OUT_RESOLVING_MAX	64	/* lookups in flight */
#define OUT_SESSIONS_MAX	4096
#define OUT_CAND_MAX		8	/* addresses tried per session */

/* SOCKS reply codes (RFC 1928), which OUT_RESULT's OUT_CODE carries. */
enum { OC_OK = 0, OC_FAIL = 1, OC_NOT_ALLOWED = 2, OC_NET_UNREACH = 3,
    OC_HOST_UNREACH = 4, OC_REFUSED = 5, OC_TIMEOUT = 6 };

/* A pushed policy, shared by the agent's control connection and the
 * sessions it started (which may outlive it). */
struct epol {
	unsigned	 refs;
	struct outpol	 pol;
};

enum eout_state { EO_RESOLVE, EO_CONNECT, EO_RELAY };

struct eout;

/* One getaddrinfo_a request. Only the loop thread touches o; the
 * notification thread only passes the pointer through the pipe. */
struct eres {
	struct gaicb	 cb;
	struct addrinfo	 hints;
	struct sigevent	 sev;
	char		 host[MSG_HOST_MAX];
	char		 port[8];
	struct eout	*o;		/* NULL once nobody waits for it */
};

struct eout {
	struct ev_io	 cio;		/* the destination while connecting */
	uint64_t	 id;
	enum eout_state	 state;
	struct econn	*link;		/* the data link, until the relay */
	struct epol	*pol;
	char		 agent[MSG_NAME_MAX];
	char		 host[MSG_HOST_MAX];
	uint16_t	 port;
	char		 dest[MSG_HOST_MAX + 16];
	struct eres	*res;
	struct net_addr	 cand[OUT_CAND_MAX];
	size_t		 ncand;
	size_t		 icand;
	int		 last_err;
	char		 addr[NET_ADDRSTR];
	uint64_t	 t_start;
	uint64_t	 deadline;
	size_t		 prime_len;
	struct relay	 relay;
	struct eout	*prev, *next;
};

static int out_enabled;
static int res_pipe[2] = { -1, -1 };
static struct ev_io res_io;
static size_t nresolving;
static struct eout *eouts;
static size_t neouts;
static uint64_t out_next_id = 1;

void
out_pol_unref(struct epol *p)
{
	if (p != NULL && --p->refs == 0)
		free(p);
}

static void
eout_free(struct eout *o)
{
	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		eouts = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	neouts--;
	if (o->res != NULL)
		o->res->o = NULL;	/* res_done frees it when it finishes */
	out_pol_unref(o->pol);
	free(o);
}

static void
eout_log_end(struct eout *o, uint64_t out, uint64_t in, const char *reason)
{
	uint64_t ms = ev_now_update() - o->t_start;

	log_info("outbound %llu closed agent=%s dest=%s addr=%s bytes_out=%llu "
	    "bytes_in=%llu duration=%llu.%03llus reason=%s",
	    (unsigned long long)o->id, o->agent, o->dest,
	    o->addr[0] ? o->addr : "-", (unsigned long long)out,
	    (unsigned long long)in, (unsigned long long)(ms / 1000),
	    (unsigned long long)(ms % 1000), reason);
}

/* Refuse or give up before the relay: answer OUT_RESULT on the data link
 * (when it is still there), close everything, log. */
static void
eout_fail(struct eout *o, uint8_t code, const char *why)
{
	struct msg m;

	if (o->link != NULL) {
		msg_init(&m, FT_OUT_RESULT);
		m.status = 1;
		m.out_code = code;
		m.have |= FA_BIT(FA_STATUS) | FA_BIT(FA_OUT_CODE);
		msg_set_str(&m, FA_TEXT, why);
		(void)fconn_send(&o->link->fc, &m);
		o->link->out = NULL;
		econn_free(o->link);
		o->link = NULL;
	}
	if (o->state == EO_CONNECT && o->cio.fd != -1) {
		ev_del(&o->cio);
		close(o->cio.fd);
		o->cio.fd = -1;
	}
	log_warn("outbound %llu %s agent=%s dest=%s: %s", (unsigned long long)o->id,
	    code == OC_NOT_ALLOWED ? "refused" : "failed", o->agent, o->dest, why);
	eout_log_end(o, 0, 0, code == OC_NOT_ALLOWED ? "refused" : "failed");
	eout_free(o);
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

static void
out_relay_done(struct relay *r, int first, const char *err)
{
	struct eout *o = r->arg;
	char reason[300];
	uint64_t out = relay_bytes(r, 1);
	uint64_t in = relay_bytes(r, 0) >= o->prime_len ?
	    relay_bytes(r, 0) - o->prime_len : 0;

	/* Side 0 is the destination, side 1 the data link. */
	if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "destination" : "data link", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "destination-closed" : "agent-closed");
	relay_free(r, err != NULL);
	eout_log_end(o, out, in, reason);
	eout_free(o);
}

/* Connected to the destination: say so, and relay. */
static void
eout_joined(struct eout *o, int fd)
{
	struct econn *link = o->link;
	struct buf prime;
	struct msg m;
	SSL *ssl;
	int lfd;

	msg_init(&m, FT_OUT_RESULT);
	m.status = 0;
	m.out_code = OC_OK;
	m.have |= FA_BIT(FA_STATUS) | FA_BIT(FA_OUT_CODE);
	msg_set_str(&m, FA_DEST_ADDR, o->addr);
	if (fconn_send(&link->fc, &m) == -1) {
		close(fd);
		o->link = NULL;
		link->out = NULL;
		econn_free(link);
		log_warn("outbound %llu: data link failed", (unsigned long long)o->id);
		eout_log_end(o, 0, 0, "failed");
		eout_free(o);
		return;
	}
	/* Whatever fconn_send could not write yet goes out first. */
	fconn_detach(&link->fc, &lfd, &ssl, &prime);
	link->out = NULL;
	econn_free(link);
	o->link = NULL;
	o->prime_len = buf_len(&prime);
	o->state = EO_RELAY;
	log_info("outbound %llu connected agent=%s dest=%s addr=%s",
	    (unsigned long long)o->id, o->agent, o->dest, o->addr);
	(void)relay_start(&o->relay, fd, NULL, lfd, ssl, &prime, 0,
	    out_relay_done, o);
}

static void eout_connect_next(struct eout *o);

static void
eout_connect_io(struct ev_io *io, uint32_t events)
{
	struct eout *o = (struct eout *)(void *)io;
	int err, fd = io->fd;

	(void)events;
	err = net_sock_error(fd);
	ev_del(io);
	o->cio.fd = -1;
	if (err != 0) {
		close(fd);
		log_debug("outbound %llu: %s: %s", (unsigned long long)o->id,
		    o->addr, strerror(err));
		o->last_err = err;
		eout_connect_next(o);
		return;
	}
	(void)net_set_nodelay(fd);
	eout_joined(o, fd);
}

/* Try the allowed addresses in the resolver's order. */
static void
eout_connect_next(struct eout *o)
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
		/* The address passed outpol_check_addr in eout_resolved. */
		if (connect(fd, (struct sockaddr *)&a->ss, a->len) == -1 &&
		    errno != EINPROGRESS) {
			o->last_err = errno;
			close(fd);
			continue;
		}
		ev_io_init(&o->cio, fd, eout_connect_io);
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
	eout_fail(o, code_for_errno(o->last_err), why);
}

/* Keep the resolved addresses the policy allows, then connect. */
static void
eout_resolved(struct eout *o, struct addrinfo *res, int literal)
{
	struct addrinfo *ai;
	const char *why = NULL, *w;
	char msg[400], first[NET_ADDRSTR] = "";

	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(o->cand[0].ss) ||
		    (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
			continue;
		if (!outpol_check_addr(&o->pol->pol, literal ? NULL : o->host,
		    ai->ai_addr, &w)) {
			if (why == NULL) {
				why = w;
				net_fmt(ai->ai_addr, first, sizeof(first));
			}
			log_debug("outbound %llu: %s not allowed: %s",
			    (unsigned long long)o->id, o->dest, w);
			continue;
		}
		if (o->ncand == OUT_CAND_MAX)
			break;
		memcpy(&o->cand[o->ncand].ss, ai->ai_addr, ai->ai_addrlen);
		o->cand[o->ncand].len = ai->ai_addrlen;
		o->ncand++;
	}
	if (o->ncand > 0) {
		eout_connect_next(o);
		return;
	}
	if (why == NULL) {
		eout_fail(o, OC_HOST_UNREACH, "no usable address");
		return;
	}
	snprintf(msg, sizeof(msg), "%s resolves to %s: %s", o->host, first, why);
	eout_fail(o, OC_NOT_ALLOWED, msg);
}

static void
res_done(struct eres *r)
{
	struct eout *o = r->o;
	struct addrinfo *res = r->cb.ar_result;
	char why[300];
	int rc = gai_error(&r->cb);

	if (o != NULL) {
		o->res = NULL;
		if (rc != 0 || res == NULL) {
			snprintf(why, sizeof(why), "cannot resolve %s: %s", o->host,
			    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
			eout_fail(o, OC_HOST_UNREACH, why);
		} else
			eout_resolved(o, res, 0);
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
eout_resolve(struct eout *o)
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

static int
is_literal(const char *h)
{
	uint8_t a[16];

	return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

void
out_open(struct econn *c, const struct msg *m)
{
	struct econn *agent = ctl_agent_by_token(m->secret);
	struct addrinfo hints, *res = NULL;
	struct eout *o;
	const char *why;
	char port[8];

	if (neouts >= OUT_SESSIONS_MAX || (o = calloc(1, sizeof(*o))) == NULL) {
		log_warn("outbound data link from %s refused: too many sessions",
		    c->peer);
		fconn_send_error(&c->fc, "too many outbound sessions");
		econn_free(c);
		return;
	}
	o->id = out_next_id++;
	o->cio.fd = -1;
	o->state = EO_RESOLVE;
	o->t_start = ev_now();
	o->deadline = o->t_start + OUT_CONNECT_MS;
	o->link = c;
	snprintf(o->host, sizeof(o->host), "%s", m->dest_host);
	o->port = m->dest_port;
	snprintf(o->dest, sizeof(o->dest), strchr(o->host, ':') ? "[%s]:%u" :
	    "%s:%u", o->host, o->port);
	snprintf(o->agent, sizeof(o->agent), "%s", agent ? agent->name : "-");
	c->out = o;
	o->next = eouts;
	if (eouts != NULL)
		eouts->prev = o;
	eouts = o;
	neouts++;

	if (agent == NULL) {
		eout_fail(o, OC_NOT_ALLOWED, "no agent with this outbound token");
		return;
	}
	o->pol = agent->out_pol;
	o->pol->refs++;
	if (!outpol_check_name(&o->pol->pol, o->host, o->port, &why)) {
		eout_fail(o, OC_NOT_ALLOWED, why);
		return;
	}
	if (is_literal(o->host)) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
		snprintf(port, sizeof(port), "%u", o->port);
		if (getaddrinfo(o->host, port, &hints, &res) != 0 || res == NULL) {
			eout_fail(o, OC_HOST_UNREACH, "bad address");
			return;
		}
		eout_resolved(o, res, 1);
		freeaddrinfo(res);
		return;
	}
	if (nresolving >= OUT_RESOLVING_MAX) {
		eout_fail(o, OC_FAIL, "too many name lookups in flight");
		return;
	}
	if (eout_resolve(o) == -1)
		eout_fail(o, OC_FAIL, "cannot start name lookup");
}

void
out_link_lost(struct econn *c)
{
	struct eout *o = c->out;

	if (o == NULL)
		return;
	c->out = NULL;
	o->link = NULL;
	if (o->state == EO_CONNECT && o->cio.fd != -1) {
		ev_del(&o->cio);
		close(o->cio.fd);
	}
	eout_log_end(o, 0, 0, "agent-closed");
	eout_free(o);
}

void
out_policy(struct econn *agent, const struct msg *m)
{
	struct epol *p;
	struct msg r;
	char err[400];
	static const uint8_t zero[FRAME_SECRET];

	msg_init(&r, FT_OUT_POLICY_OK);
	r.have |= FA_BIT(FA_STATUS);
	if (!out_enabled) {
		/* The DMZ operator decides whether this host may connect
		 * out at all; without it the sandbox forbids connect(). */
		log_warn("agent %s: outbound policy refused: outbound sessions "
		    "are not enabled on this edge (--allow-outbound)", agent->name);
		r.status = 1;
		msg_set_str(&r, FA_TEXT, "outbound sessions are not enabled on "
		    "this edge (--allow-outbound)");
		(void)fconn_send(&agent->fc, &r);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    outpol_parse(m->out_allow, &p->pol, err, sizeof(err)) == -1) {
		if (p == NULL)
			snprintf(err, sizeof(err), "out of memory");
		free(p);
		log_warn("agent %s: outbound policy refused: %s", agent->name, err);
		r.status = 1;
		msg_set_str(&r, FA_TEXT, err);
		(void)fconn_send(&agent->fc, &r);
		return;
	}
	p->refs = 1;
	out_pol_unref(agent->out_pol);
	agent->out_pol = p;
	/* One token per control connection: outbound links name it, which
	 * binds each session to the policy of the agent that asked. */
	if (CRYPTO_memcmp(agent->out_token, zero, sizeof(zero)) == 0 &&
	    RAND_bytes(agent->out_token, sizeof(agent->out_token)) != 1)
		log_fatal("RAND_bytes failed");
	r.status = 0;
	memcpy(r.secret, agent->out_token, sizeof(r.secret));
	r.have |= FA_BIT(FA_SECRET);
	log_info("agent %s: outbound policy with %zu rules", agent->name,
	    p->pol.n);
	(void)fconn_send(&agent->fc, &r);
	OPENSSL_cleanse(r.secret, sizeof(r.secret));
}

int
out_init(int enabled)
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

void
out_tick(uint64_t now)
{
	struct eout *o, *next;

	for (o = eouts; o != NULL; o = next) {
		next = o->next;
		if (o->state != EO_RELAY && now > o->deadline)
			eout_fail(o, OC_TIMEOUT, o->state == EO_RESOLVE ?
			    "name lookup timed out" : "connect timed out");
	}
}

void
out_shutdown(void)
{
	struct eout *o;

	while ((o = eouts) != NULL) {
		if (o->state == EO_RELAY) {
			uint64_t out = relay_bytes(&o->relay, 1);
			uint64_t in = relay_bytes(&o->relay, 0) >= o->prime_len ?
			    relay_bytes(&o->relay, 0) - o->prime_len : 0;
			relay_free(&o->relay, 1);
			eout_log_end(o, out, in, "edge-stopping");
			eout_free(o);
		} else
			eout_fail(o, OC_FAIL, "edge stopping");
	}
	ev_del(&res_io);
}
