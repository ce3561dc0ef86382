/* mux.h - many sessions over one long-lived TLS data link.
 *
 * A TLS link per session would cost a handshake to set up and OpenSSL's
 * per-connection state (some 20 KiB) for as long as the session lives.
 * Multiplexed, an agent keeps a few TLS links open to each edge and every
 * session is a stream on one of them: opening it is one small frame, and
 * an idle stream costs a few hundred bytes.
 *
 * After its greeting (LINK_HELLO, docs/protocol.md) a link carries mux
 * frames, each an 8-byte header and a payload:
 *
 *	u32 stream id, u8 type, u8 flags, u16 payload length
 *
 * Streams are opened by one side only (the edge), with ids 1, 2, 3, ...
 * in order: a frame for an id that was opened and has ended is dropped
 * (the peer may not know yet); an OPEN out of order, or any other frame
 * for an id never opened, is a protocol error and ends the link.
 *
 * A stream is a pump endpoint (pump.h): the link pushes what the peer
 * sends into the stream's pump (pump_push), and the pump sends the other
 * side's bytes into the link (as DATA frames) within the stream's credit.
 *
 * Back-pressure and bounded memory: a side may have at most its window of
 * a stream's bytes in flight, unacknowledged; the receiver credits them
 * back as they leave its pump. So what waits for a stream's socket is one
 * buffer of at most the window, and only while it waits. A peer that
 * sends beyond its credit breaks the protocol and loses the link. What
 * one link queues toward its peer is bounded too: streams stop sending
 * beyond MUX_TX_SOFT, and a link whose peer falls MUX_TX_MAX behind is
 * dropped.
 *
 * Windows start at MUX_WINDOW. One stream alone moves at most a window
 * per round trip, so a sender whose credit runs out marks the DATA frame
 * that used it (MUX_F_BLOCKED); a receiver whose socket keeps up (nothing
 * waits in its pump) then doubles the window with extra credit, up to
 * MUX_WINDOW_MAX. What windows grow beyond MUX_WINDOW, over all streams
 * of a process, is bounded by MUX_GROW_BUDGET, so the worst case stays
 * MUX_WINDOW per stream plus the budget.
 *
 * Half-close is passed on (FIN), and so is a failure (RST, with the END
 * code of end.h and a text; a refusal is an RST whose code is
 * SE_REFUSED).
 *
 * Nothing is freed under the code that uses it: frames a callback queues
 * go out after it (mux_settle, an event-loop hook), and a failed link is
 * reported (ops->lost) only once every stream on it has been closed by
 * its pump's owner.
 */
#ifndef SP_MUX_H
#define SP_MUX_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/end.h"
#include "common/ev.h"
#include "common/pump.h"

#include <sys/uio.h>

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
#define MUX_TX_SOFT	(256 * 1024)	/* streams stop sending beyond */
#define MUX_TX_MAX	(4 * 1024 * 1024)	/* a peer this far behind is gone */
#define MUX_BUCKETS	1024		/* stream id hash */
#define MUX_PING_MS	2000
#define MUX_DEAD_MS	6000

/* Frame types. */
#define MUX_OPEN	1	/* opener: a new stream; payload: SESS_OPEN */
#define MUX_DATA	2	/* 1..MUX_DATA_MAX bytes of the stream */
#define MUX_FIN		3	/* the sender's direction ended cleanly */
#define MUX_RST		4	/* the stream failed: u8 END code, text */
#define MUX_CREDIT	5	/* u32: bytes the receiver may send more */
#define MUX_PING	6	/* stream 0; 8 bytes, echoed */
#define MUX_PONG	7

/* Frame flags. */
#define MUX_F_BLOCKED	0x01	/* DATA: the sender's credit ran out with it */

struct mux_hdr {
	uint32_t	 sid;
	uint8_t		 type;
	uint8_t		 flags;
	uint16_t	 len;
};

/* Decode and check a frame header in p[0..MUX_HDR): known type, known
 * flags, a payload length allowed for the type, stream 0 exactly for PING
 * and PONG. 0, or -1 with *why. */
int	mux_hdr_decode(const uint8_t *p, struct mux_hdr *h, const char **why);
void	mux_hdr_encode(uint8_t *p, uint32_t sid, uint8_t type, uint16_t len);
/* Bytes of window grown beyond MUX_WINDOW, all streams of this process,
 * and the bound on it (MUX_GROW_BUDGET unless set; tests set it low). */
size_t	mux_grown(void);
void	mux_set_grow_budget(size_t n);

struct mux;

struct mux_stream {
	struct pend	 e;		/* first: the stream as an endpoint */
	struct mux	*m;
	uint32_t	 sid;
	uint32_t	 credit;	/* bytes we may still send */
	uint32_t	 owed;		/* delivered, not credited yet */
	uint32_t	 inflight;	/* received, not credited back yet */
	uint32_t	 win;		/* the window granted to the peer */
	unsigned	 fin_rcvd:1;	/* the peer's direction ended */
	unsigned	 rst_rcvd:1;	/* the peer failed it */
	unsigned	 blocked:1;	/* the peer ran out of credit */
	unsigned	 want_wr:1;	/* the pump waits for credit or room */
	unsigned	 waiting:1;	/* on the link's list of senders */
	unsigned	 hashed:1;
	struct mux_stream *hnext;	/* id hash chain */
	struct mux_stream *wnext;	/* waiting for room on the link */
};

struct mux_ops {
	/* Acceptor: the peer opened stream sid with metadata p[0..n). Take
	 * it with mux_accept and attach it to a pump before returning, or
	 * refuse it with mux_refuse. */
	void	(*open)(struct mux *m, uint32_t sid, const uint8_t *p, size_t n);
	/* The link failed or closed, and every stream on it has been
	 * closed. The owner calls mux_free. */
	void	(*lost)(struct mux *m, const char *why);
};

struct mux {
	struct ev_io	 io;
	SSL		*ssl;		/* NULL: a plain socket (tests) */
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
	struct mux_stream *waiting;	/* senders stopped while tx is full */
	uint32_t	 rd_want;	/* TLS: what the link waits for */
	uint32_t	 wr_want;
	uint64_t	 last_rx;
	uint64_t	 last_ping;
	uint64_t	 nonce;
	unsigned	 failed:1;
	unsigned	 broken:1;	/* failed because the peer broke the
					 * protocol, not the network */
	unsigned	 closing:1;	/* no new streams: lost once idle */
	unsigned	 spent:1;	/* its last stream id opened (closing) */
	unsigned	 settled:1;	/* failed, and its streams told */
	unsigned	 reported:1;	/* lost() called */
	unsigned	 dirty:1;	/* on the list to flush and settle */
	struct mux	*dnext;
	char		 why[160];
};

/* Start a link over fd/ssl, handshaken already (the link owns both from
 * here, also on failure). pending holds bytes to send first (moved in).
 * 0 or -1. */
int	mux_start(struct mux *m, int fd, SSL *ssl, int opener,
	    struct buf *pending, const struct mux_ops *ops, void *arg);
/* Close the link and free what it holds. Its streams must be closed. */
void	mux_free(struct mux *m);
/* Opener: a new stream announced with metadata p[0..n) (at most
 * MUX_CTL_MAX), to attach to a pump at once. NULL if the link cannot
 * take one (failing, closing, out of ids or memory). Once the last id
 * (MUX_SID_LAST) is opened, both sides mark the link spent and close it
 * when idle: the agent opens another. */
#define MUX_SID_LAST	(UINT32_MAX - 1)
struct mux_stream *mux_open(struct mux *m, const void *p, size_t n);
/* Acceptor, from open(): take stream sid (attach it at once), or refuse
 * it. NULL if out of memory (it is then refused). */
struct mux_stream *mux_accept(struct mux *m, uint32_t sid);
void	mux_refuse(struct mux *m, uint32_t sid, enum sess_end code,
	    const char *why);
/* Keep-alive and time-outs; call about once a second. */
void	mux_tick(struct mux *m, uint64_t now);
/* Stop opening streams on m; lost() follows once its last stream ends. */
void	mux_close_when_idle(struct mux *m);
/* Flush every link with frames queued and report links that are gone:
 * the event-loop hook (ev_settle_hook); mux_start registers it. */
int	mux_settle(void);

/* Between mux.c (the link) and mux_stream.c (its streams), no one else. */
void	mux_dirty(struct mux *m);
void	mux_spent(struct mux *m);
void	mux_fail(struct mux *m, const char *why);
/* The peer sent what the protocol forbids: fail the link, marked broken. */
void	mux_broken(struct mux *m, const char *why);
int	mux_tx_reserve(struct mux *m, size_t n);
int	mux_tx_frame(struct mux *m, uint32_t sid, uint8_t type, const void *p,
	    size_t n);
void	mux_tx_credit(struct mux *m, uint32_t sid, uint32_t n);
void	mux_tx_rst(struct mux *m, uint32_t sid, enum sess_end code,
	    const char *why);
struct mux_stream *mux_stream_find(struct mux *m, uint32_t sid);
void	mux_stream_wake(struct mux_stream *s);
void	mux_stream_data(struct mux *m, struct mux_stream *s,
	    const struct iovec *iov, int cnt, size_t n, int blocked);
void	mux_stream_rst(struct mux_stream *s, const uint8_t *p, size_t n);

#endif
