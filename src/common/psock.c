/* psock.c - a socket as a pump endpoint (psock.h). */
#include "common/psock.h"
#include "common/log.h"
#include "common/net.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

#define RESET_DRAIN_MS	5000	/* longest wait for a reset's bytes to leave */
#define RESET_LINGER_MAX 4096	/* sockets waiting to be reset */

/* A socket to be reset once the kernel has sent what was written to it. */
struct rlinger {
	int		 fd;
	uint64_t	 deadline;
	struct rlinger	*next;
};

static struct rlinger *lingering;
static size_t nlingering;

void
psock_reset_now(int fd)
{
	struct linger lg = { 1, 0 };

	/* A reset tells the peer the stream was cut, not complete. */
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int
unsent(int fd)
{
	int q = 0;

	/* SIOCOUTQ: bytes not yet acknowledged by the peer. Where ioctl is
	 * not allowed (the edge's seccomp filter) this fails: reset now. */
	return ioctl(fd, SIOCOUTQ, &q) == -1 ? 0 : q;
}

void
psock_reset_after_drain(int fd)
{
	struct rlinger *l;

	if (unsent(fd) == 0 || nlingering >= RESET_LINGER_MAX ||
	    (l = malloc(sizeof(*l))) == NULL) {
		psock_reset_now(fd);
		return;
	}
	l->fd = fd;
	l->deadline = ev_now() + RESET_DRAIN_MS;
	l->next = lingering;
	lingering = l;
	nlingering++;
}

void
psock_tick(uint64_t now)
{
	struct rlinger **pp = &lingering, *l;

	while ((l = *pp) != NULL) {
		if (now < l->deadline && unsent(l->fd) > 0) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		nlingering--;
		psock_reset_now(l->fd);
		free(l);
	}
}

static ssize_t
fail(struct pend *e, int err)
{
	e->code = SE_ERROR;
	snprintf(e->err, sizeof(e->err), "%s", strerror(err));
	return PEND_ERR;
}

ssize_t
psock_recv(struct pend *e, uint8_t *p, size_t n)
{
	struct psock *s = psock_of(e);
	ssize_t r = recv(s->io.fd, p, n, 0);

	if (r > 0)
		return r;
	if (r == 0)	/* an error kept from epoll follows the bytes */
		return s->e.kept_err != 0 ? fail(e, s->e.kept_err) : PEND_EOF;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return PEND_AGAIN;
	return fail(e, errno);
}

ssize_t
psock_send(struct pend *e, const struct iovec *iov, int cnt)
{
	struct psock *s = psock_of(e);
	struct msghdr mh;
	ssize_t r;

	if (s->e.kept_err != 0)
		return fail(e, s->e.kept_err);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = (struct iovec *)(uintptr_t)iov;
	mh.msg_iovlen = (size_t)cnt;
	r = sendmsg(s->io.fd, &mh, MSG_NOSIGNAL);
	if (r > 0)
		return r;
	if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return PEND_AGAIN;
	return fail(e, errno);
}

ssize_t
psock_splice_in(struct pend *e, int wfd, size_t n)
{
	struct psock *s = psock_of(e);
	ssize_t r;

	r = splice(s->io.fd, NULL, wfd, NULL, n, SPLICE_F_MOVE |
	    SPLICE_F_NONBLOCK);
	if (r > 0)
		return r;
	if (r == 0)
		return s->e.kept_err != 0 ? fail(e, s->e.kept_err) : PEND_EOF;
	if (errno == EAGAIN || errno == EINTR)
		return PEND_AGAIN;
	if (errno == EINVAL || errno == ENOSYS)
		return PEND_NOSPLICE;
	return fail(e, errno);
}

ssize_t
psock_splice_out(struct pend *e, int rfd, size_t n)
{
	struct psock *s = psock_of(e);
	ssize_t r;

	if (s->e.kept_err != 0)
		return fail(e, s->e.kept_err);
	r = splice(rfd, NULL, s->io.fd, NULL, n, SPLICE_F_MOVE |
	    SPLICE_F_NONBLOCK);
	if (r > 0)
		return r;
	if (r == 0 || errno == EAGAIN || errno == EINTR)
		return PEND_AGAIN;
	if (errno == EINVAL || errno == ENOSYS)
		return PEND_NOSPLICE;
	return fail(e, errno);
}

int
psock_shut(struct pend *e)
{
	struct psock *s = psock_of(e);

	if (shutdown(s->io.fd, SHUT_WR) == -1 && errno != ENOTCONN)
		return (int)fail(e, errno);
	return 1;
}

void
psock_watch(struct pend *e, unsigned what)
{
	struct psock *s = psock_of(e);
	uint32_t mask = 0;

	if (s->hup)
		return;		/* read without epoll to its end */
	if (what & PEND_RD)
		mask |= EPOLLIN;
	if (what & PEND_WR)
		mask |= EPOLLOUT;
	if (ev_set(&s->io, mask) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

void
psock_drop(struct ev_io *io, int abort, int failed)
{
	int fd = io->fd;

	if (fd == -1)
		return;
	/* Out of the epoll set while io still names the fd. */
	if (abort && !failed) {
		ev_del(io);	/* the fd lives on until drained */
		psock_reset_after_drain(fd);
	} else if (abort) {
		ev_forget(io);
		psock_reset_now(fd);
	} else {
		ev_forget(io);
		close(fd);
	}
	io->fd = -1;
}

void
psock_close(struct pend *e, int abort)
{
	struct psock *s = psock_of(e);

	e->rawfd = -1;
	psock_drop(&s->io, abort, e->failed);
}

const struct pend_ops psock_ops = {
	.recv = psock_recv,
	.send = psock_send,
	.splice_in = psock_splice_in,
	.splice_out = psock_splice_out,
	.shut = psock_shut,
	.watch = psock_watch,
	.close = psock_close,
	.close_shuts = 1,
};

static void
ps_io(struct ev_io *io, uint32_t events)
{
	struct psock *s = (struct psock *)(void *)((char *)io -
	    offsetof(struct psock, io));
	unsigned what = 0;
	int soerr;

	if ((events & EPOLLERR) && s->e.kept_err == 0 &&
	    (soerr = net_sock_error(io->fd)) != 0)
		s->e.kept_err = soerr;	/* after the bytes queued before it */
	if ((events & EPOLLHUP) && !s->hup) {
		/* Both directions are finished in the kernel: reads return
		 * data then EOF without blocking, so stop watching (a level-
		 * triggered HUP would fire forever); the pump reads it to
		 * its end when there is room. */
		s->hup = 1;
		s->e.unwatched = 1;
		ev_del(io);
	}
	/* Readable concerns the direction the socket feeds, writable the
	 * one that feeds it. */
	if (events & (EPOLLHUP | EPOLLERR))
		what = PEND_RD | PEND_WR;
	if (events & EPOLLIN)
		what |= PEND_RD;
	if (events & EPOLLOUT)
		what |= PEND_WR;
	if (s->e.p != NULL)
		pump_wake(s->e.p, s->e.side, what);
}

void
psock_init(struct psock *s, int fd, int registered)
{
	memset(s, 0, sizeof(*s));
	s->e.ops = &psock_ops;
	s->e.rawfd = fd;
	ev_io_init(&s->io, fd, ps_io);
	ev_adopt(&s->io, registered);
}
