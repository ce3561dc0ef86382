/* edge_out.c - the edge's outward connections (edge_out.h), which the
 * dialler makes (edge_dial.c): the relay process's filter forbids
 * connect().
 *
 * Outbound: an agent asks on its control channel (OUT_REQ) for a TCP
 * connection to a destination outside. The dialler checks the agent's
 * policy on the name, resolves it, checks every address again (a name
 * cannot be made to resolve around the policy) and connects to the first
 * that passes and answers; the edge opens the session on one of the
 * agent's data links like any other (SESS_OPEN, kind outbound), or
 * answers OUT_FAIL.
 *
 * Active FTP: an agent asks (FTP_DIAL) for the data connection of one of
 * its FTP control sessions. The edge does not take the agent's word for
 * where it goes: to the partner's own address as the edge accepted the
 * control session, which must be the asking agent's, of a service that
 * declared active mode, and to a port from 1024; from the address the
 * partner reached. The connection becomes a session of that agent
 * (SESS_OPEN, kind FTP active), or the agent hears FTP_DIAL_FAIL. */
#include "edge/edge_out.h"
#include "edge/edge_ban.h"
#include "edge/edge_ctl.h"
#include "edge/edge_ftp.h"
#include "edge/edge_handover.h"
#include "edge/edge_sess.h"
#include "common/cidr.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/outpol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_CONNECT_MS		((DIAL_SECS + 1) * 1000)	/* the dialler's
					 * time, and a second to answer */
#define OUT_PENDING_MAX		4096	/* requests not yet connected */

/* SOCKS reply codes (RFC 1928), which OUT_FAIL's OUT_CODE carries. */
enum { OC_OK = 0, OC_FAIL = 1, OC_NOT_ALLOWED = 2, OC_NET_UNREACH = 3,
    OC_HOST_UNREACH = 4, OC_REFUSED = 5, OC_TIMEOUT = 6 };

/* An agent's pushed policy, as it came (it parsed): the dialler checks
 * it. */
struct epol {
	char		 text[MSG_POLICY_MAX];
};

/* A request until it is connected (then it is a session) or fails. */
struct oreq {
	uint64_t	 id;		/* ours, for the dialler */
	/* The session it becomes: kind SK_OUTBOUND or SK_FTP_ACTIVE, the
	 * agent's request, the agent (NULL once lost); active FTP: the
	 * control session, and svc its service. */
	struct esess_req q;
	char		 dest[MSG_HOST_MAX + 16];
	char		 svc[MSG_NAME_MAX];
	uint64_t	 deadline;
	LIST_ENTRY(oreq) entry;
};

static int out_enabled;
static int out_port20;
static LIST_HEAD(, oreq) reqs = LIST_HEAD_INITIALIZER(reqs);
static size_t nreqs;
static uint64_t next_id = 1;
static struct ev_io dial_io;	/* our end of the dialler's socket pair */
/* The request being made: struct dial_req is large, not on the event
 * loop's stack. */
static struct dial_req dreq;

static void
req_free(struct oreq *o)
{
	LIST_REMOVE(o, entry);
	nreqs--;
	free(o);
}

/* Refuse or give up: OUT_FAIL or FTP_DIAL_FAIL to the agent (if it is
 * still there). */
static void
req_fail(struct oreq *o, uint8_t code, const char *why)
{
	struct msg m;

	log_warn("%s request %llu %s agent=%s dest=%s: %s",
	    o->q.kind == SK_FTP_ACTIVE ? "ftp active" : "outbound",
	    (unsigned long long)o->q.request,
	    code == OC_NOT_ALLOWED ? "refused" : "failed",
	    o->q.agent != NULL ? o->q.agent->name : "-", o->dest, why);
	if (o->q.kind == SK_FTP_ACTIVE)
		eftp_active_failed();
	if (o->q.agent != NULL) {
		msg_init(&m, o->q.kind == SK_FTP_ACTIVE ? FT_FTP_DIAL_FAIL :
		    FT_OUT_FAIL);
		msg_set_int(&m, FA_REQUEST, o->q.request);
		msg_set_int(&m, FA_OUT_CODE, code);
		msg_set_str(&m, FA_TEXT, why);
		ectl_send(o->q.agent, &m);
	}
	req_free(o);
}

static uint8_t
code_for_errno(int err)
{
	switch (err) {
	case EACCES: return OC_NOT_ALLOWED;	/* a policy, or the operator */
	case ECONNREFUSED: return OC_REFUSED;
	case ENETUNREACH: return OC_NET_UNREACH;
	case EHOSTUNREACH: return OC_HOST_UNREACH;
	case ETIMEDOUT: return OC_TIMEOUT;
	default: return OC_FAIL;
	}
}

/* The dialler's answer r: connected (fd, taken, only when r->err is 0),
 * a session of the agent's on one of its data links; or not. */
static void
req_answer(const struct dial_rep *r, int fd)
{
	struct net_addr dest;
	struct oreq *o;
	const char *fail = NULL;
	char why[160];

	LIST_FOREACH(o, &reqs, entry)
		if (o->id == r->id)
			break;
	dest.len = sizeof(dest.ss);
	/* No request: it timed out, nobody waits. */
	if (o == NULL || r->err != 0 || fd == -1 || getpeername(fd,
	    (struct sockaddr *)&dest.ss, &dest.len) == -1) {
		if (fd != -1)
			close(fd);
		if (o != NULL)
			req_fail(o, code_for_errno(r->err), fd == -1 ||
			    r->err != 0 ? r->text : "connected, then gone");
		return;
	}
	(void)net_set_nodelay(fd);
	if (o->q.kind == SK_FTP_ACTIVE) {
		if (eftp_data_start(fd, &dest, &o->q, why, sizeof(why)) == -1)
			fail = why;
	} else if (esess_full("outbound", 0)) {
		/* Checked when asked too; up to OUT_PENDING_MAX were asked
		 * meanwhile. */
		close(fd);
		fail = "too many sessions";
	} else
		esess_start(fd, (struct sockaddr *)&dest.ss, NULL, &o->q);
	if (fail != NULL)
		req_fail(o, OC_FAIL, fail);
	else
		req_free(o);
}

/* The dialler's answers, one message each, with the connected socket
 * (SCM_RIGHTS) when it connected. */
static void
dial_readable(struct ev_io *io, uint32_t events)
{
	union dial_cmsg cm;
	struct dial_rep r;
	struct iovec iov = { &r, sizeof(r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t n;
	int fd;

	(void)events;
	for (;;) {
		mh.msg_control = &cm;
		mh.msg_controllen = sizeof(cm);
		n = recvmsg(io->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			log_fatal("the dialler process is gone");
		fd = -1;
		if ((c = CMSG_FIRSTHDR(&mh)) != NULL && c->cmsg_level ==
		    SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(fd));
		if (n == (ssize_t)sizeof(r)) {
			r.text[sizeof(r.text) - 1] = '\0';
			req_answer(&r, fd);
		} else if (fd != -1)
			close(fd);
	}
}

/* A request of agent a to host:port, listed until it ends, and dreq
 * for it. */
static struct oreq *
req_new(struct eagent *a, uint64_t request, uint8_t kind, const char *host,
    uint16_t port)
{
	struct oreq *o;

	if ((o = calloc(1, sizeof(*o))) == NULL)
		return NULL;
	o->id = next_id++;
	o->q.kind = kind;
	o->q.request = request;
	o->q.agent = a;
	o->q.svc = o->svc;
	o->deadline = ev_now() + OUT_CONNECT_MS;
	snprintf(o->dest, sizeof(o->dest), strchr(host, ':') ? "[%s]:%u" :
	    "%s:%u", host, port);
	LIST_INSERT_HEAD(&reqs, o, entry);
	nreqs++;
	memset(&dreq, 0, sizeof(dreq));
	dreq.id = o->id;
	dreq.why = kind == SK_FTP_ACTIVE ? DW_ACTIVE_FTP : DW_OUTBOUND;
	dreq.port = port;
	snprintf(dreq.host, sizeof(dreq.host), "%s", host);
	return o;
}

/* Send dreq. 0, or -1 (the dialler takes no more now). */
static int
dial_send(void)
{
	return send(dial_io.fd, &dreq, sizeof(dreq), MSG_DONTWAIT |
	    MSG_NOSIGNAL) == (ssize_t)sizeof(dreq) ? 0 : -1;
}

/* A control session lives on while its client is banned (unless the
 * ban cut it): no new connection toward that client. */
static int
banned(const char *ip)
{
	struct net_addr a;
	uint8_t a16[16];

	if (net_from_ip(ip, 0, &a) == -1)
		return 1;
	cidr_sa16((struct sockaddr *)&a.ss, a16);
	return eban_match(a16);
}

void
eout_request(struct eagent *a, const struct msg *m)
{
	struct oreq *o;

	if ((o = req_new(a, m->request, SK_OUTBOUND, m->dest_host,
	    m->dest_port)) == NULL)
		return;
	if (eho_releasing())
		req_fail(o, OC_FAIL, "the edge is handing over; try again");
	else if (a->out_pol == NULL)
		req_fail(o, OC_NOT_ALLOWED, "no outbound policy from this "
		    "agent");
	else if (nreqs > OUT_PENDING_MAX || esess_full("outbound", 0))
		req_fail(o, OC_FAIL, "too many outbound sessions");
	else if (!outpol_valid_host(m->dest_host))
		req_fail(o, OC_HOST_UNREACH, "not a host name or address");
	else {
		snprintf(dreq.policy, sizeof(dreq.policy), "%s",
		    a->out_pol->text);
		if (dial_send() == -1)
			req_fail(o, OC_FAIL, "the dialler takes no request "
			    "now");
	}
}

void
eout_ftp_dial(struct eagent *a, const struct msg *m)
{
	struct esess_peer peer;
	struct net_addr src;
	struct oreq *o;

	if (esess_ftp_ports(m->ftp_ctl, a, &peer) == NULL &&
	    eho_ftp_ports(m->ftp_ctl, a, &peer) == NULL)
		peer.ip = peer.svc = peer.lip = "";
	if ((o = req_new(a, m->request, SK_FTP_ACTIVE, peer.ip,
	    m->dest_port)) == NULL)
		return;
	o->q.ftp_ctl = m->ftp_ctl;
	snprintf(o->svc, sizeof(o->svc), "%s", peer.svc);
	/* From the address the partner reached (and port 20 if the
	 * operator allows it, for clients that check the source port). */
	if (net_from_ip(peer.lip, out_port20 ? 20 : 0, &src) == 0)
		memcpy(&dreq.src, &src.ss, sizeof(dreq.src));
	if (peer.ip[0] == '\0')
		req_fail(o, OC_NOT_ALLOWED, "not an FTP control session of "
		    "this agent");
	else if (!eftp_active(peer.svc))
		req_fail(o, OC_NOT_ALLOWED, "the service did not declare "
		    "active mode");
	else if (m->dest_port < 1024)
		req_fail(o, OC_NOT_ALLOWED, "port below 1024");
	else if (banned(peer.ip))
		req_fail(o, OC_NOT_ALLOWED, "the client is banned");
	else if (nreqs > OUT_PENDING_MAX || esess_full(o->svc, 0))
		req_fail(o, OC_FAIL, "too many sessions");
	else if (eho_releasing())
		req_fail(o, OC_FAIL, "the edge is handing over; try again");
	else if (dial_send() == -1)
		req_fail(o, OC_FAIL, "the dialler takes no request now");
}

void
eout_policy(struct eagent *a, const struct msg *m)
{
	static struct outpol pol;	/* only to see that it parses */
	struct epol *p = NULL;
	struct msg r;
	char err[400];

	msg_init(&r, FT_OUT_POLICY_OK);
	msg_set_int(&r, FA_STATUS, 1);
	/* The DMZ operator decides whether this host may connect out at
	 * all; without it the dialler refuses. */
	if (!out_enabled)
		snprintf(err, sizeof(err), "outbound sessions are not enabled "
		    "on this edge (--allow-outbound)");
	else if (outpol_parse(m->out_allow, &pol, err, sizeof(err)) == 0 &&
	    (p = calloc(1, sizeof(*p))) == NULL)
		snprintf(err, sizeof(err), "out of memory");
	if (p == NULL) {
		log_warn("agent %s: outbound policy refused: %s", a->name, err);
		msg_set_str(&r, FA_TEXT, err);
		ectl_send(a, &r);
		return;
	}
	snprintf(p->text, sizeof(p->text), "%s", m->out_allow);
	free(a->out_pol);
	a->out_pol = p;
	log_info("agent %s: outbound policy with %zu rules", a->name, pol.n);
	r.status = 0;
	ectl_send(a, &r);
}

void
eout_agent_lost(struct eagent *a)
{
	struct oreq *o, *next;

	for (o = LIST_FIRST(&reqs); o != NULL; o = next) {
		next = LIST_NEXT(o, entry);
		if (o->q.agent == a) {
			o->q.agent = NULL;
			req_fail(o, OC_FAIL, "agent lost");
		}
	}
	free(a->out_pol);
	a->out_pol = NULL;
}

int
eout_init(const struct dial_conf *c, char *err, size_t errlen)
{
	int fd;

	out_enabled = c->outbound;
	out_port20 = c->port20;
	if ((fd = dial_fork(c, err, errlen)) == -1)
		return -1;
	ev_io_init(&dial_io, fd, dial_readable);
	if (ev_set(&dial_io, EPOLLIN) == -1) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	return 0;
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
			req_fail(o, OC_TIMEOUT, "no connection in time");
	}
}

void
eout_shutdown(void)
{
	while (!LIST_EMPTY(&reqs))
		req_fail(LIST_FIRST(&reqs), OC_FAIL, "edge stopping");
}
