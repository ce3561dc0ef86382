/* psock.h - a socket as a pump endpoint (pump.h): a partner, a backend,
 * an outbound destination or an inside client.
 *
 * Plain TCP, read and written with recv/sendmsg or moved by the kernel
 * with splice. An error epoll reports is kept until the bytes the peer
 * sent before it have been read (a peer that resets right after its last
 * write). Closing after a failure resets the socket (SO_LINGER 0), and
 * if the socket itself did not fail, only once what was written to it has
 * left: the peer gets every byte the other side sent before the failure,
 * then the reset, as it would without a gateway in between. */
#ifndef SP_PSOCK_H
#define SP_PSOCK_H

#include <stdint.h>

#include "common/ev.h"
#include "common/pump.h"

struct psock {
	struct pend	 e;
	struct ev_io	 io;
	unsigned	 hup:1;		/* peer gone both ways: not in epoll */
};

/* Make fd (taken) an endpoint; registered: the fd came with ev_release
 * (see ev.h). Attach it with pump_attach. */
void	psock_init(struct psock *s, int fd, int registered);
/* The endpoint ops of a plain socket (struct pend_ops), for endpoints
 * built on one (plink.c); e must be a psock's. */
extern const struct pend_ops psock_ops;
ssize_t	psock_recv(struct pend *e, uint8_t *p, size_t n);
ssize_t	psock_send(struct pend *e, const struct iovec *iov, int cnt);
ssize_t	psock_splice_in(struct pend *e, int wfd, size_t n);
ssize_t	psock_splice_out(struct pend *e, int rfd, size_t n);
int	psock_shut(struct pend *e);
void	psock_watch(struct pend *e, unsigned what);
void	psock_close(struct pend *e, int abort);
/* The psock of an endpoint made by psock_init or built on one. */
static inline struct psock *psock_of(struct pend *e)
{
	return (struct psock *)(void *)e;
}

/* Reset fd now (SO_LINGER 0), or once what was written to it has left
 * (at most 5 s later, psock_tick). Both close fd. */
void	psock_reset_now(int fd);
void	psock_reset_after_drain(int fd);
/* Reset the sockets whose bytes have left or whose time is up; call from
 * the main loop. psock_tick(UINT64_MAX) resets all now. */
void	psock_tick(uint64_t now);
/* Take io's fd out of the loop and end it: closed (a clean end), reset
 * at once (abort after a failed write: nothing more will leave), or
 * reset after what was written has left. io->fd becomes -1. */
void	psock_drop(struct ev_io *io, int abort, int failed);

#endif
