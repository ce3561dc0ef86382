/* edge.h - internals of sallyport-edge, the DMZ half.
 *
 * The edge holds no configuration of its own beyond how to reach it: the
 * services it opens are pushed by agents over control connections, and
 * everything goes away with the agent that pushed it. */
#ifndef SP_EDGE_H
#define SP_EDGE_H

#include <stdint.h>
#include <openssl/ssl.h>

#include "common/fconn.h"
#include "common/net.h"
#include "common/relay.h"
#include "edge/edge_limit.h"

#define EDGE_HEARTBEAT_DEAD_MS	6000
#define EDGE_SVC_AGENTS_MAX	16

struct edge_conf {
	const char	*control;
	const char	*cert;
	const char	*key;
	const char	*ca;
	const char	*name;
};

extern struct edge_conf edge_conf;
extern SSL_CTX *edge_tls;

enum econn_state { EC_INCOMING, EC_AGENT };

/* A connection on the control port: unidentified until its first frame,
 * then an agent's control channel (a data link leaves this struct). */
struct econn {
	struct fconn	 fc;
	enum econn_state state;
	char		 peer[NET_ADDRSTR];
	char		 name[MSG_NAME_MAX];
	uint64_t	 deadline;	/* EC_INCOMING: first frame due */
	uint64_t	 active;	/* sessions handed to this agent and
					 * not yet ended, pending or joined */
	struct econn	*prev, *next;
};

enum esess_state { ES_PENDING, ES_RELAY };

struct esess {
	uint64_t	 id;
	enum esess_state state;
	int		 client_fd;
	char		 svc[MSG_NAME_MAX];
	char		 client[NET_ADDRSTR];
	char		 client_ip[NET_ADDRSTR];
	uint16_t	 client_port;
	char		 agent_name[MSG_NAME_MAX];
	struct econn	*agent;		/* who was asked; NULL once it is gone */
	uint8_t		 secret[FRAME_SECRET];
	uint64_t	 t_start;
	uint64_t	 deadline;
	uint64_t	 idle_ms;	/* from the service; 0: no idle limit */
	struct ipcount	*ipc;		/* this client address's live sessions */
	struct relay	 relay;
	struct esess	*hnext;		/* id hash chain */
	struct esess	*prev, *next;	/* pending FIFO or active list */
};

struct ipcount;

/* edge_ctl.c */
int	ctl_listen(const char *addr);
void	ctl_tick(uint64_t now);
void	ctl_pause(int paused);
void	ctl_shutdown(void);

/* edge_svc.c */
void	svc_open(struct econn *agent, const struct msg *def);
void	svc_withdraw(struct econn *agent, const char *name);
void	svc_withdraw_all(struct econn *agent);
void	sess_claim(struct econn *link, const struct msg *m);
void	sess_refused(struct econn *agent, const struct msg *m);
void	sess_agent_lost(struct econn *agent);
void	sess_tick(uint64_t now);
/* Stop accepting for a moment: out of file descriptors. */
void	accept_pause(uint64_t now);
int	accept_paused(uint64_t now);
void	svc_shutdown(void);
/* Free an econn that has been detached or closed. */
void	econn_free(struct econn *c);

#endif
