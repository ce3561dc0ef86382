/* edge_handover.h - a new edge process takes over from the running one
 * (--handover-socket; docs/protocol.md, "Hand-over"; the socket itself is
 * hosock.h).
 *
 * The new process receives every listening socket (the control port,
 * service and passive ports) so that no connection attempt is refused:
 * connections queue in the kernel until it accepts them. The old one then
 * stops accepting, waits until no client of its own waits for a data link,
 * releases the control port (RELEASE), tells its agents to reconnect
 * (DRAINING), relays its sessions to their end (or --drain-timeout) and
 * exits. Until it does, it tells the new one its FTP control sessions, so
 * that their passive data connections, which now reach the new process,
 * still go to the agent that holds them, and how many sessions it has
 * left (for the agents' metrics). */
#ifndef SP_EDGE_HANDOVER_H
#define SP_EDGE_HANDOVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "edge/edge_sess.h"

struct eagent;
struct eftp_ports;

/* The option values: path (NULL: no hand-overs), drain_ms (0: no
 * limit), and uid, the user the edge runs as once sandboxed: peers must
 * run as it or as root. */
void	eho_init(const char *path, uint64_t drain_ms, uid_t uid);
/* At start, before any listener: take the listeners of the edge running
 * at the path, if one does (waits for it, bounded): hosock_claim gives
 * each to whom opens its address. Exits if it refuses. */
void	eho_take(void);
/* 1 if this process is taking over from another. */
int	eho_took(void);
/* Once the process is set up, before the sandbox: tell the old process
 * (TAKEN), wait for it to release the control port, then listen at the
 * path for the next hand-over. Exits if that fails. 1 if it took over. */
int	eho_commit(void);
void	eho_tick(uint64_t now);
/* 1 once this process has handed over and only relays what it has. */
int	eho_draining(void);
/* 1 from TAKEN on: it starts no dial (outbound, active FTP) any more, so
 * that those running end and it can release the control port. */
int	eho_releasing(void);
/* 1 when a draining process has nothing left: it exits. */
int	eho_drained(void);
/* FTP: the control sessions of the old process (edge_sess.h has this
 * process's own), and the end of one that was handed on. */
int	eho_ftp_match(const char *svc, const char *ip, uint16_t port,
	    struct eagent **a, uint64_t *id);
struct eftp_ports *eho_ftp_ports(uint64_t id, const struct eagent *a,
	    struct esess_peer *peer);
void	eho_ftp_end(uint64_t id);
void	eho_stats(char *out, size_t outlen);

#endif
