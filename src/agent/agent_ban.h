/* agent_ban.h - the operator's bans: made and lifted through the admin
 * API (sallyportctl ban, unban, bans), pushed at once to every connected
 * edge and to an edge that connects later, and kept in ban_file if the
 * configuration names one (written here only, atomically; the edge
 * never writes a file). A ban's time is wall-clock seconds, so that it
 * means the same after a restart. */
#ifndef SP_AGENT_BAN_H
#define SP_AGENT_BAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/ban.h"

#define ABAN_MAX	262144	/* bans held, as the edge's --max-bans */

struct aedge;

struct aban {
	struct ban	 b;		/* b.until: seconds since 1970, 0: none */
	uint64_t	 created;
	char		 reason[BAN_REASON_MAX];
};

/* Read ban_file (if configured; a missing file is no bans). 0, or -1
 * with err naming the file and line. */
int	aban_load(const char *path, char *err, size_t errlen);
/* Ban range c for secs seconds (0: until lifted), or change the ban it
 * has; cut: end its sessions at the edges. 0, or -1 with err (too many
 * bans). *saved: 1 written to ban_file, 0 not (err says why), -1 no
 * ban_file. */
int	aban_add(const struct cidr *c, uint32_t secs, const char *reason,
	    int cut, int *saved, char *err, size_t errlen);
/* Lift the ban of exactly c. 0, or -1 if there is none. */
int	aban_lift(const struct cidr *c, int *saved);
/* Every ban in force, in no particular order. */
void	aban_foreach(void (*fn)(const struct aban *, void *), void *arg);
size_t	aban_count(void);
/* Edge e said HELLO_OK: send it every ban, then BAN_SYNC. The list goes
 * out as the control connection drains (aban_edge_tick), so that a long
 * one never fills its queue. */
void	aban_edge_up(struct aedge *e);
void	aban_edge_tick(struct aedge *e);
void	aban_edge_down(struct aedge *e);
/* Forget bans that expired. */
void	aban_tick(void);
void	aban_stop(void);

#endif
