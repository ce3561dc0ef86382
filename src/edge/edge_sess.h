/* edge_sess.h - sessions: a partner's connection (or an outbound
 * destination) joined to a data link of an agent, from the accept to the
 * end.
 *
 * A new session goes to an agent at once: the edge writes SESS_OPEN on
 * one of that agent's data links (a new stream on a multiplexed link, or
 * an idle plain link) and starts relaying; the agent dials its backend and
 * joins, or refuses. Only when the agent has no link free does the
 * session wait, unread, for one (at most --claim-timeout). */
#ifndef SP_EDGE_SESS_H
#define SP_EDGE_SESS_H

#include <stdint.h>
#include <sys/socket.h>

#include "edge/edge_adm.h"
#include "edge/edge_ftp.h"

struct eagent;

/* What a new session is. */
struct esess_req {
	uint8_t		 kind;		/* SK_* */
	const char	*svc;		/* its service (not SK_OUTBOUND) */
	struct eagent	*agent;		/* FTP data, outbound: only this one */
	uint64_t	 ftp_ctl;	/* FTP data: its control session */
	uint16_t	 ftp_port;	/* SK_FTP_DATA: its passive port */
	uint64_t	 request;	/* SK_OUTBOUND, SK_FTP_ACTIVE: the
					 * agent's request */
	struct adm_hold	 adm;		/* admission counts, taken over */
};

/* A fresh session id (also for clients refused before a session). */
uint64_t esess_new_id(void);
/* Hand-over: ids go on from next at least (the process before this one
 * used those below); the next id, not taken (next 0: only that). */
uint64_t esess_ids_from(uint64_t next);
/* Sessions now; with waiting, only those waiting for a data link. */
uint64_t esess_live(int waiting);
/* Hand-over: each FTP control session to cb (its end is then told to
 * the new process, eho_ftp_end). */
void	esess_each_ftp(void (*cb)(uint64_t id, const char *svc, const char *ip,
	    const char *agent, uint64_t instance, const struct eftp_ports *p));
/* 1 if one more session of service svc, which has npending waiting
 * already, would pass the edge's limits (logged and counted). */
int	esess_full(const char *svc, uint64_t npending);
/* Start a session for fd (taken): client is the partner (or the
 * destination, outbound), local where it connected (NULL: unknown). */
void	esess_start(int fd, const struct sockaddr *client,
	    const struct sockaddr *local, const struct esess_req *r);
/* Agent a may have a data link free, or offer a service now. */
void	esess_links_ready(struct eagent *a);
/* a's control channel is gone: its running sessions go on; those waiting
 * for it go to another agent of their service, or end. */
void	esess_agent_lost(struct eagent *a);
/* a is back (a new control channel of the same process, after a network
 * blip): the running sessions it had are its again, so that it can speak
 * for them (FTP_PORTS, FTP_DIAL) and their FTP data connections reach it. */
void	esess_agent_back(struct eagent *a);
/* Who a client session is: its service, the partner's address and the
 * address it reached ("" if unknown); valid until the next loop turn. */
struct esess_peer {
	const char	*svc, *ip, *lip;
};
/* FTP: the data ports of client session id, if a holds it (and who it
 * is), else NULL. */
struct eftp_ports *esess_ftp_ports(uint64_t id, const struct eagent *a,
	    struct esess_peer *peer);
/* FTP: the control session of service svc from ip whose ports hold
 * port: its agent and id. 0, or -1 if none. Scans the sessions. */
int	esess_ftp_match(const char *svc, const char *ip, uint16_t port,
	    struct eagent **a, uint64_t *id);
/* End every partner's session whose address match() says is banned
 * (END killed). How many. */
size_t	esess_cut(int (*match)(const uint8_t a16[16]));
void	esess_tick(uint64_t now);
/* End every session (SE_STOPPING, detail why). */
void	esess_shutdown(const char *why);
void	esess_stats(char *out, size_t outlen);

#endif
