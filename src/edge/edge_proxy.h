/* edge_proxy.h - the PROXY header a front load balancer sends before a
 * client's bytes (services with accept_proxy_from): read exactly, within
 * EDGE_PROXY_MS, and then the address in it is the client's everywhere. */
#ifndef SP_EDGE_PROXY_H
#define SP_EDGE_PROXY_H

#include <stdint.h>

#include "common/net.h"

#define EDGE_PROXY_MS		5000	/* a header must arrive within */
#define EDGE_PROXY_PENDING_MAX	1024	/* connections waiting for one */

struct esvc;

/* Read the PROXY header on fd (taken), a connection to svc from peer. */
void	proxy_start(struct esvc *svc, int fd, const struct net_addr *peer);
/* svc is closing: drop its connections still waiting for a header. */
void	proxy_svc_gone(const struct esvc *svc);
void	proxy_tick(uint64_t now);
/* 1 while a connection waits for its header. */
int	proxy_busy(void);
void	proxy_shutdown(void);

#endif
