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

/* A listener taken over, until a service (or the control port) claims
 * it. */
struct held {
	int		 fd;
	struct net_addr	 a;
};

/* An FTP control session of the old process. */
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

/* The new process's side. */
static struct held *held;
static size_t nheld;
static uint64_t held_until;
static struct ev_io old_io = { -1, NULL, 0, 0 };	/* the old process */
static pid_t old_pid;
static uint64_t old_next_id, old_sessions, old_procs;
static struct horec *recs;
static size_t nrecs;

/* The running process's side. */
static int state = EH_IDLE;
static struct ev_io lis_io = { -1, NULL, 0, 0 };
static struct ev_io new_io = { -1, NULL, 0, 0 };	/* the new process */
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

static int
held_add(int fd)
{
	struct held *h;

	if ((h = realloc(held, (nheld + 1) * sizeof(*h))) == NULL)
		return -1;
	held = h;
	if (hosock_listener(fd, &held[nheld].a) == -1)
		return -1;
	held[nheld++].fd = fd;
	return 0;
}

/* The old process's answer to HELLO: listeners until OFFERED. */
static const char *
take_listeners(struct msg *m)
{
	int fds[HOSOCK_FDS_MAX];
	const char *why;
	size_t n, i;
	int rc;

	for (;;) {
		rc = hosock_recv(old_io.fd, m, fds, &n, HOSOCK_WAIT_MS, &why);
		if (rc <= 0)
			return rc == 0 ? "it closed the connection" : why;
		if (m->ho_step == HO_REFUSED)
			return m->text;
		if (m->ho_step == HO_OFFERED)
			break;
		if (m->ho_step != HO_LISTENERS)
			return "unexpected step";
		for (i = 0; i < n; i++)
			if (held_add(fds[i]) == -1) {
				while (i < n)
					close(fds[i++]);
				return "not a listening TCP socket";
			}
	}
	if (m->count != nheld)
		return "fewer listeners than it offered";
	old_next_id = (m->have & FA_BIT(FA_SESSION)) ? m->session : 0;
	return NULL;
}

void
eho_take(void)
{
	struct msg *m;
	char err[512];
	const char *why;
	int rc;

	if (path == NULL)
		return;
	if ((rc = hosock_connect(path, svc_uid, &old_io.fd, err,
	    sizeof(err))) == -1)
		log_fatal("--handover-socket: %s", err);
	if (rc == 0) {
		log_info("hand-over: no edge running at %s: starting afresh",
		    path);
		return;
	}
	if (hosock_peer(old_io.fd, svc_uid, &old_pid, err, sizeof(err)) == -1)
		log_fatal("hand-over: %s refused: %s", path, err);
	log_info("hand-over: taking over from edge process %ld at %s",
	    (long)old_pid, path);
	if ((m = malloc(sizeof(*m))) == NULL)
		log_fatal("hand-over: out of memory");
	msg_init(m, FT_HANDOVER);
	msg_set_int(m, FA_HO_STEP, HO_HELLO);
	msg_set_int(m, FA_VERSION, FRAME_VERSION);
	if (hosock_send(old_io.fd, m, NULL, 0) == -1)
		log_fatal("hand-over: %s", strerror(errno));
	if ((why = take_listeners(m)) != NULL)
		log_fatal("hand-over from edge process %ld failed: %s",
		    (long)old_pid, why);
	free(m);
	log_info("hand-over: %zu listeners received from edge process %ld",
	    nheld, (long)old_pid);
}

int
eho_listener(const struct net_addr *a)
{
	size_t i;
	int fd;

	for (i = 0; i < nheld; i++)
		if (hosock_same(&held[i].a, a)) {
			fd = held[i].fd;
			held[i] = held[--nheld];
			return fd;
		}
	return -1;
}

static void
recs_free(void)
{
	struct horec *r;

	while ((r = recs) != NULL) {
		recs = r->next;
		free(r);
	}
	nrecs = 0;
}

static void
old_gone(const char *why)
{
	log_info("hand-over: the old edge process %ld is gone (%s); %zu of its "
	    "FTP control sessions forgotten", (long)old_pid, why, nrecs);
	recs_free();
	ev_del(&old_io);
	close(old_io.fd);
	old_io.fd = -1;
	old_sessions = old_procs = 0;
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

static void
rec_del(uint64_t id)
{
	struct horec **pp, *r;

	for (pp = &recs; (r = *pp) != NULL; pp = &r->next)
		if (r->id == id) {
			*pp = r->next;
			free(r);
			nrecs--;
			return;
		}
}

/* Records, their ends and counts from the old process, until it exits.
 * Once this one hands over too, it passes them on down the chain. */
static void
old_read(struct ev_io *io, uint32_t events)
{
	struct msg *m;
	int fds[HOSOCK_FDS_MAX];
	const char *why = "out of memory";
	size_t n;
	int rc = -1;

	(void)io;
	(void)events;
	if ((m = malloc(sizeof(*m))) != NULL &&
	    (rc = hosock_recv(old_io.fd, m, fds, &n, 0, &why)) == -2) {
		free(m);
		return;
	}
	if (rc == 1 && m->ho_step == HO_FTP)
		rec_add(m);
	else if (rc == 1 && m->ho_step == HO_FTP_END) {
		rec_del(m->ftp_ctl);
		eho_ftp_end(m->ftp_ctl);
	} else if (rc == 1 && m->ho_step == HO_STATUS) {
		old_sessions = m->count;
		old_procs = (m->have & FA_BIT(FA_PROCESSES)) ? m->processes : 1;
	} else
		old_gone(rc == 0 ? "it exited" : rc == 1 ? "unexpected step" : why);
	free(m);
}

/* The old process released the control port. */
static void
released(const struct msg *m)
{
	if (m->have & FA_BIT(FA_SESSION))
		old_next_id = m->session;
	/* Session ids go on from the old process's: agents tell sessions
	 * apart by them, and the old one's are still running. */
	esess_skip_ids(old_next_id);
	held_until = ev_now_update() + UNCLAIMED_MS;
	old_procs = 1;
	ev_io_init(&old_io, old_io.fd, old_read);
	if (ev_set(&old_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	log_info("hand-over: edge process %ld released the control port: "
	    "accepting agents (it drains its sessions)", (long)old_pid);
}

static void lis_accept(struct ev_io *io, uint32_t events);

int
eho_commit(void)
{
	struct msg *m;
	int fds[HOSOCK_FDS_MAX];
	char err[512];
	const char *why = "out of memory";
	size_t n;
	int fd, rc = -1;

	if (path == NULL)
		return 0;
	/* Bound before TAKEN (a failure here leaves the old one serving),
	 * published under the path only once it has released. */
	if ((fd = hosock_listen(path, err, sizeof(err))) == -1)
		log_fatal("--handover-socket: %s", err);
	if (old_io.fd != -1) {
		if (hosock_step(old_io.fd, HO_TAKEN, 0) == -1)
			log_fatal("hand-over: %s", strerror(errno));
		if ((m = malloc(sizeof(*m))) != NULL)
			rc = hosock_recv(old_io.fd, m, fds, &n, RELEASE_WAIT_MS,
			    &why);
		if (rc != 1 || m->ho_step != HO_RELEASE)
			log_fatal("hand-over: edge process %ld did not release "
			    "the control port: %s", (long)old_pid, rc == 0 ?
			    "it closed the connection" : rc == 1 ? m->ho_step ==
			    HO_REFUSED ? m->text : "unexpected step" : why);
		released(m);
		free(m);
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

static void
new_close(void)
{
	ev_del(&new_io);
	close(new_io.fd);
	new_io.fd = -1;
}

/* The new process went before it took over, or failed: serve on. */
static void
new_lost(const char *why)
{
	if (state == EH_DRAINING) {
		log_info("hand-over: edge process %ld closed the hand-over "
		    "connection (%s)", (long)new_pid, why);
		new_close();
		return;
	}
	log_warn("hand-over to edge process %ld failed: %s; serving on",
	    (long)new_pid, why);
	if (state == EH_TAKEN)
		esvc_handing(0);
	new_close();
	state = EH_IDLE;
}

/* Every listener this process accepts on. */
struct fdlist {
	int	*fds;
	size_t	 n, cap;
	int	 failed;
};

static void
fd_add(int fd, void *arg)
{
	struct fdlist *l = arg;
	int *p;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		if ((p = realloc(l->fds, l->cap * sizeof(*p))) == NULL) {
			l->failed = 1;
			l->cap = l->n;
			return;
		}
		l->fds = p;
	}
	l->fds[l->n++] = fd;
}

/* HELLO: offer every listener, in messages of at most HOSOCK_FDS_MAX. */
static void
offer(void)
{
	struct fdlist l = { NULL, 0, 0, 0 };
	struct msg m;
	size_t i, k;

	fd_add(ectl_listener(), &l);
	esvc_each_listener(fd_add, &l);
	for (i = 0; i < l.n && !l.failed; i += k) {
		k = l.n - i < HOSOCK_FDS_MAX ? l.n - i : HOSOCK_FDS_MAX;
		msg_init(&m, FT_HANDOVER);
		msg_set_int(&m, FA_HO_STEP, HO_LISTENERS);
		msg_set_int(&m, FA_COUNT, k);
		l.failed = hosock_send(new_io.fd, &m, l.fds + i, k) == -1;
	}
	free(l.fds);
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_OFFERED);
	msg_set_int(&m, FA_COUNT, l.n);
	msg_set_int(&m, FA_SESSION, esess_peek_id());
	if (l.failed || hosock_send(new_io.fd, &m, NULL, 0) == -1) {
		new_lost("cannot send the listeners");
		return;
	}
	state = EH_OFFERED;
	log_info("hand-over: %zu listeners offered to edge process %ld", l.n,
	    (long)new_pid);
}

/* An FTP control session for the new process: this one's own, or one
 * of the process before it, still draining. */
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

static void
ftp_record(uint64_t id, const char *svc, const char *ip,
    const struct eagent *a, const struct eftp_ports *p)
{
	ftp_send(id, svc, ip, a->name, a->instance, p);
}

/* Nothing of this process's own waits for a link, a PROXY header or a
 * destination any more: hand the control port over and drain. */
static void
release(uint64_t now)
{
	const struct horec *r;
	struct msg m;
	char what[64], mainpid[32];

	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_RELEASE);
	msg_set_int(&m, FA_SESSION, esess_peek_id());
	if (hosock_send(new_io.fd, &m, NULL, 0) == -1) {
		new_lost(strerror(errno));
		return;
	}
	state = EH_DRAINING;
	esess_each_ftp(ftp_record);
	for (r = recs; r != NULL; r = r->next)
		ftp_send(r->id, r->svc, r->ip, r->agent, r->instance, &r->p);
	esvc_shutdown();
	ectl_drain();
	drain_end = drain_ms != 0 ? now + drain_ms : 0;
	if (drain_ms != 0)
		snprintf(what, sizeof(what), "at most %llu s",
		    (unsigned long long)(drain_ms / 1000));
	else
		snprintf(what, sizeof(what), "no time limit");
	log_info("hand-over: released to edge process %ld; draining %llu "
	    "sessions (%s)", (long)new_pid, (unsigned long long)esess_live(),
	    what);
	/* Under systemd the new process is the service's main one now. */
	snprintf(mainpid, sizeof(mainpid), "MAINPID=%ld", (long)new_pid);
	notify_send(mainpid);
}

static void
new_read(struct ev_io *io, uint32_t events)
{
	struct msg *m;
	int fds[HOSOCK_FDS_MAX];
	const char *why = "out of memory";
	size_t n;
	int rc = -1;

	(void)io;
	(void)events;
	if ((m = malloc(sizeof(*m))) != NULL &&
	    (rc = hosock_recv(new_io.fd, m, fds, &n, 0, &why)) == -2) {
		free(m);
		return;
	}
	if (rc == 1 && state == EH_HELLO && m->ho_step == HO_HELLO)
		offer();
	else if (rc == 1 && state == EH_OFFERED && m->ho_step == HO_TAKEN) {
		state = EH_TAKEN;
		esvc_handing(1);
		log_info("hand-over: edge process %ld took the listeners: no "
		    "new clients here", (long)new_pid);
	} else
		new_lost(rc == 0 ? "it closed the connection" : rc == 1 ?
		    "unexpected step" : why);
	free(m);
}

static void
lis_accept(struct ev_io *io, uint32_t events)
{
	char err[256];
	pid_t pid;
	int fd;

	(void)events;
	if ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK |
	    SOCK_CLOEXEC)) == -1)
		return;
	if (hosock_peer(fd, svc_uid, &pid, err, sizeof(err)) == -1)
		goto refuse;
	if (state != EH_IDLE) {
		snprintf(err, sizeof(err), "process %ld: this edge process has "
		    "handed over already", (long)pid);
		goto refuse;
	}
	new_pid = pid;
	ev_io_init(&new_io, fd, new_read);
	if (ev_set(&new_io, EPOLLIN) == -1) {
		close(fd);
		return;
	}
	state = EH_HELLO;
	log_info("hand-over: edge process %ld connected on %s", (long)pid, path);
	return;
refuse:
	log_warn("hand-over refused: %s", err);
	hosock_refuse(fd, err);
}

void
eho_tick(uint64_t now)
{
	uint64_t left = esess_live();
	char addr[NET_ADDRSTR];
	struct msg m;

	while (held_until != 0 && now >= held_until && nheld > 0) {
		net_fmt((struct sockaddr *)&held[--nheld].a.ss, addr,
		    sizeof(addr));
		log_warn("hand-over: listener on %s closed: no agent claimed it",
		    addr);
		close(held[nheld].fd);
	}
	if (state == EH_TAKEN && !esess_waiting() && !proxy_busy() &&
	    !eout_busy())
		release(now);
	if (state != EH_DRAINING)
		return;
	/* What drains behind this process counts too (a chain). */
	if (new_io.fd != -1 && left + old_sessions != status_sent &&
	    now - status_at >= 1000) {
		msg_init(&m, FT_HANDOVER);
		msg_set_int(&m, FA_HO_STEP, HO_STATUS);
		msg_set_int(&m, FA_COUNT, left + old_sessions);
		msg_set_int(&m, FA_PROCESSES, 1 + old_procs);
		(void)hosock_send(new_io.fd, &m, NULL, 0);
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
	if (state != EH_DRAINING || esess_live() > 0 || old_io.fd != -1)
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

/* The agent a record names, if it is connected here. */
static int
rec_agent(const struct horec *r, const struct eagent *a)
{
	return strcmp(r->agent, a->name) == 0 && r->instance == a->instance;
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
eho_ftp_ports(uint64_t id, const struct eagent *a, const char **svc)
{
	struct horec *r;

	for (r = recs; r != NULL; r = r->next)
		if (r->id == id && rec_agent(r, a)) {
			*svc = r->svc;
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
