/* agent_reload.h - apply a new configuration file to the running agent:
 * services added, removed or changed are told to the edges; settings a
 * reload cannot change are listed, and keep their running values. */
#ifndef SP_AGENT_RELOAD_H
#define SP_AGENT_RELOAD_H

#include <stddef.h>

#define RELOAD_LIST	4096
struct reload_result {
	char	 added[RELOAD_LIST];	/* service names, space separated */
	char	 removed[RELOAD_LIST];
	char	 changed[RELOAD_LIST];	/* definition changed: closed, reopened */
	char	 backends[RELOAD_LIST];	/* only backends changed: no frame */
	char	 restart[RELOAD_LIST];	/* settings that need a restart */
};

/* Load agent_cfg.path again, off the loop, and apply it. cb runs later
 * from the loop, never from here: with what changed, or with res NULL,
 * the reason in err and the running configuration untouched. 0, or -1
 * with errno: EBUSY while a reload is under way (one at a time), or as
 * bg_run (bg.h). A reload read while the agent began handing over to a
 * new process is not applied (cb gets why). */
typedef void reload_cb(void *arg, const struct reload_result *res,
	    const char *err);
int	reload_start(reload_cb *cb, void *arg);
int	reload_busy(void);
/* Free retired service tables no session uses any more. */
void	reload_tick(void);
void	reload_stop(void);

#endif
