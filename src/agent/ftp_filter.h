/* ftp_filter.h - inside the agent's FTP module only (agent_ftp.c and
 * ftp_filter.c): a control session as agent_ftp.c registers it, and what
 * each file asks of the other. */
#ifndef SP_AGENT_FTP_FILTER_H
#define SP_AGENT_FTP_FILTER_H

#include <stdint.h>

#include "agent/agent_cfg.h"
#include "agent/ftp_line.h"
#include "common/ev.h"
#include "common/net.h"
#include "common/pump.h"

#define DIR_OUT		(2 * FTP_LINE_MAX)

/* One direction of the filter: bytes read wait in `in` until a whole line
 * is there, then go (as they are or rewritten) to `out`. */
struct fdir {
	char		 in[FTP_LINE_MAX];
	size_t		 inlen;
	char		 out[DIR_OUT];
	size_t		 outoff, outlen;
	unsigned	 eof:1;		/* the read side saw EOF */
	unsigned	 shut:1;	/* the write side is shut down */
	unsigned	 longline:1;	/* passing or dropping an over-long line */
};

struct aftp {
	struct pend	 e;		/* first: the filter as an endpoint */
	struct aedge	*edge;
	uint64_t	 id;
	char		 svc[MSG_NAME_MAX];
	char		 ip[MSG_ADDR_MAX];	/* the client's, numeric */
	struct net_addr	 backend;
	char		 backend_str[CFG_STR];
	uint16_t	 pmin, pmax;		/* the backend's slice */
	uint8_t		 public_ip[4];
	int		 live;			/* data connections welcome */
	int		 tls;			/* past AUTH + 234 (or ftps) */
	/* active mode: the backend's connection to lio, once accepted, waits
	 * in act_fd for the edge's session (request act_req) */
	int		 active;
	struct ev_io	 lio;			/* -1: none */
	uint16_t	 act_port;		/* the client's, from its PORT */
	int		 act_fd;		/* -1: none */
	uint64_t	 act_req;
	uint64_t	 act_at;
	int		 act_failed;		/* the transfer's replies: 425 */
	/* the filter (protocol = ftp) */
	int		 filter;
	struct ev_io	 bio;			/* the backend */
	unsigned	 want;			/* what the pump waits for */
	unsigned	 hup:1;
	int		 werr;			/* a failed write to the backend */
	struct fdir	 s2c, c2s;
	struct ftp_rstate rs;
	long		 outstanding;		/* commands without a final reply */
	int		 hold;			/* commands wait for outstanding 0 */
	int		 auth_wait;
	const char	*inject;		/* our reply, sent when due */
	struct aftp	*prev, *next;
};

/* ftp_filter.c: make f's inner endpoint the filter over fd (taken). */
void	ftpf_init(struct aftp *f, int fd, struct pend **inner);
/* The backend's data connection fd gets no client: reset, so that the
 * server ends the transfer, whose replies become 425. */
void	ftpf_active_fail(struct aftp *f, int fd);
/* The waiting data connection joined or failed: held replies go on. */
void	ftpf_active_release(struct aftp *f);
/* Close the active listener and any data connection still waiting. */
void	ftpf_active_stop(struct aftp *f);

/* agent_ftp.c: a public port of f's slice for backend port bport, or 0. */
uint16_t aftp_port_take(struct aftp *f, uint16_t bport);
/* The number of a new FTP_DIAL request. */
uint64_t aftp_request_new(void);
void	aftp_addr_port(struct net_addr *a, uint16_t port);

#endif
