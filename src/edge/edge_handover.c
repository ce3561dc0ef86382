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
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/hosock.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELEASE_WAIT_MS	60000	/* the old one releases within its
				 * claim and PROXY time-outs */
#define UNCLAIMED_MS	30000	/* agents reconnect at once */
#define RECORDS_MAX	65536	/* FTP control sessions of the old one */

enum { EH_IDLE, EH_HELLO, EH_OFFERED, EH_TAKEN, EH_DRAINING };

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

/* The new process's side: the old one, its records and what it says. */
static struct ev_io old_io = { -1, NULL, 0, 0 };
static pid_t old_pid;
static uint64_t old_next, old_sessions, old_procs, unclaimed_at;
static struct horec *recs;
static size_t nrecs;

/* The running process's side: the new one. */
static int state = EH_IDLE;
static struct ev_io lis_io = { -1, NULL, 0, 0 };
static struct ev_io new_io = { -1, NULL, 0, 0 };
static pid_t new_pid;
static uint64_t drain_end, status_at, status_sent = UINT64_MAX;

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
	char err[512];
	int rc;

	if (path == NULL)
		return;
	if ((rc = hosock_take(path, svc_uid, &old_io.fd, &old_pid, &old_next,
	    err, sizeof(err))) == -1)
		log_fatal("hand-over at %s failed: %s", path, err);
	if (rc == 0)
		log_info("hand-over: no edge running at %s: starting afresh",
		    path);
	else
		log_info("hand-over: listeners received from edge process %ld "
		    "at %s", (long)old_pid, path);
}

/* The record of control session id (0: every record) goes. */
static void
rec_del(uint64_t id)
{
	struct horec **pp = &recs, *r;

	while ((r = *pp) != NULL) {
		if (id != 0 && r->id != id) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		free(r);
		nrecs--;
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
	if (m->pasv_min != 0) {
		r->p.pmin = m->pasv_min;
		r->p.pmax = m->pasv_max;
		r->p.stamp = eftp_stamp();
	}
	r->next = recs;
	recs = r;
	nrecs++;
}

/* Records, their ends and counts from the old process, until it exits.
 * Once this one hands over too, it passes the ends on down the chain. */
static void
old_read(struct ev_io *io, uint32_t events)
{
	const char *why;
	struct msg *m;
	int rc;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && m->ho_step == HO_FTP)
		rec_add(m);
	else if (m != NULL && m->ho_step == HO_FTP_END) {
		rec_del(m->ftp_ctl);
		eho_ftp_end(m->ftp_ctl);
	} else if (m != NULL && m->ho_step == HO_STATUS) {
		old_sessions = m->count;
		old_procs = (m->have & FA_BIT(FA_PROCESSES)) ? m->processes : 1;
	} else {
		log_info("hand-over: the old edge process %ld is gone (%s); %zu "
		    "of its FTP control sessions forgotten", (long)old_pid,
		    rc == 0 ? "it exited" : m != NULL ? "unexpected step" : why,
		    nrecs);
		rec_del(0);
		ev_del(io);
		close(io->fd);
		io->fd = -1;
		old_sessions = old_procs = 0;
	}
}

int
eho_took(void)
{
	return old_io.fd != -1;
}

static void lis_accept(struct ev_io *io, uint32_t events);

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
	if (old_io.fd != -1) {
		if (hosock_step(old_io.fd, HO_TAKEN, 0) == -1)
			why = strerror(errno);
		else
			m = hosock_read(old_io.fd, RELEASE_WAIT_MS, &rc, &why);
		if (m == NULL || m->ho_step != HO_RELEASE)
			log_fatal("hand-over: edge process %ld did not release "
			    "the control port: %s", (long)old_pid, rc == 0 ?
			    "it closed the connection" : why);
		/* Session ids go on from the old process's: agents tell
		 * sessions apart by them, and its are still running. */
		(void)esess_ids_from((m->have & FA_BIT(FA_SESSION)) ?
		    m->session : old_next);
		unclaimed_at = ev_now_update() + UNCLAIMED_MS;
		old_procs = 1;
		ev_io_init(&old_io, old_io.fd, old_read);
		if (ev_set(&old_io, EPOLLIN) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
		log_info("hand-over: edge process %ld released the control "
		    "port: accepting agents (it drains its sessions)",
		    (long)old_pid);
	}
	if (hosock_publish(path, err, sizeof(err)) == -1)
		log_fatal("--handover-socket: %s", err);
	ev_io_init(&lis_io, fd, lis_accept);
	if (ev_set(&lis_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	log_info("hand-over: the next edge process can take over at %s", path);
	return old_io.fd != -1;
}

/* --- the running process ------------------------------------------------ */

/* The new process went, or failed: before RELEASE, serve on. */
static void
new_lost(const char *why)
{
	if (state == EH_DRAINING)
		log_info("hand-over: edge process %ld closed the hand-over "
		    "connection (%s)", (long)new_pid, why);
	else
		log_warn("hand-over to edge process %ld failed: %s; serving on",
		    (long)new_pid, why);
	if (state == EH_TAKEN)
		esvc_handing(0);
	if (state != EH_DRAINING)
		state = EH_IDLE;
	ev_del(&new_io);
	close(new_io.fd);
	new_io.fd = -1;
}

/* An FTP control session for the new process: this one's own, or one
 * of a process before it, still draining. */
static void
ftp_send(uint64_t id, const char *svc, const char *ip, const char *agent,
    uint64_t instance, const struct eftp_ports *p)
{
	struct msg *m;

	if ((m = malloc(sizeof(*m))) == NULL)
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
	(void)hosock_send(new_io.fd, m, NULL, 0);
	free(m);
}

/* Nothing of this process's own waits for a link, a PROXY header or a
 * destination any more: hand the control port over and drain. */
static void
release(uint64_t now)
{
	const struct horec *r;
	char mainpid[32], what[48] = "no drain timeout";

	if (hosock_step(new_io.fd, HO_RELEASE, 0) == -1) {
		new_lost(strerror(errno));
		return;
	}
	state = EH_DRAINING;
	esess_each_ftp(ftp_send);
	for (r = recs; r != NULL; r = r->next)
		ftp_send(r->id, r->svc, r->ip, r->agent, r->instance, &r->p);
	esvc_shutdown();
	ectl_drain();
	drain_end = drain_ms != 0 ? now + drain_ms : 0;
	if (drain_ms != 0)
		snprintf(what, sizeof(what), "drain timeout %llu s",
		    (unsigned long long)(drain_ms / 1000));
	log_info("hand-over: released to edge process %ld; draining %llu "
	    "sessions (%s)", (long)new_pid, (unsigned long long)esess_live(0),
	    what);
	/* Under systemd the new process is the service's main one now. */
	snprintf(mainpid, sizeof(mainpid), "MAINPID=%ld", (long)new_pid);
	notify_send(mainpid);
}

static void
new_read(struct ev_io *io, uint32_t events)
{
	struct hosock_fds l = { NULL, 0, 0, 0 };
	const char *why;
	struct msg *m;
	int rc;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && state == EH_HELLO && m->ho_step == HO_HELLO) {
		hosock_fds_add(ectl_listener(), &l);
		esvc_each_listener(hosock_fds_add, &l);
		if (hosock_offer(io->fd, &l, esess_ids_from(0)) == -1) {
			new_lost("cannot send the listeners");
			return;
		}
		state = EH_OFFERED;
		log_info("hand-over: %zu listeners offered to edge process %ld",
		    l.n, (long)new_pid);
	} else if (m != NULL && state == EH_OFFERED && m->ho_step == HO_TAKEN) {
		state = EH_TAKEN;
		esvc_handing(1);
		log_info("hand-over: edge process %ld took the listeners: no "
		    "new clients here", (long)new_pid);
	} else
		new_lost(rc == 0 ? "it closed the connection" : m != NULL ?
		    "unexpected step" : why);
}

static void
lis_accept(struct ev_io *io, uint32_t events)
{
	pid_t pid;
	int fd;

	(void)events;
	if ((fd = hosock_accept(io->fd, svc_uid, state != EH_IDLE ?
	    "this edge process has handed over already" : NULL, &pid)) == -1)
		return;
	new_pid = pid;
	ev_io_init(&new_io, fd, new_read);
	if (ev_set(&new_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	state = EH_HELLO;
	log_info("hand-over: edge process %ld connected on %s", (long)pid, path);
}

void
eho_tick(uint64_t now)
{
	uint64_t left = esess_live(0);
	struct net_addr a;
	char addr[NET_ADDRSTR];
	int fd;

	while (unclaimed_at != 0 && now >= unclaimed_at &&
	    (fd = hosock_unclaimed(&a)) != -1) {
		net_fmt((struct sockaddr *)&a.ss, addr, sizeof(addr));
		log_warn("hand-over: listener on %s closed: no agent claimed it",
		    addr);
		close(fd);
	}
	if (state == EH_TAKEN && !esess_live(1) && !proxy_busy() &&
	    !eout_busy())
		release(now);
	if (state != EH_DRAINING)
		return;
	/* What drains behind this process counts too (a chain). */
	if (new_io.fd != -1 && left + old_sessions != status_sent &&
	    now - status_at >= 1000) {
		(void)hosock_status(new_io.fd, left + old_sessions, 1 + old_procs);
		status_sent = left + old_sessions;
		status_at = now;
	}
	if (drain_end != 0 && now >= drain_end && left > 0) {
		log_warn("drain timeout: cutting %llu sessions still running "
		    "after %llu s", (unsigned long long)left,
		    (unsigned long long)(drain_ms / 1000));
		esess_shutdown("drain timeout");
	}
}

int
eho_draining(void)
{
	return state == EH_DRAINING;
}

int
eho_drained(void)
{
	/* One still draining before this process reaches the next one
	 * through it: stay until it has gone too. */
	if (state != EH_DRAINING || esess_live(0) > 0 || old_io.fd != -1)
		return 0;
	log_info("drained: no session left; exiting");
	return 1;
}

void
eho_ftp_end(uint64_t id)
{
	struct msg m;

	if (state != EH_DRAINING || new_io.fd == -1)
		return;
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_FTP_END);
	msg_set_int(&m, FA_FTP_CTL, id);
	(void)hosock_send(new_io.fd, &m, NULL, 0);
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
	(void)estats_put(out, outlen, "draining_processes", old_procs);
	(void)estats_put(out, outlen, "draining_sessions", old_sessions);
}
