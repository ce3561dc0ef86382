/* edge_link.h - data links: connections an agent opens to the edge ahead
 * of time, proved with LINK_HELLO (linkkey.h), on which the edge opens
 * sessions. Two kinds: a TLS link carries many sessions at once as
 * streams (mux.h); a plain link carries one at a time, its bytes spliced
 * (plink.h), and is parked between sessions. */
#ifndef SP_EDGE_LINK_H
#define SP_EDGE_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/frame.h"

struct eagent;
struct pend;
struct plink;

/* A connection from peer whose first frame, m, is LINK_HELLO: prove it
 * and keep it as a data link of its agent (TLS: ssl, with output pending
 * moved in; plain: ssl NULL), or refuse it. fd and ssl are taken. */
void	elink_hello(int fd, SSL *ssl, struct buf *pending, const char *peer,
	    const struct msg *m);
/* Open session m (SESS_OPEN) on a data link of a: the endpoint of the
 * session's inner side, and *kind "tls" or "plain"; NULL if a has no link
 * free. pl is the session's storage for a plain link's endpoint. */
struct pend *elink_open(struct eagent *a, const struct msg *m, struct plink *pl,
	    const char **kind);
/* A plain link (fd, handed as by ev_release) whose session ended with
 * both end markers: park it for agent a again, or close it (a gone, or
 * no room). */
void	elink_again(struct eagent *a, int fd, int registered);
/* a's control channel is gone: its idle links close, and its multiplexed
 * links take no new session and close once their last one ends. */
void	elink_agent_lost(struct eagent *a);
void	elink_tick(uint64_t now);
void	elink_shutdown(void);
void	elink_stats(char *out, size_t outlen);

#endif
