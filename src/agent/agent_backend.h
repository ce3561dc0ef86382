/* agent_backend.h - the backends' run-time state, and which backend a new
 * session tries.
 *
 * What a running agent learns about a backend (how many sessions use it,
 * whether it answers) is kept apart from the parsed configuration, in one
 * table keyed by service and backend as written: each cfg_backend points
 * at its entry (backend_bind), sessions hold the entry itself, and a
 * reload that keeps a backend finds the same entry, so nothing is copied
 * or re-bound and no count is lost. */
#ifndef SP_AGENT_BACKEND_H
#define SP_AGENT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_cfg.h"

/* The outcome of the last health check or session dial. A backend never
 * dialled is "unknown" and counts as up; one that is down is skipped only
 * on a service with health checks. */
enum backend_health { BH_UNKNOWN, BH_UP, BH_DOWN };

struct bstate {
	char		 svc[MSG_NAME_MAX];
	char		 str[CFG_STR];
	unsigned	 active;	/* sessions dialling or relaying to it */
	enum backend_health health;
	uint64_t	 health_at;	/* ev_now() of the last change */
	char		 last_error[128];
	unsigned	 refs;		/* configurations and sessions */
	struct bstate	*next;
};

/* Point every backend of the services arr[0..n) at its state (found or
 * made). 0, or -1 when out of memory (they are then unbound). */
int	backend_bind(struct cfg_service *arr, size_t n);
void	backend_unbind(struct cfg_service *arr, size_t n);
/* A session starts or stops counting against b. */
void	backend_hold(struct bstate *b);
void	backend_release(struct bstate *b);
/* The backend of svc a session tries next, having tried those whose bits
 * are set in tried: healthy ones first, and among them the one with the
 * fewest sessions, the rotation starting at start. A backend marked down
 * is tried only after every other has failed: a health verdict alone
 * never refuses a client. -1 once all were tried. */
int	backend_pick(const struct cfg_service *svc, uint32_t tried,
	    size_t start);
/* Record the outcome of a connection to b: err 0 (up) or an errno value
 * (down). Changes are logged on a service with checks. */
void	health_report(const struct cfg_service *svc, const struct cfg_backend *b,
	    int err);
/* 1 if new sessions should pass b over: down, on a service with checks. */
int	health_down(const struct cfg_service *svc, const struct cfg_backend *b);

/* agent_health.c: a TCP connect to every backend of each service with
 * health checks, every health_ms; a backend that does not answer is
 * marked down until one answers again. */
void	health_start(void);
void	health_tick(uint64_t now);
void	health_stop(void);

#endif
