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
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static char **prog_argv;
static char prog[PATH_MAX];
static pid_t spawned;		/* aho_upgrade's child, until reaped */

/* The new process's side. */
static struct hosock_old old = { .io.fd = -1 };
static int old_released;	/* RELEASE sent */
static uint64_t release_by;
static int lis_fd = -1;		/* bound; published at RELEASE */

/* The running process's side. */
static struct hosock_new nxt = { .lis.fd = -1, .io.fd = -1,
    .status_sent = UINT64_MAX };
static const struct hosock_ops ops;	/* below, past the steps it names */

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
	if (agent_cfg.handover[0] != '\0')
		hosock_takeover(&old, &ops, agent_cfg.handover, geteuid());
}

int
aho_listener(const struct net_addr *a)
{
	return hosock_claim(a);
}

/* From now on a new process finds this one at the path. */
static void
publish(void)
{
	char err[512];

	if (hosock_serve(&nxt, &ops, lis_fd, agent_cfg.handover, geteuid(),
	    err, sizeof(err)) == -1)
		log_err("handover_socket: %s: no hand-over to a next agent",
		    err);
}

/* Once released, the old process withdraws its services: the edges
 * take this one's in their place. */
static int
old_step(const struct msg *m)
{
	if (!old_released || m->ho_step != HO_WITHDRAWN)
		return -1;
	log_info("hand-over: agent process %ld withdrew its services: new "
	    "sessions come here", (long)old.pid);
	aedge_push_all();
	return 0;
}

static void
old_gone(const char *why)
{
	log_info("hand-over: the old agent process %ld is gone (%s)",
	    (long)old.pid, why);
	/* Gone before it was released: its services went with it, and this
	 * process has its listeners and its own. */
	if (!old_released) {
		old_released = 1;
		publish();
	}
}

int
aho_commit(void)
{
	char err[512];

	if (agent_cfg.handover[0] == '\0')
		return 0;
	/* What the old process listened on and this configuration does not. */
	hosock_drop(LOG_INFO, "not in this configuration");
	if ((lis_fd = hosock_listen(agent_cfg.handover, err, sizeof(err))) == -1)
		log_fatal("handover_socket: %s", err);
	if (old.io.fd == -1) {
		publish();
		return 0;
	}
	if (hosock_step(old.io.fd, HO_TAKEN, 0) == -1)
		log_fatal("hand-over: %s", strerror(errno));
	hosock_watch(&old);
	release_by = ev_now_update() + 2 * agent_cfg.connect_timeout_ms;
	return 1;
}

/* --- the running process ------------------------------------------------ */

/* RELEASE: stop taking anything new, withdraw, drain. */
static void
drain(uint64_t now)
{
	char what[48];

	hosock_drain(&nxt, now, (uint64_t)agent_cfg.drain_s * 1000, what,
	    sizeof(what));
	admin_stop();
	aout_unlisten();
	aedge_withdraw();
	(void)hosock_step(nxt.io.fd, HO_WITHDRAWN, 0);
	log_info("hand-over: released to agent process %ld; services "
	    "withdrawn; draining %zu sessions (%s)", (long)nxt.pid,
	    asess_count() + aout_count(), what);
	/* Under systemd the new process is the service's main one now. */
	(void)sd_notifyf(0, "MAINPID=%ld", (long)nxt.pid);
}

static uint64_t
offer(struct hosock_fds *l)
{
	int fds[2];
	size_t i, n;

	if ((fds[0] = admin_listener()) != -1)
		hosock_fds_add(fds[0], l);
	for (i = 0, n = aout_listeners(fds); i < n; i++)
		hosock_fds_add(fds[i], l);
	return 0;
}

static int
new_step(const struct msg *m)
{
	if (nxt.state == HOSOCK_OFFERED && m->ho_step == HO_TAKEN) {
		nxt.state = HOSOCK_TAKEN;
		log_info("hand-over: agent process %ld runs; it takes over once "
		    "the edges have its services", (long)nxt.pid);
	} else if (nxt.state == HOSOCK_TAKEN && m->ho_step == HO_RELEASE)
		drain(ev_now());
	else
		return -1;
	return 0;
}

static const struct hosock_ops ops = {
	"agent", offer, new_step, NULL, old_step, old_gone
};

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
	if (old.io.fd != -1 && !old_released &&
	    (aedge_all_ready() || now >= release_by)) {
		if (!aedge_all_ready())
			log_warn("hand-over: not every edge answered within %llu "
			    "s; releasing agent process %ld all the same",
			    (unsigned long long)(2 *
			    agent_cfg.connect_timeout_ms / 1000),
			    (long)old.pid);
		if (hosock_step(old.io.fd, HO_RELEASE, 0) == 0) {
			old_released = 1;
			old.procs = 1;
			publish();
			log_info("hand-over: released agent process %ld: it "
			    "drains its sessions", (long)old.pid);
		}
	}
	if (hosock_tick(&nxt, &old, now, left)) {
		asess_stop("drain timeout");
		aout_stop();
		nxt.drain_end = 0;
	}
}

int
aho_draining(void)
{
	return nxt.state == HOSOCK_DRAINING;
}

int
aho_drained(void)
{
	return hosock_drained(&nxt, &old, asess_count() + aout_count());
}

int
aho_upgrade(pid_t *pid, char *err, size_t errlen)
{
	sigset_t none;

	if (agent_cfg.handover[0] == '\0') {
		snprintf(err, errlen, "no handover_socket in [agent]");
		return -1;
	}
	if (nxt.state != HOSOCK_IDLE || spawned > 0 || nxt.lis.fd == -1 ||
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
	*procs = old.procs;
	*sessions = old.sessions;
}
