/* sess_check.h - what the agent makes of a SESS_OPEN from an edge, as far
 * as the frame and the agent's configuration tell: a pure function, no
 * I/O, so it is unit-tested and fuzzed alone (what only the running
 * agent knows, an outbound request or an FTP control session, is checked
 * after it, in agent_sess.c and agent_ftp.c).
 *
 * Everything in SESS_OPEN is the edge's word, and the edge may be hostile
 * (docs/security.md). A session is served only when its kind has what it
 * needs; its service is one of the agent's own (FTP data: an FTP service,
 * on a port of its passive range; FTP active data: an FTP service with
 * active mode); its client and local addresses are
 * numeric addresses a TCP peer can have, so that they cannot become
 * anything but an address in a PROXY header, a log or the audit trail;
 * and its client passes the policy the agent gave the service (allow,
 * deny), which the edge was to enforce: an edge that lies about a client
 * cannot pass an inside address to a backend that the service's policy
 * keeps out. An outbound session names an address the edge connected to,
 * numeric, and only an agent with [outbound] has any. */
#ifndef SP_SESS_CHECK_H
#define SP_SESS_CHECK_H

#include <stdint.h>
#include <sys/socket.h>

#include "agent/agent_cfg.h"

struct scheck {
	const struct cfg_service *svc;	/* client, FTP data: its service */
	struct sockaddr_storage client;	/* client, FTP data */
	struct sockaddr_storage local;	/* ss_family 0: not said */
	const char	*why;		/* -1: what is wrong */
};

/* Check SESS_OPEN m against cfg. 0 with r filled, or -1 with r->why: the
 * edge sent what a correct edge never sends (a violation). */
int	scheck_open(const struct cfg *cfg, const struct msg *m,
	    struct scheck *r);
/* ip (numeric IPv4 or IPv6) and port (not 0) as a socket address, if a
 * TCP peer can have it: not unspecified, multicast or broadcast, nor an
 * IPv4-mapped or IPv4-compatible form of those. 0 or -1. */
int	scheck_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss);
/* A numeric "IPv4:port" or "[IPv6]:port", port not 0. 0 or -1. */
int	scheck_dest(const char *s);

#endif
