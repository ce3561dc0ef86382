/* ctl_check.h - what the agent makes of a frame an edge sends on its
 * control connection: a pure function of the frame, of what the agent
 * has asked that edge and not yet had answered, and of the agent's
 * configuration. No I/O, so it is unit-tested and fuzzed alone.
 *
 * The edge may be hostile (docs/security.md): a frame it sends is taken
 * only when a correct edge could send it now. A reply needs a request
 * (a PONG the last PING's nonce, SVC_RESULT a SVC_OPEN, STATS a
 * STATS_REQ, OUT_POLICY_OK an OUT_POLICY), names only what the agent
 * has (a configured service), says only what it may (a numeric client
 * address, a reason the edge may refuse for), and comes no faster than
 * a correct edge sends it (refusals: docs/protocol.md, "Client policy").
 * Anything else is a violation: ignored when ignoring it is harmless,
 * else the connection is dropped. */
#ifndef SP_CTL_CHECK_H
#define SP_CTL_CHECK_H

#include <stdint.h>

#include "agent/agent_cfg.h"

/* SESS_DENIED per service and second: the edge reports 50 one by one,
 * then a DENIED_SUMMARY; our seconds are not the edge's, so twice that. */
#define ACTL_DENIED_PER_S	100
#define ACTL_SUMMARY_PER_S	2
/* Requests outstanding at most (a counter saturates there). */
#define ACTL_ASKED_MAX		1024

enum actl_verdict {
	ACTL_OK,	/* what a correct edge sends now: act on it */
	ACTL_IGNORE,	/* a violation that is harmless once ignored */
	ACTL_DROP,	/* a violation after which the connection goes */
};

/* What the agent expects of one control connection. All zero: a new
 * connection, waiting for HELLO_OK. */
struct actl {
	int		 ready;		/* HELLO_OK came */
	uint64_t	 nonce[2];	/* PINGs not yet answered, 0 free */
	unsigned	 svc_asked;	/* SVC_OPENs not yet answered */
	unsigned	 stats_asked;	/* STATS_REQs ... */
	unsigned	 policy_asked;	/* OUT_POLICYs ... */
	uint64_t	 second;	/* of the counts below (ms / 1000) */
	uint16_t	 denied[CFG_MAX_SERVICES];	/* by service index */
	uint8_t		 summaries[CFG_MAX_SERVICES];
};

/* The agent sent a request: a PING with nonce (not 0), or one more
 * SVC_OPEN, STATS_REQ, OUT_POLICY (the frame type). */
void	actl_asked(struct actl *c, uint16_t type, uint64_t nonce);
/* Frame m arrived at now_ms (monotonic). The state moves on (the
 * request it answers is used up); a violation sets *why. */
enum actl_verdict actl_frame(struct actl *c, const struct cfg *cfg,
	    const struct msg *m, uint64_t now_ms, const char **why);
#endif
