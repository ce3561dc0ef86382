/* agent_sess.h - a session seen from inside: the edge opened it on a data
 * link (SESS_OPEN); the agent checks what the edge says, dials a backend
 * of its own configuration, and joins the two, or refuses. */
#ifndef SP_AGENT_SESS_H
#define SP_AGENT_SESS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_cfg.h"
#include "common/end.h"

struct aedge;
struct alink_from;

/* SESS_OPEN m from edge e, which arrived on link l. 0: a session began
 * (it may still be refused: no backend answered, say); -1: refused at
 * once, a violation or a limit (the link's refusal is sent). */
int	asess_open(struct aedge *e, const struct msg *m,
	    const struct alink_from *l);
/* SESS_DENIED / DENIED_SUMMARY: the edge refused a client by policy. */
void	asess_denied(struct aedge *e, const struct msg *m);
void	asess_tick(uint64_t now);
/* Cut every session (SE_STOPPING, detail why). */
void	asess_stop(const char *why);
size_t	asess_count(void);

/* A session as the admin API and the metrics see it. */
struct asess_info {
	uint64_t	 id;
	const char	*service;
	const char	*client;
	const char	*backend;	/* "" while none is chosen */
	const char	*edge;
	const char	*state;		/* "setup" or "relay" */
	uint64_t	 bytes_to_backend;
	uint64_t	 bytes_to_client;
	uint64_t	 age_ms;
};
typedef void asess_visit_cb(const struct asess_info *si, void *arg);
void	asess_foreach(asess_visit_cb *cb, void *arg);
/* Cut every session with this id (ids are per edge: with several edges
 * one id may name more than one session). Returns how many were cut. */
size_t	asess_kill(uint64_t id);
/* Cut every partner's session whose client is in c (a ban with cut: the
 * edge cuts them too, but an edge process that handed over is no longer
 * told). How many. */
struct cidr;
size_t	asess_cut(const struct cidr *c);
/* 1 if a session being set up still uses a service in arr[0..n). */
int	asess_uses(const struct cfg_service *arr, size_t n);

#endif
