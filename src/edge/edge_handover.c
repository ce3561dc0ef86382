/* edge_handover.c - hand-over between edge processes (edge_handover.h).
 *
 * The old process, as the new one sees it:
 *
 *   new					old
 *   HELLO	  ------------------------>	(checks the peer's uid)
 *		  <------------------------	LISTENERS (fds) ..., OFFERED
 *   (sets up with them)
 *   TAKEN	  ------------------------>	stops accepting clients; once
 *						no client waits for a link:
 *		  <------------------------	RELEASE, FTP ...
 *   accepts agents				closes its listeners, DRAINING
 *						to its agents, relays its
 *		  <------------------------	sessions (STATUS, FTP_END),
 *		  <--------- close ---------	exits after the last
 *
 * Until TAKEN the old process has changed nothing: a new one that fails
 * before, or closes the socket before RELEASE, leaves it serving as if
 * nothing had happened. */
#include "edge/edge_handover.h"
#include "edge/edge_ctl.h"
#include "edge/edge_ftp.h"
#include "edge/edge_lis.h"
#include "edge/edge_notify.h"
#include "edge/edge_out.h"
#include "edge/edge_proxy.h"
#include "edge/edge_stats.h"
#include "common/hosock.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELEASE_WAIT_MS	60000	/* the old one releases within its
				 * claim and PROXY time-outs */
#define UNCLAIMED_MS	30000	/* agents reconnect at once */
#define RECORDS_MAX	65536	/* FTP control sessions of the old one */

/* An FTP control session of an older process. */
struct horec {
	uint64_t	 id;
	uint64_t	 instance;
	char		 svc[MSG_NAME_MAX];
	char		 ip[MSG_ADDR_MAX];
	char		 agent[MSG_NAME_MAX];
	struct eftp_ports p;
	struct horec	*next;
};

static const char *path;
static uint64_t drain_ms;
static uid_t svc_uid;

/* The new process's side: the old one and its records. */
static struct hosock_old old = { .io.fd = -1 };
static uint64_t unclaimed_at;
static struct horec *recs;
static size_t nrecs;

/* The running process's side: the new one. */
static struct hosock_new nxt = { .lis.fd = -1, .io.fd = -1,
    .status_sent = UINT64_MAX };
static const struct hosock_ops ops;	/* below, past the steps it names */

void
eho_init(const char *p, uint64_t ms, uid_t uid)
{
	path = p;
	drain_ms = ms;
	svc_uid = uid;
}

/* --- the new process ---------------------------------------------------- */

void
eho_take(void)
{
	if (path != NULL)
		hosock_takeover(&old, &ops, path, svc_uid);
}

/* The record of control session id (0: every record) goes. */
static void
rec_del(uint64_t id)
{
	struct horec **pp = &recs, *r;

	while ((r = *pp) != NULL) {
		if (id == 0 || r->id == id) {
			*pp = r->next;
			free(r);
			nrecs--;
		} else
			pp = &r->next;
	}
}

static void
rec_add(const struct msg *m)
{
	struct horec *r;

	if (nrecs >= RECORDS_MAX || (r = calloc(1, sizeof(*r))) == NULL) {
		log_warn("hand-over: FTP control session %llu of the old edge "
		    "process not kept", (unsigned long long)m->ftp_ctl);
		return;
	}
	r->id = m->ftp_ctl;
	r->instance = m->instance;
	snprintf(r->svc, sizeof(r->svc), "%s", m->service);
	snprintf(r->ip, sizeof(r->ip), "%s", m->client_addr);
	snprintf(r->agent, sizeof(r->agent), "%s", m->name);
	/* No passive range yet: 0, 0 (hosock_check wants both ends). */
	r->p.pmin = m->pasv_min;
	r->p.pmax = m->pasv_max;
	r->p.stamp = eftp_stamp();
	r->next = recs;
	recs = r;
	nrecs++;
}

/* Records and their ends from the old process, until it exits. Once
 * this one hands over too, it passes the ends on down the chain. */
static int
old_step(const struct msg *m)
{
	if (m->ho_step == HO_FTP)
		rec_add(m);
	else if (m->ho_step == HO_FTP_END) {
		rec_del(m->ftp_ctl);
		eho_ftp_end(m->ftp_ctl);
	} else
		return -1;
	return 0;
}

static void
old_gone(const char *why)
{
	log_info("hand-over: the old edge process %ld is gone (%s); %zu of its "
	    "FTP control sessions forgotten", (long)old.pid, why, nrecs);
	rec_del(0);
}

int
eho_took(void)
{
	return old.io.fd != -1;
}

int
eho_commit(void)
{
	const char *why = "unexpected step";
	struct msg *m = NULL;
	char err[512];
	int fd, rc = -1;

	if (path == NULL)
		return 0;
	/* Bound before TAKEN (a failure here leaves the old one serving),
	 * published under the path only once it has released. */
	if ((fd = hosock_listen(path, err, sizeof(err))) == -1)
		log_fatal("--handover-socket: %s", err);
	if (old.io.fd != -1) {
		if (hosock_step(old.io.fd, HO_TAKEN, 0) == -1)
			why = strerror(errno);
		else
			m = hosock_read(old.io.fd, RELEASE_WAIT_MS, &rc, &why);
		if (m == NULL || m->ho_step != HO_RELEASE)
			log_fatal("hand-over: edge process %ld did not release "
			    "the control port: %s", (long)old.pid, rc == 0 ?
			    "it closed the connection" : why);
		/* Session ids go on from the old process's: agents tell
		 * sessions apart by them, and its are still running. */
		(void)esess_ids_from((m->have & FA_BIT(FA_SESSION)) ?
		    m->session : old.next);
		unclaimed_at = ev_now_update() + UNCLAIMED_MS;
		old.procs = 1;
		hosock_watch(&old);
		log_info("hand-over: edge process %ld released the control "
		    "port: accepting agents (it drains its sessions)",
		    (long)old.pid);
	}
	if (hosock_serve(&nxt, &ops, fd, path, svc_uid, err, sizeof(err)) == -1)
		log_fatal("--handover-socket: %s", err);
	return old.io.fd != -1;
}

/* --- the running process ------------------------------------------------ */

/* The new process went, or failed: clients come here again. */
static void
new_lost(void)
{
	if (nxt.state == HOSOCK_TAKEN)
		esvc_handing(0);
}

/* An FTP control session for the new process: this one's own, or one
 * of a process before it, still draining. */
static void
ftp_send(uint64_t id, const char *svc, const char *ip, const char *agent,
    uint64_t instance, const struct eftp_ports *p)
{
	struct msg *m;

	if (nxt.io.fd == -1 || (m = malloc(sizeof(*m))) == NULL)
		return;
	msg_init(m, FT_HANDOVER);
	msg_set_int(m, FA_HO_STEP, HO_FTP);
	msg_set_int(m, FA_FTP_CTL, id);
	msg_set_str(m, FA_SERVICE, svc);
	msg_set_str(m, FA_CLIENT_ADDR, ip);
	msg_set_str(m, FA_NAME, agent);
	if (instance != 0)
		msg_set_int(m, FA_INSTANCE, instance);
	if (p->pmin != 0) {
		msg_set_int(m, FA_PASV_MIN, p->pmin);
		msg_set_int(m, FA_PASV_MAX, p->pmax);
	}
	/* A new process that took no message for HOSOCK_WAIT_MS has
	 * failed: the records left are not sent (each would wait as long),
	 * and their data connections fail there. */
	if (hosock_send(nxt.io.fd, m, NULL, 0) == -1)
		hosock_lost(&nxt, strerror(errno));
	free(m);
}

/* Nothing of this process's own waits for a link, a PROXY header or a
 * destination any more: hand the control port over and drain. */
static void
release(uint64_t now)
{
	const struct horec *r;
	char mainpid[32], what[48];
	struct msg m;

	/* With the next session id: this process went on giving ids after
	 * OFFERED, and the agents tell sessions apart by them. */
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_RELEASE);
	msg_set_int(&m, FA_SESSION, esess_ids_from(0));
	if (hosock_send(nxt.io.fd, &m, NULL, 0) == -1) {
		hosock_lost(&nxt, strerror(errno));
		return;
	}
	hosock_drain(&nxt, now, drain_ms, what, sizeof(what));
	esess_each_ftp(ftp_send);
	for (r = recs; r != NULL; r = r->next)
		ftp_send(r->id, r->svc, r->ip, r->agent, r->instance, &r->p);
	esvc_shutdown();
	ectl_drain();
	log_info("hand-over: released to edge process %ld; draining %llu "
	    "sessions (%s)", (long)nxt.pid, (unsigned long long)esess_live(0),
	    what);
	/* Under systemd the new process is the service's main one now. */
	snprintf(mainpid, sizeof(mainpid), "MAINPID=%ld", (long)nxt.pid);
	notify_send(mainpid);
}

static uint64_t
offer(struct hosock_fds *l)
{
	hosock_fds_add(ectl_listener(), l);
	esvc_each_listener(hosock_fds_add, l);
	return esess_ids_from(0);
}

static int
new_step(const struct msg *m)
{
	if (nxt.state != HOSOCK_OFFERED || m->ho_step != HO_TAKEN)
		return -1;
	nxt.state = HOSOCK_TAKEN;
	esvc_handing(1);
	log_info("hand-over: edge process %ld took the listeners: no new "
	    "clients here", (long)nxt.pid);
	return 0;
}

static const struct hosock_ops ops = {
	"edge", offer, new_step, new_lost, old_step, old_gone
};

void
eho_tick(uint64_t now)
{
	if (unclaimed_at != 0 && now >= unclaimed_at)
		hosock_drop(LOG_WARN, "no agent claimed it");
	if (nxt.state == HOSOCK_TAKEN && !esess_live(1) && !proxy_busy() &&
	    !eout_busy())
		release(now);
	if (hosock_tick(&nxt, &old, now, esess_live(0)))
		esess_shutdown("drain timeout");
}

int
eho_draining(void)
{
	return nxt.state == HOSOCK_DRAINING;
}

int
eho_releasing(void)
{
	return nxt.state == HOSOCK_TAKEN || nxt.state == HOSOCK_DRAINING;
}

int
eho_drained(void)
{
	return hosock_drained(&nxt, &old, esess_live(0));
}

void
eho_ftp_end(uint64_t id)
{
	struct msg m;

	if (nxt.state != HOSOCK_DRAINING || nxt.io.fd == -1)
		return;
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_FTP_END);
	msg_set_int(&m, FA_FTP_CTL, id);
	if (hosock_send(nxt.io.fd, &m, NULL, 0) == -1)
		hosock_lost(&nxt, strerror(errno));
}

int
eho_ftp_match(const char *svc, const char *ip, uint16_t port,
    struct eagent **a, uint64_t *id)
{
	const struct horec *r, *best = NULL;

	for (r = recs; r != NULL; r = r->next)
		if (r->p.pmin != 0 && port >= r->p.pmin && port <= r->p.pmax &&
		    strcmp(r->ip, ip) == 0 && strcmp(r->svc, svc) == 0 &&
		    (best == NULL || r->p.stamp > best->p.stamp))
			best = r;
	if (best == NULL ||
	    (*a = ectl_agent_find(best->agent, best->instance)) == NULL)
		return -1;
	*id = best->id;
	return 0;
}

struct eftp_ports *
eho_ftp_ports(uint64_t id, const struct eagent *a, struct esess_peer *peer)
{
	struct horec *r;

	for (r = recs; r != NULL; r = r->next)
		if (r->id == id && r->instance == a->instance &&
		    strcmp(r->agent, a->name) == 0) {
			peer->svc = r->svc;
			peer->ip = r->ip;
			peer->lip = "";		/* not handed on */
			return &r->p;
		}
	return NULL;
}

void
eho_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "draining_processes", old.procs);
	(void)estats_put(out, outlen, "draining_sessions", old.sessions);
}
