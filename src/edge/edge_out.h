/* edge_out.h - outbound sessions: a connection an inside client asked an
 * agent for, made by the edge to a destination outside that the agent's
 * policy allows (docs/protocol.md, "Outbound"). */
#ifndef SP_EDGE_OUT_H
#define SP_EDGE_OUT_H

#include <stdint.h>

#include "common/frame.h"

struct eagent;

/* enabled: --allow-outbound; otherwise OUT_POLICY is refused. 0 or -1. */
int	eout_init(int enabled);
void	eout_policy(struct eagent *a, const struct msg *m);	/* OUT_POLICY */
void	eout_request(struct eagent *a, const struct msg *m);	/* OUT_REQ */
/* a's control channel is gone: its requests not yet connected fail. */
void	eout_agent_lost(struct eagent *a);
void	eout_tick(uint64_t now);
/* 1 while a request is being resolved or connected. */
int	eout_busy(void);
void	eout_shutdown(void);

#endif
