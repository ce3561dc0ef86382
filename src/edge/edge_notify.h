/* edge_notify.h - systemd readiness for the edge (sd_notify protocol). */
#ifndef SP_EDGE_NOTIFY_H
#define SP_EDGE_NOTIFY_H

/* Open the socket named by $NOTIFY_SOCKET, if any. Call before the
 * sandbox, which allows no new AF_UNIX socket; only sendto() later. */
void	notify_open(void);
/* Send one state line ("READY=1"); a no-op without a notify socket. */
void	notify_send(const char *state);

#endif
