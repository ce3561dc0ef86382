/* relay.c - the byte pump between a client and a data link, or a data
 * link and a backend. */
#include "common/relay.h"
#include "common/net.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>

static void relay_io(struct ev_io *io, uint32_t events);

/* Read into b from end e. Returns >0 bytes, 0 would block, -1 EOF,
 * -2 error (err filled). */
static ssize_t
end_read(struct relay_end *e, struct buf *b, char *err, size_t errlen)
{
	ssize_t n;
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL) {
		n = recv(e->io.fd, b->data + b->wpos, buf_room(b), 0);
		if (n > 0)
			return n;
		if (n == 0)
			return -1;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			e->rd_want = EPOLLIN;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -2;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_read(e->ssl, b->data + b->wpos,
	    buf_room(b) > INT32_MAX ? INT32_MAX : (int)buf_room(b));
	if (r > 0) {
		e->rd_want = EPOLLIN;
		return r;
	}
	switch (tlsx_result(e->ssl, r, &want, &eof, err, errlen)) {
	case TLSX_AGAIN:
		e->rd_want = want;
		return 0;
	case TLSX_DONE:
		return -1;
	default:
		return -2;
	}
}

/* Write from b to end e. Returns >0 bytes, 0 would block, -2 error. */
static ssize_t
end_write(struct relay_end *e, struct buf *b, char *err, size_t errlen)
{
	ssize_t n;
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL) {
		n = send(e->io.fd, b->data + b->rpos, buf_len(b), MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			e->wr_want = EPOLLOUT;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -2;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_write(e->ssl, b->data + b->rpos,
	    buf_len(b) > INT32_MAX ? INT32_MAX : (int)buf_len(b));
	if (r > 0) {
		e->wr_want = EPOLLOUT;
		return r;
	}
	if (tlsx_result(e->ssl, r, &want, &eof, err, errlen) == TLSX_AGAIN) {
		e->wr_want = want;
		return 0;
	}
	if (eof)
		snprintf(err, errlen, "peer closed while we were writing");
	return -2;
}

/* Shut down the write side of e. 1 done, 0 would block, -2 error. */
static int
end_shutdown(struct relay_end *e, char *err, size_t errlen)
{
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL) {
		if (shutdown(e->io.fd, SHUT_WR) == -1 && errno != ENOTCONN) {
			snprintf(err, errlen, "%s", strerror(errno));
			return -2;
		}
		return 1;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_shutdown(e->ssl);
	if (r >= 0)
		return 1;
	if (tlsx_result(e->ssl, r, &want, &eof, err, errlen) == TLSX_AGAIN) {
		e->wr_want = want;
		return 0;
	}
	return -2;
}

static void
relay_update(struct relay *r)
{
	struct relay_end *e;
	uint32_t mask;
	int i;

	for (i = 0; i < 2; i++) {
		e = &r->e[i];
		if (e->hup)
			continue;
		mask = 0;
		if (!e->eof && (r->b[i].data == NULL || buf_room(&r->b[i]) > 0))
			mask |= e->rd_want;
		if (buf_len(&r->b[1 - i]) > 0 ||
		    (r->e[1 - i].eof && !e->shut))
			mask |= e->wr_want;
		if (ev_set(&e->io, mask) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
	}
}

/* Make all the progress possible without blocking. Returns 0 while the
 * relay goes on, 1 once done() was called (r may be freed). */
static int
relay_pump(struct relay *r)
{
	char err[256];
	struct relay_end *src, *dst;
	struct buf *b;
	ssize_t n;
	int d, progress, s;

	do {
		progress = 0;
		for (d = 0; d < 2; d++) {
			src = &r->e[d];
			dst = &r->e[1 - d];
			b = &r->b[d];
			if (buf_len(b) > 0) {
				n = end_write(dst, b, err, sizeof(err));
				if (n == -2)
					goto fail_dst;
				if (n > 0) {
					buf_consume(b, (size_t)n);
					r->bytes[d] += (uint64_t)n;
					progress = 1;
				}
			}
			if (buf_len(b) == 0) {
				buf_release(b);
				if (src->eof && !dst->shut) {
					s = end_shutdown(dst, err, sizeof(err));
					if (s == -2)
						goto fail_dst;
					if (s == 1) {
						dst->shut = 1;
						progress = 1;
					}
				}
			}
			if (!src->eof && (b->data == NULL || buf_room(b) > 0)) {
				if (buf_take(b) == -1) {
					snprintf(err, sizeof(err), "out of memory");
					goto fail_src;
				}
				n = end_read(src, b, err, sizeof(err));
				if (n == -2)
					goto fail_src;
				if (n == -1) {
					src->eof = 1;
					if (r->first_eof == -1)
						r->first_eof = d;
					progress = 1;
				} else if (n > 0) {
					b->wpos += (size_t)n;
					progress = 1;
				}
				if (buf_len(b) == 0)
					buf_release(b);
			}
		}
		if (progress)
			r->last_active = ev_now();
	} while (progress);

	if (r->e[0].eof && r->e[1].eof && r->e[0].shut && r->e[1].shut) {
		r->done(r, r->first_eof, NULL);
		return 1;
	}
	relay_update(r);
	return 0;

fail_dst:
	d = 1 - d;
fail_src:
	r->e[d].failed = 1;
	r->done(r, d, err);
	return 1;
}

static void
relay_io(struct ev_io *io, uint32_t events)
{
	struct relay_end *e = (struct relay_end *)(void *)io;
	struct relay *r = e->r;
	char err[256];
	int soerr;

	if (events & EPOLLERR) {
		if ((soerr = net_sock_error(io->fd)) != 0) {
			snprintf(err, sizeof(err), "%s", strerror(soerr));
			e->failed = 1;
			r->done(r, (int)(e - r->e), err);
			return;
		}
	}
	if ((events & EPOLLHUP) && !e->hup) {
		/* Both directions of this socket are finished in the kernel:
		 * reads return data then EOF without blocking, so stop
		 * watching it (a level-triggered HUP would fire forever) and
		 * let the pump read it when there is room. */
		e->hup = 1;
		ev_del(io);
	}
	(void)relay_pump(r);
}

static void
end_init(struct relay *r, int i, int fd, SSL *ssl)
{
	struct relay_end *e = &r->e[i];

	ev_io_init(&e->io, fd, relay_io);
	e->ssl = ssl;
	e->r = r;
	e->rd_want = EPOLLIN;
	e->wr_want = EPOLLOUT;
}

int
relay_start(struct relay *r, int fd0, SSL *ssl0, int fd1, SSL *ssl1,
    struct buf *prime, relay_done_cb *done, void *arg)
{
	memset(r, 0, sizeof(*r));
	end_init(r, 0, fd0, ssl0);
	end_init(r, 1, fd1, ssl1);
	r->first_eof = -1;
	r->last_active = ev_now();
	r->done = done;
	r->arg = arg;
	if (prime != NULL) {
		/* Bytes for side 1 travel in the buffer of side 0. */
		r->b[0] = *prime;
		memset(prime, 0, sizeof(*prime));
	}
	/* Bytes may already wait inside OpenSSL (read along with the
	 * greeting), where epoll cannot see them: pump once right away.
	 * done() may run from here, which frees r. */
	(void)relay_pump(r);
	return 0;
}

static void
end_close(struct relay_end *e, int abort)
{
	struct linger lg = { 1, 0 };

	ev_del(&e->io);
	if (e->ssl != NULL) {
		/* close_notify only on a clean end; after a fatal TLS error
		 * OpenSSL forbids it. */
		if (!abort && !e->failed && !e->shut)
			(void)SSL_shutdown(e->ssl);
		SSL_free(e->ssl);
		e->ssl = NULL;
	} else if (abort) {
		/* A reset tells the peer the stream was cut, not complete. */
		(void)setsockopt(e->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	if (e->io.fd != -1)
		close(e->io.fd);
	e->io.fd = -1;
}

void
relay_free(struct relay *r, int abort)
{
	end_close(&r->e[0], abort);
	end_close(&r->e[1], abort);
	r->b[0].wpos = r->b[0].rpos = 0;
	r->b[1].wpos = r->b[1].rpos = 0;
	buf_release(&r->b[0]);
	buf_release(&r->b[1]);
	/* The prime buffer may not be pool-sized. */
	buf_free(&r->b[0]);
	buf_free(&r->b[1]);
}
