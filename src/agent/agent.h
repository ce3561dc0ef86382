/* agent.h - internals of sallyport-agent, the inside half. */
#ifndef SP_AGENT_H
#define SP_AGENT_H

#include <limits.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/fconn.h"
#include "common/mux.h"
#include "common/net.h"
#include "common/poolkey.h"
#include "common/relay.h"

#define AGENT_VERSION		"0.1.0"

#define CFG_MAX_EDGES		16
#define CFG_MAX_BACKENDS	16
#define CFG_MAX_SERVICES	256
#define CFG_STR			256
#define CFG_TOKEN_MIN		16
#define CFG_TOKEN_MAX		1024
#define CFG_POOL_DEFAULT	4
#define CFG_POOL_MAX		64
/* Reusable links that come back from their sessions stay in the pool up
 * to this many times data_pool (at most CFG_POOL_MAX, the edge's default
 * --max-pool), idle and in use together: a burst of concurrent sessions
 * finds links left by the last one. */
#define POOL_KEEP_FACTOR	4
#define CFG_MUX_DEFAULT		2
#define CFG_MUX_MAX		16

/* Backend health: the outcome of the last health check or session dial
 * (agent_health.c). A backend never dialled is "unknown" and counts as up;
 * one that is down is skipped only on a service with health checks. */
enum backend_health { BH_UNKNOWN, BH_UP, BH_DOWN };

#define CFG_HEALTH_DEFAULT_MS	5000	/* services with 2+ backends */
#define CFG_PRIORITY_MAX	65535

struct cfg_backend {
	char		 str[CFG_STR];
	struct net_addr	 addr;
	/* Run-time state, kept by agent_sess.c and agent_health.c. */
	unsigned	 active;	/* sessions dialling or relaying to it */
	enum backend_health health;
	uint64_t	 health_at;		/* ev_now() of the last change */
	char		 last_error[128];
	uint16_t	 pasv_min, pasv_max;	/* FTP: this backend's slice */
};

/* What a service carries, for the agent: bytes (tcp), or an FTP control
 * channel with passive data connections (agent_ftp.c). */
enum svc_proto { SVC_TCP, SVC_FTP, SVC_FTPS };
#define FTP_CFG_PORTS	1000	/* passive ports per service, as the edge */

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
	enum svc_proto	 proto;
	uint16_t	 pasv_min, pasv_max;	/* FTP: passive_ports */
	char		 public_addr[MSG_ADDR_MAX];
	uint8_t		 public_ip[4];
	/* client policy: pushed to the edge in SVC_OPEN, CIDR lists as
	 * comma-separated text (a repeated key adds to its list) */
	int		 proxy_protocol;	/* 0 off, 1 or 2: header version */
	char		 allow[MSG_CIDRS_MAX];
	char		 deny[MSG_CIDRS_MAX];
	char		 accept_proxy[MSG_CIDRS_MAX];
	uint32_t	 max_sess_ip;
	uint32_t	 max_rate_ip;
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
	int		 data_plain;		/* data_link = plain */
	unsigned	 data_pool;		/* idle data links per edge */
	unsigned	 data_mux;		/* multiplexed TLS links per edge */
	uint32_t	 relay_threads;		/* threads for bulk plain relays */
#define CFG_RELAY_THREADS_AUTO	UINT32_MAX	/* not set: one per CPU */
	char		 audit_log[PATH_MAX];	/* "" = no audit log */
	struct cfg_edge	 edges[CFG_MAX_EDGES];
	size_t		 nedges;
	struct cfg_service *services;
	size_t		 nservices;
	/* [admin]: off unless listen is set */
	char		 admin_listen[MSG_ADDR_MAX];
	char		 admin_token_file[PATH_MAX];
	char		 admin_token[CFG_TOKEN_MAX + 1];
	int		 admin_line;
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

/* ftp_cfg.c: the FTP keys of a [service]. ftpcfg_key returns 1 for a key
 * it took, 0 for a key that is not its own, -1 with err. */
int	ftpcfg_key(struct cfg_service *s, const char *name, const char *value,
	    char *err, size_t errlen);
/* A backend's "passive=A-B" option. 0 or -1 with err. */
int	ftpcfg_backend_opt(struct cfg_backend *b, const char *opt, char *err,
	    size_t errlen);
/* Once the section is read: check the FTP keys together and give each
 * backend its slice of the passive range. 0 or -1 with err. */
int	ftpcfg_check(struct cfg_service *s, char *err, size_t errlen);
int	ftpcfg_range(const char *v, uint16_t *lo, uint16_t *hi);
/* The index of the backend whose slice holds port, or -1. */
int	ftpcfg_backend_of(const struct cfg_service *s, uint16_t port);

/* dial.c: non-blocking outbound TCP, the one place that calls connect().
 * done() gets the connected fd, or -1 and an errno value. */
struct dial;
typedef void dial_cb(struct dial *d, int fd, int err);
struct dial {
	struct ev_io	 io;
	dial_cb		*done;
	void		*arg;
	int		 active;
	int		 known;		/* the outcome is in err already */
	int		 err;
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
	uint64_t	 connects;		/* HELLO_OKs received */
	uint64_t	 connected_at;		/* ev_now() of the last one */
	char		 last_error[160];
	char		 stats[MSG_STATS_MAX];	/* last valid STATS, "" if none */
	uint64_t	 stats_at;
	int		 out_ok;		/* the edge took our policy */
	uint8_t		 out_token[FRAME_SECRET];
	int		 plain;			/* the edge takes plain links */
	int		 mux;			/* multiplexed links to it */
	/* The pool of idle data links (agent_sess.c): links being opened
	 * or parked, tokens asked for, and a back-off after failures. */
	unsigned	 pool_links;
	unsigned	 pool_idle;
	unsigned	 pool_req;
	int		 pool_refused;		/* the edge said no: wait */
	/* The pool key from HELLO_OK (poolkey.h): with it, pooled links
	 * are proved by a counter and need no POOL_REQ first. */
	int		 pool_keyed;
	uint8_t		 pool_key[POOLKEY_LEN];
	uint64_t	 pool_kid;
	uint64_t	 pool_ctr;		/* the last counter used */
	/* The edge takes reusable plain links (HELLO_OK LINK_REUSE), and
	 * how many of ours carry a session and are to come back. */
	int		 pool_reuse;
	unsigned	 pool_lent;
	uint64_t	 pool_next;		/* no new link before this */
	uint64_t	 pool_backoff_ms;
};

extern struct cfg agent_cfg;
extern SSL_CTX *agent_tls;

void	edges_start(void);
/* idle: the last turn of the loop dispatched nothing. */
void	edges_tick(uint64_t now, int idle);
/* Whether an edge's pool wants a refill (the loop then polls). */
int	edges_pool_short(void);
void	edges_stop(void);
/* Send a frame on an edge's control channel if it is up. */
void	edge_send(struct aedge *e, const struct msg *m);
size_t	edges_count(void);
const struct aedge *edges_get(size_t i);
/* Reload: tell every connected edge what changed (services by name). */
void	edges_svc_close(const char *name);
void	edges_svc_open(const struct cfg_service *s);
/* Build the SVC_OPEN frame that pushes service s. */
void	svc_open_msg(const struct cfg_service *s, struct msg *m);
const char *aedge_state_name(enum aedge_state st);

/* An edge ready for outbound sessions (OUT_POLICY_OK received), picked
 * round-robin, or NULL. */
struct aedge *edge_pick_out(void);

/* Ask e for pool tokens until its pool is full (data_pool), or until it
 * has data_mux multiplexed links. */
void	edge_pool_fill(struct aedge *e);
/* A pooled or multiplexed link of e failed; early: before the edge took
 * it, which backs off the next try. */
void	edge_pool_failed(struct aedge *e, int early);
/* The edge took a pooled or multiplexed link: no back-off. */
void	edge_pool_ok(struct aedge *e);

/* agent_mux.c: multiplexed data links (data_mux). */
/* Open one to e with a token from POOL_GRANT. */
void	amux_open(struct aedge *e, const uint8_t *token);
/* e's control channel went: links being set up close, running ones close
 * once their sessions end. */
void	amux_edge_lost(struct aedge *e);
void	amux_tick(uint64_t now);
void	amux_stop(void);
/* e's multiplexed links that are up, and in *streams their sessions. */
size_t	amux_count(const struct aedge *e, uint64_t *streams);

/* agent_sess.c: pooled links */
/* Start the greeting on a data link just dialled to host: TLS (asking
 * for kernel TLS if ktls) or plain. fd is taken; on failure it is closed
 * and -1 returned with *why. A plain link is ready at once: the caller
 * sends its greeting. */
int	link_start(struct fconn *fc, int fd, int plain, int ktls,
	    const char *host, const struct fconn_ops *ops, void *owner,
	    const char **why);
/* Open a pooled data link to e with a token from POOL_GRANT. */
/* Open a pooled link to e, proved by token, or by e's pool key if token
 * is NULL. Returns 0, or -1 if no link could be started. */
int	sess_pool_open(struct aedge *e, const uint8_t *token);
/* Close e's pooled links that carry no session (e went away). */
void	sess_pool_close(struct aedge *e);
/* agent_ftp.c: FTP control and data sessions (docs/ftp.md). */
struct aftp;
/* The filter of a control session failed: the session must end with a
 * reset and call ftp_ctl_end(f, 1). */
typedef void ftp_fail_cb(void *arg, const char *why);
/* Add PROTOCOL and the passive range of an FTP service to its SVC_OPEN. */
void	ftp_svc_msg(const struct cfg_service *s, struct msg *m);
/* The FTP_PORTS frame for control session id held by backend b. */
void	ftp_ports_msg(uint64_t id, const struct cfg_backend *b, struct msg *m);
/* A control session joined: register it. For plain FTP the filter takes
 * *backend_fd and puts there the fd the relay must use instead. NULL
 * with why on failure (*backend_fd untouched). */
struct aftp *ftp_ctl_join(struct aedge *e, uint64_t id,
	    const struct cfg_service *svc, const struct cfg_backend *b,
	    const char *client_ip, int *backend_fd, ftp_fail_cb *fail,
	    void *arg, char *why, size_t whylen);
/* The control session ended (abort: cut; else the filter finishes
 * what is in flight). f may be NULL. */
void	ftp_ctl_end(struct aftp *f, int abort);
/* Where the data connection of SESS_NEW m goes: 0 with a (and backend
 * for the logs), or -1 with why. */
int	ftp_data_target(struct aedge *e, const struct msg *m,
	    struct net_addr *a, char *backend, size_t backendlen, char *why,
	    size_t whylen);
void	ftp_stop(void);
/* agent_audit.c: the audit log, one JSON object per line, written by
 * the agent only. Every function is a no-op while no log is open. */
struct audit_rec {
	uint64_t	 session;
	const char	*service;
	const char	*edge;
	const char	*client_addr;
	uint16_t	 client_port;
	const char	*backend;	/* NULL: none was reached */
	uint64_t	 t_start_ms;	/* wall clock, ms since the epoch */
	uint64_t	 t_end_ms;
	uint64_t	 bytes_in;	/* client to backend */
	uint64_t	 bytes_out;	/* backend to client */
	const char	*reason;	/* client-closed, backend-closed, denied,
					 * limit, timeout, error */
	const char	*detail;	/* NULL or more words on the reason */
};
/* Open path for appending (created 0640 if missing). 0, or -1 with err. */
int	audit_open(const char *path, char *err, size_t errlen);
/* Close and open path again (SIGHUP: logrotate has moved the file away,
 * or a reload named another file; "" stops the audit log). */
void	audit_reopen(const char *path);
void	audit_close(void);
void	audit_session(const struct audit_rec *r);
/* count refusals the edge did not report one by one */
void	audit_denied_summary(const char *service, const char *edge,
	    uint32_t count);
uint64_t audit_wall_ms(void);
/* agent_health.c: a TCP connect to every backend of each service with
 * health checks, every health_ms; a backend that does not answer is
 * marked down (skipped while others are up) until one answers again. */
void	health_start(void);
void	health_tick(uint64_t now);
void	health_stop(void);
/* Record the outcome of a connection to b: err 0 (up) or an errno
 * value (down). Changes are logged on a service with checks. */
void	health_report(struct cfg_service *svc, struct cfg_backend *b, int err);
/* 1 if new sessions should pass b over: down, on a service with checks. */
int	health_down(const struct cfg_service *svc, const struct cfg_backend *b);

/* agent_sess.c */
void	sess_new(struct aedge *e, const struct msg *m);
/* The edge opened stream sid on multiplexed link m with SESS_ASSIGN a. */
void	sess_mux_open(struct aedge *e, struct mux *m, uint32_t sid,
	    const struct msg *a);
/* SESS_DENIED / DENIED_SUMMARY: the edge refused a client by policy. */
void	sess_denied(struct aedge *e, const struct msg *m);
void	sess_tick(uint64_t now);
void	sess_stop(void);

/* A session as the admin API and the metrics see it. */
struct sess_info {
	uint64_t	 id;
	const char	*service;
	const char	*client;
	const char	*backend;	/* "" while none is chosen */
	const char	*edge;
	const char	*state;		/* "setup" or "relay" */
	uint64_t	 bytes_to_backend;
	uint64_t	 bytes_to_client;
	uint64_t	 age_ms;
};
typedef void sess_visit_cb(const struct sess_info *si, void *arg);
void	sess_foreach(sess_visit_cb *cb, void *arg);
/* Cut every session with this id (ids are per edge: with several edges
 * one id may name more than one session). Returns how many were cut. */
size_t	sess_kill(uint64_t id);
/* 1 if a session still refers to a service in arr[0..n). */
int	sess_uses(const struct cfg_service *arr, size_t n);
/* After a reload: move relaying sessions' backend counts to the new table. */
void	sess_reloaded(void);

/* agent_metrics.c: counters, and the Prometheus text exposition. */
enum sess_outcome { SO_COMPLETED, SO_FAILED, SO_REFUSED, SO_KILLED,
    SO_STOPPED, SO_NUM };
void	metrics_sess_open(const char *svc);
void	metrics_sess_joined(uint64_t setup_ms);
void	metrics_sess_end(const char *svc, enum sess_outcome o,
	    uint64_t to_backend, uint64_t to_client);
/* The exposition text, malloc'd (the caller frees), or NULL. */
char	*metrics_render(size_t *len);
void	metrics_free(void);

/* agent_admin.c: the HTTP admin API, driven from the event loop. */
int	admin_start(const char *listen, char *err, size_t errlen);
void	admin_tick(void);
void	admin_stop(void);

/* agent_reload.c: apply a new configuration file to the running agent. */
#define RELOAD_LIST	4096
struct reload_result {
	char	 added[RELOAD_LIST];	/* service names, space separated */
	char	 removed[RELOAD_LIST];
	char	 changed[RELOAD_LIST];	/* definition changed: closed, reopened */
	char	 backends[RELOAD_LIST];	/* only backends changed: no frame */
	char	 restart[RELOAD_LIST];	/* settings that need a restart */
};
/* Load agent_cfg.path again. On error returns -1 with the reason in err
 * and the running configuration untouched. */
int	reload_run(struct reload_result *res, char *err, size_t errlen);
/* Free retired service tables no session uses any more. */
void	reload_tick(void);
void	reload_stop(void);
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
/* Record r: one log line, and a record in the audit log. */
void	out_audit(const struct out_record *r);
/* agent_audit.c: the audit record of one outbound session. */
void	audit_outbound(const struct out_record *r);

#endif
