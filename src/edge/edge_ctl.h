/* edge_ctl.h - the control port: every connection an agent opens to the
 * edge arrives here, TLS (the control channel, multiplexed data links) or
 * plain (plain data links), and is told apart by its first frame. An
 * agent's control channel lives here too. */
#ifndef SP_EDGE_CTL_H
#define SP_EDGE_CTL_H

#include <stdint.h>
#include <sys/queue.h>

#include "common/fconn.h"
#include "common/linkkey.h"
#include "common/net.h"

struct epol;
struct eparked;

/* An agent, while its control channel lives. */
struct eagent {
	struct fconn	 fc;
	char		 name[MSG_NAME_MAX];
	char		 peer[NET_ADDRSTR];
	int		 plain;		/* its data links are plain */
	uint64_t	 links_keep;	/* idle plain links it wants kept */
	uint64_t	 instance;	/* its process (HELLO), 0 if not said */
	/* The key that proves its data links (linkkey.h), for as long as
	 * this control connection lives. */
	uint8_t		 key[LINKKEY_LEN];
	uint64_t	 kid;
	uint64_t	 serial;	/* this control connection's, 1, 2, ... */
	struct linkkey_win win;
	uint64_t	 sessions;	/* its sessions now: its load */
	uint64_t	 nlinks;	/* its data links up (edge_link.c) */
	LIST_HEAD(, eparked) parked;	/* its idle plain links */
	struct epol	*out_pol;	/* its outbound policy (edge_out.c) */
	LIST_ENTRY(eagent) entry;
};

/* Listen on addr, or take the listener a hand-over brought for it. */
int	ectl_listen(const char *addr);
/* Hand-over: the control listener's fd; then close it and tell every
 * agent to reconnect (DRAINING): the new process has the port. */
int	ectl_listener(void);
void	ectl_drain(void);
/* Stop or resume accepting on the control port (out of descriptors). */
void	ectl_pause(int paused);
void	ectl_tick(uint64_t now);
void	ectl_shutdown(void);
/* The agent of that name and instance (HELLO), or NULL. */
struct eagent *ectl_agent_find(const char *name, uint64_t instance);
/* The agent whose link key has this id, or NULL. */
struct eagent *ectl_agent_by_kid(uint64_t kid);
/* Send m on a's control channel; failures end the channel later. */
void	ectl_send(struct eagent *a, const struct msg *m);

#endif
