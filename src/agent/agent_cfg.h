/* agent_cfg.h - the agent's configuration: one INI file, parsed and
 * checked whole before anything uses it (agent_cfg.c, ftp_cfg.c). What
 * changes while the agent runs (sessions per backend, health) is not
 * here but in agent_backend.h, so that a reload swaps this whole. */
#ifndef SP_AGENT_CFG_H
#define SP_AGENT_CFG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cidr.h"
#include "common/frame.h"
#include "common/net.h"

#define AGENT_VERSION		"0.1.0"

#define CFG_MAX_EDGES		16
#define CFG_MAX_BACKENDS	16
#define CFG_MAX_SERVICES	256
#define CFG_STR			256
#define CFG_TOKEN_MIN		16
#define CFG_TOKEN_MAX		1024
#define CFG_LINKS_MAX		64	/* data links per edge */
#define CFG_LINKS_TLS		2	/* defaults: multiplexed links */
#define CFG_LINKS_PLAIN		4	/* ... idle plain links */
#define CFG_HEALTH_DEFAULT_MS	5000	/* services with 2+ backends */
#define CFG_PRIORITY_MAX	65535

struct bstate;

struct cfg_backend {
	char		 str[CFG_STR];		/* as written */
	struct net_addr	 addr;
	uint16_t	 pasv_min, pasv_max;	/* FTP: this backend's slice */
	struct bstate	*st;			/* its run-time state, once
						 * bound (backend_bind) */
};

/* What a service carries, for the agent: bytes (tcp), or an FTP control
 * channel with passive data connections (agent_ftp.c). */
enum svc_proto { SVC_TCP, SVC_FTP, SVC_FTPS };
/* Whose address a backend sees (tsrc.h). */
enum svc_source { SRC_AGENT, SRC_CLIENT, SRC_CLIENT_PORT };
#define TSRC_DENY_DEFAULT	"10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, " \
				"100.64.0.0/10, fc00::/7"
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
	int		 active;		/* FTP: active = yes */
	/* client policy: pushed to the edge in SVC_OPEN, CIDR lists as
	 * comma-separated text (a repeated key adds to its list) */
	int		 proxy_protocol;	/* 0 off, 1 or 2: header version */
	char		 allow[MSG_CIDRS_MAX];
	char		 deny[MSG_CIDRS_MAX];
	char		 accept_proxy[MSG_CIDRS_MAX];
	uint32_t	 max_sess_ip;
	uint32_t	 max_rate_ip;
	/* source = client (tsrc.c) */
	enum svc_source	 source;
	char		 source_deny[MSG_CIDRS_MAX];
	int		 source_deny_set;
	struct cidr_list src_never;	/* built by tsrc_check */
	char		 refused[512];	/* why the service cannot run, or "" */
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
	uint32_t	 idle_timeout;		/* seconds, 0 = none */
};

struct cfg {
	char		 path[PATH_MAX];
	char		 name[MSG_NAME_MAX];
	char		 cert[PATH_MAX];
	char		 key[PATH_MAX];
	char		 ca[PATH_MAX];
	uint64_t	 connect_timeout_ms;
	int		 data_plain;		/* data_link = plain */
	unsigned	 data_links;		/* links kept per edge */
	char		 audit_log[PATH_MAX];	/* "" = no audit log */
	char		 ban_file[PATH_MAX];	/* "" = bans in memory only */
	char		 handover[PATH_MAX];	/* handover_socket, "" = none */
	uint32_t	 drain_s;		/* drain_timeout, 0 = none */
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

/* The configuration in force. */
extern struct cfg agent_cfg;

/* Load and validate path into c. On error returns -1 with "FILE:LINE:
 * what is wrong" in err; c is then freed. */
int	cfg_load(const char *path, struct cfg *c, char *err, size_t errlen);
void	cfg_free(struct cfg *c);
/* How backend names are resolved at load time; dial_resolve unless a
 * test harness must stay off the network (the fuzzer is numeric). */
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

#endif
