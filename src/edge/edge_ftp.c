/* edge_ftp.c - passive data ports of FTP services (docs/ftp.md).
 *
 * An FTP service's SVC_OPEN carries PROTOCOL and a passive port range;
 * the edge listens on every port of the range, on the service's address,
 * for as long as the service is open. Each control session of the service
 * holds, once the agent has sent FTP_PORTS, the ports its data
 * connections may use (the slice of the backend that holds it). A
 * connection to a passive port P from address X becomes a session only
 * if a live control session from X allows P; it is then offered, like
 * any session, to the agent that holds that control session, with the
 * control session's id and P. Anything else is refused at once: no port
 * stealing by other addresses. */
#include "edge/edge_ban.h"
#include "edge/edge_ftp.h"
#include "edge/edge_ctl.h"
#include "edge/edge_handover.h"
#include "edge/edge_lis.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/cidr.h"
#include "common/hosock.h"
#include "common/log.h"
#include "common/psock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#define FTP_PORTS_MAX	1000	/* passive ports per service */

/* A passive listener; its port is f->pmin plus its index in f->lis. */
struct eftp_lis {
	struct ev_io	 io;
	struct eftp	*f;
};

struct eftp {
	char		 svc[MSG_NAME_MAX];
	int		 active;	/* FTP_ACTIVE: active mode declared */
	uint16_t	 pmin, pmax;
	size_t		 nlis;
	struct eftp_lis	*lis;
	LIST_ENTRY(eftp) entry;
};

static LIST_HEAD(, eftp) ftps = LIST_HEAD_INITIALIZER(ftps);
static uint64_t stamp_next = 1;
static uint64_t data_accepted, data_refused, active_ok, active_failed;
static uint64_t refuse_logged_at, refuse_held;

/* A refusal is logged at most once a second, with how many were held
 * back: a scan of the passive range must not flood the log. */
static void
refuse(struct eftp *f, int fd, const char *ip, uint16_t port)
{
	uint64_t now = ev_now();

	data_refused++;
	psock_reset_now(fd);
	if (refuse_logged_at != 0 && now - refuse_logged_at < 1000) {
		refuse_held++;
		return;
	}
	log_warn("ftp service %s: data connection from %s to passive port %u "
	    "refused: no control session from that address for this port%s",
	    f->svc, ip, port,
	    refuse_held ? " (and earlier refusals not logged)" : "");
	refuse_logged_at = now;
	refuse_held = 0;
}

int
eftp_data_start(int fd, const struct net_addr *peer, struct esess_req *r,
    char *why, size_t whylen)
{
	struct net_addr local;
	enum sess_end code;
	uint8_t a16[16];
	int rc = -1;

	/* adm_admit logs the edge's own limit (-2), but why is ours. */
	cidr_sa16((const struct sockaddr *)&peer->ss, a16);
	if (esess_full(r->svc, 0))
		snprintf(why, whylen, "too many sessions");
	else if ((rc = adm_admit(a16, r->svc, NULL, &r->adm, &code, why,
	    whylen)) == -2)
		snprintf(why, whylen, "too many sessions from that address");
	if (rc != 0) {
		close(fd);
		return -1;
	}
	local.len = sizeof(local.ss);
	if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) == -1)
		local.ss = peer->ss;
	if (r->kind == SK_FTP_ACTIVE)
		active_ok++;
	else
		data_accepted++;
	esess_start(fd, (const struct sockaddr *)&peer->ss,
	    (const struct sockaddr *)&local.ss, r);
	return 0;
}

static void
pasv_accept(struct ev_io *io, uint32_t events)
{
	struct eftp_lis *l = (struct eftp_lis *)(void *)io;
	struct eftp *f = l->f;
	uint16_t port = (uint16_t)(f->pmin + (l - f->lis)), cport;
	struct net_addr peer;
	struct esess_req r;
	char ip[NET_ADDRSTR], what[MSG_NAME_MAX + 16], why[160];
	int fd, i;

	(void)events;
	snprintf(what, sizeof(what), "ftp service %s", f->svc);
	for (i = 0; i < 16; i++) {
		if ((fd = edge_accept(io->fd, &peer, what)) == -1)
			return;
		if (eban_refuse(fd, (struct sockaddr *)&peer.ss, what))
			continue;
		net_fmt_ip((struct sockaddr *)&peer.ss, ip, sizeof(ip), &cport);
		r = (struct esess_req){ .kind = SK_FTP_DATA, .svc = f->svc,
		    .ftp_port = port };
		if (esess_ftp_match(f->svc, ip, port, &r.agent,
		    &r.ftp_ctl) == 0)
			(void)eftp_data_start(fd, &peer, &r, why, sizeof(why));
		else
			refuse(f, fd, ip, port);
	}
}

static void
eftp_free(struct eftp *f)
{
	size_t i;

	LIST_REMOVE(f, entry);
	for (i = 0; i < f->nlis; i++) {
		ev_del(&f->lis[i].io);
		close(f->lis[i].io.fd);
	}
	free(f->lis);
	free(f);
}

/* Listen on each of the n passive ports of def at ip. */
static int
eftp_listen(const char *svc, const struct msg *def, const char *ip, size_t n,
    struct eftp **out, char *err, size_t errlen)
{
	struct net_addr a;
	struct eftp *f;
	uint16_t port;
	char e[128];
	int fd;

	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->lis = calloc(n, sizeof(*f->lis))) == NULL) {
		free(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(f->svc, sizeof(f->svc), "%s", svc);
	f->active = def->ftp_active;
	f->pmin = def->pasv_min;
	f->pmax = def->pasv_max;
	LIST_INSERT_HEAD(&ftps, f, entry);
	for (; f->nlis < n; f->nlis++) {
		port = (uint16_t)(f->pmin + f->nlis);
		(void)net_from_ip(ip, port, &a);
		if ((fd = hosock_claim(&a)) == -1 &&
		    (fd = net_listen(&a, 64, e, sizeof(e))) == -1) {
			snprintf(err, errlen, "passive port %u: %s", port, e);
			eftp_free(f);
			return -1;
		}
		f->lis[f->nlis].f = f;
		ev_io_init(&f->lis[f->nlis].io, fd, pasv_accept);
		if (ev_set(&f->lis[f->nlis].io, esvc_listen_mask()) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
	}
	log_info("ftp service %s: passive ports %u-%u open on %s%s", svc,
	    f->pmin, f->pmax, ip, f->active ? ", active mode on" : "");
	*out = f;
	return 0;
}

/* listen was parsed by net_parse: numeric, no scope, so that ip and a
 * port make it again (net_from_ip). The decoder leaves 0 in what an
 * SVC_OPEN does not carry, and FTP_ACTIVE 1 when it does. */
int
eftp_svc_open(const char *svc, const struct msg *def,
    const struct net_addr *listen, struct eftp **out, char *err,
    size_t errlen)
{
	uint16_t lo = def->pasv_min, hi = def->pasv_max, lport;
	char ip[NET_ADDRSTR];

	*out = NULL;
	if (!(def->have & FA_BIT(FA_PROTOCOL)))
		return 0;
	net_fmt_ip((const struct sockaddr *)&listen->ss, ip, sizeof(ip),
	    &lport);
	if (strcmp(def->protocol, "ftp") != 0 &&
	    strcmp(def->protocol, "ftps") != 0)
		snprintf(err, errlen, "unknown protocol '%s'", def->protocol);
	else if (lo == 0 || lo > hi)
		snprintf(err, errlen, "FTP service without a valid passive "
		    "port range");
	else if (hi - lo >= FTP_PORTS_MAX)
		snprintf(err, errlen, "passive range %u-%u: more than %d ports",
		    lo, hi, FTP_PORTS_MAX);
	else if (lport >= lo && lport <= hi)
		snprintf(err, errlen, "passive range %u-%u holds the control "
		    "port %u", lo, hi, lport);
	else
		return eftp_listen(svc, def, ip, (size_t)(hi - lo) + 1, out,
		    err, errlen);
	return -1;
}

void
eftp_svc_close(struct eftp *f)
{
	if (f == NULL)
		return;
	log_info("ftp service %s: passive ports %u-%u closed", f->svc,
	    f->pmin, f->pmax);
	eftp_free(f);
}

void
eftp_listeners_set(uint32_t mask)
{
	struct eftp *f;
	size_t i;

	LIST_FOREACH(f, &ftps, entry)
		for (i = 0; i < f->nlis; i++)
			if (ev_set(&f->lis[i].io, mask) == -1)
				log_fatal("epoll_ctl: %s", strerror(errno));
}

void
eftp_each_listener(const struct eftp *f, void (*cb)(int fd, void *arg),
    void *arg)
{
	size_t i;

	for (i = 0; f != NULL && i < f->nlis; i++)
		cb(f->lis[i].io.fd, arg);
}

uint64_t
eftp_stamp(void)
{
	return stamp_next++;
}

void
eftp_ports(struct eagent *agent, const struct msg *m)
{
	struct esess_peer peer;
	struct eftp_ports *p;
	struct eftp *f = NULL;

	/* A control session of this process, or of the one before it; none
	 * (it may have ended a moment ago): no service. */
	if ((p = esess_ftp_ports(m->session, agent, &peer)) != NULL ||
	    (p = eho_ftp_ports(m->session, agent, &peer)) != NULL)
		f = esvc_ftp(peer.svc);
	/* Only the agent the session was offered to speaks for it, and
	 * only for ports of the service's own range. */
	if (f == NULL) {
		log_warn("agent %s: FTP_PORTS for session %llu ignored: not an "
		    "FTP control session of this agent", agent->name,
		    (unsigned long long)m->session);
		return;
	}
	if (m->pasv_min == 0 || m->pasv_min > m->pasv_max ||
	    m->pasv_min < f->pmin || m->pasv_max > f->pmax) {
		log_warn("agent %s: FTP_PORTS %u-%u for session %llu ignored: "
		    "outside the passive range %u-%u of service %s",
		    agent->name, m->pasv_min, m->pasv_max,
		    (unsigned long long)m->session, f->pmin, f->pmax, f->svc);
		return;
	}
	p->pmin = m->pasv_min;
	p->pmax = m->pasv_max;
	p->stamp = stamp_next++;
}

int
eftp_active(const char *svc)
{
	struct eftp *f = esvc_ftp(svc);

	return f != NULL && f->active;
}

void
eftp_active_failed(void)
{
	active_failed++;
}

void
eftp_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "ftp_data_accepted_total",
	    data_accepted);
	(void)estats_put(out, outlen, "ftp_data_refused_total", data_refused);
	(void)estats_put(out, outlen, "ftp_active_total", active_ok);
	(void)estats_put(out, outlen, "ftp_active_failed_total",
	    active_failed);
}
