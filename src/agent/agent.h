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

#define CFG_HEALTH_DEFAULT_MS	5000	/* services with 2+ backends */
#define CFG_PRIORITY_MAX	65535

struct cfg_backend {
	char		 str[CFG_STR];
	struct net_addr	 addr;
	/* Run-time state, kept by agent_sess.c and agent_health.c. */
	unsigned	 active;	/* sessions dialling or relaying to it */
	int		 down;		/* taken out by a failed check */
};

struct cfg_service {
	char		 name[MSG_NAME_MAX];
	char		 listen[MSG_ADDR_MAX];
	struct cfg_backend backends[CFG_MAX_BACKENDS];
	size_t		 nbackends;
	size_t		 rr;
	uint32_t	 idle_timeout;		/* seconds, 0: none */
	uint32_t	 priority;	/* pushed to the edge; higher preferred */
	int		 priority_set;
	uint64_t	 health_ms;	/* check interval; 0: no checks */
	int		 health_set;	/* health_interval given in the file */
	int		 line;
};

struct cfg_edge {
	char		 str[CFG_STR];		/* as written */
	char		 host[CFG_STR];
	char		 port[16];
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
};

extern struct cfg agent_cfg;
extern SSL_CTX *agent_tls;

void	edges_start(void);
void	edges_tick(uint64_t now);
void	edges_stop(void);
/* Send a frame on an edge's control channel if it is up. */
void	edge_send(struct aedge *e, const struct msg *m);

/* agent_health.c: a TCP connect to every backend of each service with
 * health checks, every health_ms; a backend that does not answer is
 * marked down (skipped while others are up) until one answers again. */
void	health_start(void);
void	health_tick(uint64_t now);
void	health_stop(void);
/* A session's dial of b succeeded (ok) or failed (why). On a service with
 * checks this marks b up or down at once; without checks nothing would
 * put b back, so it is ignored. */
void	health_report(struct cfg_service *svc, struct cfg_backend *b, int ok,
	    const char *why);

/* agent_sess.c */
void	sess_new(struct aedge *e, const struct msg *m);
void	sess_tick(uint64_t now);
void	sess_stop(void);

#endif
