/* edge_dial.h - the dialler: the one process of the edge that connects
 * out.
 *
 * Forked before the sandbox, like the key process, it takes requests from
 * the relay process on a socket pair (an outbound session, or an
 * active-mode FTP data connection), resolves, connects, and hands the
 * socket back (SCM_RIGHTS); it never reads a byte of a session. An
 * outbound request carries the asking agent's policy, which the dialler
 * checks on the name and on every address the name resolves to. Whatever
 * the relay process asks, the dialler holds to the DMZ operator's limits
 * from the command line, which nothing from the network can change: no
 * address in --dial-deny, outbound (and names) only with
 * --allow-outbound, active FTP only to a numeric address and a port from
 * 1024, source port 20 only for it and only with --active-ftp-port20. The
 * relay process's filter never allows connect(): a compromised relay
 * process still cannot reach the inside.
 *
 * Each request the dialler takes runs in a short-lived worker process
 * (at most DIAL_WORKERS at once, each ended after DIAL_SECS): a slow name
 * or a silent address holds up no other request, blocking calls need no
 * state machine, and the resolver, which parses DNS answers from outside,
 * runs where a crash ends one request. */
#ifndef SP_EDGE_DIAL_H
#define SP_EDGE_DIAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cidr.h"
#include "common/frame.h"
#include "edge/edge_sandbox.h"

#define DIAL_ADDRS	8	/* addresses of a name tried, at most */
#define DIAL_WORKERS	64	/* requests at work at once */
#define DIAL_SECS	10	/* a worker's time to resolve and connect */

/* The default --dial-deny: loopback, link-local, private, shared,
 * unique-local and unspecified addresses. */
#define DIAL_DENY_DEFAULT "0.0.0.0/8, 127.0.0.0/8, 10.0.0.0/8, " \
	"172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10, " \
	"::/128, ::1/128, fe80::/10, fc00::/7"

enum dial_why { DW_OUTBOUND = 1, DW_ACTIVE_FTP = 2 };

/* A request: one SOCK_SEQPACKET message of exactly this size. */
struct dial_req {
	uint64_t	 id;		/* the relay's, not 0 */
	uint8_t		 why;		/* enum dial_why */
	uint16_t	 port;
	char		 host[MSG_HOST_MAX];	/* a name or numeric address */
	/* active FTP: the source, its port 0 or 20; family 0: any */
	struct sockaddr_storage src;
	char		 policy[MSG_POLICY_MAX];	/* outbound: OUT_ALLOW */
};

/* An answer: one message, the connected socket with it when err is 0.
 * err EACCES: not allowed (the policy, the operator's limits). */
struct dial_rep {
	uint64_t	 id;
	int32_t		 err;		/* 0 or an errno */
	char		 text[384];	/* what failed, for the logs */
};

/* Room for the one descriptor an answer carries (SCM_RIGHTS). */
union dial_cmsg {
	struct cmsghdr	 h;
	char		 b[CMSG_SPACE(sizeof(int))];
};

/* The operator's limits, from the command line. */
struct dial_conf {
	struct cidr_list deny;		/* --dial-deny */
	int		 outbound;	/* --allow-outbound */
	int		 port20;	/* --active-ftp-port20 */
	const struct sandbox_conf *sc;	/* the dialler's sandbox */
};

/* Whether the dialler takes request q (n bytes) under c at all. 0, or
 * -1 with why. Pure: every request passes here first. */
int	dial_check(const struct dial_conf *c, const struct dial_req *q,
	    size_t n, char *why, size_t whylen);
/* 1 if c's --dial-deny holds sa (IPv4-mapped IPv6 as IPv4). */
int	dial_denied(const struct dial_conf *c, const struct sockaddr *sa);
/* Fork the dialler (c must outlive the call only): the relay process's
 * end of the socket pair (edge_out.c speaks on it), or -1 with err. */
int	dial_fork(const struct dial_conf *c, char *err, size_t errlen);

#endif
