/* agent_ftp.c - FTP services on the agent (docs/ftp.md).
 *
 * Control sessions. Every control session of an FTP service is registered
 * here once its backend answers, with its client address and the backend
 * that holds it; its passive slice (the backend's share of the service's
 * passive range) has gone to the edge in FTP_PORTS already. For plain FTP
 * (protocol = ftp) the session's inner side is a filter over the backend
 * socket, a pump endpoint like any other: it reads the control channel
 * line by line (ftp_filter.c, ftp_line.c), rewrites 227 and 229 replies to the public
 * address and a port of the backend's slice, and answers LPRT and LPSV
 * itself with 502, PORT and EPRT too unless the service takes active mode
 * (below). After AUTH and a 234 reply the channel is TLS: the filter
 * passes bytes unchanged from then on. For implicit FTPS (protocol =
 * ftps) the inner side is the backend socket itself.
 *
 * Data sessions. The edge opens a passive data connection naming the
 * control session it matched and the passive port. A port the filter
 * handed out names its backend port and its control session; any other
 * port of a TLS session's slice is the backend's own port (the backend
 * announces the public range itself, docs/ftp.md). Anything else is
 * refused.
 *
 * Active mode (active = yes). A PORT or EPRT naming the client's own
 * address (as the edge saw it) and a port from 1024 is rewritten to name
 * a listener of the agent's, on the address the backend sees it from;
 * anything else never reaches the backend: the client gets a 5xx reply,
 * the log a line. When the backend connects there, the agent asks the
 * edge (FTP_DIAL) to dial the client's port; the edge checks the address
 * itself, and the connection it makes comes back as a session (SESS_OPEN,
 * kind FTP active) that takes the backend's connection. If the edge
 * cannot, the backend's connection is reset and the backend tells the
 * client.
 *
 * This file keeps the registry, the port table and the answers from the
 * edge; ftp_filter.c is the filter, with its memory bound. */
#include "agent/agent_ftp.h"
#include "agent/agent_edge.h"
#include "agent/ftp_filter.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/psock.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define POOL_STALE_MS	60000	/* a handed-out port not used by then is free */
#define ACT_WAIT_MS	30000	/* the edge's answer to FTP_DIAL, at most */

/* The port table of one FTP service: which public port was handed to
 * which control session, for which backend port. */
struct pool_ent {
	struct aftp	*owner;
	uint16_t	 bport;
	uint64_t	 at;
};

struct pool {
	char		 svc[MSG_NAME_MAX];
	uint16_t	 pmin, pmax;
	struct pool_ent	*e;
	struct pool	*next;
};

static struct aftp *ctls;
static struct pool *pools;
static uint64_t act_next;	/* FTP_DIAL requests sent */

uint64_t
aftp_request_new(void)
{
	return ++act_next;
}

/* --- configuration and the service definition ---------------------------- */

void
aftp_svc_msg(const struct cfg_service *s, struct msg *m)
{
	if (s->proto == SVC_TCP)
		return;
	msg_set_str(m, FA_PROTOCOL, s->proto == SVC_FTP ? "ftp" : "ftps");
	if (s->active)
		msg_set_int(m, FA_FTP_ACTIVE, 1);
	m->pasv_min = s->pasv_min;
	m->pasv_max = s->pasv_max;
	msg_have(m, FA_PASV_MIN);
	msg_have(m, FA_PASV_MAX);
}

static void
ports_msg(uint64_t id, uint16_t pmin, uint16_t pmax, struct msg *m)
{
	msg_init(m, FT_FTP_PORTS);
	msg_set_int(m, FA_SESSION, id);
	msg_set_int(m, FA_PASV_MIN, pmin);
	msg_set_int(m, FA_PASV_MAX, pmax);
}

void
aftp_ports_msg(uint64_t id, const struct cfg_backend *b, struct msg *m)
{
	ports_msg(id, b->pasv_min, b->pasv_max, m);
}

/* --- the port table ---------------------------------------------------- */

static struct pool *
pool_get(const char *svc, uint16_t pmin, uint16_t pmax)
{
	struct pool *p;
	size_t n = (size_t)pmax - pmin + 1;

	for (p = pools; p != NULL; p = p->next)
		if (strcmp(p->svc, svc) == 0)
			break;
	if (p != NULL && p->pmin == pmin && p->pmax == pmax)
		return p;
	if (p == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return NULL;
		snprintf(p->svc, sizeof(p->svc), "%s", svc);
		p->next = pools;
		pools = p;
	}
	/* New, or the range changed on reload: start afresh. */
	free(p->e);
	if ((p->e = calloc(n, sizeof(*p->e))) == NULL) {
		p->pmin = p->pmax = 0;
		return NULL;
	}
	p->pmin = pmin;
	p->pmax = pmax;
	return p;
}

static struct pool *
pool_find(const char *svc)
{
	struct pool *p;

	for (p = pools; p != NULL; p = p->next)
		if (strcmp(p->svc, svc) == 0 && p->e != NULL)
			return p;
	return NULL;
}

static int
ent_free(const struct pool_ent *e, uint64_t now)
{
	return e->owner == NULL || now - e->at > POOL_STALE_MS;
}

/* Hand out a public port of f's slice for backend port bport: bport
 * itself when it lies in the slice (the backend announces the public
 * range), else the next free one. 0 if the slice is all taken. */
uint16_t
aftp_port_take(struct aftp *f, uint16_t bport)
{
	struct pool *p = pool_find(f->svc);
	uint64_t now = ev_now();
	size_t n, i, k, start;
	struct pool_ent *e;

	if (p == NULL || f->pmin < p->pmin || f->pmax > p->pmax)
		return 0;
	n = (size_t)f->pmax - f->pmin + 1;
	if (bport >= f->pmin && bport <= f->pmax)
		start = (size_t)bport - f->pmin;
	else
		start = (size_t)(now + f->id) % n;	/* spread the picks */
	for (k = 0; k < n; k++) {
		i = (start + k) % n;
		e = &p->e[f->pmin - p->pmin + i];
		if (ent_free(e, now)) {
			e->owner = f;
			e->bport = bport;
			e->at = now;
			return (uint16_t)(f->pmin + i);
		}
	}
	return 0;
}

static void
pool_release_owner(struct aftp *f)
{
	struct pool *p = pool_find(f->svc);
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < (size_t)p->pmax - p->pmin + 1; i++)
		if (p->e[i].owner == f)
			p->e[i].owner = NULL;
}

/* --- control sessions ---------------------------------------------------- */

struct aftp *
aftp_ctl_join(struct aedge *e, uint64_t id, const struct cfg_service *svc,
    const struct cfg_backend *b, const char *client_ip, int fd,
    struct psock *sock, struct pend **inner, char *why, size_t whylen)
{
	struct aftp *f;

	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    pool_get(svc->name, svc->pasv_min, svc->pasv_max) == NULL) {
		free(f);
		snprintf(why, whylen, "ftp: out of memory");
		return NULL;
	}
	f->edge = e;
	f->id = id;
	snprintf(f->svc, sizeof(f->svc), "%s", svc->name);
	snprintf(f->ip, sizeof(f->ip), "%s", client_ip);
	f->backend = b->addr;
	snprintf(f->backend_str, sizeof(f->backend_str), "%s", b->str);
	f->pmin = b->pasv_min;
	f->pmax = b->pasv_max;
	memcpy(f->public_ip, svc->public_ip, sizeof(f->public_ip));
	f->tls = svc->proto == SVC_FTPS;
	f->live = 1;
	f->active = svc->active;
	f->lio.fd = -1;
	f->act_fd = -1;
	if (svc->proto == SVC_FTP) {
		ftpf_init(f, fd, inner);
	} else {
		f->bio.fd = -1;
		psock_init(sock, fd, 0);
		*inner = &sock->e;
	}
	f->next = ctls;
	if (ctls != NULL)
		ctls->prev = f;
	ctls = f;
	return f;
}

void
aftp_ctl_end(struct aftp *f)
{
	if (f == NULL)
		return;
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		ctls = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	pool_release_owner(f);
	ftpf_active_stop(f);
	if (f->bio.fd != -1) {
		/* Never attached to a pump (the session failed first). */
		ev_del(&f->bio);
		close(f->bio.fd);
	}
	free(f);
}

/* --- data sessions ------------------------------------------------------- */

void
aftp_addr_port(struct net_addr *a, uint16_t port)
{
	if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
}

int
aftp_data_target(struct aedge *e, const struct msg *m, struct net_addr *a,
    char *backend, size_t backendlen, char *why, size_t whylen)
{
	struct pool *p = pool_find(m->service);
	struct pool_ent *pe;
	struct aftp *f, *o;
	uint16_t port = m->ftp_port;

	if (!(m->have & FA_BIT(FA_FTP_PORT)) || m->ftp_ctl == 0 || port == 0) {
		snprintf(why, whylen, "ftp data: no control session or port");
		return -1;
	}
	/* A port the filter handed out: its owner and backend port. */
	if (p != NULL && port >= p->pmin && port <= p->pmax) {
		pe = &p->e[port - p->pmin];
		o = pe->owner;
		if (!ent_free(pe, ev_now()) && o->live && o->edge == e &&
		    strcmp(o->ip, m->client_addr) == 0) {
			*a = o->backend;
			aftp_addr_port(a, pe->bport);
			snprintf(backend, backendlen, "%s port %u (control session "
			    "%llu)", o->backend_str, pe->bport,
			    (unsigned long long)o->id);
			pe->owner = NULL;	/* one data connection per PASV */
			return 0;
		}
	}
	for (f = ctls; f != NULL; f = f->next)
		if (f->live && f->edge == e && f->id == m->ftp_ctl)
			break;
	if (f == NULL || !f->tls) {
		/* The edge picks among the client's control sessions whose
		 * slice holds the port; one it picked may not have joined
		 * here yet. Over TLS any of them names the same backend. */
		for (o = ctls; o != NULL; o = o->next)
			if (o->live && o->tls && o->edge == e &&
			    port >= o->pmin && port <= o->pmax &&
			    strcmp(o->ip, m->client_addr) == 0 &&
			    strcmp(o->svc, m->service) == 0)
				break;
		if (o != NULL)
			f = o;
	}
	if (f == NULL || strcmp(f->svc, m->service) != 0) {
		snprintf(why, whylen, "ftp data: control session %llu is not "
		    "open", (unsigned long long)m->ftp_ctl);
		return -1;
	}
	if (strcmp(f->ip, m->client_addr) != 0) {
		snprintf(why, whylen, "ftp data: client %s is not the client of "
		    "control session %llu", m->client_addr,
		    (unsigned long long)m->ftp_ctl);
		return -1;
	}
	if (!f->tls || port < f->pmin || port > f->pmax) {
		snprintf(why, whylen, "ftp data: port %u was not handed to "
		    "control session %llu", port, (unsigned long long)m->ftp_ctl);
		return -1;
	}
	/* TLS: the backend announced this port of its slice itself. */
	*a = f->backend;
	aftp_addr_port(a, port);
	snprintf(backend, backendlen, "%s port %u (control session %llu)",
	    f->backend_str, port, (unsigned long long)f->id);
	return 0;
}

/* The control session waiting for request r of edge e, or NULL. */
static struct aftp *
active_waiting(const struct aedge *e, uint64_t r)
{
	struct aftp *f;

	for (f = ctls; f != NULL; f = f->next)
		if (f->edge == e && f->act_fd != -1 && f->act_req == r)
			return f;
	return NULL;
}

/* 1 if a and b are the same numeric address, IPv4-mapped or not. */
static int
same_ip(const char *a, const char *b)
{
	struct net_addr x, y;
	uint8_t p[16], q[16];

	if (net_from_ip(a, 0, &x) == -1 || net_from_ip(b, 0, &y) == -1)
		return 0;
	cidr_sa16((struct sockaddr *)&x.ss, p);
	cidr_sa16((struct sockaddr *)&y.ss, q);
	return memcmp(p, q, 16) == 0;
}

int
aftp_active_claim(struct aedge *e, const struct msg *m, char *backend,
    size_t backendlen, char *why, size_t whylen)
{
	struct aftp *f = active_waiting(e, m->request);
	int fd;

	if (f == NULL) {
		snprintf(why, whylen, "ftp active: nothing waits for request "
		    "%llu", (unsigned long long)m->request);
		return m->request > act_next ? -2 : -1;
	}
	fd = f->act_fd;
	ftpf_active_release(f);
	/* The edge dials the control session's client and port, or it
	 * broke the protocol. */
	if (m->ftp_ctl != f->id || strcmp(m->service, f->svc) != 0 ||
	    m->client_port != f->act_port || !same_ip(m->client_addr, f->ip)) {
		ftpf_active_fail(f, fd);
		snprintf(why, whylen, "ftp active: the session does not match "
		    "request %llu (control session %llu, client port %u)",
		    (unsigned long long)m->request, (unsigned long long)f->id,
		    f->act_port);
		return -2;
	}
	snprintf(backend, backendlen, "%s active data (control session %llu)",
	    f->backend_str, (unsigned long long)f->id);
	return fd;
}

/* f's waiting data connection gets no client, for why. */
static void
active_give_up(struct aftp *f, const char *why)
{
	log_warn("session %llu: ftp: no data connection to the client's port "
	    "%u: %s", (unsigned long long)f->id, f->act_port, why);
	ftpf_active_fail(f, f->act_fd);
	ftpf_active_release(f);
}

void
aftp_active_failed(struct aedge *e, const struct msg *m)
{
	struct aftp *f = active_waiting(e, m->request);
	char why[MSG_TEXT_MAX + 40];

	if (f == NULL) {
		if (m->request > act_next)
			aedge_violation(e, "FTP_DIAL_FAIL for request %llu, which "
			    "was not asked", (unsigned long long)m->request);
		return;
	}
	snprintf(why, sizeof(why), "the edge could not connect: %s", m->text);
	active_give_up(f, why);
}

void
aftp_active_refused(struct aedge *e, uint64_t request, const char *why)
{
	struct aftp *f = active_waiting(e, request);

	if (f != NULL)
		active_give_up(f, why);
}

void
aftp_edge_down(struct aedge *e, const char *why)
{
	struct aftp *f;

	for (f = ctls; f != NULL; f = f->next)
		if (f->edge == e && f->act_fd != -1)
			active_give_up(f, why);
}

void
aftp_tick(uint64_t now)
{
	static uint64_t last;
	struct aftp *f;

	/* A scan a second: the bounds are tens of seconds. */
	if (now - last < 1000)
		return;
	last = now;
	for (f = ctls; f != NULL; f = f->next)
		if ((f->lio.fd != -1 && now - f->act_at > POOL_STALE_MS) ||
		    (f->act_fd != -1 && now - f->act_at > ACT_WAIT_MS)) {
			if (f->act_fd != -1) {
				log_warn("session %llu: ftp: no answer from the "
				    "edge for request %llu", (unsigned long long)
				    f->id, (unsigned long long)f->act_req);
				ftpf_active_fail(f, f->act_fd);
				ftpf_active_release(f);
			}
			ftpf_active_stop(f);
		}
}

void
aftp_edge_back(struct aedge *e)
{
	struct aftp *f;
	struct msg m;

	for (f = ctls; f != NULL; f = f->next)
		if (f->live && f->edge == e) {
			ports_msg(f->id, f->pmin, f->pmax, &m);
			aedge_send(e, &m);
		}
}

void
aftp_stop(void)
{
	struct pool *p;

	while (ctls != NULL)
		aftp_ctl_end(ctls);
	while ((p = pools) != NULL) {
		pools = p->next;
		free(p->e);
		free(p);
	}
}
