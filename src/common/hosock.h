/* hosock.h - the hand-over socket: how a new process of a daemon finds
 * the one running on the same host and takes its listening sockets over
 * (docs/protocol.md, "Hand-over").
 *
 * The running process listens on a SOCK_SEQPACKET Unix socket at a path
 * (mode 0600, in a directory that only root or the service's user may
 * write); a new process started with the same path connects to it. Each
 * side takes the other only if it runs as the service's user or as root
 * (SO_PEERCRED). Every message is one HANDOVER frame (frame.h), decoded
 * and checked here as input from a peer that may be hostile; only
 * HO_LISTENERS carries descriptors (SCM_RIGHTS), and a descriptor is
 * taken only if it is a listening TCP socket. Both daemons use this; what
 * each hands over is theirs (edge_handover.c, agent_handover.c). */
#ifndef SP_HOSOCK_H
#define SP_HOSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/ev.h"
#include "common/frame.h"
#include "common/net.h"

#define HOSOCK_FDS_MAX	128	/* listeners in one message */
#define HOSOCK_MSG_MAX	2048	/* bytes of one message */
#define HOSOCK_WAIT_MS	10000	/* for one step of the other side */

/* Listen for the next hand-over: a socket bound to a temporary name
 * beside path, mode 0600. The fd (non-blocking), or -1 with err. */
int	hosock_listen(const char *path, char *err, size_t errlen);
/* Rename it over path, replacing the socket of the process before: from
 * now on a new process finds this one (never a half-made socket). 0, or
 * -1 with err. */
int	hosock_publish(const char *path, char *err, size_t errlen);
/* Connect to the process listening at path, after checking that path's
 * directory is owned by root or uid and writable by nobody else. 1 with
 * *fd, 0 if nobody listens there (no such socket, or refused: start
 * afresh), -1 with err. */
int	hosock_connect(const char *path, uid_t uid, int *fd, char *err,
	    size_t errlen);
/* The peer of fd must run as uid or as root. 0 with its *pid, or -1
 * with err. */
int	hosock_peer(int fd, uid_t uid, pid_t *pid, char *err, size_t errlen);
/* Send m, with n listeners attached (HO_LISTENERS only), waiting at most
 * HOSOCK_WAIT_MS for room. 0, or -1 with errno. */
int	hosock_send(int fd, const struct msg *m, const int *fds, size_t n);
/* Send a message of just a step (and COUNT, unless count is 0). 0 or -1. */
int	hosock_step(int fd, uint8_t step, uint64_t count);
/* Receive one message, waiting at most wait_ms (0: only what is there);
 * listeners attached land in fds[HOSOCK_FDS_MAX], *nfds of them. 1 with
 * m checked (hosock_check), 0 if the peer closed, -1 with why (what was
 * attached is closed; a time-out too), -2 if wait_ms is 0 and nothing is
 * there yet. */
int	hosock_recv(int fd, struct msg *m, int *fds, size_t *nfds,
	    int wait_ms, const char **why);
/* hosock_recv into one message of this module's (the daemons are single
 * threaded; struct msg is large), what it returned in *rc: the message,
 * valid until the next call, or NULL (*rc 0, -1 with *why, or -2). */
struct msg *hosock_read(int fd, int wait_ms, int *rc, const char **why);

/* --- the new process ------------------------------------------------ */

/* Take over from the process running at path, if one does: connect
 * (hosock_connect), check that it runs as uid or root, say HELLO and
 * receive its listeners, which are kept here until claimed. 1 with *fd
 * the connection to it, *pid, and *next the session id OFFERED carried
 * (0 if none); 0 if nobody listens there; -1 with err (nothing kept). */
int	hosock_take(const char *path, uid_t uid, int *fd, pid_t *pid,
	    uint64_t *next, char *err, size_t errlen);
/* The listener taken for address a (the caller owns it), or -1. */
int	hosock_claim(const struct net_addr *a);
/* A listener nobody claimed, its address in *a (the caller closes it),
 * or -1 when none is left. */
int	hosock_unclaimed(struct net_addr *a);

/* --- the running process -------------------------------------------- */

/* A process connecting on the listening socket lfd: its connection (and
 * *pid) if it runs as uid or root and busy is NULL. Otherwise it gets
 * HO_REFUSED with why (busy, or whom it runs as), logged, and the
 * connection is closed once its first message is read (closed with that
 * unread, the socket would reset the peer before it read why). -1 then,
 * or when nobody was there. */
int	hosock_accept(int lfd, uid_t uid, const char *busy, pid_t *pid);
/* Every listener this process accepts on, gathered (a callback for the
 * modules that own them) and offered: LISTENERS of at most
 * HOSOCK_FDS_MAX each, then OFFERED with next (0: none). */
struct hosock_fds {
	int	*fds;
	size_t	 n, cap;
	int	 failed;
};
void	hosock_fds_add(int fd, void *arg);
int	hosock_offer(int fd, struct hosock_fds *l, uint64_t next);
/* STATUS: sessions still running here and behind, processes draining
 * (this one and those behind it). */
int	hosock_status(int fd, uint64_t sessions, uint64_t procs);

/* --- a daemon's hand-over: the steps both daemons take ----------------- */

/* Where a running process stands towards the next one. */
enum hosock_state {
	HOSOCK_IDLE,		/* no new process connected */
	HOSOCK_HELLO,		/* one connected: HELLO comes next */
	HOSOCK_OFFERED,		/* it has the listeners */
	HOSOCK_TAKEN,		/* it runs with them */
	HOSOCK_DRAINING		/* released: this one finishes its sessions */
};

/* What a daemon does at the steps that are its own. */
struct hosock_ops {
	const char	*who;	/* "edge", "agent": in log lines */
	/* The running process. HELLO: every listener into l; the first
	 * session id the new process may use (0: none). */
	uint64_t	(*offer)(struct hosock_fds *l);
	/* A message past HELLO: 0 if the state expects it (the state moves
	 * on), -1 if not (the new process is then lost). */
	int		(*step)(const struct msg *m);
	/* The new process goes: undo what the state did (NULL: nothing). */
	void		(*lost)(void);
	/* The new process. A message of the old one past STATUS: 0 if
	 * expected, -1 if not (it is then gone). */
	int		(*old_step)(const struct msg *m);
	/* The old one is gone (closed here), why. */
	void		(*old_gone)(const char *why);
};

/* The new process's side: the process it took over from, until that
 * one exits (io.fd -1: none, or gone). */
struct hosock_old {
	struct ev_io	 io;
	const struct hosock_ops *ops;
	pid_t		 pid;
	uint64_t	 next;		/* the session id OFFERED carried */
	uint64_t	 sessions;	/* its last STATUS */
	uint64_t	 procs;
};

/* The running process's side: the process it hands over to. */
struct hosock_new {
	struct ev_io	 lis;		/* where it connects (fd -1: none) */
	struct ev_io	 io;		/* the one that did */
	const struct hosock_ops *ops;
	const char	*path;
	uid_t		 uid;
	enum hosock_state state;
	pid_t		 pid;
	uint64_t	 drain_ms;	/* 0: no limit */
	uint64_t	 drain_end;
	uint64_t	 status_at;
	uint64_t	 status_sent;	/* UINT64_MAX: none yet */
};

/* Take over from the process running at path (hosock_take), logged; a
 * failure is fatal. o->io.fd is -1 if nobody runs there. */
void	hosock_takeover(struct hosock_old *o, const struct hosock_ops *ops,
	    const char *path, uid_t uid);
/* Read what the old process says until it exits (ops->old_step). */
void	hosock_watch(struct hosock_old *o);
/* Publish lfd (hosock_listen's) at path and accept the next process on
 * it. 0, or -1 with err. */
int	hosock_serve(struct hosock_new *n, const struct hosock_ops *ops, int lfd,
	    const char *path, uid_t uid, char *err, size_t errlen);
/* The new process went or failed, why: logged, closed; before DRAINING
 * this one serves on (IDLE). */
void	hosock_lost(struct hosock_new *n, const char *why);
/* Released: DRAINING, for drain_ms from now (0: no limit), which what
 * says for the log. */
void	hosock_drain(struct hosock_new *n, uint64_t now, uint64_t drain_ms,
	    char *what, size_t whatlen);
/* Each tick: while DRAINING, STATUS to the new process when the count
 * of left sessions here and of those behind (o) changed, at most once a
 * second. 1 when the drain time-out has passed with sessions left
 * (logged: the caller cuts them), else 0. */
int	hosock_tick(struct hosock_new *n, const struct hosock_old *o,
	    uint64_t now, uint64_t left);
/* 1 (logged) once this process drained and left sessions and those
 * draining behind it (o) are all gone: it may exit. */
int	hosock_drained(const struct hosock_new *n, const struct hosock_old *o,
	    uint64_t left);
/* Close every listener nobody claimed, each logged at level with why. */
void	hosock_drop(int level, const char *why);

/* Decode p[0..n) as a HANDOVER frame that arrived with nfds descriptors,
 * and check that its step has what it needs. 0, or -1 with why. */
int	hosock_check(const uint8_t *p, size_t n, size_t nfds, struct msg *m,
	    const char **why);
/* 0 with its address in *a if fd is a listening TCP socket, else -1. */
int	hosock_listener(int fd, struct net_addr *a);
/* 1 if a and b are the same address and port. */
int	hosock_same(const struct net_addr *a, const struct net_addr *b);

#endif
