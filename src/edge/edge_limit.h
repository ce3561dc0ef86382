/* edge_limit.h - the edge's limits on everything that comes from outside,
 * and the counters of how often each was hit. */
#ifndef SP_EDGE_LIMIT_H
#define SP_EDGE_LIMIT_H

#include <stdint.h>

enum lim_kind {
	LIM_SESSIONS,		/* total client sessions */
	LIM_PENDING,		/* clients of a service waiting for a data link */
	LIM_PER_IP,		/* sessions from one client address */
	LIM_CLAIM_TIMEOUT,	/* no data link free in time */
	LIM_HANDSHAKES,		/* unidentified control-port connections */
	LIM_HANDSHAKE_TIMEOUT,	/* TLS + first frame not done in time */
	LIM_FRAME,		/* oversized or malformed frame */
	LIM_IDLE,		/* session idle longer than its service allows */
	LIM_FDS,		/* out of file descriptors */
	LIM_LINKS,		/* data links per agent */
	LIM_BANNED,		/* a banned client refused */
	LIM_BANS,		/* bans held */
	LIM_COUNT
};

struct edge_limits {
	uint64_t	max_sessions;
	uint64_t	max_pending;
	uint64_t	max_per_ip;
	uint64_t	max_handshakes;
	uint64_t	handshake_ms;
	uint64_t	claim_ms;
	uint64_t	max_frame;
	uint64_t	max_links;
	uint64_t	max_bans;
};

#define LIM_SESSIONS_DEFAULT	10000

/* The defaults until the command line says otherwise (edge_main.c). */
extern struct edge_limits lim;
extern uint64_t lim_counter[LIM_COUNT];

/* The name of a limit, for logs and metrics ("sessions", "per_ip", ...). */
const char *lim_name(enum lim_kind k);
/* Count a hit and log it, at most once a second per kind; lines that are
 * held back are counted in the next one, so a flood cannot flood the log. */
void	lim_hit(enum lim_kind k, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
