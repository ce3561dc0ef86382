/* agent_handover.c - hand-over between agent processes
 * (agent_handover.h).
 *
 *   new					old
 *   HELLO	  ------------------------>	(checks the peer's uid)
 *		  <------------------------	LISTENERS (fds), OFFERED
 *   (starts with them; both accept now)
 *   TAKEN	  ------------------------>
 *   (connects to every edge, pushes its services; every edge answered:)
 *   RELEASE	  ------------------------>	stops accepting, withdraws
 *		  <------------------------	its services: WITHDRAWN
 *   pushes its services again (one refused		finishes its sessions
 *   beside the old one's is taken now)
 *		  <------------------------	STATUS ..., then exits
 *
 * Before RELEASE the old process has changed nothing: a new one that
 * fails leaves it serving. */
#include "agent/agent_handover.h"
#include "agent/agent_admin.h"
#include "agent/agent_cfg.h"
#include "agent/agent_edge.h"
#include "agent/agent_out.h"
#include "agent/agent_sess.h"
#include "common/ev.h"
#include "common/hosock.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

enum { AH_IDLE, AH_HELLO, AH_OFFERED, AH_TAKEN, AH_DRAINING };

static char **prog_argv;
static char prog[PATH_MAX];
static pid_t spawned;		/* aho_upgrade's child, until reaped */

/* The new process's side. */
static struct ev_io old_io = { -1, NULL, 0, 0 };
static pid_t old_pid;
static int old_released;	/* RELEASE sent */
static uint64_t release_by, old_sessions, old_procs;
static int lis_fd = -1;		/* bound; published at RELEASE */

/* The running process's side. */
static int state = AH_IDLE;
static struct ev_io lis_io = { -1, NULL, 0, 0 };
static struct ev_io new_io = { -1, NULL, 0, 0 };
static pid_t new_pid;
static uint64_t drain_end, status_at, status_sent = UINT64_MAX;

void
aho_init(char **argv)
{
	ssize_t n;

	prog_argv = argv;
	/* The path now: after a package upgrade /proc/self/exe names the
	 * old program, deleted. */
	if ((n = readlink("/proc/self/exe", prog, sizeof(prog) - 1)) == -1)
		n = 0;
	prog[n] = '\0';
}

/* --- the new process ---------------------------------------------------- */

void
aho_take(void)
{
	const char *path = agent_cfg.handover;
	uint64_t next;
	char err[512];
	int rc;

	if (path[0] == '\0')
		return;
	if ((rc = hosock_take(path, geteuid(), &old_io.fd, &old_pid, &next,
	    err, sizeof(err))) == -1)
		log_fatal("hand-over at %s failed: %s", path, err);
	if (rc == 0)
		log_info("hand-over: no agent running at %s: starting afresh",
		    path);
	else
		log_info("hand-over: listeners received from agent process %ld "
		    "at %s", (long)old_pid, path);
}

int
aho_listener(const struct net_addr *a)
{
	return hosock_claim(a);
}

static void lis_accept(struct ev_io *io, uint32_t events);

/* From now on a new process finds this one at the path. */
static void
publish(void)
{
	char err[512];

	if (hosock_publish(agent_cfg.handover, err, sizeof(err)) == -1) {
		log_err("handover_socket: %s: no hand-over to a next agent",
		    err);
		return;
	}
	ev_io_init(&lis_io, lis_fd, lis_accept);
	if (ev_set(&lis_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	log_info("hand-over: the next agent process can take over at %s",
	    agent_cfg.handover);
}

/* What the old process says, until it exits. */
static void
old_read(struct ev_io *io, uint32_t events)
{
	const char *why;
	struct msg *m;
	int rc;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && old_released && m->ho_step == HO_WITHDRAWN) {
		log_info("hand-over: agent process %ld withdrew its services: "
		    "new sessions come here", (long)old_pid);
		aedge_push_all();
	} else if (m != NULL && m->ho_step == HO_STATUS) {
		old_sessions = m->count;
		old_procs = (m->have & FA_BIT(FA_PROCESSES)) ? m->processes : 1;
	} else {
		log_info("hand-over: the old agent process %ld is gone (%s)",
		    (long)old_pid, rc == 0 ? "it exited" : m != NULL ?
		    "unexpected step" : why);
		ev_del(io);
		close(io->fd);
		io->fd = -1;
		old_sessions = old_procs = 0;
		/* Gone before it was released: its services went with it,
		 * and this process has its listeners and its own. */
		if (!old_released) {
			old_released = 1;
			publish();
		}
	}
}

int
aho_commit(void)
{
	struct net_addr a;
	char addr[NET_ADDRSTR], err[512];
	int fd;

	if (agent_cfg.handover[0] == '\0')
		return 0;
	/* What the old process listened on and this configuration does not. */
	while ((fd = hosock_unclaimed(&a)) != -1) {
		net_fmt((struct sockaddr *)&a.ss, addr, sizeof(addr));
		log_info("hand-over: listener on %s closed: not in this "
		    "configuration", addr);
		close(fd);
	}
	if ((lis_fd = hosock_listen(agent_cfg.handover, err, sizeof(err))) == -1)
		log_fatal("handover_socket: %s", err);
	if (old_io.fd == -1) {
		publish();
		return 0;
	}
	if (hosock_step(old_io.fd, HO_TAKEN, 0) == -1)
		log_fatal("hand-over: %s", strerror(errno));
	ev_io_init(&old_io, old_io.fd, old_read);
	if (ev_set(&old_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	release_by = ev_now_update() + 2 * agent_cfg.connect_timeout_ms;
	return 1;
}

/* --- the running process ------------------------------------------------ */

static void
new_lost(const char *why)
{
	if (state != AH_DRAINING) {
		log_warn("hand-over to agent process %ld failed: %s; serving on",
		    (long)new_pid, why);
		state = AH_IDLE;
	} else
		log_info("hand-over: agent process %ld closed the hand-over "
		    "connection (%s)", (long)new_pid, why);
	ev_del(&new_io);
	close(new_io.fd);
	new_io.fd = -1;
}

/* RELEASE: stop taking anything new, withdraw, drain. */
static void
drain(uint64_t now)
{
	char what[48] = "no drain timeout";

	state = AH_DRAINING;
	admin_stop();
	aout_unlisten();
	aedge_withdraw();
	(void)hosock_step(new_io.fd, HO_WITHDRAWN, 0);
	drain_end = agent_cfg.drain_s != 0 ? now +
	    (uint64_t)agent_cfg.drain_s * 1000 : 0;
	if (agent_cfg.drain_s != 0)
		snprintf(what, sizeof(what), "drain timeout %u s",
		    agent_cfg.drain_s);
	log_info("hand-over: released to agent process %ld; services "
	    "withdrawn; draining %zu sessions (%s)", (long)new_pid,
	    asess_count() + aout_count(), what);
	/* Under systemd the new process is the service's main one now. */
	(void)sd_notifyf(0, "MAINPID=%ld", (long)new_pid);
}

static void
new_read(struct ev_io *io, uint32_t events)
{
	struct hosock_fds l = { NULL, 0, 0, 0 };
	const char *why;
	struct msg *m;
	int rc, fds[2];
	size_t i, n;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && state == AH_HELLO && m->ho_step == HO_HELLO) {
		if ((fds[0] = admin_listener()) != -1)
			hosock_fds_add(fds[0], &l);
		for (i = 0, n = aout_listeners(fds); i < n; i++)
			hosock_fds_add(fds[i], &l);
		if (hosock_offer(io->fd, &l, 0) == -1) {
			new_lost("cannot send the listeners");
			return;
		}
		state = AH_OFFERED;
		log_info("hand-over: %zu listeners offered to agent process %ld",
		    l.n, (long)new_pid);
	} else if (m != NULL && state == AH_OFFERED && m->ho_step == HO_TAKEN) {
		state = AH_TAKEN;
		log_info("hand-over: agent process %ld runs; it takes over once "
		    "the edges have its services", (long)new_pid);
	} else if (m != NULL && state == AH_TAKEN && m->ho_step == HO_RELEASE)
		drain(ev_now());
	else
		new_lost(rc == 0 ? "it closed the connection" : m != NULL ?
		    "unexpected step" : why);
}

static void
lis_accept(struct ev_io *io, uint32_t events)
{
	pid_t pid;
	int fd;

	(void)events;
	if ((fd = hosock_accept(io->fd, geteuid(), state != AH_IDLE ?
	    "this agent process has handed over already" : NULL, &pid)) == -1)
		return;
	new_pid = pid;
	ev_io_init(&new_io, fd, new_read);
	if (ev_set(&new_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	state = AH_HELLO;
	log_info("hand-over: agent process %ld connected on %s", (long)pid,
	    agent_cfg.handover);
}

void
aho_tick(uint64_t now)
{
	uint64_t left = asess_count() + aout_count();
	int st;

	if (spawned > 0 && waitpid(spawned, &st, WNOHANG) == spawned) {
		log_warn("upgrade: agent process %ld exited (status %d)",
		    (long)spawned, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		spawned = 0;
	}
	/* Every edge took this process's services (or the time is up): the
	 * old one may withdraw its own. */
	if (old_io.fd != -1 && !old_released &&
	    (aedge_all_ready() || now >= release_by)) {
		if (!aedge_all_ready())
			log_warn("hand-over: not every edge answered within %llu "
			    "s; releasing agent process %ld all the same",
			    (unsigned long long)(2 *
			    agent_cfg.connect_timeout_ms / 1000),
			    (long)old_pid);
		if (hosock_step(old_io.fd, HO_RELEASE, 0) == 0) {
			old_released = 1;
			old_procs = 1;
			publish();
			log_info("hand-over: released agent process %ld: it "
			    "drains its sessions", (long)old_pid);
		}
	}
	if (state != AH_DRAINING)
		return;
	if (new_io.fd != -1 && left + old_sessions != status_sent &&
	    now - status_at >= 1000) {
		(void)hosock_status(new_io.fd, left + old_sessions, 1 + old_procs);
		status_sent = left + old_sessions;
		status_at = now;
	}
	if (drain_end != 0 && now >= drain_end && left > 0) {
		log_warn("drain timeout: cutting %llu sessions still running "
		    "after %u s", (unsigned long long)left, agent_cfg.drain_s);
		asess_stop("drain timeout");
		aout_stop();
		drain_end = 0;
	}
}

int
aho_draining(void)
{
	return state == AH_DRAINING;
}

int
aho_drained(void)
{
	if (state != AH_DRAINING || asess_count() + aout_count() > 0 ||
	    old_io.fd != -1)
		return 0;
	log_info("drained: no session left; exiting");
	return 1;
}

int
aho_upgrade(pid_t *pid, char *err, size_t errlen)
{
	sigset_t none;

	if (agent_cfg.handover[0] == '\0') {
		snprintf(err, errlen, "no handover_socket in [agent]");
		return -1;
	}
	if (state != AH_IDLE || spawned > 0 || lis_io.fd == -1 ||
	    prog[0] == '\0') {
		snprintf(err, errlen, "a hand-over is under way already");
		return -1;
	}
	if ((*pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	if (*pid == 0) {
		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		execv(prog, prog_argv);
		_exit(127);
	}
	spawned = *pid;
	log_info("upgrade: started %s as agent process %ld; it takes over at "
	    "%s", prog, (long)*pid, agent_cfg.handover);
	return 0;
}

void
aho_old(uint64_t *procs, uint64_t *sessions)
{
	*procs = old_procs;
	*sessions = old_sessions;
}
