/* agent_admin.h - the HTTP admin API (libmicrohttpd), driven from the
 * event loop: status, sessions, kill, reload, metrics. */
#ifndef SP_AGENT_ADMIN_H
#define SP_AGENT_ADMIN_H

#include <stddef.h>

int	admin_start(const char *listen, char *err, size_t errlen);
void	admin_tick(void);
void	admin_stop(void);

#endif
