/* edge_lis.h - services and their listeners.
 *
 * A service exists while at least one agent offers it (SVC_OPEN); its
 * listener closes with the last one, so clients are refused by the kernel
 * at once instead of waiting for an agent that cannot come. Agents that
 * offer one service must push the same definition; sessions go to the
 * connected agents of the highest priority, the least loaded first. */
#ifndef SP_EDGE_LIS_H
#define SP_EDGE_LIS_H

#include <stdint.h>
#include <sys/socket.h>

#include "common/end.h"
#include "common/frame.h"
#include "common/net.h"

struct eagent;
struct eftp;
struct esvc;

/* SVC_OPEN and SVC_CLOSE from agent a; a's control channel is gone. */
void	esvc_open(struct eagent *a, const struct msg *def);
void	esvc_withdraw(struct eagent *a, const char *name);
void	esvc_withdraw_all(struct eagent *a);
/* The agent a new session of service name goes to, or NULL. */
struct eagent *esvc_pick_agent(const char *name);
/* 1 if agent a offers service name. */
int	esvc_offered_by(const char *name, const struct eagent *a);
/* The service's idle time-out in ms (0: none), FTP passive ports (or
 * NULL) and clients waiting for a data link (delta: +1 or -1). */
uint64_t esvc_idle_ms(const char *name);
struct eftp *esvc_ftp(const char *name);
void	esvc_pending(const char *name, int delta);
/* A client of service svc at client (connected to local) whose address
 * is known (the TCP peer, or from a PROXY header): admit it and start its
 * session. fd is taken. */
void	esvc_client(struct esvc *svc, int fd, const struct sockaddr *client,
	    const struct sockaddr *local);
/* Refuse a client of svc at the edge: reset it, log it, and report it to
 * an agent (SESS_DENIED), at most so many per second. fd is taken. */
void	esvc_deny(struct esvc *svc, int fd, const struct sockaddr *client,
	    enum sess_end code, const char *why);
/* accept4 on a listener; out of descriptors it pauses every listener
 * for a moment. The fd, or -1 (nothing more to accept now). */
int	edge_accept(int lfd, struct net_addr *peer, const char *what);
void	esvc_tick(uint64_t now);
/* Hand-over: every service and passive listener's fd to cb; stop
 * accepting on them (on 1) or go on (0, the hand-over failed). */
void	esvc_each_listener(void (*cb)(int fd, void *arg), void *arg);
void	esvc_handing(int on);
/* What a listener opened now watches: nothing while accepting is paused
 * (out of descriptors) or the listeners are being handed over. */
uint32_t esvc_listen_mask(void);
void	esvc_shutdown(void);
void	esvc_stats(char *out, size_t outlen);

#endif
