/* relay.h - move bytes both ways between two sockets, unchanged.
 *
 * Each side is a plain socket or a TLS connection over one. Bytes read
 * from side i wait in b[i] until written to side 1-i; while b[i] holds
 * bytes, side i is not read (back-pressure), so memory per relay is at
 * most two buffers, and none while idle: storage is taken from a pool
 * when a read is attempted and given back as soon as it drains.
 *
 * EOF on one side is passed on as a half-close of the other (shutdown
 * SHUT_WR, or TLS close_notify) once its buffered bytes are written. The
 * relay ends when both directions have closed, or on the first error, in
 * which case plain sockets are reset rather than closed cleanly so that
 * a cut transfer cannot look like a complete one. What the failing side
 * sent before its error (a peer that resets right after its last write)
 * is passed on first, and a reset waits until the bytes already written
 * to that socket have left, as without a relay in between. */
#ifndef SP_RELAY_H
#define SP_RELAY_H

#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/ev.h"

struct relay;

/* Called once when the relay ends; first is the side that closed or
 * failed first, err is NULL for a clean end. The callee frees r with
 * relay_free() (the relay does not touch r after the call). */
typedef void relay_done_cb(struct relay *r, int first, const char *err);

struct relay_end {
	struct ev_io	 io;
	SSL		*ssl;
	struct relay	*r;
	uint32_t	 rd_want;	/* what a blocked read waits for */
	uint32_t	 wr_want;	/* what a blocked write waits for */
	unsigned	 eof:1;		/* read side saw EOF */
	unsigned	 shut:1;	/* write side shut down */
	unsigned	 hup:1;		/* peer gone both ways: read without epoll */
	unsigned	 failed:1;
	/* Writing to this side failed (the peer reset, say) while what it
	 * sent may still wait to be read: those bytes are passed on
	 * before the relay ends with werr. */
	unsigned	 wdead:1;
	int		 soerr;		/* a socket error seen by epoll, kept */
	char		 werr[128];
};

struct relay {
	struct relay_end e[2];
	struct buf	 b[2];
	uint64_t	 bytes[2];	/* bytes from e[i] delivered to e[1-i] */
	int		 first_eof;	/* side that closed first, -1 none */
	uint64_t	 last_active;	/* ev_now() when bytes last moved */
	relay_done_cb	*done;
	void		*arg;
};

/* Start relaying between fd0/ssl0 and fd1/ssl1 (ssl NULL for plain).
 * The relay owns the fds and SSLs from here, even on failure, where it
 * returns -1 after freeing them. prime, if not NULL, holds bytes to write
 * to side 1 before anything relayed (a greeting frame); it is moved in. */
int	relay_start(struct relay *r, int fd0, SSL *ssl0, int fd1, SSL *ssl1,
	    struct buf *prime, relay_done_cb *done, void *arg);
/* Close both sides (reset plain sockets if abort) and free buffers.
 * On abort, a plain socket that did not fail itself is reset only once
 * the bytes written to it have left (at most 5 s later; relay_tick). */
void	relay_free(struct relay *r, int abort);
/* Reset the sockets whose queued bytes have left or whose time is up;
 * call from the main loop. relay_tick(UINT64_MAX) resets all now. */
void	relay_tick(uint64_t now);

#endif
