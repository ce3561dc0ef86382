/* agent_out.h - the outbound proxies for inside clients: SOCKS5 (RFC
 * 1928/1929) and HTTP CONNECT listeners on the agent. A request goes to
 * an edge on its control channel (OUT_REQ); the edge connects and opens
 * the session on a data link like any other (SESS_OPEN, kind outbound),
 * or answers OUT_FAIL. */
#ifndef SP_AGENT_OUT_H
#define SP_AGENT_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/frame.h"
#include "common/net.h"

struct aedge;

/* Listen (or take the listeners a hand-over brought). 0 or -1. */
int	aout_start(void);
/* Hand-over: the listeners' fds (at most 2) into fds, how many; stop
 * accepting on them; clients not yet asked for at an edge, and asked. */
size_t	aout_listeners(int *fds);
void	aout_unlisten(void);
size_t	aout_count(void);
void	aout_tick(uint64_t now);
void	aout_stop(void);

/* An inside client whose request the edge connected (SESS_OPEN for
 * request): its socket and what the session logs. */
struct aout_claim {
	uint64_t	 id;
	int		 fd;
	const char	*proto;		/* "socks5" or "http-connect" */
	char		 client[NET_ADDRSTR];
	char		 dest[MSG_HOST_MAX + 16];
	uint64_t	 t_start;
	struct buf	 reply;		/* our "connected" for the client */
};
/* Take the client waiting on e for request: 0 with c filled (the client
 * is the caller's from here), -1 if e has no such request. */
int	aout_claim(struct aedge *e, uint64_t request, struct aout_claim *c);
/* 1 if we gave request up before the edge answered (one of the last
 * 1,024):
 * its late answer is no protocol violation. */
int	aout_given_up(uint64_t request);
/* OUT_FAIL from e: tell the client and record it. */
void	aout_failed(struct aedge *e, const struct msg *m);
/* e's control channel went: its requests still waiting fail. */
void	aout_edge_lost(struct aedge *e);

/* One finished outbound session, for the log and the audit trail. All
 * strings are set ("-" when unknown). */
struct aout_record {
	uint64_t	 id;
	const char	*proto;		/* "socks5" or "http-connect" */
	const char	*client;	/* inside source address:port */
	const char	*dest;		/* as requested, host:port */
	const char	*addr;		/* what the edge connected to */
	const char	*edge;
	uint64_t	 bytes_out;	/* inside -> destination */
	uint64_t	 bytes_in;	/* destination -> inside */
	uint64_t	 duration_ms;
	const char	*outcome;	/* "ok", "refused", "failed", "cut" */
	int		 code;		/* SOCKS reply code given */
	const char	*reason;
};
void	aout_audit(const struct aout_record *r);

#endif
