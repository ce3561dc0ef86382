/* mux.h - many sessions over one long-lived data link.
 *
 * A TLS data link per session costs a handshake to set up and OpenSSL's
 * per-connection state (some 20 KiB) for as long as the session lives.
 * With multiplexing, an agent keeps a few TLS links open to each edge and
 * every session becomes a stream on one of them: opening it is one small
 * frame, and an idle stream costs a few hundred bytes.
 *
 * After its greeting (MUX_HELLO / MUX_OK, docs/protocol.md) a link
 * carries mux frames, each an 8-byte header and a payload:
 *
 *	u32 stream id, u8 type, u8 flags (0), u16 payload length
 *
 * Streams are opened by one side only (the edge, for its clients), with
 * ids that only grow, so a frame for an id that was opened and has since
 * ended is recognised and dropped; one for an id never opened is a
 * protocol error. Each stream moves bytes between a local socket (the
 * client at the edge, the backend at the agent) and the link.
 *
 * Back-pressure and bounded memory: a side may have at most its window
 * of a stream's bytes in flight, unacknowledged; the receiver credits them
 * back as it writes them to its socket. A stream's bytes that its socket
 * cannot take at once wait in one buffer of at most the window, allocated
 * only while they wait. A peer that sends beyond its credit breaks the
 * protocol and loses the link. What one link queues toward its peer is
 * bounded too (MUX_TX_SOFT for data, MUX_TX_MAX in all); a link whose
 * peer falls that far behind is dropped.
 *
 * Windows start at MUX_WINDOW. One stream alone moves at most a window
 * per round trip, so a sender whose credit runs out marks the DATA frame
 * that used it (MUX_F_BLOCKED); a receiver whose socket keeps up (nothing
 * waits in its buffer) then doubles the window with extra credit, up to
 * MUX_WINDOW_MAX. What windows grow beyond MUX_WINDOW, over all streams
 * of a process, is bounded by MUX_GROW_BUDGET, so the worst case stays
 * MUX_WINDOW per stream plus the budget.
 *
 * Half-close is passed on (FIN, then shutdown(SHUT_WR) once the bytes
 * before it are written), and so is a failure (RST: the other side's
 * socket is reset once what came before has been written and has left).
 */
#ifndef SP_MUX_H
#define SP_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/ev.h"

#define MUX_HDR		8
#define MUX_DATA_MAX	16384		/* payload of one DATA frame */
#define MUX_CTL_MAX	1024		/* payload of any other frame */
/* Bytes of a stream in flight, per direction. A stream moves at most a
 * window per round trip through both event loops and TLS, so this sets
 * one stream's speed: 256 KiB, as yamux and HTTP/2 implementations use. */
#define MUX_WINDOW	(256 * 1024)	/* a stream's first window */
#define MUX_WINDOW_MAX	(2 * 1024 * 1024)	/* grown, at most */
#define MUX_GROW_BUDGET	(64 * 1024 * 1024)	/* growth, all streams */
#define MUX_PRIME_MAX	1024		/* a PROXY header before the data */
#define MUX_TX_SOFT	(256 * 1024)	/* stop reading streams beyond */
#define MUX_TX_MAX	(4 * 1024 * 1024)	/* a peer this far behind is gone */
#define MUX_BUCKETS	1024		/* stream id hash */
#define MUX_PING_MS	2000
#define MUX_DEAD_MS	6000

/* Frame types. */
#define MUX_OPEN	1	/* opener: a new stream; payload: metadata */
#define MUX_DATA	2	/* 1..MUX_DATA_MAX bytes of the stream */
#define MUX_FIN		3	/* the sender's direction ended cleanly */
#define MUX_RST		4	/* the stream failed; payload: why (text) */
#define MUX_CREDIT	5	/* payload u32: bytes the sender may send more */
#define MUX_REFUSE	6	/* acceptor: no backend; payload: why (text) */
#define MUX_PING	7	/* stream 0; payload 8 bytes, echoed */
#define MUX_PONG	8

/* Frame flags. */
#define MUX_F_BLOCKED	0x01	/* DATA: the sender's credit ran out with it */

struct mux_hdr {
	uint32_t	 sid;
	uint8_t		 type;
	uint8_t		 flags;
	uint16_t	 len;
};

/* Decode and check a frame header in p[0..MUX_HDR): known type, flags 0,
 * a payload length allowed for the type, stream 0 exactly for PING and
 * PONG. 0, or -1 with *why. */
int	mux_hdr_decode(const uint8_t *p, struct mux_hdr *h, const char **why);
void	mux_hdr_encode(uint8_t *p, uint32_t sid, uint8_t type, uint16_t len);
/* Bytes of window grown beyond MUX_WINDOW, all streams of this process,
 * and the bound on it (MUX_GROW_BUDGET unless set; tests set it low). */
size_t	mux_grown(void);
void	mux_set_grow_budget(size_t n);

struct mux;
struct mux_stream;

/* The stream ended: first is 0 if the local socket closed or failed
 * first, 1 if the peer did; err is NULL for a clean end (both ways
 * closed), else why. refused: the acceptor refused it (MUX_REFUSE). The
 * callee ends the stream with mux_stream_free. */
typedef void mux_done_cb(struct mux_stream *s, int first, const char *err,
    int refused);

struct mux_ops {
	/* Acceptor: the peer opened stream sid with metadata p[0..n). Take it
	 * with mux_stream_accept, or refuse it with mux_refuse. */
	void	(*open)(struct mux *m, uint32_t sid, const uint8_t *p, size_t n);
	/* The link failed or closed; every stream on it has ended (done
	 * called) already. The owner calls mux_free. */
	void	(*lost)(struct mux *m, const char *why);
};

struct mux_stream {
	struct mux	*m;
	uint32_t	 sid;
	struct ev_io	 io;		/* the local socket; fd -1 until set */
	struct buf	 out;		/* from the peer, for the socket */
	uint32_t	 credit;	/* bytes we may still send */
	uint32_t	 owed;		/* written to the socket, not credited */
	uint32_t	 inflight;	/* received, not yet credited back */
	uint32_t	 win;		/* the window granted to the peer */
	unsigned	 eof:1;		/* the socket said EOF: FIN queued */
	unsigned	 fin_rcvd:1;	/* the peer's direction ended */
	unsigned	 shut:1;	/* shutdown(SHUT_WR) done */
	unsigned	 rst_rcvd:1;	/* the peer failed: write out, end */
	unsigned	 ended:1;	/* done called */
	unsigned	 waiting:1;	/* on the link's list of readers */
	unsigned	 blocked:1;	/* the peer ran out of credit */
	unsigned	 failed:1;	/* the socket failed: reset it at once;
					 * before the end, its write failed and
					 * what it still holds is read out */
	unsigned	 refused:1;
	unsigned	 end_err:1;	/* ended with an error */
	int		 first;		/* side that ended first: -1, 0 local,
					 * 1 the peer */
	uint32_t	 prime;		/* bytes of out that are not the peer's */
	char		 err[128];	/* rst_rcvd, or failed: why */
	uint64_t	 bytes[2];	/* [0] socket to link, [1] link to socket */
	uint64_t	 last_active;	/* ev_now() when bytes last moved */
	mux_done_cb	*done;
	void		*arg;
	struct mux_stream *hnext;	/* id hash chain */
	struct mux_stream *wnext;	/* waiting for room on the link */
	struct mux_stream *rnext;	/* ended, done() due */
};

struct mux {
	struct ev_io	 io;
	SSL		*ssl;		/* NULL: a plain link (tests) */
	int		 opener;	/* this side opens streams */
	const struct mux_ops *ops;
	void		*arg;
	struct buf	 rx;		/* frames read, not yet handled */
	struct buf	 tx;		/* frames for the peer */
	struct buf	 wire;		/* TLS records of tx, not yet sent */
	int		 gather;	/* records go to wire (tlsx_gather) */
	uint32_t	 next_sid;	/* opener: the next id; acceptor: the
					 * lowest id not yet opened */
	uint64_t	 nstreams;
	uint64_t	 streams_total;	/* opened over the link's life */
	struct mux_stream *buckets[MUX_BUCKETS];
	struct mux_stream *waiting;	/* readers stopped while tx is full */
	uint32_t	 rd_want;	/* TLS: what the link waits for */
	uint32_t	 wr_want;
	uint64_t	 last_rx;
	uint64_t	 last_ping;
	uint64_t	 nonce;
	int		 failed;
	int		 closing;	/* no new streams: drain, then lost */
	int		 settled;	/* failed, and its streams ended */
	char		 why[160];
};

/* Start a link over fd/ssl, handshaken already (the link owns both from
 * here, also on failure). pending holds bytes to send first (moved in).
 * 0 or -1. */
int	mux_start(struct mux *m, int fd, SSL *ssl, int opener, struct buf *pending,
	    const struct mux_ops *ops, void *arg);
/* Close the link and free what it holds. Its streams must have ended. */
void	mux_free(struct mux *m);
/* Opener: a new stream for local socket fd (taken, closed with the
 * stream), announced with metadata p[0..n) (at most MUX_CTL_MAX). NULL if
 * the link cannot take it (fd is then untouched). */
struct mux_stream *mux_open(struct mux *m, int fd, const void *p, size_t n,
	    mux_done_cb *done, void *arg);
/* Acceptor, from open(): take stream sid; its socket comes later with
 * mux_stream_attach (bytes from the peer wait until then). NULL if out of
 * memory (the stream is then refused). */
struct mux_stream *mux_stream_accept(struct mux *m, uint32_t sid,
	    mux_done_cb *done, void *arg);
/* Acceptor: refuse stream sid (from open(), or a stream accepted and not
 * yet attached, which is freed: done is not called). */
void	mux_refuse(struct mux *m, uint32_t sid, const char *why);
void	mux_stream_refuse(struct mux_stream *s, const char *why);
/* Give an accepted stream its socket (taken). prime, if not NULL, is
 * written to it before the peer's bytes (a PROXY header; moved in, at
 * most MUX_PRIME_MAX bytes). 0, or -1 (the stream has then ended, done called). */
int	mux_stream_attach(struct mux_stream *s, int fd, struct buf *prime);
/* Free an ended stream (from done()), or cut a live one: a RST goes to
 * the peer, and the socket is reset (abort) or closed. */
void	mux_stream_free(struct mux_stream *s, int abort);
/* Keep-alive and time-outs; call about once a second. Returns -1 if the
 * link was found dead (lost() called). */
int	mux_tick(struct mux *m, uint64_t now);
/* Stop opening streams on m; lost() follows once its last stream ends. */
void	mux_close_when_idle(struct mux *m);

#endif
