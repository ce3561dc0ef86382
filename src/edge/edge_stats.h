/* edge_stats.h - the edge's counters. The edge has no admin port and is
 * never scraped: its counters travel to the agents in STATS frames, as
 * "name=value" tokens (docs/protocol.md, "Counters"), and each agent
 * publishes them in its /metrics with an edge label. */
#ifndef SP_EDGE_STATS_H
#define SP_EDGE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"

struct edge_stats {
	uint64_t	 sessions_accepted;	/* clients accepted */
	uint64_t	 sessions_joined;	/* put on a data link */
	uint64_t	 sessions_refused;	/* refused by the agent */
	uint64_t	 sessions_agent_lost;	/* no agent left to take it */
	uint64_t	 bytes_from_clients;	/* of sessions that ended */
	uint64_t	 bytes_to_clients;
	uint64_t	 control_accepted;	/* connections on the control port */
	uint64_t	 control_refused;	/* failed TLS, greeting or time-out */
	uint64_t	 agents_connected;	/* gauge */
	uint64_t	 data_links_refused;
	uint64_t	 links_mux;		/* multiplexed links that came up */
	uint64_t	 links_plain;		/* plain links that proved right */
	uint64_t	 links_reused;		/* plain links parked again */
};

extern struct edge_stats edge_stats;

/* Append " name=value" (no space when out is empty) to out, which stays
 * NUL-terminated within outlen. -1 (out unchanged) if it does not fit;
 * names are the edge's own, [a-z0-9_]. */
int	estats_put(char *out, size_t outlen, const char *name, uint64_t value);
/* The STATS frame that answers STATS_REQ: every counter. */
void	estats_msg(struct msg *m);

#endif
