/* relay.h - move bytes both ways between two sockets, unchanged.
 *
 * Each side is a plain socket or a TLS connection over one. Bytes read
 * from side i wait in b[i] (or in the pipe p[i]) until written to side
 * 1-i; while they wait, side i is read only into the room left, so memory
 * per relay is bounded, and none is held while idle: buffers come from a
 * pool when a read is attempted and go back as soon as they drain.
 *
 * Zero copy: where the kernel can move the bytes itself - both sides plain
 * sockets, or a TLS side whose record layer runs in the kernel (kTLS) -
 * they go through a pipe with splice() and never enter user space. A pipe
 * is taken from a small pool only while bytes are in flight. If the
 * kernel refuses (EINVAL, ENOSYS) the relay falls back to copying; a kTLS
 * record that is not data (an alert, a ticket) is read through OpenSSL.
 *
 * EOF on one side is passed on as a half-close of the other (shutdown
 * SHUT_WR, or TLS close_notify) once its waiting bytes are written. The
 * relay ends when both directions have closed, or on the first error, in
 * which case plain sockets are reset rather than closed cleanly so that
 * a cut transfer cannot look like a complete one. What the failing side
 * sent before its error (a peer that resets right after its last write)
 * is passed on first, and a reset waits until the bytes already written
 * to that socket have left, as without a relay in between.
 *
 * A side can be a reusable data link (RELAY_FRAMED): its bytes travel in
 * chunks, each after a 4-byte big-endian length, and a chunk of length 0
 * ends a direction where a plain socket would be shut down, so the link
 * can carry another session afterwards (docs/protocol.md, "Reusable plain
 * links"). A side that does not keep the link (keep cleared) ends its
 * direction with a FIN instead; a FIN between chunks is a clean end that
 * is not reusable, one inside a chunk an error. The payload still moves
 * with splice(): only the 4-byte lengths are written and read apart. A
 * direction that has carried RELAY_MT_BYTES goes raw (RELAY_CHUNK_RAW):
 * bulk bytes then move as on a plain link, and that link is not reused. */
#ifndef SP_RELAY_H
#define SP_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
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
	unsigned	 splice_in:1;	/* the kernel can splice out of it */
	unsigned	 splice_out:1;	/* ... and into it */
	/* Writing to this side failed (the peer reset, say) while what it
	 * sent may still wait to be read: those bytes are passed on
	 * before the relay ends with werr. */
	unsigned	 wdead:1;
	int		 soerr;		/* a socket error seen by epoll, kept */
	char		 werr[128];
	/* RELAY_FRAMED: the chunk being read and written (see above). */
	unsigned	 framed:1;
	unsigned	 keep:1;	/* end our direction with a marker */
	unsigned	 rx_raw:1;	/* the peer went raw (RELAY_CHUNK_RAW) */
	unsigned	 tx_raw:1;	/* we did */
	unsigned	 tx_to_raw:1;	/* the raw header is being sent */
	unsigned	 rx_end:1;	/* the peer's end marker was read */
	unsigned	 tx_end:1;	/* ours was written */
	uint8_t		 rx_have;	/* bytes of rx_hdr read */
	uint8_t		 tx_off, tx_len;	/* bytes of tx_hdr sent, to send */
	uint8_t		 rx_hdr[4], tx_hdr[4];
	uint32_t	 rx_left;	/* payload of the chunk still to read */
	uint32_t	 tx_left;	/* ... and still to write */
};

/* Bytes in flight through the kernel. fd[0] is -1 while none are. */
struct relay_pipe {
	int		 fd[2];
	size_t		 len;		/* bytes in the pipe */
	size_t		 cap;		/* its capacity */
	unsigned	 full:1;	/* a splice into it would block */
};

struct relay {
	struct relay_end e[2];
	struct buf	 b[2];
	struct relay_pipe p[2];
	uint64_t	 bytes[2];	/* bytes from e[i] delivered to e[1-i] */
	uint64_t	 spliced[2];	/* of which moved by splice() */
	unsigned	 nosplice[2];	/* the kernel refused: copy from now on */
	unsigned	 copy_next[2];	/* kTLS: next read through OpenSSL */
	int		 first_eof;	/* side that closed first, -1 none */
	uint64_t	 last_active;	/* ev_now() when bytes last moved */
	relay_done_cb	*done;
	void		*arg;
	/* Relay threads (relay_mt.c): who runs the relay, and how it
	 * ended there, for done() on the main thread. */
	int		 mt;
	struct rworker	*w;
	TAILQ_ENTRY(relay) mt_q;
	int		 mt_first;
	int		 mt_failed;
	char		 mt_err[256];
};

/* Start relaying between fd0/ssl0 and fd1/ssl1 (ssl NULL for plain).
 * The relay owns the fds and SSLs from here, even on failure, where it
 * returns -1 after freeing them. prime, if not NULL, holds bytes to write
 * to side 1 before anything relayed (a greeting frame); it is moved in,
 * and must be empty if side 1 is framed. flags: RELAY_FRAMED(i) makes
 * plain side i a reusable data link, which the relay keeps (ends its
 * direction with a marker) unless RELAY_FIN(i) is set too. */
#define RELAY_FRAMED(i)	(1u << (i))
#define RELAY_FIN(i)	(4u << (i))	/* framed, but not kept */
#define RELAY_HANDED(i)	(16u << (i))	/* fd i came with ev_release() */
/* Side i has nothing to read yet (a backend just connected, a link the
 * peer has not used): the first pump does not try. */
#define RELAY_QUIET(i)	(64u << (i))
#define RELAY_CHUNK_MAX	(16u * 1024 * 1024)
/* A chunk length that says: the rest of this direction is raw bytes, up
 * to a FIN. Sent once a direction has carried RELAY_MT_BYTES (a bulk
 * transfer, where a length per chunk would cost more than a new link);
 * the link is then not reused. */
#define RELAY_CHUNK_RAW	0xffffffffu
int	relay_start(struct relay *r, int fd0, SSL *ssl0, int fd1, SSL *ssl1,
	    struct buf *prime, unsigned flags, relay_done_cb *done, void *arg);
/* After a clean end (done() with err NULL): if framed side i ended both
 * ways with markers, take its socket out of the relay (relay_free will
 * not close it) and return it, ready for the next session's greeting,
 * handed over as by ev_release (*registered). Otherwise -1. */
int	relay_take_link(struct relay *r, int i, int *registered);
/* Close both sides (reset plain sockets if abort) and free buffers.
 * On abort, a plain socket that did not fail itself is reset only once
 * the bytes written to it have left (at most 5 s later; relay_tick). */
void	relay_free(struct relay *r, int abort);
/* Reset the sockets whose queued bytes have left or whose time is up;
 * call from the main loop. relay_tick(UINT64_MAX) resets all now. */
void	relay_tick(uint64_t now);
/* Reset plain socket fd now (SO_LINGER 0), or once the bytes written to
 * it have left (at most 5 s; relay_tick). Both close fd. */
void	relay_reset_now(int fd);
void	relay_reset_after_drain(int fd);
/* 1 if the relay moves bytes of side i with splice (plain, or kTLS both
 * ways). */
int	relay_zero_copy(const struct relay *r, int i);

/* What a relay has moved and when it last moved bytes. Read these, not
 * the fields: a relay thread may be updating them. */
uint64_t relay_bytes(const struct relay *r, int i);
uint64_t relay_spliced(const struct relay *r, int i);
uint64_t relay_last_active(const struct relay *r);

/* Relay threads. A relay whose two sides are plain sockets (all bytes
 * spliced) moves, once it has carried RELAY_MT_BYTES, from the main loop
 * to one of n threads that run nothing else; small sessions never leave
 * the main loop, so their set-up pays no hand-over. done() is still
 * called on the main thread, and relay_free() takes a relay back first,
 * so callers see no difference. Call once, after ev_init() and before a
 * sandbox that forbids making descriptors: the descriptors are made
 * here, the threads only when first needed. 0 keeps every relay on the
 * main loop. Returns 0 or -1. */
#define RELAY_MT_MAX	16
#define RELAY_MT_BYTES	(1024 * 1024)
int	relay_threads(unsigned n);
/* Relays handed to a relay thread so far. */
uint64_t relay_threads_handoffs(void);
/* The number of online CPUs, at most RELAY_MT_MAX: the default. */
unsigned relay_threads_auto(void);

/* 0 turns splice off for relays started later (tests, debugging). */
extern int relay_splice;

#endif
