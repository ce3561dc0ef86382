/* agent_ftp.h - FTP services on the agent (docs/ftp.md): the control
 * filter of plain FTP, the passive port table, and where a passive data
 * connection goes. */
#ifndef SP_AGENT_FTP_H
#define SP_AGENT_FTP_H

#include <stddef.h>
#include <stdint.h>

#include "agent/agent_cfg.h"

struct aedge;
struct aftp;
struct pend;
struct psock;

/* Add PROTOCOL and the passive range of an FTP service to its SVC_OPEN. */
void	aftp_svc_msg(const struct cfg_service *s, struct msg *m);
/* The FTP_PORTS frame for control session id held by backend b. */
void	aftp_ports_msg(uint64_t id, const struct cfg_backend *b, struct msg *m);
/* Control session id of svc (from client_ip, on edge e) reached backend
 * b on fd (taken): register it, and give the session its inner endpoint
 * in *inner: the filter over fd for plain FTP, else sock made from fd.
 * NULL with why (fd untouched). */
struct aftp *aftp_ctl_join(struct aedge *e, uint64_t id,
	    const struct cfg_service *svc, const struct cfg_backend *b,
	    const char *client_ip, int fd, struct psock *sock,
	    struct pend **inner, char *why, size_t whylen);
/* The control session ended (its pump freed): forget it. NULL is fine. */
void	aftp_ctl_end(struct aftp *f);
/* Where the data connection of SESS_OPEN m goes: 0 with a (and backend
 * for the logs), or -1 with why. */
int	aftp_data_target(struct aedge *e, const struct msg *m,
	    struct net_addr *a, char *backend, size_t backendlen, char *why,
	    size_t whylen);
/* SESS_OPEN m of kind FTP active, from edge e: the backend's data
 * connection waiting for it (taken), with backend for the logs; or -1
 * with why (the control session ended), -2 if the edge broke the
 * protocol (a request never made, a session that does not match it). */
int	aftp_active_claim(struct aedge *e, const struct msg *m, char *backend,
	    size_t backendlen, char *why, size_t whylen);
/* FTP_DIAL_FAIL from e: the backend's data connection is reset. */
void	aftp_active_failed(struct aedge *e, const struct msg *m);
/* The SESS_OPEN for request of e was refused: the same for its client. */
void	aftp_active_refused(struct aedge *e, uint64_t request, const char *why);
/* e's control connection is gone (or hands over): what waits for its
 * FTP_DIALs gets no answer; the clients get 425. */
void	aftp_edge_down(struct aedge *e, const char *why);
void	aftp_tick(uint64_t now);
/* e's control channel reaches a new edge process (a hand-over): tell it
 * again which ports each live control session of e has. */
void	aftp_edge_back(struct aedge *e);
void	aftp_stop(void);

#endif
