/* agent_admin.h - the HTTP admin API (libmicrohttpd), driven from the
 * event loop: status, sessions, kill, reload, metrics. */
#ifndef SP_AGENT_ADMIN_H
#define SP_AGENT_ADMIN_H

#include <stddef.h>

/* Listen on listen (or take the listener a hand-over brought for it). */
int	admin_start(const char *listen, char *err, size_t errlen);
/* The listener's fd (a hand-over offers it), or -1. */
int	admin_listener(void);
void	admin_tick(void);
void	admin_stop(void);

#endif
