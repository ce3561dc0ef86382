/* fconn.h - a connection carrying control frames, over TLS or plain.
 *
 * Used for the control channel (both sides, always TLS) and for the
 * greeting at the start of a data link (TLS, or plain for plain data
 * links). Reads are exact: the header, then exactly the payload, so bytes
 * after a frame stay in the kernel or in OpenSSL for whoever takes the
 * connection over (see fconn_detach). */
#ifndef SP_FCONN_H
#define SP_FCONN_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/ev.h"
#include "common/frame.h"

#define FCONN_OUT_MAX	(1024 * 1024)	/* a peer this far behind is dead */
/* Frames handled per readiness: a peer that sends frames as fast as it
 * can must not keep the event loop to itself; the rest waits a turn. */
#define FCONN_BURST	64

/* Largest frame payload accepted, at most FRAME_MAX (edge --max-frame). */
extern uint32_t fconn_max_frame;
/* Frames refused as malformed or too large, on every connection. */
extern uint64_t fconn_bad_frames;

struct fconn;

struct fconn_ops {
	/* TLS handshake finished (never called for a plain connection, which
	 * is ready from fconn_start on). Return 0 to go on, -1 if fc was
	 * closed. NULL: nothing to do then. */
	int	(*ready)(struct fconn *fc);
	/* A valid frame arrived. Return 0 to go on reading, -1 if fc was
	 * closed or detached by the callee. */
	int	(*frame)(struct fconn *fc, struct msg *m);
	/* The connection failed or the peer closed it; the owner must call
	 * fconn_close. why says what happened. Called at most once. */
	void	(*lost)(struct fconn *fc, const char *why);
};

struct fconn {
	struct ev_io		 io;
	SSL			*ssl;
	const struct fconn_ops	*ops;
	void			*owner;
	int			 handshaken;
	int			 failed;
	int			 bad;		/* it failed on a frame the peer
						 * must not send: a protocol error,
						 * not a network one */
	uint32_t		 rd_want;
	uint32_t		 wr_want;
	uint8_t			 hdr[FRAME_HDR];
	size_t			 hdr_have;
	uint16_t		 type;
	uint32_t		 plen;		/* payload length of current frame */
	struct buf		 payload;
	struct buf		 out;
	uint32_t		 max_frame;	/* fconn_max_frame unless lowered */
	uint64_t		 last_rx;	/* ev_now() of the last frame */
	uint64_t		 frames_rx;
};

/* Take ownership of fd and ssl and start the handshake; ssl NULL for a
 * plain connection, which may send at once. */
int	fconn_start(struct fconn *fc, int fd, SSL *ssl,
	    const struct fconn_ops *ops, void *owner);
/* As fconn_start, for an fd handed over with ev_release (registered is
 * what that returned). */
int	fconn_start_handed(struct fconn *fc, int fd, SSL *ssl,
	    const struct fconn_ops *ops, void *owner, int registered);
/* Take over a connection that is established already (handshaken, or
 * plain) from another fconn (fconn_detach gave fd, ssl and pending,
 * which is moved in). 0 or -1. */
int	fconn_resume(struct fconn *fc, int fd, SSL *ssl, struct buf *pending,
	    const struct fconn_ops *ops, void *owner);
/* Queue a frame. -1 if it cannot be queued (the peer is too far behind):
 * the connection is then failing and lost() follows from the loop. */
int	fconn_send(struct fconn *fc, const struct msg *m);
/* Queue an ERROR frame with text, flush what can be flushed now. */
void	fconn_send_error(struct fconn *fc, const char *text);
/* Stop watching, free buffers, and hand fd and ssl back to the caller
 * without closing them (a data link becoming a relay). Any queued output
 * is returned in *pending for the new owner to send first. */
void	fconn_detach(struct fconn *fc, int *fd, SSL **ssl, struct buf *pending);
/* Close and free everything fc holds (not fc itself). */
void	fconn_close(struct fconn *fc);

#endif
