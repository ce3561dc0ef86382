/* tsrc.h - source = client: a service's backends are dialled from the
 * partner's own address (IP_TRANSPARENT, as HAProxy's usesrc clientip),
 * so an unmodified server logs and filters the partner, not the agent.
 *
 * It needs CAP_NET_ADMIN and routing that brings the backend's replies
 * back to this host and delivers them here (docs/deployment.md). Both
 * are checked when the configuration is loaded: a service whose check
 * fails is refused (not pushed to the edges, so partners are turned
 * away at once instead of hanging), with what is missing in the log.
 *
 * The partner's address is the edge's word, and the edge may be hostile:
 * never a loopback, unspecified, link-local, multicast or reserved
 * address, one of this host's own, one in a backend's own network, or
 * one in the service's source_deny (by default the private ranges). */
#ifndef SP_TSRC_H
#define SP_TSRC_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_cfg.h"
#include "common/net.h"

/* Check every service of c with source = client or client-port: sets
 * its refused text (and logs it) when it cannot work, else builds its
 * list of addresses never to use. */
void	tsrc_check(struct cfg *c);
/* The address to dial backend (of service s) from, for a partner at
 * ip:port: 0 with *src set; -1 with why: a forbidden address (refuse
 * the session); -2 with why: the backend has another address family. */
int	tsrc_source(const struct cfg_service *s, const struct net_addr *backend,
	    const char *ip, uint16_t port, struct net_addr *src, char *why,
	    size_t whylen);

#endif
