/* agent_link.h - data links: opened to each edge ahead of time, proved
 * with LINK_HELLO and the link key of the control connection, and each
 * session's way in. With data_link = tls, data_links multiplexed TLS
 * links per edge carry every session as a stream (mux.h); with plain,
 * data_links idle plain links wait for the next session, which runs on
 * its link alone, its bytes spliced (plink.h), and gives the link back
 * when it ends cleanly. */
#ifndef SP_AGENT_LINK_H
#define SP_AGENT_LINK_H

#include <stdint.h>

#include "common/end.h"

struct aedge;
struct mux;

/* The link a session arrived on (for asess_open). */
struct alink_from {
	struct mux	*mux;		/* a multiplexed link ... */
	uint32_t	 sid;		/* ... and the stream */
	int		 fd;		/* or a plain link; -1 */
	uint64_t	 kid;		/* the link key it was proved with */
};

/* Open links to e until it has data_links (when its control channel is
 * up and no back-off holds). */
void	alink_fill(struct aedge *e);
/* e's control channel went: links being opened or idle close, and
 * multiplexed links close once their last session ends. */
void	alink_edge_lost(struct aedge *e);
/* Refuse the session that arrived on l (not taken): a mux RST, or the
 * refusal on a plain link, which then closes when the edge closes it. */
void	alink_refuse(struct aedge *e, const struct alink_from *l,
	    enum sess_end code, const char *why);
/* A plain link (fd, handed as by ev_release) came back from a session
 * that ended cleanly with both end markers: keep it for the next, if the
 * control connection that proved it (kid) is still e's (the edge closes
 * the links it does not keep: alink_keep_max). */
void	alink_again(struct aedge *e, int fd, int registered, uint64_t kid);
/* A plain link that carried a session went (closed or reset with it). */
void	alink_gone(struct aedge *e, uint64_t kid);
/* The most idle plain links the edge is to keep (HELLO's LINKS_KEEP). */
unsigned alink_keep_max(void);
void	alink_tick(uint64_t now);
void	alink_stop(void);

#endif
