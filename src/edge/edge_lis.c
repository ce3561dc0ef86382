/* edge_lis.c - services and their listeners (edge_lis.h). */
#include "edge/edge_lis.h"
#include "edge/edge_adm.h"
#include "edge/edge_ban.h"
#include "edge/edge_ctl.h"
#include "edge/edge_ftp.h"
#include "edge/edge_limit.h"
#include "edge/edge_proxy.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/ev.h"
#include "common/hosock.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/queue.h>

#define SVC_AGENTS_MAX	16
#define DENIED_PER_SEC	50	/* SESS_DENIED frames per service */
#define ACCEPT_PAUSE_MS	250
#define ACCEPT_BATCH	64	/* per event: a flood must not outrun the queue */

/* An agent offering a service, with the priority it asked for there. */
struct esvc_agent {
	struct eagent	*a;
	uint32_t	 priority;
};

struct esvc {
	struct ev_io	 io;
	/* The SVC_OPEN that created the service (its name def.service, its
	 * address def.listen), as decoded, PRIORITY cleared: agents that
	 * offer the same service must push the same definition, compared
	 * whole, so attributes added later are covered too; only the
	 * per-agent priority may differ. */
	struct msg	 def;
	char		 def_agent[MSG_NAME_MAX];
	struct esvc_agent agents[SVC_AGENTS_MAX];
	size_t		 nagents;
	size_t		 rr;
	/* The address clients connect to, when the listener names one (not
	 * a wildcard): then no getsockname() per client. */
	struct net_addr	 local;
	int		 local_fixed;
	struct cpol	 pol;
	uint64_t	 deny_sec;	/* denials reported, per second */
	uint32_t	 deny_sent;
	uint32_t	 deny_held;
	uint64_t	 npending;	/* clients waiting for a data link */
	struct eftp	*ftp;		/* FTP: passive ports */
	LIST_ENTRY(esvc) next;
};

static LIST_HEAD(, esvc) svcs = LIST_HEAD_INITIALIZER(svcs);
static uint64_t paused_until;
static int handing;		/* a new process has the listeners */

static struct esvc *
esvc_find(const char *name)
{
	struct esvc *s;

	LIST_FOREACH(s, &svcs, next)
		if (strcmp(s->def.service, name) == 0)
			return s;
	return NULL;
}

/* Agent a's place among service s's agents, or NULL (also for no s). */
static struct esvc_agent *
esvc_agent(struct esvc *s, const struct eagent *a)
{
	size_t i;

	for (i = 0; s != NULL && i < s->nagents; i++)
		if (s->agents[i].a == a)
			return &s->agents[i];
	return NULL;
}

static void
esvc_result(struct eagent *a, const char *name, int ok, const char *text)
{
	struct msg m;

	msg_init(&m, FT_SVC_RESULT);
	msg_set_str(&m, FA_SERVICE, name);
	msg_set_int(&m, FA_STATUS, ok ? 0 : 1);
	if (text != NULL)
		msg_set_str(&m, FA_TEXT, text);
	ectl_send(a, &m);
}

/* --- accept back-off ---------------------------------------------------- */

uint32_t
esvc_listen_mask(void)
{
	return paused_until != 0 || handing ? 0 : EPOLLIN;
}

static void
listeners_set(uint32_t mask)
{
	uint32_t svc = handing ? 0 : mask;
	struct esvc *s;

	LIST_FOREACH(s, &svcs, next)
		if (ev_set(&s->io, svc) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
	eftp_listeners_set(svc);
	ectl_pause(mask == 0);
}

int
edge_accept(int lfd, struct net_addr *peer, const char *what)
{
	int fd;

	if (paused_until != 0)
		return -1;
	/* Nagle is off: accepted sockets inherit it from net_listen. */
	if ((fd = net_accept(lfd, peer)) != -1)
		return fd;
	if (errno == EMFILE || errno == ENFILE) {
		/* A level-triggered listener would wake the loop forever:
		 * stop watching every listener for a moment instead. */
		lim_hit(LIM_FDS, "%s: accept: %s", what, strerror(errno));
		paused_until = ev_now() + ACCEPT_PAUSE_MS;
		listeners_set(0);
	} else if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
		log_warn("%s: accept: %s", what, strerror(errno));
	return -1;
}

/* --- agents ------------------------------------------------------------- */

struct eagent *
esvc_pick_agent(const char *name)
{
	struct esvc *svc = esvc_find(name);
	struct esvc_agent *x, *best = NULL;
	size_t k;

	if (svc == NULL)
		return NULL;
	/* Among the agents of the highest priority (active-passive), the
	 * one with the fewest sessions; the rotating start breaks ties. An
	 * agent whose channel is failing already is passed over. */
	for (k = 0; k < svc->nagents; k++) {
		x = &svc->agents[(svc->rr + k) % svc->nagents];
		if (x->a->fc.failed)
			continue;
		if (best == NULL || x->priority > best->priority ||
		    (x->priority == best->priority &&
		    x->a->sessions < best->a->sessions))
			best = x;
	}
	svc->rr++;
	return best != NULL ? best->a : NULL;
}

int
esvc_offered_by(const char *name, const struct eagent *a)
{
	return esvc_agent(esvc_find(name), a) != NULL;
}

uint64_t
esvc_idle_ms(const char *name)
{
	struct esvc *svc = esvc_find(name);

	return svc != NULL ? (uint64_t)svc->def.idle_timeout * 1000u : 0;
}

struct eftp *
esvc_ftp(const char *name)
{
	struct esvc *svc = esvc_find(name);

	return svc != NULL ? svc->ftp : NULL;
}

void
esvc_pending(const char *name, int delta)
{
	struct esvc *svc = esvc_find(name);

	if (svc == NULL)
		return;
	if (delta > 0)
		svc->npending++;
	else if (svc->npending > 0)
		svc->npending--;
}

/* --- refusals ----------------------------------------------------------- */

/* Report the denials held back in the last second as one count. */
static void
deny_flush(struct esvc *svc)
{
	struct eagent *a;
	struct msg m;

	if (svc->deny_held == 0)
		return;
	log_info("service %s: %u more clients refused in the last second "
	    "(not logged one by one)", svc->def.service, svc->deny_held);
	if ((a = esvc_pick_agent(svc->def.service)) != NULL) {
		msg_init(&m, FT_DENIED_SUMMARY);
		msg_set_str(&m, FA_SERVICE, svc->def.service);
		msg_set_int(&m, FA_COUNT, svc->deny_held);
		ectl_send(a, &m);
	}
	svc->deny_held = 0;
}

void
esvc_deny(struct esvc *svc, int fd, const struct sockaddr *client,
    enum sess_end code, const char *why)
{
	struct linger lg = { 1, 0 };
	struct eagent *a;
	struct msg m;
	char addr[NET_ADDRSTR], ip[NET_ADDRSTR];
	uint64_t id = esess_new_id(), sec = ev_now() / 1000;
	uint16_t port;

	/* A reset: a flood leaves no TIME_WAIT behind. */
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	if (sec != svc->deny_sec) {
		deny_flush(svc);
		svc->deny_sec = sec;
		svc->deny_sent = 0;
	}
	if (svc->deny_sent >= DENIED_PER_SEC) {
		svc->deny_held++;
		return;
	}
	svc->deny_sent++;
	net_fmt(client, addr, sizeof(addr));
	net_fmt_ip(client, ip, sizeof(ip), &port);
	log_info("session %llu refused service=%s client=%s reason=%s "
	    "detail=\"%s\"", (unsigned long long)id, svc->def.service, addr,
	    end_name(code), why);
	if ((a = esvc_pick_agent(svc->def.service)) == NULL)
		return;
	msg_init(&m, FT_SESS_DENIED);
	msg_set_int(&m, FA_SESSION, id);
	msg_set_str(&m, FA_SERVICE, svc->def.service);
	msg_set_str(&m, FA_CLIENT_ADDR, ip);
	msg_set_int(&m, FA_CLIENT_PORT, port);
	msg_set_int(&m, FA_END, code);
	msg_set_str(&m, FA_TEXT, why);
	ectl_send(a, &m);
}

/* --- clients ------------------------------------------------------------ */

void
esvc_client(struct esvc *svc, int fd, const struct sockaddr *client,
    const struct sockaddr *local)
{
	struct esess_req r = { .kind = SK_CLIENT, .svc = svc->def.service };
	enum sess_end code;
	char why[160];
	uint8_t a16[16];
	int rc;

	if (eban_refuse(fd, client, svc->def.service))
		return;
	cidr_sa16(client, a16);
	/* Over the edge's own limits (logged and counted there): closed,
	 * not reported. */
	if (esess_full(svc->def.service, svc->npending) ||
	    (rc = adm_admit(a16, svc->def.service, &svc->pol, &r.adm, &code,
	    why, sizeof(why))) == -2) {
		close(fd);
		return;
	}
	if (rc == -1) {
		esvc_deny(svc, fd, client, code, why);
		return;
	}
	esess_start(fd, client, local, &r);
}

static void
esvc_accept(struct ev_io *io, uint32_t events)
{
	struct esvc *svc = (struct esvc *)(void *)io;
	struct net_addr peer, local;
	char what[MSG_NAME_MAX + 16];
	uint8_t a16[16];
	int fd, i;

	(void)events;
	snprintf(what, sizeof(what), "service %s", svc->def.service);
	for (i = 0; i < ACCEPT_BATCH; i++) {
		if ((fd = edge_accept(io->fd, &peer, what)) == -1)
			return;
		if (svc->pol.accept_proxy.n > 0) {
			/* Behind load balancers: only they may connect, and
			 * each connection must start with a PROXY header. */
			cidr_sa16((struct sockaddr *)&peer.ss, a16);
			if (!cidr_list_match(&svc->pol.accept_proxy, a16))
				esvc_deny(svc, fd, (struct sockaddr *)&peer.ss,
				    SE_DENIED, "peer not in accept_proxy_from");
			else
				proxy_start(svc, fd, &peer);
			continue;
		}
		if (svc->local_fixed)
			local = svc->local;
		else {
			local.len = sizeof(local.ss);
			if (getsockname(fd, (struct sockaddr *)&local.ss,
			    &local.len) == -1)
				local.ss = peer.ss;
		}
		esvc_client(svc, fd, (struct sockaddr *)&peer.ss,
		    (struct sockaddr *)&local.ss);
	}
}

/* --- SVC_OPEN and SVC_CLOSE ---------------------------------------------- */

/* A new service: its policy, its listener, its passive ports. The
 * service, with no agent yet, or NULL (refused, and answered). */
static struct esvc *
esvc_create(struct eagent *a, const struct msg *def, const struct msg *cmp)
{
	struct esvc *s, *o;
	struct net_addr addr;
	char err[400];
	int fd = -1;

	LIST_FOREACH(o, &svcs, next)
		if (strcmp(o->def.listen, def->listen) == 0) {
			snprintf(err, sizeof(err), "%s is in use by service %s",
			    def->listen, o->def.service);
			goto refuse;
		}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto refuse;
	}
	if (adm_policy_load(&s->pol, def, err, sizeof(err)) == -1 ||
	    net_parse(def->listen, &addr, err, sizeof(err)) == -1 ||
	    ((fd = hosock_claim(&addr)) == -1 &&
	    (fd = net_listen(&addr, 1024, err, sizeof(err))) == -1) ||
	    eftp_svc_open(def->service, def, &addr, &s->ftp, err,
	    sizeof(err)) == -1) {
		if (fd != -1)
			close(fd);
		free(s);
		goto refuse;
	}
	ev_io_init(&s->io, fd, esvc_accept);
	s->local = addr;
	s->local_fixed = !net_is_any(&addr);
	memcpy(&s->def, cmp, sizeof(s->def));
	snprintf(s->def_agent, sizeof(s->def_agent), "%s", a->name);
	if (ev_set(&s->io, esvc_listen_mask()) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	LIST_INSERT_HEAD(&svcs, s, next);
	return s;
refuse:
	log_warn("agent %s: service %s on %s: %s", a->name, def->service,
	    def->listen, err);
	esvc_result(a, def->service, 0, err);
	return NULL;
}

void
esvc_open(struct eagent *a, const struct msg *def)
{
	/* memcpy, not assignment: padding must compare equal too. struct
	 * msg is large: not on the stack (the edge has one thread). */
	static struct msg cmp;
	struct esvc *s = esvc_find(def->service);
	struct esvc_agent *x;
	char err[400];

	memcpy(&cmp, def, sizeof(cmp));
	cmp.priority = 0;
	cmp.have &= ~FA_BIT(FA_PRIORITY);
	if (s == NULL && (s = esvc_create(a, def, &cmp)) == NULL)
		return;
	if (memcmp(&s->def, &cmp, sizeof(cmp)) != 0) {
		snprintf(err, sizeof(err), "service %s is already open on %s "
		    "with another definition (from agent %s); the edge keeps "
		    "the first", def->service, s->def.listen, s->def_agent);
		log_warn("agent %s: service %s refused: conflicting definition "
		    "(listen %s); keeping the one from agent %s on %s", a->name,
		    def->service, def->listen, s->def_agent, s->def.listen);
		esvc_result(a, def->service, 0, err);
		return;
	}
	/* From here def->listen is the service's address. */
	if ((x = esvc_agent(s, a)) != NULL) {
		if (x->priority != def->priority)
			log_info("service %s on %s agent=%s priority=%u "
			    "(was %u)", def->service, def->listen, a->name,
			    def->priority, x->priority);
		x->priority = def->priority;
		esvc_result(a, def->service, 1, NULL);
		return;
	}
	if (s->nagents == SVC_AGENTS_MAX) {
		log_warn("agent %s: service %s refused: already %d agents",
		    a->name, def->service, SVC_AGENTS_MAX);
		esvc_result(a, def->service, 0,
		    "too many agents for this service");
		return;
	}
	s->agents[s->nagents].a = a;
	s->agents[s->nagents].priority = def->priority;
	s->nagents++;
	log_info("service %s open on %s agent=%s priority=%u", def->service,
	    def->listen, a->name, def->priority);
	esvc_result(a, def->service, 1, NULL);
	/* A second agent of a service: clients may be waiting for it. */
	if (s->nagents > 1)
		esess_links_ready(a);
}

static void
esvc_free(struct esvc *s)
{
	proxy_svc_gone(s);
	deny_flush(s);
	LIST_REMOVE(s, next);
	ev_del(&s->io);
	close(s->io.fd);
	eftp_svc_close(s->ftp);
	log_info("service %s closed%s", s->def.service, handing ?
	    " here (handed over)" : "");
	free(s);
}

static void
esvc_remove_agent(struct esvc *s, struct eagent *a)
{
	struct esvc_agent *x = esvc_agent(s, a);

	if (x != NULL)
		*x = s->agents[--s->nagents];
	if (s->nagents == 0)
		esvc_free(s);
}

void
esvc_withdraw(struct eagent *a, const char *name)
{
	struct esvc *s = esvc_find(name);

	if (s != NULL)
		esvc_remove_agent(s, a);
}

void
esvc_withdraw_all(struct eagent *a)
{
	struct esvc *s, *next;

	for (s = LIST_FIRST(&svcs); s != NULL; s = next) {
		next = LIST_NEXT(s, next);
		esvc_remove_agent(s, a);
	}
}

void
esvc_tick(uint64_t now)
{
	struct esvc *svc;

	if (paused_until != 0 && now >= paused_until) {
		paused_until = 0;
		listeners_set(EPOLLIN);
	}
	LIST_FOREACH(svc, &svcs, next)
		if (svc->deny_held > 0 && now / 1000 != svc->deny_sec)
			deny_flush(svc);
}

void
esvc_each_listener(void (*cb)(int fd, void *arg), void *arg)
{
	struct esvc *s;

	LIST_FOREACH(s, &svcs, next) {
		cb(s->io.fd, arg);
		eftp_each_listener(s->ftp, cb, arg);
	}
}

void
esvc_handing(int on)
{
	handing = on;
	listeners_set(paused_until != 0 ? 0 : EPOLLIN);
}

void
esvc_shutdown(void)
{
	while (!LIST_EMPTY(&svcs))
		esvc_free(LIST_FIRST(&svcs));
}

void
esvc_stats(char *out, size_t outlen)
{
	uint64_t nsvc = 0, npend = 0;
	struct esvc *v;

	LIST_FOREACH(v, &svcs, next) {
		nsvc++;
		npend += v->npending;
	}
	(void)estats_put(out, outlen, "services_open", nsvc);
	(void)estats_put(out, outlen, "sessions_pending", npend);
}
