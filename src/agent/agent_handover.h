/* agent_handover.h - a new agent process takes over from the running one
 * (handover_socket in [agent]; the socket itself is hosock.h).
 *
 * The new process receives the admin, SOCKS and CONNECT listeners, so
 * that no connection attempt is refused, connects to every edge as one
 * more agent of the same name and pushes its services. Once every edge
 * has answered them (or after twice connect_timeout), it tells the old
 * process (RELEASE), which stops accepting, withdraws its services
 * (SVC_CLOSE: the edges keep them open, the new agent offers them), and
 * finishes its sessions, FTP data connections of its control sessions
 * included, before it exits (or at drain_timeout). */
#ifndef SP_AGENT_HANDOVER_H
#define SP_AGENT_HANDOVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/net.h"

/* The program and its arguments, for aho_upgrade. */
void	aho_init(char **argv);
/* At start, before any listener: take the listeners of the agent running
 * at handover_socket, if one does. Exits if it refuses. */
void	aho_take(void);
/* A listener taken over for address a (the caller owns it), or -1. */
int	aho_listener(const struct net_addr *a);
/* Once set up: listen for the next hand-over; tell the old process
 * (TAKEN). 1 if this process took over. Exits if that fails. */
int	aho_commit(void);
void	aho_tick(uint64_t now);
/* 1 once this process has handed over and only finishes what it has. */
int	aho_draining(void);
/* 1 when a draining process has nothing left: it exits. */
int	aho_drained(void);
/* Start the agent's program again with the same arguments, to take over
 * from this process (POST /api/v1/upgrade, SIGUSR2). 0 with *pid, or -1
 * with err. */
int	aho_upgrade(pid_t *pid, char *err, size_t errlen);
/* Older agent processes still draining, and their sessions. */
void	aho_old(uint64_t *procs, uint64_t *sessions);

#endif
