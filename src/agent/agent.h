/* agent.h - internals of sallyport-agent, the inside half. */
#ifndef SP_AGENT_H
#define SP_AGENT_H

#include <limits.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/fconn.h"
#include "common/net.h"
#include "common/relay.h"

#define CFG_MAX_EDGES		16
#define CFG_MAX_BACKENDS	16
#define CFG_MAX_SERVICES	256
#define CFG_STR			256

struct cfg_backend {
	char		 str[CFG_STR];
	struct net_addr	 addr;
};

struct cfg_service {
	char		 name[MSG_NAME_MAX];
	char		 listen[MSG_ADDR_MAX];
	struct cfg_backend backends[CFG_MAX_BACKENDS];
	size_t		 nbackends;
	size_t		 rr;
	uint32_t	 idle_timeout;		/* seconds, 0: none */
	int		 line;
};

struct cfg_edge {
	char		 str[CFG_STR];		/* as written */
	char		 host[CFG_STR];
	char		 port[16];
};

/* [outbound]: the proxies for inside clients (agent_out.c). */
struct cfg_outbound {
	int		 line;			/* of [outbound], 0 if none */
	char		 socks_listen[MSG_ADDR_MAX];
	char		 http_listen[MSG_ADDR_MAX];
	char		 allow[MSG_POLICY_MAX];	/* pushed as OUT_ALLOW */
	size_t		 nrules;
	char		 user[256];		/* auth_user, "" for none */
	char		 pass[256];
};

struct cfg {
	char		 path[PATH_MAX];
	char		 name[MSG_NAME_MAX];
	char		 cert[PATH_MAX];
	char		 key[PATH_MAX];
	char		 ca[PATH_MAX];
	uint64_t	 connect_timeout_ms;
	struct cfg_edge	 edges[CFG_MAX_EDGES];
	size_t		 nedges;
	struct cfg_service *services;
	size_t		 nservices;
	struct cfg_outbound out;
};

/* agent_cfg.c: load and validate path into c. On error returns -1 with
 * "FILE:LINE: what is wrong" in err; c is then freed. */
int	cfg_load(const char *path, struct cfg *c, char *err, size_t errlen);
void	cfg_free(struct cfg *c);
/* How backend names are resolved at load time; dial_resolve unless a test
 * harness must stay off the network (the fuzzer resolves numerically). */
extern int (*cfg_resolver)(const char *host, const char *port,
	    struct net_addr *a, char *err, size_t errlen);
struct cfg_service *cfg_service(struct cfg *c, const char *name);

/* dial.c: non-blocking outbound TCP, the one place that calls connect().
 * done() gets the connected fd, or -1 and an errno value. */
struct dial;
typedef void dial_cb(struct dial *d, int fd, int err);
struct dial {
	struct ev_io	 io;
	dial_cb		*done;
	void		*arg;
	int		 active;
};
/* Start connecting; done() runs later from the loop, never from here.
 * Returns 0, or -1 with errno set. */
int	dial_start(struct dial *d, const struct net_addr *a, dial_cb *cb, void *arg);
void	dial_cancel(struct dial *d);
/* Resolve host:port (numeric or by name, blocking). 0 or -1 with err. */
int	dial_resolve(const char *host, const char *port, struct net_addr *a,
	    char *err, size_t errlen);

/* agent_edge.c */
enum aedge_state { AE_WAIT, AE_CONNECT, AE_HELLO, AE_READY };
struct aedge {
	struct cfg_edge	*ce;
	enum aedge_state state;
	struct dial	 dial;
	struct fconn	 fc;
	struct net_addr	 addr;		/* resolved for this attempt */
	uint64_t	 backoff_ms;
	uint64_t	 next_try;
	uint64_t	 deadline;
	uint64_t	 last_ping;
	uint64_t	 rtt_ms;
	char		 edge_name[MSG_NAME_MAX];
	int		 out_ok;		/* the edge took our policy */
	uint8_t		 out_token[FRAME_SECRET];
};

extern struct cfg agent_cfg;
extern SSL_CTX *agent_tls;

void	edges_start(void);
void	edges_tick(uint64_t now);
void	edges_stop(void);
/* Send a frame on an edge's control channel if it is up. */
void	edge_send(struct aedge *e, const struct msg *m);

/* An edge ready for outbound sessions (OUT_POLICY_OK received), picked
 * round-robin, or NULL. */
struct aedge *edge_pick_out(void);

/* agent_sess.c */
void	sess_new(struct aedge *e, const struct msg *m);
void	sess_tick(uint64_t now);
void	sess_stop(void);

/* agent_out.c: the SOCKS5 and HTTP CONNECT proxies. */
int	out_start(void);
void	out_tick(uint64_t now);
void	out_stop(void);

/* One finished outbound session, for the audit trail. All strings are
 * set ("-" when unknown). */
struct out_record {
	uint64_t	 id;
	const char	*proto;		/* "socks5" or "http-connect" */
	const char	*client;	/* inside source address:port */
	const char	*dest;		/* as requested, host:port */
	const char	*addr;		/* what the edge connected to */
	const char	*edge;
	uint64_t	 bytes_out;	/* inside -> destination */
	uint64_t	 bytes_in;	/* destination -> inside */
	uint64_t	 duration_ms;
	const char	*outcome;	/* "ok", "refused", "failed" */
	int		 code;		/* SOCKS reply code given */
	const char	*reason;
};
/* Record r. Today one log line; the hook for the JSON audit log. */
void	out_audit(const struct out_record *r);

#endif
