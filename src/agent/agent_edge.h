/* agent_edge.h - one control connection per configured edge, dialled
 * from inside and kept up forever: any error closes it and a new attempt
 * follows after an exponential back-off with jitter. It pushes the
 * services, keeps the heartbeat, and carries what is not a session's
 * bytes: the link key for data links, refusals the edge made, outbound
 * requests, the edge's counters. */
#ifndef SP_AGENT_EDGE_H
#define SP_AGENT_EDGE_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_cfg.h"
#include "agent/ctl_check.h"
#include "agent/dial.h"
#include "common/cidr.h"
#include "common/fconn.h"
#include "common/linkkey.h"

enum aedge_state { AE_WAIT, AE_CONNECT, AE_HELLO, AE_READY };

struct aedge {
	struct cfg_edge	*ce;
	enum aedge_state state;
	struct dial_lookup *lookup;	/* its name, being looked up */
	struct dial	 dial;
	struct fconn	 fc;
	struct net_addr	 addr;		/* resolved for this attempt */
	uint64_t	 backoff_ms;
	uint64_t	 next_try;
	uint64_t	 deadline;
	uint64_t	 last_ping;
	uint64_t	 rtt_ms;
	char		 edge_name[MSG_NAME_MAX];
	uint64_t	 connects;		/* HELLO_OKs received */
	uint64_t	 connected_at;		/* ev_now() of the last one */
	char		 last_error[160];
	char		 stats[MSG_STATS_MAX];	/* last valid STATS, "" if none */
	uint64_t	 stats_at;
	int		 out_ok;		/* the edge took our policy */
	/* The link key of this control connection (HELLO_OK): data links
	 * are proved with it and the next counter. */
	uint8_t		 key[LINKKEY_LEN];
	uint64_t	 kid;
	uint64_t	 ctr;
	/* Its data links (agent_link.c). */
	unsigned	 links_up;		/* multiplexed up, or plain idle */
	unsigned	 links_opening;
	unsigned	 links_lent;		/* plain, carrying a session */
	uint64_t	 link_next;		/* no new link before this */
	uint64_t	 link_backoff_ms;
	unsigned	 links_refused;		/* plain, a refusal lingering */
	/* Its sessions (agent_sess.c): all of them, and those still
	 * dialling a backend. */
	unsigned	 nsess;
	unsigned	 nsetup;
	/* What the control connection has asked and not had answered. */
	struct actl	 ctl;
	uint64_t	 violations;		/* what it sent that it must not */
	uint64_t	 viol_logged;		/* ev_now() of the last line */
	uint64_t	 viol_held;		/* counted since, not logged */
	/* The bans still to send after HELLO_OK (agent_ban.c). */
	struct cidr	*ban_sync;
	size_t		 ban_nsync, ban_next;
	int		 ban_syncing;
	uint64_t	 drained_at;		/* ev_now() of the last DRAINING */
	unsigned	 svc_waiting;		/* SVC_RESULTs not yet in */
	unsigned	 svc_refused;		/* ... that said no */
};

extern SSL_CTX *agent_tls;

void	aedge_start(void);
void	aedge_tick(uint64_t now);
void	aedge_stop(void);
/* Send a frame on an edge's control channel if it is up; on every edge's
 * that is. */
void	aedge_send(struct aedge *e, const struct msg *m);
void	aedge_send_all(const struct msg *m);
size_t	aedge_count(void);
const struct aedge *aedge_get(size_t i);
const char *aedge_state_name(enum aedge_state st);
/* The SVC_OPEN that pushes service s: the one place it is built, as the
 * edge compares definitions whole. */
void	aedge_svc_msg(const struct cfg_service *s, struct msg *m);
/* Reload: tell every connected edge what changed (services by name). */
void	aedge_svc_close(const char *name);
/* Send the [outbound] policy to every connected edge again (a reload). */
void	aedge_out_policy(void);
void	aedge_svc_open(const struct cfg_service *s);
/* Push every service again to each connected edge that refused one (a
 * hand-over: the old agent withdrew its own, and a definition refused
 * beside them may be taken now). */
void	aedge_push_all(void);
/* Withdraw every service from every connected edge (a hand-over: the
 * new agent offers them). */
void	aedge_withdraw(void);
/* 1 if every edge is connected, has answered every service and has a
 * data link up. */
int	aedge_all_ready(void);
/* An edge ready for outbound sessions (it took our policy), picked
 * round-robin, or NULL. */
struct aedge *aedge_pick_out(void);
/* e sent what a correct edge never sends: count it, and log it, at most
 * one line a second per edge (the next line says how many were held
 * back), so that a flood of them cannot flood the log. The caller
 * refuses what it was, or drops the link when going on is unsafe. */
void	aedge_violation(struct aedge *e, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
