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
static int held[HOSOCK_FDS_MAX];
static struct net_addr held_a[HOSOCK_FDS_MAX];
static size_t nheld;
static struct ev_io old_io = { -1, NULL, 0, 0 };
static pid_t old_pid;
static int old_released;	/* RELEASE sent */
static uint64_t release_by;
static uint64_t old_sessions, old_procs;
static int lis_fd = -1;		/* bound, published at RELEASE */

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
	 * old binary, deleted. */
	if ((n = readlink("/proc/self/exe", prog, sizeof(prog) - 1)) == -1)
		n = 0;
	prog[n] = '\0';
}

/* --- the new process ---------------------------------------------------- */

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
			return m->count == nheld ? NULL :
			    "fewer listeners than it offered";
		if (m->ho_step != HO_LISTENERS)
			return "unexpected step";
		for (i = 0; i < n; i++) {
			if (nheld == HOSOCK_FDS_MAX ||
			    hosock_listener(fds[i], &held_a[nheld]) == -1) {
				while (i < n)
					close(fds[i++]);
				return "not a listening TCP socket";
			}
			held[nheld++] = fds[i];
		}
	}
}

void
aho_take(void)
{
	struct msg *m;
	char err[512];
	const char *why;
	int rc;

	if (agent_cfg.handover[0] == '\0')
		return;
	if ((rc = hosock_connect(agent_cfg.handover, geteuid(), &old_io.fd, err,
	    sizeof(err))) == -1)
		log_fatal("handover_socket: %s", err);
	if (rc == 0) {
		log_info("hand-over: no agent running at %s: starting afresh",
		    agent_cfg.handover);
		return;
	}
	if (hosock_peer(old_io.fd, geteuid(), &old_pid, err, sizeof(err)) == -1)
		log_fatal("hand-over: %s refused: %s", agent_cfg.handover, err);
	log_info("hand-over: taking over from agent process %ld at %s",
	    (long)old_pid, agent_cfg.handover);
	if ((m = malloc(sizeof(*m))) == NULL)
		log_fatal("hand-over: out of memory");
	msg_init(m, FT_HANDOVER);
	msg_set_int(m, FA_HO_STEP, HO_HELLO);
	msg_set_int(m, FA_VERSION, FRAME_VERSION);
	if (hosock_send(old_io.fd, m, NULL, 0) == -1)
		log_fatal("hand-over: %s", strerror(errno));
	if ((why = take_listeners(m)) != NULL)
		log_fatal("hand-over from agent process %ld failed: %s",
		    (long)old_pid, why);
	free(m);
	log_info("hand-over: %zu listeners received from agent process %ld",
	    nheld, (long)old_pid);
}

int
aho_listener(const struct net_addr *a)
{
	size_t i;
	int fd;

	for (i = 0; i < nheld; i++)
		if (hosock_same(&held_a[i], a)) {
			fd = held[i];
			held[i] = held[--nheld];
			held_a[i] = held_a[nheld];
			return fd;
		}
	return -1;
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
		close(lis_fd);
		return;
	}
	ev_io_init(&lis_io, lis_fd, lis_accept);
	if (ev_set(&lis_io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	log_info("hand-over: the next agent process can take over at %s",
	    agent_cfg.handover);
}

static void old_read(struct ev_io *io, uint32_t events);

int
aho_commit(void)
{
	char addr[NET_ADDRSTR], err[512];

	if (agent_cfg.handover[0] == '\0')
		return 0;
	/* What the old process listened on and this configuration does not. */
	while (nheld > 0) {
		net_fmt((struct sockaddr *)&held_a[--nheld].ss, addr,
		    sizeof(addr));
		log_info("hand-over: listener on %s closed: not in this "
		    "configuration", addr);
		close(held[nheld]);
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

static void
old_gone(const char *why)
{
	log_info("hand-over: the old agent process %ld is gone (%s)",
	    (long)old_pid, why);
	ev_del(&old_io);
	close(old_io.fd);
	old_io.fd = -1;
	old_sessions = old_procs = 0;
	/* Gone before it was released: its services went with it, and
	 * this process has its listeners and its own services. */
	if (!old_released) {
		old_released = 1;
		publish();
	}
}

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
	if (rc == 1 && old_released && m->ho_step == HO_WITHDRAWN) {
		log_info("hand-over: agent process %ld withdrew its services: "
		    "new sessions come here", (long)old_pid);
		aedge_push_all();
	} else if (rc == 1 && m->ho_step == HO_STATUS) {
		old_sessions = m->count;
		old_procs = (m->have & FA_BIT(FA_PROCESSES)) ? m->processes : 1;
	} else
		old_gone(rc == 0 ? "it exited" : rc == 1 ? "unexpected step" : why);
	free(m);
}

/* Every edge took this process's services (or the time is up): the old
 * one may withdraw its own. */
static void
release(void)
{
	if (!aedge_all_ready())
		log_warn("hand-over: not every edge answered within %llu s; "
		    "releasing agent process %ld all the same",
		    (unsigned long long)(2 * agent_cfg.connect_timeout_ms / 1000),
		    (long)old_pid);
	if (hosock_step(old_io.fd, HO_RELEASE, 0) == -1) {
		old_gone(strerror(errno));
		return;
	}
	old_released = 1;
	old_procs = 1;
	publish();
	log_info("hand-over: released agent process %ld: it drains its "
	    "sessions", (long)old_pid);
}

/* --- the running process ------------------------------------------------ */

static void
new_lost(const char *why)
{
	if (state != AH_DRAINING)
		log_warn("hand-over to agent process %ld failed: %s; serving on",
		    (long)new_pid, why);
	else
		log_info("hand-over: agent process %ld closed the hand-over "
		    "connection (%s)", (long)new_pid, why);
	ev_del(&new_io);
	close(new_io.fd);
	new_io.fd = -1;
	if (state != AH_DRAINING)
		state = AH_IDLE;
}

static void
offer(void)
{
	int fds[3];
	size_t n = 0;
	struct msg m;

	if ((fds[n] = admin_listener()) != -1)
		n++;
	n += aout_listeners(fds + n);
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_LISTENERS);
	msg_set_int(&m, FA_COUNT, n);
	if (n > 0 && hosock_send(new_io.fd, &m, fds, n) == -1) {
		new_lost(strerror(errno));
		return;
	}
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_OFFERED);
	msg_set_int(&m, FA_COUNT, n);
	if (hosock_send(new_io.fd, &m, NULL, 0) == -1) {
		new_lost(strerror(errno));
		return;
	}
	state = AH_OFFERED;
	log_info("hand-over: %zu listeners offered to agent process %ld", n,
	    (long)new_pid);
}

/* RELEASE: stop taking anything new, withdraw, drain. */
static void
drain(uint64_t now)
{
	char what[64];

	state = AH_DRAINING;
	admin_stop();
	aout_unlisten();
	aedge_withdraw();
	(void)hosock_step(new_io.fd, HO_WITHDRAWN, 0);
	drain_end = agent_cfg.drain_s != 0 ? now +
	    (uint64_t)agent_cfg.drain_s * 1000 : 0;
	if (agent_cfg.drain_s != 0)
		snprintf(what, sizeof(what), "at most %u s", agent_cfg.drain_s);
	else
		snprintf(what, sizeof(what), "no time limit");
	log_info("hand-over: released to agent process %ld; services "
	    "withdrawn; draining %zu sessions (%s)", (long)new_pid,
	    asess_count() + aout_count(), what);
	/* Under systemd the new process is the service's main one now. */
	(void)sd_notifyf(0, "MAINPID=%ld", (long)new_pid);
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
	if (rc == 1 && state == AH_HELLO && m->ho_step == HO_HELLO)
		offer();
	else if (rc == 1 && state == AH_OFFERED && m->ho_step == HO_TAKEN) {
		state = AH_TAKEN;
		log_info("hand-over: agent process %ld runs; it takes over once "
		    "the edges have its services", (long)new_pid);
	} else if (rc == 1 && state == AH_TAKEN && m->ho_step == HO_RELEASE)
		drain(ev_now());
	else
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
	if (hosock_peer(fd, geteuid(), &pid, err, sizeof(err)) == -1)
		goto refuse;
	if (state != AH_IDLE) {
		snprintf(err, sizeof(err), "process %ld: this agent process "
		    "has handed over already", (long)pid);
		goto refuse;
	}
	new_pid = pid;
	ev_io_init(&new_io, fd, new_read);
	if (ev_set(&new_io, EPOLLIN) == -1) {
		close(fd);
		return;
	}
	state = AH_HELLO;
	log_info("hand-over: agent process %ld connected on %s", (long)pid,
	    agent_cfg.handover);
	return;
refuse:
	log_warn("hand-over refused: %s", err);
	hosock_refuse(fd, err);
}

void
aho_tick(uint64_t now)
{
	uint64_t left = asess_count() + aout_count();
	struct msg m;
	int st;

	if (spawned > 0 && waitpid(spawned, &st, WNOHANG) == spawned) {
		log_warn("upgrade: agent process %ld exited (status %d)",
		    (long)spawned, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		spawned = 0;
	}
	if (old_io.fd != -1 && !old_released &&
	    (aedge_all_ready() || now >= release_by))
		release();
	if (state != AH_DRAINING)
		return;
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
