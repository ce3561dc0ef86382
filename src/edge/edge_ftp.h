/* edge_ftp.h - the passive data ports of FTP services (docs/ftp.md).
 *
 * An FTP service's SVC_OPEN carries PROTOCOL and a passive port range;
 * the edge listens on every port of the range, on the service's address,
 * for as long as the service is open. Each control session of the service
 * (a session, edge_sess.c) holds, once its agent has sent FTP_PORTS, the
 * ports its data connections may use (the slice of the backend that holds
 * it). A connection to passive port P from address X
 * becomes a session only if a live control session from X allows P; it
 * then goes, with the control session's id and P, to the agent that holds
 * that control session. Anything else is refused at once: no port
 * stealing by other addresses. Active-mode data connections, which the
 * edge dials (edge_out.c), become sessions the same way. */
#ifndef SP_EDGE_FTP_H
#define SP_EDGE_FTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"
#include "common/net.h"

struct eagent;
struct eftp;

/* A control session's passive ports: 0, 0 until FTP_PORTS; stamp says
 * which was set last. */
struct eftp_ports {
	uint16_t	 pmin, pmax;
	uint64_t	 stamp;
};

/* For an SVC_OPEN with PROTOCOL: check it and listen on its passive
 * ports at listen's address; *out stays NULL for other services. 0, or
 * -1 with err (nothing left open). */
int	eftp_svc_open(const char *svc, const struct msg *def,
	    const struct net_addr *listen, struct eftp **out, char *err,
	    size_t errlen);
void	eftp_svc_close(struct eftp *f);	/* NULL is fine */
void	eftp_listeners_set(uint32_t mask);
/* Hand-over: each passive listener of f (NULL is fine) to cb. */
void	eftp_each_listener(const struct eftp *f, void (*cb)(int fd, void *arg),
	    void *arg);
/* The next stamp: which ports were set last. */
uint64_t eftp_stamp(void);
void	eftp_ports(struct eagent *agent, const struct msg *m);	/* FTP_PORTS */
/* 1 if svc is an FTP service that declared active mode (FTP_ACTIVE). */
int	eftp_active(const char *svc);
/* A data connection (fd, taken) to or from peer, for control session
 * r->ftp_ctl of service r->svc, held by r->agent: a session of its own,
 * not counted against the service's policy again (the control session
 * was admitted from the same address), but against the edge's limits.
 * 0, or -1 with why (fd closed). */
struct esess_req;
int	eftp_data_start(int fd, const struct net_addr *peer,
	    struct esess_req *r, char *why, size_t whylen);
void	eftp_active_failed(void);	/* counts an active request refused */
void	eftp_stats(char *out, size_t outlen);

#endif
