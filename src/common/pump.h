/* pump.h - the byte pump: one session's bytes, both ways, unchanged.
 *
 * A session has two sides, named for where they face:
 *
 *   PUMP_OUTER  toward the partner and the internet: at the edge the
 *               partner's socket (or an outbound destination), at the
 *               agent the data link the session came on;
 *   PUMP_INNER  toward the inside: at the edge the data link, at the agent
 *               the backend (or the inside client of an outbound session).
 *
 * Bytes go "in" (outer to inner) and "out" (inner to outer). Everything
 * per direction is indexed by the side its bytes come from: d[PUMP_OUTER]
 * carries them in, d[PUMP_INNER] out.
 *
 * Each side is an endpoint (struct pend): a socket (psock.h), a plain data
 * link (plink.h), a stream of a multiplexed link (mux.h) or the agent's
 * FTP control filter. The pump sees them only through struct pend_ops, so
 * what it promises holds for every kind:
 *
 * - Bounded memory, back-pressure. Bytes from side s wait in one buffer
 *   (BUF_RELAY_SIZE from a pool, held only while bytes wait) or one pipe
 *   (splice, when both endpoints are sockets the kernel can move bytes
 *   between: they never enter user space) until the other side takes
 *   them; side s is read only while there is room, and not at all while
 *   the other side has no endpoint yet. An endpoint that delivers bytes
 *   by itself (a mux stream: its link reads them) pushes them with
 *   pump_push, bounded by its own flow control, and hears through
 *   ops->drained when they have left.
 * - Half-close: EOF from one side becomes a half-close of the other once
 *   the bytes before it are written.
 * - Failure: a side that fails ends the pump. What it sent before failing
 *   is still passed on; the other side is then reset, never closed
 *   cleanly, so a cut transfer cannot look complete. A side whose writes
 *   fail (its peer reset it) is still read to its end first: the bytes
 *   its peer sent before the reset are not lost.
 * - The owner hears of the end once, through done(), and never in the
 *   middle of moving bytes: ends are queued and run by pump_settle, which
 *   the event loop calls after every callback (ev_settle_hook).
 */
#ifndef SP_PUMP_H
#define SP_PUMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/buf.h"
#include "common/end.h"

enum pump_side { PUMP_OUTER = 0, PUMP_INNER = 1 };

/* Endpoint results (ops return these or a byte count > 0). */
#define PEND_AGAIN	0	/* not now: the pump asks ops->watch */
#define PEND_EOF	(-1)	/* recv: the endpoint's direction ended */
#define PEND_ERR	(-2)	/* failed: code and err say why */
#define PEND_NOSPLICE	(-3)	/* splice: the kernel cannot; copy instead */
#define PEND_FULL	(-4)	/* pull: no room in the endpoint now */

/* What a blocked pump waits for (ops->watch) and what woke it. */
#define PEND_RD		1u
#define PEND_WR		2u

struct pend;
struct pump;

struct pend_ops {
	/* Up to n bytes from the endpoint into p: > 0, PEND_AGAIN, PEND_EOF
	 * or PEND_ERR. NULL: the endpoint pushes its bytes (pump_push). */
	ssize_t	(*recv)(struct pend *e, uint8_t *p, size_t n);
	/* Bytes to the endpoint: how many it took (> 0), PEND_AGAIN or
	 * PEND_ERR. */
	ssize_t	(*send)(struct pend *e, const struct iovec *iov, int cnt);
	/* From the endpoint into a pipe's write end, and from a pipe's read
	 * end to it: as recv and send, or PEND_NOSPLICE. NULL: cannot. */
	ssize_t	(*splice_in)(struct pend *e, int wfd, size_t n);
	ssize_t	(*splice_out)(struct pend *e, int rfd, size_t n);
	/* Optional: read src's bytes from its socket (src->rawfd) straight
	 * into the endpoint's own output, saving a copy (a mux stream reads
	 * into its link's frames). > 0 bytes taken (*more: the socket may
	 * have more), or as src's recv would say: PEND_AGAIN, PEND_EOF,
	 * PEND_ERR (in src's code and err); or PEND_FULL: the endpoint has
	 * no room now (the pump watches it for PEND_WR). */
	ssize_t	(*pull)(struct pend *e, struct pend *src, int *more);
	/* End the direction toward the endpoint cleanly: 1 done, PEND_AGAIN
	 * or PEND_ERR. */
	int	(*shut)(struct pend *e);
	/* The pump waits to read (PEND_RD) and/or write (PEND_WR): call
	 * pump_wake when that may go on. 0 stops watching. */
	void	(*watch)(struct pend *e, unsigned what);
	/* Push endpoints: n of their bytes reached the other side; empty:
	 * none of theirs wait in the pump any more. NULL for others. */
	void	(*drained)(struct pend *e, size_t n, int empty);
	/* The session is over: let go of everything; abort: it failed or
	 * was cut, so reset rather than close. */
	void	(*close)(struct pend *e, int abort);
	/* A clean close ends the direction toward the endpoint as shut
	 * would (a socket's FIN): when that close is due at once, shut is
	 * not needed. */
	int	 close_shuts;
};

struct pend {
	const struct pend_ops *ops;
	struct pump	*p;
	int		 side;
	int		 rawfd;		/* its bytes may be read from this socket
					 * as they are (pull); -1 */
	int		 kept_err;	/* an error epoll reported on rawfd,
					 * due after the bytes before it */
	unsigned	 eof:1;		/* its direction ended (EOF read) */
	unsigned	 shut:1;	/* ours toward it ended */
	unsigned	 failed:1;	/* it failed: see code and err */
	unsigned	 wdead:1;	/* a write to it failed; its own bytes
					 * are still read and passed on */
	unsigned	 fail_drained:1;	/* it failed after the bytes it
					 * sent: end once those are out */
	unsigned	 unwatched:1;	/* read it to its end without
					 * waiting for readiness (hung up) */
	unsigned	 held:1;	/* its last read returned bytes and
					 * holds what came after them (an end,
					 * an error) for the next, unannounced
					 * by epoll: read it again */
	enum sess_end	 code;		/* why it failed (SE_ERROR unless the
					 * peer said otherwise) */
	char		 err[160];
};

/* done(p, side, clean): side is the one that ended its direction first
 * (clean) or that failed (p->e[side] then holds code and err). The callee
 * ends the pump with pump_free. */
typedef void pump_done_cb(struct pump *p, int side, int clean);

struct pump_dir {
	struct buf	 b;		/* bytes waiting, copy path */
	int		 pipe[2];	/* bytes waiting, splice path; -1 */
	size_t		 plen;		/* bytes in the pipe */
	size_t		 pcap;
	unsigned	 pfull:1;	/* a splice into it would block */
	unsigned	 nosplice:1;	/* the kernel refused: copy */
	unsigned	 dst_full:1;	/* a pull found no room: wait for it */
	uint32_t	 prime;		/* leading bytes of b that are ours
					 * (a header for the other side) */
	uint64_t	 bytes;		/* delivered, prime not counted */
	uint64_t	 spliced;	/* of which by splice */
};

struct pump {
	struct pend	*e[2];
	struct pump_dir	 d[2];
	int		 first;		/* side whose direction ended first */
	int		 end_side;
	unsigned	 ended:1, clean:1, queued:1;
	uint64_t	 last_active;	/* ev_now() when bytes last moved */
	enum sess_end	 cut_code;	/* pump_free: why it was cut */
	char		 cut_why[160];
	pump_done_cb	*done;
	void		*arg;
	struct pump	*rnext;		/* queue of ended pumps */
};

/* 0 turns splice off for pumps started later (tests, debugging). */
extern int pump_splice;

void	pump_init(struct pump *p, pump_done_cb *done, void *arg);
/* Side s gets endpoint e (taken: closed by pump_free). prime, if not NULL,
 * holds bytes to write to e before anything relayed (a PROXY header, not
 * counted); it is moved in, ahead of what waits for e already. quiet:
 * e has nothing to read yet (a backend that just answered), so it is not
 * tried before it says so. Then moves what can be moved. */
void	pump_attach(struct pump *p, int s, struct pend *e, struct buf *prime,
	    int quiet);
/* Bytes from push endpoint of side s: written on at once if nothing
 * waits before them, the rest kept. -1 (nothing kept) if more would wait
 * than max: the endpoint's flow control was broken. */
int	pump_push(struct pump *p, int s, const struct iovec *iov, int cnt,
	    size_t max);
/* Push endpoint of side s: its direction ended (pump_eof), or it failed
 * after the bytes pushed so far (pump_fail: those go on first). */
void	pump_eof(struct pump *p, int s);
void	pump_fail(struct pump *p, int s, enum sess_end code, const char *why);
/* Endpoint of side s can go on with what it watched for. */
void	pump_wake(struct pump *p, int s, unsigned what);
/* Close both endpoints and free the buffers. code SE_NONE: a clean end;
 * anything else cuts the session (endpoints are reset, and a stream's
 * peer is told code and why). */
void	pump_free(struct pump *p, enum sess_end code, const char *why);
/* Run done() for every pump that ended. Returns how many. */
int	pump_settle(void);
/* How p ended, as end.h names it, from done()'s side and clean: for a
 * clean end, which side closed first (the outer side is the client,
 * unless outer_server); else the failing side's code, and its text in
 * detail after names[side] when that is not NULL ("" when clean). */
enum sess_end pump_outcome(const struct pump *p, int side, int clean,
	    int outer_server, const char *const names[2], char *detail,
	    size_t len);
/* Bytes from side s delivered to the other (prime not counted). */
static inline uint64_t pump_bytes(const struct pump *p, int s)
{
	return p->d[s].bytes;
}
uint64_t pump_spliced(const struct pump *p);

#endif
