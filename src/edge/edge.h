/* edge.h - internals of sallyport-edge, the DMZ half.
 *
 * The edge holds no configuration of its own beyond how to reach it: the
 * services it opens are pushed by agents over control connections, and
 * everything goes away with the agent that pushed it. */
#ifndef SP_EDGE_H
#define SP_EDGE_H

#include <stdint.h>
#include <sys/queue.h>
#include <openssl/ssl.h>

#include "common/cidr.h"
#include "common/fconn.h"
#include "common/mux.h"
#include "common/net.h"
#include "common/plink.h"
#include "common/poolkey.h"
#include "common/relay.h"
#include "edge/edge_limit.h"

#define EDGE_HEARTBEAT_DEAD_MS	6000
#define EDGE_SVC_AGENTS_MAX	16
#define EDGE_PROXY_MS		5000	/* a PROXY header must arrive within */
#define EDGE_PROXY_PENDING_MAX	1024	/* connections waiting for one */
#define EDGE_DENIED_PER_SEC	50	/* SESS_DENIED frames per service */

struct edge_conf {
	const char	*control;
	const char	*cert;
	const char	*key;
	const char	*ca;
	const char	*name;
};

/* Counters reported to agents in STATS frames (docs/protocol.md,
 * "Operations"). Bytes of running sessions are added when reported. */
struct edge_stats {
	uint64_t	 sessions_accepted;	/* clients accepted */
	uint64_t	 sessions_joined;	/* claimed by a data link; pooled
						 * ones when they end unrefused */
	uint64_t	 sessions_refused;	/* refused by the agent */
	uint64_t	 sessions_agent_lost;	/* agent gone before the claim */
	uint64_t	 sessions_bad_secret;
	uint64_t	 bytes_from_clients;	/* of sessions that ended */
	uint64_t	 bytes_to_clients;
	uint64_t	 control_accepted;	/* TCP connections on the control port */
	uint64_t	 control_refused;	/* failed TLS, greeting or time-out */
	uint64_t	 data_links_refused;
	uint64_t	 data_links_plain;	/* plain links that greeted right */
	uint64_t	 sessions_pooled;	/* joined on a pooled link */
	uint64_t	 pool_tokens;		/* POOL_GRANTs with a token */
	uint64_t	 pool_links_keyed;	/* parked with a pool key proof */
	uint64_t	 pool_links_reused;	/* parked again after a session */
	uint64_t	 agents_connected;	/* gauge */
};

extern struct edge_conf edge_conf;
extern struct edge_stats edge_stats;
extern SSL_CTX *edge_tls;

/* EC_INCOMING: not identified yet (TLS handshake or plain greeting);
 * EC_AGENT: a control channel; EC_OUT: an outbound data link; EC_POOL: an
 * idle data link parked for its agent's next session (edge_pool.c). */
enum econn_state { EC_INCOMING, EC_AGENT, EC_OUT, EC_POOL };

struct eout;
struct epol;

/* A connection on the control port: unidentified until its first frame,
 * then an agent's control channel (a data link leaves this struct). */
struct econn {
	struct fconn	 fc;
	enum econn_state state;
	char		 peer[NET_ADDRSTR];
	char		 name[MSG_NAME_MAX];
	uint64_t	 deadline;	/* EC_INCOMING: first frame due */
	/* EC_AGENT: the agent uses plain data links. A link: it is plain. */
	int		 plain;
	int		 reuse;		/* EC_POOL: a reusable plain link */
	/* EC_INCOMING, plain: the greeting read so far (exact reads). */
	uint8_t		 greet[PLINK_BUF];
	size_t		 greet_have;
	/* EC_AGENT: its parked links and unused pool tokens (bounded by
	 * lim.max_pool together). EC_POOL: the agent it is parked for. */
	struct econn	*pool_head;
	uint64_t	 npool;
	uint64_t	 ntokens;
	struct econn	*pool_agent;
	uint64_t	 nmux;		/* EC_AGENT: its multiplexed links */
	/* EC_AGENT: the pool key sent in HELLO_OK, its id, and the
	 * counters its links have used (poolkey.h). */
	uint8_t		 pool_key[POOLKEY_LEN];
	uint64_t	 pool_kid;
	struct poolkey_win pool_win;
	struct econn	*pool_prev, *pool_next;
	uint64_t	 active;	/* sessions handed to this agent and
					 * not yet ended, pending or joined */
	/* EC_AGENT: the outbound policy it pushed, and the token its
	 * outbound data links must show (edge_out.c). */
	struct epol	*out_pol;
	uint8_t		 out_token[FRAME_SECRET];
	/* EC_OUT: the outbound session this data link asked for. */
	struct eout	*out;
	struct econn	*prev, *next;
};

/* A service's client policy, parsed from its SVC_OPEN (edge_policy.c). */
struct cpol {
	struct cidr_list allow;		/* empty: everyone */
	struct cidr_list deny;		/* wins over allow */
	struct cidr_list accept_proxy;	/* non-empty: only these peers, and
					 * each must send a PROXY header */
	uint32_t	 max_sess;	/* per address, 0 = no limit */
	uint32_t	 max_rate;	/* new sessions per address per minute */
};
struct pol_ip;

enum esess_state { ES_PENDING, ES_RELAY };

struct esess {
	uint64_t	 id;
	enum esess_state state;
	int		 client_fd;
	char		 svc[MSG_NAME_MAX];
	char		 client[NET_ADDRSTR];
	char		 client_ip[NET_ADDRSTR];
	uint16_t	 client_port;
	char		 local_ip[NET_ADDRSTR];	/* where the client connected */
	uint16_t	 local_port;
	char		 agent_name[MSG_NAME_MAX];
	struct econn	*agent;		/* who was asked; NULL once it is gone */
	uint8_t		 secret[FRAME_SECRET];
	uint64_t	 t_start;
	uint64_t	 deadline;
	uint64_t	 idle_ms;	/* from the service; 0: no idle limit */
	struct ipcount	*ipc;		/* this client address's live sessions */
	/* Joined on a pooled link: the agent may still refuse it (no
	 * backend answered) until bytes come from its side. */
	int		 pooled;
	int		 refused;	/* pooled, refused by the agent */
	const char	*link_kind;	/* "tls", "plain" or "ktls" */
	/* On a reusable plain link: parked again for its agent after a
	 * clean end; link_peer is where the link came from. */
	int		 link_reuse;
	char		 link_peer[NET_ADDRSTR];
	struct relay	 relay;
	struct mux_stream *ms;		/* on a multiplexed link: the stream
					 * instead of the relay */
	struct pol_ip	*pol_ent;	/* per-address count held, or NULL */
	/* FTP data connection: its control session and passive port, and
	 * (until offered) the agent holding that control session. */
	uint64_t	 ftp_ctl;
	uint16_t	 ftp_port;
	struct econn	*ftp_agent;
	struct esess	*hnext;		/* id hash chain */
	TAILQ_ENTRY(esess) q;		/* pending FIFO or active list */
};

struct ipcount;

/* edge_ctl.c */
int	ctl_listen(const char *addr);
void	ctl_tick(uint64_t now);
void	ctl_pause(int paused);
void	ctl_shutdown(void);
/* The agent control connection whose outbound token is tok, or NULL. */
struct econn *ctl_agent_by_token(const uint8_t *tok);
/* The agent control connection whose pool key has this id, or NULL. */
struct econn *ctl_agent_by_kid(uint64_t kid);
/* An EC_INCOMING connection identified itself as st: it leaves the count
 * of handshakes in progress. */
void	ctl_identified(struct econn *c, enum econn_state st);
/* Log why c goes, update the counts and free it. */
void	econn_drop(struct econn *c, const char *why);
/* A reusable plain link whose session ended cleanly, as a new econn
 * (EC_POOL, not yet parked) that reads frames from fd; NULL (fd closed)
 * if out of memory. */
struct econn *ctl_link_again(int fd, int registered, const char *peer);

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
/* accept4 on a listener, honouring the pause; out of descriptors it
 * pauses all listeners. The fd, or -1 (nothing more to accept now). */
int	edge_accept(int lfd, struct net_addr *peer, const char *what);
void	svc_shutdown(void);
/* edge_policy.c */
int	pol_load(struct cpol *p, const struct msg *def, char *err, size_t errlen);
/* Admit a client at addr (16-byte form) to service svc, or return -1
 * with why = "denied: ..." or "limit: ...". On success *ent holds the
 * address's entry (NULL when no per-address limit applies), to be given
 * back with pol_release when the session ends. */
int	pol_admit(const struct cpol *p, const char *svc, const uint8_t addr[16],
	    uint64_t now_ms, struct pol_ip **ent, char *why, size_t whylen);
void	pol_release(struct pol_ip *ent);
void	pol_tick(uint64_t now_ms);
size_t	pol_tracked(void);

/* Append the service and session counters to a STATS text. */
void	svc_stats(char *out, size_t outlen);
/* A passive data connection of FTP service name, matched to control
 * session ctl held by agent: offer it as a session (fd is taken). */
void	svc_ftp_data(const char *name, int fd, const struct net_addr *peer,
	    struct econn *agent, uint64_t ctl, uint16_t port);

/* edge_ftp.c: the passive ports of FTP services (docs/ftp.md). */
struct eftp;
/* For an SVC_OPEN with PROTOCOL: check it and listen on its passive
 * ports at listen's address; *out stays NULL for other services.
 * Returns 0, or -1 with err (nothing left open). */
int	ftp_svc_open(const char *svc, const struct msg *def,
	    const struct net_addr *listen, struct eftp **out, char *err,
	    size_t errlen);
void	ftp_svc_close(struct eftp *f);	/* NULL is fine */
void	ftp_listeners_set(uint32_t mask);
/* Control session id from ip, offered to agent (f NULL: not FTP). */
void	ftp_ctl_add(struct eftp *f, uint64_t id, const char *ip,
	    struct econn *agent);
void	ftp_ctl_del(uint64_t id);	/* any session id; cheap if not FTP */
void	ftp_ports(struct econn *agent, const struct msg *m);	/* FTP_PORTS */
void	ftp_agent_lost(struct econn *agent);
void	ftp_stats(char *out, size_t outlen);
/* edge_out.c: outbound sessions, the only code in the edge that calls
 * connect(), toward destinations an agent's policy allows. */
/* enabled: --allow-outbound; otherwise OUT_POLICY is refused. */
int	out_init(int enabled);
void	out_policy(struct econn *agent, const struct msg *m);
/* First frame OUT_OPEN on a data link (c already EC_OUT); may free c. */
void	out_open(struct econn *c, const struct msg *m);
/* The data link of an outbound session failed before its relay. */
void	out_link_lost(struct econn *c);
void	out_pol_unref(struct epol *p);
void	out_tick(uint64_t now);
void	out_shutdown(void);

/* edge_pool.c: pooled data links, so that a new client is joined at once
 * instead of waiting for its agent to dial. */
void	pool_grant(struct econn *agent);
/* POOL_HELLO as the first frame of link (EC_INCOMING); frees link on
 * refusal. */
void	pool_hello(struct econn *link, const struct msg *m);
/* A parked link of agent, taken out of the pool, or NULL. */
struct econn *pool_take(struct econn *agent);
/* A reusable link fd, from peer, ended its session cleanly: park it for
 * agent again, or close it if agent has no room for it. registered: as
 * from relay_take_link. */
void	pool_again(struct econn *agent, int fd, int registered,
	    const char *peer);
void	pool_link_lost(struct econn *link);
/* Refuse a data link that has not proved itself (logged, counted; a TLS
 * link is told why, a plain one gets no answer) and free it. */
void	link_refuse(struct econn *link, const char *why);
/* MUX_HELLO as the first frame of link (EC_INCOMING): frees link or
 * makes it a multiplexed link (edge_mux.c). */
void	pool_mux_hello(struct econn *link, const struct msg *m);
void	pool_agent_lost(struct econn *agent);
void	pool_tick(uint64_t now);
void	pool_stats(char *out, size_t outlen);

/* edge_mux.c: multiplexed data links, each carrying many sessions as
 * streams (common/mux.h). */
struct emux;
/* link showed a pool token of agent in MUX_HELLO: answer POOL_OK and
 * carry streams on it from now on. link is taken (freed) either way. */
void	emux_start(struct econn *link, struct econn *agent);
/* agent's multiplexed link with the fewest streams, or NULL. */
struct emux *emux_pick(struct econn *agent);
/* Open a stream on l for the client socket fd (taken on success),
 * announced with SESS_ASSIGN m. NULL if l cannot take it. */
struct mux_stream *emux_open(struct emux *l, int fd, const struct msg *m,
	    mux_done_cb *done, void *arg);
/* The agent's control channel is gone: its links take no new session
 * and close once their streams have ended. */
void	emux_agent_lost(struct econn *agent);
void	emux_tick(uint64_t now);
void	emux_shutdown(void);
void	emux_stats(char *out, size_t outlen);

/* Free an econn that has been detached or closed. */
void	econn_free(struct econn *c);

#endif
