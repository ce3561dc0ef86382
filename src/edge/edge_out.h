/* edge_out.h - the edge's outward connections, made by the dialler
 * (edge_dial.h): outbound sessions, a connection an inside client asked
 * an agent for, to a destination outside that the agent's policy allows
 * (docs/protocol.md, "Outbound"); and active-mode FTP data connections
 * to the partner of an FTP control session (docs/ftp.md). */
#ifndef SP_EDGE_OUT_H
#define SP_EDGE_OUT_H

#include <stdint.h>

#include "common/frame.h"
#include "edge/edge_dial.h"

struct eagent;

/* Start the dialler with the operator's limits c (c->outbound: else
 * OUT_POLICY is refused; c->port20: active data connections leave from
 * port 20). 0, or -1 with err. */
int	eout_init(const struct dial_conf *c, char *err, size_t errlen);
void	eout_policy(struct eagent *a, const struct msg *m);	/* OUT_POLICY */
void	eout_request(struct eagent *a, const struct msg *m);	/* OUT_REQ */
void	eout_ftp_dial(struct eagent *a, const struct msg *m);	/* FTP_DIAL */
/* a's control channel is gone: its requests not yet connected fail. */
void	eout_agent_lost(struct eagent *a);
void	eout_tick(uint64_t now);
/* 1 while a request is being resolved or connected. */
int	eout_busy(void);
void	eout_shutdown(void);

#endif
